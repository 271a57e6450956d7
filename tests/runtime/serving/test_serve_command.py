"""`mlspec serve` as a process: starts, answers on 127.0.0.1, reports readiness, stops on SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.runtime.serving.conftest import AS_OF, REPO, Project

# The subcommand through its own parser, exactly as mlspec.cli wires it with add_parsers.
RUN = ("import argparse, sys\n"
       "from mlspec.runtime.serving.commands import add_parsers\n"
       "p = argparse.ArgumentParser(prog='mlspec'); add_parsers(p.add_subparsers())\n"
       "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_process_end_to_end(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "project")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", RUN, "serve", str(p.spec_path), "--port", str(port),
                             "--log-level", "warning"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        r = httpx.post(url + "/v1/models/churn_api/predict", json={"customer_id": 5, "as_of": AS_OF}, timeout=10)
        assert r.status_code == 200 and r.json()["version"] == p.v1
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"serve churn_api: churn_risk {p.v1}" in err
    assert f"POST http://127.0.0.1:{port}/v1/models/churn_api/predict" in err
    assert list((p.root / ".mlspec" / "predictions" / "churn_api").glob("*.jsonl"))  # flushed on shutdown


@pytest.mark.slow
def test_serve_refuses_a_spec_without_realtime_blocks(tmp_path: Path) -> None:
    spec = (REPO / "specs" / "churn.mlspec").read_text(encoding="utf-8")
    start = spec.index("serve churn_api")
    (tmp_path / "batch.mlspec").write_text(spec[:start] + spec[spec.index("}", start) + 1:], encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", RUN, "serve", str(tmp_path / "batch.mlspec")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no `serve ... { mode = realtime }` block" in proc.stderr


def test_serve_refuses_a_negative_cache_size(capsys: pytest.CaptureFixture[str]) -> None:
    from mlspec.cli import main

    assert main(["serve", str(REPO / "specs" / "churn.mlspec"), "--cache-rows", "-1"]) == 1
    assert "--cache-rows is a number of rows, 0 or more" in capsys.readouterr().err
