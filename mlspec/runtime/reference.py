"""Reference statistics for drift monitoring, fitted once on training data and stored with the model.

Monitoring compares current data against these numbers and never re-bins the reference: the bin
edges, shares and samples below are the whole reference.  The statistics follow the drift
defaults of the design:

* numeric features (int, float, date, timestamp, duration — measured on the encoded value, so
  dates are days since epoch): 10 reference-quantile bins, edges deduplicated for ties, plus the
  two open outer bins ``(-inf, first edge)`` and ``(last edge, +inf)``; the null share (null,
  NaN and +-inf, i.e. what the model sees as missing); mean/std/min/max; a seeded uniform sample
  of at most 2,000 values for KS tests.
* categorical features (string, bool): the share of every category seen in training plus an
  "unseen" bucket (0 in the reference), and the null share.
* the prediction score on the test split: numeric (binary: P(positive); regression: the
  predicted value) or categorical (multiclass: the predicted class).

The pure functions `bin_shares`, `category_shares`, `psi`, `js_distance` and `ks` are what
monitoring applies to current data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from mlspec.ir.types import DType
from mlspec.runtime.encode import FeatureEncoding

__all__ = [
    "N_QUANTILE_BINS",
    "PSI_FLOOR",
    "SAMPLE_SIZE",
    "UNSEEN",
    "CategoricalReference",
    "NumericReference",
    "ReferenceStats",
    "bin_shares",
    "category_shares",
    "fit_categorical",
    "fit_numeric",
    "fit_reference",
    "js_distance",
    "ks",
    "psi",
    "quantile_edges",
    "reservoir_sample",
]

N_QUANTILE_BINS = 10
SAMPLE_SIZE = 2_000
PSI_FLOOR = 1e-4
UNSEEN = "__unseen__"  # the name of the unseen-category bucket in reports

FloatArray = npt.NDArray[np.float64]


# ---- pure functions ------------------------------------------------------------------------

def quantile_edges(values: npt.ArrayLike, n_bins: int = N_QUANTILE_BINS) -> tuple[float, ...]:
    """Reference-quantile edges (0%, 10%, ..., 100%), deduplicated for ties; () with no finite values."""
    v = _finite(values)
    if v.size == 0:
        return ()
    q = np.quantile(v, np.linspace(0.0, 1.0, n_bins + 1))
    return tuple(float(x) for x in np.unique(q))


def n_bins_for(edges: Sequence[float]) -> int:
    """Bins for these edges: (-inf, e0), the inner bins (one point bin for one edge), (e_last, +inf)."""
    return max(len(edges) - 1, 1) + 2 if edges else 1


def bin_indices(values: npt.ArrayLike, edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Bin index per value (NaN excluded by the caller).

    Bin 0 is ``(-inf, e0)``; inner bin i is ``[e_i, e_{i+1})``, the last inner bin is closed
    ``[e_{m-2}, e_{m-1}]`` so the reference maximum falls inside; the last bin is ``(e_{m-1}, +inf)``.
    """
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if e.size == 0:
        return np.zeros(v.shape, dtype=np.int64)
    n_inner = max(e.size - 1, 1)
    k = np.searchsorted(e, v, side="right")  # 0..m
    idx = np.minimum(k - 1, n_inner - 1) + 1
    idx = np.where(v < e[0], 0, idx)
    idx = np.where(v > e[-1], n_inner + 1, idx)
    return idx.astype(np.int64)


