"""Feature IR -> per-entity evaluation in plain Python (the online serving executor).

Computes one entity's features as of T from its rows (the history the online store keeps),
implementing docs/semantics.md exactly like the DuckDB and Polars engines do: floats finite
or null, Kleene logic, SQL `IN`, empty windows (0 for counts and sums, null otherwise),
windows T - d < ts <= T, row features from the latest row with ts <= T.

Each feature is compiled once into nested Python closures (no per-node dispatch when serving),
and an entity's rows are prepared once into a `History`: ordered by (time, __seq), with the
times as epoch microseconds, so the rows visible as of T and the rows of a window are found by
bisection, and the per-row values of an aggregate's argument are computed once per history.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlspec.diagnostics import Diagnostic, MlspecError
from mlspec.ir import expr as ir
from mlspec.ir.spec import FeatureGroup, Source, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.text import simple_lower, simple_upper
from mlspec.syntax.span import NO_SPAN

Row = Mapping[str, Any]
_EPOCH = dt.datetime(1970, 1, 1)
_DAY_US = 86_400_000_000


def to_timestamp(v: dt.date | dt.datetime) -> dt.datetime:
    """Dates are their midnight UTC; aware timestamps become naive UTC."""
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    return dt.datetime(v.year, v.month, v.day)


def epoch_us(v: dt.date | dt.datetime) -> int:
    delta = to_timestamp(v) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _round_half_away(x: float, n: int) -> float | None:
    m = 10.0 ** n
    v = abs(x) * m
    r = math.floor(v)
    if v - r >= 0.5:
        r += 1
    return finite(math.copysign(r, x) / m)


@dataclass(frozen=True)
class GroupInput:
    """What evaluating one group for one entity needs: its rows and the evaluation time."""

    as_of: dt.datetime | None  # None (a spine row without a time) sees no rows at all
    rows: Sequence[Row]  # the entity's rows of the group's source, any order, each with __seq
    request: Row | None = None  # the event being scored, for request groups
    upstream: Mapping[str, Mapping[str, Any]] | None = None  # group -> features already computed


class History:
    """One entity's rows of one source, prepared for evaluation as of any time.

    Rows are in (time, __seq) order with their times as epoch microseconds; a row with a null
    time is left out of a timestamped source, since no as-of time sees it. Built once per entity
    (the online feature service caches it while the store is unchanged) and shared by every
    group over the source. Read-only once built, apart from the memo of argument values.
    """

    __slots__ = ("_values", "latest", "rows", "stored", "times")

    def __init__(self, rows: Sequence[Row], timestamp: str | None) -> None:
        self.stored = rows  # as given, rows without a time included: what a newer history extends
        self.latest: Row | None = max(rows, key=_seq) if rows else None  # for a source without time
        self.times: list[int] | None
        if timestamp:
            keyed = [(epoch_us(t), _seq(r), r) for r in rows if (t := r.get(timestamp)) is not None]
            keyed.sort(key=_time_and_seq)
            self.rows: list[Row] = [r for _, _, r in keyed]
            self.times = [t for t, _, _ in keyed]
        else:
            self.rows = sorted(rows, key=_seq)
            self.times = None
        self._values: dict[object, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def values(self, arg: _Fn, ctx: _Ctx) -> list[Any]:
        """`arg` of every row, computed once: only for arguments that read nothing but the row."""
        found = self._values.get(arg)
        if found is None:
            found = self._values[arg] = [arg(ctx, r) for r in self.rows]
        return found

    def running(self, arg: _Fn, ctx: _Ctx, counted: Callable[[Any], bool]) -> list[int]:
        """How many of the first i rows have an `arg` value that is `counted`, for every i: a count
        over rows lo..stop is then one subtraction."""
        key = (arg, counted)
        found = self._values.get(key)
        if found is None:
            found = [0]
            n = 0
            for v in self.values(arg, ctx):
                n += counted(v)
                found.append(n)
            self._values[key] = found
        return found


def _seq(r: Row) -> int:
    return r.get("__seq", 0)  # type: ignore[no-any-return]


def _time_and_seq(k: tuple[int, int, Row]) -> tuple[int, int]:
    return k[0], k[1]


_Fn = Callable[["_Ctx", Row | None], Any]


class _Ctx:
    """One evaluation of one group for one entity: what the compiled closures read."""

    __slots__ = ("as_of", "as_of_us", "done", "ev", "extra", "extra_us", "hist", "row", "stop", "upstream")

    def __init__(self, ev: Evaluator, as_of: dt.datetime | None, hist: History, extra: Row | None,
                 upstream: Mapping[str, Mapping[str, Any]] | None) -> None:
        self.ev, self.as_of, self.hist = ev, as_of, hist
        self.row: Row | None = None
        self.upstream = upstream or {}
        self.done: dict[str, Any] = {}
        self.as_of_us = self.stop = self.extra_us = 0
        self.extra = None
        if as_of is not None:
            self.as_of_us = epoch_us(as_of)
            self.stop = bisect_right(hist.times, self.as_of_us) if hist.times is not None else len(hist.rows)
            self.extra = extra
            if extra is not None and ev.ts:
                t = extra.get(ev.ts)
                self.extra_us = epoch_us(t) if t is not None else self.as_of_us + 1
                if self.extra_us > self.as_of_us:  # not visible as of this time
                    self.extra = None

    def feature(self, name: str) -> Any:
        done = self.done
        if name not in done:
            done[name] = self.ev.compiled[name](self, self.row)
        return done[name]


class Evaluator:
    """Evaluates the features of one group; compiled once per group, called per entity."""

    def __init__(self, spec: Spec, group: FeatureGroup) -> None:
        self.spec = spec
        self.group = group
        self.source: Source = spec.source(group.source)
        self.ts = self.source.timestamp
        self.features = {f.name: f for f in group.features}
        for f in group.features:
            for node in ir.walk(f.expr):
                if type(node) not in _NODE_KINDS:
                    raise MlspecError([Diagnostic("E190", f"the online evaluator cannot compute "
                                                  f"{type(node).__name__}", getattr(node, "span", NO_SPAN))])
        scope = _Scope(group.name, self.ts)
        self.compiled: dict[str, _Fn] = {f.name: _cast_to(_compile(f.expr, scope), f.dtype)
                                         for f in group.features}
        self.empty = History((), self.ts)  # what a request group, or an entity without rows, reads

    def history(self, rows: Sequence[Row]) -> History:
        """The entity's rows prepared for this group's source (reusable across calls and groups)."""
        return History(rows, self.ts)

    def evaluate(self, inp: GroupInput) -> dict[str, Any]:
        return self.evaluate_history(inp.as_of, self.history(inp.rows), request=inp.request, upstream=inp.upstream)

    def evaluate_history(self, as_of: dt.datetime | None, hist: History, extra: Row | None = None,
                         request: Row | None = None,
                         upstream: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Features as of `as_of` over a prepared history, plus an `extra` row (the live event
        being scored) that comes after every visible row of the history: its time is `as_of`
        (or as_of's day, in a date column). Seen when `as_of` is set, it is the row of row
        features, and windows that reach its time count it."""
        ctx = _Ctx(self, as_of, hist, extra, upstream)
        if self.group.request:
            ctx.row = request
        elif ctx.extra is not None:
            ctx.row = ctx.extra
        elif self.ts is None:
            ctx.row = hist.latest
        elif ctx.stop:
            ctx.row = hist.rows[ctx.stop - 1]
        return {name: ctx.feature(name) for name in self.compiled}


