"""Feature tables: spines (who and when) and the engine that fills them (DuckDB SQL or Polars)."""

from __future__ import annotations

from mlspec.ir import expr as ir
from mlspec.ir.spec import FeatureGroup, Spec
from mlspec.runtime.engines.sql import AS_OF, feature_sql, ident
from mlspec.runtime.warehouse import Warehouse

ENGINES = ("duckdb", "polars")


def upstream_groups(group: FeatureGroup) -> list[str]:
    return sorted({n.group for f in group.features for n in ir.walk(f.expr)
                   if isinstance(n, ir.FeatureRef) and n.group != group.name})


def training_spine_sql(spec: Spec, entity: str, label_table: dict[str, str]) -> str:
    """Every (key, time) a label of this entity was observed at: the as-of points of training."""
    key = ident(spec.entity(entity).key)
    parts = [f"SELECT {key}, {AS_OF} FROM {ident(label_table[lab.name])}" for lab in spec.labels
             if lab.entity == entity]
    if not parts:
        return f"SELECT CAST(NULL AS BIGINT) AS {key}, CAST(NULL AS TIMESTAMP) AS {AS_OF} WHERE false"
    return " UNION ".join(parts)


def compute_group(wh: Warehouse, spec: Spec, group: FeatureGroup, spine: str, rows: str,
                  upstream: dict[str, str], out: str, engine: str) -> None:
    """Write `out`: every feature of `group` for each (key, __as_of) of `spine`."""
    if engine == "duckdb":
        sql = feature_sql(spec, group, spine, rows, upstream)
        wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(out)} AS {sql}")
        return
    from mlspec.runtime.engines.polars_engine import compute_features

    frames = {name: wh.conn.sql(f"SELECT * FROM {ident(t)}").pl() for name, t in upstream.items()}
    result = compute_features(spec, group, wh.conn.sql(f"SELECT * FROM {ident(spine)}").pl(),
                              wh.conn.sql(f"SELECT * FROM {ident(rows)}").pl(), frames)
    wh.conn.register("__polars_result", result)
    try:
        wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(out)} AS SELECT * FROM __polars_result")
    finally:
        wh.conn.unregister("__polars_result")
