"""Where monitoring's "current" data comes from: cohorts, files, the prediction log, labelled pairs.

The current population (what drift compares with the training reference) defaults to the
**latest label cohort**: the entities that have a label row at the most recent label time at or
before the as-of time, with their features computed point in time as of that label time —
exactly how training rows are built.  So clean data compares like with like.  The alternative,
every entity of the entity's source as of a time (`population="all"`, what batch scoring does),
also counts customers who left long ago (they stay in `customers`), whose empty activity looks
like drift on clean data.  A file or table of feature rows (`--current PATH|table`) or the
realtime prediction log (`--current predictions`) can stand in for either.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mlspec.ir.spec import Model, Serve, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.sql import AS_OF, ident, literal
from mlspec.runtime.errors import RunError
from mlspec.runtime.features import compute_group, upstream_groups
from mlspec.runtime.monitoring.store import PREDICTIONS, utc_now
from mlspec.runtime.score import groups_for
from mlspec.runtime.warehouse import STATE_DIR, Warehouse, table_for

__all__ = [
    "MATCH_TOLERANCE",
    "as_predictions",
    "batch_serves",
    "cohort_features",
    "entity_features",
    "ingest_batch_scores",
    "labelled_pairs",
    "latest_event_time",
    "latest_label_time",
    "load_current",
    "log_frame",
    "prediction_log_records",
    "read_batch_scores",
    "realtime_serves",
    "record_predictions",
    "source_tables",
]

MATCH_TOLERANCE = dt.timedelta(days=1)
"""A prediction judges a label when its as-of time is within this of the label time (nearest wins)."""
PREFIX = "monitor"


def source_tables(spec: Spec) -> dict[str, str]:
    """The table consumers read per source: its check's output when a check guards it."""
    out: dict[str, str] = {}
    for s in spec.sources:
        check = next((c for c in spec.checks if c.target == s.name and c.target_kind == "source"), None)
        out[s.name] = table_for(f"check:{check.name}") if check else table_for(f"source:{s.name}")
    return out


def _model_sources(spec: Spec, model: Model) -> list[str]:
    return sorted({spec.group(g).source for g in groups_for(spec, model)})


def latest_label_time(wh: Warehouse, spec: Spec, model: Model, at_or_before: dt.datetime | None) -> dt.datetime | None:
    """The most recent label time of the model's label (at or before a time)."""
    table = table_for(f"label:{model.label}")
    if not wh.exists(table):
        return None
    if at_or_before is None:
        value = wh.scalar(f"SELECT max({AS_OF}) FROM {ident(table)}")
    else:
        value = wh.scalar(f"SELECT max({AS_OF}) FROM {ident(table)} WHERE {AS_OF} <= ?", [at_or_before])
    return _naive(value)


def latest_event_time(wh: Warehouse, spec: Spec, model: Model, at_or_before: dt.datetime | None) -> dt.datetime | None:
    """The most recent event time over the timestamped sources the model's features read."""
    tables = source_tables(spec)
    best: dt.datetime | None = None
    for name in _model_sources(spec, model):
        src = spec.source(name)
        if src.timestamp is None or not wh.exists(tables[name]):
            continue
        ts = f"CAST({ident(src.timestamp)} AS TIMESTAMP)"
        cond = f" WHERE {ts} <= ?" if at_or_before is not None else ""
        value = _naive(wh.scalar(f"SELECT max({ts}) FROM {ident(tables[name])}{cond}",
                                 [at_or_before] if at_or_before is not None else []))
        if value is not None and (best is None or value > best):
            best = value
    return best


