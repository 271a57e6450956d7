"""Train one spec model with xgboost, reproducibly, and measure it on the held-out split.

Reproducibility (requirement 1): the frame is first put in a canonical row order (see
`canonical_frame`), and `data_fingerprint` hashes exactly what that order and the selected columns
contain.  Training then uses a fixed thread count, the hist tree method and the spec's seed, so the
same data fingerprint + params + seed + library versions give a byte-identical saved model,
whatever order the rows arrived in.

Everything a user can get wrong (missing columns, null labels, a split that leaves one side empty,
a binary label with a single class, too few rows) is raised as `TrainingError` with a message
meant to be printed as is.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import xgboost as xgb

from mlspec.ir.spec import Model
from mlspec.ir.types import DType
from mlspec.runtime.encode import EncodingError, FeatureEncoding, dtype_of_polars, encode, fit_encoding
from mlspec.runtime.reference import ReferenceStats, fit_reference

__all__ = [
    "DEFAULT_PARAMS",
    "MIN_SEGMENT_ROWS",
    "MIN_TEST_ROWS",
    "MIN_TRAIN_ROWS",
    "NTHREAD",
    "CalibrationBin",
    "SegmentMetrics",
    "TrainResult",
    "TrainingError",
    "canonical_frame",
    "compute_metrics",
    "data_fingerprint",
    "load_booster",
    "predict_scores",
    "train",
    "xgboost_params",
]

# Fixed thread count.  hist on CPU gives the same bytes for any thread count (tested), but one
# thread never spin-waits on a busy machine, and serving single rows gains nothing from more.
NTHREAD = 1
DEFAULT_PARAMS: dict[str, int | float] = {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1, "seed": 0}
MIN_TRAIN_ROWS = 20
MIN_TEST_ROWS = 10
MIN_SEGMENT_ROWS = 30
MAX_SEGMENTS = 50
EARLY_STOPPING_FRACTION = 0.1  # latest share of the training rows held out when early stopping
CALIBRATION_BINS = 10
_RENAMED = {"learning_rate": "eta", "reg_lambda": "lambda", "reg_alpha": "alpha"}
_PASS_THROUGH = {"max_depth", "subsample", "colsample_bytree", "min_child_weight", "gamma", "max_bin",
                 "scale_pos_weight", "seed"}
_OBJECTIVE = {"binary": ("binary:logistic", "logloss"), "regression": ("reg:squarederror", "rmse"),
              "multiclass": ("multi:softprob", "mlogloss")}
FINGERPRINT_VERSION = "mlspec-data-v1"


class TrainingError(Exception):
    """A problem with the training data or model declaration, phrased for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """Test rows whose predicted probability fell in [lower, upper): mean prediction vs observed rate."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_rate: float | None

    def to_data(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "count": self.count,
                "mean_predicted": self.mean_predicted, "observed_rate": self.observed_rate}


@dataclass(frozen=True, slots=True)
class SegmentMetrics:
    """Held-out metrics for the test rows of one segment value; metrics None when skipped."""

    n_rows: int
    metrics: dict[str, float] | None
    note: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "metrics": self.metrics, "note": self.note}


@dataclass(frozen=True)
class TrainResult:
    """Everything the registry stores about one trained model version."""

    model_name: str
    task: str
    label: str
    model_bytes: bytes  # xgboost UBJSON, byte-identical for identical inputs
    encoding: FeatureEncoding
    params: dict[str, Any]  # effective xgboost params, plus num_boost_round (and early stopping facts)
    metrics: dict[str, float]
    segment_metrics: dict[str, SegmentMetrics]
    calibration: tuple[CalibrationBin, ...]  # binary only
    n_train: int
    n_test: int
    feature_importance: dict[str, float]  # average gain per split, every feature (0.0 when unused)
    reference: ReferenceStats
    data_fingerprint: str
    split: dict[str, Any]
    threshold: float = 0.5
    classes: tuple[str, ...] = ()  # binary: ("0", "1") / ("false", "true"); multiclass: sorted label values
    segment: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def feature_types(self) -> dict[str, str]:
        return {f.name: f.dtype.value for f in self.encoding.features}


# ---- public helpers ------------------------------------------------------------------------

def load_booster(model_bytes: bytes) -> xgb.Booster:
    """A booster from saved UBJSON bytes, pinned to the fixed thread count."""
    booster = xgb.Booster(params={"nthread": NTHREAD})
    booster.load_model(bytearray(model_bytes))
    return booster


def predict_scores(booster: xgb.Booster, matrix: npt.NDArray[np.float32], task: str,
                   predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None = None,
                   ) -> npt.NDArray[np.float64]:
    """Model output for an encoded matrix: P(positive) (binary), value (regression), (n, k) probabilities.
    `predict` stands in for `booster.inplace_predict(matrix, missing=nan)` (serving passes a faster one)."""
    raw = predict(matrix) if predict is not None else booster.inplace_predict(matrix, missing=np.nan)
    out = np.asarray(raw, dtype=np.float64)
    if task == "multiclass":
        out = out.reshape(matrix.shape[0], -1)
        out = out / out.sum(axis=1, keepdims=True)
    return out


def xgboost_params(model: Model, task: str, num_class: int | None = None,
                   nthread: int = NTHREAD) -> tuple[dict[str, Any], int, int | None]:
    """(xgb.train params, num_boost_round, early_stopping_rounds) for a spec model."""
    spec = {**DEFAULT_PARAMS, **dict(model.params)}
    objective, metric = _OBJECTIVE[task]
    params: dict[str, Any] = {"objective": objective, "eval_metric": metric, "tree_method": "hist",
                              "nthread": nthread, "verbosity": 0, "validate_parameters": True}
    for name, value in sorted(spec.items()):
        if name in ("n_estimators", "early_stopping_rounds", "num_class"):
            continue
        if name in _RENAMED:
            params[_RENAMED[name]] = value
        elif name in _PASS_THROUGH:
            params[name] = value
        else:
            raise TrainingError(f"model `{model.name}`: xgboost parameter `{name}` is not supported")
    if task == "multiclass":
        params["num_class"] = num_class
    early = spec.get("early_stopping_rounds")
    return params, int(spec["n_estimators"]), int(early) if early is not None else None


def canonical_frame(frame: pl.DataFrame, columns: list[str], as_of_column: str, label_column: str) -> pl.DataFrame:
    """The selected columns in a canonical row order: by as-of, label, then the others by name.

    Categorical columns become strings first (their physical order is arbitrary).  Rows equal in
    every selected column are interchangeable, so the order depends on the data only.
    """
    cols = list(dict.fromkeys(columns))
    out = frame.select(cols).with_columns(
        [pl.col(c).cast(pl.String) for c in cols
         if isinstance(frame.schema[c], pl.Categorical | pl.Enum) or frame.schema[c] == pl.Categorical])
    order = [as_of_column, label_column, *sorted(c for c in cols if c not in (as_of_column, label_column))]
    return out.sort(order, nulls_last=True, maintain_order=True)


def data_fingerprint(frame: pl.DataFrame) -> str:
    """sha256 over a canonical serialisation of `frame` (call it on `canonical_frame`'s output).

    Covers: the row count; every column's name and logical type (int, float, bool, string, date,
    timestamp, duration); its null mask; its values (ints as int64, floats as float64 with one NaN
    pattern, timestamps as UTC epoch microseconds, dates as epoch days, durations in microseconds,
    strings as UTF-8 with lengths) in the frame's row order.  Not covered: columns outside the frame,
    physical widths (Int32 vs Int64, Float32 vs Float64) and time-zone labels of the same instants.
    """
    h = hashlib.sha256()
    cols = sorted(frame.columns)
    header = {"format": FINGERPRINT_VERSION, "rows": frame.height,
              "columns": [[c, _logical(frame.schema[c])] for c in cols]}
    h.update(json.dumps(header, sort_keys=True).encode())
    for c in cols:
        s = frame.get_column(c)
        h.update(b"\x00col\x00" + c.encode())
        h.update(np.packbits(s.is_null().to_numpy()).tobytes())
        h.update(_value_bytes(s))
    return h.hexdigest()


def compute_metrics(task: str, y: npt.NDArray[Any], scores: npt.NDArray[np.float64], threshold: float = 0.5,
                    n_classes: int = 2) -> dict[str, float]:
    """Held-out metrics by task; auc is left out when the rows hold a single class."""
    from sklearn import metrics as skm

    if task == "binary":
        pred = (scores >= threshold).astype(np.int64)
        out: dict[str, float] = {}
        if np.unique(y).size == 2:
            out["auc"] = float(skm.roc_auc_score(y, scores))
        out["logloss"] = float(skm.log_loss(y, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1]))
        out["f1"] = float(skm.f1_score(y, pred, zero_division=0))
        out["precision"] = float(skm.precision_score(y, pred, zero_division=0))
        out["recall"] = float(skm.recall_score(y, pred, zero_division=0))
        out["accuracy"] = float(skm.accuracy_score(y, pred))
        out["brier"] = float(skm.brier_score_loss(y, scores))
        return out
    if task == "regression":
        return {"rmse": float(math.sqrt(skm.mean_squared_error(y, scores))),
                "mae": float(skm.mean_absolute_error(y, scores)),
                "r2": float(skm.r2_score(y, scores)) if y.size >= 2 else math.nan}
    pred = scores.argmax(axis=1)
    return {"accuracy": float(skm.accuracy_score(y, pred)),
            "mlogloss": float(skm.log_loss(y, np.clip(scores, 1e-15, 1.0), labels=list(range(n_classes)))),
            "f1_macro": float(skm.f1_score(y, pred, average="macro", zero_division=0))}


# ---- train ---------------------------------------------------------------------------------

def train(model: Model, frame: pl.DataFrame, label_column: str, as_of_column: str, *,
          feature_types: Mapping[str, DType] | None = None, nthread: int = NTHREAD) -> TrainResult:
    """Split, encode, train and evaluate `model` on one-row-per-label-event `frame`.

    `feature_types` gives the declared type of each feature (from the Spec); when absent the type
    is read off the polars column.  `nthread` is recorded in the params; it does not change the bytes.
    """
    if model.algorithm != "xgboost":
        raise TrainingError(f"model `{model.name}`: algorithm `{model.algorithm}` is not supported (use xgboost)")
    if model.task not in _OBJECTIVE:
        raise TrainingError(f"model `{model.name}`: unknown task `{model.task}` (binary, regression, multiclass)")
    if label_column in model.features:
        raise TrainingError(f"model `{model.name}`: the label `{label_column}` is also listed as a feature")
    features = list(dict.fromkeys(model.features))
    segment = model.segment
    _require(frame, [as_of_column, label_column, *features, *([segment] if segment else [])], model.name)
    notes: list[str] = []

    types: list[tuple[str, DType]] = []
    for f in features:
        try:
            types.append((f, DType(feature_types[f]) if feature_types and f in feature_types
                          else dtype_of_polars(frame.schema[f])))
        except EncodingError as exc:
            raise TrainingError(f"model `{model.name}`: feature `{f}`: {exc}") from None

    columns = [as_of_column, label_column, *features, *([segment] if segment and segment not in features else [])]
    data = canonical_frame(frame, columns, as_of_column, label_column)
    fingerprint = data_fingerprint(data)

    n = data.height
    if n < MIN_TRAIN_ROWS + MIN_TEST_ROWS:
        raise TrainingError(f"model `{model.name}`: only {n} labelled row(s); training needs at least "
                            f"{MIN_TRAIN_ROWS + MIN_TEST_ROWS} ({MIN_TRAIN_ROWS} to train, {MIN_TEST_ROWS} to test)")
    y_all, classes = _labels(model, data.get_column(label_column))
    is_test, split_info = _split(model, data, as_of_column)
    train_df, test_df = data.filter(~pl.Series(is_test)), data.filter(pl.Series(is_test))
    y_train, y_test = y_all[~is_test], y_all[is_test]
    _check_sizes(model, train_df.height, test_df.height, split_info)
    _check_classes(model, label_column, y_train, y_test, classes)

    try:
        encoding = fit_encoding(types, train_df)
        x_train, x_test = encode(train_df, encoding), encode(test_df, encoding)
    except EncodingError as exc:
        raise TrainingError(f"model `{model.name}`: {exc}") from None

    num_class = len(classes) if model.task == "multiclass" else None
    spec_num_class = dict(model.params).get("num_class")
    if model.task == "multiclass" and spec_num_class is not None:
        if int(spec_num_class) < len(classes):
            raise TrainingError(f"model `{model.name}`: num_class = {spec_num_class} but the label "
                                f"`{label_column}` holds {len(classes)} classes ({', '.join(classes)})")
        num_class = int(spec_num_class)
    elif spec_num_class is not None:
        notes.append(f"num_class is ignored for a {model.task} model")
    params, rounds, early = xgboost_params(model, model.task, num_class, nthread)
    booster, fit_info = _fit(model, params, rounds, early, x_train, y_train, notes)
    model_bytes = bytes(booster.save_raw("ubj"))

    # Evaluate the artefact exactly as it will be served: reloaded from its bytes.
    served = load_booster(model_bytes)
    scores = predict_scores(served, x_test, model.task)
    metrics = compute_metrics(model.task, y_test, scores, model.threshold, len(classes))
    calibration = _calibration(y_test, scores) if model.task == "binary" else ()
    segments = _segments(model, segment, test_df, y_test, scores, len(classes), notes)
    importance = _importance(served, encoding)

    if model.task == "multiclass":
        # num_class may exceed the classes present; such an index has no label value to report
        prediction: npt.NDArray[np.float64] | list[str] = [classes[i] if i < len(classes) else str(i)
                                                           for i in scores.argmax(axis=1)]
    else:
        prediction = scores
    seed = int(params.get("seed", 0))
    reference = fit_reference(train_df, encoding, x_train, prediction, seed=seed)
    return TrainResult(
        model_name=model.name, task=model.task, label=label_column, model_bytes=model_bytes, encoding=encoding,
        params={**params, "num_boost_round": rounds, **fit_info}, metrics=metrics, segment_metrics=segments,
        calibration=calibration, n_train=train_df.height, n_test=test_df.height, feature_importance=importance,
        reference=reference, data_fingerprint=fingerprint, split=split_info, threshold=model.threshold,
        classes=classes, segment=segment, notes=tuple(notes))


# ---- steps ---------------------------------------------------------------------------------

def _require(frame: pl.DataFrame, names: list[str], model: str) -> None:
    missing = [n for n in dict.fromkeys(names) if n not in frame.columns]
    if not missing:
        return
    parts = []
    for m in missing:
        close = difflib.get_close_matches(m, frame.columns, n=1)
        parts.append(f"`{m}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    raise TrainingError(f"model `{model}`: the training frame lacks column(s) {', '.join(parts)}")


def _labels(model: Model, label: pl.Series) -> tuple[npt.NDArray[Any], tuple[str, ...]]:
    nulls = label.null_count() + (int(label.is_nan().sum()) if label.dtype.is_float() else 0)
    if nulls:
        raise TrainingError(f"model `{model.name}`: the label `{label.name}` is null in {nulls} of {label.len()} "
                            f"rows; drop or fill those label events before training")
    if model.task == "binary":
        if label.dtype == pl.Boolean:
            return label.cast(pl.Int64).to_numpy(), ("false", "true")
        if label.dtype.is_numeric():
            odd = label.filter(~label.is_in([0, 1])).unique().sort().head(5).to_list()
            if odd:
                raise TrainingError(f"model `{model.name}`: a binary label must be bool or 0/1, but `{label.name}` "
                                    f"holds {', '.join(map(str, odd))}")
            return label.cast(pl.Int64).to_numpy(), ("0", "1")
        raise TrainingError(f"model `{model.name}`: a binary label must be bool or 0/1, "
                            f"but `{label.name}` is {label.dtype}")
    if model.task == "regression":
        if not (label.dtype.is_numeric() or label.dtype == pl.Boolean):
            raise TrainingError(f"model `{model.name}`: a regression label must be numeric, "
                                f"but `{label.name}` is {label.dtype}")
        values = label.cast(pl.Float64).to_numpy()
        if not np.all(np.isfinite(values)):
            raise TrainingError(f"model `{model.name}`: the label `{label.name}` holds infinite values")
        return values, ()
    distinct = label.unique().sort()
    classes = tuple(_class_name(v) for v in distinct.to_list())
    index = label.replace_strict(distinct, pl.Series(range(distinct.len())), return_dtype=pl.Int64)
    return index.to_numpy(), classes


def _class_name(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _split(model: Model, data: pl.DataFrame, as_of_column: str) -> tuple[npt.NDArray[np.bool_], dict[str, Any]]:
    split = model.split
    n = data.height
    if split.kind == "time":
        if split.test_from is None:
            raise TrainingError(f"model `{model.name}`: a time split needs test_from")
        as_of = data.get_column(as_of_column)
        if as_of.null_count():
            raise TrainingError(f"model `{model.name}`: {as_of.null_count()} of {n} rows have no as-of time "
                                f"(`{as_of_column}` is null); a time split cannot place them")
        cut = dt.date.fromisoformat(split.test_from)
        if as_of.dtype == pl.Date:
            days = as_of.cast(pl.Int32).to_numpy().astype(np.int64)
            is_test = days >= (cut - dt.date(1970, 1, 1)).days
        elif isinstance(as_of.dtype, pl.Datetime):
            # Midnight UTC of test_from; naive timestamps are UTC by the language's convention.
            us = as_of.dt.epoch("us").to_numpy()
            is_test = us >= (cut - dt.date(1970, 1, 1)).days * 86_400_000_000
        else:
            raise TrainingError(f"model `{model.name}`: the as-of column `{as_of_column}` must be a date or "
                                f"timestamp for a time split, not {as_of.dtype}")
        info: dict[str, Any] = {"kind": "time", "test_from": split.test_from,
                                "as_of_min": str(as_of.min()), "as_of_max": str(as_of.max())}
        return np.asarray(is_test, dtype=bool), info
    if split.kind == "random":
        n_test = math.floor(n * split.test_fraction + 0.5)
        rng = np.random.default_rng(split.seed)
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.permutation(n)[:n_test]] = True
        return is_test, {"kind": "random", "test_fraction": split.test_fraction, "seed": split.seed}
    raise TrainingError(f"model `{model.name}`: unknown split kind `{split.kind}` (time or random)")


def _check_sizes(model: Model, n_train: int, n_test: int, info: dict[str, Any]) -> None:
    total = n_train + n_test
    if info["kind"] == "time":
        where = f"test_from {info['test_from']} (as-of times span {info['as_of_min']} .. {info['as_of_max']})"
        if n_train == 0:
            raise TrainingError(f"model `{model.name}`: the training split is empty: all {total} rows fall on or "
                                f"after {where}; move test_from later")
        if n_test == 0:
            raise TrainingError(f"model `{model.name}`: the test split is empty: all {total} rows fall before "
                                f"{where}; move test_from earlier")
    else:
        where = f"a random split holding out {info['test_fraction']:g} of {total} rows"
        if n_train == 0 or n_test == 0:
            side = "training" if n_train == 0 else "test"
            raise TrainingError(f"model `{model.name}`: the {side} split is empty with {where}; "
                                f"choose a test fraction strictly between 0 and 1 that leaves rows on both sides")
    if n_train < MIN_TRAIN_ROWS:
        raise TrainingError(f"model `{model.name}`: the training split has only {n_train} row(s) "
                            f"(need at least {MIN_TRAIN_ROWS}) with {where}")
    if n_test < MIN_TEST_ROWS:
        raise TrainingError(f"model `{model.name}`: the test split has only {n_test} row(s) "
                            f"(need at least {MIN_TEST_ROWS}) with {where}")


def _check_classes(model: Model, label: str, y_train: npt.NDArray[Any], y_test: npt.NDArray[Any],
                   classes: tuple[str, ...]) -> None:
    if model.task == "binary":
        for name, y in (("training", y_train), ("test", y_test)):
            present = np.unique(y)
            if present.size < 2:
                only = classes[int(present[0])]
                why = "a binary model needs both classes" if name == "training" else "auc is undefined"
                raise TrainingError(f"model `{model.name}`: the label `{label}` is `{only}` in every one of "
                                    f"the {y.size} {name} rows; {why}")
    elif model.task == "multiclass":
        if len(classes) < 2:
            raise TrainingError(f"model `{model.name}`: the label `{label}` has a single class "
                                f"(`{classes[0]}`); a multiclass model needs at least two")
        if np.unique(y_train).size < 2:
            raise TrainingError(f"model `{model.name}`: the training rows hold a single class of "
                                f"`{label}`; a multiclass model needs at least two")


def _fit(model: Model, params: dict[str, Any], rounds: int, early: int | None, x: npt.NDArray[np.float32],
         y: npt.NDArray[Any], notes: list[str]) -> tuple[xgb.Booster, dict[str, Any]]:
    info: dict[str, Any] = {}
    nthread = int(params["nthread"])
    try:
        if early is None:
            dtrain = xgb.DMatrix(x, label=y, missing=np.nan, nthread=nthread)
            return xgb.train(params, dtrain, num_boost_round=rounds, verbose_eval=False), info
        # Early stopping watches the latest rows of the training split (rows are in as-of order),
        # never the test split, so the reported metrics stay honest.
        n_val = max(1, math.ceil(x.shape[0] * EARLY_STOPPING_FRACTION))
        dtrain = xgb.DMatrix(x[:-n_val], label=y[:-n_val], missing=np.nan, nthread=nthread)
        dval = xgb.DMatrix(x[-n_val:], label=y[-n_val:], missing=np.nan, nthread=nthread)
        booster = xgb.train(params, dtrain, num_boost_round=rounds, evals=[(dval, "validation")],
                            early_stopping_rounds=early, verbose_eval=False)
        best = int(booster.best_iteration)
        booster = booster[: best + 1]
        info = {"early_stopping_rounds": early, "best_iteration": best, "validation_rows": n_val}
        notes.append(f"early stopping kept {best + 1} of at most {rounds} rounds "
                     f"(validated on the latest {n_val} training rows)")
        return booster, info
    except xgb.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"model `{model.name}`: xgboost refused to train: {first}") from None


def _calibration(y: npt.NDArray[Any], p: npt.NDArray[np.float64]) -> tuple[CalibrationBin, ...]:
    idx = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    out = []
    for b in range(CALIBRATION_BINS):
        mask = idx == b
        count = int(mask.sum())
        out.append(CalibrationBin(b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS, count,
                                  float(p[mask].mean()) if count else None,
                                  float(y[mask].mean()) if count else None))
    return tuple(out)


def _segments(model: Model, segment: str | None, test_df: pl.DataFrame, y: npt.NDArray[Any],
              scores: npt.NDArray[np.float64], n_classes: int, notes: list[str]) -> dict[str, SegmentMetrics]:
    if segment is None:
        return {}
    keys = np.array([_segment_key(v) for v in test_df.get_column(segment).to_list()], dtype=object)
    values, counts = np.unique(keys.astype(str), return_counts=True)
    order = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0]))
    if len(order) > MAX_SEGMENTS:
        notes.append(f"segment `{segment}` has {len(order)} distinct values; metrics cover the "
                     f"{MAX_SEGMENTS} largest")
        order = order[:MAX_SEGMENTS]
    out: dict[str, SegmentMetrics] = {}
    for value, count in sorted(order):
        if count < MIN_SEGMENT_ROWS:
            out[value] = SegmentMetrics(count, None, f"skipped: {count} test rows (fewer than {MIN_SEGMENT_ROWS})")
            continue
        mask = keys.astype(str) == value
        ys, ss = y[mask], scores[mask]
        note = None
        if model.task == "binary" and np.unique(ys).size < 2:
            note = "auc undefined: one class in this segment"
        out[value] = SegmentMetrics(count, compute_metrics(model.task, ys, ss, model.threshold, n_classes), note)
    return out


def _segment_key(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _importance(booster: xgb.Booster, encoding: FeatureEncoding) -> dict[str, float]:
    gain = booster.get_score(importance_type="gain")  # scalar per feature for tree boosters
    return {f.name: float(gain.get(f"f{j}", 0.0)) for j, f in enumerate(encoding.features)}  # type: ignore[arg-type]


def _logical(dtype: pl.DataType) -> str:
    try:
        return dtype_of_polars(dtype).value
    except EncodingError:
        return str(dtype)


def _value_bytes(s: pl.Series) -> bytes:
    dtype = s.dtype
    if dtype == pl.Null:
        return b""
    if dtype == pl.Boolean:
        return s.fill_null(False).cast(pl.UInt8).to_numpy().tobytes()
    if dtype.is_integer():
        try:
            return s.cast(pl.Int64).fill_null(0).to_numpy().astype("<i8").tobytes()
        except pl.exceptions.PolarsError:  # pragma: no cover - UInt64 beyond int64
            return _string_bytes(s.cast(pl.String))
    if dtype.is_float():
        a = s.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8")
        a[np.isnan(a)] = np.nan
        return a.tobytes()
    if dtype == pl.Date:
        return s.cast(pl.Int32).cast(pl.Int64).fill_null(0).to_numpy().astype("<i8").tobytes()
    if isinstance(dtype, pl.Datetime):
        return s.dt.epoch("us").fill_null(0).to_numpy().astype("<i8").tobytes()
    if isinstance(dtype, pl.Duration):
        return s.dt.total_microseconds().fill_null(0).to_numpy().astype("<i8").tobytes()
    return _string_bytes(s.cast(pl.String))


def _string_bytes(s: pl.Series) -> bytes:
    values = [x.encode() if x is not None else b"" for x in s.to_list()]
    lengths = np.array([len(v) for v in values], dtype="<i8")
    return lengths.tobytes() + b"".join(values)
