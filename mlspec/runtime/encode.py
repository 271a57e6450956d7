"""The one feature-matrix encoding shared by training, batch scoring and online serving.

A model never sees polars frames or Python dicts: it sees a float32 matrix whose columns follow
``FeatureEncoding.features``.  Fitting the encoding happens once, at training time, and the fitted
encoding is stored with the model version, so batch scoring (`encode`) and online serving
(`encode_row`) turn the same values into the same bits.

Per feature type (the ONE meaning every path implements):

========== =================================================================================
int/float  the value as float64, then rounded to float32.  null, NaN, +-inf and values too large
           for float32 become NaN, which xgboost treats as "missing" (it rejects inf outright).
bool       False -> 0.0, True -> 1.0, null -> NaN.
string     index into the sorted (code point order) list of categories seen in training;
           unseen categories and null -> NaN.  Trees split on the index (ordinal encoding).
date       days since 1970-01-01 as a float (whole days).
timestamp  days since 1970-01-01T00:00Z as a float, microsecond resolution; naive timestamps are
           taken as UTC, aware ones are converted to UTC.  A date value here counts whole days.
duration   length in days as a float, microsecond resolution.
========== =================================================================================

Every NaN in the output has the same bit pattern, so `encode` and `encode_row` are bit-identical.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from mlspec.ir.types import DType

__all__ = [
    "EncodedFeature",
    "EncodingError",
    "FeatureEncoding",
    "dtype_of_polars",
    "encode",
    "encode_row",
    "fit_encoding",
]

_US_PER_DAY = 86_400_000_000.0
_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_ENCODABLE = (DType.INT, DType.FLOAT, DType.BOOL, DType.STRING, DType.DATE, DType.TIMESTAMP, DType.DURATION)


class EncodingError(ValueError):
    """A frame or row that cannot be encoded with a fitted encoding (user-facing message)."""


@dataclass(frozen=True, slots=True)
class EncodedFeature:
    """One matrix column: the qualified feature name, its type and, for strings, the categories."""

    name: str
    dtype: DType
    categories: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype.value}
        if self.dtype is DType.STRING:
            out["categories"] = list(self.categories)
        return out

    @staticmethod
    def from_data(data: Mapping[str, Any]) -> EncodedFeature:
        return EncodedFeature(str(data["name"]), DType(data["dtype"]), tuple(str(c) for c in data.get("categories", ())))


@dataclass(frozen=True, slots=True)
class FeatureEncoding:
    """The fitted encoding: matrix columns in order.  Stored with every model version."""

    features: tuple[EncodedFeature, ...]
    version: int = 1
    _index: dict[str, dict[str, int]] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Category -> index lookups, built once; the online path looks categories up per request.
        for f in self.features:
            if f.dtype is DType.STRING:
                self._index[f.name] = {c: i for i, c in enumerate(f.categories)}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def dtypes(self) -> dict[str, DType]:
        return {f.name: f.dtype for f in self.features}

    def feature(self, name: str) -> EncodedFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise EncodingError(f"feature `{name}` is not part of this encoding")

    def category_index(self, name: str) -> dict[str, int]:
        return self._index[name]

    def to_data(self) -> dict[str, Any]:
        return {"version": self.version, "features": [f.to_data() for f in self.features]}

    @staticmethod
    def from_data(data: Mapping[str, Any]) -> FeatureEncoding:
        if int(data.get("version", 1)) != 1:
            raise EncodingError(f"unsupported feature encoding version {data.get('version')!r}")
        return FeatureEncoding(tuple(EncodedFeature.from_data(f) for f in data["features"]))

    def to_json(self) -> str:
        return json.dumps(self.to_data(), sort_keys=True, ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> FeatureEncoding:
        return FeatureEncoding.from_data(json.loads(text))


def dtype_of_polars(dtype: pl.DataType) -> DType:
    """The language type a polars column carries; used when the caller has no declared type."""
    if dtype.is_integer():
        return DType.INT
    if dtype.is_float() or dtype == pl.Null or dtype.is_decimal():
        return DType.FLOAT
    if dtype == pl.Boolean:
        return DType.BOOL
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum | pl.Categorical):
        return DType.STRING
    if dtype == pl.Date:
        return DType.DATE
    if isinstance(dtype, pl.Datetime):
        return DType.TIMESTAMP
    if isinstance(dtype, pl.Duration):
        return DType.DURATION
    raise EncodingError(f"columns of polars type {dtype} cannot be model features")


def fit_encoding(features: Sequence[tuple[str, DType]], frame: pl.DataFrame) -> FeatureEncoding:
    """Fix the column order and, for strings, the category list, from the training frame."""
    _require_columns(frame, [n for n, _ in features])
    seen: set[str] = set()
    out: list[EncodedFeature] = []
    for name, dtype in features:
        if name in seen:
            raise EncodingError(f"feature `{name}` is listed twice")
        seen.add(name)
        dtype = DType(dtype)
        if dtype not in _ENCODABLE:
            raise EncodingError(f"feature `{name}` has type {dtype.value}, which a model cannot use")
        if dtype is DType.STRING:
            col = frame.get_column(name)
            if col.dtype not in (pl.String, pl.Categorical) and not isinstance(col.dtype, pl.Enum | pl.Categorical):
                raise EncodingError(f"feature `{name}` is declared string but the column holds {col.dtype}")
            values = col.cast(pl.String).drop_nulls().unique().to_list()
            out.append(EncodedFeature(name, dtype, tuple(sorted(values))))
        else:
            out.append(EncodedFeature(name, dtype))
    return FeatureEncoding(tuple(out))


def encode(frame: pl.DataFrame, encoding: FeatureEncoding) -> npt.NDArray[np.float32]:
    """Encode a frame whose columns are named by qualified feature name (extra columns ignored)."""
    _require_columns(frame, encoding.names)
    out = np.empty((frame.height, len(encoding.features)), dtype=np.float32)
    with np.errstate(over="ignore"):  # float32 overflow is intended: it becomes missing below
        for j, f in enumerate(encoding.features):
            out[:, j] = _encode_column(frame.get_column(f.name), f, encoding)
    _canonical_nan(out)
    return out


def encode_row(values: Mapping[str, object], encoding: FeatureEncoding) -> npt.NDArray[np.float32]:
    """Encode one request (online path): same bits as `encode` on a one-row frame of the same values.

    Every feature must be present as a key; pass None for a null value.
    """
    floats: list[float] = []
    try:
        for f in encoding.features:
            v = values[f.name]
            # plain numbers for numeric features are the common case: convert them without the checks
            plain = type(v) in _PLAIN_NUMBERS and f.dtype in _NUMERIC
            x = float(v) if plain else _encode_value(v, f, encoding)  # type: ignore[arg-type]
            # What float32 cannot hold finitely (NaN, inf, overflow) is missing: one NaN, as in `encode`.
            floats.append(x if -_F32_ROUNDS_TO_INF < x < _F32_ROUNDS_TO_INF else math.nan)
    except KeyError:
        missing = [n for n in encoding.names if n not in values]
        raise EncodingError(f"the row lacks feature(s) {', '.join(missing)}") from None
    return np.array([floats], dtype=np.float32)  # float64 -> float32 rounds to nearest, as `encode` does


# ---- batch path ----------------------------------------------------------------------------

def _encode_column(col: pl.Series, f: EncodedFeature, encoding: FeatureEncoding) -> npt.NDArray[np.float64]:
    try:
        if f.dtype is DType.STRING:
            if col.dtype == pl.Null:
                return np.full(col.len(), np.nan)
            if col.dtype not in (pl.String, pl.Categorical) and not isinstance(col.dtype, pl.Enum | pl.Categorical):
                raise EncodingError(f"feature `{f.name}` is a string feature but the column holds {col.dtype}")
            index = encoding.category_index(f.name)
            mapped = col.cast(pl.String).replace_strict(list(index), list(index.values()), default=None,
                                                        return_dtype=pl.Float64)
            return _as_float(mapped)
        if col.dtype == pl.Null:
            return np.full(col.len(), np.nan)
        if col.dtype == pl.Date:
            return _as_float(col.cast(pl.Int32).cast(pl.Float64))
        if isinstance(col.dtype, pl.Datetime):
            return _as_float(col.dt.epoch("us").cast(pl.Float64)) / _US_PER_DAY
        if isinstance(col.dtype, pl.Duration):
            return _as_float(col.dt.total_microseconds().cast(pl.Float64)) / _US_PER_DAY
        if f.dtype in (DType.DATE, DType.TIMESTAMP, DType.DURATION):
            raise EncodingError(f"feature `{f.name}` is a {f.dtype.value} feature but the column holds {col.dtype}")
        if col.dtype == pl.Boolean or col.dtype.is_numeric():
            return _as_float(col.cast(pl.Float64))
    except pl.exceptions.PolarsError as exc:  # pragma: no cover - defensive: polars refused a cast
        raise EncodingError(f"feature `{f.name}` cannot be encoded: {exc}") from None
    raise EncodingError(f"feature `{f.name}` is a {f.dtype.value} feature but the column holds {col.dtype}")


def _as_float(s: pl.Series) -> npt.NDArray[np.float64]:
    return s.to_numpy(allow_copy=True).astype(np.float64, copy=False)


def _canonical_nan(a: npt.NDArray[np.float32]) -> None:
    # inf and float32 overflow are missing too; one NaN bit pattern so both paths agree bit for bit.
    a[~np.isfinite(a)] = np.float32(np.nan)


# ---- online path ---------------------------------------------------------------------------

_PLAIN_NUMBERS = (int, float, bool)
_NUMERIC = (DType.INT, DType.FLOAT, DType.BOOL)
# The smallest float64 that rounds to float32 infinity: halfway between float32's max and 2**128.
_F32_ROUNDS_TO_INF = (2 - 2**-24) * 2.0**127


def _encode_value(v: object, f: EncodedFeature, encoding: FeatureEncoding) -> float:
    if v is None:
        return math.nan
    if f.dtype is DType.STRING:
        if not isinstance(v, str):
            raise EncodingError(f"feature `{f.name}` expects a string, got {type(v).__name__} {v!r}")
        return float(encoding.category_index(f.name).get(v, math.nan))
    if isinstance(v, dt.datetime):
        us = (v - (_EPOCH_NAIVE if v.tzinfo is None else _EPOCH_UTC)) // _ONE_US
        return float(us) / _US_PER_DAY
    if isinstance(v, dt.date):
        return float((v - _EPOCH_DATE).days)
    if isinstance(v, dt.timedelta):
        return float(v // _ONE_US) / _US_PER_DAY
    if f.dtype in (DType.DATE, DType.TIMESTAMP, DType.DURATION):
        raise EncodingError(f"feature `{f.name}` expects a {f.dtype.value}, got {type(v).__name__} {v!r}")
    if isinstance(v, bool | int | float | np.integer | np.floating | np.bool_):
        return float(v)
    raise EncodingError(f"feature `{f.name}` expects a number, got {type(v).__name__} {v!r}")


def _require_columns(frame: pl.DataFrame, names: Iterable[str]) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        import difflib

        hints = []
        for n in missing:
            close = difflib.get_close_matches(n, frame.columns, n=1)
            hints.append(f"`{n}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        raise EncodingError(f"the frame lacks feature column(s) {', '.join(hints)}")
