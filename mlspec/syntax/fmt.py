"""AST -> canonical text: the exact inverse of `mlspec.syntax.parse`, with one layout and no options.

Like Black, there is nothing to configure, so a diff of formatted specs shows only real changes.
Printing happens in three small steps, each easy to check on its own:

1. flatten the tree into *units*, one per output line (`kind name {`, an item, `}`), each keeping
   the source positions it came from;
2. hand every comment to a unit by position (before it, trailing on its line, or after the last
   unit), since comments are not in the tree;
3. render the units as rows: blank lines, `=` and schema-column alignment, trailing comments.

Layout rules: two-space indentation; one item per line; exactly one blank line between top-level
declarations (consecutive imports keep at most one, as written); inside blocks a blank line from the
source is kept (at most one) and none follow `{` or precede `}`; a run of consecutive assignments
(or schema columns) not broken by a blank line or another item is aligned on `=` (on the type);
empty blocks print as `name {}`; comments keep their place, trailing ones two spaces after the code.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

from mlspec.syntax import ast
from mlspec.syntax.parse import parse, unescape
from mlspec.syntax.span import Span

__all__ = ["format_expr", "format_module", "format_source", "quote"]

Pos = tuple[int, int]

# ---- expressions -------------------------------------------------------------------------

# Binding strength, loosest first; mirrors the `?expr` ... `?atom` ladder of the grammar.
OR, AND, NOT, CMP, SUM, PROD, NEG, ATOM = range(1, 9)
_BINARY_LEVEL = {"or": OR, "and": AND, "+": SUM, "-": SUM, "*": PROD, "/": PROD, "%": PROD}
_STRING = re.compile(r'"([^"\\\n]|\\["\\nt])*"')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


def quote(value: str) -> str:
    """A STRING token for `value`; only what the lexer cannot take raw is escaped."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def _level(expr: ast.Expr | ast.KwArg | ast.When) -> int:
    match expr:
        case ast.Binary(op=op):
            return _BINARY_LEVEL.get(op, CMP)  # every other operator is a comparison
        case ast.Unary(op="not"):
            return NOT
        case ast.Unary():
            return NEG
        case ast.IsNull() | ast.InList() | ast.RangeLit():
            return CMP
        case _:
            return ATOM


def _literal(lit: ast.Literal) -> str:
    """The user's spelling; a string whose spelling does not match its value is re-quoted."""
    if isinstance(lit.value, str):
        if _STRING.fullmatch(lit.text) and unescape(lit.text) == lit.value:
            return lit.text
        return quote(lit.value)
    if lit.text:
        return lit.text
    if isinstance(lit.value, bool):
        return "true" if lit.value else "false"
    return "null" if lit.value is None else repr(lit.value)


def _duration(d: ast.Duration) -> str:
    return d.text or f"{d.ms}ms"


def _list(items: tuple[ast.Expr | ast.KwArg, ...]) -> str:
    return ", ".join(format_expr(x) for x in items)


def format_expr(expr: ast.Expr | ast.KwArg | ast.When, min_level: int = OR) -> str:
    """One expression on one line, parenthesised only where the grammar would read it otherwise."""
    text = _expr(expr)
    return f"({text})" if _level(expr) < min_level else text


def _expr(expr: ast.Expr | ast.KwArg | ast.When) -> str:
    match expr:
        case ast.Literal():
            return _literal(expr)
        case ast.Duration():
            return _duration(expr)
        case ast.Ref():
            return expr.dotted
        case ast.Glob(prefix=None):
            return "*"
        case ast.Glob(prefix=prefix):
            return f"{prefix}.*"
        case ast.Call(func=func, args=args):
            return f"{func}({_list(args)})"
        case ast.KwArg(name=name, value=value):
            return f"{name} = {format_expr(value)}"
        case ast.Unary(op="not", operand=operand):
            return f"not {format_expr(operand, NOT)}"
        case ast.Unary(op=op, operand=operand):
            text = format_expr(operand, NEG)
            return f"{op} {text}" if text.startswith(op) else f"{op}{text}"  # `- -x`, not `--x`
        case ast.Binary(op=op, left=left, right=right):
            level = _level(expr)
            # Left-associative: the left operand may bind as loosely as the operator itself;
            # comparisons are non-associative, so both sides must bind tighter.
            left_min = SUM if level == CMP else level
            return f"{format_expr(left, left_min)} {op} {format_expr(right, level + 1)}"
        case ast.IsNull(operand=operand, negated=negated):
            return f"{format_expr(operand, SUM)} is {'not ' if negated else ''}null"
        case ast.InList(operand=operand, items=items, negated=negated):
            return f"{format_expr(operand, SUM)} {'not ' if negated else ''}in ({_list(items)})"
        case ast.RangeLit(low=low, high=high):
            return f"{format_expr(low, SUM)}..{format_expr(high, SUM)}"
        case ast.ListLit(items=items):
            return f"[{_list(items)}]"
        case ast.Case(whens=whens, otherwise=otherwise):
            parts = ["case", *(_expr(w) for w in whens)]
            if otherwise is not None:
                parts.append(f"else {format_expr(otherwise)}")
            return " ".join([*parts, "end"])
        case ast.When(condition=condition, result=result):
            return f"when {format_expr(condition)} then {format_expr(result)}"
        case ast.Window(duration=duration):
            return f"last {_duration(duration)}"
    raise TypeError(f"not an mlspec expression: {expr!r}")


