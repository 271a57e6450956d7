"""`mlspec materialize`: copy what online serving needs from the warehouse to the online store.

Serving evaluates features with the online evaluator over an entity's stored rows, so the store
must hold, per source, every row a feature can see as of any serving time:

- a group with an aggregate without a window (`max(ordered_at)`) sees all history: every row;
- otherwise the rows within the longest window, measured back from the source's latest row
  time (its data "now"; serving times are at or after it);
- a row feature reads the latest row at or before the serving time: each key's latest row
  before that bound is kept too (aggregate-only groups keep it as well: it is outside every
  window, costs one row per key and keeps such an entity "known").

Rows are read from the tables `mlspec run` built (a source's check output when a check guards
it, exactly as batch features read them). Runs are incremental (only __seq above the store's
watermark) and idempotent (a second run writes nothing). Snapshot sources (no timestamp) are
reloaded whole by every `mlspec run` with fresh __seq, so they are synchronised whole instead.
When what a source is materialized for changes (spec, columns, window, table), or the
warehouse was rebuilt from scratch, that source is rewritten from the start.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mlspec.ir import expr as ir
from mlspec.ir.spec import FeatureGroup, Model, Source, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.sql import SEQ, ident, literal
from mlspec.runtime.errors import RunError
from mlspec.runtime.online.store import OnlineStore
from mlspec.runtime.pipeline import RunContext
from mlspec.runtime.score import groups_for
from mlspec.runtime.warehouse import Warehouse

SERVING_MODES = ("realtime", "streaming")
_NODE = "materialize"
_FETCH = 5000


@dataclass(frozen=True)
class SourceNeed:
    """What online serving needs of one source, for one entity key column."""

    source: str
    key_column: str
    namespace: str  # the name the rows live under in the online store
    window_ms: int | None  # longest window of its groups' aggregates; None = every row; 0 = no aggregate
    groups: tuple[str, ...]


@dataclass
class SourceStats:
    source: str
    namespace: str
    table: str
    mode: str  # "incremental" | "rebuild" | "snapshot"
    rows_written: int
    rows_pruned: int
    watermark: int | None
    keep_from: str | None  # rows before this time are pruned (each key's latest kept); None = all kept
    reason: str | None = None  # why a source was rewritten from the start


@dataclass
class MaterializeStats:
    models: list[str]
    sources: list[SourceStats] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(s.rows_written for s in self.sources)

    def to_data(self) -> dict[str, Any]:
        return {"models": self.models, "rows_written": self.rows_written, "sources": [asdict(s) for s in self.sources]}


def serving_models(spec: Spec) -> list[Model]:
    """Models behind a realtime or streaming serve block, and the shadow models scored beside them."""
    names: list[str] = []
    models = {m.name for m in spec.models}
    for s in spec.serves:
        if s.mode in SERVING_MODES:
            names.append(s.model)
            if s.shadow in models:
                names.append(s.shadow)
    return [spec.model(n) for n in dict.fromkeys(names)]


def group_window(group: FeatureGroup) -> int | None:
    """The longest window of a group's aggregates: None when one has no window, 0 with no aggregate."""
    windows = [n.window_ms for f in group.features for n in ir.walk(f.expr) if isinstance(n, ir.Agg)]
    if any(w is None for w in windows):
        return None
    return max((w for w in windows if w is not None), default=0)


def namespace(spec: Spec, source: str, key_column: str) -> str:
    """The source's name, or `source#key` when groups of several entities read that source."""
    keys = {spec.entity(g.entity).key for g in spec.groups if g.source == source and not g.request}
    return source if len(keys) <= 1 else f"{source}#{key_column}"


