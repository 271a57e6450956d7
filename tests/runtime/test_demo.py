"""The churn demo data must match the example spec, be reproducible, and carry what it promises.

Downstream tests (quarantine reconciliation, drift monitors, model gates) lean on these properties,
so they are pinned here against the files themselves rather than against the generator's internals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlspec.runtime.demo import (
    BAD_ROW_KINDS,
    CHURN_DATA_END,
    DRIFT_FROM,
    LABEL_HORIZON_DAYS,
    DemoSummary,
    simulate_churn_world,
    write_churn_demo,
)

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "churn.mlspec"
SPEC_TEXT = SPEC_PATH.read_text(encoding="utf-8")
CUSTOMERS = 1500
SEED = 3
FILES = ("customers_path", "orders_path", "labels_path")
POLARS_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.String(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "bool": pl.Boolean(),
}
DRIFT_START = DRIFT_FROM


@dataclass(frozen=True)
class Column:
    """One schema line of the spec, read independently of the mlspec parser."""

    name: str
    type: str
    not_null: bool
    unique: bool
    allowed: tuple[str, ...] | None
    range: tuple[float, float] | None


def spec_schemas(text: str) -> dict[str, list[Column]]:
    """Source name -> declared columns, from the spec's ``schema { ... }`` blocks."""
    out: dict[str, list[Column]] = {}
    for source, body in re.findall(r"source\s+(\w+)\s*\{.*?schema\s*\{(.*?)\}", text, flags=re.S):
        columns = []
        for raw in body.splitlines():
            line = raw.split("#")[0].strip()
            if not line:
                continue
            name, type_, *_ = line.split()
            allowed = re.search(r"\bin\s*\(([^)]*)\)", line)
            bounds = re.search(r"range\s*\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]", line)
            columns.append(
                Column(
                    name=name,
                    type=type_,
                    not_null="not null" in line,
                    unique=" unique" in line,
                    allowed=tuple(re.findall(r'"([^"]*)"', allowed.group(1))) if allowed else None,
                    range=(float(bounds.group(1)), float(bounds.group(2))) if bounds else None,
                )
            )
        out[source] = columns
    return out


SCHEMAS = spec_schemas(SPEC_TEXT)


