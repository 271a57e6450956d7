"""`mlspec monitor --pushgateway URL --metrics-file PATH`: the gauge the generated PrometheusRule reads.

A real HTTP receiver on 127.0.0.1 records what prometheus_client pushes; the generated rules' PromQL
selectors and thresholds are parsed and evaluated against the pushed series, so the exporter and
mlspec/backends/k8s/alerts.py cannot drift apart (labels, names, units).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlspec.backends import generate
from mlspec.compiler import compile_paths
from mlspec.runtime.monitoring.promtext import MONITOR_GAUGE, MONITOR_LABELS
from tests.runtime.monitoring.conftest import Receiver, World, cli, with_rules

RULES = """
  psi(features) > 0.25 -> alert(oncall)
  js(prediction) > 0.1 -> alert(oncall)
  freshness(orders) > 26h -> alert(oncall)
  null_rate(activity.days_since_order) > 0.5 -> alert(oncall)
  quarantine_rate(orders) > 0.05 -> alert(oncall)
  auc < 0.65 over 30d -> retrain, alert(oncall)
  latency_p99 > 50ms -> alert(sre)
"""
OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                  "<=": operator.le, "==": operator.eq, "!=": operator.ne}
Series = dict[tuple[str, ...], float]


def _series(text: str) -> Series:
    """The monitor gauge's samples, read by prometheus_client's own parser."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == MONITOR_GAUGE:
                assert set(s.labels) == set(MONITOR_LABELS), s.labels
                out[tuple(s.labels[k] for k in MONITOR_LABELS)] = s.value
    return out


_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"')


def _promql_unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def _parse_rule(expr: str) -> tuple[list[tuple[str, str, str]], str, float]:
    """`mlspec_monitor_value{a="x",b=~"y|z"} > 0.25` -> matchers, comparison, threshold."""
    m = re.fullmatch(rf"{MONITOR_GAUGE}\{{(.*)\}} (>=|<=|==|!=|>|<) (\S+)", expr)
    assert m, f"not a monitor gauge rule: {expr}"
    matchers = [(k, op, _promql_unquote(v)) for k, op, v in _MATCHER.findall(m.group(1))]
    assert ",".join(f'{k}{op}"' for k, op, _ in matchers) == ",".join(
        f'{k}{op}"' for k, op, _ in _MATCHER.findall(m.group(1))) and matchers, expr
    return matchers, m.group(2), float(m.group(3))


def _selects(matchers: list[tuple[str, str, str]], labels: dict[str, str]) -> bool:
    for key, op, value in matchers:
        have = labels.get(key, "")
        ok = {"=": have == value, "!=": have != value, "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def _monitor_rules(project: Path) -> list[dict[str, Any]]:
    spec, dag = compile_paths([project / "churn.mlspec"]).checked
    files = generate("k8s", spec, dag, "churn.mlspec")
    docs = [d for text in files.values() for d in yaml.safe_load_all(text) if d["kind"] == "PrometheusRule"]
    return [r for d in docs for g in d["spec"]["groups"] for r in g["rules"] if MONITOR_GAUGE in r["expr"]]


def test_pushed_series_are_what_the_generated_alert_rules_select(world: World, tmp_path: Path,
                                                                 receiver: Receiver) -> None:
    project = world.copy(tmp_path / "p", spec=with_rules(RULES))
    world.arrive(project)  # drifted data: some rules fire
    textfile = tmp_path / "node-exporter" / "mlspec.prom"
    textfile.parent.mkdir()
    r = cli("monitor", "--json", "--no-alerts", "--pushgateway", receiver.root, "--metrics-file", textfile, project)
    assert r.rc == 1, r.err  # rules fire
    assert "Traceback" not in r.err
    (push,) = receiver.requests
    assert push["method"] == "PUT" and push["path"] == "/metrics/job/mlspec_churn"
    assert push["headers"]["Content-Type"].startswith("text/plain")
    pushed = _series(push["text"])
    assert pushed == _series(textfile.read_text(encoding="utf-8")), "the textfile holds the same series"
    assert f"pushed {len(pushed)} series to {receiver.root} (job mlspec_churn)" in r.err

    measured = {(m["monitor"], m["metric"], m["subject"]): m for m in r.data["measurements"]
                if m["rule"] is not None}
    rules = _monitor_rules(project)
    assert {r["labels"]["mlspec_metric"] for r in rules} == {"psi", "js", "freshness", "null_rate",
                                                            "quarantine_rate", "auc"}
    fired = 0
    for rule in rules:
        matchers, op, threshold = _parse_rule(rule["expr"])
        hits = {k: v for k, v in pushed.items() if _selects(matchers, dict(zip(MONITOR_LABELS, k, strict=True)))}
        expected = {k for k, m in measured.items() if m["metric"] == rule["labels"]["mlspec_metric"]
                    and m["value"] is not None}
        assert {k[1:] for k in hits} == expected, rule["alert"]
        for (_, monitor, metric, subject), value in hits.items():
            m = measured[(monitor, metric, subject)]
            # Prometheus would fire exactly when `mlspec monitor` did: same value, same unit, same threshold
            assert OPS[op](value, threshold) == (m["status"] == "alert"), (rule["alert"], subject, value, m)
            fired += m["status"] == "alert"
    assert fired >= 2, "the drifted data makes some rules fire"

    freshness = pushed[("churn", "churn_risk", "freshness", "orders")]
    assert freshness == pytest.approx(measured[("churn_risk", "freshness", "orders")]["value"] / 1000.0)
    # info rows (every feature's statistics) are exported too, in base units
    assert ("churn", "churn_risk", "ks_pvalue", "activity.orders_30d") in pushed
    assert not any(k[2].startswith("latency") for k in pushed), "no prediction log, no latency value"


def test_a_push_that_fails_fails_the_job_without_a_traceback(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    closed = _closed_port()
    r = cli("monitor", "--no-alerts", "--pushgateway", f"http://127.0.0.1:{closed}", project)
    assert r.rc == 1
    assert f"error: cannot push to the Pushgateway at http://127.0.0.1:{closed}:" in r.err
    assert "Traceback" not in r.err
    r = cli("monitor", "--no-alerts", "--metrics-file", tmp_path / "missing" / "dir" / "x.prom", project)
    assert r.rc == 1 and "error: cannot write " in r.err and "Traceback" not in r.err


def test_an_empty_url_warns_and_dry_run_exports_nothing(world: World, tmp_path: Path, receiver: Receiver) -> None:
    project = world.copy(tmp_path / "p")
    r = cli("monitor", "--no-alerts", "--pushgateway", "", project)
    assert r.rc == 0, r.err
    assert "warning: --pushgateway is empty" in r.err
    textfile = tmp_path / "x.prom"
    r = cli("monitor", "--dry-run", "--pushgateway", receiver.root, "--metrics-file", textfile, project)
    assert r.rc == 0, r.err
    assert receiver.requests == [] and not textfile.exists()
    assert "--dry-run: nothing pushed or written" in r.err


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
