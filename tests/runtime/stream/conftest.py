"""Fixtures for `mlspec stream`: a small plant project trained for real, a real redis-server.

The plant spec (bench/_plant.py, shared with bench/stream.py) is sensors.mlspec in miniature: readings arrive on the `readings` stream, the model
scores the device they came from on its recent history. The project is built once per session
(`mlspec run`: extract, check, features, train, gate -> champion) and copied per test; each test
materializes it into a flushed Redis database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._plant import (  # noqa: F401  (compile_plant, last_reading, new_events: for the stream tests)
    ENV,
    compile_plant,
    last_reading,
    new_events,
    write_plant,
)
from mlspec.compiler import compile_paths
from mlspec.runtime.runner import run_pipeline
from tests.runtime.online.conftest import redis_server, redis_url  # noqa: F401  (the same real redis-server)


@pytest.fixture(scope="session")
def plant_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plant project after a real `mlspec run`: warehouse, trained champion. Read-only."""
    root = tmp_path_factory.mktemp("plant")
    write_plant(root)
    summary = run_pipeline(compile_paths([root / "plant.mlspec"]))
    assert summary.ok, summary.error
    return root


@pytest.fixture
def plant(plant_built: Path, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """A private copy of the plant project, materialized into a flushed Redis database."""
    from mlspec.runtime.online.materialize import materialize
    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.warehouse import Warehouse

    root = tmp_path / "plant"
    shutil.copytree(plant_built, root)
    monkeypatch.setenv(ENV, redis_url)
    spec = compile_plant(root)
    store = open_store(spec, root)
    try:
        with Warehouse.open(root) as wh:
            materialize(wh, spec, store)
    finally:
        store.close()
    return root


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def entries(client: Any, stream: str) -> list[tuple[str, dict[str, str]]]:
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in client.xrange(stream)]


class Running:
    """A StreamConsumer on a thread of this process (stopped at teardown)."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(timeout=20)
        self.consumer.close()
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def run_consumer(redis_url: str) -> Iterator[Callable[..., tuple[Running, Any]]]:  # noqa: F811
    """Start an in-process consumer of the plant project: run_consumer(root, **config) -> (running, client)."""
    import redis

    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.stream.consumer import StreamConfig, StreamConsumer

    started: list[tuple[Running, Any, Any]] = []

    def start(root: Path, **config: Any) -> tuple[Running, Any]:
        spec = compile_plant(root)
        client = redis.Redis.from_url(redis_url)
        store = open_store(spec, root)
        serve = next(s for s in spec.serves if s.mode == "streaming")
        cfg = StreamConfig(config.pop("consumer", "test"), **{"block_ms": 100, "poll_seconds": 0.05, **config})
        running = Running(StreamConsumer(spec, root, store, client, serve, cfg))
        running.thread.start()
        started.append((running, client, store))
        return running, client

    yield start
    for running, client, store in started:
        if running.thread.is_alive():
            running.stop()
        store.close()
        client.close()


def mlspec_process(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`mlspec stream` as a real process (its own signals and exit code)."""
    return subprocess.Popen([sys.executable, "-m", "mlspec.cli", "stream", str(root / "plant.mlspec"), *args],
                            cwd=root, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
