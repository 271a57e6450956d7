"""The value types of the language. Every IR expression computes one of these."""

from __future__ import annotations

from enum import StrEnum


class DType(StrEnum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    DATE = "date"
    TIMESTAMP = "timestamp"
    DURATION = "duration"
    NULL = "null"  # the type of the `null` literal only; it unifies with every other type

    @property
    def is_numeric(self) -> bool:
        return self in (DType.INT, DType.FLOAT)

    @property
    def is_temporal(self) -> bool:
        return self in (DType.DATE, DType.TIMESTAMP)


# Column types a schema may declare. `category` is a string with a closed set of values.
COLUMN_TYPES: dict[str, DType] = {
    "int": DType.INT,
    "float": DType.FLOAT,
    "bool": DType.BOOL,
    "string": DType.STRING,
    "category": DType.STRING,
    "date": DType.DATE,
    "timestamp": DType.TIMESTAMP,
}


def unify(a: DType, b: DType) -> DType | None:
    """The common type of two branches (case, coalesce, comparisons), or None when none exists."""
    if a == b:
        return a
    if a is DType.NULL:
        return b
    if b is DType.NULL:
        return a
    if a.is_numeric and b.is_numeric:
        return DType.FLOAT
    if a.is_temporal and b.is_temporal:
        return DType.TIMESTAMP
    return None
