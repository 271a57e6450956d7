"""Airflow target, proven with real Apache Airflow 3: the generated modules import in a DagBag with
zero import errors, and every DAG's tasks and dependencies are the mlspec DAG's executed nodes and
edges. The slow test runs `airflow dags test` on the churn pipeline over demo data."""

from __future__ import annotations

import ast
import http.server
import importlib.util
import json
import os
import shlex
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from mlspec.backends import generate
from mlspec.backends.airflow import task_id
from mlspec.backends.common import make_context
from mlspec.compiler import compile_paths
from tests.backends.support import PYTHON, REPO, SPECS, example, golden_files, mlspec_bin

HAVE_AIRFLOW = importlib.util.find_spec("airflow") is not None
OPERATORS = ("bash", "kubernetes")

PROBE = r'''
import json, sys
from airflow.dag_processing.dagbag import DagBag

result = {}
for folder in sys.argv[2:]:
    bag = DagBag(dag_folder=folder, safe_mode=False)
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "operator": type(t).__name__,
                                  "retries": t.retries, "backoff": float(t.retry_exponential_backoff),
                                  "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                                  "callback": bool(t.on_failure_callback), "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule)),
                                  "outlets": [getattr(o, "uri", str(o)) for o in t.outlets],
                                  "command": getattr(t, "bash_command", None) or getattr(t, "arguments", None),
                                  "env": next((e for e in (getattr(t, "env", None), getattr(t, "env_vars", None))
                                               if isinstance(e, dict)), None)}
                      for t in dag.tasks},
            "timetable": type(dag.timetable).__name__,
            "summary": getattr(dag.timetable, "summary", None) or getattr(dag.timetable, "expression", None),
        }
    result[folder] = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}
with open(sys.argv[1], "w") as f:
    json.dump(result, f)
'''


def _variants() -> dict[str, str]:
    """Schedules the examples do not exercise: two batch schedules, `retrain every` alone, no retraining."""
    churn = (REPO / "specs/churn.mlspec").read_text(encoding="utf-8")
    two = churn.replace("project churn {", "project two_schedules {").replace(
        "serve churn_api {", 'serve weekly { model = churn_risk; mode = batch; schedule = "0 5 * * 1"; output = "scores/weekly.parquet" }\n\nserve churn_api {')
    two = two.replace("-> retrain, alert(oncall)", "-> alert(oncall)")
    never = churn.replace("project churn {", "project no_retrain {").replace(
        "-> retrain, alert(oncall)", "-> alert(oncall)").replace("retrain every 30d", "")
    return {"two_schedules": two, "no_retrain": never}


def _compile_text(path: Path, text: str) -> tuple[Any, Any]:
    path.write_text(text, encoding="utf-8")
    result = compile_paths([path])
    assert result.ok, result.diagnostics
    return result.checked


def airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "PYTHONWARNINGS": "ignore"})
    return env


