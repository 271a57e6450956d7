"""The names the generated targets and the runtime commands share (mlspec.contract) are defined once,
and the targets write exactly those: the exit code a Job fails on, the environment variables it sets."""

from __future__ import annotations

import yaml

from mlspec import contract
from tests.backends.support import golden_files


def test_the_runtime_uses_the_contract_names() -> None:
    from mlspec.runtime import runner
    from mlspec.runtime.stream import commands

    assert runner.EXIT_REJECTED is contract.EXIT_REJECTED
    assert commands.STREAM_URL_ENV is contract.STREAM_URL_ENV


def test_k8s_writes_the_contract_names() -> None:
    (score,) = yaml.safe_load_all(golden_files("churn", "k8s")["score-churn_risk.yaml"])
    rules = score["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert [r["onExitCodes"]["values"] for r in rules] == [[contract.EXIT_REJECTED]]
    monitor = yaml.safe_load_all(golden_files("churn", "k8s")["monitor-churn_risk.yaml"])
    (container,) = next(monitor)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-1] == f"$({contract.PUSHGATEWAY_ENV})"
    assert contract.PUSHGATEWAY_ENV in [e["name"] for e in container["env"]]
    (stream,) = [d for d in yaml.safe_load_all(golden_files("sensors", "k8s")["stream-failure_stream.yaml"])
                 if d["kind"] == "Deployment"]
    (container,) = stream["spec"]["template"]["spec"]["containers"]
    assert contract.STREAM_URL_ENV in [e["name"] for e in container["env"]]


def test_airflow_writes_the_contract_names() -> None:
    files = golden_files("churn", "airflow")
    assert f"var.value.get('{contract.PUSHGATEWAY_ENV}', '')" in files["churn_monitor.py"]
    assert f"${{{contract.PUSHGATEWAY_ENV}:-$1}}" in files["churn_monitor.py"]
    assert f"(exit {contract.EXIT_REJECTED}," in files["churn_retrain.py"]
