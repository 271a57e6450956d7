"""`to_data` caches field names per class; its output must stay what the plain recursion gives
(fingerprints, plans and the registry are built from it)."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from mlspec.compiler import compile_paths
from mlspec.ir.serialize import to_data
from mlspec.ir.types import DType
from mlspec.load import load

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.mlspec"))


def plain_to_data(obj: object) -> Any:
    """The definition: dataclasses (spans left out) with their `kind`, enums as values, lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.name == "span" or f.name.endswith("_span"):
                continue
            out[f.name] = plain_to_data(getattr(obj, f.name))
        out.setdefault("kind", type(obj).__name__)
        if out["kind"] != type(obj).__name__:
            out["node"] = type(obj).__name__
        return out
    if isinstance(obj, Enum):
        return plain_to_data(obj.value)
    if isinstance(obj, tuple | list):
        return [plain_to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): plain_to_data(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__}")


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_same_data_as_the_plain_recursion(spec: Path) -> None:
    compiled = compile_paths([spec])
    assert compiled.spec is not None
    for obj in (compiled.spec, *load([spec]).modules):
        assert json.dumps(to_data(obj)) == json.dumps(plain_to_data(obj))  # key order included


def test_enums_kinds_and_refusals() -> None:
    @dataclasses.dataclass(frozen=True)
    class Node:
        kind: str
        dtype: DType
        span: int = 0

    assert to_data(Node("x", DType.INT)) == {"kind": "x", "dtype": "int", "node": "Node"}
    assert to_data(DType.FLOAT) == "float" and type(to_data(DType.FLOAT)) is str
    with pytest.raises(TypeError, match="cannot serialise type"):
        to_data(Node)
    with pytest.raises(TypeError, match="cannot serialise set"):
        to_data({1})
