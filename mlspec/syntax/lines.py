"""Which newlines end an item: the post-lexer between Lark's lexer and its parser.

A newline ends an item unless the item obviously continues: inside ( ), [ ] or
`case ... end`, or after a token that cannot end an expression (an operator, `=`, `,`,
`->`, `and`, `or`, ...). So `x = a +` / `b` is one item, while `a = b` / `-x > 0` is two,
never silently one. Decisions look only backwards: Lark's contextual lexer reads each
token in the parser state that the previous tokens produced.
"""

from __future__ import annotations

from collections.abc import Iterator

from lark import Token

_OPENERS = {"(", "[", "case"}
_CLOSERS = {")", "]", "end"}
_CONTINUE_AFTER = {"+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "=", "->", ",", ".", "..",
                   "and", "or", "not", "in", "is", "{", "over", "every"}


_NOT_KEYWORDS = frozenset(("NAME", "STRING", "INT", "FLOAT", "DURATION", "DECL_KIND", "_NL"))


def _is_keyword(tok: Token) -> bool:
    return tok.type not in _NOT_KEYWORDS


class Lines:
    """Lark post-lexer: drops newlines that do not end an item, collapses runs of them."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        prev: Token | None = None
        before_prev: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth == 0 and prev is not None and prev.type != "_NL" and not _continues(prev, before_prev):
                    yield tok
                    before_prev, prev = prev, tok
                continue
            if tok.type not in _NOT_KEYWORDS:
                text = str(tok)
                if text in _OPENERS:
                    depth += 1
                elif text in _CLOSERS:
                    depth = max(0, depth - 1)
            yield tok
            before_prev, prev = prev, tok


def _continues(prev: Token, before_prev: Token | None) -> bool:
    if prev.type == "DECL_KIND":
        return True
    if not _is_keyword(prev) or str(prev) not in _CONTINUE_AFTER:
        return False
    if str(prev) == "*":  # `a *` multiplies and continues; `activity.*` and `= *` are complete globs
        return before_prev is not None and (
            not _is_keyword(before_prev) or str(before_prev) in (")", "]", "true", "false", "null", "end"))
    return True
