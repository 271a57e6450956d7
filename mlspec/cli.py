"""The `mlspec` command: parses arguments, calls the library, renders results. Nothing else."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from mlspec.diagnostics import Diagnostic, MlspecError, render_json, render_text, summary
from mlspec.runtime.errors import RunError

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
        assert compiled.spec is not None and compiled.dag is not None
        print(f"ok: project `{compiled.spec.project.name}`, {compiled.dag.number_of_nodes()} nodes, "
              f"{sum(len(g.features) for g in compiled.spec.groups)} features")
    return 0 if compiled.ok else 1


def _compiled_or_exit(paths: Sequence[str]):  # type: ignore[no-untyped-def]
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
    render(compiled.dag)
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

    spec = resources.files("mlspec").joinpath("examples/churn.mlspec").read_text(encoding="utf-8")
    if not 0 <= args.bad_rows < 1:
        print("error: --bad-rows is a fraction in [0, 1)", file=sys.stderr)
        return 1
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
    return 0 if summary.ok else 1


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
    p.add_argument("example", choices=("churn",))
    p.add_argument("dir")
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bad-rows", type=float, default=0.0, help="fraction of order rows that break the spec's checks")
    p.add_argument("--drift", action="store_true", help="shift the most recent months")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run the pipeline: extract, features, checks, train, gate, register, score")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb")
    p.add_argument("--node", help="run one node (kind:name or name), as an orchestrator task does")
    p.add_argument("--until", help="run a node and everything upstream of it")
    p.add_argument("--as-of", help="scoring time for batch serve nodes (default: now, UTC)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.func
    try:
        return command(args)
    except MlspecError as e:
        print(render_text(e.diagnostics, {}), file=sys.stderr)
        return 1
    except RunError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
