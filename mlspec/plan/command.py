"""`mlspec plan`: compile both sides, diff them, render, and choose an exit code CI can act on.

    mlspec plan SPEC [--base REF]     SPEC (file or directory) at REF vs the working tree
    mlspec plan OLD NEW               two files or directories

Exit codes: 0 success (with --detailed-exitcode: no changes), 2 changes (--detailed-exitcode
only), 1 an error — a spec that does not compile, a git problem, or a breaking change under
`--fail-on breaking`. Errors are printed as diagnostics, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from mlspec.compiler import Compiled
    from mlspec.plan.diff import Plan

FORMATS = ("text", "markdown", "json")
EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def add_plan_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `plan` on the CLI's subparsers; the handler is stored as `func`, like every command."""
    p = subparsers.add_parser(
        "plan", help="show what a spec change does: nodes changed, backfills, retrains, API contract",
        description="Compare two versions of a spec on the compiled graph (never on text) and show what changes: "
                    "Terraform-style, with breaking / non-breaking / metadata-only categories and their impact.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="SPEC (compared with its version at --base) or OLD NEW (files or directories)")
    p.add_argument("--base", metavar="REF",
                   help="git ref of the base for a single SPEC (default: merge-base with main, else HEAD)")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (terminal), markdown (PR comment), json")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when there are no changes, 2 when there are, 1 on error")
    p.add_argument("--fail-on", choices=("breaking",), help="exit 1 when the plan has a breaking change")
    p.set_defaults(func=cmd_plan)
    return p


def _report(compiled: Compiled, side: str, err: TextIO) -> bool:
    """Print the diagnostics of a side that does not compile clean; True when it is usable."""
    from mlspec.diagnostics import render_text, summary

    if compiled.ok:
        return True
    print(f"error: the {side} spec does not compile:", file=err)
    if compiled.diagnostics:
        print(render_text(compiled.diagnostics, compiled.texts), file=err)
        print(summary(compiled.diagnostics), file=err)
    return False


def build(args: argparse.Namespace, err: TextIO) -> Plan | None:
    """The plan the arguments ask for, or None after printing why there is none."""
    from mlspec.compiler import compile_paths
    from mlspec.plan.diff import build_plan
    from mlspec.plan.git import GitError, compile_at

    paths: Sequence[str] = args.paths
    if len(paths) > 2:
        print("error: give one SPEC (compared with --base) or two paths OLD NEW", file=err)
        return None
    if len(paths) == 2:
        if args.base is not None:
            print("error: --base compares one SPEC with a git ref; with OLD NEW leave it out", file=err)
            return None
        before, after = compile_paths([paths[0]]), compile_paths([paths[1]])
        before_ok, after_ok = _report(before, "old", err), _report(after, "new", err)
        if not (before_ok and after_ok):
            return None
        return build_plan(before.checked, after.checked, base=paths[0], head=paths[1])
    try:
        base = compile_at(paths, args.base)
    except GitError as e:
        print(f"error: {e}", file=err)
        return None
    head = compile_paths(paths)
    base_ok = base.compiled is None or _report(base.compiled, f"base ({base.ref})", err)
    head_ok = _report(head, "working-tree", err)
    if not (base_ok and head_ok):
        return None
    old = base.compiled.checked if base.compiled is not None else None
    return build_plan(old, head.checked, base=base.label, head=f"{', '.join(paths)} (working tree)")


def cmd_plan(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The `plan` handler: never raises for a user's mistake, always returns an exit code."""
    from mlspec.plan import render

    out = out or sys.stdout
    err = err or sys.stderr
    plan = build(args, err)
    if plan is None:
        return EXIT_ERROR
    if args.format == "json":
        out.write(render.render_json(plan))
    elif args.format == "markdown":
        out.write(render.render_markdown(plan))
    elif out is sys.stdout:
        render.print_text(plan)
    else:
        out.write(render.render_text(plan))
    if args.fail_on == "breaking" and plan.breaking:
        print("error: the plan has breaking changes (--fail-on breaking)", file=err)
        return EXIT_ERROR
    if args.detailed_exitcode:
        return EXIT_CHANGES if plan.has_changes else EXIT_OK
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mlspec.plan.command ...`: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="mlspec")
    add_plan_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["plan", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