def _naive(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return None


def _features_for_spine(wh: Warehouse, spec: Spec, model: Model, spine: str, engine: str) -> pl.DataFrame:
    """One row per spine row: key, __as_of and the model's qualified feature columns."""
    key = ident(spec.entity(model.entity).key)
    tables = source_tables(spec)
    for name in _model_sources(spec, model):
        if not wh.exists(tables[name]):
            raise RunError(f"monitor:{model.name}", f"source `{name}` has not been extracted yet",
                           "run the pipeline first: `mlspec run SPEC`")
    feats: dict[str, str] = {}
    for g in groups_for(spec, model):
        group = spec.group(g)
        feats[g] = f"{PREFIX}_feat__{model.name}__{g}"
        compute_group(wh, spec, group, spine, tables[group.source], {u: feats[u] for u in upstream_groups(group)},
                      feats[g], engine)
    groups = list(dict.fromkeys(q.split(".")[0] for q in model.features))
    selects = [f"f{groups.index(q.split('.')[0])}.{ident(q.split('.', 1)[1])} AS {ident(q)}" for q in model.features]
    joins = " ".join(f"LEFT JOIN {ident(feats[g])} f{i} ON f{i}.{key} = s.{key} AND f{i}.{AS_OF} = s.{AS_OF}"
                     for i, g in enumerate(groups))
    frame: pl.DataFrame = wh.conn.sql(f"SELECT s.{key}, s.{AS_OF}, {', '.join(selects)} FROM {ident(spine)} s "
                                      f"{joins} ORDER BY s.{key}, s.{AS_OF}").pl()
    return frame


def cohort_features(wh: Warehouse, spec: Spec, model: Model, cohort_time: dt.datetime, engine: str) -> pl.DataFrame:
    """Features of the entities labelled at `cohort_time`, as of that time (like training rows)."""
    key = ident(spec.entity(model.entity).key)
    spine = f"{PREFIX}_spine__{model.name}"
    wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(spine)} AS SELECT DISTINCT {key}, {AS_OF} "
                    f"FROM {ident(table_for(f'label:{model.label}'))} WHERE {AS_OF} = ? ORDER BY {key}",
                    [cohort_time])
    return _features_for_spine(wh, spec, model, spine, engine)


def entity_features(wh: Warehouse, spec: Spec, model: Model, as_of: dt.datetime, engine: str) -> pl.DataFrame:
    """Features of every entity as of one time (the population batch scoring uses)."""
    from mlspec.runtime.score import entity_keys_sql

    key = ident(spec.entity(model.entity).key)
    spine = f"{PREFIX}_spine__{model.name}"
    wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(spine)} AS SELECT {key}, "
                    f"{literal(as_of.isoformat(sep=' '), DType.TIMESTAMP)} AS {AS_OF} "
                    f"FROM ({entity_keys_sql(spec, model, source_tables(spec))}) ORDER BY {key}")
    return _features_for_spine(wh, spec, model, spine, engine)


def load_current(where: str, spec: Spec, model: Model, root: Path, wh: Warehouse) -> pl.DataFrame:
    """Feature rows from a parquet/csv/jsonl file or a warehouse table, columns renamed to qualified names.

    Columns may be named `group.feature` or, when unambiguous, just `feature`.  A `score` (or
    `prediction`) column, when present, is used for prediction drift instead of re-scoring.
    """
    node = f"monitor:{model.name}"
    path = Path(where) if Path(where).is_absolute() else root / where
    if path.is_file():
        try:
            if path.suffix == ".csv":
                frame = pl.read_csv(path, try_parse_dates=True)
            elif path.suffix in (".jsonl", ".ndjson", ".json"):
                frame = pl.read_ndjson(path)
            else:
                frame = pl.read_parquet(path)
        except Exception as e:  # polars raises many kinds; all mean "cannot read this file"
            raise RunError(node, f"cannot read current data `{where}`: {e}") from None
    elif wh.exists(where):
        frame = wh.conn.sql(f"SELECT * FROM {ident(where)}").pl()
    else:
        raise RunError(node, f"current data `{where}` is neither a file nor a warehouse table",
                       "give a .parquet/.csv/.jsonl path, a table name, or `predictions`")
    bare: dict[str, list[str]] = {}
    for q in model.features:
        bare.setdefault(q.split(".", 1)[1], []).append(q)
    renames = {c: bare[c][0] for c in frame.columns if c not in model.features and len(bare.get(c, [])) == 1
               and bare[c][0] not in frame.columns}
    return frame.rename(renames)


# ---- the realtime prediction log -------------------------------------------------------------

def realtime_serves(spec: Spec, model: Model) -> list[Serve]:
    return [s for s in spec.serves if s.model == model.name and s.mode in ("realtime", "streaming")]


def batch_serves(spec: Spec, model: Model) -> list[Serve]:
    return [s for s in spec.serves if s.model == model.name and s.mode == "batch"]


