"""One function per DAG node kind: what `mlspec run` (and `run --node`, Airflow tasks) executes.

Each node reads its inputs from the warehouse and writes its output there, so any node can
run alone in a fresh process once its parents have run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlspec.ir.spec import Spec
from mlspec.runtime.checks import run_check
from mlspec.runtime.engines.sql import AS_OF, SEQ, event_groups, ident
from mlspec.runtime.errors import RunError
from mlspec.runtime.extract import extract
from mlspec.runtime.features import compute_group, event_source, training_spine_sql, upstream_groups
from mlspec.runtime.warehouse import Warehouse, table_for


@dataclass
class RunContext:
    wh: Warehouse
    spec: Spec
    spec_hash: str
    compiled_spec: dict[str, Any]
    run_id: str
    engine: str = "duckdb"
    as_of: dt.datetime | None = None
    warnings: list[str] = field(default_factory=list)

    def input_table(self, kind: str, name: str) -> str:
        """The table a consumer reads for a source or group: its check's output when one exists."""
        for c in self.spec.checks:
            if c.target == name and c.target_kind == ("source" if kind == "source" else "features"):
                return table_for(f"check:{c.name}")
        return table_for(f"{kind}:{name}")

    def require(self, node: str, table: str) -> None:
        if not self.wh.exists(table):
            raise RunError(node, f"its input `{table}` has not been built yet",
                           "run the upstream nodes first (e.g. `mlspec run --until " + node + "`)")


Detail = dict[str, Any]


def run_source(ctx: RunContext, name: str) -> Detail:
    stats = extract(ctx.wh, ctx.spec.source(name), ctx.run_id)
    return {"rows_in": stats.rows_read, "rows_passed": stats.rows_loaded, "rows_quarantined": stats.rows_quarantined,
            "rows_total": stats.rows_total, "watermark": stats.watermark, "incremental": stats.incremental}


def run_check_node(ctx: RunContext, name: str) -> Detail:
    check = next(c for c in ctx.spec.checks if c.name == name)
    node = f"check:{name}"
    source_table = table_for(f"{'source' if check.target_kind == 'source' else 'features'}:{check.target}")
    ctx.require(node, source_table)
    stats = run_check(ctx.wh, ctx.spec, check, ctx.run_id, source_table, table_for(node))
    ctx.warnings.extend(stats.warnings)
    return {"rows_in": stats.rows_in, "rows_passed": stats.rows_passed, "rows_quarantined": stats.rows_quarantined,
            "rules": [o.__dict__ for o in stats.outcomes]}


def run_label(ctx: RunContext, name: str) -> Detail:
    label = ctx.spec.label(name)
    node = f"label:{name}"
    src_table = ctx.input_table("source", label.source)
    ctx.require(node, src_table)
    key = ident(ctx.spec.entity(label.entity).key)
    value, ts = ident(label.value), ident(label.timestamp)
    out = table_for(node)
    conn = ctx.wh.conn
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {ident(out)} AS SELECT {key}, CAST({ts} AS TIMESTAMP) AS {AS_OF}, "
                     f"{value} AS __label, __seq FROM {ident(src_table)} WHERE {value} IS NOT NULL "
                     f"AND {key} IS NOT NULL AND {ts} IS NOT NULL ORDER BY {key}, {AS_OF}, __seq")
        conn.execute("DELETE FROM _mlspec_quarantine WHERE node = ?", [node])
        conn.execute(f"INSERT INTO _mlspec_quarantine SELECT ?, ?, 'label', CAST(__seq AS VARCHAR), "
                     f"'label row with a null key, time or value', NULL, current_timestamp FROM {ident(src_table)} "
                     f"WHERE {value} IS NULL OR {key} IS NULL OR {ts} IS NULL", [ctx.run_id, node])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    rows_in, rows = ctx.wh.count(src_table), ctx.wh.count(out)
    if rows == 0:
        raise RunError(node, f"label `{name}` has no usable rows in source `{label.source}`",
                       "check the label source's data and the checks that guard it")
    positives = None
    if label.dtype.value in ("bool", "int"):
        positives = ctx.wh.scalar(f"SELECT count(*) FILTER (WHERE CAST(__label AS DOUBLE) = 1) FROM {ident(out)}")
    return {"rows_in": rows_in, "rows_passed": rows, "rows_quarantined": rows_in - rows, "positives": positives}


def run_features(ctx: RunContext, name: str) -> Detail:
    group = ctx.spec.group(name)
    node = f"features:{name}"
    rows = ctx.input_table("source", group.source)
    ctx.require(node, rows)
    labels = {lab.name: table_for(f"label:{lab.name}") for lab in ctx.spec.labels if lab.entity == group.entity}
    for t in labels.values():
        ctx.require(node, t)
    try:
        events = event_source(ctx.spec, group)  # request features: one row per labelled event, not per time
    except ValueError as e:
        raise RunError(node, str(e), "read request features of one source per group") from None
    spine = f"spine__{group.entity}" if events is None else f"spine__{group.entity}__events__{events}"
    ctx.wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(spine)} AS "
                        f"{training_spine_sql(ctx.spec, group.entity, labels, events)}")
    upstream = {g: ctx.input_table("features", g) for g in upstream_groups(group)}
    compute_group(ctx.wh, ctx.spec, group, spine, rows, upstream, table_for(node), ctx.engine,
                  by_event=events is not None)
    n = ctx.wh.count(table_for(node))
    return {"rows_in": ctx.wh.count(spine), "rows_passed": n, "rows_quarantined": 0, "features": len(group.features),
            "engine": ctx.engine}


def run_dataset(ctx: RunContext, name: str) -> Detail:
    model = ctx.spec.model(name)
    node = f"dataset:{name}"
    label_table = table_for(f"label:{model.label}")
    ctx.require(node, label_table)
    key = ident(ctx.spec.entity(model.entity).key)
    groups = list(dict.fromkeys(q.split(".")[0] for q in model.features))
    events = event_groups(ctx.spec)
    joins, selects = [], []
    for i, g in enumerate(groups):
        table = ctx.input_table("features", g)
        ctx.require(node, table)
        on_seq = f" AND f{i}.{SEQ} = l.{SEQ}" if g in events else ""  # an event's own request features
        joins.append(f"JOIN {ident(table)} f{i} ON f{i}.{key} = l.{key} AND f{i}.{AS_OF} = l.{AS_OF}{on_seq}")
    for q in model.features:
        g, f = q.split(".", 1)
        selects.append(f"f{groups.index(g)}.{ident(f)} AS {ident(q)}")
    out = table_for(node)
    ctx.wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(out)} AS SELECT l.{key}, l.{AS_OF}, l.__label, "
                        f"{', '.join(selects)} FROM {ident(label_table)} l {' '.join(joins)} "
                        f"ORDER BY l.{key}, l.{AS_OF}, l.__seq")
    rows_in, rows = ctx.wh.count(label_table), ctx.wh.count(out)
    if rows == 0:
        raise RunError(node, f"no label row of `{model.label}` has features (all {rows_in} were set aside by checks "
                       "or have no matching entity)", "look at `mlspec quarantine` and the feature checks")
    return {"rows_in": rows_in, "rows_passed": rows, "rows_quarantined": rows_in - rows,
            "features": len(model.features)}


NodeRunner = Callable[[RunContext, str], Detail]
