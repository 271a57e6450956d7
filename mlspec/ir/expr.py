"""The feature expression IR: immutable, typed nodes that every executor compiles.

Executors (DuckDB SQL, Polars, the online evaluator) dispatch on the node class. The set of
node kinds is closed and enumerated in EXPR_KINDS so conformance tests can demand coverage.
The one meaning of null, NaN, division by zero, empty windows and time is docs/semantics.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlspec.ir.types import DType
from mlspec.syntax.span import Span, span_field


@dataclass(frozen=True, slots=True)
class Lit:
    value: int | float | str | bool | None
    dtype: DType
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Col:
    """A column of the feature group's source row (row-level, or inside an aggregate)."""

    name: str
    dtype: DType
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class FeatureRef:
    """Another feature's value for the same entity as of the same time."""

    group: str
    name: str
    dtype: DType
    span: Span = span_field()

    @property
    def qualified(self) -> str:
        return f"{self.group}.{self.name}"


@dataclass(frozen=True, slots=True)
class AsOf:
    """The time a feature is evaluated at: the label time in training, the request time online."""

    dtype: DType = DType.TIMESTAMP
    span: Span = span_field()


ARITH_OPS = ("+", "-", "*", "/", "%")
COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")
LOGIC_OPS = ("and", "or")


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str
    left: Expr
    right: Expr
    dtype: DType
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class UnaryOp:
    op: str  # "-" | "not"
    operand: Expr
    dtype: DType
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Expr
    negated: bool
    dtype: DType = DType.BOOL
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class InList:
    operand: Expr
    values: tuple[Lit, ...]
    negated: bool
    dtype: DType = DType.BOOL
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class CaseWhen:
    whens: tuple[tuple[Expr, Expr], ...]
    otherwise: Expr | None
    dtype: DType
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Func:
    """A scalar function from FUNCTIONS (row-wise, no state)."""

    name: str
    args: tuple[Expr, ...]
    dtype: DType
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Agg:
    """A point-in-time aggregate over the entity's rows with as_of - window < ts <= as_of.

    `window_ms` None means all history up to as_of. `arg` is None only for count_if's
    condition-less form; for count_if it is the boolean condition.
    """

    fn: str
    arg: Expr | None
    window_ms: int | None
    dtype: DType
    span: Span = span_field()


Expr = Lit | Col | FeatureRef | AsOf | BinOp | UnaryOp | IsNull | InList | CaseWhen | Func | Agg

EXPR_KINDS: tuple[type, ...] = (Lit, Col, FeatureRef, AsOf, BinOp, UnaryOp, IsNull, InList, CaseWhen, Func, Agg)

AGGREGATES = ("count", "count_if", "sum", "mean", "min", "max", "distinct_count", "last", "first")


def children(e: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions, for generic walks."""
    match e:
        case BinOp(left=left, right=right):
            return (left, right)
        case UnaryOp(operand=x) | IsNull(operand=x):
            return (x,)
        case InList(operand=x, values=vs):
            return (x, *vs)
        case CaseWhen(whens=ws, otherwise=o):
            flat = [x for pair in ws for x in pair]
            return (*flat, o) if o is not None else tuple(flat)
        case Func(args=args):
            return args
        case Agg(arg=a):
            return (a,) if a is not None else ()
    return ()


def walk(e: Expr) -> list[Expr]:
    """Every node of the expression, pre-order."""
    out = [e]
    for c in children(e):
        out.extend(walk(c))
    return out


def has_aggregate(e: Expr) -> bool:
    return any(isinstance(n, Agg) for n in walk(e))
