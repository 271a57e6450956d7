"""Serving's JSON writer: orjson's text equals the standard library's, and nothing is refused."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlspec.runtime.serving.jsontext import strict_default, to_json

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(), st.dates(), st.datetimes(), st.datetimes(timezones=st.just(dt.UTC)))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(), inner, max_size=4)), max_leaves=12)


def _std(obj: Any) -> bytes:
    return json.dumps(obj, default=strict_default, separators=(",", ":"), ensure_ascii=False).encode()


@given(_values)
def test_orjson_writes_what_the_standard_library_writes(obj: Any) -> None:
    assert json.loads(to_json(obj)) == json.loads(_std(obj))
    if not _has_float(obj):  # the two may spell one float differently (1e16 vs 1e+16)
        assert to_json(obj) == _std(obj)


def _has_float(obj: Any) -> bool:
    if isinstance(obj, float):
        return True
    if isinstance(obj, dict):
        return any(_has_float(v) for v in obj.values())
    return isinstance(obj, list) and any(_has_float(v) for v in obj)


def test_what_orjson_refuses_falls_back() -> None:
    big = {"key": 2**70, "n": np.int64(3), "f": np.float32(0.5), "when": dt.datetime(2026, 1, 2, 3, 4, 5, 6)}
    assert json.loads(to_json(big)) == {"key": 2**70, "n": 3, "f": 0.5, "when": "2026-01-02T03:04:05.000006"}


@pytest.mark.parametrize("extra", [{}, {"big": 2**70}], ids=["orjson", "fallback"])
def test_non_finite_floats_are_null_on_both_paths(extra: dict[str, Any]) -> None:
    text = to_json({"nan": math.nan, "inf": [math.inf, -math.inf], "ok": 1.5, **extra})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written")) == {
        "nan": None, "inf": [None, None], "ok": 1.5, **extra}


def test_unknown_types_are_errors_not_strings() -> None:
    try:
        to_json({"x": object()})
    except TypeError as e:
        assert "object is not JSON serialisable" in str(e)
    else:
        raise AssertionError("an unknown type was written")
