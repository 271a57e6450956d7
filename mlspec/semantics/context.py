"""Shared machinery of the checker: diagnostics collection and typed access to item values."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlspec.diagnostics import Diagnostic, Severity, did_you_mean
from mlspec.ir.spec import SecretRef
from mlspec.syntax import ast
from mlspec.syntax.span import Span

# Error codes, one per kind of mistake. tests/cases/check/ holds one bad spec per code.
CODES = {
    "E100": "unknown field",
    "E101": "missing required field",
    "E102": "wrong kind of value",
    "E103": "duplicate declaration",
    "E104": "field set twice",
    "E105": "invalid choice",
    "E110": "unknown type",
    "E111": "unknown name",
    "E120": "type error",
    "E121": "unknown function",
    "E122": "wrong number of arguments",
    "E130": "dependency cycle",
    "E140": "aggregate over a source without timestamp",
    "E141": "label without timestamp",
    "E142": "future data could leak into training",
    "E143": "row-level feature over an event source",
    "E144": "column used outside an aggregate",
    "E150": "entity mismatch",
    "E151": "unknown model",
    "E160": "threshold out of range",
    "E170": "secret written as a literal",
    "E180": "import problem",
    "W200": "source without timestamp",
    "W201": "random split on time-dependent data",
}


@dataclass
class Collector:
    """Collects every diagnostic of a check run; never stops at the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    # `kind:name` of declarations that exist but failed to lower (their errors are already
    # reported), so a reference to one is not reported again as an unknown name.
    broken: set[str] = field(default_factory=set)

    def error(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    def warning(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint, Severity.WARNING))

    def unknown(self, what: str, name: str, span: Span, candidates: Iterable[str], code: str = "E111",
                where: str | None = None) -> None:
        """`unknown <what> `name` [in <where>]`, with the nearest candidate (or the few there are) as hint."""
        self.error(code, f"unknown {what} `{name}`" + (f" in {where}" if where else ""), span,
                   suggest(name, candidates))

    def is_broken(self, kind: str, name: str) -> bool:
        return f"{kind}:{name}" in self.broken

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


class Fields:
    """The `key = value` items of one declaration or block, validated against known keys."""

    def __init__(self, owner: str, items: Iterable[ast.Item], known: Iterable[str], out: Collector,
                 extra_ok: bool = False) -> None:
        self.owner = owner
        self.out = out
        self.values: dict[str, ast.Assign] = {}
        self.others: list[ast.Item] = []
        known_set = set(known)
        for item in items:
            if not isinstance(item, ast.Assign):
                self.others.append(item)
                continue
            if item.key in self.values:
                out.error("E104", f"`{item.key}` is set twice in {owner}", item.key_span,
                          "remove one of the two assignments")
                continue
            if item.key not in known_set and not extra_ok:
                out.unknown("field", item.key, item.key_span, known_set, code="E100", where=owner)
                continue
            self.values[item.key] = item

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def span(self, key: str) -> Span:
        return self.values[key].value.span

    def require(self, key: str, decl_span: Span, hint: str | None = None) -> bool:
        if key in self.values:
            return True
        self.out.error("E101", f"{self.owner} needs `{key} = ...`", decl_span, hint)
        return False

    def _wrong(self, key: str, expected: str) -> None:
        self.out.error("E102", f"`{key}` in {self.owner} must be {expected}", self.span(key))

    def string(self, key: str) -> str | None:
        v = self.values.get(key)
        if v is None:
            return None
        if isinstance(v.value, ast.Literal) and isinstance(v.value.value, str):
            return v.value.value
        self._wrong(key, 'a string in double quotes')
        return None

    def name(self, key: str) -> str | None:
        v = self.values.get(key)
        if v is None:
            return None
        if isinstance(v.value, ast.Ref) and len(v.value.parts) == 1:
            return v.value.parts[0]
        self._wrong(key, "a name")
        return None

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        v = self.values.get(key)
        if v is None:
            return default
        if isinstance(v.value, ast.Ref) and len(v.value.parts) == 1:
            if v.value.parts[0] in choices:
                return v.value.parts[0]
            self.out.error("E105", f"`{key}` cannot be `{v.value.parts[0]}`", v.value.span,
                           suggest(v.value.parts[0], choices))
            return default
        self._wrong(key, "one of " + ", ".join(choices))
        return default

    def duration(self, key: str) -> int | None:
        v = self.values.get(key)
        if v is None:
            return None
        if isinstance(v.value, ast.Duration):
            return v.value.ms
        self._wrong(key, "a duration like `30d`, `26h` or `50ms`")
        return None

    def number(self, key: str) -> float | None:
        v = self.values.get(key)
        if v is None:
            return None
        n = literal_number(v.value)
        if n is None:
            self._wrong(key, "a number")
        return n

    def boolean(self, key: str) -> bool | None:
        v = self.values.get(key)
        if v is None:
            return None
        if isinstance(v.value, ast.Literal) and isinstance(v.value.value, bool):
            return v.value.value
        self._wrong(key, "true or false")
        return None

    def secret(self, key: str) -> SecretRef | None:
        """A value that must come from the environment: `env("NAME")`."""
        v = self.values.get(key)
        if v is None:
            return None
        ref = as_env(v.value)
        if ref is not None:
            return ref
        if isinstance(v.value, ast.Literal) and isinstance(v.value.value, str):
            self.out.error("E170", f"`{key}` in {self.owner} is a secret written as a literal", v.value.span,
                           f'put it in an environment variable and write `{key} = env("NAME")`')
        else:
            self._wrong(key, 'a reference like env("NAME")')
        return None


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean `x`?` when one candidate is close; else the candidates when there are few."""
    cands = list(candidates)
    hint = did_you_mean(name, cands)
    if hint is None and cands and len(cands) <= 8:
        hint = "known: " + ", ".join(f"`{c}`" for c in sorted(cands))
    return hint


def literal_number(e: ast.Expr) -> float | None:
    """The value of `3`, `0.5` or `-0.5`, else None (bools are not numbers, nor is `1e999`)."""
    if isinstance(e, ast.Unary) and e.op == "-":
        inner = literal_number(e.operand)
        return -inner if inner is not None else None
    if isinstance(e, ast.Literal) and isinstance(e.value, int | float) and not isinstance(e.value, bool):
        try:
            n = float(e.value)
        except OverflowError:  # an integer literal with hundreds of digits
            return None
        return n if math.isfinite(n) else None
    return None


def as_env(e: ast.Expr) -> SecretRef | None:
    if (isinstance(e, ast.Call) and e.func == "env" and len(e.args) == 1
            and isinstance(e.args[0], ast.Literal) and isinstance(e.args[0].value, str)):
        return SecretRef(e.args[0].value)
    return None
