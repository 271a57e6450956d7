"""The prediction log: every scored row as one JSON line, for monitoring and `mlspec verify`.

Files: ``PROJECT/.mlspec/predictions/<serve>/<YYYY-MM-DD>.jsonl`` (UTC day of the request, so
files rotate by day and old days can be archived or deleted whole).

Cost on the request path: one `to_json` (orjson, ~1 us) and a deque append. The serialisation is done
there on purpose: a writer thread that did it would hold the GIL in bursts and stall requests
far longer than the serialisation itself takes. The writer thread only wakes every
`interval_seconds`, joins the queued lines and writes them (I/O releases the GIL). If it falls
more than `max_pending` lines behind, new lines are dropped and counted rather than slowing or
failing requests. `flush()` waits until everything appended so far is on disk (tests, shutdown).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mlspec.runtime.serving.jsontext import to_json

__all__ = ["PredictionLog", "Record"]

Record = dict[str, Any]
log = logging.getLogger("mlspec.serve")


class PredictionLog:
    """An append-only, day-rotated JSON-lines log; lines are written by one background thread."""

    def __init__(self, folder: Path, *, max_pending: int = 100_000, interval_seconds: float = 0.1,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.folder = folder
        self.max_pending = max_pending
        self.interval_seconds = interval_seconds
        self.appended = 0
        self.written = 0
        self.dropped = 0
        self._on_drop = on_drop
        self._lines: collections.deque[tuple[str, str, str]] = collections.deque()  # (serve, day, line)
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._stop = False
        self._files: dict[tuple[str, str], IO[str]] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="mlspec-prediction-log", daemon=True)
            self._thread.start()

    def append(self, record: Record) -> None:
        """Serialise one record and queue its line (never blocks; drops and counts when far behind)."""
        if len(self._lines) >= self.max_pending:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return
        line = to_json(record, _json_default).decode()
        self._lines.append((str(record.get("serve", "unknown")), str(record.get("time", ""))[:10], line))
        self.appended += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every line appended so far is written; False on timeout."""
        target = self.appended
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self.written >= target, timeout)

    def close(self) -> None:
        """Write what is queued, stop the thread, close the files."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
        self._drain()
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def path_for(self, serve: str, day: str) -> Path:
        return self.folder / serve / f"{day}.jsonl"

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval_seconds)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        batch: dict[tuple[str, str], list[str]] = {}
        n = 0
        while self._lines:  # popleft is atomic: lines appended meanwhile are taken now or next time
            serve, day, line = self._lines.popleft()
            batch.setdefault((serve, day or dt.datetime.now(dt.UTC).date().isoformat()), []).append(line)
            n += 1
        if n:
            try:
                for (serve, day), lines in batch.items():
                    handle = self._handle(serve, day)
                    handle.write("\n".join(lines) + "\n")
                    handle.flush()
            except Exception:  # a full disk must not kill serving; the loss is logged
                log.exception("writing %d prediction log lines failed", n)
        with self._done:
            self.written += n
            self._done.notify_all()

    def _handle(self, serve: str, day: str) -> IO[str]:
        handle = self._files.get((serve, day))
        if handle is None:
            for key in [k for k in self._files if k[0] == serve]:  # a new day: close yesterday's file
                self._files.pop(key).close()
            path = self.path_for(serve, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._files[(serve, day)] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        return handle


def _json_default(x: object) -> object:
    if isinstance(x, dt.date):  # dates and timestamps (a datetime is a date)
        return x.isoformat()
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
    except ImportError:  # pragma: no cover
        pass
    return str(x)