def write(root: Path, **kwargs: object) -> DemoSummary:
    """Write a small demo with the test defaults, overridable per call."""
    args: dict[str, object] = {"customers": CUSTOMERS, "seed": SEED, "spec_text": SPEC_TEXT} | kwargs
    return write_churn_demo(root, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return write(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return write(tmp_path_factory.mktemp("dirty"), bad_rows=0.02)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return write(tmp_path_factory.mktemp("drifted"), drift=True)


def test_spec_schemas_are_read() -> None:
    assert set(SCHEMAS) == {"customers", "orders", "churn_labels"}
    assert [c.name for c in SCHEMAS["orders"]] == ["order_id", "customer_id", "ordered_at", "amount", "channel"]


def test_layout_and_spec_copy(clean: DemoSummary) -> None:
    root = clean.spec_path.parent
    assert clean.spec_path.read_text(encoding="utf-8") == SPEC_TEXT
    paths = dict(re.findall(r'source\s+(\w+)\s*\{\s*path\s*=\s*"([^"]+)"', SPEC_TEXT))
    assert clean.customers_path == root / paths["customers"]
    assert clean.orders_path == root / paths["orders"]
    assert clean.labels_path == root / paths["churn_labels"]


def test_same_seed_gives_byte_identical_files(clean: DemoSummary, tmp_path: Path) -> None:
    again = write(tmp_path / "again")
    for attr in FILES:
        assert getattr(again, attr).read_bytes() == getattr(clean, attr).read_bytes(), attr
    assert again.orders_rows == clean.orders_rows


def test_dirty_and_drifted_output_is_deterministic_too(tmp_path: Path) -> None:
    a = write(tmp_path / "a", customers=300, bad_rows=0.05, drift=True)
    b = write(tmp_path / "b", customers=300, bad_rows=0.05, drift=True)
    for attr in FILES:
        assert getattr(a, attr).read_bytes() == getattr(b, attr).read_bytes(), attr
    assert a.bad_rows == b.bad_rows


def test_other_seed_gives_other_files(clean: DemoSummary, tmp_path: Path) -> None:
    other = write(tmp_path / "other", seed=SEED + 1)
    for attr in FILES:
        assert getattr(other, attr).read_bytes() != getattr(clean, attr).read_bytes(), attr


@pytest.mark.parametrize(
    ("source", "attr"), [("customers", "customers_path"), ("orders", "orders_path"), ("churn_labels", "labels_path")]
)
def test_schema_matches_spec_exactly(clean: DemoSummary, source: str, attr: str) -> None:
    schema = pl.read_parquet_schema(getattr(clean, attr))
    assert list(schema.items()) == [(c.name, POLARS_TYPES[c.type]) for c in SCHEMAS[source]]


@pytest.mark.parametrize(
    ("source", "attr"), [("customers", "customers_path"), ("orders", "orders_path"), ("churn_labels", "labels_path")]
)
def test_clean_data_satisfies_every_declaration(clean: DemoSummary, source: str, attr: str) -> None:
    frame = pl.read_parquet(getattr(clean, attr))
    for column in SCHEMAS[source]:
        values = frame[column.name]
        if column.not_null:
            assert values.null_count() == 0, column.name
        if column.unique:
            assert values.n_unique() == frame.height, column.name
        present = values.drop_nulls()
        if column.allowed is not None:
            assert set(present.unique().to_list()) <= set(column.allowed), column.name
        if column.range is not None:
            assert present.min() >= column.range[0] and present.max() <= column.range[1], column.name  # type: ignore[operator]
    if source != "customers":
        ids = pl.read_parquet(clean.customers_path)["customer_id"]
        assert frame["customer_id"].is_in(ids.implode()).all()  # references customers.customer_id
    if source == "orders":
        assert (frame["amount"] >= 0).all()  # check orders { amount >= 0 }


def test_row_counts_match_summary(clean: DemoSummary) -> None:
    assert pl.read_parquet(clean.customers_path).height == clean.customers_rows == CUSTOMERS
    assert pl.read_parquet(clean.orders_path).height == clean.orders_rows
    labels = pl.read_parquet(clean.labels_path)
    assert labels.height == clean.labels_rows
    assert labels["churned"].sum() == clean.labels_positive
    assert clean.bad_rows.total == 0


def test_realistic_shape(clean: DemoSummary) -> None:
    customers = pl.read_parquet(clean.customers_path)
    orders = pl.read_parquet(clean.orders_path)
    first_signup, last_signup = customers.select(
        pl.col("signup_date").min().alias("a"), pl.col("signup_date").max().alias("b")
    ).row(0)
    assert first_signup < date(2024, 1, 1) and last_signup > date(2026, 6, 1)
    assert set(customers["plan"].unique()) == {"basic", "pro", "enterprise"}
    fee = customers.group_by("plan").agg(pl.col("monthly_fee").median()).sort("monthly_fee")["plan"].to_list()
    assert fee == ["basic", "pro", "enterprise"]
    first_order, last_order = orders.select(
        pl.col("ordered_at").min().alias("a"), pl.col("ordered_at").max().alias("b")
    ).row(0)
    assert first_order >= datetime(2025, 5, 1) and last_order.date() == CHURN_DATA_END
    assert set(orders["channel"].unique()) == {"web", "app", "store"}
    assert orders["ordered_at"].is_sorted() and orders["order_id"].is_sorted()
    per_customer = orders.height / customers.height
    assert 30 < per_customer < 200


def test_bad_rows_are_exact_and_reconcile(clean: DemoSummary, dirty: DemoSummary) -> None:
    counts = dirty.bad_rows
    assert dirty.orders_rows == clean.orders_rows  # corruption replaces values, never adds or drops rows
    assert counts.total == math.floor(0.02 * dirty.orders_rows + 0.5)
    assert counts.violating == counts.total - counts.null_amount
    assert min(counts.as_dict().values()) > 0 and list(counts.as_dict()) == list(BAD_ROW_KINDS)

    orders = pl.read_parquet(dirty.orders_path)
    amount = pl.col("amount")
    bad_channel = pl.col("channel").is_not_null() & ~pl.col("channel").is_in(["web", "app", "store"])
    found = orders.select(
        negative_amount=(amount < 0).sum(),
        amount_above_range=(amount > 100_000).sum(),
        channel_outside_set=bad_channel.sum(),
        null_amount=amount.is_null().sum(),
        any_defect=((amount < 0) | (amount > 100_000) | bad_channel | amount.is_null()).sum(),
    ).row(0, named=True)
    assert {k: found[k] for k in BAD_ROW_KINDS} == counts.as_dict()
    assert found["any_defect"] == counts.total  # one defect per row: kinds never overlap
    passing = orders.filter((amount.is_null() | amount.is_between(0, 100_000)) & ~bad_channel)
    assert passing.height + counts.violating == dirty.orders_rows  # nulls pass the schema

    # Keys are untouched and every row that was not corrupted is identical to the clean data.
    clean_orders = pl.read_parquet(clean.orders_path)
    keys = ["order_id", "customer_id", "ordered_at"]
    assert orders.select(keys).equals(clean_orders.select(keys))
    assert orders["order_id"].n_unique() == orders.height
    changed = (orders["amount"].ne_missing(clean_orders["amount"])) | (orders["channel"] != clean_orders["channel"])
    assert changed.sum() == counts.total
    for attr in ("customers_path", "labels_path"):
        assert getattr(dirty, attr).read_bytes() == getattr(clean, attr).read_bytes()


def test_bad_rows_fraction_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad_rows"):
        write(tmp_path, bad_rows=1.5)
    with pytest.raises(ValueError, match="customers"):
        write(tmp_path, customers=0)


def test_label_prevalence_is_sane_every_month(clean: DemoSummary) -> None:
    monthly = pl.read_parquet(clean.labels_path).group_by("observed_at").agg(n=pl.len(), rate=pl.col("churned").mean())
    assert monthly.height == 15  # 2025-08-01 .. 2026-10-01
    assert monthly["n"].min() > 300  # type: ignore[operator]
    assert monthly["rate"].min() > 0.05 and monthly["rate"].max() < 0.30  # type: ignore[operator]


def test_labels_are_observable_and_about_the_future(clean: DemoSummary) -> None:
    labels = pl.read_parquet(clean.labels_path)
    customers = pl.read_parquet(clean.customers_path)
    orders = pl.read_parquet(clean.orders_path)
    horizon = timedelta(days=LABEL_HORIZON_DAYS)
    end = datetime.combine(CHURN_DATA_END, datetime.min.time()) + timedelta(days=1)
    assert labels.select((pl.col("observed_at") + horizon).max()).item() <= end  # the label window is in the data
    assert labels.select(pl.struct("customer_id", "observed_at").is_unique().all()).item()
    joined = labels.join(customers, on="customer_id")
    assert (joined["signup_date"].cast(pl.Datetime("us")) < joined["observed_at"]).all()
    # After a positive label the customer is gone: no later observation, no order after the window.
    # (Two positives are possible when a churn falls in the overlap of a 30-day window and a short month.)
    positive = (
        labels.filter("churned")
        .group_by("customer_id")
        .agg(n=pl.len(), last=pl.col("observed_at").max())
        .with_columns(gone_by=pl.col("last") + horizon)
    )
    assert positive["n"].max() <= 2  # type: ignore[operator]
    assert labels.join(positive, on="customer_id").filter(pl.col("observed_at") > pl.col("last")).height == 0
    assert orders.join(positive, on="customer_id").filter(pl.col("ordered_at") > pl.col("gone_by")).height == 0


def test_no_order_after_churn(clean: DemoSummary) -> None:
    world = simulate_churn_world(CUSTOMERS, SEED)
    truth = pl.DataFrame({"customer_id": world.customer_id, "churn_at": world.churn_datetimes()})
    orders = pl.read_parquet(clean.orders_path).join(truth, on="customer_id")
    churners = orders.filter(pl.col("churn_at").is_not_null())
    assert churners["customer_id"].n_unique() > 100
    assert (churners["ordered_at"] < churners["churn_at"]).all()
    # Churners fade out: fewer orders in their last 30 days than in a 30-day stretch three months earlier.
    history = churners.filter(pl.col("churn_at") >= datetime(2025, 9, 1))
    days_before = (pl.col("churn_at") - pl.col("ordered_at")).dt.total_seconds() / 86_400
    last_month = history.filter(days_before <= 30).height
    earlier = history.filter(days_before.is_between(90, 120, closed="right")).height
    assert last_month < 0.65 * earlier
    # Labels agree with the true churn instants.
    labels = pl.read_parquet(clean.labels_path).join(truth, on="customer_id")
    expected = labels["churn_at"].is_not_null() & (
        labels["churn_at"] <= labels["observed_at"] + timedelta(days=LABEL_HORIZON_DAYS)
    )
    assert (labels["churned"] == expected).all()


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two categorical share vectors."""
    ref, cur = np.clip(reference, 1e-4, None), np.clip(current, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _recent(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    orders = pl.read_parquet(path)
    return orders.filter(pl.col("ordered_at") < DRIFT_START), orders.filter(pl.col("ordered_at") >= DRIFT_START)


def _channel_shares(orders: pl.DataFrame) -> np.ndarray:
    counts = dict(orders["channel"].value_counts().iter_rows())
    return np.array([counts.get(c, 0) for c in ("web", "app", "store")]) / orders.height


def test_drift_changes_only_the_last_two_months(clean: DemoSummary, drifted: DemoSummary) -> None:
    assert datetime(2026, 9, 1) == DRIFT_START
    base_before, base_recent = _recent(clean.orders_path)
    drift_before, drift_recent = _recent(drifted.orders_path)
    assert drift_before.equals(base_before)
    for attr in ("customers_path", "labels_path"):
        assert getattr(drifted, attr).read_bytes() == getattr(clean, attr).read_bytes()

    assert drift_recent.height < 0.7 * base_recent.height  # fewer orders
    assert drift_recent["amount"].mean() > 1.3 * base_recent["amount"].mean()  # type: ignore[operator]
    assert _psi(_channel_shares(drift_before), _channel_shares(drift_recent)) > 0.25  # app-heavy mix
    assert _psi(_channel_shares(base_before), _channel_shares(base_recent)) < 0.05  # stable without drift
    # Per-customer activity in September (what orders_30d sees on 2026-10-01) shifts clearly too.
    bins = np.array([0, 1, 3, 6, 10, 15, 25])

    def activity(orders: pl.DataFrame) -> np.ndarray:
        counts = orders.filter(pl.col("ordered_at") < datetime(2026, 10, 1))["customer_id"].value_counts()["count"]
        return (
            np.bincount(np.searchsorted(bins, counts.to_numpy(), side="right"), minlength=len(bins) + 1) / counts.len()
        )

    assert _psi(activity(base_recent), activity(drift_recent)) > 0.1


@pytest.mark.slow
def test_planted_signal_is_learnable(tmp_path: Path) -> None:
    """A gradient-boosted model on point-in-time features reaches the spec's gate on the time split."""
    import duckdb
    import xgboost
    from sklearn.metrics import roc_auc_score

    demo = write(tmp_path, customers=5000, seed=0)
    query = f"""
    with l as (select * from '{demo.labels_path}'), o as (select * from '{demo.orders_path}'),
    a as (
      select l.customer_id, l.observed_at,
        count(o.order_id) filter (where o.ordered_at > l.observed_at - interval 30 day) as orders_30d,
        count(o.order_id) filter (where o.ordered_at > l.observed_at - interval 90 day) as orders_90d,
        coalesce(sum(o.amount) filter (where o.ordered_at > l.observed_at - interval 90 day), 0) as spend_90d,
        max(o.ordered_at) as last_order
      from l left join o on o.customer_id = l.customer_id and o.ordered_at < l.observed_at group by all)
    select l.observed_at >= TIMESTAMP '2026-04-01' as test, l.churned::int as y,
      orders_30d, orders_90d, spend_90d, date_diff('second', last_order, l.observed_at) / 86400.0 as days_since_order,
      date_diff('day', c.signup_date, l.observed_at::date) as tenure_days,
      case c.plan when 'basic' then 0 when 'pro' then 1 else 2 end as plan, coalesce(c.monthly_fee, 0) as fee
    from l join a using (customer_id, observed_at) join '{demo.customers_path}' c using (customer_id)
    """
    frame = pl.from_arrow(duckdb.connect().sql(query).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    features = [c for c in frame.columns if c not in ("test", "y")]
    train, test = frame.filter(~pl.col("test")), frame.filter(pl.col("test"))
    model = xgboost.XGBClassifier(max_depth=4, learning_rate=0.1, n_estimators=200, random_state=7)
    model.fit(train.select(features).to_numpy(), train["y"].to_numpy())
    auc = roc_auc_score(test["y"].to_numpy(), model.predict_proba(test.select(features).to_numpy())[:, 1])
    assert 0.72 <= auc <= 0.9
