"""The commands the generated tasks run fail when the pipeline must stop, on real demo data.

* A gate that rejects its candidate: `mlspec run --fail-on-rejected` exits 3 naming the model, the
  candidate version and the failed conditions. The Airflow gate task and the k8s score CronJob pass
  the flag; the DVC evaluate stage does with the target option fail_on_rejected=true. The Airflow
  retraining task runs `mlspec retrain --fail-on-rejected`: a rejected retrained candidate exits 3 too.
* A check that stops the run (on_fail = fail) and a source whose every row is quarantined: the node's
  task command exits 1 with the node and the reason. These need no flag.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlspec.backends import generate
from mlspec.backends.k8s import EXIT_REJECTED as K8S_EXIT_REJECTED
from mlspec.compiler import compile_paths
from mlspec.runtime.registry import Registry
from mlspec.runtime.runner import EXIT_REJECTED
from tests.backends.support import env_with_venv, mlspec_bin, run

MODEL = "churn_risk"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small churn demo project (data and spec), never run."""
    project = tmp_path_factory.mktemp("failures") / "demo"
    run([mlspec_bin(), "demo", "churn", str(project), "--customers", "300"], cwd=project.parent)
    return project


@pytest.fixture(scope="module")
def trained(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo under a gate no model passes (`auc >= 0.999`), trained up to the model node."""
    project = tmp_path_factory.mktemp("rejecting") / "churn"
    shutil.copytree(demo, project)
    spec = project / "churn.mlspec"
    text = spec.read_text(encoding="utf-8")
    assert "    auc >= 0.70\n" in text
    spec.write_text(text.replace("    auc >= 0.70\n", "    auc >= 0.999\n"), encoding="utf-8")
    run([mlspec_bin(), "run", "--until", f"model:{MODEL}", "churn.mlspec"], cwd=project)
    return project


def _mlspec(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([mlspec_bin(), *args], cwd=project, env=env_with_venv(), capture_output=True, text=True,
                          timeout=600)


def _listed(project: Path) -> list[str]:
    out = _mlspec(project, "models", "--json")
    assert out.returncode == 0, out.stderr
    return [m["version"] for m in json.loads(out.stdout)]


def test_exit_codes_agree() -> None:
    assert EXIT_REJECTED == K8S_EXIT_REJECTED == 3


def test_a_rejected_gate_fails_the_gate_task_with_exit_3(trained: Path, tmp_path: Path) -> None:
    project = tmp_path / "churn"
    shutil.copytree(trained, project)
    (version,) = _listed(project)
    # the gate task of the generated Airflow pipeline: `mlspec run --node gate:M SPEC --fail-on-rejected`
    proc = _mlspec(project, "run", "--node", f"gate:{MODEL}", "churn.mlspec", "--fail-on-rejected")
    assert proc.returncode == EXIT_REJECTED, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (f"error in gate:{MODEL}: version {version} of model `{MODEL}` was rejected by its gate: "
            "auc >= 0.999 (auc = ") in proc.stderr
    assert "misses >= 0.9990" in proc.stderr and "the champion stays unset" in proc.stderr
    assert "auc >= champion.auc" not in proc.stderr.split("rejected by its gate:", 1)[1], "only failed conditions"
    assert Registry(project / ".mlspec" / "registry").champion(MODEL) is None
    # without the flag the same verdict is a warning and the run succeeds (what a local `mlspec run` does)
    plain = _mlspec(project, "run", "--node", f"gate:{MODEL}", "churn.mlspec")
    assert plain.returncode == 0, plain.stderr
    assert f"version {version} rejected" in " ".join(plain.stdout.split() + plain.stderr.split())


def _retrain_commands(project: Path) -> dict[str, list[str]]:
    """Task id -> `mlspec` argv of the generated Airflow retraining DAG, read from its module's source."""
    spec, dag = compile_paths([project / "churn.mlspec"]).checked
    tree = ast.parse(generate("airflow", spec, dag, "churn.mlspec")["churn_retrain.py"])
    models = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "MODELS")
    call = next(n for n in ast.walk(tree)
                if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "mlspec_task")
    assert isinstance(call.args[1], ast.List)
    names = {"SPEC": "churn.mlspec"}
    out = {}
    for task, model in models.items():
        values = {**names, "model": model}
        out[task] = [e.value if isinstance(e, ast.Constant) else values[e.id] for e in call.args[1].elts]
    return out


def test_a_rejected_retrain_fails_the_airflow_retrain_task_with_exit_3(trained: Path, tmp_path: Path) -> None:
    project = tmp_path / "churn"
    shutil.copytree(trained, project)
    (version,) = _listed(project)
    commands = _retrain_commands(project)
    assert commands == {f"retrain_{MODEL}": ["retrain", "churn.mlspec", "--model", MODEL, "--fail-on-rejected"]}
    proc = _mlspec(project, *commands[f"retrain_{MODEL}"])
    assert proc.returncode == EXIT_REJECTED, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"retrain {MODEL}: rejected" in proc.stdout
    assert (f"error in gate:{MODEL}: version {version} of model `{MODEL}` was rejected by its gate: "
            "auc >= 0.999 (auc = ") in proc.stderr
    assert proc.stderr.rstrip().endswith("the champion stays unset"), proc.stderr
    assert Registry(project / ".mlspec" / "registry").champion(MODEL) is None
    # without the flag (what `mlspec retrain` does by hand) the rejection is an outcome: exit 0
    plain = _mlspec(project, "retrain", "churn.mlspec", "--min-interval", "0s")
    assert plain.returncode == 0, plain.stderr
    assert f"retrain {MODEL}: rejected" in plain.stdout and "rejected by its gate" not in plain.stderr