def parse_time(value: object) -> dt.datetime | None:
    """An ISO time (a trailing Z allowed) as a naive UTC datetime."""
    if isinstance(value, dt.datetime):
        return _naive(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _naive(t)


def prediction_log_records(root: Path, serves: Iterable[str], start: dt.datetime,
                           end: dt.datetime) -> Iterator[dict[str, Any]]:
    """Records of `PROJECT/.mlspec/predictions/<serve>/<day>.jsonl` with `time` in [start, end]."""
    folder = root / STATE_DIR / "predictions"
    for serve in serves:
        day = start.date()
        while day <= end.date():
            path = folder / serve / f"{day.isoformat()}.jsonl"
            day += dt.timedelta(days=1)
            if not path.is_file():
                continue
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        rec = json.loads(line)
                    except ValueError:  # a torn last line of a file being written
                        continue
                    t = parse_time(rec.get("time"))
                    if t is not None and start <= t <= end:
                        rec["_time"] = t
                        yield rec


def log_frame(records: Sequence[dict[str, Any]], model: Model) -> pl.DataFrame:
    """Logged rows as a frame: __time, key, __as_of, version, score/prediction, latency and every feature."""
    rows: list[dict[str, Any]] = []
    for r in records:
        pred = r.get("prediction")
        feats = r.get("features") or {}
        row: dict[str, Any] = {"__time": r["_time"], "__key": None if r.get("key") is None else str(r["key"]),
                               "__as_of": parse_time(r.get("as_of")) or r["_time"], "__version": r.get("version"),
                               "__latency": _float(r.get("latency_seconds")),
                               "__error": bool(r.get("error")) or int(r.get("status") or 200) >= 500,
                               "__score": _float(pred) if not isinstance(pred, str) else None,
                               "__prediction": pred if isinstance(pred, str) else None}
        for q in model.features:
            row[q] = feats.get(q)
        rows.append(row)
    if not rows:
        return pl.DataFrame(schema={"__time": pl.Datetime("us"), "__key": pl.String, "__as_of": pl.Datetime("us"),
                                    "__version": pl.String, "__latency": pl.Float64, "__error": pl.Boolean,
                                    "__score": pl.Float64, "__prediction": pl.String})
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def _float(x: object) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ---- predictions kept for outcome monitoring ------------------------------------------------

def record_predictions(wh: Warehouse, model: str, source: str, serve: str | None, frame: pl.DataFrame) -> int:
    """Keep predictions (columns entity_key, as_of, score, prediction, model_version); skip known rows."""
    if frame.height == 0:
        return 0
    data = frame.select(pl.lit(model).alias("model"), pl.lit(source).alias("source"),
                        pl.lit(serve, dtype=pl.String).alias("serve"),
                        pl.col("entity_key").cast(pl.String), pl.col("as_of").cast(pl.Datetime("us")),
                        pl.col("score").cast(pl.Float64), pl.col("prediction").cast(pl.String),
                        pl.col("model_version").cast(pl.String), pl.lit(utc_now()).alias("recorded_at"))
    before = wh.count(PREDICTIONS)
    wh.conn.register("__new_predictions", data)
    try:
        wh.conn.execute(f"INSERT INTO {PREDICTIONS} SELECT n.* FROM __new_predictions n ANTI JOIN {PREDICTIONS} p "
                        "ON p.model = n.model AND p.source = n.source AND p.serve IS NOT DISTINCT FROM n.serve "
                        "AND p.entity_key = n.entity_key AND p.as_of = n.as_of "
                        "AND p.model_version IS NOT DISTINCT FROM n.model_version")
    finally:
        wh.conn.unregister("__new_predictions")
    return wh.count(PREDICTIONS) - before


def read_batch_scores(wh: Warehouse, spec: Spec, model: Model, root: Path) -> tuple[list[tuple[str, pl.DataFrame]], list[str]]:
    """(serve, rows as entity_key, as_of, score, prediction, model_version) of each batch serve output."""
    key = spec.entity(model.entity).key
    out: list[tuple[str, pl.DataFrame]] = []
    warnings: list[str] = []
    for serve in batch_serves(spec, model):
        output = serve.output or f"scores/{serve.name}.parquet"
        try:
            if output.startswith("duckdb:"):
                table = output.split(":", 1)[1]
                if not wh.exists(table):
                    continue
                frame = wh.conn.sql(f"SELECT * FROM {ident(table)}").pl()
            else:
                path = Path(output) if Path(output).is_absolute() else root / output
                if not path.is_file():
                    continue
                frame = pl.read_csv(path, try_parse_dates=True) if path.suffix == ".csv" else pl.read_parquet(path)
        except Exception as e:  # an unreadable score file is reported, monitoring goes on
            warnings.append(f"serve:{serve.name}: cannot read its scores `{output}`: {e}")
            continue
        if key not in frame.columns or "as_of" not in frame.columns:
            warnings.append(f"serve:{serve.name}: `{output}` lacks `{key}` or `as_of`; not used for outcomes")
            continue

        have = set(frame.columns)
        out.append((serve.name, frame.select(pl.col(key).cast(pl.String).alias("entity_key"),
                                             pl.col("as_of").cast(pl.Datetime("us")),
                                             _column(have, "score", pl.Float64()),
                                             _column(have, "prediction", pl.String()),
                                             _column(have, "model_version", pl.String()))))
    return out, warnings


def _column(have: set[str], name: str, dtype: pl.DataType) -> pl.Expr:
    return (pl.col(name) if name in have else pl.lit(None, dtype)).alias(name)


def ingest_batch_scores(wh: Warehouse, spec: Spec, model: Model, root: Path) -> tuple[int, list[str]]:
    """Copy the batch serve outputs' rows into the predictions table; (rows added, warnings)."""
    found, warnings = read_batch_scores(wh, spec, model, root)
    return sum(record_predictions(wh, model.name, "batch", serve, frame) for serve, frame in found), warnings


PREDICTION_COLUMNS: dict[str, pl.DataType] = {
    "source": pl.String(), "entity_key": pl.String(), "as_of": pl.Datetime("us"), "score": pl.Float64(),
    "prediction": pl.String(), "model_version": pl.String(), "recorded_at": pl.Datetime("us")}


def as_predictions(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Logged rows (log_frame) or scored rows (entity_key, as_of, score, prediction, model_version) in the
    predictions shape labelled_pairs takes as `extra`."""
    if "__key" in frame.columns:
        frame = frame.select(pl.col("__key").alias("entity_key"), pl.col("__as_of").alias("as_of"),
                             pl.col("__score").alias("score"), pl.col("__prediction").alias("prediction"),
                             pl.col("__version").alias("model_version"), pl.col("__time").alias("recorded_at"))
    elif "recorded_at" not in frame.columns:
        frame = frame.with_columns(pl.lit(utc_now()).alias("recorded_at"))
    return frame.with_columns(pl.lit(source).alias("source")).select(
        [pl.col(c).cast(t) for c, t in PREDICTION_COLUMNS.items()])


def labelled_pairs(wh: Warehouse, spec: Spec, model: Model, start: dt.datetime, end: dt.datetime,
                   extra: pl.DataFrame | None = None,
                   tolerance: dt.timedelta = MATCH_TOLERANCE) -> pl.DataFrame:
    """Labels with time in (start, end], each with the prediction nearest its label time.

    Predictions come from the predictions table (batch scores, earlier monitor cohorts) and `extra`
    (`as_predictions` frames: the realtime log, this run's cohort).  A label with no prediction
    within `tolerance` of its time is left out: it judges nothing.  Ties go to the most recently
    recorded prediction.
    """
    key = ident(spec.entity(model.entity).key)
    labels = table_for(f"label:{model.label}")
    empty = pl.DataFrame(schema={"entity_key": pl.String, "label_time": pl.Datetime("us"), "label": pl.String,
                                 "score": pl.Float64, "prediction": pl.String, "source": pl.String,
                                 "model_version": pl.String})
    if not wh.exists(labels):
        return empty
    extra = extra if extra is not None and extra.height else pl.DataFrame(schema=PREDICTION_COLUMNS)
    wh.conn.register("__extra_predictions", extra.select(list(PREDICTION_COLUMNS)))
    seconds = tolerance.total_seconds()
    sql = f"""
        WITH preds AS (
            SELECT source, entity_key, as_of, score, prediction, model_version, recorded_at
            FROM {PREDICTIONS} WHERE model = ?
            UNION ALL
            SELECT source, entity_key, as_of, score, prediction, model_version, recorded_at FROM __extra_predictions
        ), lab AS (
            SELECT CAST({key} AS VARCHAR) AS entity_key, {AS_OF} AS label_time, CAST(__label AS VARCHAR) AS label
            FROM {ident(labels)} WHERE {AS_OF} > ? AND {AS_OF} <= ?
        )
        SELECT l.entity_key, l.label_time, l.label, p.score, p.prediction, p.source, p.model_version
        FROM lab l JOIN preds p ON p.entity_key = l.entity_key
         AND abs(epoch(p.as_of) - epoch(l.label_time)) <= {seconds}
        QUALIFY row_number() OVER (PARTITION BY l.entity_key, l.label_time
                                   ORDER BY abs(epoch(p.as_of) - epoch(l.label_time)), p.recorded_at DESC,
                                            p.source) = 1
        ORDER BY l.label_time, l.entity_key
    """
    try:
        frame: pl.DataFrame = wh.conn.sql(sql, params=[model.name, start, end]).pl()
    finally:
        wh.conn.unregister("__extra_predictions")
    return frame if frame.height else empty
