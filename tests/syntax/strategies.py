"""Hypothesis strategies for random mlspec ASTs, shaped so that each one is a tree the parser can produce.

Reusable by any stage's tests (`from tests.syntax.strategies import modules, exprs`). Nodes carry no
spans (NO_SPAN), which is fine because AST equality ignores spans.

Items end at a newline, so any sequence of items is in the image of the parser, including an item
that starts with `(`, `-`, `*` or `not` right after one that ends in an expression.
"""

from __future__ import annotations

from hypothesis import strategies as st

from mlspec.syntax import ast
from mlspec.syntax.fmt import quote
from mlspec.syntax.parse import DECL_KINDS, duration_ms

RESERVED = frozenset((
    "import", "project", "source", "entity", "features", "label", "check", "model", "serve", "monitor", "alert",
    "schema", "not", "null", "unique", "in", "range", "references", "over", "every", "last", "case", "when", "then",
    "else", "end", "and", "or", "is", "true", "false",
))
BINARY_OPS = ("or", "and", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%")

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
names = st.builds(str.__add__, st.sampled_from(_FIRST), st.text(_FIRST + "0123456789", max_size=7)).filter(
    lambda s: s not in RESERVED
)
dotted = st.lists(names, min_size=1, max_size=3).map(tuple)

# ---- literals ----------------------------------------------------------------------------
# Built from parts rather than `from_regex`, which is several times slower to draw.

_digits = st.text("0123456789", min_size=1, max_size=5)
_exponent = st.builds(str.__add__, st.sampled_from(["e", "E", "e+", "e-", "E-"]), _digits)
ints = _digits.map(lambda t: ast.Literal(int(t), t))
floats = st.one_of(
    st.builds(lambda a, b, e: f"{a}.{b}{e}", _digits, _digits, st.one_of(st.just(""), _exponent)),
    st.builds(str.__add__, _digits, _exponent),
).map(lambda t: ast.Literal(float(t), t))
strings = st.text(max_size=8).map(lambda v: ast.Literal(v, quote(v)))
keywords = st.sampled_from([ast.Literal(True, "true"), ast.Literal(False, "false"), ast.Literal(None, "null")])
durations = st.builds(str.__add__, _digits, st.sampled_from(["ms", "s", "m", "h", "d", "w"])).map(
    lambda t: ast.Duration(duration_ms(t), t)
)
literals: st.SearchStrategy[ast.Literal | ast.Duration] = st.one_of(ints, floats, strings, keywords, durations)

# ---- expressions -------------------------------------------------------------------------

_atoms: st.SearchStrategy[ast.Expr] = st.one_of(
    literals,
    dotted.map(ast.Ref),
    st.one_of(st.none(), names).map(ast.Glob),
    durations.map(ast.Window),
)


def _compound(e: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    some = st.lists(e, min_size=1, max_size=3).map(tuple)
    args = st.lists(st.one_of(e, st.builds(ast.KwArg, names, e)), max_size=3).map(tuple)
    return st.one_of(
        st.builds(ast.Binary, st.sampled_from(BINARY_OPS), e, e),
        st.builds(ast.Unary, st.sampled_from(["-", "not"]), e),
        st.builds(ast.IsNull, e, st.booleans()),
        st.builds(ast.InList, e, some, st.booleans()),
        st.builds(ast.RangeLit, e, e),
        st.builds(ast.ListLit, st.lists(e, max_size=3).map(tuple)),
        st.builds(ast.Call, dotted.map(".".join), args),
        st.builds(ast.Case, st.lists(st.builds(ast.When, e, e), min_size=1, max_size=2).map(tuple),
                  st.one_of(st.none(), e)),
    )


exprs: st.SearchStrategy[ast.Expr] = st.recursive(_atoms, _compound, max_leaves=10)

# ---- items -------------------------------------------------------------------------------

_signed = st.one_of(literals, literals.map(lambda lit: ast.Unary("-", lit)))
constraints = st.one_of(
    st.just(ast.Constraint("not_null")),
    st.just(ast.Constraint("unique")),
    st.lists(literals, min_size=1, max_size=3).map(lambda xs: ast.Constraint("in", tuple(xs))),
    st.tuples(_signed, _signed).map(lambda lh: ast.Constraint("range", lh)),
    dotted.map(lambda parts: ast.Constraint("references", (ast.Ref(parts),))),
)
columns = st.builds(ast.Column, names, names, st.lists(constraints, max_size=3).map(tuple))
actions = st.builds(ast.Action, names, st.one_of(st.none(), st.lists(names, max_size=2).map(tuple)))
rules = st.builds(ast.Rule, exprs, st.one_of(st.none(), durations), st.lists(actions, max_size=2).map(tuple))
_leaf_items: st.SearchStrategy[ast.Item] = st.one_of(
    st.builds(ast.Assign, names, exprs),
    rules,
    st.builds(ast.Every, names, durations),
    st.lists(columns, max_size=4).map(lambda cs: ast.Schema(tuple(cs))),
)


def items(depth: int = 2) -> st.SearchStrategy[tuple[ast.Item, ...]]:
    """A block body; blocks nest up to `depth` levels."""
    item = _leaf_items if depth == 0 else st.one_of(_leaf_items, st.builds(ast.Block, names, items(depth - 1)))
    return st.lists(item, max_size=4).map(tuple)


decls = st.builds(ast.Decl, st.sampled_from(DECL_KINDS), names, items())
imports = st.builds(ast.Import, st.text(max_size=10))
modules = st.builds(ast.Module, st.just("<string>"), st.lists(st.one_of(decls, imports), max_size=4).map(tuple))
