"""Text -> AST. The Lark grammar shapes the tree; this module only builds AST nodes from it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.grammar import Rule
from lark.tree import Meta

from mlspec.diagnostics import Diagnostic, MlspecError
from mlspec.syntax import ast
from mlspec.syntax.lines import Lines
from mlspec.syntax.span import Span

DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
DECL_KINDS = ("project", "source", "entity", "features", "label", "check", "model", "serve", "monitor", "alert")
_DECL_START = re.compile(r"^(import|" + "|".join(DECL_KINDS) + r")\b")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


# Comments are ignored by the grammar but kept for the formatter: the lexer hands each one to
# this callback during the one lex of a parse (Lark's `lexer_callbacks`, which also sees
# ignored terminals). The list is per thread and per parse (`_parse_chunk` sets it).
_collected = threading.local()


def _collect_comment(tok: Token) -> Token:
    sink: list[Token] | None = getattr(_collected, "comments", None)
    if sink is not None:
        sink.append(tok)
    return tok


class _Meta:
    """The part of Lark's tree `Meta` that `_ToAst` reads, plus the container positions."""

    __slots__ = ("c_column", "c_end_column", "c_end_line", "c_line", "column", "end_column", "end_line", "line")

    def __init__(self, line: int | None, column: int | None, end_line: int | None, end_column: int | None) -> None:
        self.line = self.c_line = line
        self.column = self.c_column = column
        self.end_line = self.c_end_line = end_line
        self.end_column = self.c_end_column = end_column


class _Positions:
    """Lark's `propagate_positions=True` (`lark.parse_tree_builder.PropagatePositions`), same rule,
    less work: only line and column (no character offsets), in a slotted meta.

    Wraps one rule's tree-building callback and sees the rule's raw children (tokens the tree
    filters out, like `{` and `}`, included). A new node starts at the start of its first child
    that has a position and ends at the end of its last; a node passed up unchanged by an
    inlined rule (`?atom: "(" expr ")"`) keeps its own position, and only its container
    position (what its parent uses) grows to the inlined rule's children, the parentheses.
    """

    __slots__ = ("build",)

    def __init__(self, build: Callable[[list[Any]], Any]) -> None:
        self.build = build

    def __call__(self, children: list[Any]) -> Any:
        res = self.build(children)
        if not isinstance(res, Tree):
            return res
        for c in children:
            if isinstance(c, Token):
                line, column = c.line, c.column
                break
            if isinstance(c, Tree) and c._meta is not None:
                first: Any = c._meta
                line, column = first.c_line, first.c_column
                break
        else:
            return res  # no child has a position: the node has none either (Lark: meta.empty)
        for c in reversed(children):
            if isinstance(c, Token):
                end_line, end_column = c.end_line, c.end_column
                break
            if isinstance(c, Tree) and c._meta is not None:
                last: Any = c._meta
                end_line, end_column = last.c_end_line, last.c_end_column
                break
        meta: Any = res._meta
        if meta is None:
            res._meta = _Meta(line, column, end_line, end_column)  # type: ignore[assignment]
        else:
            meta.c_line, meta.c_column, meta.c_end_line, meta.c_end_column = line, column, end_line, end_column
        return res


def _passes_child_up(rule: Rule) -> bool:
    """`?a: b`: an inlined rule of one kept symbol hands its one child up unchanged, positions
    included (Lark's propagation sets the child's container to itself), so it needs no
    `_Positions`. Two thirds of all reductions are these."""
    if len(rule.expansion) != 1 or not rule.options.expand1 or rule.alias or any(rule.options.empty_indices or ()):
        return False
    sym = rule.expansion[0]
    return not sym.name.startswith("_") and not (sym.is_term and getattr(sym, "filter_out", False))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("mlspec").joinpath("grammar/mlspec.lark").read_text(encoding="utf-8")
    options: dict[str, Any] = {"parser": "lalr", "lexer": "contextual", "postlex": Lines(), "maybe_placeholders": True,
                               "lexer_callbacks": {"COMMENT": _collect_comment}}
    parser = Lark(grammar, propagate_positions=False, **options)
    # Lark's own position propagation is half the parse time; `_Positions` computes the same
    # positions. It wraps the rule callbacks the LALR parser calls (the `_callbacks` dict it
    # holds, keyed by rule): outermost, where Lark puts its own. Should a Lark version keep
    # them elsewhere (the probe parse finds no positions), fall back to Lark's propagation.
    callbacks = getattr(parser, "_callbacks", None)
    if isinstance(callbacks, dict):
        for rule, callback in list(callbacks.items()):
            if isinstance(rule, Rule) and not _passes_child_up(rule):
                callbacks[rule] = _Positions(callback)
        probe = parser.parse("entity e { key = k }\n")
        if all(isinstance(t, Tree) and isinstance(t._meta, _Meta) for t in probe.children):
            return parser
    return Lark(grammar, propagate_positions=True, **options)  # pragma: no cover - another Lark


