"""Drift statistics against the stored reference, checked against scipy and the reference module."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from mlspec.runtime.monitoring.drift import (
    EXACT_KS_MAX,
    DriftResult,
    categorical_drift,
    drift_many,
    fit_numeric_fast,
    ks_against_sample,
    ks_pvalue,
    numeric_drift,
    sorted_bin_counts,
    sorted_quantiles,
)
from mlspec.runtime.reference import (
    PSI_FLOOR,
    UNSEEN,
    bin_indices,
    bin_shares,
    category_shares,
    fit_categorical,
    fit_numeric,
    n_bins_for,
)

finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def _psi(ref: tuple[float, ...], cur: tuple[float, ...]) -> float:
    """PSI written out: shares floored at 1e-4, sum((c - r) ln(c / r))."""
    return sum((max(c, PSI_FLOOR) - max(r, PSI_FLOOR)) * math.log(max(c, PSI_FLOOR) / max(r, PSI_FLOOR))
               for r, c in zip(ref, cur, strict=True))


# ---- KS ----------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:ks_2samp")
@settings(max_examples=150, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=60), st.lists(finite_floats, min_size=1, max_size=300),
       st.integers(0, 3))
def test_ks_statistic_equals_scipy_with_ties(a: list[float], b: list[float], decimals: int) -> None:
    x, y = np.round(np.array(a), decimals), np.round(np.array(b), decimals)
    assert ks_against_sample(x, y) == pytest.approx(ks_2samp(x, y).statistic, abs=1e-12)


def test_ks_large_sample_statistic_and_asymptotic_pvalue_equal_scipy() -> None:
    rng = np.random.default_rng(3)
    ref = fit_numeric(rng.normal(size=50_000), seed=1)  # a 2,000-value KS sample
    current = rng.normal(0.03, 1.0, size=60_000)  # > 10,000: scipy's `auto` is asymptotic here
    got = numeric_drift("x", ref, current)
    want = ks_2samp(np.array(ref.sample), current)
    assert got.ks == pytest.approx(float(want.statistic), abs=1e-12)
    assert got.ks_pvalue == pytest.approx(float(want.pvalue), rel=1e-9, abs=1e-300)
    assert ks_pvalue(float(want.statistic), 2000, 60_000) == pytest.approx(float(want.pvalue), rel=1e-9)


def test_ks_small_sample_uses_scipy_exact() -> None:
    rng = np.random.default_rng(4)
    ref = fit_numeric(rng.exponential(size=3000), seed=2)
    current = rng.exponential(1.3, size=800)
    assert EXACT_KS_MAX >= 800
    got = numeric_drift("x", ref, current)
    want = ks_2samp(np.array(ref.sample), current, method="exact")
    assert (got.ks, got.ks_pvalue) == (pytest.approx(float(want.statistic)), pytest.approx(float(want.pvalue)))
    assert got.ks_pvalue is not None and got.ks_pvalue < 1e-6  # a real shift is found


def test_ks_ignores_missing_values_and_empty_sides_are_nan() -> None:
    assert math.isnan(ks_against_sample([], [1.0])) and math.isnan(ks_against_sample([1.0], [math.nan]))
    ref = fit_numeric(np.arange(100.0))
    d = numeric_drift("x", ref, [math.nan, math.inf, -math.inf, 5.0, 6.0])
    want = ks_2samp(np.array(ref.sample), [5.0, 6.0])
    assert d.ks == pytest.approx(float(want.statistic)) and d.null_share == pytest.approx(0.6)


# ---- PSI and JS on reference bins ----------------------------------------------------------------

def test_numeric_psi_and_js_use_the_reference_bins_never_rebinned() -> None:
    rng = np.random.default_rng(5)
    train = rng.lognormal(3.0, 0.6, size=20_000)
    ref = fit_numeric(train, seed=0)
    current = rng.lognormal(3.3, 0.6, size=15_000)  # shifted: mass moves to the upper and open outer bins
    d = numeric_drift("spend", ref, current)
    cur_shares = bin_shares(current, ref.edges)
    assert d.cur_shares == pytest.approx(cur_shares, abs=1e-15)
    assert len(d.cur_shares) == len(ref.edges) + 1 == 12  # 10 quantile bins + two open outer bins
    assert d.cur_shares[-1] > 0  # values above the reference maximum land in the open outer bin
    assert d.cur_shares[-2] > 0.2 > ref.shares[-2]  # the top decile of the reference grew
    assert d.psi == pytest.approx(_psi(ref.shares, cur_shares), rel=1e-12)
    assert d.js == pytest.approx(float(jensenshannon(ref.shares, cur_shares, base=2)), rel=1e-9)
    assert 0 < d.js < 1 and d.psi > 0.2
    assert d.bins[0].startswith("< ") and d.bins[-1].startswith("> ") and len(d.bins) == 12


def test_same_data_has_zero_drift_and_floor_keeps_psi_finite() -> None:
    x = np.random.default_rng(6).normal(size=5000)
    ref = fit_numeric(x)
    d = numeric_drift("x", ref, x)
    assert d.psi == pytest.approx(0.0, abs=1e-12) and d.js == pytest.approx(0.0, abs=1e-7)
    far = numeric_drift("x", ref, np.full(100, 1e9))  # everything in the (empty in reference) top open bin
    assert math.isfinite(far.psi) and far.psi > 5 and far.js == pytest.approx(1.0, abs=1e-3)


def test_categorical_drift_counts_unseen_and_matches_reference_shares() -> None:
    ref = fit_categorical(["web"] * 50 + ["app"] * 30 + ["store"] * 20)
    values = ["web"] * 20 + ["app"] * 60 + ["phone"] * 10 + [None] * 10
    d = categorical_drift("channel", ref, values)
    shares, nulls = category_shares(values, ref.categories)
    assert d.cur_shares == pytest.approx(shares) and d.null_share == pytest.approx(nulls) == 0.1
    assert d.bins[-1] == UNSEEN and d.cur_shares[-1] == pytest.approx(10 / 90)
    assert d.psi == pytest.approx(_psi(ref.shares, shares), rel=1e-12)
    assert d.js == pytest.approx(float(jensenshannon(ref.shares, shares, base=2)), rel=1e-9)
    assert d.ks is None and d.stat("ks") is None
    as_series = categorical_drift("channel", ref, pl.Series(values))
    assert as_series.cur_shares == d.cur_shares


def test_bool_categories_are_true_false() -> None:
    ref = fit_categorical([True, False, False, None], ("false", "true"))
    d = categorical_drift("is_premium", ref, pl.Series([True, True, None, False]))
    assert d.cur_shares == pytest.approx((1 / 3, 2 / 3, 0.0)) and d.null_share == 0.25


def test_drift_result_round_trips_and_drops_nan() -> None:
    d = numeric_drift("x", fit_numeric([1.0, 2.0, 3.0]), [])
    assert math.isnan(d.psi) and d.stat("psi") is None
    data = d.to_data()
    assert data["psi"] is None and DriftResult.from_data(data).bins == d.bins


# ---- the fast paths equal the plain ones -----------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(finite_floats, st.just(math.nan), st.just(math.inf)), max_size=400), st.integers(0, 2),
       st.integers(0, 9))
def test_fit_numeric_fast_equals_fit_numeric(values: list[float], decimals: int, seed: int) -> None:
    x = np.round(np.array(values, dtype=np.float64), decimals)
    assert fit_numeric_fast(x, seed=seed, sample_size=50) == fit_numeric(x, seed=seed, sample_size=50)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=300), st.lists(finite_floats, max_size=300))
def test_sorted_bin_counts_equal_bin_indices(ref: list[float], cur: list[float]) -> None:
    edges = fit_numeric(np.round(ref, 1)).edges
    s = np.sort(np.round(np.array(cur), 1))
    want = np.bincount(bin_indices(s, edges), minlength=n_bins_for(edges))
    assert sorted_bin_counts(s, edges).tolist() == want.tolist()


def test_sorted_quantiles_bit_identical_to_numpy() -> None:
    rng = np.random.default_rng(7)
    q = np.linspace(0.0, 1.0, 11)
    for n in (1, 2, 3, 10, 11, 999, 10_001):
        x = np.sort(np.round(rng.normal(size=n), 2))
        assert sorted_quantiles(x, q).tolist() == np.quantile(x, q).tolist()


def test_threads_give_the_same_results() -> None:
    rng = np.random.default_rng(8)
    refs = {f"f{i}": fit_numeric(rng.normal(size=2000), seed=i) for i in range(6)}
    cols = {f"f{i}": rng.normal(0.1 * i, 1.0, size=40_000) for i in range(6)}
    assert drift_many(refs, cols, threads=1) == drift_many(refs, cols, threads=3)