def bin_shares(values: npt.ArrayLike, edges: Sequence[float]) -> tuple[float, ...]:
    """Share of the non-NaN values in each bin of `edges` (all zeros when there are none)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    counts = np.bincount(bin_indices(v, edges), minlength=n_bins_for(edges))
    total = counts.sum()
    return tuple(float(c) / total if total else 0.0 for c in counts)


def category_shares(values: Iterable[object], categories: Sequence[str]) -> tuple[tuple[float, ...], float]:
    """(share per category + a final unseen share, over non-null values), null share over all values.

    Bools count as the categories "false"/"true"; other values by their string form.
    """
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1, dtype=np.int64)
    nulls = total = 0
    for x in values:
        total += 1
        if x is None or (isinstance(x, float) and math.isnan(x)):
            nulls += 1
            continue
        counts[index.get(_category_key(x), len(categories))] += 1
    seen = int(counts.sum())
    shares = tuple(float(c) / seen if seen else 0.0 for c in counts)
    return shares, (nulls / total if total else 0.0)


def psi(ref_shares: Sequence[float], cur_shares: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index, sum((c - r) * ln(c / r)), shares floored at `floor` (never inf)."""
    r = np.maximum(np.asarray(ref_shares, dtype=np.float64), floor)
    c = np.maximum(np.asarray(cur_shares, dtype=np.float64), floor)
    if r.shape != c.shape:
        raise ValueError(f"psi needs shares over the same bins ({r.size} vs {c.size})")
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance with log base 2 (0 = same distribution, 1 = disjoint).

    Both inputs are normalised to sum 1 first, as scipy's `jensenshannon` does.
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"js_distance needs distributions over the same bins ({a.size} vs {b.size})")
    if a.sum() <= 0 or b.sum() <= 0:
        return math.nan
    a = a / a.sum()
    b = b / b.sum()
    m = (a + b) / 2.0

    def kl(x: FloatArray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return math.sqrt(max((kl(a) + kl(b)) / 2.0, 0.0))


def ks(reference_sample: npt.ArrayLike, current_values: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (statistic, two-sided p-value) over the non-NaN values.

    The statistic is computed here; the p-value is scipy's (exact for small samples, asymptotic
    otherwise — `scipy.stats.ks_2samp` with method "auto").  (nan, nan) when a side is empty.
    """
    a = np.sort(_not_nan(reference_sample))
    b = np.sort(_not_nan(current_values))
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    from scipy.stats import ks_2samp  # scipy comes with scikit-learn; imported lazily (slow import)

    p_value = float(ks_2samp(a, b, method="auto").pvalue)
    return statistic, p_value


def reservoir_sample(values: npt.ArrayLike, k: int = SAMPLE_SIZE, seed: int = 0) -> tuple[float, ...]:
    """A seeded uniform sample of at most k finite values, sorted (order carries no information)."""
    v = _finite(values)
    if v.size > k:
        rng = np.random.default_rng(seed)
        v = v[rng.choice(v.size, size=k, replace=False)]
    return tuple(float(x) for x in np.sort(v))


def _finite(values: npt.ArrayLike) -> FloatArray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _not_nan(values: npt.ArrayLike) -> FloatArray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[~np.isnan(v)]


def _category_key(x: object) -> str:
    if isinstance(x, bool | np.bool_):
        return "true" if x else "false"
    return str(x)


# ---- reference objects ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NumericReference:
    """Reference distribution of one numeric quantity (bins, moments, KS sample)."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]  # len = n_bins_for(edges); first and last are the open outer bins
    null_share: float
    count: int  # rows seen, nulls included
    mean: float | None
    std: float | None  # population standard deviation (ddof = 0)
    min: float | None
    max: float | None
    sample: tuple[float, ...]
    kind: str = "numeric"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": list(self.edges), "shares": list(self.shares),
                "null_share": self.null_share, "count": self.count, "mean": self.mean, "std": self.std,
                "min": self.min, "max": self.max, "sample": list(self.sample)}

    @staticmethod
    def from_data(d: Mapping[str, Any]) -> NumericReference:
        return NumericReference(tuple(map(float, d["edges"])), tuple(map(float, d["shares"])),
                                float(d["null_share"]), int(d["count"]), _opt(d["mean"]), _opt(d["std"]),
                                _opt(d["min"]), _opt(d["max"]), tuple(map(float, d["sample"])))

    def current_shares(self, values: npt.ArrayLike) -> tuple[float, ...]:
        """Shares of current values in these reference bins."""
        return bin_shares(values, self.edges)


@dataclass(frozen=True, slots=True)
class CategoricalReference:
    """Reference distribution of one categorical quantity: category shares + unseen bucket."""

    categories: tuple[str, ...]
    shares: tuple[float, ...]  # len = len(categories) + 1; the last is the unseen bucket
    null_share: float
    count: int
    kind: str = "categorical"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "categories": list(self.categories), "shares": list(self.shares),
                "null_share": self.null_share, "count": self.count}

    @staticmethod
    def from_data(d: Mapping[str, Any]) -> CategoricalReference:
        return CategoricalReference(tuple(map(str, d["categories"])), tuple(map(float, d["shares"])),
                                    float(d["null_share"]), int(d["count"]))

    def current_shares(self, values: Iterable[object]) -> tuple[float, ...]:
        """Shares of current values over these categories (+ unseen)."""
        return category_shares(values, self.categories)[0]


Reference = NumericReference | CategoricalReference


def _ref_from_data(d: Mapping[str, Any]) -> Reference:
    if d["kind"] == "numeric":
        return NumericReference.from_data(d)
    if d["kind"] == "categorical":
        return CategoricalReference.from_data(d)
    raise ValueError(f"unknown reference kind {d['kind']!r}")