def source_needs(spec: Spec, models: list[Model] | None = None) -> list[SourceNeed]:
    """Per (source, entity key): the groups the served models need and the history they see.

    Request groups read the request, not stored history, so they need nothing here.
    """
    by_source: dict[tuple[str, str], list[FeatureGroup]] = {}
    for model in serving_models(spec) if models is None else models:
        for name in groups_for(spec, model):
            g = spec.group(name)
            if g.request:
                continue
            pair = (g.source, spec.entity(g.entity).key)
            if g not in by_source.setdefault(pair, []):
                by_source[pair].append(g)
    needs = []
    for (source, key), groups in by_source.items():
        windows = [group_window(g) for g in groups]
        window = None if any(w is None for w in windows) else max(w for w in windows if w is not None)
        needs.append(SourceNeed(source, key, namespace(spec, source, key), window, tuple(g.name for g in groups)))
    return needs


def source_tables(wh: Warehouse, spec: Spec) -> dict[str, str]:
    """The table each source is read from: the same rule batch features follow."""
    ctx = RunContext(wh, spec, "", {}, "")
    return {s.name: ctx.input_table("source", s.name) for s in spec.sources}


def _require(wh: Warehouse, table: str, source: str) -> None:
    if not wh.exists(table):
        raise RunError(_NODE, f"the warehouse has no table `{table}` for source `{source}` yet",
                       "run the pipeline first: `mlspec run SPEC`")


def _columns(wh: Warehouse, table: str) -> list[str]:
    return [r[0] for r in wh.conn.execute(f"DESCRIBE {ident(table)}").fetchall()]


