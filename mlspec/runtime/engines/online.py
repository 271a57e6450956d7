"""Feature IR -> per-entity evaluation in plain Python (the online serving executor).

Computes one entity's features as of T from its rows (the history the online store keeps),
implementing docs/semantics.md exactly like the DuckDB and Polars engines do: floats finite
or null, Kleene logic, SQL `IN`, empty windows (0 for counts and sums, null otherwise),
windows T - d < ts <= T, row features from the latest row with ts <= T.
"""

from __future__ import annotations

import datetime as dt
import math
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

    def evaluate(self, inp: GroupInput) -> dict[str, Any]:
        if inp.as_of is None:
            visible = []
        elif self.ts:
            visible = [r for r in inp.rows if (t := self._ts(r)) is not None and t <= inp.as_of]
        else:
            visible = list(inp.rows)
        visible.sort(key=lambda r: (self._ts(r) or _EPOCH, r.get("__seq", 0)))
        if self.group.request:
            row = inp.request
        elif self.ts is None:
            row = max(inp.rows, key=lambda r: r.get("__seq", 0)) if inp.rows else None
        else:
            row = visible[-1] if visible else None
        frame = _Frame(self, inp, visible, row, {})
        return {name: frame.feature(name) for name in self.features}

    def _ts(self, r: Row) -> dt.datetime | None:
        v = r.get(self.ts or "")
        return to_timestamp(v) if v is not None else None


@dataclass
class _Frame:
    ev: Evaluator
    inp: GroupInput
    visible: list[Row]
    row: Row | None
    done: dict[str, Any]

    def feature(self, name: str) -> Any:
        if name not in self.done:
            f = self.ev.features[name]
            self.done[name] = _cast(self.eval(f.expr, self.row), f.dtype)
        return self.done[name]

    def eval(self, e: ir.Expr, row: Row | None) -> Any:
        return _DISPATCH[type(e)](self, e, row)

    # ---- leaves --------------------------------------------------------------------------
    def lit(self, e: ir.Lit, row: Row | None) -> Any:
        if e.value is None:
            return None
        if e.dtype is DType.DATE:
            return dt.date.fromisoformat(str(e.value))
        if e.dtype is DType.TIMESTAMP:
            return to_timestamp(dt.datetime.fromisoformat(str(e.value)))
        if e.dtype is DType.FLOAT:
            return float(e.value)  # type: ignore[arg-type,unused-ignore]
        return e.value

    def col(self, e: ir.Col, row: Row | None) -> Any:
        if row is None:
            return None
        v = row.get(e.name)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    def feature_ref(self, e: ir.FeatureRef, row: Row | None) -> Any:
        if e.group == self.ev.group.name:
            return self.feature(e.name)
        return (self.inp.upstream or {}).get(e.group, {}).get(e.name)

    def as_of(self, e: ir.AsOf, row: Row | None) -> Any:
        return self.inp.as_of

    # ---- operators -----------------------------------------------------------------------
    def binop(self, e: ir.BinOp, row: Row | None) -> Any:
        if e.op in ("and", "or"):
            a, b = self.eval(e.left, row), self.eval(e.right, row)
            if e.op == "and":
                return False if a is False or b is False else (None if a is None or b is None else True)
            return True if a is True or b is True else (None if a is None or b is None else False)
        a, b = self.eval(e.left, row), self.eval(e.right, row)
        if a is None or b is None:
            return None
        if e.op in ir.COMPARE_OPS:
            if isinstance(a, dt.date) and isinstance(b, dt.date) and type(a) is not type(b):
                a, b = to_timestamp(a), to_timestamp(b)
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[e.op]
        if e.op == "/":
            return None if b == 0 else finite(float(a) / float(b))
        if e.op == "%":
            if b == 0:
                return None
            if e.dtype is DType.INT:
                return int(math.copysign(abs(a) % abs(b), a))
            return finite(math.fmod(float(a), float(b)))
        out = a + b if e.op == "+" else a - b if e.op == "-" else a * b
        return out if e.dtype is DType.INT else _float_op(out)

    def unary(self, e: ir.UnaryOp, row: Row | None) -> Any:
        v = self.eval(e.operand, row)
        if v is None:
            return None
        return (not v) if e.op == "not" else -v

    def is_null(self, e: ir.IsNull, row: Row | None) -> Any:
        return (self.eval(e.operand, row) is None) != e.negated

    def in_list(self, e: ir.InList, row: Row | None) -> Any:
        v = self.eval(e.operand, row)
        values = [self.eval(x, row) for x in e.values]
        if v is None:
            return None
        hit = True if any(x is not None and x == v for x in values) else (None if None in values else False)
        return hit if not e.negated or hit is None else not hit

    def case(self, e: ir.CaseWhen, row: Row | None) -> Any:
        for cond, result in e.whens:
            if self.eval(cond, row) is True:
                return _cast(self.eval(result, row), e.dtype)
        return _cast(self.eval(e.otherwise, row), e.dtype) if e.otherwise is not None else None

    def func(self, e: ir.Func, row: Row | None) -> Any:
        args = [self.eval(a, row) for a in e.args]
        if e.name == "coalesce":
            return _cast(next((a for a in args if a is not None), None), e.dtype)
        if e.name in ("least", "greatest"):
            present = [a for a in args if a is not None]
            if not present:
                return None
            return _cast(min(present) if e.name == "least" else max(present), e.dtype)
        if any(a is None for a in args):
            return None
        return _FUNCS[e.name](*args)

    def agg(self, e: ir.Agg, row: Row | None) -> Any:
        rows = self.visible
        if e.window_ms is not None and self.inp.as_of is not None:
            lower = self.inp.as_of - dt.timedelta(milliseconds=e.window_ms)
            rows = [r for r in rows if (t := self.ev._ts(r)) is not None and t > lower]
        if e.fn == "count" and e.arg is None:
            return len(rows)
        if e.fn == "count_if":
            assert e.arg is not None
            return sum(1 for r in rows if self.eval(e.arg, r) is True)
        assert e.arg is not None
        pairs = [(r, v) for r in rows if (v := self.eval(e.arg, r)) is not None]
        values = [v for _, v in pairs]
        if e.fn == "count":
            return len(values)
        if e.fn == "distinct_count":
            return len(set(values))
        if e.fn == "sum":
            if e.dtype is DType.INT:
                return int(sum(values))
            return _fsum(values) if values else 0.0
        if not values:
            return None
        if e.fn == "mean":
            total = _fsum(values)
            return finite(total / len(values)) if total is not None else None
        if e.fn == "min":
            return min(values)
        if e.fn == "max":
            return max(values)
        # rows are in (ts, __seq) order already
        return values[-1] if e.fn == "last" else values[0]


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

_DISPATCH: dict[type, Callable[[_Frame, Any, Row | None], Any]] = {
    ir.Lit: _Frame.lit, ir.Col: _Frame.col, ir.FeatureRef: _Frame.feature_ref, ir.AsOf: _Frame.as_of,
    ir.BinOp: _Frame.binop, ir.UnaryOp: _Frame.unary, ir.IsNull: _Frame.is_null, ir.InList: _Frame.in_list,
    ir.CaseWhen: _Frame.case, ir.Func: _Frame.func, ir.Agg: _Frame.agg,
}
_NODE_KINDS = frozenset(_DISPATCH)
assert frozenset(ir.EXPR_KINDS) == _NODE_KINDS, "every IR node kind needs an online translation"
