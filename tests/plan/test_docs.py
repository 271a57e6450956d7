"""The documented JSON example is what the command prints; the CI examples are valid and run plan."""

from __future__ import annotations

import json
import re

import pytest

from mlspec.plan.render import FORMAT_VERSION, plan_data
from tests.plan.support import CASES_DIR, ROOT, compile_file, plan_of

DOC = ROOT / "docs" / "plan-json.md"


def test_json_example_in_the_docs_is_real_output() -> None:
    example = re.search(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert example is not None
    case = CASES_DIR / "window_change"
    plan = plan_of(compile_file(case / "old.mlspec"), compile_file(case / "new.mlspec"),
                   "tests/cases/plan/window_change/old.mlspec", "tests/cases/plan/window_change/new.mlspec")
    assert json.loads(example.group(1)) == json.loads(json.dumps(plan_data(plan)))


def test_docs_name_the_current_format_version() -> None:
    assert f'currently **`"{FORMAT_VERSION}"`**' in DOC.read_text(encoding="utf-8")


def test_ci_examples_are_valid_and_run_the_right_commands() -> None:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / "examples" / "github-workflow.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["plan"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "mlspec plan" in runs and "--format markdown" in runs and "--detailed-exitcode" in runs
    assert any("github-script" in s.get("uses", "") and "<!-- mlspec-plan -->" in s["with"]["script"] for s in steps)
    hooks = yaml.safe_load((ROOT / "examples" / "pre-commit-config.yaml").read_text(encoding="utf-8"))
    entries = [h["entry"] for repo in hooks["repos"] for h in repo["hooks"]]
    assert entries[0] == "mlspec fmt --check" and "mlspec check" in entries[1]
