"""`mlspec stream`: events/s and event-to-output latency of one consumer, next to a bare baseline.

Builds the small plant project of bench/_plant.py, the one the stream tests use (real `mlspec run`, xgboost champion),
starts a private redis-server on 127.0.0.1, materializes the online store into it, and measures,
for one in-process consumer:

* throughput: a backlog of N events drained (validate, append to the store, online features,
  predict, atomic output + ack), events/s;
* latency: events added at a fixed rate; per event, output entry time - input entry time
  (Redis's clock, ms resolution), p50 / p99;

and the same two numbers for the baseline measured in the same run: a bare XREADGROUP + XADD +
XACK loop (same batch size, no decoding, features or scoring). Ratios are what to compare.

    .venv/bin/python bench/stream.py [--events 3000] [--rate 200] [--batch 100]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(root: Path, n: int) -> list[dict[str, str]]:
    from bench._plant import DEVICES, new_events

    return new_events(root, n, devices=range(1, DEVICES + 1), step_s=5)


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def _latencies(client: Any, input_stream: str, output_stream: str, id_field: bytes) -> list[float]:
    sent = {i: _ms(i) for i, _ in client.xrange(input_stream)}
    return [float(_ms(i) - sent[f[id_field]]) for i, f in client.xrange(output_stream) if f[id_field] in sent]


class Baseline:
    """XREADGROUP -> XADD (copying the fields) -> XACK, per batch, pipelined: the floor."""

    def __init__(self, client: Any, batch: int) -> None:
        self.r, self.batch = client, batch
        self.stop = threading.Event()
        client.xgroup_create("base_in", "g", id="0", mkstream=True)

    def run(self) -> None:
        while not self.stop.is_set():
            reply = self.r.xreadgroup("g", "c", {"base_in": ">"}, count=self.batch, block=100)
            if not reply:
                continue
            items = reply[0][1]
            pipe = self.r.pipeline(transaction=True)
            for i, f in items:
                pipe.xadd("base_out", {b"event_id": i, **f})
            pipe.xack("base_in", "g", *[i for i, _ in items])
            pipe.execute()


def _drain(client: Any, output: str, n: int, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while client.xlen(output) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{output}: {client.xlen(output)} of {n} after {timeout}s")
        time.sleep(0.002)
    return time.perf_counter() - t0


def _paced(client: Any, stream: str, events: list[dict[str, str]], rate: float) -> None:
    t0 = time.perf_counter()
    for k, e in enumerate(events):
        delay = t0 + k / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        client.xadd(stream, e)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=200.0, help="events/s for the latency runs")
    ap.add_argument("--latency-events", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()

    import os

    import redis

    from bench._plant import ENV, compile_plant, write_plant
    from mlspec.compiler import compile_paths
    from mlspec.runtime.online.materialize import materialize
    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.runner import run_pipeline
    from mlspec.runtime.stream.consumer import StreamConfig, StreamConsumer
    from mlspec.runtime.warehouse import Warehouse

    tmp = Path(tempfile.mkdtemp(prefix="mlspec-stream-bench-"))
    port = _free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    os.environ[ENV] = url
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        root = tmp / "plant"
        root.mkdir()
        write_plant(root)
        assert run_pipeline(compile_paths([root / "plant.mlspec"])).ok
        results: dict[str, dict[str, float]] = {}
        for phase in ("throughput", "latency"):
            client.flushdb()
            spec = compile_plant(root)
            store = open_store(spec, root)
            with Warehouse.open(root) as wh:
                materialize(wh, spec, store)
            n = args.events if phase == "throughput" else args.latency_events
            events = _events(root, n)
            serve = next(s for s in spec.serves if s.mode == "streaming")
            consumer = StreamConsumer(spec, root, store, client, serve,
                                      StreamConfig("bench", batch=args.batch, block_ms=100))
            base = Baseline(client, args.batch)
            threads = [threading.Thread(target=consumer.run), threading.Thread(target=base.run)]
            if phase == "throughput":  # a backlog first, then the consumers start
                pipe = client.pipeline(transaction=False)
                for e in events:
                    pipe.xadd("readings", e)
                    pipe.xadd("base_in", e)
                pipe.execute()
                threads[1].start()
                results["baseline"] = {"events_per_s": n / _drain(client, "base_out", n)}
                threads[0].start()
                results["mlspec stream"] = {"events_per_s": n / _drain(client, "risk_scores", n)}
            else:
                for t in threads:
                    t.start()
                time.sleep(0.5)
                _paced(client, "base_in", events, args.rate)
                _drain(client, "base_out", n)
                _paced(client, "readings", events, args.rate)
                _drain(client, "risk_scores", n)
                for name, (src, out, field) in {"baseline": ("base_in", "base_out", b"event_id"),
                                                "mlspec stream": ("readings", "risk_scores", b"event_id")}.items():
                    lat = sorted(_latencies(client, src, out, field))
                    results[name]["p50_ms"] = statistics.median(lat)
                    results[name]["p99_ms"] = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            consumer.stop()
            base.stop.set()
            for t in threads:
                t.join(timeout=30)
            consumer.close()
            store.close()
        print(f"one consumer, batch {args.batch}; throughput on a backlog of {args.events} events; latency at "
              f"{args.rate:g} events/s over {args.latency_events} events (ms, Redis clock)")
        print(f"{'':16} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for name, r in results.items():
            print(f"{name:16} {r['events_per_s']:10.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}")
        ratio = results["mlspec stream"]["events_per_s"] / results["baseline"]["events_per_s"]
        print(f"throughput ratio mlspec stream / baseline: {ratio:.3f}")
        client.close()
    finally:
        server.kill()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
