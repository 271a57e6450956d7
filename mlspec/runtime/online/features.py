"""Online features: one entity's model features as of a time, from the online store.

The same IR the batch engines compile is evaluated here by the online evaluator
(mlspec/runtime/engines/online.py) over the entity's stored rows, group by group in dependency
order, each group seeing the features of the groups it references. This is the serving path;
`mlspec verify` proves it equal to the batch path.

Reading and decoding an entity's rows costs more than evaluating its features, so the rows,
prepared for evaluation, are kept in a bounded cache that is valid while the store's version
token is unchanged: a write by another process (or connection) empties it, and rows this
service writes itself (`write_rows`) are added to the cached histories instead.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlspec.ir.spec import Model, Spec
from mlspec.ir.types import DType
from mlspec.runtime.engines.online import Evaluator, History, to_timestamp
from mlspec.runtime.online.materialize import namespace
from mlspec.runtime.online.store import OnlineStore, decode_row, encode_row, key_text
from mlspec.runtime.score import groups_for

DEFAULT_CACHE_ROWS = 200_000


@dataclass(frozen=True)
class OnlineResult:
    """The model's feature vector (qualified name -> value, in the model's order), and whether
    the store knows the entity at all. An unknown entity gets what the features mean over no
    rows (docs/semantics.md): counts and sums 0, everything else null, `as_of`-only features
    computed; it is never an error."""

    values: dict[str, Any]
    known_entity: bool


@dataclass(frozen=True)
class _Step:
    group: str
    evaluator: Evaluator
    namespace: str | None  # None: a request group (reads the request, not the store)
    events: bool = False  # the group reads the model's event source, of which the request is one row


class HistoryCache:
    """Entities' prepared rows by (source, key), valid for one store at one version.

    Least recently used entries go first once more than `max_rows` rows are held (an entity
    without rows counts as one). Thread-safe: an entry read under an older version is never
    stored under a newer one.
    """

    def __init__(self, max_rows: int = DEFAULT_CACHE_ROWS) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._store: OnlineStore | None = None
        self._version: object = None
        self._entries: OrderedDict[tuple[str, str], History] = OrderedDict()
        self._rows = 0
        self.hits = self.misses = 0

    def sync(self, store: OnlineStore) -> object:
        """Ask the store for its version (once per request) and forget everything older.
        Returns the token to pass to `put`; None means do not cache (caching is off, or the
        store has never been written)."""
        if self.max_rows <= 0:
            return None
        version = store.version()
        with self._lock:
            if store is not self._store or version != self._version:
                self._entries.clear()
                self._rows = 0
                self._store, self._version = store, version
        return version

    def get(self, source: str, key: str) -> History | None:
        with self._lock:
            found = self._entries.get((source, key))
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end((source, key))
            return found

    def put(self, source: str, key: str, history: History, version: object) -> None:
        with self._lock:
            if version == self._version and (source, key) not in self._entries:
                self._add((source, key), history)

    def advance(self, store: OnlineStore, before: object, after: object,
                update: Callable[[str, str, History], History | None], touched: Iterable[tuple[str, str]]) -> bool:
        """Move from `before` to `after` across a write this process made (no other write between):
        each touched (source, key) entry is replaced by `update(source, key, history)`, or dropped
        when that gives None. False (and nothing kept) when the cache was not at `before`."""
        with self._lock:
            if store is not self._store or before is None or self._version != before:
                return False
            for source, key in touched:
                old = self._entries.pop((source, key), None)
                if old is None:
                    continue
                self._rows -= _size(old)
                new = update(source, key, old)
                if new is not None:
                    self._add((source, key), new)
            self._version = after
            return True

    def _add(self, key: tuple[str, str], history: History) -> None:
        """Hold `history` (the lock held), least recently used entries out beyond `max_rows`."""
        if _size(history) > self.max_rows:
            return
        self._entries[key] = history
        self._rows += _size(history)
        while self._rows > self.max_rows:
            _, old = self._entries.popitem(last=False)
            self._rows -= _size(old)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def rows(self) -> int:
        """Rows held (an entity without rows counts as one)."""
        return self._rows


def _size(history: History) -> int:
    return max(1, len(history))  # an entity without rows still takes an entry


class FeatureService:
    """Compiles each group's evaluator once per spec and serves many entities with them.

    Holds no connection: the store is passed per call, so one service can serve any store.
    `cache_rows` bounds the cache of prepared rows (0: read the store on every call).
    """

    def __init__(self, spec: Spec, cache_rows: int = DEFAULT_CACHE_ROWS) -> None:
        self.spec = spec
        self.cache = HistoryCache(cache_rows)
        self._evaluators: dict[str, Evaluator] = {}
        self._plans: dict[str, tuple[tuple[_Step, ...], tuple[tuple[str, str, str], ...]]] = {}

    def evaluator(self, group: str) -> Evaluator:
        ev = self._evaluators.get(group)
        if ev is None:
            ev = self._evaluators[group] = Evaluator(self.spec, self.spec.group(group))
        return ev

    def plan(self, model: Model | str) -> tuple[tuple[_Step, ...], tuple[tuple[str, str, str], ...]]:
        """The groups to evaluate (upstream first) and the model's features (qualified, group, name)."""
        m = self.spec.model(model) if isinstance(model, str) else model
        found = self._plans.get(m.name)
        if found is None:
            steps = []
            event_source = self.spec.label(m.label).source
            for name in groups_for(self.spec, m):
                g = self.spec.group(name)
                ns = None if g.request else namespace(self.spec, g.source, self.spec.entity(g.entity).key)
                steps.append(_Step(name, self.evaluator(name), ns, g.source == event_source))
            wanted = tuple((q, q.split(".", 1)[0], q.split(".", 1)[1]) for q in m.features)
            found = self._plans[m.name] = (tuple(steps), wanted)
        return found

    def features(self, model: Model | str, store: OnlineStore, key: object, as_of: dt.datetime | dt.date,
                 request: Mapping[str, Any] | None = None) -> OnlineResult:
        """Evaluate every group the model needs for one entity as of `as_of` (naive = UTC)."""
        steps, wanted = self.plan(model)
        when = to_timestamp(as_of)
        version = self.cache.sync(store)
        text = key_text(key)
        histories: dict[str, History] = {}
        done: dict[str, dict[str, Any]] = {}
        known = False
        for step in steps:
            extra = None
            if step.namespace is None:
                history = step.evaluator.empty
            else:
                if step.namespace not in histories:
                    histories[step.namespace] = self._history(store, step, text, version)
                history = histories[step.namespace]
                known = known or history.latest is not None
                if request is not None and step.events and "__seq" not in request:
                    # In training each labelled event is a row of its own history (ts <= as_of);
                    # a live request is that event, not yet in the store: count it the same way.
                    extra = self._event_row(step, key, when, request)
            done[step.group] = step.evaluator.evaluate_history(when, history, extra, request, done)
        return OnlineResult({q: done[group][name] for q, group, name in wanted}, known)

    def write_rows(self, store: OnlineStore, source: str, key_column: str, rows: list[dict[str, Any]],
                   ts_column: str | None = None) -> int:
        """Write rows to the store and keep the cache: the entities written get their new rows added
        to their cached history, the others keep theirs (a consumer writing the events it scores
        would otherwise empty the cache on every batch). Returns rows newly written."""
        keyed = [r for r in rows if r.get(key_column) is not None]
        result = store.write_rows_tracked(source, key_column, rows, ts_column)
        by_key: dict[str, list[dict[str, Any]]] = {}
        for r in keyed:  # as the store holds them: the same types a read would give
            by_key.setdefault(key_text(r[key_column]), []).append(decode_row(encode_row(r)))

        def update(_: str, key: str, history: History) -> History | None:
            if result.written != len(keyed):  # some rows were already stored: read the entity again
                return None
            # A reader in another thread may have cached this entity after the write committed but
            # under the version before it: rows it already holds are not added twice.
            held = {r.get("__seq") for r in history.stored}
            return History([*history.stored, *(r for r in by_key[key] if r.get("__seq") not in held)], ts_column)

        self.cache.advance(store, result.before, result.after, update, [(source, k) for k in by_key])
        return result.written

    def _history(self, store: OnlineStore, step: _Step, key: str, version: object) -> History:
        assert step.namespace is not None
        history = self.cache.get(step.namespace, key) if version is not None else None
        if history is None:
            history = step.evaluator.history(store.rows_for(step.namespace, key))
            if version is not None:
                self.cache.put(step.namespace, key, history, version)
        return history

    def _event_row(self, step: _Step, key: object, when: dt.datetime, request: Mapping[str, Any]) -> dict[str, Any]:
        source = self.spec.source(self.spec.group(step.group).source)
        row: dict[str, Any] = {c.name: request.get(c.name) for c in source.columns}
        row[self.spec.entity(self.spec.group(step.group).entity).key] = key
        if source.timestamp:  # the event happens now: as_of, or its day in a date column
            column = source.column(source.timestamp)
            row[source.timestamp] = when.date() if column is not None and column.dtype is DType.DATE else when
        row["__seq"] = 2**62  # after every stored row
        return row


def online_features(spec: Spec, model: Model | str, store: OnlineStore, key: object, as_of: dt.datetime | dt.date,
                    request: Mapping[str, Any] | None = None, service: FeatureService | None = None) -> OnlineResult:
    """One entity's features as of a time. Pass a long-lived `service` when serving many requests."""
    return (service or FeatureService(spec)).features(model, store, key, as_of, request)