# ---- compiling expressions to closures ---------------------------------------------------------


def _cast_to(fn: _Fn, dtype: DType) -> _Fn:
    """`fn` with its value cast to the feature's type (only floats and timestamps need it)."""
    if dtype not in (DType.FLOAT, DType.TIMESTAMP):
        return fn
    return lambda ctx, row: _cast(fn(ctx, row), dtype)


@dataclass(frozen=True)
class _Scope:
    """What compiling an expression needs to know of its group."""

    group: str
    timestamp: str | None  # the source's time column: histories are ordered by it


def _compile(e: ir.Expr, scope: _Scope) -> _Fn:
    return _COMPILERS[type(e)](e, scope)


def _lit(e: ir.Lit, scope: _Scope) -> _Fn:
    value: Any = e.value
    if value is None:
        pass
    elif e.dtype is DType.DATE:
        value = dt.date.fromisoformat(str(value))
    elif e.dtype is DType.TIMESTAMP:
        value = to_timestamp(dt.datetime.fromisoformat(str(value)))
    elif e.dtype is DType.FLOAT:
        value = float(value)
    return lambda ctx, row: value


def _col(e: ir.Col, scope: _Scope) -> _Fn:
    name = e.name

    def col(ctx: _Ctx, row: Row | None) -> Any:
        if row is None:
            return None
        v = row.get(name)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return col


