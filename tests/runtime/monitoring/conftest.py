"""A churn project before and after drift, a real HTTP receiver, and the CLI with the monitoring commands.

`world` is built once per session and shared by xdist workers through a file lock:

* `full/`   the demo data of 1,500 customers with `drift=True` (the last two months shifted);
* `stage1/` the same files cut before the drift (orders, labels and signups before 2026-09-01: the
  undrifted world) after one real `mlspec run`, whose champion A trained on labels up to 2026-08-01.
Tests copy `stage1` (`world.copy(...)`) and, to make "fresh, drifted data arrive", drop the full
files in (`arrive(...)`).  Nothing is mocked: real parquet, DuckDB, xgboost, registry, HTTP.
`cli` is the shared in-process `mlspec` runner of tests/runtime/conftest.py.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlspec.runtime.demo import DRIFT_FROM, write_churn_demo
from mlspec.runtime.registry import Registry
from mlspec.runtime.warehouse import STATE_DIR
from tests.runtime.conftest import cli

REPO = Path(__file__).resolve().parents[3]
CHURN = (REPO / "specs" / "churn.mlspec").read_text(encoding="utf-8")
CUSTOMERS = 1500
SEED = 0
MODEL = "churn_risk"
DATA_FILES = ("customers.parquet", "orders.parquet", "churn_labels.parquet")


# ---- the projects ------------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """Paths of the session's projects (read-only: copy before changing)."""

    full: Path
    stage1: Path
    champion: str  # A, trained before the drift

    def copy(self, dest: Path, spec: str | None = None) -> Path:
        """A copy of stage1 (state included); `spec` replaces its churn.mlspec."""
        shutil.copytree(self.stage1, dest)
        if spec is not None:
            (dest / "churn.mlspec").write_text(spec, encoding="utf-8")
        return dest

    def arrive(self, project: Path) -> None:
        """The fresh (drifted) files replace the project's data files."""
        for name in DATA_FILES:
            shutil.copy(self.full / "data" / name, project / "data" / name)


def _cut_before_drift(data: Path) -> None:
    cut = {"orders.parquet": pl.col("ordered_at") < DRIFT_FROM,
           "churn_labels.parquet": pl.col("observed_at") < DRIFT_FROM,
           "customers.parquet": pl.col("signup_date") < DRIFT_FROM.date()}
    for name, keep in cut.items():
        pl.read_parquet(data / name).filter(keep).write_parquet(data / name)


def build_world(root: Path) -> World:
    full, stage1 = root / "full", root / "stage1"
    write_churn_demo(full, customers=CUSTOMERS, seed=SEED, drift=True, spec_text=CHURN)
    shutil.copytree(full, stage1)
    _cut_before_drift(stage1 / "data")
    r = cli("run", stage1 / "churn.mlspec")
    assert r.rc == 0, r.err
    champion = Registry(stage1 / STATE_DIR / "registry").champion(MODEL)
    assert champion is not None
    (root / "world.json").write_text(json.dumps({"champion": champion}), encoding="utf-8")
    return World(full, stage1, champion)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Built once for all xdist workers (they share the parent of their base temp folders)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "monitoring-world"
    with open(shared / "monitoring-world.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            marker = root / "world.json"
            if not marker.exists():
                if root.exists():
                    shutil.rmtree(root)
                return build_world(root)
            return World(root / "full", root / "stage1", json.loads(marker.read_text())["champion"])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def champion(project: Path) -> str | None:
    return Registry(project / STATE_DIR / "registry").champion(MODEL)


def with_rules(rules: str, gate: str | None = None) -> str:
    """The churn spec with its monitor rules replaced (and optionally its gate)."""
    start = CHURN.index("monitor churn_risk {")
    end = CHURN.index("}", start)
    text = CHURN[:start] + "monitor churn_risk {\n" + rules.strip("\n") + "\n" + CHURN[end:]
    if gate is not None:
        text = text.replace("    auc >= 0.70\n    auc >= champion.auc - 0.005\n", gate)
    return text


# ---- a real HTTP receiver ------------------------------------------------------------------------

@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and PUT (method, path, headers, status, the
    body as text and, when it is JSON, parsed) and answers with queued status codes."""

    url: str  # a webhook path on it
    root: str = ""  # the server itself (a Pushgateway's URL)
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # popped per request; 200 when empty

    def bodies(self) -> list[Any]:
        return [r["body"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver("")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # a stuck client cannot hold the test

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode("utf-8")
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            with lock:
                status = rec.statuses.pop(0) if rec.statuses else 200
                rec.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "status": status, "body": body, "text": text})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        do_POST = do_PUT = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rec.root = f"http://127.0.0.1:{server.server_address[1]}"
    rec.url = rec.root + "/hooks/oncall"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
