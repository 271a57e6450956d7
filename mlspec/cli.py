"""The `mlspec` command: parses arguments, calls the library, renders results. Nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlspec.diagnostics import Diagnostic, MlspecError, render_json, render_text, summary

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.func
    try:
        return command(args)
    except MlspecError as e:
        print(render_text(e.diagnostics, {}), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
