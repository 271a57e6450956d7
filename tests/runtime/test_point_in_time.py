"""Point-in-time correctness of the training dataset (`dataset__churn_risk`).

A feature "as of T" may only see rows with timestamp <= T (and inside its window).  Proven three
ways on real runs: planting huge orders right after observation times changes nothing; an order
exactly at T does count; and every activity feature equals an independent polars recomputation
from the raw parquet file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.runtime.conftest import Demo, Ran, assert_frames_equal, copy_project, run_json, table

KEY, AS_OF = "customer_id", "__as_of"
FUTURE_OFFSETS = (dt.timedelta(microseconds=1), dt.timedelta(seconds=1), dt.timedelta(hours=1),
                  dt.timedelta(days=1), dt.timedelta(days=29))
HUGE = 99_999.0  # inside the schema's range [0, 100000], so the rows are loaded, not quarantined


def _dataset(project: Path) -> pl.DataFrame:
    return table(project, "dataset__churn_risk", order_by=f"{KEY}, {AS_OF}")


def _last_observation(demo: Demo) -> pl.DataFrame:
    labels = pl.read_parquet(demo.summary.labels_path)
    return labels.group_by(KEY).agg(pl.col("observed_at").max().alias("last")).sort(KEY)


def _plant(project: Path, when: pl.DataFrame, offsets: tuple[dt.timedelta, ...], amount: float) -> pl.DataFrame:
    """Append one order per (customer, time + offset) to the orders file; returns the planted rows."""
    path = project / "data" / "orders.parquet"
    orders = pl.read_parquet(path)
    rows = pl.concat([when.select(KEY, (pl.col("last") + off).alias("ordered_at")) for off in offsets])
    rows = rows.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("order_id") + int(orders["order_id"].max()) + 1,
                             pl.lit(amount).alias("amount"), pl.lit("app").alias("channel"))
    rows = rows.select(orders.columns).cast(orders.schema)  # type: ignore[arg-type]
    pl.concat([orders, rows]).write_parquet(path)
    return rows


def test_dataset_rows_are_the_label_events(ran: Ran) -> None:
    labels = pl.read_parquet(ran.demo.summary.labels_path).sort(KEY, "observed_at")
    data = _dataset(ran.dir)
    assert data.select(KEY, AS_OF).rename({AS_OF: "observed_at"}).equals(labels.select(KEY, "observed_at"))
    assert data["__label"].to_list() == labels["churned"].to_list()


def test_future_orders_do_not_change_the_training_dataset(ran: Ran, tmp_path: Path) -> None:
    """Huge app orders 1 µs .. 29 days after each customer's last observation: not one feature moves."""
    project = copy_project(ran.demo.dir, tmp_path / "churn")
    planted = _plant(project, _last_observation(ran.demo), FUTURE_OFFSETS, HUGE)
    r = run_json(project, "--until", "dataset:churn_risk")
    assert r.rc == 0, r.data["error"]
    # the planted rows really were loaded and passed every check, so they could have leaked
    loaded = table(project, "chk__orders")
    assert set(planted["order_id"].to_list()) <= set(loaded["order_id"].to_list())
    assert r.node("source:orders")["detail"]["rows_in"] == ran.demo.summary.orders_rows + planted.height

    # Float sums are compared to 1e-9 relative: one HUGE order would move spend_90d by >= 99,999.
    assert_frames_equal(_dataset(project), _dataset(ran.dir), float_rel=1e-9)
    assert_frames_equal(table(project, "feat__activity", order_by=f"{KEY}, {AS_OF}"),
                        table(ran.dir, "feat__activity", order_by=f"{KEY}, {AS_OF}"), float_rel=1e-9)


def test_an_order_exactly_at_the_observation_time_counts(ran: Ran, tmp_path: Path) -> None:
    """The window is T - d < ts <= T: the same planting at offset 0 must show up (the test above is not vacuous)."""
    project = copy_project(ran.demo.dir, tmp_path / "churn")
    last = _last_observation(ran.demo).head(10)
    _plant(project, last, (dt.timedelta(0),), HUGE)
    assert run_json(project, "--until", "dataset:churn_risk").rc == 0
    before, after = _dataset(ran.dir), _dataset(project)
    hit = pl.col(KEY).is_in(last[KEY].to_list()) & (pl.col(AS_OF) == pl.col(KEY).replace_strict(
        last[KEY], last["last"], default=None))
    changed, same = after.filter(hit), after.filter(~hit)
    assert changed.height == 10
    assert changed["activity.max_order_90d"].to_list() == [HUGE] * 10
    assert changed["activity.days_since_order"].to_list() == [0] * 10
    was = before.filter(hit)
    assert (changed["activity.orders_30d"] - was["activity.orders_30d"]).to_list() == [1] * 10
    assert np.allclose(changed["activity.spend_90d"].to_numpy() - was["activity.spend_90d"].to_numpy(), HUGE)
    assert_frames_equal(same, before.filter(~hit), float_rel=1e-9)


