"""Monitoring's own warehouse tables: measurements, alert deliveries, retrains and logged predictions.

* ``_mlspec_monitoring``: one row per metric per window (value, threshold, status, window, time) —
  the history `mlspec report` plots.  Re-evaluating the same window replaces its rows.
* ``_mlspec_alerts``: every notification attempt (sent / suppressed / failed) — de-duplication
  state: a key sent within the alert's `dedupe` interval is suppressed.
* ``_mlspec_retrains``: every retrain attempt with its guardrail and gate outcome — the maximum
  retrain frequency and `retrain every` read it.
* ``_mlspec_predictions``: predictions kept for outcome monitoring (batch score files are
  overwritten by each scoring run; their rows are copied here so labels arriving later can be joined).
All times are naive UTC timestamps, like the rest of the warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from mlspec.runtime.warehouse import Warehouse

MONITORING = "_mlspec_monitoring"
ALERTS = "_mlspec_alerts"
RETRAINS = "_mlspec_retrains"
PREDICTIONS = "_mlspec_predictions"

_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MONITORING} (run_id VARCHAR, evaluated_at TIMESTAMP, monitor VARCHAR, "
    "model VARCHAR, model_version VARCHAR, rule VARCHAR, kind VARCHAR, metric VARCHAR, subject VARCHAR, "
    "value DOUBLE, threshold DOUBLE, op VARCHAR, status VARCHAR, unit VARCHAR, window_start TIMESTAMP, "
    "window_end TIMESTAMP, n BIGINT, detail VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS {ALERTS} (sent_at TIMESTAMP, alert VARCHAR, sink VARCHAR, dedupe_key VARCHAR, "
    "status VARCHAR, error VARCHAR, payload VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS {RETRAINS} (started_at TIMESTAMP, finished_at TIMESTAMP, model VARCHAR, "
    "trigger VARCHAR, status VARCHAR, reason VARCHAR, version VARCHAR, champion_before VARCHAR, "
    "champion_after VARCHAR, new_labels BIGINT, run_id VARCHAR, detail VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS {PREDICTIONS} (model VARCHAR, source VARCHAR, serve VARCHAR, entity_key VARCHAR, "
    "as_of TIMESTAMP, score DOUBLE, prediction VARCHAR, model_version VARCHAR, recorded_at TIMESTAMP)",
)


def ensure_tables(wh: Warehouse) -> None:
    """Create monitoring's tables if they are missing (idempotent)."""
    for ddl in _DDL:
        wh.conn.execute(ddl)


def format_duration(ms: float) -> str:
    """Milliseconds as a spec would write them (26h, 50ms), else in the largest unit: 1.5s, 26.1d."""
    units = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
    for i, (unit, size) in enumerate(units):
        if abs(ms) >= size or unit == "ms":
            for u, sz in units[i:i + 2]:  # whole in this unit, or under 100 of the next smaller one
                if ms % sz == 0 and (u == unit or abs(ms) / sz < 100):
                    return f"{int(ms // sz)}{u}"
            return f"{ms / size:.3g}{unit}"
    return f"{ms:.3g}ms"


def utc_now() -> dt.datetime:
    """Wall-clock now as a naive UTC timestamp (the warehouse convention)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def write_measurements(wh: Warehouse, rows: Sequence[dict[str, Any]]) -> None:
    """Insert measurement rows, replacing earlier rows of the same metric and window."""
    if not rows:
        return
    conn = wh.conn
    conn.execute("BEGIN TRANSACTION")
    try:
        for r in rows:
            conn.execute(f"DELETE FROM {MONITORING} WHERE monitor = ? AND coalesce(rule, '') = coalesce(?, '') "
                         "AND metric = ? AND subject = ? AND window_end = ? "
                         "AND window_start IS NOT DISTINCT FROM ?",
                         [r["monitor"], r["rule"], r["metric"], r["subject"], r["window_end"], r["window_start"]])
        conn.executemany(f"INSERT INTO {MONITORING} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [[r["run_id"], r["evaluated_at"], r["monitor"], r["model"], r["model_version"], r["rule"],
                           r["kind"], r["metric"], r["subject"], r["value"], r["threshold"], r["op"], r["status"],
                           r["unit"], r["window_start"], r["window_end"], r["n"],
                           json.dumps(r["detail"], default=str, sort_keys=True, allow_nan=False)]
                          for r in rows])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def history(wh: Warehouse, monitor: str | None = None) -> list[dict[str, Any]]:
    """Every stored measurement (optionally of one monitor), oldest window first."""
    if not wh.exists(MONITORING):
        return []
    where = "WHERE monitor = ?" if monitor else ""
    cur = wh.conn.execute(f"SELECT * FROM {MONITORING} {where} ORDER BY window_end, evaluated_at",
                          [monitor] if monitor else [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
