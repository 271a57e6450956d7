"""Fixtures for `mlspec stream`: a small plant project trained for real, a real redis-server.

The plant spec is sensors.mlspec in miniature: readings arrive on the `readings` stream, the model
scores the device they came from on its recent history. The project is built once per session
(`mlspec run`: extract, check, features, train, gate -> champion) and copied per test; each test
materializes it into a flushed Redis database.
"""

from __future__ import annotations

import datetime as dt
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

from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec
from mlspec.runtime.runner import run_pipeline
from tests.runtime.online.conftest import redis_server, redis_url  # noqa: F401  (the same real redis-server)

ENV = "PLANT_REDIS"
START = dt.datetime(2026, 1, 1)
DAYS = 3
DEVICES = 12

PLANT_SPEC = """\
project plant {
  online_store = redis(env("PLANT_REDIS"))
}

entity device { key = device_id }

source readings {
  path      = "data/readings.parquet"
  stream    = "readings"
  key       = reading_id
  timestamp = read_at
  schema {
    reading_id  int not null unique
    device_id   int not null references devices.device_id
    read_at     timestamp not null
    temperature float range [-60, 200]
    status      string in ("ok", "warn", "fault")
  }
}

source devices {
  path = "data/devices.parquet"
  key  = device_id
  schema {
    device_id int not null unique
    family    string not null in ("pump-a", "pump-b")
  }
}

source inspections {
  path      = "data/inspections.parquet"
  timestamp = inspected_at
  schema {
    device_id    int not null references devices.device_id
    inspected_at timestamp not null
    failed       bool not null
  }
}

features recent {
  entity       = device
  from         = readings
  n_1h         = count(reading_id, last 1h)
  temp_mean_1h = mean(temperature, last 1h)
  temp_max_10m = max(temperature, last 10m)
  warns_1h     = count_if(status == "warn", last 1h)
  last_temp    = last(temperature)
  last_status  = last(status, last 1h)
}

features info {
  entity = device
  from   = devices
  family = family
}

label failed {
  entity = device
  from   = inspections
  value  = failed
}

check readings {
  temperature is null or temperature < 150
  on_fail = quarantine
}

model risk {
  task     = binary
  label    = failed
  features = [recent.*, info.*]
  split    = by_time(test_from = "2026-01-03")
  params {
    max_depth    = 3
    n_estimators = 20
    seed         = 1
  }
}

serve risk_api {
  model = risk
  mode  = realtime
}

serve risk_stream {
  model  = risk
  mode   = streaming
  input  = stream("readings")
  output = stream("risk_scores")
}
"""


def _temperature(device: int, i: int) -> float:
    return round(40.0 + 3.0 * device + 10.0 * ((i * 7919 + device * 31) % 13) / 13.0, 2)


def write_plant(root: Path) -> None:
    import polars as pl

    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "plant.mlspec").write_text(PLANT_SPEC)
    pl.DataFrame({"device_id": list(range(1, DEVICES + 1)),
                  "family": ["pump-a" if d % 2 else "pump-b" for d in range(1, DEVICES + 1)]}
                 ).write_parquet(root / "data" / "devices.parquet")
    rows = []
    rid = 1
    for i in range(DAYS * 24 * 6):  # every 10 minutes
        for d in range(1, DEVICES + 1):
            temp = None if (i + d) % 29 == 0 else _temperature(d, i)
            status = ("ok", "ok", "warn", "fault")[(i + d) % 4 if d > DEVICES // 2 else 0]
            rows.append((rid, d, START + dt.timedelta(minutes=10 * i, seconds=d), temp, status))
            rid += 1
    pl.DataFrame(rows, schema={"reading_id": pl.Int64, "device_id": pl.Int64, "read_at": pl.Datetime("us"),
                               "temperature": pl.Float64, "status": pl.String}, orient="row"
                 ).write_parquet(root / "data" / "readings.parquet")
    labels = []
    for h in range(6, DAYS * 24, 3):
        for d in range(1, DEVICES + 1):
            labels.append((d, START + dt.timedelta(hours=h, minutes=5), (d > DEVICES // 2) != (h % 9 == 0)))
    pl.DataFrame(labels, schema={"device_id": pl.Int64, "inspected_at": pl.Datetime("us"), "failed": pl.Boolean},
                 orient="row").write_parquet(root / "data" / "inspections.parquet")


def compile_plant(root: Path) -> Spec:
    compiled = compile_paths([root / "plant.mlspec"])
    assert compiled.ok, compiled.diagnostics
    return compiled.checked[0]


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


def last_reading(root: Path) -> tuple[int, dt.datetime]:
    import polars as pl

    frame = pl.read_parquet(root / "data" / "readings.parquet")
    return int(frame["reading_id"].max()), frame["read_at"].max()  # type: ignore[arg-type,return-value]


def new_events(root: Path, n: int, devices: range = range(1, 6), step_s: int = 90) -> list[dict[str, str]]:
    """Readings after the file's last one, as stream fields (text), round robin over `devices`."""
    rid, t = last_reading(root)
    out = []
    for i in range(n):
        d = devices[i % len(devices)]
        rid += 1
        t = t + dt.timedelta(seconds=step_s)
        temp = "" if i % 11 == 5 else str(_temperature(d, i + 1000))
        out.append({"reading_id": str(rid), "device_id": str(d), "read_at": t.isoformat() + "Z",
                    "temperature": temp, "status": ("ok", "warn", "ok", "fault")[i % 4]})
    return out


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
