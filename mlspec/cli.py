"""The `mlspec` command: parses arguments, calls the library, renders results. Nothing else."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlspec.backends.commands import add_parsers as add_compile_parsers
from mlspec.diagnostics import Diagnostic, MlspecError, render_json, render_text, summary
from mlspec.ops.commands import add_parsers as add_ops_parsers
from mlspec.plan.command import add_plan_parser
from mlspec.runtime.errors import RunError
from mlspec.runtime.monitoring.commands import add_parsers as add_monitoring_parsers
from mlspec.runtime.online.commands import add_parsers as add_online_parsers
from mlspec.runtime.serving.commands import add_parsers as add_serving_parsers
from mlspec.runtime.stream.commands import add_parsers as add_stream_parsers

if TYPE_CHECKING:
    from mlspec.compiler import Compiled
    from mlspec.runtime.registry import Registry

Command = Callable[[argparse.Namespace], int]


def _print_diagnostics(diags: Sequence[Diagnostic], texts: dict[str, str], fmt: str) -> None:
    if fmt == "json":
        print(render_json(diags))
    elif diags:
        print(render_text(diags, texts), file=sys.stderr)
        print(summary(diags), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from mlspec.compiler import compile_paths

    compiled = compile_paths(args.paths)
    _print_diagnostics(compiled.diagnostics, compiled.texts, args.format)
    if compiled.ok and args.format == "text":
        spec, dag = compiled.checked
        n = sum(len(g.features) for g in spec.groups)
        print(f"ok: project `{spec.project.name}`, {dag.number_of_nodes()} nodes, {n} feature{'s' if n != 1 else ''}")
    return 0 if compiled.ok else 1


def _compiled_or_exit(paths: Sequence[str]) -> Compiled:
    from mlspec.compiler import compile_paths

    compiled = compile_paths(paths)
    if not compiled.ok:
        _print_diagnostics(compiled.diagnostics, compiled.texts, "text")
        raise SystemExit(1)
    return compiled


def cmd_graph(args: argparse.Namespace) -> int:
    from mlspec.plan import graph_render

    compiled = _compiled_or_exit(args.paths)
    render = {"tree": graph_render.tree, "mermaid": graph_render.mermaid, "dot": graph_render.dot,
              "json": graph_render.json_graph}[args.format]
    render(compiled.checked[1])
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    from mlspec.syntax.fmt import format_source

    files: list[Path] = []
    for p in map(Path, args.paths):
        files.extend(sorted(p.glob("**/*.mlspec")) if p.is_dir() else [p])
    changed, failed = [], False
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            new = format_source(text, str(path))
        except MlspecError as e:
            print(render_text(e.diagnostics, {str(path): text}), file=sys.stderr)
            failed = True
            continue
        except (OSError, UnicodeDecodeError) as e:
            print(f"{path}: error: cannot read: {e}", file=sys.stderr)
            failed = True
            continue
        if new != text:
            changed.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "would reformat" if args.check else "reformatted"
    for path in changed:
        print(f"{verb} {path}")
    if not changed and not failed:
        print(f"{len(files)} file{'s' if len(files) != 1 else ''} already formatted")
    return 1 if failed or (args.check and changed) else 0


def _spec_paths(paths: Sequence[str]) -> list[str]:
    """Default to the .mlspec files of the current directory, like `cd DIR && mlspec run`."""
    return list(paths) or ["."]


def _parse_as_of(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"error: --as-of {text!r} is not an ISO date or timestamp (e.g. 2026-11-01)") from None
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def cmd_demo(args: argparse.Namespace) -> int:
    from mlspec.runtime.demo import write_churn_demo

    spec = resources.files("mlspec").joinpath(f"examples/{args.example}.mlspec").read_text(encoding="utf-8")
    if not 0 <= args.bad_rows < 1:
        print("error: --bad-rows is a fraction in [0, 1)", file=sys.stderr)
        return 1
    if args.example == "sensors":
        return _demo_sensors(args, spec)
    if args.customers < 50:
        print("error: --customers must be at least 50", file=sys.stderr)
        return 1
    out = Path(args.dir)
    summary = write_churn_demo(out, customers=args.customers, seed=args.seed, bad_rows=args.bad_rows,
                               drift=args.drift, spec_text=spec)
    print(f"wrote {summary.customers_rows:,} customers, {summary.orders_rows:,} orders, "
          f"{summary.labels_rows:,} labels ({summary.labels_positive:,} churned) to {out}/data")
    if summary.bad_rows.total:
        print(f"planted {summary.bad_rows.total:,} bad order rows: {summary.bad_rows.as_dict()}")
    print(f"spec: {summary.spec_path}\nnext: cd {out} && mlspec run churn.mlspec")
    return 0


def _demo_sensors(args: argparse.Namespace, spec: str) -> int:
    from mlspec.runtime.demo import write_sensors_demo

    if args.devices < 10:
        print("error: --devices must be at least 10", file=sys.stderr)
        return 1
    out = Path(args.dir)
    summary = write_sensors_demo(out, devices=args.devices, seed=args.seed, bad_rows=args.bad_rows, spec_text=spec)
    print(f"wrote {summary.devices_rows:,} devices, {summary.readings_rows:,} readings (the last up to "
          f"{summary.end:%Y-%m-%d %H:%M:%S} UTC), {summary.inspections_rows:,} inspections "
          f"({summary.inspections_failed:,} failed within 24h) to {out}/data")
    if summary.bad_rows.total:
        print(f"planted {summary.bad_rows.total:,} bad reading rows: {summary.bad_rows.as_dict()}")
    print(f"spec: {summary.spec_path}\nnext: cd {out} && mlspec run sensors.mlspec  (within 15 minutes: the spec "
          "checks freshness() < 15m)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlspec.runtime.run_render import LiveRun, print_summary
    from mlspec.runtime.runner import run_pipeline

    compiled = _compiled_or_exit(_spec_paths(args.paths))
    console = Console(stderr=args.json)
    live = None if args.json else LiveRun(console)
    summary = run_pipeline(compiled, engine=args.engine, node=args.node, until=args.until,
                           as_of=_parse_as_of(args.as_of), on_start=live.start if live else None,
                           on_node=live.done if live else None)
    if args.json:
        print(json.dumps(summary.to_data(), indent=2, default=str))
    else:
        print_summary(summary, console)
    if summary.error:
        print(summary.error, file=sys.stderr)
        return 1
    if args.fail_on_rejected and summary.rejected:
        from mlspec.runtime.runner import EXIT_REJECTED, rejection_message

        for report in summary.rejected:
            print(rejection_message(report), file=sys.stderr)
        return EXIT_REJECTED
    return 0


def _registry(paths: Sequence[str]) -> tuple[Compiled, Registry]:
    from mlspec.runtime.registry import Registry
    from mlspec.runtime.warehouse import STATE_DIR

    compiled = _compiled_or_exit(_spec_paths(paths))
    return compiled, Registry(compiled.root / STATE_DIR / "registry")


def _model_name(compiled: Compiled, name: str | None) -> str:
    models = [m.name for m in compiled.checked[0].models]
    if name is None:
        if len(models) != 1:
            raise SystemExit(f"error: the spec has {len(models)} models; name one with --model ({', '.join(models)})")
        return models[0]
    if name not in models:
        from mlspec.diagnostics import did_you_mean

        raise SystemExit(f"error: no model `{name}` in the spec" + (f"; {did_you_mean(name, models)}"
                                                                     if did_you_mean(name, models) else ""))
    return name


def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    compiled, registry = _registry(args.paths)
    rows: list[dict[str, Any]] = []
    for m in compiled.checked[0].models:
        champion = registry.champion(m.name)
        for v in registry.versions(m.name):
            rows.append({"model": m.name, "version": v.version, "status": v.status, "champion": v.version == champion,
                         "created_at": v.created_at, "metrics": v.metrics, "data_fingerprint": v.data_fingerprint,
                         "spec_hash": v.spec_hash})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no model versions yet: run `mlspec run` first")
        return 0
    table = Table(title="model versions")
    for col in ("model", "version", "status", "champion", "created", "metrics"):
        table.add_column(col)
    for r in rows:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(r["metrics"].items())
                           if k in ("auc", "logloss", "f1", "rmse", "mae", "accuracy") and isinstance(v, float))
        table.add_row(r["model"], r["version"], r["status"], "★" if r["champion"] else "", str(r["created_at"])[:19],
                      metrics)
    Console().print(table)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    compiled, registry = _registry(args.paths)
    name = _model_name(compiled, args.model)
    before = registry.champion(name)
    version = registry.promote(name, args.version, force=args.force)
    print(f"{name}: champion {before or '(none)'} -> {version}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    compiled, registry = _registry(args.paths)
    name = _model_name(compiled, args.model)
    before = registry.champion(name)
    version = registry.rollback(name)
    print(f"{name}: champion {before} -> {version} (rolled back)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from mlspec.runtime.runner import run_pipeline

    compiled = _compiled_or_exit(_spec_paths(args.paths))
    batch = [s.name for s in compiled.checked[0].serves if s.mode == "batch" and (args.serve in (None, s.name))]
    if not batch:
        print("error: no batch serve block" + (f" named `{args.serve}`" if args.serve else ""), file=sys.stderr)
        return 1
    status = 0
    for name in batch:
        summary = run_pipeline(compiled, engine=args.engine, node=f"serve:{name}", as_of=_parse_as_of(args.as_of))
        for r in summary.nodes:
            if r.status == "ok":
                d = r.detail
                print(f"{r.node}: {d['rows']:,} scores as of {d['as_of']} by version {d['version']} -> {d['output']}")
        if summary.error:
            print(summary.error, file=sys.stderr)
            status = 1
    return status


def cmd_quarantine(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mlspec.runtime.warehouse import Warehouse

    compiled = _compiled_or_exit(_spec_paths(args.paths))
    with Warehouse.open(compiled.root) as wh:
        counts = wh.conn.execute("SELECT node, reason, count(*) FROM _mlspec_quarantine GROUP BY ALL "
                                 "ORDER BY 3 DESC, 1, 2").fetchall()
        examples = wh.conn.execute("SELECT node, row_key, reason, row_json FROM _mlspec_quarantine "
                                   "ORDER BY node, row_key LIMIT ?", [args.limit]).fetchall()
    if args.json:
        print(json.dumps({"counts": [{"node": n, "reason": r, "rows": c} for n, r, c in counts],
                          "rows": [{"node": n, "key": k, "reason": r, "row": json.loads(j) if j else None}
                                   for n, k, r, j in examples]}, indent=2))
        return 0
    if not counts:
        print("quarantine is empty")
        return 0
    table = Table(title="quarantined rows")
    for col in ("node", "reason", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for n, r, c in counts:
        table.add_row(n, r, f"{c:,}")
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlspec", description="Declarative production ML systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="parse, resolve and type-check specs; report every problem")
    p.add_argument("paths", nargs="+", help=".mlspec files or directories")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("graph", help="print the compiled DAG")
    p.add_argument("paths", nargs="+")
    p.add_argument("--format", choices=("tree", "mermaid", "dot", "json"), default="tree")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("fmt", help="rewrite specs in the canonical layout (comments kept)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 naming files that would change")
    p.set_defaults(func=cmd_fmt)

    p = sub.add_parser("demo", help="write a synthetic dataset and a spec to try mlspec on")
    p.add_argument("example", choices=("churn", "sensors"))
    p.add_argument("dir")
    p.add_argument("--customers", type=int, default=5000, help="churn: customers")
    p.add_argument("--devices", type=int, default=100, help="sensors: devices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bad-rows", type=float, default=0.0,
                   help="fraction of order (churn) or reading (sensors) rows that break the spec's checks")
    p.add_argument("--drift", action="store_true", help="churn: shift the most recent months")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run the pipeline: extract, features, checks, train, gate, register, score")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb")
    p.add_argument("--node", help="run one node (kind:name or name), as an orchestrator task does")
    p.add_argument("--until", help="run a node and everything upstream of it")
    p.add_argument("--as-of", help="scoring time for batch serve nodes (default: now, UTC)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.add_argument("--fail-on-rejected", action="store_true",
                   help="exit 3 when a gate node rejects its candidate (the run still finishes; the champion "
                        "stays): what orchestrators use to surface a rejection as a failed task")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("score", help="score every entity with the champion model (batch serve blocks)")
    p.add_argument("paths", nargs="*")
    p.add_argument("--serve", help="one batch serve block by name")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb")
    p.add_argument("--as-of", help="score as of this time (default: now, UTC)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("models", help="list registered model versions, their metrics and the champion")
    p.add_argument("paths", nargs="*")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("promote", help="make a registered version the champion (atomic)")
    p.add_argument("version")
    p.add_argument("paths", nargs="*")
    p.add_argument("--model", help="which model, when the spec has several")
    p.add_argument("--force", action="store_true", help="promote even a version its gate rejected")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", help="return to the previous champion (atomic)")
    p.add_argument("paths", nargs="*")
    p.add_argument("--model")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("quarantine", help="show rows set aside by schema constraints and checks, with reasons")
    p.add_argument("paths", nargs="*")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine)

    add_plan_parser(sub)
    add_online_parsers(sub)
    add_ops_parsers(sub)
    add_compile_parsers(sub)
    add_serving_parsers(sub)
    add_monitoring_parsers(sub)
    add_stream_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `promote V --force DIR`: argparse stops taking positionals after an option
        if all(not x.startswith("-") for x in extra) and isinstance(getattr(args, "paths", None), list):
            args.paths.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    command: Command = args.func
    try:
        return command(args)
    except MlspecError as e:
        print(render_text(e.diagnostics, {}), file=sys.stderr)
        return 1
    except RunError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mlspec graph | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # registry and training errors carry user-facing messages
        if type(e).__name__ in ("RegistryError", "TrainingError", "EncodingError"):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
