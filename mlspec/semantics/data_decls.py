"""Lowering of the data declarations: project, source, entity, features, label."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mlspec.diagnostics import did_you_mean
from mlspec.ir import expr as ir
from mlspec.ir.spec import ColumnDef, Entity, Feature, FeatureGroup, Label, Project, SecretRef, Source
from mlspec.ir.types import COLUMN_TYPES, DType
from mlspec.semantics.context import Collector, Fields, as_env, literal_number
from mlspec.semantics.exprs import Scope, lower
from mlspec.syntax import ast
from mlspec.syntax.span import Span

SOURCE_FORMATS = ("csv", "parquet", "duckdb")
GROUP_RESERVED = ("entity", "from", "description", "request")
_CREDENTIALS_IN_URL = re.compile(r"//[^/@\s]*:[^/@\s]*@")


def lower_project(decl: ast.Decl | None, default_name: str, out: Collector) -> Project:
    if decl is None:
        return Project(default_name)
    f = Fields(f"project `{decl.name}`", decl.items, ("owner", "description", "online_store"), out)
    _no_statements(f, out)
    store, url = "embedded", None
    if "online_store" in f:
        value = f.values["online_store"].value
        if isinstance(value, ast.Ref) and value.parts == ("embedded",):
            store = "embedded"
        elif isinstance(value, ast.Call) and value.func == "redis" and len(value.args) == 1:
            store = "redis"
            url = _redis_url(value.args[0], out)
        else:
            out.error("E102", "`online_store` must be `embedded` or `redis(\"redis://host:6379/0\")`", value.span,
                      'or redis(env("REDIS_URL")) when the URL carries credentials')
    return Project(decl.name, f.string("owner"), f.string("description"), store, url, decl.span)


def _redis_url(arg: ast.Expr | ast.KwArg, out: Collector) -> SecretRef | str | None:
    if isinstance(arg, ast.KwArg):
        out.error("E102", "redis(...) takes a URL", arg.span)
        return None
    env = as_env(arg)
    if env is not None:
        return env
    if isinstance(arg, ast.Literal) and isinstance(arg.value, str):
        if _CREDENTIALS_IN_URL.search(arg.value):
            out.error("E170", "the Redis URL carries a password written as a literal", arg.span,
                      'write redis(env("REDIS_URL")) and set the URL in the environment')
            return None
        return arg.value
    out.error("E102", "redis(...) takes a URL string or env(\"NAME\")", arg.span)
    return None


def _no_statements(f: Fields, out: Collector) -> None:
    for item in f.others:
        out.error("E102", f"only `key = value` fields are allowed in {f.owner}", item.span)


def lower_source(decl: ast.Decl, out: Collector) -> Source | None:
    owner = f"source `{decl.name}`"
    f = Fields(owner, decl.items, ("path", "format", "table", "key", "timestamp", "freshness", "stream"), out)
    schemas = [i for i in f.others if isinstance(i, ast.Schema)]
    for item in f.others:
        if not isinstance(item, ast.Schema):
            out.error("E102", f"only fields and a `schema {{ ... }}` are allowed in {owner}", item.span)
    if not schemas:
        out.error("E101", f"{owner} needs a `schema {{ ... }}` block", decl.name_span,
                  "list each column as `name type [not null] [unique] ...`")
        return None
    columns = _columns(schemas[0], owner, out)
    for extra in schemas[1:]:
        out.error("E104", f"{owner} has two schema blocks", extra.span)
    names = {c.name for c in columns}
    path_value = f.string("path")  # None when missing or not a string (reported)
    path = path_value or ""
    if not f.require("path", decl.name_span, 'e.g. path = "data/orders.parquet"'):
        return None
    fmt = f.choice("format", SOURCE_FORMATS)
    if fmt is None:
        ext = path.rsplit(".", 1)[-1].lower()
        fmt = {"csv": "csv", "parquet": "parquet", "pq": "parquet", "duckdb": "duckdb", "db": "duckdb"}.get(ext)
        if fmt is None and path_value is not None and "format" not in f:
            out.error("E105", f"cannot tell the format of `{path}`", f.span("path"),
                      "add `format = csv`, `parquet` or `duckdb`")
    table = f.string("table")
    if fmt == "duckdb" and table is None:
        out.error("E101", f"{owner} reads a DuckDB file and needs `table = \"name\"`", decl.name_span)
    key, ts = f.name("key"), f.name("timestamp")
    for field_name, col in (("key", key), ("timestamp", ts)):
        if col is not None and col not in names:
            out.error("E111", f"`{field_name}` names `{col}`, which is not a column of {owner}", f.span(field_name),
                      did_you_mean(col, names))
    if ts is not None and ts in names:
        tcol = next(c for c in columns if c.name == ts)
        if not tcol.dtype.is_temporal and tcol.dtype is not DType.NULL:  # NULL: unknown type, reported
            out.error("E120", f"timestamp column `{ts}` is {tcol.type_name}, not date or timestamp", f.span("timestamp"))
    return Source(decl.name, fmt or "parquet", path, table, key, ts, f.duration("freshness"), tuple(columns),
                  f.string("stream"), decl.span)


def _columns(schema: ast.Schema, owner: str, out: Collector) -> list[ColumnDef]:
    cols: list[ColumnDef] = []
    seen: set[str] = set()
    for c in schema.columns:
        if c.name in seen:
            out.error("E104", f"column `{c.name}` is declared twice in {owner}", c.span)
            continue
        seen.add(c.name)
        dtype = COLUMN_TYPES.get(c.type_name)
        if dtype is None:
            out.unknown("type", c.type_name, c.type_span, COLUMN_TYPES, code="E110")
            dtype = DType.NULL  # keep the column so its uses do not cascade into more errors
        cols.append(_column(c, dtype, out))
    return cols


def _column(c: ast.Column, dtype: DType, out: Collector) -> ColumnDef:
    not_null = unique = False
    allowed: tuple[int | float | str | bool, ...] | None = None
    value_range: tuple[float, float] | None = None
    references: tuple[str, str] | None = None
    for k in c.constraints:
        if k.kind == "not_null":
            not_null = True
        elif k.kind == "unique":
            unique = True
        elif k.kind == "in":
            vals = tuple(a.value for a in k.args if isinstance(a, ast.Literal) and a.value is not None)
            bad = [v for v in vals if not _fits(v, dtype)]
            if bad:
                out.error("E120", f"allowed value {bad[0]!r} does not fit column type {c.type_name}", k.span)
            allowed = vals
        elif k.kind == "range":
            lo, hi = (literal_number(a) for a in k.args)
            if not dtype.is_numeric and dtype is not DType.NULL:
                out.error("E120", f"`range` needs a numeric column; `{c.name}` is {c.type_name}", k.span)
            elif lo is None or hi is None or lo > hi:
                out.error("E160", "a range needs numbers with low <= high", k.span)
            else:
                value_range = (lo, hi)
        elif k.kind == "references":
            ref = k.args[0]
            if isinstance(ref, ast.Ref) and len(ref.parts) == 2:
                references = (ref.parts[0], ref.parts[1])
            else:
                out.error("E102", "`references` takes `source.column`", k.span)
    return ColumnDef(c.name, dtype, c.type_name, not_null, unique, allowed, value_range, references, c.span)


def _fits(v: object, t: DType) -> bool:
    if t is DType.NULL:
        return True
    if t is DType.STRING:
        return isinstance(v, str)
    if t is DType.BOOL:
        return isinstance(v, bool)
    if t.is_numeric:
        return isinstance(v, int | float) and not isinstance(v, bool)
    return isinstance(v, str)


def lower_entity(decl: ast.Decl, out: Collector) -> Entity | None:
    f = Fields(f"entity `{decl.name}`", decl.items, ("key", "description"), out)
    _no_statements(f, out)
    if not f.require("key", decl.name_span, "e.g. key = customer_id"):
        return None
    key = f.name("key")
    return Entity(decl.name, key, decl.span) if key else None


def lower_label(decl: ast.Decl, sources: dict[str, Source], entities: dict[str, Entity],
                out: Collector) -> Label | None:
    owner = f"label `{decl.name}`"
    f = Fields(owner, decl.items, ("entity", "from", "value", "timestamp", "description"), out)
    _no_statements(f, out)
    ok = all([f.require("entity", decl.name_span), f.require("from", decl.name_span),
              f.require("value", decl.name_span)])
    entity, src_name, value = f.name("entity"), f.name("from"), f.name("value")
    if not ok or entity is None or src_name is None or value is None:
        return None
    if entity not in entities:
        if not out.is_broken("entity", entity):
            out.unknown("entity", entity, f.span("entity"), entities)
        return None
    src = sources.get(src_name)
    if src is None:
        if not out.is_broken("source", src_name):
            out.unknown("source", src_name, f.span("from"), sources)
        return None
    cols = {c.name: c for c in src.columns}
    if value not in cols:
        out.unknown("column", value, f.span("value"), cols, where=f"source `{src_name}`")
        return None
    if entities[entity].key not in cols:
        out.error("E150", f"source `{src_name}` has no column `{entities[entity].key}`, the key of entity `{entity}`",
                  f.span("from"))
        return None
    ts = f.name("timestamp") or src.timestamp
    if ts is None:
        out.error("E141", f"{owner} has no timestamp: features cannot be computed as of the label time",
                  decl.name_span, f"add `timestamp = <column>` here or in source `{src_name}`")
        return None
    if ts not in cols:
        if "timestamp" in f:  # else it is the source's own `timestamp`, reported with the source
            out.unknown("column", ts, f.span("timestamp"), cols, where=f"source `{src_name}`")
        return None
    if "timestamp" in f and not cols[ts].dtype.is_temporal and cols[ts].dtype is not DType.NULL:
        out.error("E120", f"timestamp column `{ts}` is {cols[ts].type_name}, not date or timestamp",
                  f.span("timestamp"))
        return None
    return Label(decl.name, entity, src_name, value, cols[value].dtype, ts, decl.span)


@dataclass
class FeatureLowering:
    """Lowers every feature lazily so references in any order work and cycles are found."""

    decls: dict[str, ast.Decl]
    sources: dict[str, Source]
    entities: dict[str, Entity]
    out: Collector
    headers: dict[str, tuple[str, Source, bool]] = field(default_factory=dict)  # group -> (entity, source, request)
    items: dict[str, dict[str, ast.Assign]] = field(default_factory=dict)
    done: dict[tuple[str, str], Feature | None] = field(default_factory=dict)
    active: list[tuple[str, str]] = field(default_factory=list)

    def run(self) -> list[FeatureGroup]:
        for name, decl in self.decls.items():
            self._header(name, decl)
        groups = []
        for name, decl in self.decls.items():
            if name not in self.headers:
                continue
            feats = [self.feature(name, fname) for fname in self.items[name]]
            entity, src, request = self.headers[name]
            f = Fields("", decl.items, GROUP_RESERVED, Collector(), extra_ok=True)
            groups.append(FeatureGroup(name, entity, src.name, tuple(x for x in feats if x is not None), request,
                                       f.string("description"), decl.span))
        return groups

    def _header(self, name: str, decl: ast.Decl) -> None:
        owner = f"features `{name}`"
        f = Fields(owner, decl.items, GROUP_RESERVED, self.out, extra_ok=True)
        for item in f.others:
            self.out.error("E102", f"{owner} holds `name = expression` features only", item.span)
        ok = f.require("entity", decl.name_span) & f.require("from", decl.name_span)
        entity, src_name = f.name("entity"), f.name("from")
        request = bool(f.boolean("request"))
        self.items[name] = {k: v for k, v in f.values.items() if k not in GROUP_RESERVED}
        if not self.items[name]:
            self.out.error("E101", f"{owner} defines no features", decl.name_span, "add `name = expression` lines")
        if not ok or entity is None or src_name is None:
            return
        if entity not in self.entities:
            if not self.out.is_broken("entity", entity):
                self.out.unknown("entity", entity, f.span("entity"), self.entities)
            return
        src = self.sources.get(src_name)
        if src is None:
            if not self.out.is_broken("source", src_name):
                self.out.unknown("source", src_name, f.span("from"), self.sources)
            return
        key = self.entities[entity].key
        if src.column(key) is None:
            self.out.error("E150", f"source `{src_name}` has no column `{key}`, the key of entity `{entity}`",
                           f.span("from"), "join through a source that carries the entity key")
            return
        self.headers[name] = (entity, src, request)

    def resolve(self, group: str, name: str, span: Span) -> ir.FeatureRef | None:
        if group not in self.decls:
            self.out.unknown("feature group", group, span, self.decls)
            return None
        if name not in self.items.get(group, {}):
            self.out.unknown("feature", name, span, self.items.get(group, {}), where=f"group `{group}`")
            return None
        feature = self.feature(group, name)
        return ir.FeatureRef(group, name, feature.dtype, span=span) if feature else None

    def feature(self, group: str, name: str) -> Feature | None:
        key = (group, name)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            cycle = [*self.active[self.active.index(key):], key]
            self.out.error("E130", "features depend on each other in a cycle: "
                           + " -> ".join(f"{g}.{n}" for g, n in cycle), self.items[group][name].span)
            self.done[key] = None
            return None
        if group not in self.headers:
            self.done[key] = None
            return None
        self.active.append(key)
        result = self._lower_feature(group, name)
        self.active.pop()
        self.done[key] = result
        return result

    def _lower_feature(self, group: str, name: str) -> Feature | None:
        entity, src, request = self.headers[group]
        item = self.items[group][name]
        scope = Scope(columns={c.name: c.dtype for c in src.columns}, group=group,
                      group_features=frozenset(self.items[group]), self_name=name, resolve_feature=self.resolve,
                      allow_aggregates=not request, allow_as_of=True)
        e = lower(item.value, scope, self.out)
        if e is None:
            return None
        nodes = ir.walk(e)
        if any(isinstance(n, ir.Agg) for n in nodes):
            if src.timestamp is None:
                self.out.error("E140", f"`{name}` aggregates over source `{src.name}`, which has no timestamp",
                               item.value.span, f"add `timestamp = <column>` to source `{src.name}`")
                return None
            outside = _columns_outside_aggregates(e)
            if outside:
                self.out.error("E144", f"column `{outside[0].name}` is used outside an aggregate in `{name}`",
                               outside[0].span, f"wrap it in an aggregate, e.g. last({outside[0].name})")
                return None
            kind = "aggregate"
        elif any(isinstance(n, ir.Col) for n in nodes):
            key = self.entities[entity].key
            if not request and src.key != key:
                self.out.error("E143", f"`{name}` reads a column row by row, but source `{src.name}` holds many rows "
                               f"per `{key}`", item.value.span,
                               "aggregate it, e.g. last(column) or count(column, last 30d)")
                return None
            kind = "row"
        else:
            kind = "derived"
        return Feature(group, name, e, e.dtype if e.dtype is not DType.NULL else DType.FLOAT, kind, item.span)


def _columns_outside_aggregates(e: ir.Expr) -> list[ir.Col]:
    if isinstance(e, ir.Agg):
        return []
    if isinstance(e, ir.Col):
        return [e]
    return [c for child in ir.children(e) for c in _columns_outside_aggregates(child)]
