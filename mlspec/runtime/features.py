"""Feature tables: spines (who and when) and the engine that fills them (DuckDB SQL or Polars)."""

from __future__ import annotations

from mlspec.ir import expr as ir
from mlspec.ir.spec import FeatureGroup, Spec
from mlspec.runtime.engines.sql import AS_OF, SEQ, event_groups, feature_sql, ident
from mlspec.runtime.warehouse import Warehouse

ENGINES = ("duckdb", "polars")


def upstream_groups(group: FeatureGroup) -> list[str]:
    return sorted({n.group for f in group.features for n in ir.walk(f.expr)
                   if isinstance(n, ir.FeatureRef) and n.group != group.name})


def event_source(spec: Spec, group: FeatureGroup) -> str | None:
    """The event source of an event group (see `event_groups`): the source of the request groups it
    is or reads; None for any other group. A group's values belong to one event, so one source."""
    if group.name not in event_groups(spec):
        return None
    todo, seen, sources = [group.name], set(), set()
    while todo:
        g = spec.group(todo.pop())
        if g.name in seen:
            continue
        seen.add(g.name)
        if g.request:
            sources.add(g.source)
        todo.extend(upstream_groups(g))
    if len(sources) > 1:
        raise ValueError(f"features `{group.name}` read request features of several sources "
                         f"({', '.join(sorted(sources))}); a request is one event")
    return sources.pop()


def training_spine_sql(spec: Spec, entity: str, label_table: dict[str, str], events: str | None = None) -> str:
    """Every (key, time) a label of this entity was observed at, once: the as-of points of training.

    With `events` (a source name), the labelled events of that source instead: (key, time, __seq)
    of each label row whose source is `events`, so two events at one time stay two spine rows.
    """
    key = ident(spec.entity(entity).key)
    seq = f", {SEQ}" if events is not None else ""
    parts = [f"SELECT DISTINCT {key}, {AS_OF}{seq} FROM {ident(label_table[lab.name])}" for lab in spec.labels
             if lab.entity == entity and (events is None or lab.source == events)]
    if not parts:
        return (f"SELECT CAST(NULL AS BIGINT) AS {key}, CAST(NULL AS TIMESTAMP) AS {AS_OF}"
                + (f", CAST(NULL AS BIGINT) AS {SEQ}" if events is not None else "") + " WHERE false")
    return " UNION ".join(parts)


def compute_group(wh: Warehouse, spec: Spec, group: FeatureGroup, spine: str, rows: str,
                  upstream: dict[str, str], out: str, engine: str, by_event: bool = False) -> None:
    """Write `out`: every feature of `group` for each (key, __as_of) of `spine`.

    `by_event`: the spine is a training spine of labelled events (key, __as_of, __seq), see
    `feature_sql`; `out` then keeps __seq.
    """
    if engine == "duckdb":
        sql = feature_sql(spec, group, spine, rows, upstream, by_event)
        wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(out)} AS {sql}")
        return
    from mlspec.runtime.engines.polars_engine import compute_features

    frames = {name: wh.conn.sql(f"SELECT * FROM {ident(t)}").pl() for name, t in upstream.items()}
    result = compute_features(spec, group, wh.conn.sql(f"SELECT * FROM {ident(spine)}").pl(),
                              wh.conn.sql(f"SELECT * FROM {ident(rows)}").pl(), frames, by_event)
    wh.conn.register("__polars_result", result)
    try:
        wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(out)} AS SELECT * FROM __polars_result")
    finally:
        wh.conn.unregister("__polars_result")
