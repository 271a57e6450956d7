"""Feature IR -> Polars (the in-process engine), with the DuckDB engine's exact meaning.

`mlspec.runtime.engines.sql` defines what every IR node means; this module computes the same
table with Polars expressions, one hand-written translation per node kind and per scalar
function, never per feature. Where Polars' own behaviour differs from that meaning, the
translation corrects it explicitly (each place says why):

* `%` in Polars is floored (Python-like) and inexact for floats; the language's `%` is
  truncated (C fmod: the result takes the dividend's sign), so ints are sign-corrected and
  floats go through numpy's exact `fmod`.
* Polars divides by a scalar (or anything its optimiser folds to one) by multiplying with the
  reciprocal, which is not IEEE division; `/` and `round` therefore divide in numpy.
* Polars' default rounding is half-to-even; `round` is half away from zero, with DuckDB's
  algorithm (scale by 10^n in double, round, unscale; a double tie is settled by the exact
  scaled value; non-finite results fall back like DuckDB's).
* Polars' case mapping is Unicode "full" and context-sensitive (final sigma, `ß` -> `SS`);
  DuckDB maps code point by code point (utf8proc simple mapping), so non-ASCII strings are
  mapped per code point. Polars' `strip_chars()` strips all whitespace; `trim` strips spaces.
* Temporal differences are exact integer floor divisions of elapsed microseconds.
* Kleene and/or/not, null-propagating comparisons, `is_in` without the SQL null rule for
  lists holding null (fixed here), `sum` of nothing = 0, `mean`/`min`/`max` of nothing = null,
  counts of non-null values only; NaN/±inf become null after every float operation.
* Point-in-time aggregates do not join the spine with every past event (the SQL engine's
  plan): events are sorted once per key and each aggregate reads exact running values or
  its exact index range (see "aggregates" below). Entities without rows are kept, with
  counts and sums 0 and everything else null.

Rows are expected validated and normalised (non-finite floats already null), as for DuckDB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

from mlspec.diagnostics import Diagnostic, MlspecError
from mlspec.ir import expr as ir
from mlspec.ir.spec import Feature, FeatureGroup, Source, Spec
from mlspec.ir.types import DType, unify
from mlspec.runtime.engines.sql import event_groups
from mlspec.runtime.engines.text import LOWER as _LOWER
from mlspec.runtime.engines.text import UPPER as _UPPER
from mlspec.syntax.span import NO_SPAN

__all__ = ["PL_TYPES", "compute_features"]

PL_TYPES: dict[DType, pl.DataType] = {
    DType.INT: pl.Int64(),
    DType.FLOAT: pl.Float64(),
    DType.BOOL: pl.Boolean(),
    DType.STRING: pl.String(),
    DType.DATE: pl.Date(),
    DType.TIMESTAMP: pl.Datetime("us"),
    DType.NULL: pl.Float64(),  # like the SQL engine: an untyped null column is a DOUBLE
}
AS_OF = "__as_of"
SEQ = "__seq"
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
# Internal column names contain ':', which no mlspec NAME can, so they never clash.
EV_TS = "e:ts"  # event timestamp, epoch microseconds
EV_AGE = "e:age"  # as_of - event timestamp, microseconds
ROW_TS = "t:row"  # not "r:<name>": a source column may be called ts
ROW_KEY = "k:row"
COUNTING = ("count", "count_if", "distinct_count", "sum")  # empty window -> 0, not null

F64 = pl.Float64()
FloatArray = npt.NDArray[np.float64]


def unsupported(node: object, why: str) -> MlspecError:
    """The one way this engine refuses: a diagnostic pointing at the node, never a fallback."""
    span = getattr(node, "span", None) or NO_SPAN
    return MlspecError([Diagnostic("E191", f"the Polars engine cannot compile this: {why}", span)])


def finite(x: pl.Expr) -> pl.Expr:
    """NaN and ±inf become null: the one meaning of float results in every executor."""
    return pl.when(x.is_finite()).then(x)


# ---- numpy kernels: where Polars arithmetic is not the IEEE/C operation the IR pins --------


def _numpy_float(fn: Callable[[Sequence[FloatArray]], FloatArray], *args: pl.Expr) -> pl.Expr:
    """Apply an elementwise numpy kernel to float columns; nulls in, NaN/inf out -> null."""

    def run(series: Sequence[pl.Series]) -> pl.Series:
        arrays = [s.cast(pl.Float64).to_numpy() for s in series]
        with np.errstate(all="ignore"):
            out = np.array(fn(arrays), dtype=np.float64, copy=True)
        out[~np.isfinite(out)] = np.nan
        return pl.Series(series[0].name, out, dtype=pl.Float64, nan_to_null=True)

    return pl.map_batches([a.cast(F64) for a in args], run, return_dtype=F64, is_elementwise=True)


def _divide(arrays: Sequence[FloatArray]) -> FloatArray:
    return np.divide(arrays[0], arrays[1])  # x / 0 is ±inf or NaN -> null, like the SQL guard


def _fmod(arrays: Sequence[FloatArray]) -> FloatArray:
    return np.fmod(arrays[0], arrays[1])  # truncated and exact; x % 0 is NaN -> null


def _half_away(v: FloatArray) -> FloatArray:
    """C `round()`: nearest integer, ties away from zero (`v - trunc(v)` is exact)."""
    t = np.trunc(v)
    return np.where(np.abs(v - t) >= 0.5, t + np.sign(v), t)


def _split(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Veltkamp split: a = hi + lo exactly, each half fits 26 bits (for Dekker's product)."""
    c = 134217729.0 * a  # 2^27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _product_error(a: FloatArray, b: FloatArray, p: FloatArray) -> FloatArray:
    """a * b - p exactly, where p = fl(a * b) (Dekker's TwoProduct; no fma in numpy)."""
    ah, al = _split(a)
    bh, bl = _split(b)
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _nearest(v: FloatArray, beyond: FloatArray) -> FloatArray:
    """Round v half away from zero, where v is the double nearest an exact value v + beyond.

    When v is exactly halfway, the exact value decides: just below the tie rounds toward
    zero. (DuckDB's round(DOUBLE, n) breaks ties on the exact scaled value like this.)
    """
    t = np.trunc(v)
    tie = np.abs(v - t) == 0.5
    inward = tie & (np.sign(beyond) * np.sign(v) < 0)
    return np.where(inward, t, _half_away(v))


