"""Alert sinks: log, file (JSON lines) and webhook (JSON POST, optionally Slack-shaped).

One alert is sent per firing rule and `alert` block, carrying the spec, model version, metric,
value, threshold, window and a runbook link; when a rule fires for several subjects (features)
the worst one leads and all are listed.  A rule that fired and was notified through a sink of
an alert block is not notified again through that sink within the block's `dedupe` interval
(default 1h): the attempt is recorded as `suppressed`; a failed delivery is retried next time.  Deliveries, sent or not, are rows of `_mlspec_alerts`,
which is also the de-duplication state.  Webhook URLs are read from the environment variable the
spec names (`env("NAME")`) at send time only, and never written anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlspec.ir.spec import Alert, Spec
from mlspec.runtime.monitoring.store import ALERTS, utc_now
from mlspec.runtime.warehouse import Warehouse

if TYPE_CHECKING:
    from mlspec.runtime.monitoring.evaluate import Measurement, MonitorRun

__all__ = ["Delivery", "alert_payloads", "notify", "runbook_link", "send_webhook", "slack_payload"]

log = logging.getLogger("mlspec.alerts")
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_ATTEMPTS = 3
RUNBOOK_ENV = "MLSPEC_RUNBOOK_URL"


@dataclass(frozen=True)
class Delivery:
    """One notification attempt through one sink of one alert block."""

    alert: str
    sink: str  # "log" | "file" | "webhook"
    status: str  # "sent" | "suppressed" | "failed"
    dedupe_key: str
    rule: str
    error: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"alert": self.alert, "sink": self.sink, "status": self.status, "dedupe_key": self.dedupe_key,
                "rule": self.rule, "error": self.error}


def runbook_link(root: Path, monitor: str, rule: str | None = None) -> str:
    """The rule's section of the generated runbook (`mlspec runbook -o RUNBOOK.md`).

    Base: `$MLSPEC_RUNBOOK_URL` (where the team publishes it), else the project's RUNBOOK.md; the
    anchor is the runbook's own (`monitor_rule_anchor`, or the monitor's section without a rule).
    """
    from mlspec.ops.runbook import monitor_rule_anchor, runbook_anchor

    base = os.environ.get(RUNBOOK_ENV) or (root / "RUNBOOK.md").resolve().as_uri()
    anchor = monitor_rule_anchor(monitor, rule) if rule else runbook_anchor("monitor", monitor)
    return f"{base}#{anchor}"


def _worst(ms: Sequence[Measurement]) -> Measurement:
    op = ms[0].op or ">"
    key: Callable[[Measurement], float] = lambda m: m.value if m.value is not None else 0.0  # noqa: E731
    return max(ms, key=key) if op in (">", ">=") else min(ms, key=key)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}{unit}" if unit == "ms" else f"{value:.4g}"


def alert_payloads(run: MonitorRun) -> list[tuple[str, dict[str, Any]]]:
    """(alert block name, payload) for every firing rule and each of its alert targets."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in run.firing:
        groups.setdefault((m.monitor, m.rule or ""), []).append(m)
    out: list[tuple[str, dict[str, Any]]] = []
    for (monitor, rule), ms in groups.items():
        lead = _worst(ms)
        targets = [t for a in lead.actions if a.kind == "alert" for t in a.targets]
        retrain = any(a.kind == "retrain" for a in lead.actions)
        subject = f" {lead.subject}" if lead.subject else ""
        summary = (f"[{run.project}] {monitor}: `{rule}` fired —{subject} {lead.metric} = "
                   f"{_fmt(lead.value, lead.unit)} (threshold {lead.op} {_fmt(lead.threshold, lead.unit)}), "
                   f"model {lead.model} version {lead.model_version}")
        payload = {
            "spec": run.project, "spec_files": list(run.spec_files), "monitor": monitor, "model": lead.model,
            "model_version": lead.model_version, "rule": rule, "kind": lead.kind, "metric": lead.metric,
            "subject": lead.subject, "value": lead.value, "threshold": lead.threshold, "op": lead.op,
            "unit": lead.unit, "status": "alert",
            "window": {"start": _iso(lead.window_start), "end": _iso(lead.window_end)},
            "subjects": [{"subject": m.subject, "value": m.value} for m in ms],
            "time": _iso(run.evaluated_at), "run_id": run.run_id, "retrain": retrain,
            "runbook": runbook_link(run.root, monitor, rule), "summary": summary,
        }
        out.extend((t, {**payload, "alert": t}) for t in targets)
    return out


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def slack_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (text + one mrkdwn section) for an alert payload."""
    lines = [f":rotating_light: *{payload['spec']} · {payload['monitor']}*: `{payload['rule']}` fired",
             f"{payload['subject'] or payload['metric']}: *{payload['metric']} = "
             f"{_fmt(payload['value'], payload['unit'])}* (threshold {payload['op']} "
             f"{_fmt(payload['threshold'], payload['unit'])})",
             f"model `{payload['model']}` version `{payload['model_version']}` · window "
             f"{payload['window']['start'] or ''} → {payload['window']['end']}",
             f"<{payload['runbook']}|runbook>"]
    return {"text": payload["summary"], "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                                 "text": "\n".join(lines)}}]}


def send_webhook(url: str, body: dict[str, Any], *, timeout: float = WEBHOOK_TIMEOUT,
                 attempts: int = WEBHOOK_ATTEMPTS) -> None:
    """POST JSON; retries connection errors and 5xx with backoff; raises OSError with the reason."""
    data = json.dumps(body, default=str, allow_nan=False).encode()
    last: Exception | None = None
    for attempt in range(attempts):
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "mlspec-monitor"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
                return
        except urllib.error.HTTPError as e:
            last = e
            if e.code < 500:
                raise OSError(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            last = e
        if attempt + 1 < attempts:
            time.sleep(0.25 * 2**attempt)
    reason = getattr(last, "reason", last)
    raise OSError(f"{type(last).__name__}: {reason}")


def _sinks(alert: Alert) -> list[str]:
    return [s for s, on in (("log", alert.log), ("file", alert.file is not None),
                            ("webhook", alert.webhook is not None)) if on]


def _deliver(sink: str, alert: Alert, payload: dict[str, Any], root: Path) -> None:
    if sink == "log":
        log.warning("%s", payload["summary"])
    elif sink == "file":
        assert alert.file is not None
        path = Path(alert.file) if Path(alert.file).is_absolute() else root / alert.file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, default=str, sort_keys=True, allow_nan=False) + "\n")
    else:
        assert alert.webhook is not None
        url = os.environ.get(alert.webhook.env)
        if not url:
            raise OSError(f"environment variable {alert.webhook.env} is not set (the webhook of alert `{alert.name}`)")
        send_webhook(url, slack_payload(payload) if alert.slack else payload)


def notify(wh: Warehouse, spec: Spec, root: Path, run: MonitorRun, *,
           clock: Callable[[], dt.datetime] = utc_now) -> list[Delivery]:
    """Deliver every firing rule's alerts, de-duplicated per alert block within its `dedupe` interval."""
    alerts = {a.name: a for a in spec.alerts}
    out: list[Delivery] = []
    for name, payload in alert_payloads(run):
        alert = alerts.get(name)
        if alert is None:
            continue
        key = f"{payload['spec']}/{payload['monitor']}/{payload['rule']}/{name}"
        now = clock()
        for sink in _sinks(alert):
            last = wh.scalar(f"SELECT max(sent_at) FROM {ALERTS} WHERE dedupe_key = ? AND sink = ? "
                             "AND status = 'sent'", [key, sink])
            error = None
            if last is not None and (now - last) < dt.timedelta(milliseconds=alert.dedupe_ms):
                status = "suppressed"
            else:
                try:
                    _deliver(sink, alert, payload, root)
                    status = "sent"
                except OSError as e:
                    status, error = "failed", str(e)
                    run.warnings.append(f"alert `{name}` ({sink}) could not be delivered: {e}")
            wh.conn.execute(f"INSERT INTO {ALERTS} VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [now, name, sink, key, status, error,
                             json.dumps(payload, default=str, sort_keys=True, allow_nan=False)])
            out.append(Delivery(name, sink, status, key, payload["rule"], error))
    return out