def _feature_ref(e: ir.FeatureRef, scope: _Scope) -> _Fn:
    name, other = e.name, e.group
    if other == scope.group:
        return lambda ctx, row: ctx.feature(name)
    return lambda ctx, row: ctx.upstream.get(other, {}).get(name)


def _as_of(e: ir.AsOf, scope: _Scope) -> _Fn:
    return lambda ctx, row: ctx.as_of


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _binop(e: ir.BinOp, scope: _Scope) -> _Fn:
    left, right, op = _compile(e.left, scope), _compile(e.right, scope), e.op
    if op == "and":
        def and_(ctx: _Ctx, row: Row | None) -> Any:
            a, b = left(ctx, row), right(ctx, row)
            return False if a is False or b is False else (None if a is None or b is None else True)
        return and_
    if op == "or":
        def or_(ctx: _Ctx, row: Row | None) -> Any:
            a, b = left(ctx, row), right(ctx, row)
            return True if a is True or b is True else (None if a is None or b is None else False)
        return or_
    if op in ir.COMPARE_OPS:
        compare = _COMPARE[op]

        def cmp(ctx: _Ctx, row: Row | None) -> Any:
            a, b = left(ctx, row), right(ctx, row)
            if a is None or b is None:
                return None
            if isinstance(a, dt.date) and isinstance(b, dt.date) and type(a) is not type(b):
                a, b = to_timestamp(a), to_timestamp(b)
            return compare(a, b)
        return cmp
    if op == "/":
        def div(ctx: _Ctx, row: Row | None) -> Any:
            a, b = left(ctx, row), right(ctx, row)
            if a is None or b is None:
                return None
            return None if b == 0 else finite(float(a) / float(b))
        return div
    if op == "%":
        integer = e.dtype is DType.INT

        def mod(ctx: _Ctx, row: Row | None) -> Any:
            a, b = left(ctx, row), right(ctx, row)
            if a is None or b is None or b == 0:
                return None
            if integer:
                return int(math.copysign(abs(a) % abs(b), a))
            return finite(math.fmod(float(a), float(b)))
        return mod
    arith = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]
    if e.dtype is DType.INT:
        def int_op(ctx: _Ctx, row: Row | None) -> Any:
            a, b = left(ctx, row), right(ctx, row)
            return None if a is None or b is None else arith(a, b)
        return int_op

    def float_op(ctx: _Ctx, row: Row | None) -> Any:
        a, b = left(ctx, row), right(ctx, row)
        return None if a is None or b is None else _float_op(arith(a, b))
    return float_op


def _unary(e: ir.UnaryOp, scope: _Scope) -> _Fn:
    operand = _compile(e.operand, scope)
    if e.op == "not":
        def not_(ctx: _Ctx, row: Row | None) -> Any:
            v = operand(ctx, row)
            return None if v is None else not v
        return not_

    def neg(ctx: _Ctx, row: Row | None) -> Any:
        v = operand(ctx, row)
        return None if v is None else -v
    return neg


