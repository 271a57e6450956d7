"""IR -> plain data (JSON-ready), without spans: the input of fingerprints, plan and registry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from typing import Any

JSON = dict[str, Any] | list[Any] | str | int | float | bool | None


def to_data(obj: object) -> JSON:
    """Recursively convert IR nodes; every dataclass records its class as `kind` unless it has one."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.name == "span" or f.name.endswith("_span"):
                continue
            out[f.name] = to_data(getattr(obj, f.name))
        out.setdefault("kind", type(obj).__name__)
        if out["kind"] != type(obj).__name__:
            out["node"] = type(obj).__name__
        return out
    if isinstance(obj, Enum):
        return to_data(obj.value)
    if isinstance(obj, tuple | list):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_data(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def canonical_json(data: JSON) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(data: JSON) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()
