"""Fixtures for the online store suites: a real redis-server, and a built churn demo project.

redis-server is started on 127.0.0.1 at a free port with persistence off and killed after the
session; tests that need it are skipped, saying why, only when the binary is not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec
from mlspec.runtime.demo import write_churn_demo
from mlspec.runtime.runner import run_pipeline

DEMO_CUSTOMERS = 150


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server for this test session: its base URL (redis://127.0.0.1:PORT)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    import redis

    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        proc.kill()
        proc.wait(timeout=10)



@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A flushed database of the session's redis-server for one test."""
    import redis

    url = f"{redis_server}/0"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def compile_spec(path: Path) -> Spec:
    compiled = compile_paths([path])
    assert compiled.ok, compiled.diagnostics
    return compiled.checked[0]


def build(root: Path, until: str = "dataset:churn_risk") -> None:
    """Run the pipeline up to the training set (no training: the online suites need no model)."""
    summary = run_pipeline(compile_paths([root / "churn.mlspec"]), until=until)
    assert summary.ok, summary.error


@pytest.fixture(scope="session")
def churn_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn demo (with some bad order rows, so checked tables matter) built up to its datasets.

    Shared and read-only: tests that change it work on a copy (`churn_project`).
    """
    root = tmp_path_factory.mktemp("churn")
    spec = resources.files("mlspec").joinpath("examples/churn.mlspec").read_text(encoding="utf-8")
    write_churn_demo(root, customers=DEMO_CUSTOMERS, seed=5, bad_rows=0.01, spec_text=spec)
    build(root)
    return root


@pytest.fixture
def churn_project(churn_built: Path, tmp_path: Path) -> Path:
    """A private copy of the built churn project, free to change."""
    root = tmp_path / "churn"
    shutil.copytree(churn_built, root)
    return root


def append_orders(root: Path, rows: list[tuple[int, str, float]]) -> int:
    """Append orders (customer_id, ordered_at ISO, amount) to the demo's orders file; returns how many."""
    import datetime as dt

    import polars as pl

    path = root / "data" / "orders.parquet"
    orders = pl.read_parquet(path)
    first = int(orders["order_id"].max()) + 1  # type: ignore[arg-type]
    new = pl.DataFrame({
        "order_id": list(range(first, first + len(rows))),
        "customer_id": [c for c, _, _ in rows],
        "ordered_at": [dt.datetime.fromisoformat(t) for _, t, _ in rows],
        "amount": [a for _, _, a in rows],
        "channel": ["app"] * len(rows),
    }, schema=orders.schema)
    pl.concat([orders, new]).write_parquet(path)
    return len(rows)


TINY_SPEC = """\
project tiny {}

entity user { key = user_id }

source events {
  path      = "data/events.parquet"
  key       = event_id
  timestamp = at
  schema {
    event_id int not null unique
    user_id  int
    at       timestamp not null
    amount   float
    kind     string
  }
}

source users {
  path = "data/users.parquet"
  key  = user_id
  schema {
    user_id int not null unique
    tier    string
  }
}

source outcomes {
  path      = "data/outcomes.parquet"
  timestamp = seen_at
  schema {
    user_id int not null
    seen_at timestamp not null
    bad     bool not null
  }
}

features recent {
  entity    = user
  from      = events
  n_7d      = count(event_id, last 7d)
  spend_2d  = sum(amount, last 2d)
  top_kind  = max(kind, last 7d)
}

features tier {
  entity = user
  from   = users
  tier   = tier
  big    = tier == "gold"
}

label bad {
  entity = user
  from   = outcomes
  value  = bad
}

model m {
  task     = binary
  label    = bad
  features = [recent.*, tier.*]
}

serve api {
  model = m
  mode  = realtime
}
"""


def write_events(root: Path, start_id: int, days: range, users: range) -> None:
    """Events every 12 hours per user over `days` (day 0 = 2026-01-01), appended to events.parquet."""
    import datetime as dt

    import polars as pl

    path = root / "data" / "events.parquet"
    rows = []
    eid = start_id
    for d in days:
        for half in (0, 12):
            for u in users:
                rows.append((eid, u if eid % 17 else None, dt.datetime(2026, 1, 1) + dt.timedelta(days=d, hours=half + u),
                             float(eid % 7) * 1.5, "abc"[eid % 3]))
                eid += 1
    schema: dict[str, Any] = {"event_id": pl.Int64, "user_id": pl.Int64, "at": pl.Datetime("us"), "amount": pl.Float64,
              "kind": pl.String}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    if path.exists():
        frame = pl.concat([pl.read_parquet(path), frame])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def write_users(root: Path, tiers: dict[int, str | None]) -> None:
    import polars as pl

    pl.DataFrame({"user_id": list(tiers), "tier": list(tiers.values())},
                 schema={"user_id": pl.Int64, "tier": pl.String}).write_parquet(root / "data" / "users.parquet")


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A small realtime spec: 7-day windowed aggregates (so history is pruned) and a snapshot source."""
    import datetime as dt

    import polars as pl

    root = tmp_path / "tiny"
    (root / "data").mkdir(parents=True)
    (root / "tiny.mlspec").write_text(TINY_SPEC)
    write_events(root, 1, range(0, 30), range(1, 5))
    write_users(root, {1: "gold", 2: "silver", 3: None, 4: "gold"})
    pl.DataFrame({"user_id": [1, 2, 3, 4], "seen_at": [dt.datetime(2026, 1, 20)] * 4,
                  "bad": [True, False, False, True]}).write_parquet(root / "data" / "outcomes.parquet")
    build_tiny(root)
    return root


def build_tiny(root: Path) -> None:
    """Extract the sources (all that materialize and verify read)."""
    compiled = compile_paths([root / "tiny.mlspec"])
    for node in ("source:events", "source:users", "source:outcomes"):
        summary = run_pipeline(compiled, node=node)
        assert summary.ok, summary.error


def tiny_with_request(root: Path) -> Path:
    """The tiny spec plus a request group that also reads another group's feature."""
    text = TINY_SPEC.replace("label bad {", """features ev {
  entity  = user
  from    = outcomes
  request = true
  late    = hour(seen_at) >= 12
  n_plus  = recent.n_7d + 1
}

label bad {""").replace("features = [recent.*, tier.*]", "features = [recent.*, tier.*, ev.*]")
    path = root / "tiny.mlspec"
    path.write_text(text)
    return path


def cli(argv: list[str]) -> int:
    """`mlspec materialize|verify ...` through the subcommands' own parser (as mlspec.cli wires them)."""
    import argparse

    from mlspec.runtime.online.commands import add_parsers

    parser = argparse.ArgumentParser(prog="mlspec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