def _round_kernel(digits: int | None) -> Callable[[Sequence[FloatArray]], FloatArray]:
    """round(x, n) exactly as DuckDB's round(DOUBLE, INTEGER): half away from zero.

    n >= 0: scale by 10^n, round, unscale (a non-finite result gives back x); n < 0: divide
    by 10^-n, round, multiply back (a non-finite result gives 0). A scaled value that is a
    tie in double precision is rounded by the exact product or quotient, so 2.675 (really
    2.67499999999999982...) rounds to 2.67. `digits` is the literal precision when known,
    so 10^n comes from the C `pow`, as DuckDB's does.
    """

    def power(n: int) -> float:
        try:
            return float(10.0**n)
        except OverflowError:
            return float("inf")

    def run(arrays: Sequence[FloatArray]) -> FloatArray:
        x = arrays[0]
        n = np.full_like(x, float(digits)) if digits is not None else arrays[1]
        scale = (np.full_like(x, power(abs(digits))) if digits is not None
                 else np.power(10.0, np.abs(n)))
        up = x * scale
        up_error = np.nan_to_num(_product_error(x, scale, up), nan=0.0, posinf=0.0, neginf=0.0)
        up = _nearest(up, up_error) / scale
        up = np.where(np.isfinite(up), up, x)
        down = x / scale
        back = down * scale
        residual = (x - back) - np.nan_to_num(_product_error(down, scale, back), nan=0.0, posinf=0.0, neginf=0.0)
        down = _nearest(down, residual) * scale
        down = np.where(np.isfinite(down), down, 0.0)
        return np.where(np.isnan(n) | np.isnan(x), np.nan, np.where(n >= 0, up, down))

    return run




def _case_map(upper: bool) -> Callable[[pl.Series], pl.Series]:
    """Native Polars for ASCII values (identical there), per code point for the rest."""
    table = _UPPER if upper else _LOWER

    def run(s: pl.Series) -> pl.Series:
        out = s.str.to_uppercase() if upper else s.str.to_lowercase()
        wide = (s.str.len_bytes() != s.str.len_chars()).fill_null(False)
        if not wide.any():
            return out
        fixed = pl.Series([v.translate(table) for v in s.filter(wide).to_list()], dtype=pl.String)
        return out.scatter(wide.arg_true(), fixed)

    return run


# ---- the compiler ------------------------------------------------------------------------------


