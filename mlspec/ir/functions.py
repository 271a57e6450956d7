"""Scalar functions of the feature language: their signatures and result types.

One table drives type checking here and dispatch in every executor, so an executor that
misses a function fails loudly at compile time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlspec.ir.types import DType, unify

ArgKind = str  # "numeric" | "string" | "temporal" | "int" | "any"


@dataclass(frozen=True, slots=True)
class Signature:
    args: tuple[ArgKind, ...]
    variadic: bool
    result: Callable[[tuple[DType, ...]], DType | None]
    doc: str


def _fixed(t: DType) -> Callable[[tuple[DType, ...]], DType | None]:
    return lambda _: t


def _same(ts: tuple[DType, ...]) -> DType | None:
    return DType.FLOAT if ts[0] is DType.NULL else ts[0]


def _unify_all(ts: tuple[DType, ...]) -> DType | None:
    out: DType | None = DType.NULL
    for t in ts:
        out = unify(out, t) if out is not None else None
    return out


FUNCTIONS: dict[str, Signature] = {
    "coalesce": Signature(("any", "any"), True, _unify_all, "first non-null argument"),
    "least": Signature(("numeric", "numeric"), True, _unify_all, "smallest non-null argument"),
    "greatest": Signature(("numeric", "numeric"), True, _unify_all, "largest non-null argument"),
    "abs": Signature(("numeric",), False, _same, "absolute value"),
    "round": Signature(("numeric", "int"), False, _fixed(DType.FLOAT), "round half away from zero to n places"),
    "floor": Signature(("numeric",), False, _fixed(DType.FLOAT), "largest integer value <= x"),
    "ceil": Signature(("numeric",), False, _fixed(DType.FLOAT), "smallest integer value >= x"),
    "ln": Signature(("numeric",), False, _fixed(DType.FLOAT), "natural log; null for x <= 0"),
    "exp": Signature(("numeric",), False, _fixed(DType.FLOAT), "e^x; null on overflow"),
    "sqrt": Signature(("numeric",), False, _fixed(DType.FLOAT), "square root; null for x < 0"),
    "lower": Signature(("string",), False, _fixed(DType.STRING), "lower case"),
    "upper": Signature(("string",), False, _fixed(DType.STRING), "upper case"),
    "trim": Signature(("string",), False, _fixed(DType.STRING), "strip surrounding whitespace"),
    "length": Signature(("string",), False, _fixed(DType.INT), "number of characters"),
    "contains": Signature(("string", "string"), False, _fixed(DType.BOOL), "substring test"),
    "starts_with": Signature(("string", "string"), False, _fixed(DType.BOOL), "prefix test"),
    "ends_with": Signature(("string", "string"), False, _fixed(DType.BOOL), "suffix test"),
    "days_between": Signature(("temporal", "temporal"), False, _fixed(DType.INT), "whole days elapsed from a to b, floored"),
    "hours_between": Signature(("temporal", "temporal"), False, _fixed(DType.INT), "whole hours elapsed from a to b, floored"),
    "year": Signature(("temporal",), False, _fixed(DType.INT), "calendar year (UTC)"),
    "month": Signature(("temporal",), False, _fixed(DType.INT), "month 1-12 (UTC)"),
    "day": Signature(("temporal",), False, _fixed(DType.INT), "day of month 1-31 (UTC)"),
    "hour": Signature(("temporal",), False, _fixed(DType.INT), "hour 0-23 (UTC)"),
    "day_of_week": Signature(("temporal",), False, _fixed(DType.INT), "ISO day of week, Monday = 1 .. Sunday = 7"),
    "to_date": Signature(("temporal",), False, _fixed(DType.DATE), "calendar date (UTC)"),
}

# Aggregates: name -> (argument kind, result type given the argument type).
AGGREGATE_SIGNATURES: dict[str, tuple[ArgKind, Callable[[DType], DType]]] = {
    "count": ("any", lambda _: DType.INT),
    "count_if": ("bool", lambda _: DType.INT),
    "sum": ("numeric", lambda t: DType.INT if t is DType.INT else DType.FLOAT),
    "mean": ("numeric", lambda _: DType.FLOAT),
    "min": ("ordered", lambda t: t),
    "max": ("ordered", lambda t: t),
    "distinct_count": ("any", lambda _: DType.INT),
    "last": ("any", lambda t: t),
    "first": ("any", lambda t: t),
}

# Banned because they would read the wall clock instead of the evaluation time.
CLOCK_FUNCTIONS = ("now", "today", "current_date", "current_timestamp")


def accepts(kind: ArgKind, t: DType) -> bool:
    if t is DType.NULL:
        return True
    return {
        "any": True,
        "numeric": t.is_numeric,
        "int": t is DType.INT,
        "string": t is DType.STRING,
        "temporal": t.is_temporal,
        "bool": t is DType.BOOL,
        "ordered": t in (DType.INT, DType.FLOAT, DType.STRING, DType.DATE, DType.TIMESTAMP),
    }[kind]
