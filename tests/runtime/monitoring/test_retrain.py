"""The whole cycle on demo data: drift -> alert -> retrain -> gate -> promote; a worse candidate is blocked;
guardrails hold; rollback returns batch scoring to the previous version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from mlspec.compiler import compile_paths
from mlspec.runtime.monitoring.evaluate import MonitorRun
from mlspec.runtime.monitoring.retrain import actions_due
from mlspec.runtime.monitoring.store import RETRAINS
from mlspec.runtime.registry import Registry
from mlspec.runtime.runner import EXIT_REJECTED
from mlspec.runtime.warehouse import STATE_DIR, Warehouse
from tests.runtime.monitoring.conftest import CHURN, MODEL, Receiver, World, champion, cli, with_rules

DRIFT_RETRAINS = """
  psi(features) > 0.25 -> alert(oncall), retrain
  js(prediction) > 0.1 -> alert(oncall)
  retrain every 30d
"""
IMPOSSIBLE_GATE = "    auc >= 0.99\n"


def _scored_by(project: Path) -> set[str]:
    return set(pl.read_parquet(project / "scores" / "churn.parquet")["model_version"].to_list())


def _score(project: Path) -> set[str]:
    r = cli("score", "--as-of", "2026-10-01", project)
    assert r.rc == 0, r.err
    return _scored_by(project)


def test_drift_alert_retrain_gate_promote_then_rollback(
        world: World, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    project = world.copy(tmp_path / "p", with_rules(DRIFT_RETRAINS))
    world.arrive(project)  # two months of fresh, drifted data
    monkeypatch.setenv("ONCALL_WEBHOOK_URL", receiver.url)

    r = cli("monitor", "--json", "--act", project)
    assert r.rc == 1, r.err  # alerts fired (for schedulers), even though the action then ran
    d = r.data
    # drift detected -> alert delivered to a real HTTP endpoint
    assert any(m["status"] == "alert" and m["metric"] == "psi" for m in d["measurements"])
    assert {b["rule"] for b in receiver.bodies()} == {"psi(features) > 0.25", "js(prediction) > 0.1"}
    psi_alert = next(b for b in receiver.bodies() if b["metric"] == "psi")
    assert psi_alert["retrain"] is True and psi_alert["model_version"] == world.champion
    # -> retrain on the fresh data -> gate against the champion -> promote
    (rt,) = d["retrains"]
    assert rt["trigger"] == "rule `psi(features) > 0.25`"
    assert rt["status"] == "promoted", rt["reason"]
    assert rt["champion_before"] == world.champion and rt["champion_after"] == rt["version"] != world.champion
    assert rt["new_labels"] > 100 and all(g["passed"] for g in rt["gate"])
    assert [g["text"] for g in rt["gate"]] == ["auc >= 0.70", "auc >= champion.auc - 0.005"]
    new = rt["version"]
    assert champion(project) == new
    assert _scored_by(project) == {new} and rt["scored"] == ["churn_risk"]  # batch serving re-scored

    # the next evaluation: the alert is de-duplicated, the retrain is held back by the frequency guardrail
    again = cli("monitor", "--json", "--act", "--no-refresh", project).data
    assert {a["status"] for a in again["alerts"]} == {"suppressed"} and len(receiver.requests) == 2
    (rt2,) = again["retrains"]
    assert rt2["status"] == "skipped" and "at most one per 1d" in rt2["reason"]
    assert champion(project) == new

    # rollback is the incident procedure: the champion pointer flips back and scoring follows it
    rb = cli("rollback", project)
    assert rb.rc == 0 and f"{new} -> {world.champion}" in rb.out
    assert champion(project) == world.champion
    assert _score(project) == {world.champion}
    assert cli("promote", new, project).rc == 0
    assert _score(project) == {new}
    with Warehouse.open(project, read_only=True) as wh:
        rows = wh.conn.execute(f"SELECT status, trigger FROM {RETRAINS} ORDER BY started_at").fetchall()
    assert [s for s, _ in rows] == ["promoted", "skipped"]


def test_a_worse_candidate_is_blocked_by_the_gate(
        world: World, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    project = world.copy(tmp_path / "p", with_rules(DRIFT_RETRAINS, gate=IMPOSSIBLE_GATE))
    world.arrive(project)
    before = _scored_by(project)
    monkeypatch.setenv("ONCALL_WEBHOOK_URL", receiver.url)
    r = cli("monitor", "--json", "--act", project)
    (rt,) = r.data["retrains"]
    assert rt["status"] == "rejected" and "auc >= 0.99" in rt["reason"]
    assert rt["version"] != world.champion and rt["champion_after"] == world.champion
    assert champion(project) == world.champion
    assert _scored_by(project) == before == {world.champion}
    registry = Registry(project / STATE_DIR / "registry")
    assert registry.get(MODEL, rt["version"]).status == "rejected"
    assert len(receiver.requests) == 2  # the drift alerts still went out


def test_retrain_fail_on_rejected_exits_3_naming_candidate_conditions_and_champion(
        world: World, tmp_path: Path) -> None:
    """What the generated Airflow retraining task runs: a rejected candidate fails it (exit 3), with the message
    `mlspec run --fail-on-rejected` prints; without the flag a rejection is an outcome, exit 0."""
    project = world.copy(tmp_path / "p", with_rules(DRIFT_RETRAINS, gate=IMPOSSIBLE_GATE))
    world.arrive(project)
    r = cli("retrain", "--fail-on-rejected", project)
    assert r.rc == EXIT_REJECTED == 3, r.err
    assert "Traceback" not in r.err
    with Warehouse.open(project, read_only=True) as wh:
        (version,) = wh.conn.execute(f"SELECT version FROM {RETRAINS} WHERE status = 'rejected'").fetchone()
    assert f"retrain {MODEL}: rejected" in r.out
    (line,) = [ln for ln in r.err.splitlines() if "rejected by its gate" in ln]
    assert line.startswith(f"error in gate:{MODEL}: version {version} of model `{MODEL}` was rejected by its gate: "
                           "auc >= 0.99 (auc = "), line
    assert line.endswith(f"; the champion stays {world.champion}"), line
    assert champion(project) == world.champion

    plain = cli("retrain", "--json", "--min-interval", "0s", project)  # the same verdict, no flag
    assert plain.rc == 0, plain.err
    assert plain.data["status"] == "rejected" and plain.data["version"] == version
    assert "rejected by its gate" not in plain.err
    skipped = cli("retrain", "--fail-on-rejected", project)  # no rejection (the frequency guardrail): exit 0
    assert skipped.rc == 0 and f"retrain {MODEL}: skipped" in skipped.out, skipped.err


def test_guardrails_new_labels_frequency_and_force(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")  # no new data since the champion was trained
    r = cli("retrain", "--json", project)
    assert r.rc == 0 and r.data["status"] == "skipped"
    assert r.data["new_labels"] == 0 and "0 new labelled row(s)" in r.data["reason"]
    forced = cli("retrain", "--json", "--force", project).data
    # same spec, same data: the deterministic rebuild is the champion itself
    assert forced["status"] == "unchanged" and forced["version"] == world.champion
    soon = cli("retrain", "--json", "--min-new-labels", "0", project).data
    assert soon["status"] == "skipped" and "the last retrain started" in soon["reason"]
    assert champion(project) == world.champion


@pytest.mark.parametrize(("rule", "why"), [
    ("  row_count() >= 100000000\n", "data checks failed in check:activity"),
    pytest.param("  null_rate(avg_basket_90d) < 0.0001 -> warn\n", "data checks warned", marks=pytest.mark.slow),
])
def test_no_promotion_when_data_checks_fail(world: World, tmp_path: Path, rule: str, why: str) -> None:
    anchor = "  row_count() >= 100\n"
    assert anchor in CHURN
    project = world.copy(tmp_path / "p", CHURN.replace(anchor, anchor + rule))
    world.arrive(project)
    r = cli("retrain", "--json", project)
    assert r.rc == 1 and r.data["status"] == "blocked" and why in r.data["reason"], r.data["reason"]
    assert champion(project) == world.champion


def test_retrain_every_is_due_once_the_champion_is_older_than_the_interval(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    compiled = compile_paths([project / "churn.mlspec"])
    created = Registry(project / STATE_DIR / "registry").get(MODEL).created_at
    born = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).replace(tzinfo=None)
    run = MonitorRun("r", "churn", (), project, born, born)
    assert actions_due(compiled, run, clock=lambda: born + dt.timedelta(days=29)) == []
    assert actions_due(compiled, run, clock=lambda: born + dt.timedelta(days=31)) == [
        (MODEL, "schedule `retrain every 30d`")]
