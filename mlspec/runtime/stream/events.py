"""A Redis stream entry -> a source row typed as the warehouse holds it, or why it is dead-lettered.

An event is one row of the source that declares `stream = "NAME"`: one entry field per column,
values as text (`XADD sensor_readings * device_id 7 read_at 2026-03-01T10:00:00Z temperature 21.5`).
A field that is absent, or empty, is null (as an empty CSV cell is). Values parse as:

int        decimal digits with an optional sign, within 64 bits
float      decimal or scientific notation; nan and +-inf become null, as extraction makes them
bool       true / false / t / f / 1 / 0, any case
string     the text as it is (UTF-8)
date       YYYY-MM-DD
timestamp  ISO 8601; with an offset it is converted to UTC, without one it is UTC

Then the constraints extraction quarantines rows for: not null (and the source key, its timestamp
and the entity key), `in (...)`, `range [lo, hi]`, `references` (checked against the online store
when the referenced source is kept there by key, skipped otherwise), and the row rules of `check`
blocks over the source (`on_fail = quarantine` or `fail`; a rule that is null passes, as in batch).
Reasons read like the quarantine's. Fields the schema does not declare are errors (a typo must not
become a silent null). `unique` is not checked across the stream's history (that needs a global
index); a redelivered entry is the same event and is written once (see `event_seq`).

Each event gets `__seq` = 2**52 + ms * 1024 + n from its entry id `ms-n`: above every __seq the
warehouse assigns (row counts), exact in a Redis sorted-set score (below 2**53 until the year 2109),
ordered like the stream, and the same on every delivery, so appending it to the online store is
idempotent. An entry id with n >= 1024 (more than 1024 entries added in one millisecond) has no
such seq and is dead-lettered saying so.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlspec.diagnostics import did_you_mean
from mlspec.ir.spec import ColumnDef, Feature, FeatureGroup, Source, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.online import Evaluator
from mlspec.runtime.online.store import OnlineStore
from mlspec.runtime.serving.schema import parse_timestamp

__all__ = ["SEQ_BASE", "SEQ_PER_MS", "Event", "EventSchema", "Rejected", "entry_ms", "event_seq"]

SEQ_BASE = 2**52
SEQ_PER_MS = 1024
_SEQ_LIMIT = 2**53
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_NON_FINITE = frozenset({"nan", "inf", "infinity"})
_TRUE, _FALSE = frozenset({"true", "t", "1"}), frozenset({"false", "f", "0"})
_INT64 = 2**63
_REFERENCE_TTL_S = 60.0
_REFERENCE_CACHE = 100_000


def event_seq(entry_id: str) -> int | None:
    """The event's __seq in the online store (see the module docstring); None when it has none."""
    ms, n = _split_id(entry_id)
    if n >= SEQ_PER_MS:
        return None
    seq = SEQ_BASE + ms * SEQ_PER_MS + n
    return seq if seq < _SEQ_LIMIT else None


def entry_ms(entry_id: str) -> int:
    """When Redis added the entry (ms since the epoch), from its id."""
    return _split_id(entry_id)[0]