def test_the_whole_run_scores_with_the_champion_then_exits_3(trained: Path, tmp_path: Path) -> None:
    """The k8s score CronJob's command: scoring still happens (with the champion), the Job still fails."""
    project = tmp_path / "churn"
    shutil.copytree(trained, project)
    spec = project / "churn.mlspec"
    strict = spec.read_text(encoding="utf-8")
    spec.write_text(strict.replace("    auc >= 0.999\n", "    auc >= 0.5\n"), encoding="utf-8")
    first = _mlspec(project, "run", "churn.mlspec", "--fail-on-rejected")
    assert first.returncode == 0, first.stderr  # a passing gate: champion, scores, exit 0
    champion = Registry(project / ".mlspec" / "registry").champion(MODEL)
    assert champion is not None
    spec.write_text(strict, encoding="utf-8")
    proc = _mlspec(project, "run", "--json", "churn.mlspec", "--fail-on-rejected")
    assert proc.returncode == EXIT_REJECTED, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True and summary["error"] is None
    (rejected,) = summary["rejected"]
    assert rejected["node"] == f"gate:{MODEL}" and rejected["champion"] == champion
    assert [f["rule"] for f in rejected["failed"]] == ["auc >= 0.999"]
    score = next(n for n in summary["nodes"] if n["node"] == f"serve:{MODEL}")
    assert score["status"] == "ok" and score["detail"]["version"] == champion
    assert f"the champion stays {champion}" in proc.stderr


def test_the_dvc_evaluate_stage_fails_when_asked(trained: Path, tmp_path: Path) -> None:
    project = tmp_path / "churn"
    shutil.copytree(trained, project)
    spec, dag = compile_paths([project / "churn.mlspec"]).checked
    default = yaml.safe_load(generate("dvc", spec, dag, "churn.mlspec")["dvc.yaml"])["stages"]
    assert "--fail-on-rejected" not in default[f"evaluate_{MODEL}"]["cmd"]  # metrics only, by default
    stages = yaml.safe_load(generate("dvc", spec, dag, "churn.mlspec", {"fail_on_rejected": "true"})["dvc.yaml"])
    cmd = stages["stages"][f"evaluate_{MODEL}"]["cmd"]
    assert "--fail-on-rejected" in cmd
    assert all("--fail-on-rejected" not in s["cmd"] for n, s in stages["stages"].items() if n != f"evaluate_{MODEL}")
    proc = subprocess.run(["sh", "-c", cmd], cwd=project, env=env_with_venv(), capture_output=True, text=True,
                          timeout=600)  # the stage's own command line, as `dvc repro` runs it
    assert proc.returncode == EXIT_REJECTED, proc.stderr
    report = json.loads((project / ".mlspec/dvc" / f"evaluate_{MODEL}.json").read_text())
    assert report["rejected"][0]["failed"][0]["rule"] == "auc >= 0.999"


def test_checks_that_stop_the_run_fail_their_task(demo: Path, tmp_path: Path) -> None:
    project = tmp_path / "churn"
    shutil.copytree(demo, project)
    spec = project / "churn.mlspec"
    text = spec.read_text(encoding="utf-8")
    old = "  amount >= 0\n  on_fail = quarantine              # failing rows go to the dead-letter table, with reasons\n"
    assert old in text
    spec.write_text(text.replace(old, "  amount >= 20\n  on_fail = fail\n"), encoding="utf-8")
    run([mlspec_bin(), "run", "--until", "source:orders", "churn.mlspec"], cwd=project)
    proc = _mlspec(project, "run", "--node", "check:orders", "churn.mlspec", "--fail-on-rejected")
    assert proc.returncode == 1, proc.stderr
    assert "error in check:orders:" in proc.stderr and "fail `amount >= 20` (on_fail = fail)" in proc.stderr
    assert "Traceback" not in proc.stderr

    # every row of a source set aside by its schema: the extract task fails
    schema = "    amount      float range [0, 100000]"
    text = spec.read_text(encoding="utf-8")
    assert schema in text, "the churn spec's orders schema changed"
    spec.write_text(text.replace(schema, "    amount      float range [-2, -1]"), encoding="utf-8")
    shutil.rmtree(project / ".mlspec")
    run([mlspec_bin(), "run", "--node", "source:customers", "churn.mlspec"], cwd=project)
    proc = _mlspec(project, "run", "--node", "source:orders", "churn.mlspec")
    assert proc.returncode == 1, proc.stderr
    assert "error in source:orders: all " in proc.stderr and "rows of source `orders` were quarantined" in proc.stderr