@dataclass
class _Compiler:
    """Compiles one feature group's expressions to Polars expressions.

    Row context (`event=False`) reads the as-of joined row (`r:<col>`), aggregate slots,
    upstream features and `__as_of`; event context (aggregate arguments) reads raw source
    rows. Aggregates and their arguments are deduplicated by IR equality.
    """

    group: FeatureGroup
    features: dict[str, Feature]
    event: bool = False
    row_cols: set[str] = field(default_factory=set)
    upstream: dict[str, set[str]] = field(default_factory=dict)
    args: dict[tuple[ir.Expr, DType], str] = field(default_factory=dict)
    arg_exprs: list[pl.Expr] = field(default_factory=list)
    aggs: dict[ir.Agg, str] = field(default_factory=dict)

    NODES: ClassVar[dict[type, str]] = {
        ir.Lit: "lit", ir.Col: "col", ir.FeatureRef: "feature_ref", ir.AsOf: "as_of", ir.BinOp: "binop",
        ir.UnaryOp: "unary", ir.IsNull: "is_null", ir.InList: "in_list", ir.CaseWhen: "case_when",
        ir.Func: "func", ir.Agg: "agg",
    }

    def expr(self, e: ir.Expr) -> pl.Expr:
        """Dispatch on the node class; an unknown kind is an error, never a guess."""
        method = self.NODES.get(type(e))
        if method is None:
            raise unsupported(e, f"unknown expression node {type(e).__name__}")
        out: pl.Expr = getattr(self, method)(e)
        return out

    def typed(self, e: ir.Expr, dtype: DType) -> pl.Expr:
        """`e` as a column of `dtype` (the implicit casts the SQL engine makes)."""
        return self.expr(e).cast(PL_TYPES[dtype])

    # -- leaves

    def lit(self, e: ir.Lit) -> pl.Expr:
        if e.value is None:
            return pl.lit(None)  # untyped: takes the type of whatever it meets
        if e.dtype is DType.DATE:
            return pl.lit(dt.date.fromisoformat(str(e.value)), dtype=pl.Date())
        if e.dtype is DType.TIMESTAMP:
            when = dt.datetime.fromisoformat(str(e.value))
            if when.tzinfo is not None:  # an offset names an instant; timestamps are UTC
                when = when.astimezone(dt.UTC).replace(tzinfo=None)
            return pl.lit(when, dtype=pl.Datetime("us"))
        if e.dtype not in (DType.INT, DType.FLOAT, DType.BOOL, DType.STRING):
            raise unsupported(e, f"a literal of type {e.dtype.value}")
        return pl.lit(e.value, dtype=PL_TYPES[e.dtype])

    def col(self, e: ir.Col) -> pl.Expr:
        if self.event:
            return pl.col(e.name).cast(PL_TYPES[e.dtype])
        self.row_cols.add(e.name)
        return pl.col("r:" + e.name)  # cast to the declared type when the row frame is built

    def as_of(self, e: ir.AsOf) -> pl.Expr:
        if self.event:
            raise unsupported(e, "`as_of` inside an aggregate")
        return pl.col(AS_OF)

    def feature_ref(self, e: ir.FeatureRef) -> pl.Expr:
        if self.event:
            raise unsupported(e, "a feature reference inside an aggregate")
        if e.group == self.group.name:
            target = self.features.get(e.name)
            if target is None:
                raise unsupported(e, f"`{e.qualified}` is not a feature of this group")
            return self.expr(target.expr)  # inlined, like the SQL engine
        self.upstream.setdefault(e.group, set()).add(e.name)
        return pl.col(f"u:{e.group}:{e.name}")

    # -- operators

    def binop(self, e: ir.BinOp) -> pl.Expr:
        if e.op in ir.LOGIC_OPS:
            left, right = self.typed(e.left, DType.BOOL), self.typed(e.right, DType.BOOL)
            return left & right if e.op == "and" else left | right  # Kleene, like SQL
        if e.op in ir.COMPARE_OPS:
            return self.compare(e)
        if e.op not in ir.ARITH_OPS:
            raise unsupported(e, f"operator `{e.op}`")
        if e.dtype is DType.INT:
            left, right = self.typed(e.left, DType.INT), self.typed(e.right, DType.INT)
            if e.op == "%":
                return pl.when(right != 0).then(_truncated_mod(left, right))
            if e.op == "/":
                raise unsupported(e, "integer-typed `/`")
            return {"+": left + right, "-": left - right, "*": left * right}[e.op]
        left, right = self.typed(e.left, DType.FLOAT), self.typed(e.right, DType.FLOAT)
        if e.op == "/":
            return _numpy_float(_divide, left, right)
        if e.op == "%":
            return _numpy_float(_fmod, left, right)
        return finite({"+": left + right, "-": left - right, "*": left * right}[e.op])

    def compare(self, e: ir.BinOp) -> pl.Expr:
        lt, rt = e.left.dtype, e.right.dtype
        common = DType.TIMESTAMP if lt.is_temporal and rt.is_temporal else unify(lt, rt)
        if common is None:
            raise unsupported(e, f"comparing {lt.value} with {rt.value}")
        if common is DType.NULL:
            return pl.lit(None, dtype=pl.Boolean())
        left, right = self.typed(e.left, common), self.typed(e.right, common)
        ops: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
            "==": pl.Expr.eq, "!=": pl.Expr.ne, "<": pl.Expr.lt, "<=": pl.Expr.le, ">": pl.Expr.gt, ">=": pl.Expr.ge,
        }
        return ops[e.op](left, right)

    def unary(self, e: ir.UnaryOp) -> pl.Expr:
        if e.op == "not":
            return ~self.typed(e.operand, DType.BOOL)  # Kleene: not null is null
        if e.op == "-":
            return -self.typed(e.operand, e.dtype)
        raise unsupported(e, f"unary operator `{e.op}`")

    def is_null(self, e: ir.IsNull) -> pl.Expr:
        x = self.expr(e.operand)
        return x.is_not_null() if e.negated else x.is_null()

    def in_list(self, e: ir.InList) -> pl.Expr:
        """SQL IN: true on a match; else null if the operand or any listed value is null; else false."""
        common: DType | None = e.operand.dtype
        for v in e.values:
            common = unify(common, v.dtype) if common is not None else None
        if common is None:
            raise unsupported(e, "list values of a type the operand cannot be compared with")
        present = [v.value for v in e.values if v.value is not None]
        if common is DType.NULL or not present:
            return pl.lit(None, dtype=pl.Boolean())
        values = pl.Series(present, dtype=PL_TYPES[common])
        hit = self.typed(e.operand, common).is_in(pl.lit(values).implode())
        if len(present) < len(e.values):
            hit = pl.when(hit).then(True)  # no match against a list holding null: unknown
        return ~hit if e.negated else hit

    def case_when(self, e: ir.CaseWhen) -> pl.Expr:
        """First branch whose condition is TRUE (null is not true)."""
        chain: pl.Expr | None = None
        for cond, result in e.whens:
            c, r = self.typed(cond, DType.BOOL), self.typed(result, e.dtype)
            chain = pl.when(c).then(r) if chain is None else chain.when(c).then(r)  # type: ignore[attr-defined]
        if chain is None:
            raise unsupported(e, "`case` without a `when`")
        other = self.typed(e.otherwise, e.dtype) if e.otherwise is not None else pl.lit(None, PL_TYPES[e.dtype])
        return chain.otherwise(other)  # type: ignore[attr-defined,no-any-return]

    # -- scalar functions: one method per entry of mlspec.ir.functions.FUNCTIONS

    FUNCS: ClassVar[dict[str, str]] = {
        "coalesce": "fn_coalesce", "least": "fn_least", "greatest": "fn_greatest", "abs": "fn_abs",
        "round": "fn_round", "floor": "fn_floor", "ceil": "fn_ceil", "ln": "fn_ln", "exp": "fn_exp",
        "sqrt": "fn_sqrt", "lower": "fn_lower", "upper": "fn_upper", "trim": "fn_trim", "length": "fn_length",
        "contains": "fn_contains", "starts_with": "fn_starts_with", "ends_with": "fn_ends_with",
        "days_between": "fn_days_between", "hours_between": "fn_hours_between", "year": "fn_year",
        "month": "fn_month", "day": "fn_day", "hour": "fn_hour", "day_of_week": "fn_day_of_week",
        "to_date": "fn_to_date",
    }

    def func(self, e: ir.Func) -> pl.Expr:
        method = self.FUNCS.get(e.name)
        if method is None:
            raise unsupported(e, f"function `{e.name}` has no Polars translation")
        out: pl.Expr = getattr(self, method)(e)
        return out

    def _args(self, e: ir.Func, dtype: DType | None = None) -> list[pl.Expr]:
        return [self.typed(a, dtype or a.dtype) for a in e.args]

    def fn_coalesce(self, e: ir.Func) -> pl.Expr:
        return pl.coalesce(self._args(e, e.dtype))

    def fn_least(self, e: ir.Func) -> pl.Expr:
        return pl.min_horizontal(self._args(e, e.dtype))  # nulls ignored, like LEAST

    def fn_greatest(self, e: ir.Func) -> pl.Expr:
        return pl.max_horizontal(self._args(e, e.dtype))

    def fn_abs(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], e.dtype).abs()

    def fn_round(self, e: ir.Func) -> pl.Expr:
        x, digits = e.args
        if isinstance(digits, ir.Lit):
            if digits.value is None:
                return pl.lit(None, dtype=F64)
            return _numpy_float(_round_kernel(int(digits.value)), self.typed(x, DType.FLOAT))
        return _numpy_float(_round_kernel(None), self.typed(x, DType.FLOAT), self.typed(digits, DType.FLOAT))

    def fn_floor(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.FLOAT).floor()

    def fn_ceil(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.FLOAT).ceil()

    def fn_ln(self, e: ir.Func) -> pl.Expr:
        x = self.typed(e.args[0], DType.FLOAT)
        return pl.when(x > 0).then(x.log())

    def fn_exp(self, e: ir.Func) -> pl.Expr:
        return finite(self.typed(e.args[0], DType.FLOAT).exp())

    def fn_sqrt(self, e: ir.Func) -> pl.Expr:
        x = self.typed(e.args[0], DType.FLOAT)
        return pl.when(x >= 0).then(x.sqrt())

    def fn_lower(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.STRING).map_batches(_case_map(upper=False), return_dtype=pl.String,
                                                                is_elementwise=True)

    def fn_upper(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.STRING).map_batches(_case_map(upper=True), return_dtype=pl.String,
                                                                is_elementwise=True)

    def fn_trim(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.STRING).str.strip_chars(" ")  # spaces only, like DuckDB trim

    def fn_length(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.STRING).str.len_chars().cast(pl.Int64)  # code points

    def fn_contains(self, e: ir.Func) -> pl.Expr:
        s, sub = self._args(e, DType.STRING)
        return s.str.contains(sub, literal=True)

    def fn_starts_with(self, e: ir.Func) -> pl.Expr:
        s, prefix = self._args(e, DType.STRING)
        return s.str.starts_with(prefix)

    def fn_ends_with(self, e: ir.Func) -> pl.Expr:
        s, suffix = self._args(e, DType.STRING)
        return s.str.ends_with(suffix)

    def _epoch_us(self, a: ir.Expr) -> pl.Expr:
        return self.typed(a, DType.TIMESTAMP).dt.epoch("us")  # a date is its midnight UTC

    def fn_days_between(self, e: ir.Func) -> pl.Expr:
        return (self._epoch_us(e.args[1]) - self._epoch_us(e.args[0])) // DAY_US  # floored, exact

    def fn_hours_between(self, e: ir.Func) -> pl.Expr:
        return (self._epoch_us(e.args[1]) - self._epoch_us(e.args[0])) // HOUR_US

    def fn_year(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.TIMESTAMP).dt.year().cast(pl.Int64)

    def fn_month(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.TIMESTAMP).dt.month().cast(pl.Int64)

    def fn_day(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.TIMESTAMP).dt.day().cast(pl.Int64)

    def fn_hour(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.TIMESTAMP).dt.hour().cast(pl.Int64)

    def fn_day_of_week(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.TIMESTAMP).dt.weekday().cast(pl.Int64)  # ISO, Monday = 1

    def fn_to_date(self, e: ir.Func) -> pl.Expr:
        return self.typed(e.args[0], DType.TIMESTAMP).dt.date()

    # -- aggregates

    def agg(self, e: ir.Agg) -> pl.Expr:
        """Register the aggregate (computed per spine point by `_aggregate`); return its final value."""
        if self.event:
            raise unsupported(e, "nested aggregates")
        slot = self.aggs.get(e)
        if slot is None:
            if e.fn not in AGG_FNS:
                raise unsupported(e, f"aggregate `{e.fn}` has no Polars translation")
            if e.arg is None and e.fn != "count":
                raise unsupported(e, f"`{e.fn}` without a value")
            slot = f"a:{len(self.aggs)}"
            self.aggs[e] = slot
            if e.arg is not None:
                self.arg(e.arg, _arg_type(e))
        out = pl.col(slot)
        if e.fn in COUNTING:  # no rows at all for a real (key, as_of) -> 0; a null key/as_of -> null
            out = pl.when(pl.col("s:valid")).then(out.fill_null(0))
        if e.fn in ("sum", "mean") and e.dtype is DType.FLOAT:
            out = finite(out)
        return out

    def arg(self, e: ir.Expr, dtype: DType) -> pl.Expr:
        """An aggregate argument as a column of the events frame, evaluated once per source row."""
        name = self.args.get((e, dtype))
        if name is None:
            name = f"x:{len(self.args)}"
            saved, self.event = self.event, True
            try:
                self.arg_exprs.append(self.typed(e, dtype).alias(name))
            finally:
                self.event = saved
            self.args[(e, dtype)] = name
        return pl.col(name)


