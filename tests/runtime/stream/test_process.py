"""`mlspec stream` as real processes: SIGKILL mid-stream loses nothing, SIGTERM exits cleanly, and
/health, /ready and /metrics answer over HTTP on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.runtime.stream.conftest import entries, mlspec_process, new_events, wait_for


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, consumer: str, port: int) -> subprocess.Popen[str]:
    return mlspec_process(root, "--consumer", consumer, "--port", str(port), "--batch", "10", "--block-ms", "100",
                          "--claim-idle", "1", "--poll", "0.05", "--log-level", "warning")


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"no exit within 30 s of SIGTERM: {err}") from None
    return proc.returncode, err


@pytest.mark.slow
def test_a_killed_consumer_loses_no_event_and_its_successor_finishes(plant: Path, redis_url: str) -> None:
    import redis

    client: Any = redis.Redis.from_url(redis_url)
    events = new_events(plant, 300, devices=range(1, 9), step_s=20)
    port = _port()
    first = _start(plant, "a", port)
    try:
        wait_for(lambda: _ready(port) or first.poll() is not None, timeout=60, what="first consumer ready")
        assert first.poll() is None, first.communicate()[1]
        pipe = client.pipeline(transaction=False)
        for e in events:
            pipe.xadd("readings", e)
        sent = [i.decode() for i in pipe.execute()]
        wait_for(lambda: client.xlen("risk_scores") >= 30, what="some events scored")
    finally:
        first.kill()  # SIGKILL: no chance to finish its batch
        first.communicate(timeout=10)
    assert client.xlen("risk_scores") < len(events), "killed after the end: nothing tested"
    port = _port()
    second = _start(plant, "b", port)
    try:
        wait_for(lambda: client.xlen("risk_scores") >= len(events) or second.poll() is not None, timeout=90,
                 what="the successor to finish, claiming the killed consumer's pending entries")
        assert second.poll() is None, second.communicate()[1]
        wait_for(lambda: client.xpending("readings", "mlspec.risk_stream")["pending"] == 0, what="all acknowledged")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["consumer"] == "b" and ready.json()["version"]
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert "mlspec_stream_events_read_total" in metrics and "mlspec_request_duration_seconds_bucket" in metrics
        assert 'mlspec_model_version_info{model="risk"' in metrics and "mlspec_stream_pending" in metrics
    finally:
        code, err = _stop(second)
    assert code == 0, err
    assert "stopped" in err and "Traceback" not in err
    out = [f["event_id"] for _, f in entries(client, "risk_scores")]
    assert set(out) == set(sent)  # at least once: none lost
    assert len(out) == len(set(out))  # and, by the atomic commit, at most once
    assert client.xlen("risk_scores.dead") == 0
    client.close()


def test_sigterm_finishes_and_exits_zero_and_errors_are_plain(plant: Path, redis_url: str) -> None:
    import redis

    port = _port()
    proc = _start(plant, "solo", port)
    client: Any = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: _ready(port) or proc.poll() is not None, timeout=60, what="ready")
        assert proc.poll() is None, proc.communicate()[1]
        for e in new_events(plant, 5):
            client.xadd("readings", e)
        wait_for(lambda: client.xlen("risk_scores") == 5, what="scored")
    finally:
        code, err = _stop(proc)
    assert code == 0 and "Traceback" not in err, err
    client.close()
    # no Redis for the streams: a plain error naming what to set, never a traceback or the URL's password
    bad = mlspec_process(plant, "--redis", "redis://:s3cret@127.0.0.1:1/0")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 1 and "cannot reach the stream Redis at redis://127.0.0.1:1/0" in err
    assert "s3cret" not in err and "Traceback" not in err
