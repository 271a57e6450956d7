"""The request schema of a realtime serve block, derived from the spec (never written by hand).

A prediction request names the entity (its key) and carries the request-time fields: the source
columns that the model's request feature groups read from the event being scored. Nothing else is
accepted, so a typo is an error rather than a silently ignored field. The same `RequestSchema`
validates bodies and renders the JSON Schema published in /openapi.json, so the two cannot disagree.

`as_of` is optional. It defaults to the event time field when the request groups read their
source's timestamp column (in training, request features are computed as of their own event's
time), and to now (UTC) otherwise.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlspec.diagnostics import did_you_mean
from mlspec.ir import expr as ir
from mlspec.ir.spec import ColumnDef, Model, Serve, Spec
from mlspec.ir.types import DType
from mlspec.runtime.score import groups_for

__all__ = ["AS_OF_FIELD", "MAX_BATCH", "Field", "FieldError", "RequestRow", "RequestSchema", "schema_for"]

AS_OF_FIELD = "as_of"
MAX_BATCH = 1000

_JSON_TYPE = {DType.INT: "integer", DType.FLOAT: "number", DType.BOOL: "boolean", DType.STRING: "string",
              DType.DATE: "string", DType.TIMESTAMP: "string"}
_FORMAT = {DType.DATE: "date", DType.TIMESTAMP: "date-time"}
_EXPECTED = {DType.INT: "an integer", DType.FLOAT: "a number", DType.BOOL: "true or false",
             DType.STRING: "a string", DType.DATE: "an ISO date string (YYYY-MM-DD)",
             DType.TIMESTAMP: "an ISO 8601 timestamp string"}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a request is invalid, naming the field (`instances[2].amount` inside a batch)."""

    field: str
    message: str

    def to_data(self) -> dict[str, str]:
        return {"field": self.field, "message": f"`{self.field}`: {self.message}"}


@dataclass(frozen=True, slots=True)
class Field:
    """One request field with the constraints its schema column declares."""

    name: str
    dtype: DType
    type_name: str
    required: bool
    nullable: bool
    allowed: tuple[int | float | str | bool, ...] | None = None
    value_range: tuple[float, float] | None = None
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": [_JSON_TYPE[self.dtype], "null"] if self.nullable else _JSON_TYPE[self.dtype]}
        if self.dtype in _FORMAT:
            out["format"] = _FORMAT[self.dtype]
        if self.allowed is not None:
            out["enum"] = [*self.allowed, None] if self.nullable else list(self.allowed)
        if self.value_range is not None:
            out["minimum"], out["maximum"] = self.value_range
        if self.description:
            out["description"] = self.description
        return out

    def convert(self, value: object) -> tuple[Any, str | None]:
        """The value as the evaluator wants it, or an error message."""
        if value is None:
            return (None, None) if self.nullable else (None, "must not be null")
        d = self.dtype
        if d is DType.INT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None, _wrong(self, value)
            if isinstance(value, float):
                if not value.is_integer():
                    return None, _wrong(self, value)
                value = int(value)
        elif d is DType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None, _wrong(self, value)
            value = float(value)
            if not math.isfinite(value):
                return None, "must be a finite number"
        elif d is DType.BOOL:
            if not isinstance(value, bool):
                return None, _wrong(self, value)
        elif d is DType.STRING:
            if not isinstance(value, str):
                return None, _wrong(self, value)
        elif d is DType.DATE:
            if not isinstance(value, str):
                return None, _wrong(self, value)
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                return None, f"{value!r} is not {_EXPECTED[d]}"
        elif d is DType.TIMESTAMP:
            parsed = parse_timestamp(value)
            if parsed is None:
                return None, f"{value!r} is not {_EXPECTED[d]}" if isinstance(value, str) else _wrong(self, value)
            value = parsed
        if self.allowed is not None and value not in self.allowed:
            return None, f"{value!r} is not one of {', '.join(repr(a) for a in self.allowed)}"
        if self.value_range is not None and isinstance(value, int | float):
            lo, hi = self.value_range
            if not lo <= value <= hi:
                return None, f"{value!r} is outside the range [{_num(lo)}, {_num(hi)}]"
        return value, None


@dataclass(frozen=True, slots=True)
class RequestRow:
    """A validated request row: who, as of when, and the event fields for request features."""

    key: Any
    as_of: dt.datetime  # naive UTC, like every timestamp inside mlspec
    request: dict[str, Any] | None  # key + request fields, for request feature groups; None without them
    fields: dict[str, Any]  # what the client sent for the request fields, as JSON values (for the log)