# ---- aggregates --------------------------------------------------------------------------------
#
# Events are sorted by (key, timestamp, __seq) and numbered, so the rows an aggregate sees at
# (key, T) are a contiguous index range: up to the last event with ts <= T, from just after the
# last event with ts <= T - window (or the key's first event). Two as-of lookups find the range
# ends. Then each aggregate takes the cheapest exact route:
#   prefix: no window, and a running value per row is exact (counts, integer sums, min, max,
#           distinct counts, last, first): read it at the range end;
#   diff:   a window, and the value is a difference of running counts / integer sums;
#   range:  everything else (windowed min/max/mean/last/first, any float sum or mean): the index
#           ranges are exploded and aggregated directly, as the SQL engine does.
# Float sums never go through differences of running sums: those would not round like a sum.

AGG_FNS = ("count", "count_if", "sum", "mean", "min", "max", "distinct_count", "last", "first")
EV_I = "e:i"  # event index in (key, ts, __seq) order
EV_KS = "e:ks"  # index of the key's first event
POINT = "p:i"
POINT_T = "p:t"  # as_of, epoch microseconds


def _arg_type(e: ir.Agg) -> DType:
    """The type an aggregate reads its argument as (sums and means of null read floats)."""
    if e.fn == "count_if":
        return DType.BOOL
    if e.fn in ("sum", "mean", "min", "max", "last", "first"):
        return e.dtype if e.fn != "mean" else DType.FLOAT
    assert e.arg is not None
    return e.arg.dtype


