"""The `stream` subcommand: argument parsing and process wiring only (the loop is consumer.py).

`mlspec.cli` registers it with `add_parsers(sub)`.

Where the streams live: `--redis URL`, else the environment variable MLSPEC_STREAM_URL, else the
spec's online store when it is Redis (`online_store = redis(...)`). A URL with a password belongs
in the environment (a Secret in Kubernetes): command lines are visible to every local user.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from typing import Any

from mlspec.contract import STREAM_URL_ENV
from mlspec.ir.spec import Serve, Spec
from mlspec.runtime.errors import RunError

__all__ = ["STREAM_URL_ENV", "add_parsers", "cmd_stream", "stream_url"]

_NODE = "stream"
_SOCKET_TIMEOUT_S = 10.0


def add_parsers(sub: Any) -> None:
    """Register `stream` on the CLI's subparsers object."""
    p = sub.add_parser("stream", help="score a streaming serve block's events from its Redis input stream")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--serve", metavar="NAME", help="the streaming serve block (required when there are several)")
    p.add_argument("--host", default="127.0.0.1", help="interface of /health, /ready, /metrics (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8081, help="TCP port of /health, /ready, /metrics (default 8081)")
    p.add_argument("--redis", metavar="URL", help=f"Redis holding the streams (default: ${STREAM_URL_ENV}, else the "
                   "spec's Redis online store); prefer the variable for a URL with a password")
    p.add_argument("--consumer", metavar="NAME", help="this consumer's name in the group (default: host-pid)")
    p.add_argument("--batch", type=int, default=100, help="entries read per call (default 100)")
    p.add_argument("--block-ms", type=int, default=1000,
                   help="longest wait for new entries, ms; also how soon SIGTERM is honoured (default 1000)")
    p.add_argument("--claim-idle", type=float, default=30.0, metavar="SECONDS",
                   help="claim another consumer's pending entries idle this long: it died (default 30)")
    p.add_argument("--start", choices=("earliest", "latest"), default="earliest",
                   help="where a new consumer group starts reading the stream (default earliest)")
    p.add_argument("--dead-letter", metavar="STREAM", help="dead-letter stream (default: <output>.dead)")
    p.add_argument("--output-maxlen", type=int, default=0, metavar="N",
                   help="trim the output stream to about N entries (default 0: never)")
    p.add_argument("--with-features", action="store_true", help="add each event's feature vector to its output")
    p.add_argument("--poll", type=float, default=0.2, metavar="SECONDS",
                   help="how often to check for a promoted or rolled-back champion (default 0.2)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.set_defaults(func=cmd_stream)


def stream_url(spec: Spec, given: str | None) -> str:
    """The Redis URL of the streams (see the module docstring)."""
    if given:
        return given
    if os.environ.get(STREAM_URL_ENV):
        return os.environ[STREAM_URL_ENV]
    if spec.project.online_store == "redis":
        from mlspec.runtime.online.store import redis_url

        return redis_url(spec)
    raise RunError(_NODE, "no Redis to read the stream from",
                   f"export {STREAM_URL_ENV}=redis://HOST:6379/0 (or pass --redis URL), or keep the online store in "
                   'Redis: online_store = redis(env("NAME"))')


def choose_serve(spec: Spec, name: str | None) -> Serve:
    from mlspec.diagnostics import did_you_mean

    streaming = [s for s in spec.serves if s.mode == "streaming"]
    if name is not None:
        found = [s for s in streaming if s.name == name]
        if not found:
            hint = did_you_mean(name, [s.name for s in streaming])
            raise RunError(_NODE, f"no streaming serve block `{name}`",
                           hint or "streaming serve blocks: " + (", ".join(s.name for s in streaming) or "none"))
        return found[0]
    if not streaming:
        raise RunError(_NODE, "the spec has no `serve ... { mode = streaming }` block to consume",
                       'add one: serve NAME { model = M; mode = streaming; input = stream("...") }')
    if len(streaming) > 1:
        raise RunError(_NODE, "the spec has several streaming serve blocks: "
                       + ", ".join(s.name for s in streaming), "choose one with --serve NAME (one process each)")
    return streaming[0]


def connect(url: str) -> Any:
    """A redis-py client that answers, or a RunError that never shows the URL's credentials."""
    import redis

    from mlspec.runtime.online.store import redact_url

    where = redact_url(url)
    try:
        client = redis.Redis.from_url(url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=5.0,
                                      health_check_interval=30)
    except ValueError:
        raise RunError(_NODE, f"the stream Redis URL is not valid (read as {where})",
                       "write it as redis://[:password@]host:port/db") from None
    try:
        client.ping()
    except redis.RedisError as e:
        raise RunError(_NODE, f"cannot reach the stream Redis at {where}: {e}",
                       f"start redis-server, or check {STREAM_URL_ENV} / --redis") from None
    return client


def cmd_stream(args: argparse.Namespace) -> int:
    from mlspec.cli import _compiled_or_exit, _spec_paths
    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.stream.consumer import StreamConfig, StreamConsumer
    from mlspec.runtime.stream.http import HttpSide

    for name, value, lo, hi in (("--batch", args.batch, 1, 10_000), ("--block-ms", args.block_ms, 1, 5_000),
                                ("--claim-idle", args.claim_idle, 0.1, 86_400), ("--poll", args.poll, 0.01, 60),
                                ("--output-maxlen", args.output_maxlen, 0, 2**40), ("--port", args.port, 0, 65_535)):
        if not lo <= value <= hi:
            print(f"error: {name} must be between {lo} and {hi}", file=sys.stderr)
            return 1
    compiled = _compiled_or_exit(_spec_paths(args.paths))
    spec = compiled.checked[0]
    serve = choose_serve(spec, args.serve)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client = connect(stream_url(spec, args.redis))
    if spec.project.online_store != "redis":
        print("warning: the online store is embedded (SQLite under .mlspec/): consumers on other machines do not "
              "share it, so run one consumer, or keep the online store in Redis", file=sys.stderr)
    store = open_store(spec, compiled.root)
    consumer_name = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    config = StreamConfig(consumer_name, batch=args.batch, block_ms=args.block_ms,
                          claim_idle_ms=int(args.claim_idle * 1000), start="0" if args.start == "earliest" else "$",
                          output_maxlen=args.output_maxlen, with_features=args.with_features,
                          poll_seconds=args.poll, dead_letter=args.dead_letter)
    http = None
    try:
        consumer = StreamConsumer(spec, compiled.root, store, client, serve, config)
        consumer.start()
        _, detail = consumer.readiness()
        print(f"stream {serve.name}: {detail['input']} -> {detail['output']} (dead letters: {detail['dead_letter']}), "
              f"group {detail['group']}, consumer {consumer_name}, {detail['model']} "
              f"{detail['version'] or '(none: waiting for a champion)'}; "
              f"http://{args.host}:{args.port}/ready", file=sys.stderr)
        for problem in detail.get("problems", []):
            print(f"warning: not ready: {problem}", file=sys.stderr)
        http = HttpSide(consumer, args.host, args.port, args.log_level if args.log_level != "info" else "warning")
        if not http.start():
            raise RunError(_NODE, f"cannot listen on {args.host}:{args.port}", "choose another --port")

        def _stop(signum: int, frame: object) -> None:
            consumer.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            consumer.run()
        finally:
            consumer.close()
        print(f"stream {serve.name}: stopped", file=sys.stderr)
    finally:
        if http is not None:
            http.stop()
        store.close()
        client.close()
    return 0