def _fetch(wh: Warehouse, sql: str, params: list[Any] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Row dicts in chunks, so a first materialization of a big source stays within memory bounds.

    DuckDB's progress bar is off meanwhile: the query stays open while the store is written, and
    its bar would count that time and draw over our output.
    """
    was = wh.scalar("SELECT current_setting('enable_progress_bar')")
    wh.conn.execute("SET enable_progress_bar = false")
    try:
        cur = wh.conn.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        while chunk := cur.fetchmany(_FETCH):
            yield [dict(zip(names, r, strict=True)) for r in chunk]
    finally:
        wh.conn.execute(f"SET enable_progress_bar = {'true' if was else 'false'}")


def materialize(wh: Warehouse, spec: Spec, store: OnlineStore) -> MaterializeStats:
    """Bring the online store up to date with the warehouse for every served model."""
    models = serving_models(spec)
    stats = MaterializeStats([m.name for m in models])
    tables = source_tables(wh, spec)
    needs = source_needs(spec, models)
    for need in needs:
        _require(wh, tables[need.source], need.source)
    for need in needs:
        stats.sources.append(_materialize_source(wh, spec, store, need, tables[need.source]))
    return stats


def _materialize_source(wh: Warehouse, spec: Spec, store: OnlineStore, need: SourceNeed, table: str) -> SourceStats:
    src = spec.source(need.source)
    ns, key = need.namespace, need.key_column
    cols = _columns(wh, table)
    if key not in cols:
        raise RunError(_NODE, f"table `{table}` has no column `{key}`", "rebuild it with `mlspec run SPEC`")
    t, k = ident(table), ident(key)
    max_seq = int(wh.scalar(f"SELECT coalesce(max({SEQ}), 0) FROM {t}"))
    select = ", ".join(ident(c) for c in cols)

    if src.timestamp is None:  # a snapshot source: the latest row per key, synchronised whole
        rows = [r for chunk in _fetch(wh, f"SELECT {select} FROM {t} WHERE {k} IS NOT NULL QUALIFY row_number() "
                                          f"OVER (PARTITION BY {k} ORDER BY {SEQ} DESC) = 1 ORDER BY {SEQ}")
                for r in chunk]
        written = store.replace_source(ns, key, rows)
        store.set_watermark(ns, max_seq)
        store.set_meta(f"materialized:{ns}", _fingerprint(spec, table, cols, need))
        return SourceStats(src.name, ns, table, "snapshot", written, 0, max_seq, None)

    fingerprint = _fingerprint(spec, table, cols, need)
    watermark = store.watermark(ns)
    mode, reason = "incremental", None
    if store.meta(f"materialized:{ns}") not in (None, fingerprint):
        reason = "what the spec needs of this source changed"
    elif watermark is not None and watermark > max_seq:
        reason = f"the warehouse holds fewer rows (__seq {max_seq}) than were materialized ({watermark})"
    if reason:
        store.clear(ns)
        watermark, mode = None, "rebuild"
    store.set_meta(f"materialized:{ns}", fingerprint)

    ts, ts_sql = ident(src.timestamp), row_time_sql(src)
    where = f"{k} IS NOT NULL AND {ts} IS NOT NULL"  # a row without a time is never visible
    latest: dt.datetime | None = wh.scalar(f"SELECT max({ts_sql}) FROM {t} WHERE {where}")
    keep_from = latest - dt.timedelta(milliseconds=need.window_ms) if latest and need.window_ms is not None else None
    newer = f"{SEQ} > {int(watermark or 0)}"
    if keep_from is None:
        sql = f"SELECT {select} FROM {t} WHERE {where} AND {newer} ORDER BY {SEQ}"
    else:
        bound = literal(keep_from.isoformat(sep=" "), DType.TIMESTAMP)
        sql = (f"SELECT {select} FROM (SELECT *, {ts_sql} AS __t, row_number() OVER (PARTITION BY {k}, "
               f"{ts_sql} < {bound} ORDER BY {ts_sql} DESC, {SEQ} DESC) AS __rn FROM {t} WHERE {where}) "
               f"WHERE {newer} AND (__t >= {bound} OR __rn = 1) ORDER BY {SEQ}")
    written = sum(store.write_rows(ns, key, chunk, ts_column=src.timestamp) for chunk in _fetch(wh, sql))
    pruned = store.prune(ns, keep_from) if keep_from is not None else 0
    if max_seq:
        store.set_watermark(ns, max_seq)
    return SourceStats(src.name, ns, table, mode, written, pruned, store.watermark(ns),
                       keep_from.isoformat() if keep_from else None, reason)


def row_time_sql(src: Source) -> str:
    """The source's row time as a TIMESTAMP (a date is its midnight), as the batch engine reads it."""
    col = src.column(src.timestamp or "")
    ts = ident(src.timestamp or "")
    return f"CAST({ts} AS TIMESTAMP)" if col is not None and col.dtype is DType.DATE else ts


def _fingerprint(spec: Spec, table: str, columns: list[str], need: SourceNeed) -> str:
    """What a source's stored rows were chosen by: when any of it changes, they are rewritten."""
    src = spec.source(need.source)
    rules = [r.text for c in spec.checks if c.target_kind == "source" and c.target == src.name for r in c.rules]
    return json.dumps({"table": table, "columns": columns, "key": need.key_column, "window_ms": need.window_ms,
                       "timestamp": src.timestamp, "check_rules": rules}, sort_keys=True)


def retention_start(wh: Warehouse, spec: Spec, need: SourceNeed, table: str) -> dt.datetime | None:
    """The earliest serving time the store answers exactly for this source, when it prunes history
    that the warehouse still holds (None: nothing the features could see is dropped)."""
    src = spec.source(need.source)
    if src.timestamp is None or need.window_ms is None:
        return None
    ts_sql = row_time_sql(src)
    t, k = ident(table), ident(need.key_column)
    latest: dt.datetime | None = wh.scalar(f"SELECT max({ts_sql}) FROM {t} WHERE {k} IS NOT NULL")
    if latest is None:
        return None
    bound = latest - dt.timedelta(milliseconds=need.window_ms)
    dropped = wh.scalar(f"SELECT count(*) FROM (SELECT row_number() OVER (PARTITION BY {k} ORDER BY {ts_sql} DESC, "
                        f"{SEQ} DESC) AS rn FROM {t} WHERE {k} IS NOT NULL AND {ts_sql} < ?) WHERE rn > 1", [bound])
    return latest if dropped else None

