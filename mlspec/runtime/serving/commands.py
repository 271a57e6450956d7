"""The `serve` subcommand: argument parsing and process wiring only (the app is in app.py).

`mlspec.cli` registers it with `add_parsers(sub)`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

__all__ = ["add_parsers", "cmd_serve"]


def add_parsers(sub: Any) -> None:
    """Register `serve` on the CLI's subparsers object."""
    p = sub.add_parser("serve", help="serve the champion of every realtime serve block over HTTP")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--poll", type=float, default=0.2, metavar="SECONDS",
                   help="how often to check for a promoted or rolled-back champion (default 0.2)")
    p.add_argument("--no-prediction-log", action="store_true",
                   help="do not append requests and predictions to .mlspec/predictions/")
    p.add_argument("--cache-rows", type=int, default=None, metavar="N",
                   help="online rows kept decoded in memory, least recently used first out (default 200000; "
                        "0: read the store on every request); any write to the store empties the cache")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mlspec.cli import _compiled_or_exit, _spec_paths
    from mlspec.runtime.online.features import DEFAULT_CACHE_ROWS
    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.serving.app import ServingState, create_app

    compiled = _compiled_or_exit(_spec_paths(args.paths))
    spec = compiled.checked[0]
    realtime = [s.name for s in spec.serves if s.mode == "realtime"]
    if not realtime:
        print("error: the spec has no `serve ... { mode = realtime }` block to serve", file=sys.stderr)
        return 1
    if args.cache_rows is not None and args.cache_rows < 0:
        print("error: --cache-rows is a number of rows, 0 or more", file=sys.stderr)
        return 1
    if not 0.01 <= args.poll <= 60:
        print("error: --poll is seconds between 0.01 and 60", file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = open_store(spec, compiled.root)
    try:
        state = ServingState(spec, compiled.root, store, poll_seconds=args.poll,
                             prediction_log=not args.no_prediction_log,
                             cache_rows=DEFAULT_CACHE_ROWS if args.cache_rows is None else args.cache_rows)
        state.start()  # load the champions now, so problems are printed before the server listens
        _, detail = state.readiness()
        for name, entry in detail["serves"].items():
            version = entry["version"] or "(none: /ready answers 503 until one is promoted)"
            shadow = f", shadow {entry['shadow']['model']} {entry['shadow']['version']}" if "shadow" in entry else ""
            print(f"serve {name}: {entry['model']} {version}{shadow} -> "
                  f"POST http://{args.host}:{args.port}/v1/models/{name}/predict", file=sys.stderr)
        for problem in detail.get("problems", []):
            print(f"warning: not ready: {problem}", file=sys.stderr)
        app = create_app(state)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    finally:
        store.close()
    return 0