def _is_null(e: ir.IsNull, scope: _Scope) -> _Fn:
    operand, negated = _compile(e.operand, scope), e.negated
    return lambda ctx, row: (operand(ctx, row) is None) != negated


def _in_list(e: ir.InList, scope: _Scope) -> _Fn:
    operand, negated = _compile(e.operand, scope), e.negated
    options = [_compile(x, scope) for x in e.values]

    def in_(ctx: _Ctx, row: Row | None) -> Any:
        v = operand(ctx, row)
        values = [x(ctx, row) for x in options]
        if v is None:
            return None
        hit = True if any(x is not None and x == v for x in values) else (None if None in values else False)
        return hit if not negated or hit is None else not hit
    return in_


def _case(e: ir.CaseWhen, scope: _Scope) -> _Fn:
    whens = [(_compile(c, scope), _compile(r, scope)) for c, r in e.whens]
    otherwise = _compile(e.otherwise, scope) if e.otherwise is not None else None
    dtype = e.dtype

    def case(ctx: _Ctx, row: Row | None) -> Any:
        for cond, result in whens:
            if cond(ctx, row) is True:
                return _cast(result(ctx, row), dtype)
        return _cast(otherwise(ctx, row), dtype) if otherwise is not None else None
    return case


def _func(e: ir.Func, scope: _Scope) -> _Fn:
    args = [_compile(a, scope) for a in e.args]
    dtype = e.dtype
    if e.name == "coalesce":
        def coalesce(ctx: _Ctx, row: Row | None) -> Any:
            values = [a(ctx, row) for a in args]
            return _cast(next((v for v in values if v is not None), None), dtype)
        return coalesce
    if e.name in ("least", "greatest"):
        pick = min if e.name == "least" else max

        def extreme(ctx: _Ctx, row: Row | None) -> Any:
            present = [v for a in args if (v := a(ctx, row)) is not None]
            return _cast(pick(present), dtype) if present else None
        return extreme
    fn = _FUNCS[e.name]

    def call(ctx: _Ctx, row: Row | None) -> Any:
        values = [a(ctx, row) for a in args]
        return None if None in values else fn(*values)
    return call


def _agg(e: ir.Agg, scope: _Scope) -> _Fn:
    """An aggregate over the visible rows (time <= as_of), or those of its window."""
    fn, dtype = e.fn, e.dtype
    window_us = e.window_ms * 1000 if e.window_ms is not None else None
    arg = _compile(e.arg, scope) if e.arg is not None else None
    # An argument that reads only its row has the same value in every evaluation: memoised per history.
    per_row = e.arg is not None and not any(isinstance(n, ir.AsOf | ir.FeatureRef | ir.Agg) for n in ir.walk(e.arg))
    counted = _COUNTED.get(fn) if per_row else None
    # The newest/oldest time of the rows in view: histories are ordered by it, so it is at one end.
    ends = (isinstance(e.arg, ir.Col) and e.arg.name == scope.timestamp and fn in ("max", "last", "min", "first"))
    newest = fn in ("max", "last")

    def agg(ctx: _Ctx, row: Row | None) -> Any:
        hist, stop, extra = ctx.hist, ctx.stop, ctx.extra
        lo = 0
        if window_us is not None and ctx.as_of is not None:
            if hist.times is None:  # rows without a time are in no window
                lo, extra = stop, None
            else:
                lower = ctx.as_of_us - window_us  # the window is lower < time <= as_of
                lo = bisect_right(hist.times, lower, 0, stop)
                if extra is not None and ctx.extra_us <= lower:
                    extra = None
        if arg is None:  # count(*)
            return stop - lo + (extra is not None)
        if counted is not None:
            run = hist.running(arg, ctx, counted)
            return run[stop] - run[lo] + (extra is not None and counted(arg(ctx, extra)))
        if ends:
            if extra is not None and (newest or stop == lo):
                return arg(ctx, extra)
            return arg(ctx, hist.rows[stop - 1 if newest else lo]) if stop > lo else None
        values = hist.values(arg, ctx)[lo:stop] if per_row else [arg(ctx, r) for r in hist.rows[lo:stop]]
        if extra is not None:
            values.append(arg(ctx, extra))
        return _AGGREGATES[fn](values, dtype)
    return agg