def _route(e: ir.Agg) -> str:
    exact = e.fn != "sum" or e.dtype is DType.INT
    if e.window_ms is None and exact and e.fn != "mean":
        return "prefix"
    if e.window_ms is not None and exact and e.fn in ("count", "count_if", "sum"):
        return "diff"
    return "range"


def _running(e: ir.Agg, x: pl.Expr | None, key: str) -> pl.Expr:
    """The aggregate over the key's events up to and including each row (rows sorted)."""
    if x is None:  # count()
        return pl.col(EV_I) - pl.col(EV_KS) + 1
    if e.fn == "count":
        return x.is_not_null().cast(pl.Int64).cum_sum().over(key)
    if e.fn == "count_if":
        return x.fill_null(False).cast(pl.Int64).cum_sum().over(key)  # null is not true
    if e.fn == "sum":
        return x.fill_null(0).cum_sum().over(key)
    if e.fn == "min":
        return x.cum_min().forward_fill().over(key)
    if e.fn == "max":
        return x.cum_max().forward_fill().over(key)
    if e.fn == "last":
        return x.forward_fill().over(key)  # the latest non-null value
    if e.fn == "first":
        return pl.when(x.is_not_null().cum_sum().over(key) > 0).then(x.drop_nulls().first().over(key))
    if e.fn == "distinct_count":
        first_seen = x.is_first_distinct()  # Polars hashes -0.0 and 0.0 alike, as DuckDB's DISTINCT does
        return (x.is_not_null() & first_seen).cast(pl.Int64).cum_sum().over(key)
    raise AssertionError(e.fn)