def _finite_or_none(x: object) -> float | None:
    v = float(x)  # type: ignore[arg-type]
    return v if math.isfinite(v) else None  # a sum beyond float64 has no mean worth storing


def _opt(x: object) -> float | None:
    return None if x is None else float(x)  # type: ignore[arg-type]


def fit_numeric(values: npt.ArrayLike, *, sample_size: int = SAMPLE_SIZE, seed: int = 0) -> NumericReference:
    """Fit bins, moments and the KS sample of one numeric column (NaN/inf = null)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    count = int(v.size)
    edges = quantile_edges(finite)
    has = finite.size > 0
    with np.errstate(over="ignore", invalid="ignore"):
        mean = _finite_or_none(finite.mean()) if has else None
        std = _finite_or_none(finite.std()) if has else None
    return NumericReference(
        edges=edges,
        shares=bin_shares(finite, edges),
        null_share=float(count - finite.size) / count if count else 0.0,
        count=count,
        mean=mean,
        std=std,
        min=float(finite.min()) if has else None,
        max=float(finite.max()) if has else None,
        sample=reservoir_sample(finite, sample_size, seed),
    )


def fit_categorical(values: Iterable[object], categories: Sequence[str] | None = None) -> CategoricalReference:
    """Fit category shares; categories default to the sorted distinct non-null values."""
    vals = list(values)
    if categories is None:
        categories = sorted({_category_key(x) for x in vals if x is not None
                             and not (isinstance(x, float) and math.isnan(x))})
    shares, null_share = category_shares(vals, categories)
    return CategoricalReference(tuple(categories), shares, null_share, len(vals))


@dataclass(frozen=True, slots=True)
class ReferenceStats:
    """Everything monitoring needs about the training-time distributions of one model version."""

    features: dict[str, Reference]  # qualified name -> reference, in encoding order
    prediction: Reference | None
    n_rows: int  # rows the feature references were fitted on
    seed: int
    version: int = 1

    def to_data(self) -> dict[str, Any]:
        return {"version": self.version, "n_rows": self.n_rows, "seed": self.seed,
                "features": {k: v.to_data() for k, v in self.features.items()},
                "prediction": self.prediction.to_data() if self.prediction is not None else None}

    @staticmethod
    def from_data(d: Mapping[str, Any]) -> ReferenceStats:
        if int(d.get("version", 1)) != 1:
            raise ValueError(f"unsupported reference statistics version {d.get('version')!r}")
        return ReferenceStats({str(k): _ref_from_data(v) for k, v in d["features"].items()},
                              _ref_from_data(d["prediction"]) if d.get("prediction") is not None else None,
                              int(d["n_rows"]), int(d["seed"]))

    def to_json(self) -> str:
        return json.dumps(self.to_data(), sort_keys=True, ensure_ascii=False, allow_nan=False)

    @staticmethod
    def from_json(text: str) -> ReferenceStats:
        return ReferenceStats.from_data(json.loads(text))


def fit_reference(frame: pl.DataFrame, encoding: FeatureEncoding, matrix: npt.NDArray[np.floating[Any]],
                  prediction: npt.ArrayLike | Sequence[str] | None, *, seed: int = 0,
                  sample_size: int = SAMPLE_SIZE) -> ReferenceStats:
    """Fit per-feature references on training rows and the prediction reference on test scores.

    `matrix` is `encode(frame, encoding)`; numeric features are measured on it, categorical ones
    on the raw column.  `prediction` is a float array (numeric) or a sequence of class names.
    """
    refs: dict[str, Reference] = {}
    for j, f in enumerate(encoding.features):
        if f.dtype is DType.STRING:
            refs[f.name] = fit_categorical(frame.get_column(f.name).cast(pl.String).to_list(), f.categories)
        elif f.dtype is DType.BOOL:
            refs[f.name] = fit_categorical(frame.get_column(f.name).to_list(), ("false", "true"))
        else:
            refs[f.name] = fit_numeric(matrix[:, j], sample_size=sample_size, seed=seed + j)
    pred: Reference | None = None
    if prediction is not None:
        if isinstance(prediction, np.ndarray) and prediction.dtype.kind == "f":
            pred = fit_numeric(prediction, sample_size=sample_size, seed=seed)
        else:
            pred = fit_categorical([str(x) for x in prediction])  # type: ignore[union-attr]
    return ReferenceStats(refs, pred, frame.height, seed)
