"""Batch scoring: the champion model applied to every entity's features as of one time."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import networkx as nx
import polars as pl

from mlspec.ir.spec import Model, Serve, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.sql import AS_OF, ident, literal
from mlspec.runtime.errors import RunError
from mlspec.runtime.features import compute_group, upstream_groups
from mlspec.runtime.registry import Registry, RegistryError
from mlspec.runtime.warehouse import Warehouse


def registry_for(wh: Warehouse) -> Registry:
    return Registry(wh.state_dir / "registry")


def groups_for(spec: Spec, model: Model) -> list[str]:
    """The groups a model reads plus the groups they reference, upstream first."""
    graph = nx.DiGraph()
    todo = list(dict.fromkeys(q.split(".")[0] for q in model.features))
    while todo:
        g = todo.pop()
        graph.add_node(g)
        for up in upstream_groups(spec.group(g)):
            if up not in graph:
                todo.append(up)
            graph.add_edge(up, g)
    return list(nx.lexicographical_topological_sort(graph))


def entity_keys_sql(spec: Spec, model: Model, table_of: dict[str, str]) -> str:
    """Who gets scored: the entity's own keyed source if there is one, else every key seen."""
    key = spec.entity(model.entity).key
    keyed = [s for s in spec.sources if s.key == key]
    sources = [keyed[0].name] if keyed else sorted({spec.group(g).source for g in groups_for(spec, model)})
    return " UNION ".join(f"SELECT DISTINCT {ident(key)} FROM {ident(table_of[s])} WHERE {ident(key)} IS NOT NULL"
                          for s in sources)


def features_as_of(wh: Warehouse, spec: Spec, model: Model, as_of: dt.datetime, engine: str,
                   source_table: dict[str, str], prefix: str = "score") -> pl.DataFrame:
    """One row per entity: key, __as_of and the model's qualified feature columns."""
    key = ident(spec.entity(model.entity).key)
    spine = f"{prefix}_spine__{model.name}"
    wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(spine)} AS SELECT {key}, "
                    f"{literal(as_of.isoformat(sep=' '), DType.TIMESTAMP)} AS {AS_OF} "
                    f"FROM ({entity_keys_sql(spec, model, source_table)}) ORDER BY {key}")
    tables: dict[str, str] = {}
    for g in groups_for(spec, model):
        group = spec.group(g)
        tables[g] = f"{prefix}_feat__{model.name}__{g}"
        compute_group(wh, spec, group, spine, source_table[group.source],
                      {u: tables[u] for u in upstream_groups(group)}, tables[g], engine)
    groups = list(dict.fromkeys(q.split(".")[0] for q in model.features))
    selects = [f"f{groups.index(q.split('.')[0])}.{ident(q.split('.', 1)[1])} AS {ident(q)}" for q in model.features]
    joins = " ".join(f"LEFT JOIN {ident(tables[g])} f{i} ON f{i}.{key} = s.{key} AND f{i}.{AS_OF} = s.{AS_OF}"
                     for i, g in enumerate(groups))
    frame: pl.DataFrame = wh.conn.sql(f"SELECT s.{key}, s.{AS_OF}, {', '.join(selects)} FROM {ident(spine)} s "
                                      f"{joins} ORDER BY s.{key}").pl()
    return frame


def score(wh: Warehouse, spec: Spec, serve: Serve, source_table: dict[str, str], engine: str,
          as_of: dt.datetime | None) -> dict[str, Any]:
    from mlspec.runtime.encode import encode
    from mlspec.runtime.train import load_booster, predict_scores

    node = f"serve:{serve.name}"
    model = spec.model(serve.model)
    registry = registry_for(wh)
    try:
        version = registry.resolve(model.name)
        booster = load_booster(registry.load_model_bytes(model.name, version))
        encoding = registry.load_encoding(model.name, version)
    except RegistryError as e:
        raise RunError(node, str(e), "train a model that passes its gate, or `mlspec promote VERSION`") from None
    when = as_of or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    frame = features_as_of(wh, spec, model, when, engine, source_table)
    scores = predict_scores(booster, encode(frame, encoding), model.task)
    key = spec.entity(model.entity).key
    out = frame.select(key, pl.col(AS_OF).alias("as_of"))
    if model.task == "multiclass":
        classes = registry.get(model.name, version).metadata.get("classes", [])
        best = scores.argmax(axis=1)
        out = out.with_columns(pl.Series("score", scores.max(axis=1)),
                               pl.Series("prediction", [classes[i] if i < len(classes) else str(i) for i in best]))
    else:
        out = out.with_columns(pl.Series("score", scores))
    out = out.with_columns(pl.lit(version).alias("model_version"),
                           pl.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).alias("scored_at"))
    target = _write(wh, out, serve.output or f"scores/{serve.name}.parquet", node)
    return {"rows": out.height, "output": target, "version": version, "as_of": when.isoformat(),
            "mean_score": float(scores.mean()) if scores.size and model.task != "multiclass" else None}


def _write(wh: Warehouse, frame: pl.DataFrame, output: str, node: str) -> str:
    """Atomically replace the output: a crash never leaves a half-written score file."""
    if output.startswith("duckdb:"):
        table = output.split(":", 1)[1]
        wh.conn.register("__scores", frame)
        try:
            wh.conn.execute(f"CREATE OR REPLACE TABLE {ident(table)} AS SELECT * FROM __scores")
        finally:
            wh.conn.unregister("__scores")
        return output
    path = Path(output) if Path(output).is_absolute() else wh.root / output
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if path.suffix == ".csv":
        frame.write_csv(tmp)
    elif path.suffix in (".parquet", ".pq"):
        frame.write_parquet(tmp)
    else:
        raise RunError(node, f"cannot write scores to `{output}`", "use a .parquet or .csv path, or duckdb:TABLE")
    os.replace(tmp, path)
    return output
