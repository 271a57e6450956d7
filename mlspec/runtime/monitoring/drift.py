"""Drift statistics of current data against a stored reference: PSI, Jensen-Shannon distance, KS.

The reference (`mlspec.runtime.reference`) was fitted once at training time and is never re-binned:

* numeric: current values fall into the reference's 10 quantile bins plus the two open outer bins;
  PSI floors empty shares at 1e-4; JS distance (log base 2, 0..1) is over the same bins; the
  two-sample KS statistic compares the reference's stored sample with every current value, and its
  p-value is scipy's `ks_2samp(method="auto")` — exact up to 10,000 values a side (computed by
  scipy itself), Smirnov's asymptotic `kstwo.sf(d, round(n*m/(n+m)))` beyond, exactly as scipy does.
* categorical: shares over the reference categories plus an "unseen" bucket; PSI and JS over those;
  KS does not apply.

Null, NaN and +-inf are "missing" (what the model sees as missing): they are left out of the shares
and the KS test and reported as the null share.  Everything about the current values comes
from one sort of them: bin counts and both CDFs at the (at most 2,000) reference sample points are
binary searches into the sorted values, so the work per feature is one `np.sort`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from mlspec.runtime.reference import (
    N_QUANTILE_BINS,
    SAMPLE_SIZE,
    UNSEEN,
    CategoricalReference,
    NumericReference,
    js_distance,
    n_bins_for,
    psi,
    reservoir_sample,
)

__all__ = [
    "DRIFT_METRICS",
    "EXACT_KS_MAX",
    "DriftResult",
    "categorical_drift",
    "compare_samples",
    "drift_many",
    "fit_numeric_fast",
    "ks_against_sample",
    "ks_pvalue",
    "numeric_drift",
    "sorted_bin_counts",
    "sorted_quantiles",
]

DRIFT_METRICS = ("psi", "js", "ks", "ks_pvalue")
EXACT_KS_MAX = 10_000  # scipy's `auto` switches from the exact to the asymptotic p-value above this size
FloatArray = npt.NDArray[np.float64]
Reference = NumericReference | CategoricalReference


@dataclass(frozen=True, slots=True)
class DriftResult:
    """Drift of one quantity (a feature or the prediction) against its reference."""

    name: str
    kind: str  # "numeric" | "categorical"
    psi: float
    js: float
    ks: float | None  # numeric only
    ks_pvalue: float | None
    n_current: int  # current rows, nulls included
    null_share: float  # current
    ref_null_share: float
    ref_shares: tuple[float, ...]
    cur_shares: tuple[float, ...]
    bins: tuple[str, ...]  # a label per share, for reports
    mean: float | None = None  # current mean (numeric)
    ref_mean: float | None = None

    def stat(self, metric: str) -> float | None:
        """The value of one of DRIFT_METRICS (None when it does not apply or is undefined)."""
        value = {"psi": self.psi, "js": self.js, "ks": self.ks, "ks_pvalue": self.ks_pvalue}[metric]
        return None if value is None or not math.isfinite(value) else float(value)

    def to_data(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "psi": _num(self.psi), "js": _num(self.js),
                "ks": _num(self.ks), "ks_pvalue": _num(self.ks_pvalue), "n_current": self.n_current,
                "null_share": self.null_share, "ref_null_share": self.ref_null_share,
                "ref_shares": list(self.ref_shares), "cur_shares": list(self.cur_shares), "bins": list(self.bins),
                "mean": _num(self.mean), "ref_mean": _num(self.ref_mean)}

    @staticmethod
    def from_data(d: Mapping[str, Any]) -> DriftResult:
        def f(x: object) -> float:
            return math.nan if x is None else float(x)  # type: ignore[arg-type]

        return DriftResult(str(d["name"]), str(d["kind"]), f(d["psi"]), f(d["js"]), _opt(d.get("ks")),
                           _opt(d.get("ks_pvalue")), int(d["n_current"]), float(d["null_share"]),
                           float(d["ref_null_share"]), tuple(map(float, d["ref_shares"])),
                           tuple(map(float, d["cur_shares"])), tuple(map(str, d["bins"])), _opt(d.get("mean")),
                           _opt(d.get("ref_mean")))


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _opt(x: object) -> float | None:
    return None if x is None else float(x)  # type: ignore[arg-type]


# ---- counting on sorted values ------------------------------------------------------------

def finite_values(values: npt.ArrayLike) -> tuple[FloatArray, int]:
    """(the finite values, the count of all values); no copy when every value is finite."""
    v = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(v)
    return (v if ok.all() else v[ok]), int(v.size)


def sorted_bin_counts(sorted_values: FloatArray, edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Counts per reference bin of already sorted values; equal to `bincount(bin_indices(...))`."""
    n = sorted_values.size
    if not edges:
        return np.array([n], dtype=np.int64)
    e = np.asarray(edges, dtype=np.float64)
    below = np.searchsorted(sorted_values, e, side="left")  # values < edge
    at_or_below_last = int(np.searchsorted(sorted_values, e[-1], side="right"))
    n_inner = max(e.size - 1, 1)
    lower = below[:n_inner]
    upper = np.append(below[1:n_inner], at_or_below_last) if e.size > 1 else np.array([at_or_below_last])
    return np.concatenate(([below[0]], upper - lower, [n - at_or_below_last])).astype(np.int64)