def _bounded_int(digits: str) -> int:
    """Python refuses to parse enormous ints; anything past int64 is rejected by the checker anyway."""
    return int(digits) if len(digits) <= 4000 else 10**4000


def duration_ms(text: str) -> int:
    unit = text.lstrip("0123456789")
    return _bounded_int(text[: len(text) - len(unit)]) * DURATION_UNITS_MS[unit]


def unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], quoted[1:-1])


@v_args(meta=True)
class _ToAst(Transformer[Token, Any]):
    """One method per grammar rule; each returns the matching AST node with its span."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file
        # `v_args` hands out a freshly wrapped method (functools.update_wrapper) on every
        # lookup, i.e. per tree node; look each one up once, into the instance.
        for name, value in vars(_ToAst).items():
            if hasattr(value, "visit_wrapper"):
                self.__dict__[name] = getattr(self, name)

    def _span(self, meta: Meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)

    # top level
    def start(self, meta: Meta, children: list[Any]) -> tuple[Any, ...]:
        return tuple(children)

    def import_stmt(self, meta: Meta, c: list[Token]) -> ast.Import:
        return ast.Import(unescape(str(c[0])), self._span(meta))

    def decl(self, meta: Meta, c: list[Any]) -> ast.Decl:
        kind, name, *items = c
        return ast.Decl(str(kind), str(name), tuple(items), self._span(meta), self._tok(name))

    # items
    def assign(self, meta: Meta, c: list[Any]) -> ast.Assign:
        return ast.Assign(str(c[0]), c[1], self._span(meta), self._tok(c[0]))

    def block(self, meta: Meta, c: list[Any]) -> ast.Block:
        return ast.Block(str(c[0]), tuple(c[1:]), self._span(meta))

    def schema(self, meta: Meta, c: list[Any]) -> ast.Schema:
        return ast.Schema(tuple(c), self._span(meta))

    def column(self, meta: Meta, c: list[Any]) -> ast.Column:
        return ast.Column(str(c[0]), str(c[1]), tuple(c[2:]), self._span(meta), self._tok(c[1]))

    def not_null(self, meta: Meta, c: list[Any]) -> ast.Constraint:
        return ast.Constraint("not_null", (), self._span(meta))

    def unique(self, meta: Meta, c: list[Any]) -> ast.Constraint:
        return ast.Constraint("unique", (), self._span(meta))

    def allowed(self, meta: Meta, c: list[Any]) -> ast.Constraint:
        return ast.Constraint("in", tuple(c), self._span(meta))

    def value_range(self, meta: Meta, c: list[Any]) -> ast.Constraint:
        return ast.Constraint("range", tuple(c), self._span(meta))

    def references(self, meta: Meta, c: list[Any]) -> ast.Constraint:
        return ast.Constraint("references", tuple(c), self._span(meta))

    def rule(self, meta: Meta, c: list[Any]) -> ast.Rule:
        condition, over, actions = c
        return ast.Rule(condition, over, actions or (), self._span(meta))

    def over(self, meta: Meta, c: list[Token]) -> ast.Duration:
        return self.duration_lit(meta, c)

    def actions(self, meta: Meta, c: list[ast.Action]) -> tuple[ast.Action, ...]:
        return tuple(c)

    def action(self, meta: Meta, c: list[Any]) -> ast.Action:
        return ast.Action(str(c[0]), c[1], self._span(meta))

    def call_targets(self, meta: Meta, c: list[Any]) -> tuple[str, ...]:
        return tuple(str(t) for t in c if t is not None)

    def every(self, meta: Meta, c: list[Token]) -> ast.Every:
        return ast.Every(str(c[0]), self.duration_lit(meta, c[1:]), self._span(meta))

    # expressions
    def _binary(self, op: str, meta: Meta, c: list[Any]) -> ast.Binary:
        return ast.Binary(op, c[0], c[1], self._span(meta))

    def or_(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("or", meta, c)

    def and_(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return self._binary("and", meta, c)

    def not_(self, meta: Meta, c: list[Any]) -> ast.Unary:
        return ast.Unary("not", c[0], self._span(meta))

    def neg(self, meta: Meta, c: list[Any]) -> ast.Unary:
        return ast.Unary("-", c[-1], self._span(meta))

    def compare(self, meta: Meta, c: list[Any]) -> ast.Binary:
        return ast.Binary(str(c[1]), c[0], c[2], self._span(meta))

    binop = compare

    def is_null(self, meta: Meta, c: list[Any]) -> ast.IsNull:
        return ast.IsNull(c[0], False, self._span(meta))

    def is_not_null(self, meta: Meta, c: list[Any]) -> ast.IsNull:
        return ast.IsNull(c[0], True, self._span(meta))

    def in_(self, meta: Meta, c: list[Any]) -> ast.InList:
        return ast.InList(c[0], tuple(c[1:]), False, self._span(meta))

    def not_in(self, meta: Meta, c: list[Any]) -> ast.InList:
        return ast.InList(c[0], tuple(c[1:]), True, self._span(meta))

    def span_range(self, meta: Meta, c: list[Any]) -> ast.RangeLit:
        return ast.RangeLit(c[0], c[1], self._span(meta))

    def dotted(self, meta: Meta, c: list[Token]) -> ast.Ref:
        return ast.Ref(tuple(str(t) for t in c), self._span(meta))

    def glob(self, meta: Meta, c: list[Any]) -> ast.Glob:
        return ast.Glob(str(c[0]) if c[0] is not None else None, self._span(meta))

    def call(self, meta: Meta, c: list[Any]) -> ast.Call:
        func: ast.Ref = c[0]
        return ast.Call(func.dotted, tuple(a for a in c[1:] if a is not None), self._span(meta))

    def last_call(self, meta: Meta, c: list[Any]) -> ast.Call:
        """`last(x, ...)`, the aggregate, spelled like the window keyword `last 30d`."""
        return ast.Call("last", tuple(a for a in c if a is not None), self._span(meta))

    def kwarg(self, meta: Meta, c: list[Any]) -> ast.KwArg:
        return ast.KwArg(str(c[0]), c[1], self._span(meta))

    def list_lit(self, meta: Meta, c: list[Any]) -> ast.ListLit:
        return ast.ListLit(tuple(x for x in c if x is not None), self._span(meta))

    def case(self, meta: Meta, c: list[Any]) -> ast.Case:
        whens = tuple(x for x in c if isinstance(x, ast.When))
        rest = [x for x in c if not isinstance(x, ast.When)]
        return ast.Case(whens, rest[0] if rest else None, self._span(meta))

    def when(self, meta: Meta, c: list[Any]) -> ast.When:
        return ast.When(c[0], c[1], self._span(meta))

    def window(self, meta: Meta, c: list[Token]) -> ast.Window:
        return ast.Window(self.duration_lit(meta, c), self._span(meta))

    # literals
    def int_lit(self, meta: Meta, c: list[Token]) -> ast.Literal:
        return ast.Literal(_bounded_int(str(c[0])), str(c[0]), self._span(meta))

    def float_lit(self, meta: Meta, c: list[Token]) -> ast.Literal:
        return ast.Literal(float(c[0]), str(c[0]), self._span(meta))

    def string_lit(self, meta: Meta, c: list[Token]) -> ast.Literal:
        return ast.Literal(unescape(str(c[0])), str(c[0]), self._span(meta))

    def duration_lit(self, meta: Meta, c: list[Token]) -> ast.Duration:
        return ast.Duration(duration_ms(str(c[0])), str(c[0]), self._tok(c[0]))

    def true_lit(self, meta: Meta, c: list[Token]) -> ast.Literal:
        return ast.Literal(True, "true", self._span(meta))

    def false_lit(self, meta: Meta, c: list[Token]) -> ast.Literal:
        return ast.Literal(False, "false", self._span(meta))

    def null_lit(self, meta: Meta, c: list[Token]) -> ast.Literal:
        return ast.Literal(None, "null", self._span(meta))


# ---- errors ------------------------------------------------------------------------------

_PUNCT_NAMES = {
    "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "EQUAL": "`=`", "COMMA": "`,`", "DOT": "`.`", "STAR": "`*`", "MINUS": "`-`",
    "NAME": "a name", "_NL": "a new line", "SEMICOLON": "`;`", "STRING": "a string", "INT": "an integer", "FLOAT": "a number",
    "DURATION": "a duration like `30d`", "DECL_KIND": "a declaration (source, features, model, ...)",
    "COMP_OP": "a comparison", "PLUS": "`+`", "SLASH": "`/`", "PERCENT": "`%`", "$END": "end of file",
}


_EXPRESSION_STARTS = {"NAME", "INT", "STRING"}


def _describe_expected(expected: set[str]) -> str:
    if expected >= _EXPRESSION_STARTS and "RBRACE" not in expected:
        return "an expression"
    parser = _parser()
    names = []
    for term in sorted(expected):
        if term in _PUNCT_NAMES:
            names.append(_PUNCT_NAMES[term])
            continue
        try:
            pattern = parser.get_terminal(term).pattern
            names.append(f"`{pattern.value}`" if pattern.type == "str" else term.lower())
        except KeyError:
            names.append(term.lower())
    names = sorted(set(names))
    if len(names) > 6:
        names = [*names[:6], "..."]
    return ", ".join(names)


def _syntax_diagnostic(err: UnexpectedInput, file: str, text: str) -> Diagnostic:
    line, col = max(err.line, 1), max(err.column, 1)
    if isinstance(err, UnexpectedCharacters):
        ch = str(err.char) if err.char else "?"
        hint = "strings use double quotes" if ch == "'" else None
        return Diagnostic("E001", f"unexpected character `{ch}`", Span(file, line, col, line, col + 1), hint)
    if isinstance(err, UnexpectedEOF):
        last = text.rstrip().splitlines() or [""]
        n = len(last)
        return Diagnostic(
            "E002", "unexpected end of file", Span(file, n, len(last[-1]) + 1, n, len(last[-1]) + 2),
            "a `{` was opened and never closed",
        )
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    if tok.type == "$END":
        lines = text.rstrip().splitlines() or [""]
        n = len(lines)
        hint = ("a `{` is never closed: add the missing `}`" if "RBRACE" in err.expected
                else f"expected {_describe_expected(err.expected)}")
        return Diagnostic("E002", "unexpected end of file", Span(file, n, len(lines[-1]) + 1, n, len(lines[-1]) + 2),
                          hint)
    end_col = (tok.end_column or col + 1) if (tok.end_line or line) == line else col + 1
    hint = f"expected {_describe_expected(err.expected)}"
    if tok.type == "NAME" and "DECL_KIND" in err.expected:
        from mlspec.diagnostics import did_you_mean

        hint = did_you_mean(str(tok), DECL_KINDS) or hint
    elif str(tok) == "=" and "COMP_OP" in err.expected:
        hint = "use `==` to compare; `=` sets a field"
    elif "_NL" in err.expected or "SEMICOLON" in err.expected:
        hint = "put each item on its own line, or separate items on one line with `;`"
    return Diagnostic("E003", f"unexpected `{tok}`", Span(file, line, col, line, end_col), hint)


def _comments(tokens: list[Token], file: str) -> tuple[ast.Comment, ...]:
    """Comments are not in the tree; the formatter re-attaches them by line."""
    return tuple(ast.Comment(str(tok).rstrip(), Span(file, tok.line or 0, tok.column or 0, tok.line or 0, tok.end_column or 0))
                 for tok in tokens)


def _parse_chunk(text: str, file: str) -> tuple[tuple[ast.Decl | ast.Import, ...], list[Token]]:
    """The declarations of `text` and its comment tokens, from one lex and parse."""
    comments: list[Token] = []
    _collected.comments = comments
    try:
        tree = _parser().parse(text)
    finally:
        _collected.comments = None
    try:
        body: tuple[ast.Decl | ast.Import, ...] = _ToAst(file).transform(tree)
    except VisitError as e:  # pragma: no cover - the transformer has no failing paths
        raise e.orig_exc from e
    return body, comments


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse one file. Raises MlspecError with every syntax error found (one per declaration)."""
    try:
        body, comment_tokens = _parse_chunk(text, file)
    except UnexpectedInput:
        raise MlspecError(_recover(text, file)) from None
    except RecursionError:
        raise MlspecError([Diagnostic("E004", "expression nested too deeply", Span(file, 1, 1, 1, 2),
                                      "split it into several named features")]) from None
    return ast.Module(file, body, _comments(comment_tokens, file))


def _recover(text: str, file: str) -> list[Diagnostic]:
    """Re-parse declaration by declaration so one mistake does not hide the next."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if _DECL_START.match(ln)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    diagnostics = []
    for a, b in zip(starts, [*starts[1:], len(lines)], strict=True):
        chunk = "\n" * a + "".join(lines[a:b])
        try:
            _parse_chunk(chunk, file)
        except UnexpectedInput as err:
            diagnostics.append(_syntax_diagnostic(err, file, text))
    if not diagnostics:  # the whole failed but no piece did: report the whole-file error
        try:
            _parse_chunk(text, file)
        except UnexpectedInput as err:
            diagnostics.append(_syntax_diagnostic(err, file, text))
    return diagnostics
