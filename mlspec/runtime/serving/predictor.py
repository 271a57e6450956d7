"""Predicting one request's rows with xgboost, without the cost of its Python wrapper.

`Booster.inplace_predict` ends in one call of xgboost's public C API, `XGBoosterPredictFromDense`.
Around it, the Python binding spends about as long as the trees themselves take for one row
(JSON-encoding the arguments, type dispatch), and it defines a new class on every call
(`xgboost._data_utils.from_array_interface`). A class is cyclic garbage that only the garbage
collector frees, so serving paid a ~0.3 ms collection every ~45 predictions (bench/SERVING.md).

`DensePredictor` makes the same C call with the same arguments and copies the result out. It is
used only after it gave byte-identical output to `inplace_predict` on probe rows for the loaded
model; if it cannot be built or does not agree (another xgboost, a changed binding), serving
falls back to `inplace_predict` and logs why.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import xgboost as xgb

__all__ = ["DensePredictor", "predictor_for"]

log = logging.getLogger("mlspec.serve")

Predict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]

# What `inplace_predict(m, missing=nan)` passes: plain values, all trees, no training-time behaviour.
_CONFIG = (b'{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "missing": NaN, '
           b'"strict_shape": false, "cache_id": 0}')


class DensePredictor:
    """`booster.inplace_predict(matrix, missing=nan)` for a float32 matrix, through the C API."""

    def __init__(self, booster: xgb.Booster) -> None:
        from xgboost import core

        self.booster = booster  # keeps the handle alive
        self._lib: Any = core._LIB  # the library the binding loaded
        self._call = self._lib.XGBoosterPredictFromDense
        self._handle = booster.handle
        self._no_proxy = ctypes.c_void_p()

    def __call__(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if matrix.dtype != np.float32 or not matrix.flags.c_contiguous or matrix.ndim != 2:
            matrix = np.ascontiguousarray(matrix, dtype=np.float32).reshape(matrix.shape[0], -1)
        rows, cols = matrix.shape
        interface = b'{"data": [%d, false], "strides": null, "typestr": "<f4", "shape": [%d, %d], "version": 3}' % (
            matrix.ctypes.data, rows, cols)
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        out = ctypes.POINTER(ctypes.c_float)()
        status = self._call(self._handle, interface, _CONFIG, self._no_proxy, ctypes.byref(shape),
                            ctypes.byref(dims), ctypes.byref(out))
        if status != 0:
            from xgboost.core import XGBoostError

            raise XGBoostError(self._lib.XGBGetLastError().decode())
        dim = tuple(int(shape[i]) for i in range(dims.value))
        # The buffer belongs to xgboost and is reused by the thread's next prediction: copy it now.
        return np.ctypeslib.as_array(out, shape=dim).copy()


def predictor_for(booster: xgb.Booster, n_features: int) -> Predict:
    """The fast predictor when it agrees with `inplace_predict` on probe rows, else `inplace_predict`."""
    def slow(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return booster.inplace_predict(matrix, missing=np.nan)

    try:
        fast = DensePredictor(booster)
        for probe in _probes(n_features):
            if fast(probe).tobytes() != np.asarray(slow(probe), dtype=np.float32).tobytes():
                log.warning("xgboost's C API disagrees with inplace_predict for this model: serving uses "
                            "inplace_predict")
                return slow
    except Exception as e:  # a binding without the C function, or a changed signature
        log.warning("xgboost's C API is not usable here (%s: %s): serving uses inplace_predict", type(e).__name__, e)
        return slow
    return fast


def _probes(n_features: int) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(20261127)
    values = rng.normal(0, 100, (16, n_features))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[0] = np.nan
    values[1] = 0.0
    matrix = values.astype(np.float32)
    return [matrix[:1], matrix[1:2], matrix[2:3], matrix]
