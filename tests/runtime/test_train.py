"""Training with real xgboost on small synthetic frames: metrics, reproducibility, user-facing errors."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from mlspec.ir.spec import GateRule, Model, Split
from mlspec.ir.types import DType
from mlspec.runtime.encode import encode, encode_row
from mlspec.runtime.reference import NumericReference
from mlspec.runtime.train import (
    MIN_SEGMENT_ROWS,
    TrainingError,
    canonical_frame,
    data_fingerprint,
    load_booster,
    predict_scores,
    train,
)

FEATURES = ("activity.orders_30d", "activity.spend_90d", "profile.plan", "profile.is_premium",
            "profile.signup", "activity.last_order")
Params = tuple[tuple[str, int | float | str | bool], ...]
FAST: Params = (("max_depth", 3), ("n_estimators", 30), ("seed", 7))


def make_frame(n: int = 600, seed: int = 0, task: str = "binary") -> pl.DataFrame:
    """One row per label event with a planted signal; spend is sometimes null, plans are uneven."""
    rng = np.random.default_rng(seed)
    orders = rng.poisson(3, size=n)
    spend = rng.gamma(2.0, 40.0, size=n)
    plan = rng.choice(["basic", "pro", "enterprise", "trial"], size=n, p=[0.45, 0.3, 0.2, 0.05])
    signup = [dt.date(2022, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 1200, size=n)]
    as_of = [dt.date(2025, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 365, size=n)]
    last = [dt.datetime(2024, 6, 1) + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 500_000, size=n)]
    logit = 1.5 * (-0.6 * (orders - 3) + 0.02 * (spend - 80) + (plan == "basic") * 1.2 - 0.5) + rng.normal(0, 0.3, size=n)
    if task == "binary":
        label: object = rng.random(n) < 1 / (1 + np.exp(-logit))
    elif task == "regression":
        label = logit * 10 + rng.normal(0, 1, size=n)
    else:
        label = np.where(logit < -1, "stay", np.where(logit < 0.5, "downgrade", "leave"))
    return pl.DataFrame({
        "customer_id": np.arange(n),
        "observed_at": as_of,
        "churned": label,
        "activity.orders_30d": orders,
        "activity.spend_90d": pl.Series(np.where(rng.random(n) < 0.1, np.nan, spend)).fill_nan(None),
        "profile.plan": plan,
        "profile.is_premium": plan != "basic",
        "profile.signup": signup,
        "activity.last_order": last,
    })


def make_model(task: str = "binary", *, split: Split | None = None, params: Params = FAST,
               segment: str | None = "profile.plan", threshold: float = 0.5) -> Model:
    return Model("churn_risk", "xgboost", task, "churned", "customer", FEATURES, params,
                 split or Split("time", test_from="2025-10-01"),
                 (GateRule("auc", ">=", 0.6, False, "auc >= 0.6"),), segment, threshold)


def test_binary_training_reports_held_out_metrics() -> None:
    frame = make_frame()
    result = train(make_model(), frame, "churned", "observed_at")
    assert result.n_train + result.n_test == frame.height
    assert result.n_test == frame.filter(pl.col("observed_at") >= dt.date(2025, 10, 1)).height
    assert set(result.metrics) == {"auc", "logloss", "f1", "precision", "recall", "accuracy", "brier"}
    assert 0.7 < result.metrics["auc"] <= 1.0  # the planted signal is learnable
    assert all(0 <= result.metrics[m] <= 1 for m in ("f1", "precision", "recall", "accuracy", "brier"))
    assert len(result.calibration) == 10 and sum(b.count for b in result.calibration) == result.n_test
    assert result.calibration[0].lower == 0.0 and result.calibration[-1].upper == 1.0
    assert set(result.feature_importance) == set(FEATURES)
    assert result.feature_importance["activity.orders_30d"] > 0
    assert result.classes == ("false", "true") and result.split["kind"] == "time"
    assert result.params["num_boost_round"] == 30 and result.params["max_depth"] == 3
    assert result.params["tree_method"] == "hist" and result.params["seed"] == 7
    assert result.encoding.feature("profile.plan").categories == ("basic", "enterprise", "pro", "trial")
    assert result.encoding.dtypes["activity.last_order"] is DType.TIMESTAMP


def test_threshold_moves_the_confusion_metrics_only() -> None:
    frame = make_frame()
    low = train(make_model(threshold=0.2), frame, "churned", "observed_at")
    high = train(make_model(threshold=0.8), frame, "churned", "observed_at")
    assert low.metrics["auc"] == high.metrics["auc"] and low.model_bytes == high.model_bytes
    assert low.metrics["recall"] > high.metrics["recall"]


def test_same_data_params_and_seed_give_a_byte_identical_model() -> None:
    frame = make_frame()
    model = make_model()
    a = train(model, frame, "churned", "observed_at")
    b = train(model, frame, "churned", "observed_at")
    assert a.model_bytes == b.model_bytes and a.data_fingerprint == b.data_fingerprint
    # row order, column order and unrelated columns do not matter either
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5).select(list(reversed(frame.columns)))
    c = train(model, shuffled.with_columns(pl.lit("x").alias("noise")), "churned", "observed_at")
    assert c.model_bytes == a.model_bytes and c.data_fingerprint == a.data_fingerprint
    assert c.metrics == a.metrics and c.reference == a.reference
    # a different seed or one changed value does
    reseeded = train(make_model(params=(("max_depth", 3), ("n_estimators", 30), ("seed", 8),
                                        ("subsample", 0.8))), frame, "churned", "observed_at")
    assert reseeded.model_bytes != a.model_bytes
    changed = frame.with_columns(pl.when(pl.col("customer_id") == 3).then(99).otherwise(pl.col("activity.orders_30d"))
                                 .alias("activity.orders_30d"))
    assert train(model, changed, "churned", "observed_at").data_fingerprint != a.data_fingerprint


def test_thread_count_does_not_change_the_bytes() -> None:
    model = make_model(params=(("max_depth", 4), ("n_estimators", 8), ("seed", 1), ("subsample", 0.7),
                               ("colsample_bytree", 0.7)), segment=None)
    frame = make_frame(2000)
    one = train(model, frame, "churned", "observed_at", nthread=1)
    two = train(model, frame, "churned", "observed_at", nthread=2)
    assert one.model_bytes == two.model_bytes and two.params["nthread"] == 2


def test_fingerprint_covers_values_nulls_and_types() -> None:
    frame = make_frame(50)
    cols = ["observed_at", "churned", *FEATURES]
    base = data_fingerprint(canonical_frame(frame, cols, "observed_at", "churned"))
    widened = frame.with_columns(pl.col("activity.orders_30d").cast(pl.Int32))
    assert data_fingerprint(canonical_frame(widened, cols, "observed_at", "churned")) == base
    nulled = frame.with_columns(pl.when(pl.col("customer_id") == 0).then(None)
                                .otherwise(pl.col("profile.plan")).alias("profile.plan"))
    assert data_fingerprint(canonical_frame(nulled, cols, "observed_at", "churned")) != base
    as_float = frame.with_columns(pl.col("activity.orders_30d").cast(pl.Float64))
    assert data_fingerprint(canonical_frame(as_float, cols, "observed_at", "churned")) != base
    fewer = data_fingerprint(canonical_frame(frame, cols[:-1], "observed_at", "churned"))
    assert fewer != base


def test_default_params_apply_when_the_spec_sets_none() -> None:
    result = train(make_model(params=(), segment=None), make_frame(300), "churned", "observed_at")
    assert result.params["num_boost_round"] == 200
    assert (result.params["max_depth"], result.params["eta"], result.params["seed"]) == (6, 0.1, 0)
    assert result.segment_metrics == {}


def test_served_artefact_scores_like_training_and_online_rows_match_batch() -> None:
    frame = make_frame()
    result = train(make_model(), frame, "churned", "observed_at")
    booster = load_booster(result.model_bytes)
    test = frame.filter(pl.col("observed_at") >= dt.date(2025, 10, 1))
    batch = predict_scores(booster, encode(test, result.encoding), "binary")
    online = np.concatenate([predict_scores(booster, encode_row(r, result.encoding), "binary")
                             for r in test.iter_rows(named=True)])
    np.testing.assert_array_equal(batch, online)
    from sklearn.metrics import roc_auc_score

    assert test.height == result.n_test
    assert roc_auc_score(test.get_column("churned").to_numpy(), batch) == pytest.approx(result.metrics["auc"])


def test_segments_report_row_counts_and_skip_tiny_ones() -> None:
    result = train(make_model(), make_frame(1200), "churned", "observed_at")
    seg = result.segment_metrics
    assert sorted(seg) == ["basic", "enterprise", "pro", "trial"]
    assert sum(s.n_rows for s in seg.values()) == result.n_test
    assert seg["basic"].metrics is not None and "auc" in seg["basic"].metrics
    tiny = seg["trial"]
    assert tiny.n_rows < MIN_SEGMENT_ROWS and tiny.metrics is None
    assert tiny.note == f"skipped: {tiny.n_rows} test rows (fewer than {MIN_SEGMENT_ROWS})"


def test_reference_statistics_come_with_the_result() -> None:
    result = train(make_model(), make_frame(), "churned", "observed_at")
    ref = result.reference
    assert list(ref.features) == list(FEATURES) and ref.n_rows == result.n_train
    assert ref.features["profile.plan"].kind == "categorical"
    assert ref.features["profile.is_premium"].kind == "categorical"
    spend = ref.features["activity.spend_90d"]
    assert isinstance(spend, NumericReference) and 0.05 < spend.null_share < 0.15
    assert ref.prediction is not None and ref.prediction.kind == "numeric"
    assert ref.prediction.count == result.n_test


def test_random_split_is_seeded() -> None:
    model = make_model(split=Split("random", test_fraction=0.25, seed=3))
    a = train(model, make_frame(400), "churned", "observed_at")
    b = train(model, make_frame(400), "churned", "observed_at")
    assert (a.n_train, a.n_test) == (300, 100) and a.model_bytes == b.model_bytes
    other = train(make_model(split=Split("random", test_fraction=0.25, seed=4)), make_frame(400), "churned",
                  "observed_at")
    assert other.metrics != a.metrics


def test_regression_and_multiclass() -> None:
    reg = train(make_model("regression", segment=None), make_frame(task="regression"), "churned", "observed_at")
    assert set(reg.metrics) == {"rmse", "mae", "r2"} and reg.metrics["r2"] > 0.5
    assert reg.calibration == () and reg.params["objective"] == "reg:squarederror"
    multi = train(make_model("multiclass"), make_frame(task="multiclass"), "churned", "observed_at")
    assert set(multi.metrics) == {"accuracy", "mlogloss", "f1_macro"} and multi.metrics["accuracy"] > 0.5
    assert multi.classes == ("downgrade", "leave", "stay") and multi.params["num_class"] == 3
    assert multi.reference.prediction is not None and multi.reference.prediction.kind == "categorical"
    scores = predict_scores(load_booster(multi.model_bytes), encode(make_frame(20, task="multiclass"),
                                                                    multi.encoding), "multiclass")
    assert scores.shape == (20, 3) and np.allclose(scores.sum(axis=1), 1.0)


def test_early_stopping_watches_training_rows_only() -> None:
    params = (("max_depth", 3), ("n_estimators", 300), ("learning_rate", 0.3), ("early_stopping_rounds", 5))
    result = train(make_model(params=params), make_frame(), "churned", "observed_at")
    assert result.params["best_iteration"] < 299
    assert load_booster(result.model_bytes).num_boosted_rounds() == result.params["best_iteration"] + 1
    assert any("early stopping kept" in note for note in result.notes)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.with_columns(pl.when(pl.col("customer_id") < 7).then(None).otherwise(pl.col("churned"))
                              .alias("churned")), r"the label `churned` is null in 7 of 600 rows"),
    (lambda f: f.with_columns(pl.lit(False).alias("churned")),
     r"the label `churned` is `false` in every one of the \d+ training rows; a binary model needs both classes"),
    (lambda f: f.head(25), r"only 25 labelled row\(s\); training needs at least 30"),
    (lambda f: f.rename({"profile.plan": "profile.plans"}),
     r"lacks column\(s\) `profile.plan` \(did you mean `profile.plans`\?\)"),
    (lambda f: f.with_columns(pl.col("churned").cast(pl.Int64) * 2),
     r"a binary label must be bool or 0/1, but `churned` holds 2"),
])
def test_user_errors_are_clear(change: object, message: str) -> None:
    with pytest.raises(TrainingError, match=message) as info:
        train(make_model(), change(make_frame()), "churned", "observed_at")  # type: ignore[operator]
    assert info.value.message.startswith("model `churn_risk`: ")
    assert info.value.__cause__ is None  # no chained traceback to show the user


def test_time_splits_that_leave_a_side_empty_say_which_dates() -> None:
    frame = make_frame()
    with pytest.raises(TrainingError, match=r"the training split is empty: all 600 rows fall on or after "
                       r"test_from 2024-01-01 \(as-of times span 2025-01-01 \.\. 2025-12-3\d\); move test_from later"):
        train(make_model(split=Split("time", test_from="2024-01-01")), frame, "churned", "observed_at")
    with pytest.raises(TrainingError, match=r"the test split is empty: .* move test_from earlier"):
        train(make_model(split=Split("time", test_from="2026-06-01")), frame, "churned", "observed_at")
    with pytest.raises(TrainingError, match=r"the test split has only \d row\(s\) \(need at least 10\)"):
        train(make_model(split=Split("time", test_from="2025-12-30")), frame, "churned", "observed_at")
    only_negatives_late = frame.with_columns(
        pl.when(pl.col("observed_at") >= dt.date(2025, 10, 1)).then(False).otherwise(pl.col("churned"))
        .alias("churned"))
    with pytest.raises(TrainingError, match=r"every one of the \d+ test rows; auc is undefined"):
        train(make_model(), only_negatives_late, "churned", "observed_at")


def test_random_splits_that_leave_a_side_empty_say_so() -> None:
    with pytest.raises(TrainingError, match=r"the test split is empty with a random split holding out 0\.0005 of "
                       r"600 rows; choose a test fraction"):
        train(make_model(split=Split("random", test_fraction=0.0005)), make_frame(), "churned", "observed_at")
    with pytest.raises(TrainingError, match=r"the test split has only 6 row\(s\) \(need at least 10\)"):
        train(make_model(split=Split("random", test_fraction=0.01)), make_frame(), "churned", "observed_at")


def test_timestamp_as_of_splits_at_midnight_utc() -> None:
    frame = make_frame().with_columns(pl.col("observed_at").cast(pl.Datetime("us")).dt.offset_by("23h"))
    result = train(make_model(), frame, "churned", "observed_at")
    assert result.n_test == frame.filter(pl.col("observed_at") >= dt.datetime(2025, 10, 1)).height
    assert not math.isnan(result.metrics["auc"])