def _direct(e: ir.Agg, x: pl.Expr | None) -> pl.Expr:
    """The aggregate over a point's exploded rows (in (ts, __seq) order), within its window."""
    inside = pl.col(EV_AGE) < e.window_ms * 1000 if e.window_ms is not None else None

    def keep(v: pl.Expr) -> pl.Expr:
        return v.filter(inside) if inside is not None else v

    if x is None:
        return (inside.sum() if inside is not None else pl.len()).cast(pl.Int64)
    if e.fn == "count":
        return keep(x).count().cast(pl.Int64)
    if e.fn == "count_if":
        return keep(x).sum().cast(pl.Int64)  # sum of a bool skips nulls: null is not true
    if e.fn == "sum":
        return keep(x).sum().cast(PL_TYPES[e.dtype])
    if e.fn == "mean":
        return keep(x).mean()
    if e.fn == "min":
        return keep(x).min()
    if e.fn == "max":
        return keep(x).max()
    if e.fn == "distinct_count":
        return keep(x).drop_nulls().n_unique().cast(pl.Int64)
    if e.fn == "last":
        return keep(x).drop_nulls().last()  # rows arrive in (ts, __seq) order
    if e.fn == "first":
        return keep(x).drop_nulls().first()
    raise AssertionError(e.fn)


def _truncated_mod(left: pl.Expr, right: pl.Expr) -> pl.Expr:
    """C-like `%` from Polars' floored `%`: the remainder takes the dividend's sign."""
    floored = left % right
    return pl.when((floored != 0) & ((floored < 0) != (left < 0))).then(floored - right).otherwise(floored)


