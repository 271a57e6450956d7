"""Serving's predictor gives exactly what `Booster.inplace_predict` gives, for every task and input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlspec.runtime.serving.predictor import DensePredictor, predictor_for

N_FEATURES = 6


def _booster(objective: str, **extra: object) -> xgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = {"binary:logistic": (np.nan_to_num(x[:, 0]) > 0), "reg:squarederror": np.nan_to_num(x[:, 1]) * 3,
         "multi:softprob": np.digitize(np.nan_to_num(x[:, 2]), [-0.5, 0.5])}[objective].astype(np.float32)
    return xgb.train({"objective": objective, "nthread": 1, "max_depth": 3, "seed": 1, **extra},
                     xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=12)


BOOSTERS = {"binary": _booster("binary:logistic"), "regression": _booster("reg:squarederror"),
            "multiclass": _booster("multi:softprob", num_class=3)}

_cells = st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=32), st.sampled_from([0.0, -0.0, 1e30]))
_matrices = st.integers(1, 7).flatmap(lambda n: hnp.arrays(np.float32, (n, N_FEATURES), elements=_cells))


@pytest.mark.parametrize("task", sorted(BOOSTERS))
@settings(max_examples=60, deadline=None)
@given(matrix=_matrices)
def test_same_bytes_and_shape_as_inplace_predict(task: str, matrix: np.ndarray) -> None:
    booster = BOOSTERS[task]
    expected = booster.inplace_predict(matrix, missing=np.nan)
    got = DensePredictor(booster)(matrix)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()


def test_any_layout_of_the_input_is_accepted() -> None:
    booster = BOOSTERS["binary"]
    m = np.random.default_rng(0).normal(size=(5, N_FEATURES * 2))
    view = m[:, ::2]  # float64, not contiguous
    expected = booster.inplace_predict(np.ascontiguousarray(view, dtype=np.float32), missing=np.nan)
    assert DensePredictor(booster)(view).tobytes() == expected.tobytes()


def test_errors_from_xgboost_are_raised_not_ignored() -> None:
    with pytest.raises(xgb.core.XGBoostError):
        DensePredictor(BOOSTERS["binary"])(np.zeros((1, N_FEATURES + 3), dtype=np.float32))


def test_a_predictor_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    booster = BOOSTERS["binary"]
    assert isinstance(predictor_for(booster, N_FEATURES), DensePredictor)
    monkeypatch.setattr(DensePredictor, "__call__", lambda self, m: np.zeros(len(m), dtype=np.float32))
    with caplog.at_level(logging.WARNING, "mlspec.serve"):
        fallback = predictor_for(booster, N_FEATURES)
    assert not isinstance(fallback, DensePredictor) and "disagrees" in caplog.text
    m = np.ones((2, N_FEATURES), dtype=np.float32)
    assert fallback(m).tobytes() == booster.inplace_predict(m, missing=np.nan).tobytes()
