"""Evaluation of every `monitor` rule against the champion's reference statistics and the latest data.

Two clocks, both naive UTC:

* ``now`` — `--as-of` when given, else the wall clock.  Operational windows end here: the
  prediction log (latency, error rate), extraction runs (quarantine rate), source freshness.
* the data time — the most recent label time at or before ``now``.  The current population is
  that label cohort (see `monitoring.data`), and outcome windows over labels end there, so a
  project whose labels stopped arriving still reports the last window it can judge.

Every rule yields one measurement per subject (a feature, ``prediction``, a source or a serve).
Besides the rules, every drift statistic of every feature and of the prediction, null rates, risk
band shares, the task's outcome metrics, latency and freshness are measured as ``info`` rows
(status ok / warn / no_data, never alert), so the history has what the report plots.
A rule's status is ``alert`` when ``value op threshold`` holds, ``warn`` for PSI between the
design's warn level (0.1) and the rule's threshold, ``no_data`` when there is nothing to measure.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from mlspec.ir.spec import Action, Model, Monitor, MonitorRule, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.sql import AS_OF, ident
from mlspec.runtime.errors import RunError
from mlspec.runtime.monitoring import data as mdata
from mlspec.runtime.monitoring.drift import DRIFT_METRICS, DriftResult, drift_one
from mlspec.runtime.monitoring.store import ensure_tables, utc_now, write_measurements
from mlspec.runtime.reference import CategoricalReference, NumericReference, ReferenceStats
from mlspec.runtime.registry import Registry, RegistryError
from mlspec.runtime.warehouse import STATE_DIR, Warehouse, table_for

if TYPE_CHECKING:
    from mlspec.compiler import Compiled
    from mlspec.runtime.encode import FeatureEncoding
    from mlspec.runtime.monitoring.alerts import Delivery
    from mlspec.runtime.monitoring.retrain import RetrainOutcome

__all__ = ["PSI_WARN", "Measurement", "MonitorRun", "Options", "evaluate", "refresh_sources"]

PSI_WARN = 0.1  # the design's PSI warn level (alert defaults to 0.25 and is the rule's threshold)
DEFAULT_WINDOW_MS = 86_400_000
DEFAULT_OUTCOME_WINDOW_MS = 30 * 86_400_000
DEFAULT_BAND_QUANTILES = (0.5, 0.9)
STATUS_ORDER = {"alert": 0, "warn": 1, "no_data": 2, "ok": 3}
_OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                   "<=": operator.le}
UNITS = {"latency": "ms", "freshness": "ms"}


@dataclass
class Options:
    """What `mlspec monitor` was asked to do."""

    window_ms: int = DEFAULT_WINDOW_MS
    as_of: dt.datetime | None = None
    current: str | None = None  # a file, a warehouse table, or "predictions" (the realtime log)
    population: str = "cohort"  # "cohort" | "all"
    engine: str = "duckdb"
    refresh: bool = True  # extract new source rows (incrementally) before measuring
    record: bool = True  # write measurements (and logged predictions) to the warehouse
    notify: bool = True  # deliver alerts
    act: bool = False  # run `-> retrain` actions and `retrain every` schedules
    bands: tuple[float, ...] | None = None  # risk band cut points on the score (default: reference p50, p90)
    metrics_url: str | None = None  # a running `mlspec serve` /metrics for latency and errors
    min_new_labels: int | None = None  # retrain guardrails (None: retrain's defaults)
    min_interval_ms: int | None = None
    clock: Callable[[], dt.datetime] = utc_now


@dataclass
class Measurement:
    """One metric of one subject over one window, judged against a rule (or recorded as info)."""

    monitor: str
    model: str
    model_version: str | None
    rule: str | None  # the rule as written; None for info rows
    kind: str
    metric: str
    subject: str
    value: float | None
    threshold: float | None
    op: str | None
    status: str  # "ok" | "warn" | "alert" | "no_data"
    window_start: dt.datetime | None
    window_end: dt.datetime
    n: int | None = None
    unit: str = ""
    actions: tuple[Action, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "model": self.model, "model_version": self.model_version, "rule": self.rule,
                "kind": self.kind, "metric": self.metric, "subject": self.subject, "value": _clean(self.value),
                "threshold": _clean(self.threshold), "op": self.op, "status": self.status, "unit": self.unit,
                "window_start": _iso(self.window_start), "window_end": _iso(self.window_end), "n": self.n,
                "actions": [{"kind": a.kind, "targets": list(a.targets)} for a in self.actions],
                "detail": _clean_tree(self.detail)}


@dataclass
class ModelState:
    """What one monitor measured against: model, champion, population and its drift results."""

    monitor: str
    model: str
    version: str | None
    population: str
    data_time: dt.datetime | None
    n_current: int
    features: dict[str, DriftResult] = field(default_factory=dict)
    prediction: DriftResult | None = None
    bands: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, prediction log window
    champion_created_at: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)  # held-out metrics that justified deployment

    def to_data(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "model": self.model, "version": self.version, "population": self.population,
                "data_time": _iso(self.data_time), "n_current": self.n_current,
                "features": {k: v.to_data() for k, v in self.features.items()},
                "prediction": self.prediction.to_data() if self.prediction else None, "bands": self.bands,
                "champion_metrics": _clean_tree(self.champion_metrics)}


@dataclass
class MonitorRun:
    """Everything one `mlspec monitor` produced."""

    run_id: str
    project: str
    spec_files: tuple[str, ...]
    root: Path
    evaluated_at: dt.datetime
    now: dt.datetime
    measurements: list[Measurement] = field(default_factory=list)
    states: list[ModelState] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    retrains: list[RetrainOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def firing(self) -> list[Measurement]:
        """Rule measurements in alert (what makes the command exit 1)."""
        return [m for m in self.measurements if m.rule is not None and m.status == "alert"]

    @property
    def ok(self) -> bool:
        return not self.firing

    def to_data(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "project": self.project, "ok": self.ok, "firing": len(self.firing),
                "evaluated_at": _iso(self.evaluated_at), "now": _iso(self.now),
                "monitors": [s.to_data() for s in self.states],
                "measurements": [m.to_data() for m in self.measurements],
                "alerts": [d.to_data() for d in self.deliveries],
                "retrains": [r.to_data() for r in self.retrains], "warnings": self.warnings}


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _clean_tree(x: object) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean_tree(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean_tree(v) for v in x]
    if isinstance(x, dt.datetime):
        return x.isoformat()
    if isinstance(x, np.generic):
        return _clean_tree(x.item())
    return x


def judge(value: float | None, op: str | None, threshold: float | None, metric: str, *, rule: bool) -> str:
    """Status of a value: alert when `value op threshold` holds (rules only), warn levels, no_data."""
    if value is None or not math.isfinite(value):
        return "no_data"
    fires = op is not None and threshold is not None and _OPS[op](value, threshold)
    if fires:
        return "alert" if rule else "warn"
    if metric == "psi" and op in (">", ">=") and value > PSI_WARN:
        return "warn"
    return "ok"


# ---- refreshing sources ------------------------------------------------------------------------

def refresh_sources(compiled: Compiled, engine: str = "duckdb") -> list[str]:
    """Extract new rows of every source (incremental) and rebuild source checks and labels.

    Returns warnings; a failing node is reported and monitoring goes on with what is loaded.
    """
    from mlspec.ir.dag import topological_order
    from mlspec.ir.serialize import digest, to_data
    from mlspec.runtime import pipeline
    from mlspec.runtime.runner import runners
    from mlspec.runtime.warehouse import new_run_id

    spec, dag = compiled.checked
    compiled_spec = to_data(spec)
    assert isinstance(compiled_spec, dict)
    compiled_spec.pop("files", None)
    source_checks = {f"check:{c.name}" for c in spec.checks if c.target_kind == "source"}
    nodes = [n for n in topological_order(dag) if n.startswith(("source:", "label:")) or n in source_checks]
    warnings: list[str] = []
    table = runners()
    import time

    with Warehouse.open(compiled.root) as wh:
        ctx = pipeline.RunContext(wh, spec, digest(compiled_spec), compiled_spec, new_run_id(), engine)
        failed: set[str] = set()
        for nid in nodes:
            kind, name = nid.split(":", 1)
            if any(up in failed for up in dag.predecessors(nid)):
                failed.add(nid)
                continue
            started = time.time()
            try:
                detail = table[kind](ctx, name)
                wh.record_node(ctx.run_id, nid, "ok", started, time.time() - started, detail)
            except RunError as e:
                failed.add(nid)
                wh.record_node(ctx.run_id, nid, "failed", started, time.time() - started, {"error": e.message})
                warnings.append(f"refreshing {nid} failed: {e.message}; measured with the data loaded before")
        warnings.extend(ctx.warnings)
    return warnings


# ---- evaluation ----------------------------------------------------------------------------------

@dataclass
class _Ctx:
    wh: Warehouse
    spec: Spec
    root: Path
    registry: Registry
    options: Options
    run: MonitorRun

    @property
    def now(self) -> dt.datetime:
        return self.run.now


def evaluate(compiled: Compiled, options: Options | None = None) -> MonitorRun:
    """Measure every monitor; record, alert and act as the options say."""
    from mlspec.runtime.monitoring.alerts import notify

    options = options or Options()
    spec, _ = compiled.checked
    root = compiled.root
    if not (root / STATE_DIR / "warehouse.duckdb").exists():
        raise RunError("monitor", "the warehouse has not been built yet", "run the pipeline first: `mlspec run SPEC`")
    evaluated_at = options.clock()
    now = options.as_of or evaluated_at
    run = MonitorRun(uuid.uuid4().hex[:12], spec.project.name, spec.files, root, evaluated_at, now)
    if options.refresh:
        run.warnings.extend(refresh_sources(compiled, options.engine))
    monitors = list(spec.monitors) or [Monitor(m.name, m.name, ()) for m in spec.models]
    with Warehouse.open(root) as wh:
        ensure_tables(wh)
        ctx = _Ctx(wh, spec, root, Registry(wh.state_dir / "registry"), options, run)
        for monitor in monitors:
            try:
                _evaluate_monitor(ctx, monitor)
            except RunError as e:
                run.warnings.append(e.render())
        run.measurements.sort(key=lambda m: (m.monitor, m.rule is None, STATUS_ORDER.get(m.status, 9)))
        if options.record:
            write_measurements(wh, [_row(run, m) for m in run.measurements])
        if options.notify:
            run.deliveries.extend(notify(wh, spec, root, run, clock=options.clock))
    if options.act:
        from mlspec.runtime.monitoring.retrain import actions_due, retrain

        for model_name, trigger in actions_due(compiled, run, clock=options.clock):
            run.retrains.append(retrain(compiled, model_name, trigger=trigger, engine=options.engine,
                                        min_new_labels=options.min_new_labels,
                                        min_interval_ms=options.min_interval_ms, clock=options.clock))
    return run


def _row(run: MonitorRun, m: Measurement) -> dict[str, Any]:
    return {"run_id": run.run_id, "evaluated_at": run.evaluated_at, "monitor": m.monitor, "model": m.model,
            "model_version": m.model_version, "rule": m.rule, "kind": m.kind, "metric": m.metric,
            "subject": m.subject, "value": _clean(m.value), "threshold": _clean(m.threshold), "op": m.op,
            "status": m.status, "unit": m.unit, "window_start": m.window_start, "window_end": m.window_end,
            "n": m.n, "detail": _clean_tree(m.detail)}


@dataclass
class _Current:
    frame: pl.DataFrame
    population: str
    data_time: dt.datetime | None
    window_start: dt.datetime | None
    window_end: dt.datetime
    scores: np.ndarray | None = None  # numeric predictions
    classes: list[str] | None = None  # multiclass predictions
    predictions: pl.DataFrame | None = None  # this run's scored population, for outcomes


def _evaluate_monitor(ctx: _Ctx, monitor: Monitor) -> None:
    spec, run = ctx.spec, ctx.run
    model = spec.model(monitor.model)
    try:
        version = ctx.registry.champion(model.name)
    except RegistryError as e:
        raise RunError(f"monitor:{monitor.name}", e.message) from None
    state = ModelState(monitor.name, model.name, version, "", None, 0)
    run.states.append(state)
    if version is None:
        run.warnings.append(f"monitor:{monitor.name}: model `{model.name}` has no champion yet; nothing to compare "
                            f"with (run `mlspec run` first)")
        for rule in monitor.rules:
            run.measurements.append(Measurement(monitor.name, model.name, None, rule.text, rule.kind, rule.metric,
                                                ",".join(rule.subject[:1]), None, rule.threshold, rule.op, "no_data",
                                                None, ctx.now, detail={"note": "no champion"}))
        return
    info = ctx.registry.get(model.name, version)
    state.champion_created_at = info.created_at
    state.champion_metrics = {k: float(v) for k, v in info.metrics.items() if isinstance(v, int | float)}
    reference = ctx.registry.load_reference(model.name, version)
    encoding = ctx.registry.load_encoding(model.name, version)
    current = _current(ctx, monitor, model, version, encoding, info.metadata)
    if ctx.options.record:
        _, warnings = mdata.ingest_batch_scores(ctx.wh, ctx.spec, model, ctx.root)
    else:  # nothing is written: the score files join the outcome in memory
        found, warnings = mdata.read_batch_scores(ctx.wh, ctx.spec, model, ctx.root)
        frames = [mdata.as_predictions(f, "batch") for _, f in found]
        if current.predictions is not None:
            frames.append(current.predictions)
        current.predictions = pl.concat(frames) if frames else None
    run.warnings.extend(warnings)
    state.population, state.data_time, state.n_current = current.population, current.data_time, current.frame.height
    state.features = _feature_drift(current.frame, reference, encoding)
    missing = [q for q in reference.features if q not in state.features]
    if missing:
        run.warnings.append(f"monitor:{monitor.name}: the current data has no column for {', '.join(missing)}")
    if reference.prediction is not None:
        if current.scores is not None and isinstance(reference.prediction, NumericReference):
            state.prediction = drift_one("prediction", reference.prediction, current.scores)
            state.bands = _bands(reference.prediction, current.scores, ctx.options.bands)
        elif current.classes is not None and isinstance(reference.prediction, CategoricalReference):
            state.prediction = drift_one("prediction", reference.prediction, current.classes)
    _Judge(ctx, monitor, model, version, current, state).all()


def _current(ctx: _Ctx, monitor: Monitor, model: Model, version: str, encoding: FeatureEncoding,
             metadata: dict[str, Any]) -> _Current:
    wh, spec, opts = ctx.wh, ctx.spec, ctx.options
    node = f"monitor:{monitor.name}"
    window = dt.timedelta(milliseconds=opts.window_ms)
    if opts.current == "predictions":
        serves = [s.name for s in mdata.realtime_serves(spec, model)]
        records = list(mdata.prediction_log_records(ctx.root, serves, ctx.now - window, ctx.now))
        frame = mdata.log_frame(records, model)
        if frame.height == 0:
            raise RunError(node, f"the prediction log has no records of {', '.join(serves) or 'any serve'} between "
                           f"{ctx.now - window} and {ctx.now}", "widen --window or check that `mlspec serve` logs")
        cur = _Current(frame, "prediction log", ctx.now, ctx.now - window, ctx.now)
        scores = frame.get_column("__score")
        if model.task == "multiclass":
            cur.classes = frame.get_column("__prediction").to_list()
        elif scores.null_count() < frame.height:
            cur.scores = scores.drop_nulls().to_numpy().astype(np.float64)
        return cur
    if opts.current:
        frame = mdata.load_current(opts.current, spec, model, ctx.root, wh)
        cur = _Current(frame, f"current data `{opts.current}`", ctx.now, None, ctx.now)
        for col in ("score", "prediction"):
            if col in frame.columns and frame.schema[col].is_numeric() and model.task != "multiclass":
                cur.scores = frame.get_column(col).cast(pl.Float64).drop_nulls().to_numpy()
                break
            if col in frame.columns and model.task == "multiclass" and col == "prediction":
                cur.classes = frame.get_column(col).cast(pl.String).to_list()
        if cur.scores is None and cur.classes is None and all(q in frame.columns for q in model.features):
            _score(ctx, model, version, encoding, metadata, cur)
        return cur
    population = opts.population
    data_time = None
    if population == "cohort":
        data_time = mdata.latest_label_time(wh, spec, model, ctx.now)
        if data_time is None:
            ctx.run.warnings.append(f"{node}: no label rows at or before {ctx.now}; measuring every entity instead")
            population = "all"
    if population == "all":
        data_time = mdata.latest_event_time(wh, spec, model, ctx.now) or ctx.now
        frame = mdata.entity_features(wh, spec, model, min(data_time, ctx.now), opts.engine)
        label = f"every entity as of {data_time:%Y-%m-%d %H:%M}"
    else:
        assert data_time is not None
        frame = mdata.cohort_features(wh, spec, model, data_time, opts.engine)
        label = f"label cohort of {data_time:%Y-%m-%d %H:%M}"
    cur = _Current(frame, label, data_time, data_time, data_time)
    _score(ctx, model, version, encoding, metadata, cur)
    if frame.height:
        key = spec.entity(model.entity).key
        preds = frame.select(pl.col(key).alias("entity_key"), pl.col(AS_OF).alias("as_of"))
        if cur.scores is not None:
            preds = preds.with_columns(pl.Series("score", cur.scores), pl.lit(None, pl.String).alias("prediction"))
        else:
            preds = preds.with_columns(pl.lit(None, pl.Float64).alias("score"),
                                       pl.Series("prediction", cur.classes or [], dtype=pl.String))
        preds = preds.with_columns(pl.lit(version).alias("model_version"))
        cur.predictions = mdata.as_predictions(preds, "monitor")
        if opts.record:
            mdata.record_predictions(wh, model.name, "monitor", None, preds)
    return cur


def _score(ctx: _Ctx, model: Model, version: str, encoding: FeatureEncoding, metadata: dict[str, Any],
           cur: _Current) -> None:
    from mlspec.runtime.encode import encode
    from mlspec.runtime.train import predict_scores

    if cur.frame.height == 0:
        return
    booster = ctx.registry.load_booster(model.name, version)
    scores = predict_scores(booster, encode(cur.frame, encoding), model.task)
    if model.task == "multiclass":
        classes = [str(c) for c in metadata.get("classes", [])]
        cur.classes = [classes[i] if i < len(classes) else str(i) for i in scores.argmax(axis=1)]
    else:
        cur.scores = scores


def _feature_drift(frame: pl.DataFrame, reference: ReferenceStats, encoding: FeatureEncoding) -> dict[str, DriftResult]:
    """Drift of every feature present in the frame: numeric on the encoded value, categorical on the raw one."""
    from mlspec.runtime.encode import FeatureEncoding, encode
    from mlspec.runtime.monitoring.drift import drift_many

    present = [f for f in encoding.features if f.name in frame.columns and f.name in reference.features]
    numeric = [f for f in present if f.dtype not in (DType.STRING, DType.BOOL)]
    columns: dict[str, Any] = {}
    if numeric:
        matrix = encode(frame, FeatureEncoding(tuple(numeric)))
        for j, f in enumerate(numeric):
            columns[f.name] = matrix[:, j].astype(np.float64)
    for f in present:
        if f.dtype in (DType.STRING, DType.BOOL):
            columns[f.name] = frame.get_column(f.name)
    found = drift_many({f.name: reference.features[f.name] for f in present}, columns)
    return {f.name: found[f.name] for f in present}


def _bands(ref: NumericReference, scores: np.ndarray, cuts: tuple[float, ...] | None) -> list[dict[str, Any]]:
    """Shares of score bands (default: below the reference median, median..p90, above p90)."""
    sample = np.asarray(ref.sample, dtype=np.float64)
    if cuts is None:
        if sample.size == 0:
            return []
        cuts = tuple(float(x) for x in np.quantile(sample, DEFAULT_BAND_QUANTILES))
        names = ["low", "medium", "high"]
    else:
        names = [f"band {i + 1}" for i in range(len(cuts) + 1)]
    edges = [-math.inf, *sorted(cuts), math.inf]
    cur = scores[np.isfinite(scores)]
    out = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        ref_share = float(np.mean((sample >= lo) & (sample < hi))) if sample.size else math.nan
        cur_share = float(np.mean((cur >= lo) & (cur < hi))) if cur.size else math.nan
        span = (f"< {hi:.4g}" if i == 0 else f">= {lo:.4g}" if i == len(edges) - 2 else f"{lo:.4g} to {hi:.4g}")
        out.append({"band": names[i], "range": span, "low": lo if math.isfinite(lo) else None,
                    "high": hi if math.isfinite(hi) else None, "reference": ref_share, "current": cur_share})
    return out


class _Judge:
    """Turns one monitor's measurements into Measurement rows: rules first, then info rows."""

    def __init__(self, ctx: _Ctx, monitor: Monitor, model: Model, version: str, current: _Current,
                 state: ModelState) -> None:
        self.ctx, self.monitor, self.model, self.version = ctx, monitor, model, version
        self.current, self.state = current, state
        self.covered: set[tuple[str, str]] = set()
        self._log: pl.DataFrame | None = None
        self._log_window: dt.timedelta | None = None
        self._log_has_status = False

    def add(self, rule: MonitorRule | None, kind: str, metric: str, subject: str, value: float | None, *,
            start: dt.datetime | None, end: dt.datetime, n: int | None, threshold: float | None = None,
            op: str | None = None, detail: dict[str, Any] | None = None) -> None:
        if rule is not None:
            threshold, op = rule.threshold, rule.op
            self.covered.add((metric, subject))
        elif (metric, subject) in self.covered:
            return
        status = judge(value, op, threshold, metric, rule=rule is not None)
        self.ctx.run.measurements.append(Measurement(
            self.monitor.name, self.model.name, self.version, rule.text if rule else None, kind, metric, subject,
            value, threshold, op, status, start, end, n, UNITS.get(kind, ""), rule.actions if rule else (),
            detail or {}))

    def all(self) -> None:
        handlers: dict[str, Callable[[MonitorRule], None]] = {
            "drift": self.drift, "prediction_drift": self.drift, "outcome": self.outcome, "latency": self.latency,
            "error_rate": self.error_rate, "null_rate": self.null_rate, "freshness": self.freshness,
            "quarantine_rate": self.quarantine_rate}
        for rule in self.monitor.rules:
            handlers[rule.kind](rule)
        self.info()

    # -- drift and data quality on the current population --

    def _drift_of(self, subject: str) -> DriftResult | None:
        return self.state.prediction if subject == "prediction" else self.state.features.get(subject)

    def drift(self, rule: MonitorRule | None, subject: str | None = None, metric: str | None = None) -> None:
        cur = self.current
        subjects = (subject,) if subject else (rule.subject if rule else ())
        for s in subjects:
            res = self._drift_of(s)
            m = metric or (rule.metric if rule else "psi")
            value = res.stat(m) if res else None
            detail: dict[str, Any] = {"population": cur.population}
            if res is None:
                detail["note"] = "no current values" if s == "prediction" else "feature missing from current data"
            else:
                detail.update(n_current=res.n_current, null_share=res.null_share)
            self.add(rule, "prediction_drift" if s == "prediction" else "drift", m, s, value,
                     start=cur.window_start, end=cur.window_end, n=res.n_current if res else 0, detail=detail)

    def null_rate(self, rule: MonitorRule | None, subject: str | None = None) -> None:
        cur = self.current
        for s in ((subject,) if subject else rule.subject if rule else ()):
            res = self.state.features.get(s)
            self.add(rule, "null_rate", "null_rate", s, res.null_share if res else None, start=cur.window_start,
                     end=cur.window_end, n=res.n_current if res else 0,
                     detail={"reference": res.ref_null_share} if res else {"note": "feature missing"})

    # -- outcomes over labels --

    def _extra_predictions(self, start: dt.datetime, end: dt.datetime) -> pl.DataFrame | None:
        """This run's scored cohort plus realtime log records around the window's label times."""
        frames = [self.current.predictions] if self.current.predictions is not None else []
        serves = [s.name for s in mdata.realtime_serves(self.ctx.spec, self.model)]
        if serves:
            pad = mdata.MATCH_TOLERANCE
            records = list(mdata.prediction_log_records(self.ctx.root, serves, start - pad, end + pad))
            if records:
                frames.append(mdata.as_predictions(mdata.log_frame(records, self.model), "realtime"))
        return pl.concat(frames) if frames else None

    def _outcome_metrics(self, pairs: pl.DataFrame) -> dict[str, float]:
        from mlspec.runtime.train import compute_metrics

        task = self.model.task
        if pairs.height == 0:
            return {}
        labels = pairs.get_column("label").to_list()
        if task == "multiclass":
            pred = pairs.get_column("prediction").to_list()
            return {"accuracy": float(np.mean([p == y for p, y in zip(pred, labels, strict=True)]))}
        scored = pairs.filter(pl.col("score").is_not_null())
        if scored.height == 0:
            return {}
        scores = scored.get_column("score").to_numpy().astype(np.float64)
        ys = scored.get_column("label").to_list()
        if task == "binary":
            y = np.array([1 if str(v).lower() in ("true", "1", "1.0") else 0 for v in ys])
        else:
            y = np.array([float(v) for v in ys])
        return compute_metrics(task, y, scores, self.model.threshold)

    def outcome(self, rule: MonitorRule | None, window_ms: int | None = None) -> None:
        ms = (rule.window_ms if rule else None) or window_ms or DEFAULT_OUTCOME_WINDOW_MS
        end = self.current.data_time or self.ctx.now
        if self.ctx.options.current is not None:  # outcome windows follow the labels, not the given data
            end = mdata.latest_label_time(self.ctx.wh, self.ctx.spec, self.model, self.ctx.now) or self.ctx.now
        start = end - dt.timedelta(milliseconds=ms)
        pairs = mdata.labelled_pairs(self.ctx.wh, self.ctx.spec, self.model, start, end,
                                     self._extra_predictions(start, end))
        metrics = self._outcome_metrics(pairs)
        sources = pairs.group_by("source").len().sort("source").rows() if pairs.height else []
        detail: dict[str, Any] = {"pairs": pairs.height, "predictions_from": {str(k): int(v) for k, v in sources},
                                  "window_ms": ms}
        if rule is not None and rule.metric in self.state.champion_metrics:
            detail["at_deployment"] = self.state.champion_metrics[rule.metric]  # the champion's held-out value
        if self.model.task == "binary" and pairs.height:
            detail["positives"] = int(sum(1 for v in pairs.get_column("label").to_list()
                                          if str(v).lower() in ("true", "1", "1.0")))
        if rule is not None:
            value = metrics.get(rule.metric)
            if value is None:
                detail["note"] = ("no labelled predictions in the window" if not pairs.height else
                                  f"{rule.metric} is undefined on these {pairs.height} pairs (one class?)")
            self.add(rule, "outcome", rule.metric, "", value, start=start, end=end, n=pairs.height, detail=detail)
            return
        from mlspec.semantics.ops_decls import METRICS

        for metric in METRICS[self.model.task]:
            self.add(None, "outcome", metric, "", metrics.get(metric), start=start, end=end, n=pairs.height,
                     detail=detail)

    # -- infrastructure from the prediction log / metrics endpoint --

    def _log_window_frame(self, ms: int) -> pl.DataFrame:
        window = dt.timedelta(milliseconds=ms)
        if self._log is None or self._log_window != window:
            serves = [s.name for s in mdata.realtime_serves(self.ctx.spec, self.model)]
            records = list(mdata.prediction_log_records(self.ctx.root, serves, self.ctx.now - window, self.ctx.now))
            self._log, self._log_window = mdata.log_frame(records, self.model), window
            self._log_has_status = any("status" in r or "error" in r for r in records)
        return self._log

    def _scrape(self) -> dict[str, Any] | None:
        url = self.ctx.options.metrics_url
        if not url:
            return None
        from mlspec.runtime.monitoring.promtext import scrape_serving

        serves = [s.name for s in mdata.realtime_serves(self.ctx.spec, self.model)]
        try:
            return scrape_serving(url, serves)
        except OSError as e:
            self.ctx.run.warnings.append(f"cannot read serving metrics at {url}: {e}")
            return None

    def latency(self, rule: MonitorRule | None, metric: str = "latency_p99") -> None:
        ms = (rule.window_ms if rule else None) or self.ctx.options.window_ms
        m = rule.metric if rule else metric
        q = 0.99 if m == "latency_p99" else 0.5
        frame = self._log_window_frame(ms)
        lat = frame.get_column("__latency").drop_nulls().to_numpy() if frame.height else np.array([])
        start, end = self.ctx.now - dt.timedelta(milliseconds=ms), self.ctx.now
        detail: dict[str, Any] = {"source": "prediction log", "requests": int(lat.size)}
        value = float(np.quantile(lat, q)) * 1000.0 if lat.size else None
        if value is None and (scraped := self._scrape()) is not None and scraped.get(m) is not None:
            value, detail = float(scraped[m]) * 1000.0, {"source": "metrics endpoint (since the server started)",
                                                         "requests": scraped.get("requests")}
        if value is None:
            detail["note"] = "no logged requests in the window"
        self.state.latencies = [float(x) for x in lat[:20_000]]
        self.add(rule, "latency", m, ",".join(s.name for s in mdata.realtime_serves(self.ctx.spec, self.model)),
                 value, start=start, end=end, n=int(lat.size), detail=detail)

    def error_rate(self, rule: MonitorRule | None) -> None:
        ms = (rule.window_ms if rule else None) or self.ctx.options.window_ms
        frame = self._log_window_frame(ms)
        start, end = self.ctx.now - dt.timedelta(milliseconds=ms), self.ctx.now
        value: float | None = None
        detail: dict[str, Any] = {}
        if frame.height and self._log_has_status:
            value = float(frame.get_column("__error").cast(pl.Float64).to_numpy().mean())
            detail = {"source": "prediction log", "requests": frame.height}
        elif (scraped := self._scrape()) is not None and scraped.get("error_rate") is not None:
            value = float(scraped["error_rate"])
            detail = {"source": "metrics endpoint (since the server started)", "requests": scraped.get("requests")}
        else:
            detail["note"] = ("the prediction log holds answered requests only; pass --metrics-url "
                              "http://HOST:PORT/metrics of `mlspec serve` to measure errors") if frame.height else \
                "no logged requests in the window"
        self.add(rule, "error_rate", "error_rate",
                 ",".join(s.name for s in mdata.realtime_serves(self.ctx.spec, self.model)), value,
                 start=start, end=end, n=frame.height, detail=detail)

    # -- sources --

    def freshness(self, rule: MonitorRule | None, subject: str | None = None) -> None:
        wh, spec = self.ctx.wh, self.ctx.spec
        for s in ((subject,) if subject else rule.subject if rule else ()):
            src = spec.source(s)
            table = table_for(f"source:{s}")
            value = None
            detail: dict[str, Any] = {}
            if src.timestamp is None:
                detail["note"] = f"source `{s}` has no timestamp"
            elif not wh.exists(table):
                detail["note"] = "not extracted yet"
            else:
                latest = mdata._naive(wh.scalar(f"SELECT max(CAST({ident(src.timestamp)} AS TIMESTAMP)) "
                                                f"FROM {ident(table)} WHERE CAST({ident(src.timestamp)} AS TIMESTAMP)"
                                                " <= ?", [self.ctx.now]))
                if latest is not None:
                    value = (self.ctx.now - latest).total_seconds() * 1000.0
                    detail["latest"] = latest.isoformat()
            threshold = None if rule else (float(src.freshness_ms) if src.freshness_ms else None)
            self.add(rule, "freshness", "freshness", s, value, start=None, end=self.ctx.now, n=None,
                     threshold=threshold, op=None if rule or threshold is None else ">", detail=detail)

    def quarantine_rate(self, rule: MonitorRule | None, subject: str | None = None) -> None:
        wh, spec = self.ctx.wh, self.ctx.spec
        ms = (rule.window_ms if rule else None) or self.ctx.options.window_ms
        start, end = self.ctx.now - dt.timedelta(milliseconds=ms), self.ctx.now
        for s in ((subject,) if subject else rule.subject if rule else ()):
            nodes = [f"source:{s}", *(f"check:{c.name}" for c in spec.checks
                                      if c.target == s and c.target_kind == "source")]
            marks = ", ".join("?" for _ in nodes)
            rows = wh.conn.execute(f"SELECT node, detail FROM _mlspec_node_runs WHERE status = 'ok' AND node IN "
                                   f"({marks}) AND started_at > ? AND started_at <= ?", [*nodes, start, end]).fetchall()
            scope = "runs in the window"
            rows_in, quarantined = _quarantine_counts(rows, s)
            if rows_in == 0:  # nothing extracted in the window: the latest extraction that read rows
                last = wh.scalar("SELECT run_id FROM _mlspec_node_runs WHERE status = 'ok' AND node = ? AND "
                                 "CAST(json_extract(detail, '$.rows_in') AS BIGINT) > 0 "
                                 "ORDER BY started_at DESC LIMIT 1", [f"source:{s}"])
                if last is not None:
                    rows = wh.conn.execute(f"SELECT node, detail FROM _mlspec_node_runs WHERE status = 'ok' AND "
                                           f"run_id = ? AND node IN ({marks})", [last, *nodes]).fetchall()
                    rows_in, quarantined = _quarantine_counts(rows, s)
                    scope = f"latest extraction with new rows (run {last})"
            value = quarantined / rows_in if rows_in else None
            self.add(rule, "quarantine_rate", "quarantine_rate", s, value, start=start, end=end, n=rows_in,
                     detail={"rows_in": rows_in, "rows_quarantined": quarantined, "scope": scope})

    # -- info rows --

    def info(self) -> None:
        for name in self.state.features:
            for metric in DRIFT_METRICS:
                self.drift(None, name, metric)
            self.null_rate(None, name)
        if self.state.prediction is not None:
            for metric in DRIFT_METRICS:
                self.drift(None, "prediction", metric)
        cur = self.current
        for band in self.state.bands:
            self.add(None, "prediction_drift", "band_share", f"prediction:{band['band']}", band["current"],
                     start=cur.window_start, end=cur.window_end, n=self.state.n_current,
                     detail={"reference": band["reference"], "range": band["range"]})
        outcome_windows = [r.window_ms for r in self.monitor.rules if r.kind == "outcome"]
        self.outcome(None, outcome_windows[0] if outcome_windows else None)
        if mdata.realtime_serves(self.ctx.spec, self.model):
            for metric in ("latency_p50", "latency_p99"):
                self.latency(None, metric)
            self.error_rate(None)
        sources = sorted({self.ctx.spec.group(g).source for g in _groups(self.ctx.spec, self.model)})
        for s in sources:
            if self.ctx.spec.source(s).timestamp is not None:
                self.freshness(None, s)
            self.quarantine_rate(None, s)


def _groups(spec: Spec, model: Model) -> list[str]:
    from mlspec.runtime.score import groups_for

    return groups_for(spec, model)


def _quarantine_counts(rows: list[tuple[str, str]], source: str) -> tuple[int, int]:
    """(rows read by the source's extraction, rows its extraction and checks quarantined)."""
    rows_in = quarantined = 0
    for node, text in rows:
        d = json.loads(text or "{}")
        quarantined += int(d.get("rows_quarantined") or 0)
        if node == f"source:{source}":
            rows_in += int(d.get("rows_in") or 0)
    return rows_in, quarantined
