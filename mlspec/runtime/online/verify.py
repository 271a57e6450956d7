"""`mlspec verify`: the skew check. Batch features and online features, as of one time, compared.

For a seeded sample of entities, every feature of every served model is computed twice: by the
batch path (`features_as_of`, the engine that built the training set) and by the online path
(the online store + the online evaluator, what `mlspec serve` answers). They must be equal:
exactly for ints, strings, bools, dates and timestamps; for floats, both null or within 1e-12
relative, because a sum over many rows may be added in another order by each engine (DuckDB
aggregates in parallel, the evaluator uses an exactly rounded sum) and differ in the last bits.

Request features read the event being scored; here each entity's request is its latest source
row at or before the as-of time, which is the row the batch path reads for it.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Any

from mlspec.ir.spec import Model, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.sql import SEQ, ident
from mlspec.runtime.errors import RunError
from mlspec.runtime.online.features import FeatureService
from mlspec.runtime.online.materialize import retention_start, row_time_sql, serving_models, source_needs, source_tables
from mlspec.runtime.online.store import OnlineStore
from mlspec.runtime.score import features_as_of, groups_for
from mlspec.runtime.warehouse import Warehouse

REL_TOL = 1e-12
PREFIX = "verify"
_NODE = "verify"
_EXAMPLES = 5


def values_equal(batch: Any, online: Any, dtype: DType) -> bool:
    """The equality `verify` demands (see the module docstring)."""
    if batch is None or online is None:
        return batch is None and online is None
    if dtype is DType.FLOAT:
        a, b = float(batch), float(online)
        return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b))
    return type(batch) is type(online) and batch == online


def _abs_diff(batch: Any, online: Any) -> float | None:
    numeric = (int, float)
    if isinstance(batch, numeric) and isinstance(online, numeric) and not isinstance(batch, bool) \
            and not isinstance(online, bool):
        return abs(float(batch) - float(online))
    return None


@dataclass
class FeatureCheck:
    feature: str
    dtype: str
    compared: int = 0
    equal: int = 0
    mismatched: int = 0
    max_abs_diff: float | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)  # key, batch, online of some mismatches

    def add(self, key: object, batch: Any, online: Any, dtype: DType) -> None:
        self.compared += 1
        diff = _abs_diff(batch, online)
        if diff is not None and math.isfinite(diff):
            self.max_abs_diff = diff if self.max_abs_diff is None else max(self.max_abs_diff, diff)
        if values_equal(batch, online, dtype):
            self.equal += 1
            return
        self.mismatched += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append({"key": key, "batch": batch, "online": online})


@dataclass
class ModelCheck:
    model: str
    as_of: dt.datetime
    entities: int  # entities the batch path computed
    sampled: int
    known: int  # sampled entities the online store holds rows for
    features: list[FeatureCheck]
    notes: list[str] = field(default_factory=list)

    @property
    def mismatched(self) -> int:
        return sum(f.mismatched for f in self.features)

    @property
    def ok(self) -> bool:
        return self.mismatched == 0

    def to_data(self) -> dict[str, Any]:
        return {"model": self.model, "as_of": self.as_of.isoformat(), "entities": self.entities,
                "sampled": self.sampled, "known": self.known, "ok": self.ok, "mismatched": self.mismatched,
                "notes": self.notes, "features": [f.__dict__ for f in self.features]}


def verify(wh: Warehouse, spec: Spec, store: OnlineStore, *, as_of: dt.datetime, sample: int = 1000, seed: int = 0,
           model: str | None = None, engine: str = "duckdb") -> list[ModelCheck]:
    """Compare batch and online features of the served models (or one named model) as of `as_of`."""
    models = serving_models(spec)
    if model is not None:
        models = [spec.model(model)]
    if not models:
        raise RunError(_NODE, "the spec has no realtime or streaming serve block, so nothing is served online",
                       "add `serve NAME { model = M  mode = realtime }`, or name a model with --model")
    tables = source_tables(wh, spec)
    for name, table in tables.items():
        if not wh.exists(table) and any(spec.group(g).source == name for m in models for g in groups_for(spec, m)):
            raise RunError(_NODE, f"the warehouse has no table `{table}` for source `{name}` yet",
                           "run the pipeline first: `mlspec run SPEC`, then `mlspec materialize SPEC`")
    service = FeatureService(spec)
    return [_verify_model(wh, spec, store, service, m, as_of, sample, seed, engine, tables) for m in models]


def _verify_model(wh: Warehouse, spec: Spec, store: OnlineStore, service: FeatureService, model: Model,
                  as_of: dt.datetime, sample: int, seed: int, engine: str, tables: dict[str, str]) -> ModelCheck:
    key = spec.entity(model.entity).key
    try:
        frame = features_as_of(wh, spec, model, as_of, engine, tables, prefix=PREFIX)
    finally:
        _drop_scratch(wh, spec, model)
    rows = {r[key]: r for r in frame.to_dicts()}
    keys = sorted(rows)
    chosen = sorted(random.Random(seed).sample(keys, min(sample, len(keys))))
    requests = _requests(wh, spec, model, chosen, as_of, tables)
    checks = [FeatureCheck(q, spec.feature(q).dtype.value) for q in model.features]
    known = 0
    for k in chosen:
        result = service.features(model, store, k, as_of, requests.get(k))
        known += result.known_entity
        for check in checks:
            check.add(k, rows[k][check.feature], result.values[check.feature], spec.feature(check.feature).dtype)
    out = ModelCheck(model.name, as_of, len(keys), len(chosen), known, checks)
    if not keys:
        out.notes.append("the batch path found no entities to compare (is the entity's source empty?)")
    for need in source_needs(spec, [model]):
        start = retention_start(wh, spec, need, tables[need.source])
        if start is not None and as_of < start:
            out.notes.append(f"source `{need.source}` keeps only the history serving needs from {start:%Y-%m-%d %H:%M} "
                             f"on; as of an earlier time the online store lacks rows the batch path sees")
    return out


def _requests(wh: Warehouse, spec: Spec, model: Model, keys: list[Any], as_of: dt.datetime,
              tables: dict[str, str]) -> dict[Any, dict[str, Any]]:
    """Per entity, the event a request group reads: its latest source row at or before as_of."""
    request_sources = {spec.group(g).source for g in groups_for(spec, model) if spec.group(g).request}
    if not request_sources or not keys:
        return {}
    if len(request_sources) > 1:
        raise RunError(_NODE, f"model `{model.name}` reads request features from several sources "
                       f"({', '.join(sorted(request_sources))}); a request is one event")
    src = spec.source(request_sources.pop())
    k, t = ident(spec.entity(model.entity).key), ident(tables[src.name])
    ts = row_time_sql(src)
    wh.conn.execute("CREATE OR REPLACE TEMP TABLE __verify_keys (k BIGINT)" if isinstance(keys[0], int)
                    else "CREATE OR REPLACE TEMP TABLE __verify_keys (k VARCHAR)")
    wh.conn.executemany("INSERT INTO __verify_keys VALUES (?)", [[x] for x in keys])
    try:
        cur = wh.conn.execute(f"SELECT * FROM {t} WHERE {k} IN (SELECT k FROM __verify_keys) AND {ts} <= ? "
                              f"QUALIFY row_number() OVER (PARTITION BY {k} ORDER BY {ts} DESC, {SEQ} DESC) = 1",
                              [as_of])
        names = [d[0] for d in cur.description]
        found = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        wh.conn.execute("DROP TABLE IF EXISTS __verify_keys")
    key = spec.entity(model.entity).key
    return {r[key]: r for r in found}


def _drop_scratch(wh: Warehouse, spec: Spec, model: Model) -> None:
    """features_as_of leaves its spine and group tables behind; verify keeps the warehouse as it found it."""
    names = [f"{PREFIX}_spine__{model.name}", *(f"{PREFIX}_feat__{model.name}__{g}" for g in groups_for(spec, model))]
    for name in names:
        wh.conn.execute(f"DROP TABLE IF EXISTS {ident(name)}")
