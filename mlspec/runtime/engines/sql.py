"""Feature IR -> DuckDB SQL (the default batch engine).

Float sums and means use `fsum` (compensated summation), whose result does not depend on
the order rows arrive in, so the same data gives the same features in every run, and the
same values as the online evaluator's `math.fsum`.

Implements docs/semantics.md exactly: floats are finite or null, `/` and `%` by zero are
null, empty windows give 0 for counts and sums and null otherwise, a window `last d` at as_of
T holds rows with T - d < ts <= T, and row features come from the latest row with ts <= T.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlspec.diagnostics import Diagnostic, MlspecError
from mlspec.ir import expr as ir
from mlspec.ir.spec import Feature, FeatureGroup, Source, Spec
from mlspec.ir.types import DType

SQL_TYPES = {DType.INT: "BIGINT", DType.FLOAT: "DOUBLE", DType.BOOL: "BOOLEAN", DType.STRING: "VARCHAR",
             DType.DATE: "DATE", DType.TIMESTAMP: "TIMESTAMP", DType.NULL: "DOUBLE"}
AS_OF = "__as_of"
SEQ = "__seq"
DAY_US = 86_400_000_000


def ident(name: str) -> str:
    """Quote an identifier (names are already restricted by the grammar; quoting is belt and braces)."""
    return '"' + name.replace('"', '""') + '"'


def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def literal(value: object, dtype: DType) -> str:
    if value is None:
        return "NULL" if dtype is DType.NULL else f"CAST(NULL AS {SQL_TYPES[dtype]})"
    if dtype is DType.BOOL:
        return "TRUE" if value else "FALSE"
    if dtype is DType.INT:
        return f"CAST({int(value)} AS BIGINT)"  # type: ignore[call-overload]
    if dtype is DType.FLOAT:
        return f"CAST({float(value)!r} AS DOUBLE)"  # type: ignore[arg-type]
    if dtype is DType.DATE:
        return f"DATE {string_literal(str(value))}"
    if dtype is DType.TIMESTAMP:
        return f"TIMESTAMP {string_literal(str(value))}"
    return string_literal(str(value))


def finite(sql: str) -> str:
    """NaN and ±inf become null: the one meaning of float results in every executor."""
    return f"(CASE WHEN isfinite({sql}) THEN {sql} END)"


def _as_ts(sql: str, dtype: DType) -> str:
    return f"CAST({sql} AS TIMESTAMP)" if dtype is DType.DATE else sql


def unsupported(node: object, why: str) -> MlspecError:
    span = getattr(node, "span", None)
    from mlspec.syntax.span import NO_SPAN

    return MlspecError([Diagnostic("E190", f"the DuckDB engine cannot compile this: {why}", span or NO_SPAN)])


@dataclass
class _Compiler:
    """Compiles one feature group; collects the aggregates it meets into `aggs`."""

    group: FeatureGroup | None
    source: Source | None
    features: dict[str, Feature]
    row_alias: str = "r"
    event_alias: str = "e"
    aggs: list[str] = field(default_factory=list)
    upstream: set[str] = field(default_factory=set)

    def expr(self, e: ir.Expr) -> str:
        match e:
            case ir.Lit():
                return literal(e.value, e.dtype)
            case ir.Col():
                return f"{self.row_alias}.{ident(e.name)}"
            case ir.AsOf():
                return f"s.{AS_OF}"
            case ir.FeatureRef():
                if self.group is not None and e.group == self.group.name:
                    return f"({self.expr(self.features[e.name].expr)})"
                self.upstream.add(e.group)
                return f"{ident('u_' + e.group)}.{ident(e.name)}"
            case ir.BinOp():
                return self.binop(e)
            case ir.UnaryOp(op="not"):
                return f"(NOT {self.expr(e.operand)})"
            case ir.UnaryOp(op="-"):
                return f"(-{self.expr(e.operand)})"
            case ir.IsNull():
                return f"({self.expr(e.operand)} IS {'NOT ' if e.negated else ''}NULL)"
            case ir.InList():
                values = ", ".join(self.expr(v) for v in e.values)
                return f"({self.expr(e.operand)} {'NOT ' if e.negated else ''}IN ({values}))"
            case ir.CaseWhen():
                whens = " ".join(f"WHEN {self.expr(c)} THEN {self.cast(r, e.dtype)}" for c, r in e.whens)
                other = f" ELSE {self.cast(e.otherwise, e.dtype)}" if e.otherwise is not None else ""
                return f"(CASE {whens}{other} END)"
            case ir.Func():
                return self.func(e)
            case ir.Agg():
                return self.agg(e)
        raise unsupported(e, f"unknown expression node {type(e).__name__}")

    def cast(self, e: ir.Expr, dtype: DType) -> str:
        sql = self.expr(e)
        return f"CAST({sql} AS {SQL_TYPES[dtype]})" if e.dtype != dtype else sql

    def binop(self, e: ir.BinOp) -> str:
        left, right = self.expr(e.left), self.expr(e.right)
        if e.op in ("and", "or"):
            return f"({left} {e.op.upper()} {right})"
        if e.op in ir.COMPARE_OPS:
            if e.left.dtype.is_temporal and e.right.dtype.is_temporal and e.left.dtype != e.right.dtype:
                left, right = _as_ts(left, e.left.dtype), _as_ts(right, e.right.dtype)
            op = "=" if e.op == "==" else "<>" if e.op == "!=" else e.op
            return f"({left} {op} {right})"
        if e.op == "/":
            return finite(f"(CASE WHEN {right} = 0 THEN NULL ELSE CAST({left} AS DOUBLE) / {right} END)")
        if e.op == "%":
            out = f"(CASE WHEN {right} = 0 THEN NULL ELSE {left} % {right} END)"
            return out if e.dtype is DType.INT else finite(f"CAST({out} AS DOUBLE)")
        out = f"({left} {e.op} {right})"
        return out if e.dtype is DType.INT else finite(f"CAST({out} AS DOUBLE)")

    def func(self, e: ir.Func) -> str:
        a = [self.expr(x) for x in e.args]
        name = e.name
        if name in ("coalesce", "least", "greatest"):
            return f"{name.upper()}({', '.join(self.cast(x, e.dtype) for x in e.args)})"
        if name == "abs":
            return f"abs({a[0]})"
        if name == "round":
            return finite(f"round(CAST({a[0]} AS DOUBLE), CAST({a[1]} AS INTEGER))")
        if name in ("floor", "ceil"):
            return f"CAST({name}({a[0]}) AS DOUBLE)"
        if name == "ln":
            return f"(CASE WHEN {a[0]} > 0 THEN ln({a[0]}) END)"
        if name == "exp":
            return finite(f"exp(CAST({a[0]} AS DOUBLE))")
        if name == "sqrt":
            return f"(CASE WHEN {a[0]} >= 0 THEN sqrt({a[0]}) END)"
        if name in ("lower", "upper", "trim", "length"):
            return f"{name}({a[0]})"
        if name in ("contains", "starts_with", "ends_with"):
            fn = {"contains": "contains", "starts_with": "starts_with", "ends_with": "suffix"}[name]
            return f"{fn}({a[0]}, {a[1]})"
        if name in ("days_between", "hours_between"):
            unit = DAY_US if name == "days_between" else DAY_US // 24
            t0, t1 = (_as_ts(x, y.dtype) for x, y in zip(a, e.args, strict=True))
            diff = f"(epoch_us({t1}) - epoch_us({t0}))"
            # exact floor division in integers: DOUBLE would round differences beyond 2^53 microseconds
            return f"CAST(({diff} - ((({diff} % {unit}) + {unit}) % {unit})) // {unit} AS BIGINT)"
        if name in ("year", "month", "day", "hour"):
            return f"CAST(extract({name} FROM {_as_ts(a[0], e.args[0].dtype)}) AS BIGINT)"
        if name == "day_of_week":
            return f"CAST(isodow({_as_ts(a[0], e.args[0].dtype)}) AS BIGINT)"
        if name == "to_date":
            return f"CAST({a[0]} AS DATE)"
        raise unsupported(e, f"function `{name}` has no DuckDB translation")

    def agg(self, e: ir.Agg) -> str:
        if self.source is None:
            raise unsupported(e, "aggregates need a feature group's source")
        col = f"a{len(self.aggs)}"
        ev = self.event_alias
        ts = _as_ts(f"{ev}.{ident(self.source.timestamp or '')}", self._ts_dtype())
        window = (f" AND {ts} > s.{AS_OF} - to_microseconds(CAST({e.window_ms * 1000} AS BIGINT))"
                  if e.window_ms is not None else "")
        saved, self.row_alias = self.row_alias, ev
        arg = self.expr(e.arg) if e.arg is not None else None
        self.row_alias = saved
        matched = f"{ev}.{SEQ} IS NOT NULL{window}"
        sql = {
            "count": f"count({arg if arg else f'{ev}.{SEQ}'}) FILTER (WHERE {matched})",
            "count_if": f"count({ev}.{SEQ}) FILTER (WHERE {matched} AND {arg})",
            "sum": (f"{'fsum' if e.dtype is DType.FLOAT else 'sum'}({arg}) FILTER (WHERE {matched})"),
            "mean": finite(f"(fsum({arg}) FILTER (WHERE {matched}) / count({arg}) FILTER (WHERE {matched}))"),
            "min": f"min({arg}) FILTER (WHERE {matched})",
            "max": f"max({arg}) FILTER (WHERE {matched})",
            "distinct_count": f"count(DISTINCT {arg}) FILTER (WHERE {matched})",
            "last": f"arg_max({arg}, {{'t': {ts}, 's': {ev}.{SEQ}}}) FILTER (WHERE {matched})",
            "first": f"arg_min({arg}, {{'t': {ts}, 's': {ev}.{SEQ}}}) FILTER (WHERE {matched})",
        }[e.fn]
        if e.fn == "sum":
            sql = f"COALESCE(CAST({sql} AS {SQL_TYPES[e.dtype]}), {literal(0, e.dtype)})"
            if e.dtype is DType.FLOAT:
                sql = finite(sql)
        self.aggs.append(f"{sql} AS {col}")
        return f"g.{col}"

    def _ts_dtype(self) -> DType:
        col = self.source.column(self.source.timestamp or "") if self.source else None
        return col.dtype if col else DType.TIMESTAMP


def row_sql(e: ir.Expr, alias: str = "r") -> str:
    """A row-level expression (check predicates) over the columns of table alias `alias`."""
    return _Compiler(None, None, {}, row_alias=alias).expr(e)


def event_groups(spec: Spec) -> set[str]:
    """The groups whose values belong to one event: request groups and the groups reading their features.

    In training they are computed per labelled event (key, __as_of, __seq), because two events of
    an entity at the same time have different fields; every other group per (key, __as_of).
    """
    out = {g.name for g in spec.groups if g.request}
    grown = True
    while grown:
        grown = False
        for g in spec.groups:
            if g.name not in out and any(isinstance(n, ir.FeatureRef) and n.group in out
                                         for f in g.features for n in ir.walk(f.expr)):
                out.add(g.name)
                grown = True
    return out


def feature_sql(spec: Spec, group: FeatureGroup, spine: str, rows: str, upstream: dict[str, str],
                by_event: bool = False) -> str:
    """SELECT computing every feature of `group` for each (key, __as_of) row of table `spine`.

    `rows` is the table of validated source rows (schema columns plus __seq); `upstream`
    maps other group names to their feature tables over the same spine.

    With `by_event` (training an event group, see `event_groups`), the spine also carries the
    labelled event's __seq: a request group reads exactly that row of `rows`, the output keeps
    __seq, and upstream event groups are joined on it too.
    """
    source = spec.source(group.source)
    key = ident(spec.entity(group.entity).key)
    comp = _Compiler(group, source, {f.name: f for f in group.features})
    selects = [f"s.{key}", f"s.{AS_OF}"] + ([f"s.{SEQ}"] if by_event else [])
    for f in group.features:
        selects.append(f"CAST({comp.expr(f.expr)} AS {SQL_TYPES[f.dtype]}) AS {ident(f.name)}")
    joins = []
    if comp.aggs:
        ts = _as_ts(f"e.{ident(source.timestamp or '')}", comp._ts_dtype())
        windows = [a.window_ms for f in group.features for a in ir.walk(f.expr) if isinstance(a, ir.Agg)]
        bounded = [w for w in windows if w is not None]
        bound = (f" AND {ts} > s.{AS_OF} - to_microseconds(CAST({max(bounded) * 1000} AS BIGINT))"
                 if len(bounded) == len(windows) else "")
        joins.append(
            f"LEFT JOIN (SELECT s.{key}, s.{AS_OF}, {', '.join(comp.aggs)} FROM "
            f"(SELECT DISTINCT {key}, {AS_OF} FROM {ident(spine)}) s "
            f"LEFT JOIN {ident(rows)} e ON e.{key} = s.{key} AND {ts} <= s.{AS_OF}{bound} "
            f"GROUP BY s.{key}, s.{AS_OF}) g ON g.{key} = s.{key} AND g.{AS_OF} = s.{AS_OF}")
    uses_rows = any(isinstance(n, ir.Col) and not _inside_agg(f.expr, n) for f in group.features
                    for n in ir.walk(f.expr))
    if uses_rows and by_event and group.request:
        joins.append(f"LEFT JOIN {ident(rows)} r ON r.{SEQ} = s.{SEQ}")  # the labelled event's own row
    elif uses_rows:
        joins.append(_row_join(source, key, rows))
    events = event_groups(spec) if by_event else set()
    for other in sorted(comp.upstream):
        alias = ident("u_" + other)
        on_seq = f" AND {alias}.{SEQ} = s.{SEQ}" if other in events else ""
        joins.append(f"LEFT JOIN {ident(upstream[other])} {alias} ON {alias}.{key} = s.{key} "
                     f"AND {alias}.{AS_OF} = s.{AS_OF}{on_seq}")
    return (f"SELECT {', '.join(selects)}\nFROM {ident(spine)} s\n" + "\n".join(joins)
            + f"\nORDER BY s.{key}, s.{AS_OF}" + (f", s.{SEQ}" if by_event else ""))


def _row_join(source: Source, key: str, rows: str) -> str:
    if source.timestamp is None:
        latest = (f"SELECT * FROM {ident(rows)} QUALIFY row_number() OVER (PARTITION BY {key} "
                  f"ORDER BY {SEQ} DESC) = 1")
        return f"LEFT JOIN ({latest}) r ON r.{key} = s.{key}"
    ts_col = source.column(source.timestamp)
    ts = _as_ts(ident(source.timestamp), ts_col.dtype if ts_col else DType.TIMESTAMP)
    latest = (f"SELECT *, {ts} AS __ts FROM {ident(rows)} QUALIFY row_number() OVER "
              f"(PARTITION BY {key}, {ts} ORDER BY {SEQ} DESC) = 1")
    return f"ASOF LEFT JOIN ({latest}) r ON r.{key} = s.{key} AND r.__ts <= s.{AS_OF}"


def _inside_agg(root: ir.Expr, target: ir.Expr) -> bool:
    return any(isinstance(n, ir.Agg) and any(x is target for x in ir.walk(n)) for n in ir.walk(root))