def _ks_sorted(ref_sorted: FloatArray, cur_sorted: FloatArray) -> float:
    """KS statistic of two sorted samples, evaluated at the reference points only.

    Between two consecutive reference points the reference CDF is flat and the current one rises,
    so the largest gap sits at a reference point (current values <= it) or just before the next
    one (current values < it): two binary searches per reference point, none per current value.
    """
    n, m = ref_sorted.size, cur_sorted.size
    starts = np.empty(n, dtype=bool)  # first occurrence of each distinct value (the input is sorted)
    starts[0] = True
    np.not_equal(ref_sorted[1:], ref_sorted[:-1], out=starts[1:])
    points, first = ref_sorted[starts], np.flatnonzero(starts)
    ref_le = np.append(first[1:], n)  # reference values <= each point
    cur_le = np.searchsorted(cur_sorted, points, side="right")
    cur_lt = np.searchsorted(cur_sorted, points, side="left")
    f_ref = ref_le / n
    at_point = f_ref - cur_le / m
    before_point = np.concatenate(([0.0], f_ref[:-1])) - cur_lt / m
    return float(max(np.max(np.abs(at_point)), np.max(np.abs(before_point))))


def ks_against_sample(sample: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """The two-sample KS statistic, equal to scipy's `ks_2samp(sample, current).statistic`.

    NaN values are ignored (as scipy would fail on them); NaN when a side is empty.
    """
    a = np.asarray(sample, dtype=np.float64).ravel()
    b = np.asarray(current, dtype=np.float64).ravel()
    a, b = np.sort(a[~np.isnan(a)]), np.sort(b[~np.isnan(b)])
    if a.size == 0 or b.size == 0:
        return math.nan
    return _ks_sorted(a, b)


def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """Two-sided asymptotic p-value exactly as scipy's ks_2samp computes it for large samples."""
    from scipy.stats import kstwo

    if not math.isfinite(statistic) or n1 == 0 or n2 == 0:
        return math.nan
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def _ks(sample_sorted: FloatArray, cur_sorted: FloatArray) -> tuple[float, float]:
    """(statistic, p-value) as `ks_2samp(method="auto")`: scipy itself while the exact test applies."""
    if sample_sorted.size == 0 or cur_sorted.size == 0:
        return math.nan, math.nan
    if max(sample_sorted.size, cur_sorted.size) <= EXACT_KS_MAX:
        from scipy.stats import ks_2samp

        res = ks_2samp(sample_sorted, cur_sorted, method="auto")
        return float(res.statistic), float(res.pvalue)
    d = _ks_sorted(sample_sorted, cur_sorted)
    return d, ks_pvalue(d, sample_sorted.size, cur_sorted.size)


# ---- fitting a reference fast (bench, ad-hoc comparisons) ------------------------------------

def sorted_quantiles(sorted_values: FloatArray, q: npt.ArrayLike) -> FloatArray:
    """`np.quantile(values, q)` (method "linear") of sorted values, bit for bit, without a partition."""
    qs = np.asarray(q, dtype=np.float64)
    n = sorted_values.size
    virtual = (n - 1) * qs
    previous = np.floor(virtual)
    nxt = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    nxt[above] = -1
    below = virtual < 0
    previous[below] = 0
    nxt[below] = 0
    prev_i, next_i = previous.astype(np.intp), nxt.astype(np.intp)
    gamma = np.asarray(virtual - prev_i, dtype=np.float64)
    a, b = sorted_values[prev_i], sorted_values[next_i]
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def fit_numeric_fast(values: npt.ArrayLike, *, sample_size: int = SAMPLE_SIZE, seed: int = 0) -> NumericReference:
    """The same NumericReference as `reference.fit_numeric`, from one sort instead of a partition + search."""
    finite, count = finite_values(values)
    s = np.sort(finite)
    edges = tuple(float(x) for x in np.unique(sorted_quantiles(s, np.linspace(0.0, 1.0, N_QUANTILE_BINS + 1)))) \
        if s.size else ()
    counts = sorted_bin_counts(s, edges)
    total = counts.sum()
    has = finite.size > 0
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(finite.mean()) if has else None
        std = float(finite.std()) if has else None
    return NumericReference(
        edges=edges,
        shares=tuple(float(c) / total if total else 0.0 for c in counts),
        null_share=float(count - finite.size) / count if count else 0.0,
        count=count,
        mean=mean if mean is not None and math.isfinite(mean) else None,
        std=std if std is not None and math.isfinite(std) else None,
        min=float(s[0]) if has else None,
        max=float(s[-1]) if has else None,
        sample=_sample(finite, sample_size, seed),
    )


def _sample(finite: FloatArray, k: int, seed: int) -> tuple[float, ...]:
    """`reservoir_sample` of values known to be finite (skips its second finite-filter copy)."""
    if finite.size <= k:
        return reservoir_sample(finite, k, seed)
    picked = finite[np.random.default_rng(seed).choice(finite.size, size=k, replace=False)]
    return tuple(float(x) for x in np.sort(picked))


# ---- per quantity --------------------------------------------------------------------------

def _edge_label(x: float) -> str:
    return f"{x:.4g}"


def numeric_bin_labels(edges: Sequence[float]) -> tuple[str, ...]:
    """Human labels of the reference bins: open outer bins and the inner quantile bins."""
    if not edges:
        return ("all",)
    e = [_edge_label(x) for x in edges]
    if len(edges) == 1:
        return (f"< {e[0]}", f"= {e[0]}", f"> {e[0]}")
    inner = [f"[{e[i]}, {e[i + 1]})" for i in range(len(edges) - 2)] + [f"[{e[-2]}, {e[-1]}]"]
    return (f"< {e[0]}", *inner, f"> {e[-1]}")


def numeric_drift(name: str, ref: NumericReference, values: npt.ArrayLike) -> DriftResult:
    """PSI, JS and KS of current numeric values against a numeric reference."""
    finite, n_all = finite_values(values)
    s = np.sort(finite)
    if s.size:
        counts = sorted_bin_counts(s, ref.edges)
        cur = tuple(float(c) / s.size for c in counts)
        p, js = psi(ref.shares, cur), js_distance(ref.shares, cur)
        m = float(finite.mean())
        mean: float | None = m if math.isfinite(m) else None
    else:
        cur, p, js, mean = (0.0,) * n_bins_for(ref.edges), math.nan, math.nan, None
    d, pv = _ks(np.sort(np.asarray(ref.sample, dtype=np.float64)), s)
    return DriftResult(name, "numeric", p, js, d, pv, n_all,
                       float(n_all - finite.size) / n_all if n_all else 0.0, ref.null_share, ref.shares, cur,
                       numeric_bin_labels(ref.edges), mean, ref.mean)


def compare_samples(name: str, reference: npt.ArrayLike, current: npt.ArrayLike) -> DriftResult:
    """Two raw numeric samples compared directly: bins fitted on `reference` (as `fit_numeric` fits
    them), PSI and JS over those bins, KS against the whole reference rather than a stored sample."""
    ref_finite, ref_all = finite_values(reference)
    cur_finite, cur_all = finite_values(current)
    r, c = np.sort(ref_finite), np.sort(cur_finite)
    edges = tuple(float(x) for x in np.unique(sorted_quantiles(r, np.linspace(0.0, 1.0, N_QUANTILE_BINS + 1)))) \
        if r.size else ()
    ref_shares = tuple(float(x) / r.size if r.size else 0.0 for x in sorted_bin_counts(r, edges))
    cur_shares = tuple(float(x) / c.size if c.size else 0.0 for x in sorted_bin_counts(c, edges))
    ok = r.size > 0 and c.size > 0
    d, pv = _ks(r, c)
    return DriftResult(name, "numeric", psi(ref_shares, cur_shares) if ok else math.nan,
                       js_distance(ref_shares, cur_shares) if ok else math.nan, d, pv, cur_all,
                       float(cur_all - c.size) / cur_all if cur_all else 0.0,
                       float(ref_all - r.size) / ref_all if ref_all else 0.0, ref_shares, cur_shares,
                       numeric_bin_labels(edges), float(c.mean()) if c.size else None,
                       float(r.mean()) if r.size else None)


def categorical_counts(values: Iterable[object] | pl.Series, categories: Sequence[str]) -> tuple[np.ndarray, int, int]:
    """(counts per category + unseen, null count, total) with bools as "true"/"false" (vectorised)."""
    s = values if isinstance(values, pl.Series) else pl.Series("v", list(values), strict=False)
    if s.dtype == pl.Boolean:
        s = s.replace_strict({True: "true", False: "false"}, return_dtype=pl.String)
    elif s.dtype.is_float():
        s = s.fill_nan(None).cast(pl.String)
    else:
        s = s.cast(pl.String)
    total, nulls = s.len(), s.null_count()
    counts = np.zeros(len(categories) + 1, dtype=np.int64)
    index = {c: i for i, c in enumerate(categories)}
    if total > nulls:
        vc = s.drop_nulls().value_counts()
        for value, count in zip(vc.get_column(vc.columns[0]).to_list(), vc.get_column("count").to_list(),
                                strict=True):
            counts[index.get(str(value), len(categories))] += int(count)
    return counts, nulls, total


def categorical_drift(name: str, ref: CategoricalReference, values: Iterable[object] | pl.Series) -> DriftResult:
    """PSI and JS of current categories (plus the unseen bucket) against a categorical reference."""
    counts, nulls, total = categorical_counts(values, ref.categories)
    seen = int(counts.sum())
    if seen:
        cur = tuple(float(c) / seen for c in counts)
        p, js = psi(ref.shares, cur), js_distance(ref.shares, cur)
    else:
        cur, p, js = (0.0,) * len(ref.shares), math.nan, math.nan
    return DriftResult(name, "categorical", p, js, None, None, total, nulls / total if total else 0.0,
                       ref.null_share, ref.shares, cur, (*ref.categories, UNSEEN))


def drift_one(name: str, ref: Reference, values: npt.ArrayLike | pl.Series | Sequence[object]) -> DriftResult:
    """Dispatch on the reference kind."""
    if isinstance(ref, NumericReference):
        arr = values.cast(pl.Float64, strict=False).to_numpy() if isinstance(values, pl.Series) else values
        return numeric_drift(name, ref, arr)  # type: ignore[arg-type]
    return categorical_drift(name, ref, values)  # type: ignore[arg-type]


def drift_many(refs: Mapping[str, Reference], columns: Mapping[str, Any], *, threads: int | None = None) -> dict[str, DriftResult]:
    """Drift of every column that has a reference, in parallel threads for large inputs.

    numpy releases the GIL in its binary searches and counting, so features run side by side.
    """
    names = [n for n in refs if n in columns]
    size = sum(len(columns[n]) for n in names)
    workers = threads if threads is not None else (min(len(names), os.cpu_count() or 1) if size > 200_000 else 1)
    if workers <= 1 or len(names) <= 1:
        return {n: drift_one(n, refs[n], columns[n]) for n in names}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda n: drift_one(n, refs[n], columns[n]), names))
    return dict(zip(names, results, strict=True))