def _split_id(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


@dataclass(frozen=True, slots=True)
class Event:
    """A valid event: its entry id, the row (source columns + __seq), the entity key, its time."""

    id: str
    row: dict[str, Any]
    key: Any
    time: dt.datetime  # naive UTC: the row's timestamp, or the entry's time for a source without one


@dataclass(frozen=True, slots=True)
class Rejected:
    """An entry that cannot be scored: every reason, and its fields as received (text)."""

    id: str
    reasons: tuple[str, ...]
    fields: dict[str, str]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


class EventSchema:
    """Decodes and validates the entries of one source's stream for one entity key column."""

    def __init__(self, spec: Spec, source: Source, entity_key: str,
                 references: Mapping[str, str] | None = None) -> None:
        """`references`: column -> online-store namespace keyed by the referenced column, for the
        `references` constraints that can be checked against the store."""
        self.source = source
        self.entity_key = entity_key
        self.columns = {c.name: c for c in source.columns}
        self.required = {c.name for c in source.columns if c.not_null} | {
            n for n in (source.key, source.timestamp, entity_key) if n}
        self.references = dict(references or {})
        self._known: dict[tuple[str, object], float] = {}  # (namespace, value) -> until (monotonic)
        rules = [r for c in spec.checks if c.target_kind == "source" and c.target == source.name
                 for r in c.rules if r.level == "row" and r.on_fail in ("quarantine", "fail")]
        self.rule_texts = tuple(r.text for r in rules)
        features = tuple(Feature("__check", f"rule{i}", r.expr, DType.BOOL, "row") for i, r in enumerate(rules))
        self._rules = Evaluator(spec, FeatureGroup("__check", "", source.name, features, request=True)) \
            if rules else None

    def decode(self, entry_id: str, fields: Mapping[bytes, bytes], store: OnlineStore | None = None) -> Event | Rejected:
        """The event, or every reason it is rejected."""
        text, reasons = _texts(fields)
        for name in text:
            if name not in self.columns:
                hint = did_you_mean(name, self.columns)
                reasons.append(f"unknown field `{name}`" + (f" ({hint})" if hint else ""))
        row: dict[str, Any] = {}
        for col in self.source.columns:
            value, problem = _parse(col, text.get(col.name))
            if problem is None:
                problem = self._constraint(col, value, store)
            if problem is not None:
                reasons.append(problem)
            row[col.name] = value
        seq = event_seq(entry_id)
        if seq is None:
            reasons.append(f"entry id {entry_id} has no place in the online store's order (more than "
                           f"{SEQ_PER_MS} entries in one millisecond, or a time past the year 2109)")
        if not reasons and self._rules is not None:
            when = self._time(entry_id, row)
            verdicts = self._rules.evaluate_history(when, self._rules.empty, request=row)
            reasons.extend(f"{t} is false" for t, ok in zip(self.rule_texts, verdicts.values(), strict=True)
                           if ok is False)
        if reasons:
            return Rejected(entry_id, tuple(reasons), text)
        assert seq is not None
        row["__seq"] = seq
        return Event(entry_id, row, row[self.entity_key], self._time(entry_id, row))

    def _time(self, entry_id: str, row: Mapping[str, Any]) -> dt.datetime:
        t = row.get(self.source.timestamp) if self.source.timestamp else None
        if isinstance(t, dt.datetime):
            return t
        if isinstance(t, dt.date):
            return dt.datetime(t.year, t.month, t.day)
        return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=entry_ms(entry_id))

    def _constraint(self, col: ColumnDef, value: Any, store: OnlineStore | None) -> str | None:
        if value is None:
            return f"{col.name} is null" if col.name in self.required else None
        if col.allowed is not None and value not in col.allowed:
            shown = ", ".join(str(v) for v in col.allowed)
            return f"{col.name} = {_show(value)} is not one of ({shown})"
        if col.value_range is not None and isinstance(value, int | float) and not isinstance(value, bool):
            lo, hi = col.value_range
            if not lo <= value <= hi:
                return f"{col.name} = {_show(value)} is outside [{lo:g}, {hi:g}]"
        ns = self.references.get(col.name)
        if ns is not None and store is not None and col.references is not None and not self._exists(store, ns, value):
            return f"{col.name} = {_show(value)} has no match in {'.'.join(col.references)}"
        return None

    def _exists(self, store: OnlineStore, namespace: str, value: object) -> bool:
        """Whether the store holds rows of `value` in `namespace`; a match is remembered for a minute."""
        now = time.monotonic()
        if self._known.get((namespace, value), 0.0) > now:
            return True
        if not store.rows_for(namespace, value):
            return False
        if len(self._known) >= _REFERENCE_CACHE:
            self._known.clear()
        self._known[(namespace, value)] = now + _REFERENCE_TTL_S
        return True


def _texts(fields: Mapping[bytes, bytes]) -> tuple[dict[str, str], list[str]]:
    """Field names and values as text; bytes that are not UTF-8 are a reason (and shown replaced)."""
    out: dict[str, str] = {}
    reasons: list[str] = []
    for raw_name, raw_value in fields.items():
        name = _text(raw_name)
        value = _text(raw_value)
        if name is None or value is None:
            shown = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else str(raw_name)
            reasons.append(f"field `{shown}` is not valid UTF-8")
            value = value if value is not None else bytes(raw_value).decode("utf-8", "replace")
            name = name if name is not None else shown
        out[name] = value
    return out, reasons


def _text(v: bytes | str) -> str | None:
    if isinstance(v, str):
        return v
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse(col: ColumnDef, text: str | None) -> tuple[Any, str | None]:
    """The value as the warehouse would hold it, or the reason it is not one."""
    if text is None or text == "":
        return None, None
    d = col.dtype
    value: Any = None
    if d is DType.STRING:
        return text, None
    if d is DType.INT:
        if _INT.fullmatch(text) and -_INT64 <= (n := int(text)) < _INT64:
            value = n
    elif d is DType.FLOAT:
        if text.strip("+-").lower() in _NON_FINITE:
            return None, None
        if _FLOAT.fullmatch(text):
            f = float(text)
            return (f if math.isfinite(f) else None), None
    elif d is DType.BOOL:
        low = text.lower()
        value = True if low in _TRUE else False if low in _FALSE else None
    elif d is DType.DATE:
        try:
            value = dt.date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            value = None
    elif d is DType.TIMESTAMP:
        value = parse_timestamp(text)
    if value is None:
        return None, f"{col.name} = {_show(text)} is not a {col.type_name}"
    return value, None


def _show(value: object) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def reference_namespaces(source: Source, kept: Sequence[tuple[str, str, str]]) -> dict[str, str]:
    """column -> namespace, for the source's `references` whose target the store keeps by that column.
    `kept`: (source, key column, namespace) of what the online store holds."""
    out: dict[str, str] = {}
    for col in source.columns:
        if col.references is None:
            continue
        for src, key, ns in kept:
            if (src, key) == col.references:
                out[col.name] = ns
    return out
