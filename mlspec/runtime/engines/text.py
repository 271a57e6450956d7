"""Per-code-point case mapping shared by the Polars engine and the online evaluator.

DuckDB maps case one code point at a time (utf8proc's simple mapping); Python's str.lower
and str.upper are full, context-sensitive mappings. These tables give DuckDB's meaning.
"""

from __future__ import annotations

from typing import ClassVar


class _SimpleCase(dict[int, str]):
    """A `str.translate` table filled lazily: each code point maps to exactly one code point.

    Python's str.lower/upper are full mappings; where they expand a character, the simple
    mapping is the title-case character (upper: U+1F80 -> U+1F88) or the character itself,
    with the two exceptions utf8proc makes. Checked against DuckDB for every code point.
    """

    OVERRIDES: ClassVar[dict[bool, dict[int, str]]] = {False: {0x130: "i"}, True: {0xDF: "\u1e9e"}}

    def __init__(self, upper: bool) -> None:
        super().__init__()
        self.upper = upper

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        mapped = ch.upper() if self.upper else ch.lower()
        if len(mapped) != 1:
            title = ch.title() if self.upper else ch
            mapped = self.OVERRIDES[self.upper].get(cp, title if len(title) == 1 else ch)
        self[cp] = mapped
        return mapped


LOWER, UPPER = _SimpleCase(upper=False), _SimpleCase(upper=True)


def simple_lower(s: str) -> str:
    return s.translate(LOWER)


def simple_upper(s: str) -> str:
    return s.translate(UPPER)
