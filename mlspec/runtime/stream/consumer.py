"""The consumer loop of one streaming serve block.

For each batch of entries read from the input stream (new ones, this consumer's own pending ones
after an error, or stale ones claimed from a dead consumer):

1. decode and validate each entry (events.py); a rejected one becomes a dead-letter entry;
2. append the valid events to the online store, in every namespace the served models keep the
   source under, with their stream-derived __seq (idempotent: a redelivered event is written
   once), through `FeatureService.write_rows`, which adds them to the entities' cached histories;
3. compute the model's features for each event's entity as of the event's time through the
   online feature path (`FeatureService`), which now sees the event itself (time <= as_of) and
   every earlier one: what the batch engines compute for that entity as of that time;
4. encode with the champion's stored encoding and score the batch with one predict call;
5. commit: results and dead letters appended and entries acknowledged atomically (delivery.py).

A Redis or online-store error fails the batch: nothing of it is acknowledged, the consumer backs
off, re-reads its own pending entries and tries again. Any other error while decoding or scoring
one event is that event's: it is dead-lettered as `internal` (with the error), and the rest of the
batch goes on (a model that refuses the whole batch dead-letters each of its events).
The champion is read once per batch and swapped by a watcher thread when `mlspec promote` or
`mlspec rollback` moves the pointer, so a batch is scored by one version whole.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlspec.ir.spec import Serve, Source, Spec
from mlspec.runtime.encode import encode_row
from mlspec.runtime.errors import RunError
from mlspec.runtime.online.features import FeatureService
from mlspec.runtime.online.materialize import SourceNeed, source_needs
from mlspec.runtime.online.store import OnlineStore, key_text
from mlspec.runtime.online.store import encode_row as encode_values
from mlspec.runtime.registry import Registry
from mlspec.runtime.serving.models import ChampionHolder, LoadedModel, ModelWatcher
from mlspec.runtime.stream.delivery import Delivery, Entry, Outgoing
from mlspec.runtime.stream.events import Event, EventSchema, Rejected, entry_ms, reference_namespaces
from mlspec.runtime.stream.metrics import StreamMetrics

__all__ = ["StreamConfig", "StreamConsumer", "dead_letter_name", "output_name", "stream_source"]

log = logging.getLogger("mlspec.stream")
_NODE = "stream"
_MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class StreamConfig:
    consumer: str
    batch: int = 100  # entries per XREADGROUP
    block_ms: int = 1000  # longest wait for new entries; also how soon a stop request is seen
    claim_idle_ms: int = 30_000  # a pending entry idle this long belongs to a dead consumer
    claim_every_s: float = 5.0
    prune_every_s: float = 60.0
    start: str = "0"  # where a new group starts: "0" = the stream's first entry, "$" = only new ones
    output_maxlen: int = 0  # approximate cap on the output stream (0: none)
    with_features: bool = False  # add the feature vector to each output entry
    poll_seconds: float = 0.2  # champion pointer polling
    dead_letter: str | None = None  # default: <output>.dead


def stream_source(spec: Spec, serve: Serve) -> Source:
    found = [s for s in spec.sources if s.stream is not None and s.stream == serve.input_stream]
    if not found:
        raise RunError(_NODE, f"serve `{serve.name}` reads stream `{serve.input_stream}`, which no source declares",
                       f'add stream = "{serve.input_stream}" to the source its events follow')
    return found[0]


def output_name(serve: Serve) -> str:
    """The output stream: the serve block's `output`, else `<input>.scores`."""
    return serve.output_stream or f"{serve.input_stream}.scores"


def dead_letter_name(serve: Serve) -> str:
    return f"{output_name(serve)}.dead"


def group_name(serve: Serve) -> str:
    return f"mlspec.{serve.name}"


