"""Alert sinks against real endpoints: an HTTP receiver on 127.0.0.1, a JSON-lines file, the log."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from mlspec.ir.spec import Action, Alert, Project, SecretRef, Spec
from mlspec.runtime.monitoring.alerts import alert_payloads, notify, send_webhook
from mlspec.runtime.monitoring.evaluate import Measurement, MonitorRun
from mlspec.runtime.monitoring.store import ALERTS, ensure_tables
from mlspec.runtime.warehouse import Warehouse
from tests.runtime.monitoring.conftest import Receiver

T0 = dt.datetime(2026, 11, 2, 8, 0)
RULE = "psi(features) > 0.25"
REQUIRED = ("spec", "model_version", "metric", "value", "threshold", "window", "runbook")


def _run(root: Path, targets: tuple[str, ...], values: tuple[float, ...] = (0.31, 0.52, 0.12)) -> MonitorRun:
    run = MonitorRun("run1", "churn", ("churn.mlspec",), root, T0, T0)
    subjects = ("activity.orders_30d", "activity.app_share_90d", "profile.plan")
    for subject, value in zip(subjects, values, strict=True):
        run.measurements.append(Measurement(
            "churn_risk", "churn_risk", "abc123def456", RULE, "drift", "psi", subject, value, 0.25, ">",
            "alert" if value > 0.25 else "ok", T0 - dt.timedelta(days=1), T0, 1420,
            actions=(Action("alert", targets),)))
    return run


def _spec(*alerts: Alert) -> Spec:
    return Spec(Project("churn"), alerts=alerts)


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    w = Warehouse.open(tmp_path)
    ensure_tables(w)
    yield w
    w.conn.close()


def _clock(t: dt.datetime):  # type: ignore[no-untyped-def]
    return lambda: t


def test_payload_leads_with_the_worst_subject_and_carries_every_field(tmp_path: Path) -> None:
    (name, payload), = alert_payloads(_run(tmp_path, ("oncall",)))
    assert name == "oncall"
    for k in REQUIRED:
        assert payload[k] is not None, k
    assert (payload["subject"], payload["value"], payload["threshold"], payload["op"]) == (
        "activity.app_share_90d", 0.52, 0.25, ">")
    assert [s["subject"] for s in payload["subjects"]] == ["activity.orders_30d", "activity.app_share_90d"]
    assert payload["model_version"] == "abc123def456" and payload["rule"] == RULE
    assert payload["window"] == {"start": "2026-11-01T08:00:00", "end": "2026-11-02T08:00:00"}
    from mlspec.ops.runbook import monitor_rule_anchor

    assert payload["runbook"].endswith(f"RUNBOOK.md#{monitor_rule_anchor('churn_risk', RULE)}")
    assert payload["runbook"].endswith("#monitor-rule-churn_risk-psi-features-gt-0-25")


def test_webhook_posts_json_to_a_real_receiver_with_the_url_from_env(
        tmp_path: Path, wh: Warehouse, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCALL_HOOK", receiver.url)
    spec = _spec(Alert("oncall", webhook=SecretRef("ONCALL_HOOK"), dedupe_ms=3_600_000))
    out = notify(wh, spec, tmp_path, _run(tmp_path, ("oncall",)), clock=_clock(T0))
    assert [(d.sink, d.status) for d in out] == [("webhook", "sent")]
    (req,) = receiver.requests
    assert req["path"] == "/hooks/oncall" and req["headers"]["Content-Type"] == "application/json"
    body = req["body"]
    assert body["metric"] == "psi" and body["value"] == 0.52 and body["spec"] == "churn"
    assert body["model_version"] == "abc123def456" and body["window"]["end"] == "2026-11-02T08:00:00"
    stored = wh.conn.execute(f"SELECT payload FROM {ALERTS}").fetchall()
    assert receiver.url not in stored[0][0]  # the secret never reaches the warehouse


def test_repeated_alert_is_deduplicated_within_the_interval(
        tmp_path: Path, wh: Warehouse, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCALL_HOOK", receiver.url)
    spec = _spec(Alert("oncall", webhook=SecretRef("ONCALL_HOOK"), dedupe_ms=3_600_000))
    statuses = []
    for minutes in (0, 30, 59, 61, 90, 122):
        out = notify(wh, spec, tmp_path, _run(tmp_path, ("oncall",)), clock=_clock(T0 + dt.timedelta(minutes=minutes)))
        statuses.append(out[0].status)
    assert statuses == ["sent", "suppressed", "suppressed", "sent", "suppressed", "sent"]
    assert len(receiver.requests) == 3
    rows = wh.conn.execute(f"SELECT status, count(*) FROM {ALERTS} GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("sent", 3), ("suppressed", 3)]


def test_slack_payload_is_text_and_blocks(
        tmp_path: Path, wh: Warehouse, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_HOOK", receiver.url)
    spec = _spec(Alert("team", webhook=SecretRef("SLACK_HOOK"), slack=True))
    notify(wh, spec, tmp_path, _run(tmp_path, ("team",)), clock=_clock(T0))
    body = receiver.bodies()[0]
    assert set(body) == {"text", "blocks"}
    assert "psi(features) > 0.25" in body["text"] and "abc123def456" in body["text"]
    section = body["blocks"][0]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "psi = 0.52" in section["text"]["text"] and "|runbook>" in section["text"]["text"]


def test_server_errors_are_retried_client_errors_are_not(receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    send_webhook(receiver.url, {"x": 1}, timeout=5)
    assert [r["status"] for r in receiver.requests] == [503, 500, 200]
    receiver.statuses = [404]
    with pytest.raises(OSError, match="HTTP 404"):
        send_webhook(receiver.url, {"x": 2}, timeout=5)
    assert len(receiver.requests) == 4


def test_failed_delivery_is_recorded_and_retried_next_time(
        tmp_path: Path, wh: Warehouse, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(Alert("oncall", webhook=SecretRef("ONCALL_HOOK")))
    monkeypatch.delenv("ONCALL_HOOK", raising=False)
    run = _run(tmp_path, ("oncall",))
    (d,) = notify(wh, spec, tmp_path, run, clock=_clock(T0))
    assert d.status == "failed" and "ONCALL_HOOK is not set" in (d.error or "")
    assert any("could not be delivered" in w for w in run.warnings)
    monkeypatch.setenv("ONCALL_HOOK", receiver.url)
    (d,) = notify(wh, spec, tmp_path, _run(tmp_path, ("oncall",)), clock=_clock(T0 + dt.timedelta(minutes=1)))
    assert d.status == "sent" and len(receiver.requests) == 1


def test_unreachable_webhook_fails_without_raising(tmp_path: Path, wh: Warehouse,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEAD_HOOK", "http://127.0.0.1:9/nothing-listens-here")
    spec = _spec(Alert("oncall", webhook=SecretRef("DEAD_HOOK")))
    (d,) = notify(wh, spec, tmp_path, _run(tmp_path, ("oncall",)), clock=_clock(T0))
    assert d.status == "failed" and d.error


def test_file_and_log_sinks(tmp_path: Path, wh: Warehouse, caplog: pytest.LogCaptureFixture) -> None:
    spec = _spec(Alert("sre", file="alerts/sre.jsonl", log=True))
    with caplog.at_level(logging.WARNING, logger="mlspec.alerts"):
        out = notify(wh, spec, tmp_path, _run(tmp_path, ("sre",)), clock=_clock(T0))
    assert sorted((d.sink, d.status) for d in out) == [("file", "sent"), ("log", "sent")]
    lines = (tmp_path / "alerts" / "sre.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 1 and record["alert"] == "sre" and record["value"] == 0.52
    for k in REQUIRED:
        assert k in record
    assert any("psi(features) > 0.25" in r.getMessage() for r in caplog.records)


def test_rules_that_do_not_fire_send_nothing(tmp_path: Path, wh: Warehouse) -> None:
    spec = _spec(Alert("sre", file="alerts/sre.jsonl"))
    assert notify(wh, spec, tmp_path, _run(tmp_path, ("sre",), values=(0.1, 0.2, 0.05)), clock=_clock(T0)) == []
    assert not (tmp_path / "alerts" / "sre.jsonl").exists()