def _not_null(v: Any) -> bool:
    return v is not None


def _true(v: Any) -> bool:
    return v is True


_COUNTED: dict[str, Callable[[Any], bool]] = {"count": _not_null, "count_if": _true}


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def _sum(values: list[Any], dtype: DType) -> Any:
    present = _present(values)
    if dtype is DType.INT:
        return int(sum(present))
    return _fsum(present) if present else 0.0


def _mean(values: list[Any], dtype: DType) -> Any:
    present = _present(values)
    if not present:
        return None
    total = _fsum(present)
    return finite(total / len(present)) if total is not None else None


def _pick(choose: Callable[[list[Any]], Any]) -> Callable[[list[Any], DType], Any]:
    def pick(values: list[Any], dtype: DType) -> Any:
        present = _present(values)
        return choose(present) if present else None
    return pick


_AGGREGATES: dict[str, Callable[[list[Any], DType], Any]] = {
    "count": lambda values, dtype: sum(map(_not_null, values)),
    "count_if": lambda values, dtype: sum(map(_true, values)),
    "distinct_count": lambda values, dtype: len(set(_present(values))),
    "sum": _sum,
    "mean": _mean,
    "min": _pick(min),
    "max": _pick(max),
    "last": _pick(operator.itemgetter(-1)),  # rows are in (time, __seq) order
    "first": _pick(operator.itemgetter(0)),
}


def _fsum(values: Sequence[Any]) -> float | None:
    """Compensated, order-independent float sum (DuckDB's fsum); null when it overflows."""
    try:
        return finite(math.fsum(float(v) for v in values))
    except OverflowError:
        return None


def _float_op(v: Any) -> float | None:
    try:
        return finite(float(v))
    except OverflowError:
        return None


def _cast(v: Any, dtype: DType) -> Any:
    if v is None:
        return None
    if dtype is DType.FLOAT:
        return finite(float(v))
    if dtype is DType.TIMESTAMP and isinstance(v, dt.date):
        return to_timestamp(v)
    return v


def _between(unit_us: int) -> Callable[[Any, Any], int]:
    return lambda a, b: math.floor((epoch_us(b) - epoch_us(a)) / float(unit_us))


def _exp(x: float) -> float | None:
    try:
        return finite(math.exp(x))
    except OverflowError:
        return None


_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": lambda x, n: _round_half_away(float(x), int(n)),
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "ln": lambda x: math.log(x) if x > 0 else None,
    "exp": _exp,
    "sqrt": lambda x: math.sqrt(x) if x >= 0 else None,
    "lower": simple_lower,
    "upper": simple_upper,
    "trim": lambda s: s.strip(" "),
    "length": len,
    "contains": lambda s, t: t in s,
    "starts_with": str.startswith,
    "ends_with": str.endswith,
    "days_between": _between(_DAY_US),
    "hours_between": _between(_DAY_US // 24),
    "year": lambda t: to_timestamp(t).year,
    "month": lambda t: to_timestamp(t).month,
    "day": lambda t: to_timestamp(t).day,
    "hour": lambda t: to_timestamp(t).hour,
    "day_of_week": lambda t: to_timestamp(t).isoweekday(),
    "to_date": lambda t: to_timestamp(t).date(),
}

_COMPILERS: dict[type, Callable[[Any, _Scope], _Fn]] = {
    ir.Lit: _lit, ir.Col: _col, ir.FeatureRef: _feature_ref, ir.AsOf: _as_of,
    ir.BinOp: _binop, ir.UnaryOp: _unary, ir.IsNull: _is_null, ir.InList: _in_list,
    ir.CaseWhen: _case, ir.Func: _func, ir.Agg: _agg,
}
_NODE_KINDS = frozenset(_COMPILERS)
assert frozenset(ir.EXPR_KINDS) == _NODE_KINDS, "every IR node kind needs an online translation"
