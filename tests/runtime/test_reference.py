"""Drift reference statistics and the pure drift functions, checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from mlspec.ir.types import DType
from mlspec.runtime.encode import encode, fit_encoding
from mlspec.runtime.reference import (
    PSI_FLOOR,
    CategoricalReference,
    NumericReference,
    ReferenceStats,
    bin_shares,
    category_shares,
    fit_categorical,
    fit_numeric,
    fit_reference,
    js_distance,
    ks,
    psi,
    quantile_edges,
    reservoir_sample,
)

# ---- bins ----------------------------------------------------------------------------------


def test_ten_quantile_bins_plus_two_open_outer_bins() -> None:
    values = np.arange(1000, dtype=float)
    edges = quantile_edges(values)
    assert len(edges) == 11 and edges[0] == 0.0 and edges[-1] == 999.0
    shares = bin_shares(values, edges)
    assert len(shares) == 12
    assert shares[0] == 0.0 and shares[-1] == 0.0  # the reference never falls outside its own range
    assert shares[1:-1] == pytest.approx([0.1] * 10, abs=0.002)
    assert sum(shares) == pytest.approx(1.0)
    # current data outside the reference range lands in the open outer bins
    assert bin_shares([-5.0, 2000.0, 999.0, math.inf, -math.inf, math.nan], edges) == pytest.approx(
        [0.4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.4])


def test_ties_deduplicate_edges() -> None:
    values = np.array([0.0] * 90 + [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    edges = quantile_edges(values)
    assert list(edges) == sorted(set(edges)) and len(edges) < 11
    shares = bin_shares(values, edges)
    assert len(shares) == len(edges) + 1 and sum(shares) == pytest.approx(1.0)
    constant = quantile_edges([3.0] * 50)
    assert constant == (3.0,)
    assert bin_shares([3.0, 3.0, 2.0, 4.0], constant) == (0.25, 0.5, 0.25)
    assert quantile_edges([math.nan, math.inf]) == () and bin_shares([1.0], ()) == (1.0,)


def test_bin_edges_are_half_open_with_a_closed_last_inner_bin() -> None:
    edges = (0.0, 1.0, 2.0)
    assert bin_shares([0.0], edges) == (0.0, 1.0, 0.0, 0.0)
    assert bin_shares([1.0], edges) == (0.0, 0.0, 1.0, 0.0)
    assert bin_shares([2.0], edges) == (0.0, 0.0, 1.0, 0.0)
    assert bin_shares([2.0000001], edges) == (0.0, 0.0, 0.0, 1.0)
    assert bin_shares([], edges) == (0.0, 0.0, 0.0, 0.0)


# ---- psi / js / ks -------------------------------------------------------------------------


def test_psi_matches_its_formula_and_floors_zero_shares() -> None:
    ref = [0.5, 0.5, 0.0]
    cur = [0.25, 0.5, 0.25]
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - PSI_FLOOR) * math.log(0.25 / PSI_FLOOR)
    assert psi(ref, cur) == pytest.approx(expected)
    assert psi(ref, ref) == 0.0
    assert math.isfinite(psi([1.0, 0.0], [0.0, 1.0]))
    with pytest.raises(ValueError, match="same bins"):
        psi([1.0], [0.5, 0.5])



@given(st.integers(1, 12).flatmap(lambda n: st.tuples(*[st.lists(st.floats(0, 1e3), min_size=n, max_size=n)] * 2)))
@settings(max_examples=200, deadline=None)
def test_js_distance_equals_scipy_base2(pq: tuple[list[float], list[float]]) -> None:
    p, q = pq
    if sum(p) <= 0 or sum(q) <= 0:
        assert math.isnan(js_distance(p, q))
        return
    ours = js_distance(p, q)
    theirs = float(jensenshannon(p, q, base=2))
    assert 0.0 <= ours <= 1.0 + 1e-12
    assert ours == pytest.approx(theirs, abs=1e-7)


def test_js_distance_range() -> None:
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([0.2, 0.8], [0.2, 0.8]) == 0.0


@pytest.mark.parametrize(("n", "m", "shift", "rounding"), [
    (50, 40, 0.0, None), (200, 300, 0.3, None), (2000, 5000, 0.05, None), (100, 100, 0.0, 0), (30, 3000, 1.0, 1),
])
def test_ks_equals_scipy(n: int, m: int, shift: float, rounding: int | None) -> None:
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=n)
    b = rng.normal(loc=shift, size=m)
    if rounding is not None:  # ties
        a, b = np.round(a, rounding), np.round(b, rounding)
    stat, p = ks(a, b)
    ref = ks_2samp(a, b)
    assert stat == pytest.approx(float(ref.statistic), abs=1e-12)
    assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-300)


def test_ks_ignores_nan_and_reports_nan_when_a_side_is_empty() -> None:
    a = np.array([1.0, 2.0, math.nan, 3.0])
    b = np.array([1.5, math.nan, 2.5])
    assert ks(a, b) == pytest.approx(tuple(ks_2samp([1.0, 2.0, 3.0], [1.5, 2.5])))
    stat, p = ks(a, [math.nan])
    assert math.isnan(stat) and math.isnan(p)


# ---- fitted references ---------------------------------------------------------------------


def test_reservoir_is_bounded_seeded_and_a_subset() -> None:
    values = np.arange(10_000, dtype=float)
    s1 = reservoir_sample(values, 2000, seed=3)
    assert len(s1) == 2000 and s1 == reservoir_sample(values, 2000, seed=3)
    assert s1 != reservoir_sample(values, 2000, seed=4)
    assert set(s1) <= set(values.tolist())
    assert reservoir_sample([1.0, math.nan, math.inf], 5) == (1.0,)


def test_numeric_reference_stats() -> None:
    values = np.array([1.0, 2.0, 3.0, math.nan, math.inf])
    ref = fit_numeric(values)
    assert ref.count == 5 and ref.null_share == pytest.approx(0.4)
    assert (ref.mean, ref.min, ref.max) == (2.0, 1.0, 3.0)
    assert ref.std == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert len(ref.shares) == len(ref.edges) + 1 and sum(ref.shares) == pytest.approx(1.0)
    empty = fit_numeric([math.nan])
    assert empty.mean is None and empty.edges == () and empty.null_share == 1.0


def test_categorical_reference_has_an_unseen_bucket() -> None:
    ref = fit_categorical(["a", "b", "a", None])
    assert ref.categories == ("a", "b") and ref.shares == pytest.approx((2 / 3, 1 / 3, 0.0))
    assert ref.null_share == 0.25
    shares, nulls = category_shares(["a", "c", "c", None], ref.categories)
    assert shares == pytest.approx((1 / 3, 0.0, 2 / 3)) and nulls == 0.25
    assert psi(ref.shares, shares) > 0.25  # a new category shows up as drift
    assert fit_categorical([True, False, True], ("false", "true")).shares == pytest.approx((1 / 3, 2 / 3, 0.0))


def test_fit_reference_round_trips_through_json() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pl.DataFrame({
        "g.x": rng.normal(size=n),
        "g.n": pl.Series(rng.integers(0, 5, size=n)).cast(pl.Int64),
        "g.s": rng.choice(["a", "b", "c"], size=n),
        "g.b": rng.random(n) < 0.3,
    }).with_columns(pl.when(pl.col("g.x") > 1.5).then(None).otherwise(pl.col("g.x")).alias("g.x"))
    enc = fit_encoding([("g.x", DType.FLOAT), ("g.n", DType.INT), ("g.s", DType.STRING), ("g.b", DType.BOOL)],
                       frame)
    x = encode(frame, enc)
    stats = fit_reference(frame, enc, x, rng.random(500), seed=11)
    assert list(stats.features) == ["g.x", "g.n", "g.s", "g.b"]
    gx, gn, gb = stats.features["g.x"], stats.features["g.n"], stats.features["g.b"]
    assert isinstance(gx, NumericReference) and isinstance(gn, NumericReference)
    assert isinstance(gb, CategoricalReference)
    assert gx.kind == "numeric" and len(gx.sample) == 2000 and gx.null_share == pytest.approx(0.0668, abs=0.01)
    assert gn.edges == (0.0, 1.0, 2.0, 3.0, 4.0)  # ties collapsed
    assert stats.features["g.s"].kind == "categorical"
    assert gb.categories == ("false", "true")
    assert stats.prediction is not None and stats.prediction.kind == "numeric"
    again = ReferenceStats.from_json(stats.to_json())
    assert again == stats
    assert again.to_json() == stats.to_json()
    # monitoring re-uses the stored bins: identical data has psi 0 against them
    assert psi(gx.shares, gx.current_shares(x[:, 0])) == pytest.approx(0.0, abs=1e-12)
    classes = fit_reference(frame, enc, x, ["a", "b", "a"])
    assert classes.prediction is not None and classes.prediction.kind == "categorical"