def _as_us(x: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A spine or row time as naive UTC microseconds (a date is its midnight UTC)."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        x = x.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return x.cast(pl.Datetime("us"))


def _source_time(source: Source, rows: pl.LazyFrame) -> pl.Expr:
    """The source's timestamp column as naive UTC microseconds (dates at midnight UTC)."""
    name = source.timestamp or ""
    return _as_us(pl.col(name), rows.collect_schema().get(name, pl.Datetime("us")))


def compute_features(spec: Spec, group: FeatureGroup, spine: pl.DataFrame, rows: pl.DataFrame,
                     upstream: dict[str, pl.DataFrame], by_event: bool = False) -> pl.DataFrame:
    """Every feature of `group` for each (key, __as_of) row of `spine`, as the DuckDB engine computes it.

    `rows` holds the group's validated source rows (schema columns, optionally `__seq`, the
    load order that breaks timestamp ties; row order is used when it is missing). `upstream`
    maps other group names to their feature tables over the same spine. The result has the key,
    `__as_of` and one column per feature in group order, sorted by (key, __as_of).

    With `by_event` (training an event group, see `event_groups`), the spine also carries the
    labelled event's `__seq`: a request group reads exactly that row of `rows`, the result keeps
    `__seq` after `__as_of` (sorted by key, __as_of, __seq), and upstream event groups are joined
    on it too.
    """
    source = spec.source(group.source)
    key = spec.entity(group.entity).key
    comp = _Compiler(group, {f.name: f for f in group.features})
    outputs = [comp.typed(f.expr, f.dtype).alias(f.name) for f in group.features]

    if SEQ not in rows.columns:
        rows = rows.with_row_index(SEQ, offset=1)
    rows_lf = rows.lazy().with_columns(pl.col(SEQ).cast(pl.Int64))
    key_dtype = spine.schema[key]
    spine_lf = spine.lazy().select(pl.col(key), _as_us(pl.col(AS_OF), spine.schema[AS_OF]).alias(AS_OF),
                                   *([pl.col(SEQ).cast(pl.Int64)] if by_event else []))
    points = spine_lf.select(key, AS_OF).filter(pl.col(key).is_not_null() & pl.col(AS_OF).is_not_null()).unique()
    frame = spine_lf.with_columns((pl.col(key).is_not_null() & pl.col(AS_OF).is_not_null()).alias("s:valid"))

    if comp.aggs:
        frame = frame.join(_aggregate(comp, source, key, key_dtype, points, rows_lf), on=[key, AS_OF], how="left")
    if comp.row_cols and by_event and group.request:
        frame = _attach_event_rows(comp, source, frame, rows_lf)
    elif comp.row_cols:
        frame = _attach_latest_rows(comp, source, key, key_dtype, frame, rows_lf)
    events = event_groups(spec) if by_event else set()
    for other, names in sorted(comp.upstream.items()):
        if other not in upstream:
            raise unsupported(group, f"the features of upstream group `{other}` were not provided")
        table = upstream[other]
        on = [key, AS_OF, SEQ] if other in events else [key, AS_OF]
        up = (table.lazy()
              .select(pl.col(key).cast(key_dtype), _as_us(pl.col(AS_OF), table.schema[AS_OF]).alias(AS_OF),
                      *([pl.col(SEQ).cast(pl.Int64)] if other in events else []),
                      *[pl.col(n).alias(f"u:{other}:{n}") for n in sorted(names)])
              .unique(subset=on, keep="any"))
        frame = frame.join(up, on=on, how="left")

    order = [key, AS_OF, SEQ] if by_event else [key, AS_OF]
    return (frame.select(*(pl.col(c) for c in order), *outputs)
            .sort(order, nulls_last=True)
            .collect())


def _aggregate(comp: _Compiler, source: Source, key: str, key_dtype: pl.DataType, points: pl.LazyFrame,
               rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per distinct (key, as_of) point with every aggregate slot (see the routes above).

    A window `last d` at T holds as_of - d < ts <= T; "no window" holds every ts <= T.
    """
    if source.timestamp is None:
        raise unsupported(next(iter(comp.aggs)), f"aggregates over source `{source.name}`, which has no timestamp")
    routes = {slot: _route(a) for a, slot in comp.aggs.items()}
    by_slot = {slot: a for a, slot in comp.aggs.items()}

    def arg_col(a: ir.Agg) -> pl.Expr | None:
        return pl.col(comp.args[(a.arg, _arg_type(a))]) if a.arg is not None else None

    running = [_running(by_slot[s], arg_col(by_slot[s]), key).alias("c:" + s) for s, r in routes.items() if r != "range"]
    events = (rows.select(pl.col(key).cast(key_dtype), _source_time(source, rows).dt.epoch("us").alias(EV_TS),
                          pl.col(SEQ), *comp.arg_exprs)
              .filter(pl.col(key).is_not_null() & pl.col(EV_TS).is_not_null())
              .collect())
    # (key, ts, seq) order in two passes: a stable single-column sort is much cheaper than a
    # multi-column one, and events usually arrive in time order already
    in_time_order = events.select(((pl.col(EV_TS).diff() > 0) | ((pl.col(EV_TS).diff() == 0) & (pl.col(SEQ).diff() > 0)))
                                  .fill_null(True).all()).item()
    if not in_time_order:
        events = events.sort([EV_TS, SEQ])
    events = (events.sort(key, maintain_order=True)
              .lazy()
              .with_row_index(EV_I)
              .with_columns(pl.col(EV_I).cast(pl.Int64))
              .with_columns(pl.col(EV_I).min().over(key).alias(EV_KS))
              .with_columns(running)
              .collect())
    last_of_ts = ((pl.col(key) != pl.col(key).shift(-1)) | (pl.col(EV_TS) != pl.col(EV_TS).shift(-1))).fill_null(True)
    # already sorted by ts within each key, which is all join_asof needs with `by`
    marks = events.filter(last_of_ts).select(key, EV_TS, EV_I, EV_KS, pl.col("^c:.*$"))

    def lookup(frame: pl.DataFrame, before_us: int, cols: list[str], tag: str) -> pl.DataFrame:
        """Attach, per point, the last event with ts <= T - before_us (its index and running values)."""
        probe = f"{tag}:t"
        right = marks.select(key, pl.col(EV_TS).alias(probe), *[pl.col(c).alias(f"{tag}:{c}") for c in cols])
        return (frame.with_columns((pl.col(POINT_T) - before_us).alias(probe))
                .join_asof(right, on=probe, by=key, strategy="backward", check_sortedness=False)
                .drop(probe))

    frame = (points.with_columns(pl.col(AS_OF).dt.epoch("us").alias(POINT_T)).sort(POINT_T)
             .with_row_index(POINT).collect())
    frame = lookup(frame, 0, [EV_I, EV_KS, *[f"c:{s}" for s, r in routes.items() if r != "range"]], "hi")
    ranged = [s for s, r in routes.items() if r == "range"]
    windows = {by_slot[s].window_ms for s, r in routes.items() if r == "diff"}
    widest = None if any(by_slot[s].window_ms is None for s in ranged) else max(
        (by_slot[s].window_ms or 0 for s in ranged), default=None)
    if widest is not None:
        windows.add(widest)
    for w in sorted(x for x in windows if x is not None):
        diffs = [f"c:{s}" for s, r in routes.items() if r == "diff" and by_slot[s].window_ms == w]
        frame = lookup(frame, w * 1000, [EV_I, *diffs], f"lo{w}")

    values = [pl.col(key), pl.col(AS_OF), pl.col(POINT)]
    for s, r in routes.items():
        if r == "prefix":
            values.append(pl.col(f"hi:c:{s}").alias(s))
        elif r == "diff":
            lo = f"lo{by_slot[s].window_ms}:c:{s}"
            values.append((pl.col(f"hi:c:{s}").fill_null(0) - pl.col(lo).fill_null(0)).alias(s))
    out = frame.lazy().select(values)
    if ranged:
        start = pl.col(f"hi:{EV_KS}") if widest is None else pl.coalesce(
            pl.col(f"lo{widest}:{EV_I}") + 1, pl.col(f"hi:{EV_KS}"))
        spans = (frame.filter(pl.col(f"hi:{EV_I}").is_not_null())
                 .select(POINT, POINT_T, pl.int_ranges(start, pl.col(f"hi:{EV_I}") + 1).alias(EV_I))
                 .explode(EV_I)
                 .drop_nulls(EV_I))
        needed = sorted({c.meta.output_name() for s in ranged if (c := arg_col(by_slot[s])) is not None})
        picked = events.select(EV_TS, *needed)[spans[EV_I]]
        direct = (spans.hstack(picked)
                  .lazy()
                  .with_columns((pl.col(POINT_T) - pl.col(EV_TS)).alias(EV_AGE))
                  .group_by(POINT)
                  .agg(_direct(by_slot[s], arg_col(by_slot[s])).alias(s) for s in ranged))
        out = out.join(direct, on=POINT, how="left")
    return out.drop(POINT)


def _attach_event_rows(comp: _Compiler, source: Source, frame: pl.LazyFrame, rows: pl.LazyFrame) -> pl.LazyFrame:
    """A request group in training reads the labelled event's own row: the one with the spine's __seq."""
    cols = [pl.col(c).cast(PL_TYPES[_column_dtype(comp, source, c)]).alias("r:" + c) for c in sorted(comp.row_cols)]
    own = rows.select(pl.col(SEQ), *cols).unique(subset=[SEQ], keep="last")
    return frame.join(own, on=SEQ, how="left")


def _attach_latest_rows(comp: _Compiler, source: Source, key: str, key_dtype: pl.DataType, frame: pl.LazyFrame,
                        rows: pl.LazyFrame) -> pl.LazyFrame:
    """Row features read the entity's latest row with ts <= as_of (greatest __seq on ties).

    Without a source timestamp it is the entity's latest loaded row, whatever the as_of.
    Spine rows without a key or an as_of match nothing.
    """
    cols = [pl.col(c).cast(PL_TYPES[_column_dtype(comp, source, c)]).alias("r:" + c) for c in sorted(comp.row_cols)]
    base = rows.select(pl.col(key).cast(key_dtype).alias(ROW_KEY), pl.col(SEQ), *cols,
                       *([_source_time(source, rows).alias(ROW_TS)] if source.timestamp is not None else []))
    base = base.filter(pl.col(ROW_KEY).is_not_null())
    if source.timestamp is None:
        latest = base.filter(pl.col(SEQ) == pl.col(SEQ).max().over(ROW_KEY)).drop(SEQ)
        return frame.join(latest, left_on=key, right_on=ROW_KEY, how="left").drop(ROW_KEY, strict=False)
    # A backward as-of join takes the *last* right row with ts <= as_of, so ordering equal
    # timestamps by __seq makes the greatest __seq win, as in the SQL engine.
    latest = base.filter(pl.col(ROW_TS).is_not_null()).sort([ROW_TS, SEQ]).drop(SEQ)
    return (frame.sort(AS_OF)
            .join_asof(latest, left_on=AS_OF, right_on=ROW_TS, by_left=key, by_right=ROW_KEY,
                       strategy="backward", check_sortedness=False)
            .drop(ROW_TS, ROW_KEY, strict=False))


def _column_dtype(comp: _Compiler, source: Source, name: str) -> DType:
    col = source.column(name)
    if col is None:
        raise unsupported(comp.group, f"source `{source.name}` has no column `{name}`")
    return col.dtype
