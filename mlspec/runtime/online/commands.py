"""The `materialize` and `verify` subcommands: argument parsing and rendering only.

`mlspec.cli` registers them with `add_parsers(sub)`; the work is in materialize.py and verify.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlspec.runtime.errors import RunError

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that import light
    from mlspec.runtime.online.verify import ModelCheck
    from mlspec.runtime.warehouse import Warehouse


def add_parsers(sub: Any) -> None:
    """Register `materialize` and `verify` on the CLI's subparsers object."""
    p = sub.add_parser("materialize", help="write what online serving needs from the warehouse to the online store")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--json", action="store_true", help="print the per-source counts as JSON")
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("verify", help="compare batch and online features as of one time (training-serving skew)")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--sample", type=int, default=1000, help="entities to compare (default 1000)")
    p.add_argument("--as-of", help="compare as of this time (default: now, UTC)")
    p.add_argument("--seed", type=int, default=0, help="seed of the entity sample")
    p.add_argument("--model", help="one model (default: every model behind a realtime or streaming serve block)")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb", help="the batch engine to compare")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_verify)


def _open_warehouse(root: Path, node: str, read_only: bool) -> Warehouse:
    """The project's warehouse, or a RunError saying why not (never built, or locked by a run)."""
    import duckdb

    from mlspec.runtime.warehouse import STATE_DIR, Warehouse

    if not (root / STATE_DIR / "warehouse.duckdb").exists():
        raise RunError(node, "the warehouse has not been built yet", "run the pipeline first: `mlspec run SPEC`")
    try:
        return Warehouse.open(root, read_only=read_only)
    except duckdb.IOException as e:
        raise RunError(node, f"cannot open the warehouse: {e}", "wait for the running `mlspec run` to finish") from None


def cmd_materialize(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mlspec.cli import _compiled_or_exit, _spec_paths
    from mlspec.runtime.online.materialize import materialize
    from mlspec.runtime.online.store import open_store

    compiled = _compiled_or_exit(_spec_paths(args.paths))
    spec = compiled.checked[0]
    with _open_warehouse(compiled.root, "materialize", read_only=True) as wh:
        store = open_store(spec, compiled.root)
        try:
            stats = materialize(wh, spec, store)
        finally:
            store.close()
    if args.json:
        print(json.dumps(stats.to_data(), indent=2, default=str))
        return 0
    if not stats.models:
        print("nothing to materialize: no serve block has mode = realtime or streaming")
        return 0
    table = Table(title=f"online store ({spec.project.online_store}) for {', '.join(stats.models)}")
    for col in ("source", "mode", "written", "pruned", "watermark", "history kept"):
        table.add_column(col, justify="right" if col in ("written", "pruned", "watermark") else "left",
                         no_wrap=True)
    for s in stats.sources:
        mode = s.mode + (f" ({s.reason})" if s.reason else "")
        table.add_row(s.namespace, mode, f"{s.rows_written:,}", f"{s.rows_pruned:,}",
                      "" if s.watermark is None else f"{s.watermark:,}",
                      _since(s.keep_from))
    Console().print(table)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mlspec.cli import _compiled_or_exit, _model_name, _parse_as_of, _spec_paths
    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.online.verify import verify

    if args.sample < 1:
        print("error: --sample must be at least 1", file=sys.stderr)
        return 1
    compiled = _compiled_or_exit(_spec_paths(args.paths))
    spec = compiled.checked[0]
    model = _model_name(compiled, args.model) if args.model else None
    as_of = _parse_as_of(args.as_of) or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    with _open_warehouse(compiled.root, "verify", read_only=False) as wh:
        store = open_store(spec, compiled.root)
        try:
            checks = verify(wh, spec, store, as_of=as_of, sample=args.sample, seed=args.seed, model=model,
                            engine=args.engine)
        finally:
            store.close()
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "models": [c.to_data() for c in checks]}, indent=2, default=str))
    else:
        _render(checks)
    return 0 if ok else 1


def _render(checks: list[ModelCheck]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for c in checks:
        table = Table(title=f"{c.model}: batch vs online as of {c.as_of.isoformat(sep=' ')} "
                            f"({c.sampled:,} of {c.entities:,} entities, {c.known:,} in the online store)")
        columns = ["feature", "type", "compared", "equal", "mismatched", "max abs diff"]
        if not c.ok:
            columns.append("example keys (batch / online)")
        for col in columns:
            table.add_column(col, justify="right" if col in ("compared", "equal", "mismatched", "max abs diff")
                             else "left", no_wrap=col == "feature")
        for f in c.features:
            cells = [f.feature, f.dtype, f"{f.compared:,}", f"{f.equal:,}",
                     f"[red]{f.mismatched:,}[/red]" if f.mismatched else "0",
                     "" if f.max_abs_diff is None else f"{f.max_abs_diff:.3g}"]
            if not c.ok:
                cells.append(", ".join(f"{e['key']} ({_short(e['batch'])} / {_short(e['online'])})"
                                       for e in f.examples[:3]))
            table.add_row(*cells)
        console.print(table)
        for note in c.notes:
            console.print(f"note: {note}")
        if c.ok:
            console.print(f"[green]ok[/green]: {c.model}: no skew, {len(c.features)} features equal on "
                          f"{c.sampled:,} entities")
        else:
            bad = sum(1 for f in c.features if f.mismatched)
            console.print(f"[red]skew[/red]: {c.model}: {c.mismatched:,} mismatched values in {bad} features "
                          "(a stale `mlspec materialize`? run it, then verify again)")


def _since(keep_from: str | None) -> str:
    if keep_from is None:
        return "all"
    t = dt.datetime.fromisoformat(keep_from)
    return f"from {t:%Y-%m-%d}" if t.time() == dt.time() else f"from {t:%Y-%m-%d %H:%M}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return "null" if v is None else str(v)
