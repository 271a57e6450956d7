"""Retraining with guardrails: `mlspec retrain`, `-> retrain` actions and `retrain every` schedules.

A retrain runs the pipeline (`run_pipeline`) on fresh data up to the model node — extraction is
incremental, checks run, the model trains and its gate is judged against the current champion —
and then promotes the new version only when all of these hold:

* guardrail 1, frequency: no other retrain of the model started within `min_interval` (default 1
  day), so a flapping monitor cannot retrain in a loop;
* guardrail 2, new labels: at least `min_new_labels` (default 100) label rows are newer than the
  newest label the champion was trained on (for a random split: more label rows than it saw);
* guardrail 3, data checks: every source, check and dataset node succeeded and no check rule
  marked `warn` fired (a failed `fail` rule stops the run before training anyway);
* the gate passed (absolute thresholds and "not worse than the champion").
`force` skips guardrails 1 and 2 only.  Every attempt, including skipped ones, is a row of
`_mlspec_retrains`.  After a promotion the model's batch serve blocks score again with it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlspec.runtime.engines.sql import AS_OF, ident
from mlspec.runtime.monitoring.store import RETRAINS, ensure_tables, format_duration, utc_now
from mlspec.runtime.registry import Registry, RegistryError
from mlspec.runtime.warehouse import STATE_DIR, Warehouse, table_for

if TYPE_CHECKING:
    from mlspec.compiler import Compiled
    from mlspec.runtime.monitoring.evaluate import MonitorRun
    from mlspec.runtime.runner import NodeReport

__all__ = ["DEFAULT_MIN_INTERVAL_MS", "DEFAULT_MIN_NEW_LABELS", "RetrainOutcome", "actions_due", "new_label_rows",
           "retrain"]

DEFAULT_MIN_NEW_LABELS = 100
DEFAULT_MIN_INTERVAL_MS = 86_400_000
TRAINED = ("promoted", "rejected", "unchanged", "blocked")  # attempts that ran training


@dataclass
class RetrainOutcome:
    """What one retrain attempt did and why."""

    model: str
    trigger: str
    status: str  # "promoted" | "rejected" | "unchanged" | "blocked" | "skipped" | "failed"
    reason: str
    version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    new_labels: int | None = None
    run_id: str | None = None
    gate: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    scored: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    def rejection(self) -> NodeReport | None:
        """A rejected candidate as the gate node report `mlspec run` makes of it (for `rejection_message`)."""
        from mlspec.runtime.runner import NodeReport

        if self.status != "rejected":
            return None
        return NodeReport(f"gate:{self.model}", "gate", "ok", 0.0,
                          {"version": self.version, "passed": False, "results": self.gate,
                           "champion": self.champion_after})

    def to_data(self) -> dict[str, Any]:
        return {"model": self.model, "trigger": self.trigger, "status": self.status, "reason": self.reason,
                "version": self.version, "champion_before": self.champion_before,
                "champion_after": self.champion_after, "new_labels": self.new_labels, "run_id": self.run_id,
                "gate": self.gate, "metrics": self.metrics, "scored": self.scored}


def _registry(compiled: Compiled) -> Registry:
    return Registry(compiled.root / STATE_DIR / "registry")


def new_label_rows(wh: Warehouse, label_table: str, registry: Registry, model: str) -> tuple[int, str]:
    """Label rows the champion has not seen, and how that was decided."""
    if not wh.exists(label_table):
        return 0, "no label table yet"
    total = wh.count(label_table)
    champion = registry.champion(model)
    if champion is None:
        return total, "no champion: every label row is new"
    meta = registry.get(model, champion).metadata
    split = meta.get("split") or {}
    newest = split.get("as_of_max")
    if newest and newest != "None":
        n = int(wh.scalar(f"SELECT count(*) FROM {ident(label_table)} WHERE {AS_OF} > CAST(? AS TIMESTAMP)",
                          [newest]) or 0)
        return n, f"label rows after {newest}, the newest the champion {champion} trained on"
    seen = int(meta.get("n_train") or 0) + int(meta.get("n_test") or 0)
    return max(total - seen, 0), f"label rows beyond the {seen} the champion {champion} trained and tested on"


def _record(compiled: Compiled, started: dt.datetime, finished: dt.datetime, out: RetrainOutcome) -> None:
    with Warehouse.open(compiled.root) as wh:
        ensure_tables(wh)
        wh.conn.execute(f"INSERT INTO {RETRAINS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [started, finished, out.model, out.trigger, out.status, out.reason, out.version,
                         out.champion_before, out.champion_after, out.new_labels, out.run_id,
                         json.dumps(out.to_data(), default=str, sort_keys=True)])


def _last_attempt(wh: Warehouse, model: str) -> dt.datetime | None:
    marks = ", ".join("?" for _ in TRAINED)
    value = wh.scalar(f"SELECT max(started_at) FROM {RETRAINS} WHERE model = ? AND status IN ({marks})",
                      [model, *TRAINED])
    return value if isinstance(value, dt.datetime) else None


def retrain(compiled: Compiled, model_name: str | None = None, *, trigger: str = "manual", force: bool = False,
            min_new_labels: int | None = None, min_interval_ms: int | None = None, engine: str = "duckdb",
            clock: Callable[[], dt.datetime] = utc_now) -> RetrainOutcome:
    """Retrain one model on fresh data and promote the result only through its gate and guardrails."""
    from mlspec.runtime.runner import run_pipeline

    spec, _ = compiled.checked
    if model_name is None:
        if len(spec.models) != 1:
            raise ValueError(f"the spec has {len(spec.models)} models; name one")
        model_name = spec.models[0].name
    model = spec.model(model_name)
    min_labels = DEFAULT_MIN_NEW_LABELS if min_new_labels is None else min_new_labels
    interval = DEFAULT_MIN_INTERVAL_MS if min_interval_ms is None else min_interval_ms
    registry = _registry(compiled)
    started = clock()
    before = registry.champion(model.name) if registry.models() else None
    out = RetrainOutcome(model.name, trigger, "skipped", "", champion_before=before, champion_after=before)

    def done(status: str, reason: str) -> RetrainOutcome:
        out.status, out.reason = status, reason
        out.champion_after = registry.champion(model.name) if registry.models() else None
        _record(compiled, started, clock(), out)
        return out

    with Warehouse.open(compiled.root) as wh:
        ensure_tables(wh)
        last = _last_attempt(wh, model.name)
    if last is not None and not force and (started - last) < dt.timedelta(milliseconds=interval):
        ago = format_duration(round((started - last).total_seconds()) * 1000)
        return done("skipped", f"guardrail: the last retrain started {ago} ago; at most one per "
                               f"{format_duration(interval)} (use --force to retrain anyway)")

    labels = run_pipeline(compiled, engine=engine, until=f"label:{model.label}")
    if not labels.ok:
        out.run_id = labels.run_id
        return done("blocked", f"guardrail: data checks failed while extracting labels: "
                               f"{(labels.error or '').splitlines()[0]}")
    with Warehouse.open(compiled.root) as wh:
        out.new_labels, how = new_label_rows(wh, table_for(f"label:{model.label}"), registry, model.name)
    if out.new_labels < min_labels and not force:
        return done("skipped", f"guardrail: {out.new_labels} new labelled row(s) ({how}); at least {min_labels} "
                               f"needed (use --min-new-labels or --force)")

    summary = run_pipeline(compiled, engine=engine, until=f"model:{model.name}")
    out.run_id = summary.run_id
    if not summary.ok:
        failed = next((n for n in summary.nodes if n.status == "failed"), None)
        where = failed.node if failed else "the run"
        kind = where.split(":", 1)[0]
        status = "blocked" if kind in ("source", "check", "label", "features", "dataset") else "failed"
        prefix = "guardrail: data checks failed" if status == "blocked" else "training failed"
        return done(status, f"{prefix} in {where}: {(summary.error or '').splitlines()[0]}")
    trained = next(n for n in summary.nodes if n.node == f"model:{model.name}")
    out.version = str(trained.detail["version"])
    out.metrics = {k: float(v) for k, v in (trained.detail.get("metrics") or {}).items() if v is not None}
    try:
        info = registry.get(model.name, out.version)
    except RegistryError as e:
        return done("failed", e.message)
    out.gate = list(info.metadata.get("gate", {}).get("results", []))
    check_warnings = [w for w in summary.warnings if w.startswith(("check:", "source:"))]
    if check_warnings:
        return done("blocked", f"guardrail: data checks warned, version {out.version} not promoted: "
                               + "; ".join(check_warnings))
    if out.version == before:
        return done("unchanged", f"the retrained model is the champion {before} itself (same data and spec)")
    if not info.gate_passed:
        why = "; ".join(f"{r['text']}: {r['reason']}" for r in out.gate if not r.get("passed"))
        return done("rejected", f"gate: version {out.version} rejected ({why}); champion stays {before or 'unset'}")
    registry.promote(model.name, out.version)
    for serve in (s for s in spec.serves if s.model == model.name and s.mode == "batch"):
        scored = run_pipeline(compiled, engine=engine, node=f"serve:{serve.name}")
        if scored.ok:
            out.scored.append(serve.name)
    passed = "; ".join(f"{r['text']}: {r['reason']}" for r in out.gate) or "no gate rules"
    return done("promoted", f"version {out.version} passed its gate ({passed}) and replaced {before or 'nothing'}")


def actions_due(compiled: Compiled, run: MonitorRun, *,
                clock: Callable[[], dt.datetime] = utc_now) -> list[tuple[str, str]]:
    """(model, trigger) for firing `-> retrain` rules and due `retrain every` schedules, once per model."""
    spec, _ = compiled.checked
    due: dict[str, str] = {}
    for m in run.firing:
        if any(a.kind == "retrain" for a in m.actions):
            due.setdefault(m.model, f"rule `{m.rule}`")
    registry = _registry(compiled)
    now = clock()
    for monitor in spec.monitors:
        if monitor.retrain_every_ms is None or monitor.model in due:
            continue
        champion = registry.champion(monitor.model) if registry.models() else None
        times: list[dt.datetime] = []
        if champion is not None:
            created = registry.get(monitor.model, champion).created_at
            times.append(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).replace(tzinfo=None))
        with Warehouse.open(compiled.root) as wh:
            ensure_tables(wh)
            last = _last_attempt(wh, monitor.model)
        if last is not None:
            times.append(last)
        age = now - max(times) if times else None
        if age is None or age >= dt.timedelta(milliseconds=monitor.retrain_every_ms):
            due[monitor.model] = f"schedule `retrain every {format_duration(monitor.retrain_every_ms)}`"
    return list(due.items())
