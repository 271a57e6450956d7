"""Typing and lowering of expressions: AST expression -> typed IR expression.

Returns None for an expression that has an error (already reported), so one mistake is
reported once, not again by every enclosing node.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mlspec.ir import expr as ir
from mlspec.ir.functions import AGGREGATE_SIGNATURES, CLOCK_FUNCTIONS, FUNCTIONS, accepts
from mlspec.ir.types import DType, unify
from mlspec.semantics.context import Collector
from mlspec.syntax import ast
from mlspec.syntax.span import Span

# Resolves `group.feature` to its typed IR reference, or reports and returns None.
FeatureResolver = Callable[[str, str, Span], ir.FeatureRef | None]


@dataclass(frozen=True)
class Scope:
    """What names mean where an expression is written."""

    columns: dict[str, DType]
    group: str | None = None  # unqualified feature names resolve in this group
    group_features: frozenset[str] = frozenset()
    self_name: str | None = None  # inside its own definition a feature's name is the column
    resolve_feature: FeatureResolver | None = None
    allow_aggregates: bool = False
    allow_as_of: bool = False
    in_aggregate: bool = False
    extra_names: dict[str, DType] = field(default_factory=dict)


_ARITH = {"+", "-", "*", "/", "%"}
INT64_MAX = 2**63 - 1
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


def lower(e: ast.Expr, scope: Scope, out: Collector) -> ir.Expr | None:
    """Type-check and lower one expression."""
    match e:
        case ast.Literal():
            return _literal(e, out)
        case ast.Ref():
            return _ref(e, scope, out)
        case ast.Call():
            return _call(e, scope, out)
        case ast.Unary():
            return _unary(e, scope, out)
        case ast.Binary():
            return _binary(e, scope, out)
        case ast.IsNull():
            x = lower(e.operand, scope, out)
            return ir.IsNull(x, e.negated, span=e.span) if x is not None else None
        case ast.InList():
            return _in_list(e, scope, out)
        case ast.Case():
            return _case(e, scope, out)
        case ast.Duration() | ast.Window():
            out.error("E120", "a duration is not a value here", e.span,
                      "durations go in windows like `count(x, last 30d)`")
        case ast.Glob():
            out.error("E120", "a glob is only allowed in a model's feature list", e.span)
        case ast.RangeLit() | ast.ListLit():
            out.error("E120", "a range or list is not a value here", e.span)
    return None


def _literal(e: ast.Literal, out: Collector) -> ir.Lit | None:
    v = e.value
    if isinstance(v, float) and not math.isfinite(v):
        out.error("E120", f"`{e.text}` is too large for a float", e.span, "float literals are finite 64-bit numbers")
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v > INT64_MAX:
        out.error("E120", f"`{e.text}` does not fit in an int", e.span, "int literals are 64-bit signed integers")
        return None
    t = (DType.NULL if v is None else DType.BOOL if isinstance(v, bool) else DType.INT if isinstance(v, int)
         else DType.FLOAT if isinstance(v, float) else DType.STRING)
    return ir.Lit(v, t, span=e.span)


def _ref(e: ast.Ref, scope: Scope, out: Collector) -> ir.Expr | None:
    parts = e.parts
    if len(parts) == 1:
        name = parts[0]
        if name == "as_of" and name not in scope.columns:
            if not scope.allow_as_of or scope.in_aggregate:
                out.error("E120", "`as_of` is not available here", e.span,
                          "as_of is the evaluation time of a feature, outside aggregates")
                return None
            return ir.AsOf(span=e.span)
        if name in scope.extra_names:
            return ir.Col(name, scope.extra_names[name], span=e.span)
        is_feature = name in scope.group_features and name != scope.self_name
        if is_feature and not scope.in_aggregate and scope.resolve_feature and scope.group:
            return scope.resolve_feature(scope.group, name, e.span)
        if name in scope.columns:
            return ir.Col(name, scope.columns[name], span=e.span)
        if is_feature and scope.in_aggregate:
            out.error("E120", f"aggregates read source columns, and `{name}` is a feature", e.span,
                      "aggregate the columns the feature is computed from")
            return None
        candidates = set(scope.columns) | set(scope.extra_names)
        if not scope.in_aggregate:  # aggregates read columns only
            candidates |= set(scope.group_features) - {scope.self_name or ""}
            if scope.allow_as_of:
                candidates.add("as_of")
        out.unknown("name", name, e.span, candidates)
        return None
    if len(parts) == 2 and scope.resolve_feature is not None:
        if scope.in_aggregate:
            out.error("E120", f"aggregates read source columns, and `{e.dotted}` is a feature", e.span)
            return None
        return scope.resolve_feature(parts[0], parts[1], e.span)
    out.error("E111", f"`{e.dotted}` is not a name that can be used here", e.span)
    return None


def _call(e: ast.Call, scope: Scope, out: Collector) -> ir.Expr | None:
    if e.func in CLOCK_FUNCTIONS:
        out.error("E142", f"`{e.func}()` reads the wall clock, which differs between training and serving",
                  e.span, "use `as_of`, the time the feature is evaluated at")
        return None
    if e.func in AGGREGATE_SIGNATURES:
        return _aggregate(e, scope, out)
    sig = FUNCTIONS.get(e.func)
    if sig is None:
        out.unknown("function", e.func, e.span, [*FUNCTIONS, *AGGREGATE_SIGNATURES], code="E121")
        return None
    if any(isinstance(a, ast.KwArg) for a in e.args):
        out.error("E102", f"`{e.func}` takes no named arguments", e.span)
        return None
    n, need = len(e.args), len(sig.args)
    if (n < need) if sig.variadic else (n != need):
        want = f"at least {need}" if sig.variadic else str(need)
        out.error("E122", f"`{e.func}` takes {want} argument{'s' if need != 1 else ''}, got {n}", e.span,
                  f"{e.func}({', '.join(sig.args)}{', ...' if sig.variadic else ''}): {sig.doc}")
        return None
    args = [lower(a, scope, out) for a in e.args if not isinstance(a, ast.KwArg)]
    if any(a is None for a in args):
        return None
    typed = [a for a in args if a is not None]
    for i, a in enumerate(typed):
        kind = sig.args[min(i, len(sig.args) - 1)]
        if not accepts(kind, a.dtype):
            out.error("E120", f"argument {i + 1} of `{e.func}` must be {kind}, not {a.dtype.value}", a.span)
            return None
    result = sig.result(tuple(a.dtype for a in typed))
    if result is None:
        out.error("E120", f"the arguments of `{e.func}` have no common type", e.span)
        return None
    return ir.Func(e.func, tuple(typed), result, span=e.span)


def _aggregate(e: ast.Call, scope: Scope, out: Collector) -> ir.Expr | None:
    if not scope.allow_aggregates:
        out.error("E120", f"aggregate `{e.func}` is not allowed here", e.span,
                  "aggregates belong in features over a source with a timestamp")
        return None
    if scope.in_aggregate:
        out.error("E120", "aggregates cannot be nested", e.span)
        return None
    args = list(e.args)
    window_ms: int | None = None
    if args and isinstance(args[-1], ast.Window):
        window_ms = args[-1].duration.ms
        if window_ms <= 0:
            out.error("E160", f"the window `last {args[-1].duration.text}` is empty at every time", args[-1].span,
                      "a window covers (as_of - window, as_of]; use a positive duration")
            return None
        args = args[:-1]
    if any(isinstance(a, ast.KwArg | ast.Window) for a in args):
        out.error("E102", f"`{e.func}` takes a value and an optional window like `last 30d`", e.span)
        return None
    kind, result = AGGREGATE_SIGNATURES[e.func]
    if not args and e.func == "count":
        return ir.Agg("count", None, window_ms, DType.INT, span=e.span)
    if len(args) != 1:
        row_wise = {"min": "least", "max": "greatest"}.get(e.func)
        out.error("E122", f"`{e.func}` takes one value and an optional window, got {len(args)} values", e.span,
                  f"`{e.func}` aggregates one column over rows; within one row use `{row_wise}(a, b)`"
                  if row_wise and args else None)
        return None
    arg = lower(args[0], replace(scope, in_aggregate=True), out) if not isinstance(args[0], ast.KwArg) else None
    if arg is None:
        return None
    if not accepts(kind, arg.dtype):
        out.error("E120", f"`{e.func}` needs a {kind} value, not {arg.dtype.value}", arg.span)
        return None
    return ir.Agg(e.func, arg, window_ms, result(arg.dtype), span=e.span)


def _unary(e: ast.Unary, scope: Scope, out: Collector) -> ir.Expr | None:
    x = lower(e.operand, scope, out)
    if x is None:
        return None
    if e.op == "not":
        if x.dtype not in (DType.BOOL, DType.NULL):
            out.error("E120", f"`not` needs a bool, not {x.dtype.value}", x.span)
            return None
        return ir.UnaryOp("not", x, DType.BOOL, span=e.span)
    if not (x.dtype.is_numeric or x.dtype is DType.NULL):
        out.error("E120", f"`-` needs a number, not {x.dtype.value}", x.span)
        return None
    return ir.UnaryOp("-", x, x.dtype if x.dtype is not DType.NULL else DType.FLOAT, span=e.span)


def _temporal_literal(lit: ir.Expr, other: ir.Expr, out: Collector) -> ir.Expr | None:
    """`signup_date >= "2024-01-01"`: an ISO string next to a date/time becomes that type."""
    if not (isinstance(lit, ir.Lit) and lit.dtype is DType.STRING and other.dtype.is_temporal):
        return lit
    try:
        parsed = dt.datetime.fromisoformat(str(lit.value))
        if parsed.tzinfo is not None:  # all times are UTC: an explicit offset is converted, then dropped
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        out.error("E120", f"{lit.value!r} is not an ISO date or timestamp", lit.span, 'write e.g. "2026-06-01"')
        return None
    value = parsed.date().isoformat() if other.dtype is DType.DATE and len(str(lit.value)) == 10 else parsed.isoformat()
    return ir.Lit(value, other.dtype if len(str(lit.value)) == 10 else DType.TIMESTAMP, span=lit.span)


def _binary(e: ast.Binary, scope: Scope, out: Collector) -> ir.Expr | None:
    left, right = lower(e.left, scope, out), lower(e.right, scope, out)
    if left is None or right is None:
        return None
    if e.op in ("and", "or"):
        for side in (left, right):
            if side.dtype not in (DType.BOOL, DType.NULL):
                out.error("E120", f"`{e.op}` needs bool operands, not {side.dtype.value}", side.span)
                return None
        return ir.BinOp(e.op, left, right, DType.BOOL, span=e.span)
    if e.op in _ARITH:
        for side in (left, right):
            if not (side.dtype.is_numeric or side.dtype is DType.NULL):
                out.error("E120", f"`{e.op}` needs numbers, not {side.dtype.value}", side.span,
                          "use days_between(a, b) for time differences" if side.dtype.is_temporal else None)
                return None
        both_int = left.dtype is DType.INT and right.dtype is DType.INT
        t = DType.FLOAT if e.op == "/" or not both_int else DType.INT
        return ir.BinOp(e.op, left, right, t, span=e.span)
    fixed_left, fixed_right = _temporal_literal(left, right, out), _temporal_literal(right, left, out)
    if fixed_left is None or fixed_right is None:
        return None
    left, right = fixed_left, fixed_right
    common = unify(left.dtype, right.dtype)
    if common is None:
        out.error("E120", f"cannot compare {left.dtype.value} with {right.dtype.value}", e.span)
        return None
    if common is DType.BOOL and e.op not in ("==", "!="):
        out.error("E120", f"`{e.op}` does not order bools", e.span, "use == or !=")
        return None
    return ir.BinOp(e.op, left, right, DType.BOOL, span=e.span)


def _in_list(e: ast.InList, scope: Scope, out: Collector) -> ir.Expr | None:
    x = lower(e.operand, scope, out)
    values: list[ir.Lit] = []
    for item in e.items:
        if not isinstance(item, ast.Literal):
            out.error("E120", "`in (...)` takes literal values", item.span)
            return None
        lit = _literal(item, out)
        if lit is None:
            return None
        values.append(lit)
    if x is None:
        return None
    for i, v in enumerate(values):
        fixed = _temporal_literal(v, x, out)  # `signup_date in ("2026-01-01")`, as with `==`
        if not isinstance(fixed, ir.Lit):
            return None
        values[i] = v = fixed
        if unify(x.dtype, v.dtype) is None:
            out.error("E120", f"{v.dtype.value} value in a list tested against {x.dtype.value}", v.span)
            return None
    return ir.InList(x, tuple(values), e.negated, span=e.span)


def _case(e: ast.Case, scope: Scope, out: Collector) -> ir.Expr | None:
    whens: list[tuple[ir.Expr, ir.Expr]] = []
    ok = True
    result_type: DType | None = DType.NULL
    for w in e.whens:
        cond, res = lower(w.condition, scope, out), lower(w.result, scope, out)
        if cond is None or res is None:
            ok = False
            continue
        if cond.dtype not in (DType.BOOL, DType.NULL):
            out.error("E120", f"a `when` condition must be bool, not {cond.dtype.value}", cond.span)
            ok = False
        whens.append((cond, res))
        result_type = unify(result_type, res.dtype) if result_type is not None else None
    otherwise = lower(e.otherwise, scope, out) if e.otherwise is not None else None
    if e.otherwise is not None and otherwise is None:
        ok = False
    if otherwise is not None and result_type is not None:
        result_type = unify(result_type, otherwise.dtype)
    if not ok:
        return None
    if result_type is None:
        out.error("E120", "the branches of `case` have different types", e.span)
        return None
    return ir.CaseWhen(tuple(whens), otherwise, result_type if result_type is not DType.NULL else DType.FLOAT,
                       span=e.span)