@dataclass(frozen=True)
class RequestSchema:
    """Entity key + request-time fields of one realtime serve block."""

    serve: str
    model: str
    key: Field
    fields: tuple[Field, ...]
    event_time: str | None  # the request field `as_of` defaults to, when the request source has one

    @property
    def names(self) -> tuple[str, ...]:
        return (self.key.name, *(f.name for f in self.fields), AS_OF_FIELD)

    def validate(self, body: object, where: str = "") -> RequestRow | list[FieldError]:
        """Check one row; every problem is reported at once, each naming its field."""
        if not isinstance(body, Mapping):
            return [FieldError(where or "body", f"must be a JSON object, got {_json_type(body)}")]
        errors: list[FieldError] = []
        known = self.names
        for name in body:
            if name not in known:
                hint = did_you_mean(str(name), known)
                errors.append(FieldError(where + str(name), "unknown field" + (f"; {hint}" if hint else "")
                                         + f" (fields: {', '.join(known)})"))
        key, err = self.key.convert(body.get(self.key.name)) if self.key.name in body else (None, "missing field")
        if err:
            errors.append(FieldError(where + self.key.name, err))
        values: dict[str, Any] = {}
        sent: dict[str, Any] = {}
        for f in self.fields:
            if f.name not in body:
                if f.required:
                    errors.append(FieldError(where + f.name, f"missing field ({f.type_name}, required)"))
                values[f.name] = None
                continue
            sent[f.name] = body[f.name]
            value, err = f.convert(body[f.name])
            if err:
                errors.append(FieldError(where + f.name, err))
            values[f.name] = value
        as_of: dt.datetime | None = None
        if body.get(AS_OF_FIELD) is not None:
            as_of = parse_timestamp(body[AS_OF_FIELD])
            if as_of is None:
                errors.append(FieldError(where + AS_OF_FIELD, f"{body[AS_OF_FIELD]!r} is not an ISO 8601 date or "
                                         "timestamp"))
        if errors:
            return errors
        if as_of is None:
            event = values.get(self.event_time) if self.event_time else None
            if isinstance(event, dt.datetime):
                as_of = event
            elif isinstance(event, dt.date):  # a date-stamped event happens at its midnight (UTC)
                as_of = dt.datetime(event.year, event.month, event.day)
            else:
                as_of = now_utc()
        request = {self.key.name: key, **values} if self.fields else None
        return RequestRow(key, as_of, request, sent)

    def json_schema(self) -> dict[str, Any]:
        props = {self.key.name: self.key.json_schema()}
        for f in self.fields:
            props[f.name] = f.json_schema()
        props[AS_OF_FIELD] = {"type": "string", "format": "date-time",
                              "description": "evaluate features as of this time (UTC when no offset); default: "
                                             + (f"the event time `{self.event_time}`" if self.event_time
                                                else "now, UTC")}
        required = [self.key.name, *(f.name for f in self.fields if f.required)]
        return {"type": "object", "title": f"{self.serve} request",
                "description": f"One entity to score with the champion of `{self.model}`.",
                "properties": props, "required": required, "additionalProperties": False}


def schema_for(spec: Spec, serve: Serve) -> RequestSchema:
    """Derive the request schema: the entity key, plus the event columns the model's features read.

    A model with request feature groups scores an event (a row of the groups' source). Its fields
    are that source's columns read by any of the model's features: by the request groups, and by
    history groups over the same source, because in training each event is a row of its own
    history, and the online path counts the live event the same way. Label columns are never
    fields: the outcome of the event being scored is unknown when it is scored.
    """
    model = spec.model(serve.model)
    key_name = spec.entity(model.entity).key
    groups = [spec.group(g) for g in groups_for(spec, _union(spec, serve))]
    key_col = _key_column(spec, model, key_name)
    key = Field(key_name, key_col.dtype if key_col else DType.INT, key_col.type_name if key_col else "int",
                required=True, nullable=False, allowed=key_col.allowed if key_col else None,
                value_range=key_col.value_range if key_col else None, description=f"the `{model.entity}` to score")
    event_sources = list(dict.fromkeys(g.source for g in groups if g.request))
    outcomes = {(lab.source, lab.value) for lab in spec.labels}
    fields: dict[str, Field] = {}
    event_time: str | None = None
    for src in event_sources:
        source = spec.source(src)
        for g in sorted(groups, key=lambda x: not x.request):  # request groups first: they name the field
            if g.source != src:
                continue
            for f in g.features:
                for node in ir.walk(f.expr):
                    if not isinstance(node, ir.Col) or node.name == key_name or node.name in fields:
                        continue
                    col = source.column(node.name)
                    if col is None or (src, col.name) in outcomes:
                        continue
                    how = (f"read by request features `{g.name}`" if g.request
                           else f"the event counts in its own history (`{g.name}`)")
                    fields[node.name] = _field(col, f"`{source.name}.{col.name}`, {how}")
                    if node.name == source.timestamp:
                        event_time = node.name
    order = {(s, c.name): (i, j) for i, s in enumerate(event_sources)
             for j, c in enumerate(spec.source(s).columns)}
    ordered = tuple(sorted(fields.values(), key=lambda x: min(v for (s, c), v in order.items() if c == x.name)))
    return RequestSchema(serve.name, model.name, key, ordered, event_time)


def parse_timestamp(value: object) -> dt.datetime | None:
    """ISO 8601 date or timestamp -> naive UTC (a date is its midnight; no offset means UTC)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
        return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):  # not ISO 8601, or out of range once in UTC (year 1 or 9999)
        return None


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _union(spec: Spec, serve: Serve) -> Model:
    """The serve's model, widened by its shadow's features: both read the same request body."""
    model = spec.model(serve.model)
    if serve.shadow is None:
        return model
    extra = tuple(q for q in spec.model(serve.shadow).features if q not in model.features)
    return Model(model.name, model.algorithm, model.task, model.label, model.entity, model.features + extra,
                 model.params, model.split, model.gate)


def _field(col: ColumnDef, description: str) -> Field:
    return Field(col.name, col.dtype, col.type_name, required=col.not_null, nullable=not col.not_null,
                 allowed=col.allowed, value_range=col.value_range, description=description)


def _key_column(spec: Spec, model: Model, key: str) -> ColumnDef | None:
    keyed = [s for s in spec.sources if s.key == key]
    for s in [*keyed, *(spec.source(spec.group(g).source) for g in groups_for(spec, model))]:
        col = s.column(key)
        if col is not None:
            return col
    return None


def _wrong(f: Field, value: object) -> str:
    return f"expected {_EXPECTED[f.dtype]} ({f.type_name}), got {_json_type(value)} {_short(value)}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, Mapping) else type(value).__name__


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, Mapping | list) else ""
    return text if len(text) <= 40 else text[:37] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
