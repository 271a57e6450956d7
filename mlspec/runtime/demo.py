"""Synthetic data behind ``mlspec demo churn DIR`` and ``mlspec demo sensors DIR`` (the latter at the end).

The churn example spec (``specs/churn.mlspec``) needs three parquet sources that match its schemas
exactly, carry a real (planted) churn signal, and can be made dirty or drifted on demand so that
quarantine, reconciliation and drift monitoring have something to find.  Everything here is a pure
function of its arguments: the same arguments give byte-identical files.

Generative story (one calendar month is one simulation step, 2025-05 .. 2026-10):

1. Customers sign up over the prior years (survivors of earlier churn, tenure-weighted to recent
   signups) and uniformly through the 18-month window; ids follow signup order.
2. Each customer has a plan (basic/pro/enterprise) with a plan-dependent fee, a region, a base
   order rate, a typical basket size and a personal channel mix (web/app/store).
3. Engagement wanders month to month (AR(1) in log-rate), so "recent activity" really changes.
4. Every month an alive customer churns with a logistic hazard: higher for low current engagement,
   short tenure, basic plan, a fee high for the plan and low app use.  The churn instant is uniform
   over the customer's exposure in that month.
5. Orders are Poisson in each month at the current rate, thinned by ``1 - exp(-(churn - t) / tau)``
   so churners fade out before they leave, and none are placed at or after the churn instant.
6. Labels: at each month start from 2025-08-01 (90 days of history) to 2026-10-01, every customer
   signed up before and not yet churned gets ``churned = churn instant within the next 30 days``.
   The label is only about the future after ``observed_at``, so point-in-time features cannot leak it.
7. ``drift`` changes the last two months (2026-09, 2026-10): fewer orders, bigger baskets, app-heavy.
8. ``bad_rows`` corrupts a fraction of order rows (never keys), one defect per row, counted by kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "CHURN_DATA_END",
    "DRIFT_FROM",
    "LABEL_HORIZON_DAYS",
    "SENSOR_BAD_ROW_KINDS",
    "SENSOR_TEST_FROM",
    "BadRowCounts",
    "ChurnWorld",
    "DemoSummary",
    "SensorBadRowCounts",
    "SensorsDemoSummary",
    "simulate_churn_world",
    "write_churn_demo",
    "write_sensors_demo",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_US_PER_SECOND: Final = 1_000_000
_US_PER_DAY: Final = 86_400 * _US_PER_SECOND
_NEVER: Final = np.iinfo(np.int64).max  # churn instant of a customer who has not churned

# Calendar: 18 monthly steps, the data ends with 2026-10-31.
_MONTH_STARTS: Final[IntArray] = (
    np.arange(np.datetime64("2025-05"), np.datetime64("2026-12"), dtype="datetime64[M]")
    .astype("datetime64[us]")
    .astype(np.int64)
)
_N_MONTHS: Final = len(_MONTH_STARTS) - 1
_WINDOW_START_DAY: Final = int(np.datetime64("2025-05-01", "D").astype(np.int64))
_WINDOW_DAYS: Final = int((_MONTH_STARTS[-1] - _MONTH_STARTS[0]) // _US_PER_DAY)
CHURN_DATA_END: Final = date(2026, 10, 31)
"""Last calendar day with orders."""
_FIRST_OBS_MONTH: Final = 3  # 2025-08-01: the first month start with >= 90 days of order history
LABEL_HORIZON_DAYS: Final = 30
"""``churned`` at ``observed_at`` means: churns in ``(observed_at, observed_at + 30 days]``."""
_DRIFT_MONTHS: Final = 2
DRIFT_FROM: Final[datetime] = _MONTH_STARTS[_N_MONTHS - _DRIFT_MONTHS].astype("datetime64[us]").item()
"""First instant touched by ``drift=True``."""

# Population.
_IN_WINDOW_SIGNUP_SHARE: Final = 0.55  # replaces churners so the alive base stays roughly level
_PRE_WINDOW_TENURE_MEAN_DAYS: Final = 420.0
_PRE_WINDOW_TENURE_CAP_DAYS: Final = 4 * 365.0
PLANS: Final = ("basic", "pro", "enterprise")
_PLAN_P: Final = (0.6, 0.3, 0.1)
_PLAN_FEES: Final = ((9.99, 14.99, 19.99), (49.0, 79.0, 99.0))  # basic, pro tiers; enterprise negotiated
_ENTERPRISE_FEE_MEDIAN: Final = 900.0
_ENTERPRISE_FEE_SIGMA: Final = 0.5
REGIONS: Final = ("NA", "EU", "APAC", "LATAM")
_REGION_P: Final = (0.4, 0.3, 0.2, 0.1)
_NULL_REGION_P: Final = 0.02  # natural, schema-allowed nulls (not "bad rows")
_NULL_FEE_P: Final = 0.01
CHANNELS: Final = ("web", "app", "store")
_BAD_CHANNELS: Final = ("phone", "partner", "WEB", "kiosk")
_CHANNEL_BASE: Final = ((0.45, 0.40, 0.15), (0.50, 0.30, 0.20), (0.30, 0.60, 0.10), (0.40, 0.40, 0.20))  # by region
_CHANNEL_CONCENTRATION: Final = 3.0

# Activity.
_PLAN_RATE: Final = np.array([0.28, 0.45, 0.8])  # orders per day
_RATE_SIGMA: Final = 0.55
_PLAN_BASKET: Final = np.array([35.0, 60.0, 140.0])
_BASKET_SIGMA: Final = 0.3
_ORDER_AMOUNT_SIGMA: Final = 0.5
_STORE_BASKET_FACTOR: Final = 1.3
_AR_RHO: Final = 0.75
_AR_SIGMA: Final = 0.4
_FADE_TAU_DAYS: Final = 20.0

# Monthly churn hazard (logit scale).
_HAZARD_INTERCEPT: Final = -2.9
_HAZARD_PLAN: Final = np.array([0.35, 0.0, -0.6])
_HAZARD_ACTIVITY: Final = -1.1  # per unit log(current rate / plan rate)
_HAZARD_FEE: Final = 0.35  # per unit within-plan fee position (about -1 .. 1)
_HAZARD_NEW: Final = 1.2  # extra logit at tenure 0, halving every 3 months
_HAZARD_NEW_HALF_MONTHS: Final = 3.0
_HAZARD_APP: Final = -1.0  # per unit app share above 0.4

# Drift in the last two months.
_DRIFT_KEEP: Final = 0.55
_DRIFT_AMOUNT: Final = 1.4
_DRIFT_TO_APP: Final = 0.6

# Bad rows.
BAD_ROW_KINDS: Final = ("negative_amount", "amount_above_range", "channel_outside_set", "null_amount")
_AMOUNT_MAX: Final = 100_000.0  # the schema's range upper bound

_CUSTOMERS_SCHEMA: Final = pa.schema(
    [
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("signup_date", pa.date32(), nullable=False),
        pa.field("plan", pa.string(), nullable=False),
        pa.field("monthly_fee", pa.float64()),
        pa.field("region", pa.string()),
    ]
)
_ORDERS_SCHEMA: Final = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("ordered_at", pa.timestamp("us"), nullable=False),
        pa.field("amount", pa.float64()),
        pa.field("channel", pa.string()),
    ]
)
_LABELS_SCHEMA: Final = pa.schema(
    [
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("observed_at", pa.timestamp("us"), nullable=False),
        pa.field("churned", pa.bool_(), nullable=False),
    ]
)
_PARQUET_OPTIONS: Final = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


@dataclass(frozen=True)
class _PlantedRows:
    """Rows corrupted on purpose, one count per kind (the fields, in order); the last kind is a null
    the spec allows, counted so null handling reconciles too, and breaks no declaration."""

    def as_dict(self) -> dict[str, int]:
        """Kind -> count, for reports and JSON."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @property
    def total(self) -> int:
        """All planted rows."""
        return sum(self.as_dict().values())

    @property
    def violating(self) -> int:
        """Rows that break a declaration of the spec (every kind but the allowed null)."""
        return self.total - list(self.as_dict().values())[-1]


