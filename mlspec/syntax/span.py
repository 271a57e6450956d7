"""Source positions. Every AST and IR node carries one so any later stage can point at text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open region of one file: 1-based line/col of the first and past-the-last char."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to(self, other: Span) -> Span:
        """The smallest span covering self and other (same file)."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col)


NO_SPAN = Span("<none>", 0, 0, 0, 0)


def span_field() -> Span:
    """A dataclass field for a node's span: carried along, ignored by equality and repr."""
    return field(default=NO_SPAN, compare=False, repr=False)
