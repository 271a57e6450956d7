"""A trained, materialized churn project and real uvicorn servers on 127.0.0.1 for the serving tests.

The project (400 demo customers) is built once per test session and shared by xdist workers
through a file lock, because training is the slow part. It is the demo churn spec plus a small
second model, `churn_lite`, that the realtime serve block scores in shadow mode; `churn_risk`
gets a second registered version so tests can promote and roll back between two real boosters.
Tests that change the project (champion pointer, batch scores) work on their own copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from mlspec.cli import main
from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec
from mlspec.runtime.demo import write_churn_demo
from mlspec.runtime.online.materialize import materialize
from mlspec.runtime.online.store import open_store
from mlspec.runtime.registry import Registry
from mlspec.runtime.serving.app import ServingState, create_app
from mlspec.runtime.warehouse import STATE_DIR, Warehouse

REPO = Path(__file__).resolve().parents[3]
CHURN = (REPO / "specs" / "churn.mlspec").read_text(encoding="utf-8")
CUSTOMERS = 400
AS_OF = "2026-10-01T00:00:00"  # a time inside the demo data (which ends 2026-10-31)

LITE = """
model churn_lite {
  algorithm = xgboost
  task      = binary
  label     = churned
  features  = [activity.*, profile.*]
  split     = by_time(test_from = "2026-04-01")
  params {
    max_depth     = 2
    learning_rate = 0.3
    n_estimators  = 20
    seed          = 3
  }
  gate {
    auc >= 0.5
  }
}
"""


def spec_text(churn_risk_trees: int = 200) -> str:
    """The demo spec, with `shadow = churn_lite` on the realtime serve block and that model added."""
    serve = "  replicas    = 2..10\n}"
    assert serve in CHURN and "n_estimators  = 200" in CHURN
    text = CHURN.replace(serve, "  replicas    = 2..10\n  shadow      = churn_lite\n}")
    return text.replace("n_estimators  = 200", f"n_estimators  = {churn_risk_trees}") + LITE


@dataclass(frozen=True)
class Project:
    root: Path
    v1: str  # churn_risk champion
    v2: str  # churn_risk, a second registered version (fewer trees)

    @property
    def spec_path(self) -> Path:
        return self.root / "churn.mlspec"

    @property
    def registry(self) -> Registry:
        return Registry(self.root / STATE_DIR / "registry")

    def spec(self) -> Spec:
        return compile_paths([self.spec_path]).checked[0]

    def copy(self, dest: Path) -> Project:
        shutil.copytree(self.root, dest)
        return Project(dest, self.v1, self.v2)


def build_project(root: Path) -> Project:
    """Demo data -> `mlspec run` -> a second churn_risk version -> materialize the online store."""
    root.mkdir(parents=True, exist_ok=True)
    write_churn_demo(root, customers=CUSTOMERS, seed=1, spec_text=spec_text())
    spec_path = root / "churn.mlspec"
    assert main(["run", str(spec_path)]) == 0
    registry = Registry(root / STATE_DIR / "registry")
    v1 = registry.champion("churn_risk")
    assert v1 is not None and registry.champion("churn_lite") is not None
    spec_path.write_text(spec_text(churn_risk_trees=40), encoding="utf-8")
    try:
        assert main(["run", str(spec_path), "--node", "model:churn_risk"]) == 0
    finally:
        spec_path.write_text(spec_text(), encoding="utf-8")
    v2 = next(v.version for v in registry.versions("churn_risk") if v.version != v1)
    assert registry.champion("churn_risk") == v1
    spec = compile_paths([spec_path]).checked[0]
    store = open_store(spec, root)
    try:
        with Warehouse.open(root, read_only=True) as wh:
            materialize(wh, spec, store)
    finally:
        store.close()
    (root / "project.json").write_text(json.dumps({"v1": v1, "v2": v2}), encoding="utf-8")
    return Project(root, v1, v2)


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Built once for all xdist workers (they share the parent of their base temp folders)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "serving-project"
    with open(shared / "serving-project.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            marker = root / "project.json"
            if not marker.exists():
                if root.exists():
                    shutil.rmtree(root)
                return build_project(root)
            ids = json.loads(marker.read_text(encoding="utf-8"))
            return Project(root, ids["v1"], ids["v2"])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Server:
    """A serving state behind a real uvicorn server on 127.0.0.1."""

    state: ServingState
    url: str
    client: httpx.Client  # one keep-alive client: a new client per request costs an SSL context


@contextlib.contextmanager
def running(state: ServingState) -> Iterator[Server]:
    """Start uvicorn in a thread on a free 127.0.0.1 port; stop it (and its threads) afterwards."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response waits ~40 ms on Nagle + delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield Server(state, url, client)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class RawClient:
    """A minimal keep-alive HTTP/1.1 client: load tests spend their CPU on the server, not in httpx."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(x.split(b":")[1]) for x in lines[1:] if x.lower().startswith(b"content-length:"))
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def serving(project: Project, log_dir: Path, poll_seconds: float = 0.2) -> Iterator[Server]:
    """The project's spec served with its own store connection and prediction log folder."""
    spec = project.spec()
    store = open_store(spec, project.root)
    try:
        state = ServingState(spec, project.root, store, poll_seconds=poll_seconds, log_dir=log_dir)
        with running(state) as server:
            yield server
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(project, tmp_path_factory.mktemp("predictions")) as s:
        yield s