@dataclass(frozen=True)
class BadRowCounts(_PlantedRows):
    """Order rows corrupted on purpose, by kind; each corrupted row has exactly one defect.

    ``negative_amount`` fails ``check orders { amount >= 0 }`` (and the schema range),
    ``amount_above_range`` fails the schema ``range [0, 100000]``, ``channel_outside_set`` fails the
    schema ``in (...)``; ``null_amount`` is allowed by the schema and is counted so null handling can
    be reconciled too.  Keys (``order_id``, ``customer_id``, ``ordered_at``) are never touched.
    In all, ``floor(bad_rows * orders_rows + 0.5)`` rows.
    """

    negative_amount: int = 0
    amount_above_range: int = 0
    channel_outside_set: int = 0
    null_amount: int = 0


@dataclass(frozen=True)
class DemoSummary:
    """What ``write_churn_demo`` wrote, so callers can reconcile row counts without re-reading."""

    spec_path: Path
    customers_path: Path
    orders_path: Path
    labels_path: Path
    customers_rows: int
    orders_rows: int
    labels_rows: int
    labels_positive: int
    bad_rows: BadRowCounts
    seed: int
    drift: bool


@dataclass(frozen=True)
class ChurnWorld:
    """The latent state behind the files: one entry (or row) per customer, in customer-id order.

    Exposed so tests and docs can check the story (e.g. no order after churn) against the truth.
    """

    customer_id: IntArray
    signup_day: IntArray  # days since 1970-01-01
    plan: npt.NDArray[np.int8]  # index into PLANS
    monthly_fee: FloatArray  # NaN where the file holds null
    region: npt.NDArray[np.int8]  # index into REGIONS, -1 where the file holds null
    churn_at: IntArray  # microseconds since epoch (naive UTC); _NEVER if still a customer at the end
    rate: FloatArray  # (customers, months) orders per day before fading
    basket: FloatArray  # typical order amount
    channel_p: FloatArray  # (customers, 3) probabilities for CHANNELS

    @property
    def churned(self) -> BoolArray:
        """Customers that churned before the data ends."""
        return np.asarray(self.churn_at != _NEVER, dtype=np.bool_)

    def churn_datetimes(self) -> npt.NDArray[np.datetime64]:
        """Churn instants as ``datetime64[us]``, NaT for customers that never churn."""
        out = self.churn_at.astype("datetime64[us]")
        out[~self.churned] = np.datetime64("NaT")
        return out


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators, so drift and bad rows never perturb the base world or its orders."""
    world, orders, drift, bad = np.random.SeedSequence(seed).spawn(4)
    make = np.random.Generator
    return (
        make(np.random.PCG64(world)),
        make(np.random.PCG64(orders)),
        make(np.random.PCG64(drift)),
        make(np.random.PCG64(bad)),
    )


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_churn_world(customers: int, seed: int) -> ChurnWorld:
    """Draw customers, their monthly engagement and churn instants (steps 1-4 of the story)."""
    rng = _streams(seed)[0]
    n = customers

    # Signups: survivors of earlier years (truncated exponential tenure) plus uniform in-window signups.
    in_window = rng.random(n) < _IN_WINDOW_SIGNUP_SHARE
    u = rng.random(n)
    cap = 1.0 - math.exp(-_PRE_WINDOW_TENURE_CAP_DAYS / _PRE_WINDOW_TENURE_MEAN_DAYS)
    tenure = np.floor(-_PRE_WINDOW_TENURE_MEAN_DAYS * np.log1p(-u * cap)).astype(np.int64)
    in_window_day = rng.integers(0, _WINDOW_DAYS, n)
    signup_day = np.sort(np.where(in_window, _WINDOW_START_DAY + in_window_day, _WINDOW_START_DAY - 1 - tenure))
    signup_us = signup_day * _US_PER_DAY

    plan = rng.choice(3, size=n, p=_PLAN_P).astype(np.int8)
    tier = rng.integers(0, 3, n)
    enterprise_z = rng.standard_normal(n)
    fee = np.where(
        plan == 0,
        np.asarray(_PLAN_FEES[0])[tier],
        np.where(
            plan == 1,
            np.asarray(_PLAN_FEES[1])[tier],
            np.clip(
                np.round(_ENTERPRISE_FEE_MEDIAN * np.exp(_ENTERPRISE_FEE_SIGMA * enterprise_z), 2), 200.0, 10_000.0
            ),
        ),
    )
    fee_position = np.where(plan == 2, np.clip(enterprise_z, -2.0, 2.0) / 1.5, tier - 1.0)
    region = rng.choice(len(REGIONS), size=n, p=_REGION_P).astype(np.int8)

    plan_rate = _PLAN_RATE[plan]
    base_rate = plan_rate * np.exp(_RATE_SIGMA * rng.standard_normal(n) - _RATE_SIGMA**2 / 2)
    basket = _PLAN_BASKET[plan] * np.exp(_BASKET_SIGMA * rng.standard_normal(n))
    alpha = _CHANNEL_CONCENTRATION * np.asarray(_CHANNEL_BASE)[region]
    gammas = rng.standard_gamma(alpha)
    channel_p = gammas / gammas.sum(axis=1, keepdims=True)
    app_share = channel_p[:, 1]

    stat_sd = _AR_SIGMA / math.sqrt(1.0 - _AR_RHO**2)
    z = stat_sd * rng.standard_normal(n)
    rate = np.empty((n, _N_MONTHS))
    churn_at = np.full(n, _NEVER, dtype=np.int64)
    for m in range(_N_MONTHS):
        if m:
            z = _AR_RHO * z + _AR_SIGMA * rng.standard_normal(n)
        rate[:, m] = base_rate * np.exp(z - stat_sd**2 / 2)
        start = np.maximum(_MONTH_STARTS[m], signup_us)
        end = _MONTH_STARTS[m + 1]
        month_us = end - _MONTH_STARTS[m]
        tenure_months = (start - signup_us) / (30.44 * _US_PER_DAY)
        logit = (
            _HAZARD_INTERCEPT
            + _HAZARD_PLAN[plan]
            + _HAZARD_ACTIVITY * np.log(rate[:, m] / plan_rate)
            + _HAZARD_FEE * fee_position
            + _HAZARD_NEW * np.exp2(-tenure_months / _HAZARD_NEW_HALF_MONTHS)
            + _HAZARD_APP * (app_share - 0.4)
        )
        exposure = np.clip(end - start, 0, None)
        p = _sigmoid(logit) * exposure / month_us
        churns = (churn_at == _NEVER) & (exposure > _US_PER_SECOND) & (rng.random(n) < p)
        seconds = exposure // _US_PER_SECOND
        offset = 1 + np.floor(rng.random(n) * (seconds - 1)).astype(np.int64)
        churn_at = np.where(churns, start + offset * _US_PER_SECOND, churn_at)

    fee_out = fee.copy()
    fee_out[rng.random(n) < _NULL_FEE_P] = np.nan
    region_out = np.where(rng.random(n) < _NULL_REGION_P, -1, region).astype(np.int8)
    return ChurnWorld(
        customer_id=np.arange(1, n + 1, dtype=np.int64),
        signup_day=signup_day,
        plan=plan,
        monthly_fee=fee_out,
        region=region_out,
        churn_at=churn_at,
        rate=rate,
        basket=basket,
        channel_p=channel_p,
    )


def _strings(codes: npt.NDArray[np.integer], names: tuple[str, ...]) -> pa.Array:
    """Codes -> plain (non-dictionary) strings; negative codes become null."""
    return pa.array(names, pa.string()).take(pa.array(codes, pa.int32(), mask=codes < 0))


def _month_orders(
    world: ChurnWorld, m: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray, FloatArray, npt.NDArray[np.int8]]:
    """One month of clean orders (step 5): customer index, time, amount, channel code; time-sorted."""
    signup_us = world.signup_day * _US_PER_DAY
    start = np.maximum(_MONTH_STARTS[m], signup_us)
    end = np.minimum(_MONTH_STARTS[m + 1], world.churn_at)
    seconds = np.clip(end - start, 0, None) // _US_PER_SECOND
    counts = rng.poisson(world.rate[:, m] * seconds / 86_400.0)
    idx = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    at = start[idx] + np.floor(rng.random(len(idx)) * seconds[idx]).astype(np.int64) * _US_PER_SECOND
    # Fade out before churn: keep with probability 1 - exp(-(churn - t) / tau).
    days_left = (world.churn_at[idx] - at) / _US_PER_DAY
    keep = rng.random(len(idx)) >= np.exp(-days_left / _FADE_TAU_DAYS)
    channel_u = rng.random(len(idx))
    amount_z = rng.standard_normal(len(idx))
    idx, at, channel_u, amount_z = idx[keep], at[keep], channel_u[keep], amount_z[keep]
    cp = world.channel_p[idx]
    channel = (channel_u >= cp[:, 0]).astype(np.int8) + (channel_u >= cp[:, 0] + cp[:, 1]).astype(np.int8)
    amount = world.basket[idx] * np.exp(_ORDER_AMOUNT_SIGMA * amount_z - _ORDER_AMOUNT_SIGMA**2 / 2)
    amount = np.where(channel == 2, amount * _STORE_BASKET_FACTOR, amount)
    amount = np.maximum(np.round(amount, 2), 1.0)
    order = np.lexsort((idx, at))
    return idx[order], at[order], amount[order], channel[order]


def _apply_drift(
    idx: IntArray, at: IntArray, amount: FloatArray, channel: npt.NDArray[np.int8], rng: np.random.Generator
) -> tuple[IntArray, IntArray, FloatArray, npt.NDArray[np.int8]]:
    """Fewer orders, bigger baskets, channel mix pushed to the app (step 7)."""
    keep = rng.random(len(idx)) < _DRIFT_KEEP
    to_app = rng.random(len(idx)) < _DRIFT_TO_APP
    channel = np.where(to_app, np.int8(1), channel).astype(np.int8)
    amount = np.round(amount * _DRIFT_AMOUNT, 2)
    return idx[keep], at[keep], amount[keep], channel[keep]


def _plant_bad_rows(
    amount: FloatArray, channel: npt.NDArray[np.int8], n_bad: int, rng: np.random.Generator
) -> tuple[FloatArray, npt.NDArray[np.int8], BoolArray, npt.NDArray[np.int64]]:
    """Corrupt ``n_bad`` distinct rows, one defect each (step 8); returns counts per kind too."""
    amount, channel = amount.copy(), channel.copy()
    null_amount = np.zeros(len(amount), dtype=np.bool_)
    rows = rng.choice(len(amount), size=n_bad, replace=False)
    kinds = rng.integers(0, len(BAD_ROW_KINDS), n_bad)
    magnitude = rng.random(n_bad)
    neg, high, chan, null = (rows[kinds == k] for k in range(len(BAD_ROW_KINDS)))
    amount[neg] = -np.round(1.0 + 499.0 * magnitude[kinds == 0], 2)
    amount[high] = np.round(_AMOUNT_MAX * (1.5 + 18.5 * magnitude[kinds == 1]), 2)
    channel[chan] = (len(CHANNELS) + np.floor(magnitude[kinds == 2] * len(_BAD_CHANNELS))).astype(np.int8)
    null_amount[null] = True
    return amount, channel, null_amount, np.bincount(kinds, minlength=len(BAD_ROW_KINDS)).astype(np.int64)


def _customers_table(world: ChurnWorld) -> pa.Table:
    frame = pl.DataFrame(
        {
            "customer_id": pl.Series(world.customer_id, dtype=pl.Int64),
            "signup_date": pl.Series(world.signup_day.astype(np.int32)).cast(pl.Date),
            "plan": pl.Series(np.asarray(PLANS)[world.plan], dtype=pl.String),
            "monthly_fee": pl.Series(world.monthly_fee, dtype=pl.Float64, nan_to_null=True),
        }
    )
    table = frame.to_arrow().cast(_CUSTOMERS_SCHEMA.remove(4))
    return table.append_column(_CUSTOMERS_SCHEMA.field("region"), _strings(world.region, REGIONS))


def _labels_table(world: ChurnWorld) -> tuple[pa.Table, int]:
    """Monthly observations (step 6); also returns the number of positive labels."""
    signup_us = world.signup_day * _US_PER_DAY
    horizon = LABEL_HORIZON_DAYS * _US_PER_DAY
    frames: list[pl.DataFrame] = []
    for m in range(_FIRST_OBS_MONTH, _N_MONTHS):
        observed_at = int(_MONTH_STARTS[m])
        at_risk = (signup_us < observed_at) & (world.churn_at > observed_at)
        frames.append(
            pl.DataFrame(
                {
                    "customer_id": world.customer_id[at_risk],
                    "observed_at": np.full(int(at_risk.sum()), observed_at, dtype=np.int64),
                    "churned": world.churn_at[at_risk] <= observed_at + horizon,
                }
            )
        )
    labels = pl.concat(frames).with_columns(pl.col("observed_at").cast(pl.Datetime("us")))
    return labels.to_arrow().cast(_LABELS_SCHEMA), int(labels["churned"].sum())


def write_churn_demo(
    out_dir: Path,
    *,
    customers: int = 5000,
    seed: int = 0,
    bad_rows: float = 0.0,
    drift: bool = False,
    spec_text: str,
) -> DemoSummary:
    """Write the churn demo project (spec + three parquet sources) under ``out_dir``.

    ``bad_rows`` is the fraction of order rows to corrupt: exactly ``floor(bad_rows * orders_rows + 0.5)``
    rows, spread over the months (cumulative rounding), each with one defect of a random kind.
    ``drift`` alters the last two months of orders only; earlier orders, customers and labels are
    identical to the undrifted data of the same seed.  Orders are written month by month, so memory
    stays at one month of orders.
    """
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= bad_rows <= 1.0:
        raise ValueError(f"bad_rows must be a fraction in [0, 1], got {bad_rows}")

    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / "churn.mlspec"
    customers_path = data_dir / "customers.parquet"
    orders_path = data_dir / "orders.parquet"
    labels_path = data_dir / "churn_labels.parquet"

    world = simulate_churn_world(customers, seed)
    _, orders_rng, drift_rng, bad_rng = _streams(seed)

    pq.write_table(_customers_table(world), customers_path, **_PARQUET_OPTIONS)
    labels, labels_positive = _labels_table(world)
    pq.write_table(labels, labels_path, **_PARQUET_OPTIONS)

    channel_names = CHANNELS + _BAD_CHANNELS
    rows_written = 0
    planted = np.zeros(len(BAD_ROW_KINDS), dtype=np.int64)
    with pq.ParquetWriter(orders_path, _ORDERS_SCHEMA, **_PARQUET_OPTIONS) as writer:
        for m in range(_N_MONTHS):
            idx, at, amount, channel = _month_orders(world, m, orders_rng)
            if drift and m >= _N_MONTHS - _DRIFT_MONTHS:
                idx, at, amount, channel = _apply_drift(idx, at, amount, channel, drift_rng)
            n = len(idx)
            n_bad = math.floor(bad_rows * (rows_written + n) + 0.5) - int(planted.sum())
            amount, channel, null_amount, kinds = _plant_bad_rows(amount, channel, n_bad, bad_rng)
            planted += kinds
            month = pa.table(
                {
                    "order_id": pa.array(np.arange(rows_written + 1, rows_written + n + 1, dtype=np.int64)),
                    "customer_id": pa.array(world.customer_id[idx]),
                    "ordered_at": pa.array(at.astype("datetime64[us]")),
                    "amount": pa.array(amount, pa.float64(), mask=null_amount),
                    "channel": _strings(channel, channel_names),
                }
            )
            writer.write_table(month.cast(_ORDERS_SCHEMA))
            rows_written += n

    spec_path.write_text(spec_text, encoding="utf-8")
    return DemoSummary(
        spec_path=spec_path,
        customers_path=customers_path,
        orders_path=orders_path,
        labels_path=labels_path,
        customers_rows=customers,
        orders_rows=rows_written,
        labels_rows=labels.num_rows,
        labels_positive=labels_positive,
        bad_rows=BadRowCounts(**{kind: int(c) for kind, c in zip(BAD_ROW_KINDS, planted, strict=True)}),
        seed=seed,
        drift=drift,
    )


# ---------------------------------------------------------------------------------------------------
# Sensors: ``mlspec demo sensors DIR`` (specs/sensors.mlspec).
#
# Generative story (a pure function of devices, seed and ``end``):
#
# 1. Devices (pumps and compressors on a few sites) are installed a few months to years before the
#    data starts; each has its own baseline temperature, vibration, pressure and rpm by model.
# 2. Each device is inspected ``_SENSOR_INSPECTIONS`` times: half in the 90 days before the spec's
#    ``test_from`` (2026-03-01), half from then until a day before ``end``.  Readings exist in the
#    day before each inspection (every ``_SENSOR_CADENCE_S`` seconds, with jitter) and in the last
#    day before ``end`` for every device, so the data is fresh "now" and a streaming consumer has
#    history for every device.
# 3. About ``_SENSOR_FAIL_P`` of inspections precede a failure within a day.  Before most of those,
#    the device degrades from a random onset 2-14 hours before the inspection: temperature climbs,
#    vibration grows, pressure sags, warnings and faults become frequent; some fail suddenly, with
#    no precursor.  A quarter of the healthy episodes have a harmless transient (a spike of up to
#    1.5 hours without a trend), so the signal is strong, not perfect.
# 4. ``bad_rows`` corrupts a fraction of reading rows (never keys), one defect per row.

SENSOR_MODELS: Final = ("pump-a", "pump-b", "compressor")
SENSOR_SITES: Final = ("plant-north", "plant-south", "plant-east", "plant-west")
SENSOR_STATUSES: Final = ("ok", "warn", "fault")
_BAD_STATUSES: Final = ("FAULT", "unknown", "err")
SENSOR_TEST_FROM: Final = datetime(2026, 3, 1)
"""The spec's ``split = by_time(test_from = "2026-03-01")``."""
_SENSOR_TRAIN_DAYS: Final = 90
_SENSOR_INSPECTIONS: Final = 8  # per device, half before SENSOR_TEST_FROM
_SENSOR_CADENCE_S: Final = 180
_SENSOR_EPISODE_S: Final = 86_400
_SENSOR_FAIL_P: Final = 0.2
_SENSOR_TRANSIENT_P: Final = 0.25
_SENSOR_SUDDEN_P: Final = 0.15
_SENSOR_NULL_TEMP_P: Final = 0.01
_MODEL_TEMP: Final = np.array([55.0, 62.0, 75.0])
_MODEL_VIB: Final = np.array([3.0, 4.0, 6.0])
_MODEL_PRESSURE: Final = np.array([8.0, 10.0, 25.0])
_MODEL_RPM: Final = np.array([1800.0, 3000.0, 6000.0])
SENSOR_BAD_ROW_KINDS: Final = ("temperature_above_range", "negative_vibration", "status_outside_set",
                               "null_temperature")

