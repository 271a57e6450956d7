"""DVC target: the stages mirror the nodes `mlspec run` executes; with real dvc in a temporary git
repository `dvc repro` runs end to end, a second one does nothing, and a changed model param reruns
exactly the stages downstream of it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from mlspec.backends import BackendError, generate
from mlspec.backends.common import make_context
from mlspec.backends.dvc import stage_name
from mlspec.compiler import compile_paths
from tests.backends.support import SPECS, env_with_venv, example, golden_files, mlspec_bin, run


@pytest.mark.parametrize("name", SPECS)
def test_stages_mirror_the_executed_nodes(name: str) -> None:
    spec, dag = example(name)
    ctx = make_context(spec, dag, f"specs/{name}.mlspec")
    files = golden_files(name, "dvc")
    stages = yaml.safe_load(files["dvc.yaml"])["stages"]
    params = yaml.safe_load(files["params.yaml"])
    assert list(stages) == [stage_name(n) for n in ctx.nodes]
    for nid in ctx.nodes:
        stage = stages[stage_name(nid)]
        assert f"mlspec run --node {nid} {name}.mlspec --json > .mlspec/dvc/{stage_name(nid)}.json" in stage["cmd"]
        upstream = {f".mlspec/dvc/{stage_name(a)}.json" for a, b in ctx.edges if b == nid}
        assert upstream <= set(stage["deps"])
        for key in stage["params"]:
            node: object = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, key
                node = node[part]
    kinds = {stage_name(n).split("_")[0] for n in ctx.nodes}
    assert {"extract", "features", "train", "evaluate"} <= kinds
    for m in spec.models:
        assert params["models"][m.name] == dict(m.params)
        assert stages[f"train_{m.name}"]["metrics"] and f"models.{m.name}" in stages[f"train_{m.name}"]["params"]
    for s in spec.sources:
        assert s.path in stages[f"extract_{s.name}"]["deps"]


def test_batch_scores_are_an_output() -> None:
    stages = yaml.safe_load(golden_files("churn", "dvc")["dvc.yaml"])["stages"]
    assert "scores/churn.parquet" in stages["score_churn_risk"]["outs"]


def test_paths_dvc_would_interpolate_are_refused(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "specs/churn.mlspec").read_text()
    (tmp_path / "s.mlspec").write_text(text.replace('"data/orders.parquet"', '"data/${user}.parquet"'))
    spec, dag = compile_paths([tmp_path / "s.mlspec"]).checked
    with pytest.raises(BackendError, match="interpolate"):
        generate("dvc", spec, dag, "s.mlspec")


def _write_dvc(project: Path) -> None:
    spec, dag = compile_paths([project / "churn.mlspec"]).checked
    for rel, text in generate("dvc", spec, dag, "churn.mlspec").items():
        (project / rel).write_text(text)


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path: Path) -> None:
    if shutil.which("dvc", path=env_with_venv()["PATH"]) is None or shutil.which("git") is None:
        pytest.skip("dvc or git is not installed")
    project = tmp_path / "churn"
    env = {**env_with_venv(), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    run([mlspec_bin(), "demo", "churn", str(project), "--customers", "300"], tmp_path, env)
    run(["git", "init", "-q"], project, env)
    run(["dvc", "init", "-q"], project, env)
    _write_dvc(project)

    first = run(["dvc", "repro"], project, env)
    stages = list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    assert sorted(_ran(first)) == sorted(stages)
    assert (project / "scores/churn.parquet").exists()
    assert list((project / ".mlspec/registry/churn_risk").glob("champion.json"))

    second = run(["dvc", "repro"], project, env)
    assert _ran(second) == [] and "up to date" in second

    spec = project / "churn.mlspec"
    spec.write_text(re.sub(r"max_depth\s*=\s*4", "max_depth = 5", spec.read_text()))
    _write_dvc(project)
    third = run(["dvc", "repro"], project, env)
    assert _ran(third) == ["train_churn_risk", "evaluate_churn_risk", "score_churn_risk"]
    assert "max_depth: 5" in (project / "params.yaml").read_text()