class StreamConsumer:
    """Consumes one streaming serve block's input stream until `stop()`."""

    def __init__(self, spec: Spec, root: Path, store: OnlineStore, client: Any, serve: Serve, config: StreamConfig,
                 registry: Registry | None = None) -> None:
        from mlspec.runtime.warehouse import STATE_DIR

        self.spec, self.root, self.store, self.client, self.serve, self.config = spec, root, store, client, serve, config
        self.model = spec.model(serve.model)
        self.source = stream_source(spec, serve)
        key = spec.entity(self.model.entity).key
        if self.source.column(key) is None:
            raise RunError(_NODE, f"source `{self.source.name}` (stream `{serve.input_stream}`) has no column `{key}`, "
                           f"the key of entity `{self.model.entity}` that model `{self.model.name}` scores",
                           f"add `{key}` to the source's schema")
        needs = source_needs(spec)
        self.needs: list[SourceNeed] = [n for n in needs if n.source == self.source.name]
        kept = [(n.source, n.key_column, n.namespace) for n in needs]
        self.schema = EventSchema(spec, self.source, key, reference_namespaces(self.source, kept))
        self.features = FeatureService(spec)
        self.metrics = StreamMetrics(serve.name)
        self.registry = registry or Registry(root / STATE_DIR / "registry")
        self.holder = ChampionHolder(self.registry, self.model.name, self.model.features, on_swap=self._swapped)
        self.watcher = ModelWatcher([self.holder], config.poll_seconds)
        self.output, self.dead = output_name(serve), config.dead_letter or dead_letter_name(serve)
        self.group = group_name(serve)
        self.delivery = Delivery(client, serve.input_stream or "", self.output, self.dead, self.group, config.consumer,
                                 claim_idle_ms=config.claim_idle_ms, output_maxlen=config.output_maxlen)
        self._stop = threading.Event()
        self._latest: dt.datetime | None = None  # newest event time written, for pruning
        self.started = False

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the champion, watch its pointer, make sure the consumer group exists."""
        if self.started:
            return
        self.holder.refresh()
        self.watcher.start()
        self.delivery.ensure_group(self.config.start)
        self.started = True

    def stop(self) -> None:
        """Ask the loop to finish its batch and return (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self.watcher.stop()

    def _swapped(self, previous: LoadedModel | None, model: LoadedModel) -> None:
        if previous is not None:
            self.metrics.reloads.labels(model.name).inc()
        self.metrics.set_model(model.name, previous.version if previous else None, model.version)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the champion is loaded and Redis and the online store answer."""
        problems: list[str] = []
        current = self.holder.current
        if current is None:
            problems.append(f"model `{self.model.name}`: {self.holder.last_error or 'not loaded yet'}")
        try:
            redis_ok = bool(self.client.ping())
        except Exception as e:
            redis_ok = False
            problems.append(f"stream Redis: {type(e).__name__}: {e}")
        else:
            if not redis_ok:
                problems.append("stream Redis does not answer")
        if not self.store.ping():
            problems.append("online store does not answer")
        detail: dict[str, Any] = {"ready": not problems, "serve": self.serve.name, "model": self.model.name,
                                  "version": current.version if current else None, "input": self.serve.input_stream,
                                  "output": self.output, "dead_letter": self.dead, "group": self.group,
                                  "consumer": self.config.consumer}
        if problems:
            detail["problems"] = problems
        return not problems, detail

    def refresh_group_metrics(self) -> None:
        """pending and lag gauges from XINFO GROUPS (called when /metrics is scraped)."""
        info = self.delivery.group_info()
        self.metrics.pending.set(info["pending"] or 0)
        if info["lag"] is not None:
            self.metrics.lag.set(info["lag"])

    # ---- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stop(): own pending entries first, stale ones claimed now and then, new ones."""
        self.start()
        cfg = self.config
        own_pending = True
        next_claim = next_prune = 0.0
        backoff = 0.0
        while not self._stop.is_set():
            if self.holder.current is None:  # not ready: leave the entries to consumers that can score
                self._stop.wait(cfg.poll_seconds)
                continue
            try:
                now = time.monotonic()
                if own_pending:
                    entries = self.delivery.read_own_pending(cfg.batch)
                    own_pending = bool(entries)
                elif now >= next_claim:
                    entries, deleted = self.delivery.claim_stale(cfg.batch)
                    self.metrics.claimed.inc(len(entries))
                    self.metrics.deleted.inc(len(deleted))
                    next_claim = now if len(entries) >= cfg.batch else now + cfg.claim_every_s
                else:
                    entries = self.delivery.read_new(cfg.batch, cfg.block_ms)
                if entries:
                    self.process(entries)
                if now >= next_prune and self._latest is not None:
                    self.prune()
                    next_prune = now + cfg.prune_every_s
                backoff = 0.0
            except Exception as e:
                if not _retryable(e):
                    raise
                self.metrics.errors.inc()
                own_pending = True  # whatever was read and not committed is ours to finish
                backoff = min(_MAX_BACKOFF_S, max(0.1, backoff * 2))
                log.warning("%s: %s: %s; retrying in %.1fs", self.serve.name, type(e).__name__, e, backoff)
                self._stop.wait(backoff)

    def process(self, entries: Sequence[Entry]) -> None:
        """Score one batch and commit it (see the module docstring)."""
        t0 = time.perf_counter()
        model = self.holder.current
        assert model is not None
        gone = [i for i, f in entries if f is None]
        if gone:  # deleted from the stream while pending (trimmed): nothing to score
            self.client.xack(self.delivery.input, self.group, *gone)
            self.metrics.deleted.inc(len(gone))
        live = [(i, f) for i, f in entries if f is not None]
        if not live:
            return
        self.metrics.read.inc(len(live))
        try:
            decoded = [self._decode(i, f) for i, f in live]
            events = [d for d in decoded if isinstance(d, Event)]
            self._append(events)
            results = self._score(model, events)
        except Exception as e:
            if _retryable(e):
                self.metrics.released.inc(len(live))
            raise
        outgoing = [d if isinstance(d, Outgoing) else self._dead_letter(d, "invalid") if isinstance(d, Rejected)
                    else results[d.id] for d in decoded]
        try:
            skipped = set(self.delivery.commit(outgoing))
        except Exception:
            self.metrics.released.inc(len(live))
            raise
        done = time.time()
        spent = time.perf_counter() - t0
        m = self.metrics
        for o in outgoing:
            if o.id in skipped:
                m.released.inc()
                continue
            if not o.dead:
                m.scored.inc()
                m.ok.inc()
            elif dict(o.fields)["kind"] == "invalid":
                m.dead_invalid.inc()
                m.invalid.inc()
            else:
                m.dead_internal.inc()
                m.internal.inc()
            m.processing.observe(spent)
            m.latency.observe(spent)
            m.end_to_end.observe(max(0.0, done - entry_ms(o.id) / 1000))

    def _decode(self, entry_id: str, fields: Mapping[bytes, bytes]) -> Event | Rejected | Outgoing:
        """The event or why it is rejected; an unexpected failure dead-letters this entry alone (a
        bug must not stop the consumer, nor make every restart fail again on the same entry)."""
        try:
            return self.schema.decode(entry_id, fields, self.store)
        except Exception as e:
            if _retryable(e):
                raise
            log.exception("%s: decoding event %s failed", self.serve.name, entry_id)
            text = {bytes(k).decode("utf-8", "replace"): bytes(v).decode("utf-8", "replace") for k, v in fields.items()}
            return self._internal(entry_id, text, e)

    def _append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        rows = [e.row for e in events]
        for need in self.needs:  # through the feature service, which adds them to its cached histories
            self.features.write_rows(self.store, need.namespace, need.key_column, rows, self.source.timestamp)
        newest = max(e.time for e in events)
        self._latest = newest if self._latest is None else max(self._latest, newest)

    def _score(self, model: LoadedModel, events: Sequence[Event]) -> dict[str, Outgoing]:
        out: dict[str, Outgoing] = {}
        scored: list[tuple[Event, dict[str, Any], bool]] = []
        rows: list[np.ndarray] = []
        for e in events:
            try:
                res = self.features.features(self.model, self.store, e.key, e.time, e.row)
                rows.append(encode_row(res.values, model.encoding))
                scored.append((e, dict(res.values), res.known_entity))
            except Exception as ex:
                if _retryable(ex):
                    raise
                log.exception("%s: scoring event %s failed", self.serve.name, e.id)
                out[e.id] = self._internal(e.id, e.row, ex)
        if not scored:
            return out
        try:
            scores = model.scores(np.vstack(rows))
        except Exception as ex:  # the model refused the batch: each event is dead-lettered with the reason
            log.exception("%s: scoring a batch of %d events failed", self.serve.name, len(scored))
            return {**out, **{e.id: self._internal(e.id, e.row, ex) for e, _, _ in scored}}
        stamp = _iso(dt.datetime.now(dt.UTC).replace(tzinfo=None))
        for i, (e, values, known) in enumerate(scored):
            fields = [("event_id", e.id), ("serve", self.serve.name), ("key", key_text(e.key)),
                      ("event_time", _iso(e.time)), *_prediction(model, scores, i), ("model", model.name),
                      ("version", model.version), ("known_entity", "true" if known else "false"), ("scored_at", stamp)]
            if self.config.with_features:
                fields.append(("features", encode_values(values)))
            out[e.id] = Outgoing(e.id, False, fields)
            self.metrics.prediction_value.observe(float(scores[i] if scores.ndim == 1 else scores[i].max()))
        return out

    def _dead_letter(self, r: Rejected, kind: str) -> Outgoing:
        return Outgoing(r.id, True, [("event_id", r.id), ("serve", self.serve.name), ("kind", kind),
                                     ("reason", r.reason), ("fields", _json(r.fields)),
                                     ("dead_at", _iso(dt.datetime.now(dt.UTC).replace(tzinfo=None)))])

    def _internal(self, entry_id: str, row: dict[str, Any], e: Exception) -> Outgoing:
        fields = {k: "" if v is None else v.isoformat() if isinstance(v, dt.date) else str(v)
                  for k, v in row.items() if k != "__seq"}
        return self._dead_letter(Rejected(entry_id, (f"internal error: {type(e).__name__}: {e}",), fields), "internal")

    def prune(self) -> int:
        """Drop rows older than the longest window before the newest event (each key's latest kept)."""
        if self._latest is None:
            return 0
        dropped = 0
        for need in self.needs:
            if need.window_ms is not None and need.window_ms > 0:
                try:
                    bound = self._latest - dt.timedelta(milliseconds=need.window_ms)
                except OverflowError:  # events near year 1: nothing is older than the window
                    continue
                dropped += self.store.prune(need.namespace, bound)
        return dropped


def _prediction(model: LoadedModel, scores: np.ndarray, i: int) -> list[tuple[str, str]]:
    if scores.ndim == 2:
        probs = [float(p) for p in scores[i]]
        best = int(np.argmax(scores[i]))
        names = [model.classes[j] if j < len(model.classes) else str(j) for j in range(len(probs))]
        return [("prediction", names[best]), ("probabilities", _json(dict(zip(names, probs, strict=True))))]
    return [("prediction", repr(float(scores[i])))]


def _retryable(e: BaseException) -> bool:
    """Redis or the online store failed (connection, timeout, disk): the batch is retried, not judged."""
    return isinstance(e, OSError | sqlite3.Error) or type(e).__module__.split(".")[0] == "redis"


def _iso(t: dt.datetime) -> str:
    return t.isoformat()


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
