"""The consumer's HTTP side: GET /health, /ready and /metrics (what the Deployment's probes and
Prometheus read), a small Starlette app on uvicorn in a daemon thread beside the consumer loop."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlspec.runtime.stream.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    import uvicorn

    from mlspec.runtime.stream.consumer import StreamConsumer

__all__ = ["HttpSide", "create_app"]

_JSON = "application/json"


def create_app(consumer: StreamConsumer) -> Starlette:
    """/ready and /metrics call Redis and the store, which may hang while they are away: they are
    plain functions, which Starlette runs in its threadpool, so /health (liveness) always answers."""

    async def health(request: Request) -> Response:
        return Response(json.dumps({"status": "ok"}), media_type=_JSON)

    def ready(request: Request) -> Response:
        ok, detail = consumer.readiness()
        return Response(json.dumps(detail), status_code=200 if ok else 503, media_type=_JSON)

    def metrics(request: Request) -> Response:
        with contextlib.suppress(Exception):  # Redis away: the counters still tell; /ready says why
            consumer.refresh_group_metrics()
        return Response(consumer.metrics.exposition(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/health", health, methods=["GET"]), Route("/ready", ready, methods=["GET"]),
                             Route("/metrics", metrics, methods=["GET"])])


class HttpSide:
    """uvicorn serving `create_app(consumer)` on a daemon thread (signals stay with the main thread)."""

    def __init__(self, consumer: StreamConsumer, host: str, port: int, log_level: str = "warning") -> None:
        import uvicorn

        config = uvicorn.Config(create_app(consumer), host=host, port=port, log_level=log_level, access_log=False,
                                lifespan="off")
        self.server: uvicorn.Server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self.server.run, name="mlspec-stream-http", daemon=True)

    def start(self, timeout_s: float = 10.0) -> bool:
        """Start listening; False when the server could not (port taken, bad host)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)
