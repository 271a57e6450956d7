"""IR -> plain data (JSON-ready), without spans: the input of fingerprints, plan and registry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from typing import Any

JSON = dict[str, Any] | list[Any] | str | int | float | bool | None


_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...] | None] = {}  # class -> its serialised field names, None: not a dataclass


def _fields(cls: type) -> tuple[str, ...] | None:
    """The field names `to_data` writes for instances of `cls` (not spans), once per class."""
    try:
        return _FIELDS[cls]
    except KeyError:
        names = (tuple(f.name for f in dataclasses.fields(cls) if not (f.name == "span" or f.name.endswith("_span")))
                 if dataclasses.is_dataclass(cls) else None)
        _FIELDS[cls] = names
        return names


def to_data(obj: object) -> JSON:
    """Recursively convert IR nodes; every dataclass records its class as `kind` unless it has one."""
    cls = type(obj)
    if cls in _PLAIN:  # exactly these types, so enums (a StrEnum is a str) go on to their own case
        return obj  # type: ignore[return-value]  # (one of _PLAIN)
    names = _fields(cls)
    if names is not None:
        out: dict[str, Any] = {name: to_data(getattr(obj, name)) for name in names}
        out.setdefault("kind", cls.__name__)
        if out["kind"] != cls.__name__:
            out["node"] = cls.__name__
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