@pytest.fixture(scope="module")
def dagbags(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    if not HAVE_AIRFLOW:
        pytest.skip("apache-airflow is not installed")
    root = tmp_path_factory.mktemp("airflow")
    folders = {}
    for name in SPECS:
        for op in OPERATORS:
            folder = root / "dags" / f"{name}-{op}"
            folder.mkdir(parents=True)
            for rel, text in golden_files(name, "airflow", {"operator": op}).items():
                (folder / rel).write_text(text)
            folders[(name, op)] = str(folder)
    for variant, text in _variants().items():
        spec, dag = _compile_text(root / f"{variant}.mlspec", text)
        folder = root / "dags" / variant
        folder.mkdir(parents=True)
        for rel, body in generate("airflow", spec, dag, f"{variant}.mlspec").items():
            (folder / rel).write_text(body)
        folders[(variant, "bash")] = str(folder)
    out = root / "result.json"
    proc = subprocess.run([PYTHON, "-c", PROBE, str(out), *folders.values()], env=airflow_env(root / "home"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(out.read_text())
    return {key: data[folder] for key, folder in folders.items()}


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("name", SPECS)
def test_generated_modules_parse(name: str, op: str) -> None:
    for rel, text in golden_files(name, "airflow", {"operator": op}).items():
        ast.parse(text, rel)


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("name", SPECS)
def test_dagbag_imports_with_zero_errors_and_mirrors_the_mlspec_dag(name: str, op: str,
                                                                     dagbags: dict[Any, Any]) -> None:
    bag = dagbags[(name, op)]
    assert bag["errors"] == {}
    spec, dag = example(name)
    ctx = make_context(spec, dag, f"specs/{name}.mlspec")
    pipeline = bag["dags"][f"{name}_pipeline"]["tasks"]
    assert set(pipeline) == {task_id(n) for n in ctx.nodes}
    edges = {(a, b) for a, t in pipeline.items() for b in t["downstream"]}
    assert edges == {(task_id(a), task_id(b)) for a, b in ctx.edges}
    operator = "BashOperator" if op == "bash" else "KubernetesPodOperator"
    for nid in ctx.nodes:
        t = pipeline[task_id(nid)]
        gate = nid.startswith("gate:")  # a rejection is deterministic: the gate task is not retried
        assert t["operator"] == operator and t["retries"] == (0 if gate else 2) and t["backoff"] == 2.0
        assert t["callback"] and t["timeout"] == (180 if nid.startswith("model:") else 60) * 60
        args = ["run", "--node", nid, f"{name}.mlspec", *(["--fail-on-rejected"] if gate else [])]
        if op == "bash":
            assert t["command"].endswith(" ".join(args))
        else:
            assert t["command"] == ["mlspec", *args]
    assert any(n.startswith("gate:") for n in ctx.nodes)
    monitor = bag["dags"][f"{name}_monitor"]["tasks"]
    assert monitor["monitor"]["retries"] == 0 and monitor["monitor"]["downstream"] == ["request_retrain"]
    request = monitor["request_retrain"]
    assert request["trigger_rule"] == "all_failed" and request["outlets"] == [f"mlspec://{name}/retrain"]
    retrain = bag["dags"][f"{name}_retrain"]
    (monitored,) = {m.model for m in spec.monitors}  # fraud has two models: only the monitored one retrains
    assert list(retrain["tasks"]) == [f"retrain_{monitored}"] and retrain["timetable"] == "AssetOrTimeSchedule"
    task = retrain["tasks"][f"retrain_{monitored}"]
    args = ["retrain", f"{name}.mlspec", "--model", monitored, "--fail-on-rejected"]
    if op == "bash":
        assert task["command"].endswith(" ".join(args))
    else:
        assert task["command"] == ["mlspec", *args]
    assert task["retries"] == 0, "a retry of a rejected retrain would be skipped by the frequency guardrail"


PUSH_VARIABLE = "{{ var.value.get('MLSPEC_PUSHGATEWAY_URL', '') }}"


def _fake_mlspec(bin_dir: Path) -> dict[str, str]:
    """An `mlspec` on PATH that prints its argv as JSON: what the monitor task would run."""
    bin_dir.mkdir()
    script = bin_dir / "mlspec"
    script.write_text(f"#!{PYTHON}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSPEC_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _monitor_argv(op: str, command: Any, env: dict[str, str], cwd: Path) -> list[str]:
    cmd = ["bash", "-c", command] if op == "bash" else command  # the pod: the image's entrypoint execs its args
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv: list[str] = json.loads(proc.stdout)
    return argv


@pytest.mark.parametrize("op", OPERATORS)
def test_the_monitor_task_pushes_to_the_pushgateway_set_when_it_runs(op: str, dagbags: dict[Any, Any],
                                                                     tmp_path: Path) -> None:
    import jinja2

    task = dagbags[("churn", op)]["dags"]["churn_monitor"]["tasks"]["monitor"]
    assert task["env"]["MLSPEC_PUSHGATEWAY_VARIABLE"] == PUSH_VARIABLE
    # what Airflow renders from the Variable (real Airflow: the slow test); unset -> ''
    variable = jinja2.Template(PUSH_VARIABLE)
    assert variable.render(var={"value": {"MLSPEC_PUSHGATEWAY_URL": "http://var:9091"}}) == "http://var:9091"
    assert variable.render(var={"value": {}}) == ""
    env = _fake_mlspec(tmp_path / "bin")
    base = ["monitor", "churn.mlspec"]
    assert _monitor_argv(op, task["command"], env, tmp_path) == base, "nothing set: no --pushgateway"
    env["MLSPEC_PUSHGATEWAY_URL"] = "http://env:9091"
    assert _monitor_argv(op, task["command"], env, tmp_path) == [*base, "--pushgateway", "http://env:9091"]
    env["MLSPEC_PUSHGATEWAY_VARIABLE"] = "http://var:9091"  # the Airflow Variable wins over the environment
    assert _monitor_argv(op, task["command"], env, tmp_path) == [*base, "--pushgateway", "http://var:9091"]
    env["MLSPEC_PUSHGATEWAY_VARIABLE"] = hostile = "http://x/ $(touch pwned) `touch pwned` *;touch pwned"
    assert _monitor_argv(op, task["command"], env, tmp_path) == [*base, "--pushgateway", hostile]
    assert not (tmp_path / "pwned").exists()

    # the option is the fallback when neither is set, and only that: it never overrides them
    spec, dag = example("churn")
    module = generate("airflow", spec, dag, "specs/churn.mlspec",
                      {"operator": op, "pushgateway_url": "http://option:9091"})["churn_monitor.py"]
    keep = [n for n in ast.parse(module).body if isinstance(n, ast.Assign)
            and getattr(n.targets[0], "id", None) in ("PUSHGATEWAY_URL", "WITH_PUSHGATEWAY")]
    consts: dict[str, Any] = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "churn_monitor.py", "exec"), consts)
    assert consts["PUSHGATEWAY_URL"] == "http://option:9091"
    wrapper = consts["WITH_PUSHGATEWAY"]
    command = shlex.join([*wrapper, "mlspec", *base]) if op == "bash" else [*wrapper, "mlspec", *base]
    assert task["command"] == (command.replace("http://option:9091", "''") if op == "bash"
                               else [*command[:4], "", *command[5:]]), "the DagBag's command is this one"
    for key in ("MLSPEC_PUSHGATEWAY_VARIABLE", "MLSPEC_PUSHGATEWAY_URL"):
        env.pop(key)
    assert _monitor_argv(op, command, env, tmp_path) == [*base, "--pushgateway", "http://option:9091"]
    env["MLSPEC_PUSHGATEWAY_URL"] = "http://env:9091"
    assert _monitor_argv(op, command, env, tmp_path) == [*base, "--pushgateway", "http://env:9091"]


def test_list_targets_tells_unset_options_from_derived_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from mlspec.cli import main

    assert main(["compile", "--list-targets"]) == 0
    listing: dict[str, dict[str, str]] = {}
    target = ""
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith(" "):
            target = line.split()[0]
            listing[target] = {}
        else:
            key, _, shown = line.strip().removeprefix("--option ").partition("=")
            listing[target][key] = shown
    for name in ("airflow", "k8s"):  # empty and nothing fills it in: no Pushgateway, the current namespace
        assert listing[name]["pushgateway_url"] == "(unset)" and listing[name]["namespace"] == "(unset)"
        assert listing[name]["image"] == "(derived: mlspec-<project>:<fingerprint[:12]>, the docker target's tag)"
        assert listing[name]["secret_name"] == "(derived: mlspec-<project>-secrets)"
        assert listing[name]["workspace_claim"] == "(derived: mlspec-<project>-workspace)"
    assert listing["k8s"]["registry_url"] == "(derived: the workspace claim's registry)"
    assert listing["docker"]["out_dir"] == "(derived: the output directory)"
    assert listing["airflow"]["operator"] == "bash" and listing["dvc"] == {"fail_on_rejected": "false"}
    assert not any(v == "(derived)" for options in listing.values() for v in options.values())


def test_schedules_come_from_the_spec(dagbags: dict[Any, Any]) -> None:
    churn = dagbags[("churn", "bash")]["dags"]
    assert churn["churn_pipeline"]["timetable"] == "CronTriggerTimetable"
    assert churn["churn_pipeline"]["summary"] == "0 2 * * *"
    fraud = dagbags[("fraud", "bash")]["dags"]  # realtime only: nothing schedules training but retraining
    assert fraud["fraud_pipeline"]["timetable"] == "NullTimetable"
    assert churn["churn_monitor"]["summary"] == "0 * * * *"


def test_schedule_variants(dagbags: dict[Any, Any]) -> None:
    two = dagbags[("two_schedules", "bash")]
    assert two["errors"] == {}
    assert two["dags"]["two_schedules_pipeline"]["timetable"] == "MultipleCronTriggerTimetable"
    assert {"score_churn_risk", "score_weekly"} <= set(two["dags"]["two_schedules_pipeline"]["tasks"])
    assert two["dags"]["two_schedules_retrain"]["timetable"] == "DeltaTriggerTimetable"
    assert list(two["dags"]["two_schedules_monitor"]["tasks"]) == ["monitor"]  # no retrain action: no asset
    never = dagbags[("no_retrain", "bash")]
    assert never["errors"] == {} and set(never["dags"]) == {"no_retrain_pipeline", "no_retrain_monitor"}


def test_secrets_are_airflow_variables() -> None:
    text = golden_files("fraud", "airflow")["fraud_monitor.py"]
    assert "SECRETS = ('FRAUD_ONCALL_WEBHOOK_URL', 'SRE_WEBHOOK_URL')" in text
    assert '"{{ var.value." + name + " }}"' in text
    k8s = golden_files("fraud", "airflow", {"operator": "kubernetes"})["fraud_monitor.py"]
    assert 'Secret("env", name, SECRET_NAME, name)' in k8s and "SECRET_NAME = 'mlspec-fraud-secrets'" in k8s


@pytest.mark.slow
def test_airflow_dags_test_runs_the_churn_pipeline(tmp_path: Path) -> None:
    if not HAVE_AIRFLOW:
        pytest.skip("apache-airflow is not installed")
    project = tmp_path / "project"
    subprocess.run([mlspec_bin(), "demo", "churn", str(project), "--customers", "300"], check=True,
                   capture_output=True)
    spec, dag = compile_paths([project / "churn.mlspec"]).checked
    dags = tmp_path / "dags"
    dags.mkdir()
    for rel, text in generate("airflow", spec, dag, "churn.mlspec").items():
        (dags / rel).write_text(text)
    env = airflow_env(tmp_path / "home")
    env.update({"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "MLSPEC_PROJECT_DIR": str(project),
                "MLSPEC_BIN": mlspec_bin(), "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    airflow = str(Path(PYTHON).parent / "airflow")
    for cmd in ([airflow, "db", "migrate"], [airflow, "dags", "test", "churn_pipeline", "2026-06-01"]):
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    champion = json.loads((project / ".mlspec/registry/churn_risk/champion.json").read_text())
    assert champion["current"], "a champion model exists after the Airflow run"
    assert (project / "scores/churn.parquet").exists()
    import duckdb  # every executed node ran once, as its own task, and succeeded

    with duckdb.connect(str(project / ".mlspec/warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT node, status, count(DISTINCT run_id) FROM _mlspec_node_runs GROUP BY ALL").fetchall()
    ctx = make_context(spec, dag, "churn.mlspec")
    assert sorted(rows) == sorted((n, "ok", 1) for n in ctx.nodes)

    # A gate no candidate passes: the next DAG run's gate task fails (exit 3, no retry), scoring waits,
    # and the champion stays.
    text = (project / "churn.mlspec").read_text(encoding="utf-8")
    assert "    auc >= 0.70\n" in text
    (project / "churn.mlspec").write_text(text.replace("    auc >= 0.70\n", "    auc >= 0.999\n"), encoding="utf-8")
    spec, dag = compile_paths([project / "churn.mlspec"]).checked
    for rel, text in generate("airflow", spec, dag, "churn.mlspec").items():
        (dags / rel).write_text(text)
    proc = subprocess.run([airflow, "dags", "test", "churn_pipeline", "2026-06-02"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    states = subprocess.run([airflow, "tasks", "states-for-dag-run", "churn_pipeline", "2026-06-02", "-o", "json"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert states.returncode == 0, states.stderr[-4000:]
    by_task = {t["task_id"]: t["state"] for t in json.loads(states.stdout[states.stdout.index("["):])}
    assert by_task["gate_churn_risk"] == "failed", log[-6000:]
    assert by_task["score_churn_risk"] == "upstream_failed"
    assert all(state == "success" for t, state in by_task.items() if t not in ("gate_churn_risk", "score_churn_risk"))
    assert "was rejected by its gate: auc >= 0.999 (auc = " in log, log[-6000:]
    after = json.loads((project / ".mlspec/registry/churn_risk/champion.json").read_text())
    assert after["current"] == champion["current"], "the rejected candidate never becomes the champion"

    # The monitor task pushes mlspec_monitor_value to the Pushgateway of the Airflow Variable
    # MLSPEC_PUSHGATEWAY_URL (here from AIRFLOW_VAR_..., as Airflow reads Variables from the environment).
    bodies: list[tuple[str, str, bytes]] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            bodies.append((self.command, self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = _record

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env.update({"AIRFLOW_VAR_MLSPEC_PUSHGATEWAY_URL": url, "AIRFLOW_VAR_ONCALL_WEBHOOK_URL": f"{url}/alerts"})
    try:
        proc = subprocess.run([airflow, "tasks", "test", "churn_monitor", "monitor", "2026-06-03"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=900)
    finally:
        server.shutdown()
    pushes = [(m, p, b) for m, p, b in bodies if p.startswith("/metrics/job/")]
    assert pushes, f"nothing pushed to the Pushgateway:\n{(proc.stdout + proc.stderr)[-6000:]}"
    method, where, body = pushes[0]
    assert method == "PUT" and where == "/metrics/job/mlspec_churn" and b"mlspec_monitor_value{" in body
