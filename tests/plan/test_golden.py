"""Golden plans (tests/cases/plan/<case>/): old.mlspec, new.mlspec and the text plan between them.

expected.txt is exactly what `mlspec plan old.mlspec new.mlspec` prints without colour. Refresh
with `MLSPEC_UPDATE_GOLDEN=1 pytest tests/plan -k golden` (or `make golden`), then read the diff:
a committed expectation is a reviewed one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlspec.plan.render import FORMAT_VERSION, plan_data, render_markdown, render_text
from tests.plan.support import CASES_DIR, assert_mirror, compile_file, plan_of

UPDATE = os.environ.get("MLSPEC_UPDATE_GOLDEN") == "1"
CASES = sorted(d for d in CASES_DIR.iterdir() if d.is_dir())
# Every kind of change the issue lists has a case; a missing directory fails loudly.
REQUIRED = ("add_group", "add_feature", "remove_feature", "remove_serve", "rename_feature", "window_change",
            "source_schema", "model_params", "gate_thresholds", "serve_mode", "monitor_thresholds", "alert_sink",
            "whitespace_only")


def _plan(case: Path, reverse: bool = False):  # type: ignore[no-untyped-def]
    old, new = compile_file(case / "old.mlspec"), compile_file(case / "new.mlspec")
    return plan_of(new, old, "new.mlspec", "old.mlspec") if reverse else plan_of(old, new)


def test_every_kind_of_change_has_a_case() -> None:
    assert set(REQUIRED) <= {c.name for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    actual = render_text(_plan(case))
    expected_file = case / "expected.txt"
    if UPDATE or not expected_file.exists():
        expected_file.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"wrote the missing {expected_file.relative_to(CASES_DIR)}; review it and commit it")
    assert actual == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reverse_plan_mirrors(case: Path) -> None:
    assert_mirror(_plan(case), _plan(case, reverse=True))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_other_formats_carry_the_same_plan(case: Path) -> None:
    plan = _plan(case)
    data = json.loads(json.dumps(plan_data(plan)))
    assert data["format_version"] == FORMAT_VERSION
    assert data["has_changes"] == plan.has_changes
    assert [c["id"] for c in data["changes"]] == [c.id for c in plan.changes]
    markdown = render_markdown(plan)
    assert markdown.startswith("<!-- mlspec-plan -->")
    assert markdown.count("<details>") == len(plan.changes)
    for c in plan.changes:
        assert f"`{c.id}`" in markdown