# ---- items -------------------------------------------------------------------------------


def _constraint(c: ast.Constraint) -> str:
    match c.kind:
        case "not_null":
            return "not null"
        case "in":
            return f"in ({_list(c.args)})"
        case "range":
            return f"range [{_list(c.args)}]"
        case _:  # unique, references, and anything else: the keyword, then its arguments
            return " ".join([c.kind, *(format_expr(a) for a in c.args)])


def _action(a: ast.Action) -> str:
    return a.name if a.targets is None else f"{a.name}({', '.join(a.targets)})"


def _rule(r: ast.Rule) -> str:
    text = format_expr(r.condition)
    if r.over is not None:
        text += f" over {_duration(r.over)}"
    if r.actions:
        text += " -> " + ", ".join(_action(a) for a in r.actions)
    return text


# ---- step 1: units -----------------------------------------------------------------------


@dataclass
class _Unit:
    """One output line and where it came from; comments are attached in step 2."""

    indent: int
    text: str
    start: Pos
    end: Pos
    key: str | None = None  # aligned part (assignment key, column name); `sep` follows it
    sep: str = ""
    role: str = "leaf"  # "open" (`... {`), "close" (`}`) or "leaf"
    top: str = ""  # "import" or "decl" for top-level openers
    leading: list[ast.Comment] = field(default_factory=list)
    trailing: ast.Comment | None = None


def _start(s: Span) -> Pos:
    return (s.line, s.col)


def _end(s: Span) -> Pos:
    return (s.end_line, s.end_col)


def _block(out: list[_Unit], indent: int, header: str, items: tuple[ast.Item, ...], span: Span,
           header_end: Pos, top: str = "") -> None:
    out.append(_Unit(indent, f"{header} {{", _start(span), header_end, role="open", top=top))
    for item in items:
        _item(out, indent + 1, item)
    close = (span.end_line, span.end_col - 1)
    out.append(_Unit(indent, "}", close, _end(span), role="close"))


def _item(out: list[_Unit], indent: int, item: ast.Item) -> None:
    s = item.span
    match item:
        case ast.Assign(key=key, value=value):
            out.append(_Unit(indent, format_expr(value), _start(s), _end(s), key=key, sep=" = "))
        case ast.Block(name=name, items=items):
            _block(out, indent, name, items, s, (s.line, s.col + len(name)))
        case ast.Schema(columns=columns):
            out.append(_Unit(indent, "schema {", _start(s), (s.line, s.col + len("schema")), role="open"))
            for col in columns:
                text = " ".join([col.type_name, *(_constraint(c) for c in col.constraints)])
                out.append(_Unit(indent + 1, text, _start(col.span), _end(col.span), key=col.name, sep=" "))
            out.append(_Unit(indent, "}", (s.end_line, s.end_col - 1), _end(s), role="close"))
        case ast.Rule():
            out.append(_Unit(indent, _rule(item), _start(s), _end(s)))
        case ast.Every(action=action, interval=interval):
            out.append(_Unit(indent, f"{action} every {_duration(interval)}", _start(s), _end(s)))
        case _:
            raise TypeError(f"not an mlspec item: {item!r}")


def _units(module: ast.Module) -> list[_Unit]:
    out: list[_Unit] = []
    for node in module.body:
        if isinstance(node, ast.Import):
            out.append(_Unit(0, f"import {quote(node.path)}", _start(node.span), _end(node.span), top="import"))
        else:
            _block(out, 0, f"{node.kind} {node.name}", node.items, node.span, _end(node.name_span), top="decl")
    return out


# ---- step 2: comments --------------------------------------------------------------------


