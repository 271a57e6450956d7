"""Errors as data, rendered in one place (caret text for terminals, JSON for tools)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mlspec.syntax.span import Span


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    hint: str | None = None
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "end_line": self.span.end_line,
            "end_col": self.span.end_col,
            "hint": self.hint,
        }


class MlspecError(Exception):
    """Raised to stop a stage; carries every diagnostic collected so far."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__("\n".join(d.message for d in diagnostics))
        self.diagnostics = tuple(diagnostics)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The nearest valid name as a hint, or None when nothing is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.span.file, d.span.line, d.span.col, d.code)


def render_text(diagnostics: Sequence[Diagnostic], sources: Mapping[str, str]) -> str:
    """`file:line:col: error[CODE]: message`, the source line, a caret under the span, a hint."""
    blocks = []
    for d in sorted(diagnostics, key=sort_key):
        s = d.span
        lines = [f"{s.file}:{s.line}:{s.col}: {d.severity.value}[{d.code}]: {d.message}"]
        text = sources.get(s.file)
        if text is not None and s.line >= 1:
            src_lines = text.splitlines()
            if s.line <= len(src_lines):
                src = src_lines[s.line - 1].expandtabs(1)
                gutter = f"{s.line} | "
                end = s.end_col if s.end_line == s.line and s.end_col > s.col else len(src) + 1
                width = max(1, min(end, len(src) + 1) - s.col)
                lines.append(f"{gutter}{src}")
                lines.append(" " * (len(gutter) + s.col - 1) + "^" * width)
        if d.hint:
            lines.append(f"  = hint: {d.hint}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in sorted(diagnostics, key=sort_key)], indent=2)


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    return f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"


__all__ = [
    "Diagnostic",
    "MlspecError",
    "Severity",
    "did_you_mean",
    "render_json",
    "render_text",
    "summary",
]
