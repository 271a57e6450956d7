"""The syntax tree: a faithful, immutable image of the text (spans on every node).

The tree is deliberately generic (declarations hold items; items hold expressions) so the
formatter can print any tree back and semantics can reject misplaced items with a good hint.
Equality ignores spans, so `parse(fmt(x)) == parse(x)` compares meaning, not layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlspec.syntax.span import Span, span_field

# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """int, float, string, bool or null; `text` keeps the spelling the user wrote."""

    value: int | float | str | bool | None
    text: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration literal like `30d`; `ms` is its length in milliseconds."""

    ms: int
    text: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Ref:
    """A (possibly dotted) name: `amount`, `activity.orders_30d`, `champion.auc`."""

    parts: tuple[str, ...]
    span: Span = span_field()

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Glob:
    """`activity.*` (prefix set) or `*` (prefix None)."""

    prefix: str | None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class KwArg:
    name: str
    value: Expr
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr | KwArg, ...]
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" | "not"
    operand: Expr
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % == != < <= > >= and or
    left: Expr
    right: Expr
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Expr
    negated: bool
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class InList:
    operand: Expr
    items: tuple[Expr, ...]
    negated: bool
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class RangeLit:
    """`2..10` (inclusive bounds)."""

    low: Expr
    high: Expr
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class When:
    condition: Expr
    result: Expr
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Case:
    whens: tuple[When, ...]
    otherwise: Expr | None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Window:
    """`last 30d`: the look-back of a point-in-time aggregate."""

    duration: Duration
    span: Span = span_field()


Expr = Literal | Duration | Ref | Glob | Call | Unary | Binary | IsNull | InList | RangeLit | ListLit | Case | Window

# ---- items -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign:
    key: str
    value: Expr
    span: Span = span_field()
    key_span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Block:
    """A named nested block: `params { ... }`, `gate { ... }`."""

    name: str
    items: tuple[Item, ...]
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Constraint:
    """`not null`, `unique`, `in (...)`, `range [lo, hi]`, `references src.col`."""

    kind: str
    args: tuple[Expr, ...] = ()
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_name: str
    constraints: tuple[Constraint, ...]
    span: Span = span_field()
    type_span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Schema:
    columns: tuple[Column, ...]
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Action:
    """`alert(oncall)`, `retrain`."""

    name: str
    targets: tuple[str, ...] | None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Rule:
    """A statement: a predicate (checks, gates) or `condition [over d] -> actions` (monitors)."""

    condition: Expr
    over: Duration | None
    actions: tuple[Action, ...]
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Every:
    """`retrain every 30d`."""

    action: str
    interval: Duration
    span: Span = span_field()


Item = Assign | Block | Schema | Rule | Every

# ---- top level ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decl:
    kind: str
    name: str
    items: tuple[Item, ...]
    span: Span = span_field()
    name_span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Comment:
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed file."""

    file: str
    body: tuple[Decl | Import, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)

    @property
    def decls(self) -> tuple[Decl, ...]:
        return tuple(d for d in self.body if isinstance(d, Decl))