def _attach(units: list[_Unit], comments: tuple[ast.Comment, ...]) -> list[ast.Comment]:
    """Give each comment to a unit; returns those after the last unit (end of file)."""
    starts = [u.start for u in units]
    tail: list[ast.Comment] = []
    for c in sorted(comments, key=lambda c: _start(c.span)):
        pos = _start(c.span)
        i = bisect_left(starts, pos) - 1  # the last unit starting before the comment
        if i < 0:
            target: list[ast.Comment] = units[0].leading if units else tail
        elif pos < units[i].end:  # inside a multi-line unit: keep it just above that line
            target = units[i].leading
        elif pos[0] == units[i].end[0] and units[i].trailing is None:
            units[i].trailing = c
            continue
        else:
            target = units[i + 1].leading if i + 1 < len(units) else tail
        target.append(c)
    return tail


# ---- step 3: rows ------------------------------------------------------------------------


@dataclass
class _Row:
    indent: int
    text: str
    key: str | None = None
    sep: str = ""
    comment: str | None = None
    width: int = 0
    code: bool = True  # False for a comment on its own line


class _Rows:
    """Output rows plus what the blank-line rule needs to know about the previous one."""

    def __init__(self) -> None:
        self.rows: list[_Row | None] = []  # None is a blank line
        self.prev_end = 0  # last source line of the previous row (0: unknown)
        self.prev_unit: _Unit | None = None
        self.last_top = ""

    def add(self, row: _Row, first_line: int, last_line: int, blank: bool | None) -> None:
        """`blank=None` keeps a blank line from the source, if there was one."""
        if blank is None:
            blank = self.prev_end > 0 and first_line > self.prev_end + 1
        if blank and self.rows:
            self.rows.append(None)
        self.rows.append(row)
        self.prev_end = last_line


def _blank_before(rows: _Rows, unit: _Unit) -> bool | None:
    """The blank-line rule for the first row (comment or code) of `unit`."""
    if unit.top:
        return None if unit.top == "import" and rows.last_top == "import" else True
    if rows.prev_unit is not None and rows.prev_unit.role == "open":
        return False
    return None


def _rows(units: list[_Unit], tail: list[ast.Comment]) -> list[_Row | None]:
    out = _Rows()
    skip = False
    for i, unit in enumerate(units):
        if skip:
            skip = False
            continue
        text, trailing, last = unit.text, unit.trailing, unit
        nxt = units[i + 1] if i + 1 < len(units) else None
        if unit.role == "open" and nxt is not None and nxt.role == "close" and not nxt.leading \
                and not (unit.trailing and nxt.trailing):  # an empty block fits on one line: `name {}`
            text, trailing, last, skip = text + "}", unit.trailing or nxt.trailing, nxt, True
        blank = _blank_before(out, unit)
        comment_indent = unit.indent + 1 if unit.role == "close" else unit.indent
        for c in unit.leading:
            out.add(_Row(comment_indent, c.text, code=False), min(c.span.line, unit.start[0]), c.span.line, blank)
            blank = None
        if unit.role == "close":
            blank = False
        row = _Row(unit.indent, text, unit.key, unit.sep, trailing.text if trailing else None)
        out.add(row, unit.start[0], max(last.end[0], trailing.span.line if trailing else 0), blank)
        out.prev_unit = last
        if unit.top:
            out.last_top = unit.top
    for c in tail:
        out.add(_Row(0, c.text, code=False), c.span.line, c.span.line, None)
    return out.rows


def _align(rows: list[_Row | None]) -> None:
    """Pad keys in each run of keyed rows; comment rows at the same indent do not break a run."""
    run: list[_Row] = []
    for row in [*rows, None]:
        if row is not None and run and row.indent == run[0].indent:
            if row.key is not None and row.sep == run[0].sep:
                run.append(row)
                continue
            if not row.code:
                continue
        width = max((len(r.key or "") for r in run), default=0)
        for r in run:
            r.width = width
        run = [row] if row is not None and row.key is not None else []


def _render(row: _Row | None) -> str:
    if row is None:
        return ""
    text = "  " * row.indent
    if row.key is not None:
        text += row.key.ljust(row.width) + row.sep
    text += row.text
    return f"{text}  {row.comment}" if row.comment else text


# ---- public API --------------------------------------------------------------------------


def format_module(module: ast.Module) -> str:
    """The canonical text of a module: parsing it gives back an equal module, comments kept."""
    units = _units(module)
    tail = _attach(units, module.comments)
    rows = _rows(units, tail)
    _align(rows)
    return "".join(_render(r) + "\n" for r in rows)


def format_source(text: str, file: str = "<string>") -> str:
    """Parse then format; raises MlspecError (with every syntax error) if the text does not parse."""
    return format_module(parse(text, file))