def _oracle(demo: Demo, spine: pl.DataFrame) -> pl.DataFrame:
    """The churn spec's activity features recomputed from the parquet file with plain polars."""
    orders = pl.read_parquet(demo.summary.orders_path)
    joined = spine.join(orders, on=KEY, how="inner").filter(pl.col("ordered_at") <= pl.col(AS_OF))
    w30 = pl.col("ordered_at") > pl.col(AS_OF) - pl.duration(days=30)
    w90 = pl.col("ordered_at") > pl.col(AS_OF) - pl.duration(days=90)
    agg = joined.group_by(KEY, AS_OF).agg(
        w30.sum().cast(pl.Int64).alias("orders_30d"),
        w90.sum().cast(pl.Int64).alias("orders_90d"),
        pl.col("amount").filter(w90).sum().alias("spend_90d"),
        pl.col("amount").filter(w90).max().alias("max_order_90d"),
        (w90 & (pl.col("channel") == "app")).sum().cast(pl.Int64).alias("app_90d"),
        pl.col("ordered_at").max().alias("last_order"),
    )
    out = spine.join(agg, on=[KEY, AS_OF], how="left").with_columns(
        pl.col("orders_30d", "orders_90d", "app_90d").fill_null(0), pl.col("spend_90d").fill_null(0.0))
    return out.with_columns(
        pl.when(pl.col("orders_90d") > 0).then(pl.col("spend_90d") / pl.col("orders_90d")).alias("avg_basket_90d"),
        pl.when(pl.col("orders_90d") > 0).then(pl.col("app_90d") / pl.col("orders_90d")).alias("app_share_90d"),
        ((pl.col(AS_OF) - pl.col("last_order")).dt.total_microseconds() // 86_400_000_000).alias("days_since_order"),
    ).sort(KEY, AS_OF)


def test_activity_features_equal_an_independent_recomputation(ran: Ran) -> None:
    data = _dataset(ran.dir)
    expect = _oracle(ran.demo, data.select(KEY, AS_OF))
    assert expect.height == data.height
    for name in ("orders_30d", "orders_90d", "days_since_order"):
        assert data[f"activity.{name}"].to_list() == expect[name].to_list(), name
    for name in ("spend_90d", "avg_basket_90d", "max_order_90d", "app_share_90d"):
        got, want = data[f"activity.{name}"], expect[name]
        assert got.is_null().to_list() == want.is_null().to_list(), name
        assert np.allclose(got.drop_nulls().to_numpy(), want.drop_nulls().to_numpy(), rtol=1e-12, atol=1e-9), name
    assert (data["activity.orders_30d"] > 0).any() and data["activity.days_since_order"].null_count() < data.height


def test_profile_features_are_as_of_the_label_time(ran: Ran) -> None:
    data = _dataset(ran.dir)
    customers = pl.read_parquet(ran.demo.summary.customers_path)
    expect = data.select(KEY, AS_OF).join(customers, on=KEY, how="left").sort(KEY, AS_OF)
    tenure = ((expect[AS_OF] - expect["signup_date"].cast(pl.Datetime("us"))).dt.total_microseconds()
              // 86_400_000_000)
    assert data["profile.tenure_days"].to_list() == tenure.to_list()
    assert (data["profile.tenure_days"] > 0).all()  # a label is only observed after signup
    assert data["profile.plan"].to_list() == expect["plan"].to_list()
    assert data["profile.monthly_fee"].to_list() == expect["monthly_fee"].fill_null(0.0).to_list()
    assert data["profile.is_premium"].to_list() == expect["plan"].is_in(["pro", "enterprise"]).to_list()


@pytest.mark.parametrize("offset", [dt.timedelta(microseconds=1), dt.timedelta(days=1)])
def test_scoring_as_of_t_ignores_orders_after_t(ran: Ran, tmp_path: Path, offset: dt.timedelta) -> None:
    """The batch-serve path too: scores as of T are the same whether or not orders after T exist."""
    from tests.runtime.conftest import SCORES, cli, copy_state

    project = copy_state(ran.dir, tmp_path / "churn")
    as_of = dt.datetime(2026, 10, 15)
    assert cli("score", "--as-of", as_of.isoformat(), project).rc == 0
    before = pl.read_parquet(project / SCORES).select(KEY, "score")
    when = pl.DataFrame({KEY: list(range(1, 301)), "last": [as_of] * 300})
    _plant(project, when, (offset,), HUGE)
    r = cli("score", "--as-of", as_of.isoformat(), project)
    assert r.rc == 0, r.err
    after = pl.read_parquet(project / SCORES).select(KEY, "score")
    assert after.equals(before)