_READINGS_SCHEMA: Final = pa.schema(
    [
        pa.field("reading_id", pa.int64(), nullable=False),
        pa.field("device_id", pa.int64(), nullable=False),
        pa.field("read_at", pa.timestamp("us"), nullable=False),
        pa.field("temperature", pa.float64()),
        pa.field("vibration", pa.float64()),
        pa.field("pressure", pa.float64()),
        pa.field("rpm", pa.int64()),
        pa.field("status", pa.string()),
    ]
)
_DEVICES_SCHEMA: Final = pa.schema(
    [
        pa.field("device_id", pa.int64(), nullable=False),
        pa.field("installed_at", pa.timestamp("us"), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=False),
    ]
)
_INSPECTIONS_SCHEMA: Final = pa.schema(
    [
        pa.field("device_id", pa.int64(), nullable=False),
        pa.field("inspected_at", pa.timestamp("us"), nullable=False),
        pa.field("failed_24h", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True)
class SensorBadRowCounts(_PlantedRows):
    """Reading rows corrupted on purpose, by kind; each corrupted row has exactly one defect.

    ``temperature_above_range`` breaks the schema ``range [-60, 200]``, ``negative_vibration`` breaks
    ``range [0, 100]`` and ``check readings { vibration >= 0 }``, ``status_outside_set`` breaks the
    schema ``in (...)``; ``null_temperature`` is allowed and counted so null handling reconciles too.
    """

    temperature_above_range: int = 0
    negative_vibration: int = 0
    status_outside_set: int = 0
    null_temperature: int = 0


@dataclass(frozen=True)
class SensorsDemoSummary:
    """What ``write_sensors_demo`` wrote."""

    spec_path: Path
    readings_path: Path
    devices_path: Path
    inspections_path: Path
    devices_rows: int
    readings_rows: int
    inspections_rows: int
    inspections_failed: int
    bad_rows: SensorBadRowCounts
    seed: int
    end: datetime


def _sensor_inspection_times(devices: int, end_us: int, rng: np.random.Generator) -> IntArray:
    """(devices, inspections) instants, sorted per device, at least two days apart."""
    test_from = int(np.datetime64(SENSOR_TEST_FROM, "us").astype(np.int64))
    half = _SENSOR_INSPECTIONS // 2
    spans = ((test_from - _SENSOR_TRAIN_DAYS * _US_PER_DAY, test_from - _US_PER_DAY),
             (test_from + _US_PER_DAY, end_us - 2 * _US_PER_DAY))
    out = np.empty((devices, 2 * half), dtype=np.int64)
    for part, (lo, hi) in enumerate(spans):
        days = (hi - lo) // _US_PER_DAY
        if days < 2 * half:
            raise ValueError(f"end must be at least {2 * half + 3} days after {SENSOR_TEST_FROM:%Y-%m-%d}")
        for d in range(devices):  # distinct days, every other day at most: no two episodes overlap
            picked = np.sort(rng.choice(days // 2, size=half, replace=False)) * 2
            seconds = rng.integers(3_600, 86_400 - 3_600, half)
            out[d, part * half:(part + 1) * half] = lo + picked * _US_PER_DAY + seconds * _US_PER_SECOND
    return out


def _episode_readings(
    device: IntArray, until: IntArray, failing: BoolArray, transient: BoolArray,
    base: FloatArray, rng: np.random.Generator,
) -> dict[str, npt.NDArray[Any]]:
    """The day of readings before each episode's ``until`` (exclusive), degrading where ``failing``."""
    steps = _SENSOR_EPISODE_S // _SENSOR_CADENCE_S
    n_ep = len(until)
    k = np.arange(steps, dtype=np.int64)
    # Seconds before `until`; jitter keeps readings of one device apart and never at `until` itself.
    before = (steps - k)[None, :] * _SENSOR_CADENCE_S - rng.integers(1, _SENSOR_CADENCE_S // 3, (n_ep, steps))
    at = until[:, None] - before * _US_PER_SECOND
    hours_before = before / 3600.0
    onset = rng.uniform(2.0, 14.0, n_ep)[:, None]
    sudden = rng.random(n_ep) < _SENSOR_SUDDEN_P  # failures without a precursor: the model cannot see them
    severity = np.where(failing & ~sudden, rng.uniform(0.25, 1.2, n_ep), 0.0)[:, None]
    ramp = severity * np.clip((onset - hours_before) / onset, 0.0, 1.0)  # 0 before onset -> severity at until
    t_start = rng.uniform(0.2, 12.0, n_ep)[:, None]
    spike = np.where(transient[:, None] & (hours_before <= t_start) & (hours_before > t_start - 1.5),
                     rng.uniform(0.4, 1.0, n_ep)[:, None], 0.0)
    temp_base, vib_base, pressure_base, rpm_base = (base[:, i][:, None] for i in range(4))
    shape = (n_ep, steps)
    temperature = temp_base + 12.0 * ramp + 12.0 * spike + rng.normal(0.0, 2.5, shape)
    vibration = vib_base * (1.0 + 2.0 * ramp + 1.2 * spike) * np.exp(rng.normal(0.0, 0.12, shape))
    pressure = pressure_base * (1.0 - 0.25 * ramp) + rng.normal(0.0, 0.3, shape)
    rpm = rpm_base * (1.0 - 0.08 * ramp) + rng.normal(0.0, 25.0, shape)
    risk = 0.03 + 0.3 * ramp + 0.4 * spike
    u = rng.random(shape)
    status = (u < risk).astype(np.int8) + (u < 0.25 * risk).astype(np.int8)
    return {
        "device": np.repeat(device, steps),
        "at": at.ravel(),
        "temperature": np.clip(np.round(temperature, 2), -60.0, 200.0).ravel(),
        "vibration": np.clip(np.round(vibration, 3), 0.0, 100.0).ravel(),
        "pressure": np.clip(np.round(pressure, 2), 0.0, 50.0).ravel(),
        "rpm": np.clip(np.round(rpm), 0, 20_000).astype(np.int64).ravel(),
        "status": status.ravel(),
    }


def _plant_sensor_bad_rows(
    cols: dict[str, npt.NDArray[Any]], null_temp: BoolArray, n_bad: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Corrupt ``n_bad`` distinct rows with a temperature in place, one defect each; counts per kind."""
    candidates = np.flatnonzero(~null_temp)  # a planted null must be a change
    if n_bad > len(candidates):
        raise ValueError(f"bad_rows: {n_bad} rows to corrupt, only {len(candidates)} readings have a temperature")
    rows = rng.choice(candidates, size=n_bad, replace=False)
    kinds = rng.integers(0, len(SENSOR_BAD_ROW_KINDS), n_bad)
    magnitude = rng.random(n_bad)
    high, neg, stat, null = (rows[kinds == k] for k in range(len(SENSOR_BAD_ROW_KINDS)))
    cols["temperature"][high] = np.round(250.0 + 750.0 * magnitude[kinds == 0], 2)
    cols["vibration"][neg] = -np.round(0.1 + 9.9 * magnitude[kinds == 1], 3)
    cols["status"][stat] = (len(SENSOR_STATUSES) + np.floor(magnitude[kinds == 2] * len(_BAD_STATUSES))).astype(np.int8)
    null_temp[null] = True
    return np.bincount(kinds, minlength=len(SENSOR_BAD_ROW_KINDS)).astype(np.int64)


def write_sensors_demo(
    out_dir: Path,
    *,
    devices: int = 100,
    seed: int = 0,
    bad_rows: float = 0.0,
    end: datetime | None = None,
    spec_text: str,
) -> SensorsDemoSummary:
    """Write the sensors demo project (spec + readings, devices, inspections) under ``out_dir``.

    ``end`` (naive UTC, default: now, to the second) is when the last day of readings ends, so that
    ``check readings { freshness() < 15m }`` holds on a fresh demo; the same ``devices``, ``seed``,
    ``bad_rows`` and ``end`` give byte-identical files.  ``end`` must be at least a week after
    2026-03-01 (the spec's ``test_from``): training inspections lie before it, held-out ones after.
    ``bad_rows`` corrupts exactly ``floor(bad_rows * readings_rows + 0.5)`` reading rows.
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= bad_rows <= 1.0:
        raise ValueError(f"bad_rows must be a fraction in [0, 1], got {bad_rows}")
    if end is None:
        end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    end_us = int(np.datetime64(end, "us").astype(np.int64))

    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / "sensors.mlspec"
    readings_path = data_dir / "readings.parquet"
    devices_path = data_dir / "devices.parquet"
    inspections_path = data_dir / "inspections.parquet"
    world_rng, readings_rng, _, bad_rng = _streams(seed)

    # 1. Devices.
    device_id = np.arange(1, devices + 1, dtype=np.int64)
    model = world_rng.choice(len(SENSOR_MODELS), size=devices, p=(0.45, 0.35, 0.2))
    site = world_rng.integers(0, len(SENSOR_SITES), devices)
    first = int(np.datetime64(SENSOR_TEST_FROM, "us").astype(np.int64)) - _SENSOR_TRAIN_DAYS * _US_PER_DAY
    installed = first - world_rng.integers(30, 3 * 365, devices) * _US_PER_DAY \
        - world_rng.integers(0, 86_400, devices) * _US_PER_SECOND
    base = np.stack([
        _MODEL_TEMP[model] + world_rng.normal(0.0, 4.0, devices),
        _MODEL_VIB[model] * np.exp(world_rng.normal(0.0, 0.25, devices)),
        _MODEL_PRESSURE[model] * np.exp(world_rng.normal(0.0, 0.1, devices)),
        _MODEL_RPM[model] * np.exp(world_rng.normal(0.0, 0.05, devices)),
    ], axis=1)

    # 2-3. Inspections and the day of readings before each, plus the last day for every device.
    inspected = _sensor_inspection_times(devices, end_us, world_rng)
    n_insp = inspected.size
    failed = world_rng.random(n_insp) < _SENSOR_FAIL_P
    transient = ~failed & (world_rng.random(n_insp) < _SENSOR_TRANSIENT_P)
    ep_device = np.concatenate([np.repeat(np.arange(devices), _SENSOR_INSPECTIONS), np.arange(devices)])
    ep_until = np.concatenate([inspected.ravel(), np.full(devices, end_us + _SENSOR_CADENCE_S * _US_PER_SECOND // 3)])
    live_failing = world_rng.random(devices) < 0.05  # a few devices are failing right now
    ep_failing = np.concatenate([failed, live_failing])
    ep_transient = np.concatenate([transient, np.zeros(devices, dtype=np.bool_)])
    cols = _episode_readings(device_id[ep_device], ep_until, ep_failing, ep_transient,
                             base[ep_device], readings_rng)
    keep = cols["at"] <= end_us
    cols = {name: col[keep] for name, col in cols.items()}
    order = np.lexsort((cols["device"], cols["at"]))
    cols = {name: col[order] for name, col in cols.items()}
    n = len(order)
    null_temp = readings_rng.random(n) < _SENSOR_NULL_TEMP_P

    # 4. Bad rows.
    planted = _plant_sensor_bad_rows(cols, null_temp, math.floor(bad_rows * n + 0.5), bad_rng)

    readings = pa.table(
        {
            "reading_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "device_id": pa.array(cols["device"]),
            "read_at": pa.array(cols["at"].astype("datetime64[us]")),
            "temperature": pa.array(cols["temperature"], pa.float64(), mask=null_temp),
            "vibration": pa.array(cols["vibration"], pa.float64()),
            "pressure": pa.array(cols["pressure"], pa.float64()),
            "rpm": pa.array(cols["rpm"], pa.int64()),
            "status": _strings(cols["status"], SENSOR_STATUSES + _BAD_STATUSES),
        }
    ).cast(_READINGS_SCHEMA)
    pq.write_table(readings, readings_path, **_PARQUET_OPTIONS)
    devices_table = pa.table(
        {
            "device_id": pa.array(device_id),
            "installed_at": pa.array(installed.astype("datetime64[us]")),
            "model": _strings(model.astype(np.int8), SENSOR_MODELS),
            "site": _strings(site.astype(np.int8), SENSOR_SITES),
        }
    ).cast(_DEVICES_SCHEMA)
    pq.write_table(devices_table, devices_path, **_PARQUET_OPTIONS)
    insp_order = np.lexsort((np.repeat(device_id, _SENSOR_INSPECTIONS), inspected.ravel()))
    inspections = pa.table(
        {
            "device_id": pa.array(np.repeat(device_id, _SENSOR_INSPECTIONS)[insp_order]),
            "inspected_at": pa.array(inspected.ravel()[insp_order].astype("datetime64[us]")),
            "failed_24h": pa.array(failed[insp_order]),
        }
    ).cast(_INSPECTIONS_SCHEMA)
    pq.write_table(inspections, inspections_path, **_PARQUET_OPTIONS)

    spec_path.write_text(spec_text, encoding="utf-8")
    return SensorsDemoSummary(
        spec_path=spec_path,
        readings_path=readings_path,
        devices_path=devices_path,
        inspections_path=inspections_path,
        devices_rows=devices,
        readings_rows=n,
        inspections_rows=n_insp,
        inspections_failed=int(failed.sum()),
        bad_rows=SensorBadRowCounts(**{k: int(c) for k, c in zip(SENSOR_BAD_ROW_KINDS, planted, strict=True)}),
        seed=seed,
        end=end,
    )
