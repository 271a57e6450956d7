"""The `readiness` and `runbook` subcommands: argument parsing and rendering only.

`mlspec.cli` registers them with `add_parsers(sub)`; the judging is in readiness.py and the
writing in runbook.py. Both read the compiled spec alone: no warehouse, registry or network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that import light
    from mlspec.ops.readiness import Readiness

__all__ = ["add_parsers", "cmd_readiness", "cmd_runbook"]

_STATUS_STYLE = {"met": ("✓ met", "green"), "partial": ("◐ partial", "yellow"), "missing": ("✗ missing", "red")}


def add_parsers(sub: Any) -> None:
    """Register `readiness` and `runbook` on the CLI's subparsers object."""
    p = sub.add_parser("readiness", help="score a spec against the twelve production requirements; say what is missing")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--min", type=float, default=None, metavar="SCORE",
                   help="exit 1 when the score is below SCORE (0 to 12; halves count)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=cmd_readiness)

    p = sub.add_parser("runbook", help="generate the operational runbook (Markdown) from a spec")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the runbook here (default: stdout)")
    p.set_defaults(func=cmd_runbook)


def cmd_readiness(args: argparse.Namespace) -> int:
    from mlspec.cli import _compiled_or_exit, _spec_paths
    from mlspec.ops.readiness import assess

    result = assess(_compiled_or_exit(_spec_paths(args.paths)).checked[0])
    if args.min is not None and not 0 <= args.min <= result.total:
        print(f"error: --min is a score between 0 and {result.total}", file=sys.stderr)
        return 1
    below = args.min is not None and result.score < args.min
    if args.json:
        data = result.to_data()
        data["min"] = args.min
        data["passed"] = not below
        print(json.dumps(data, indent=2))
    else:
        _print_table(result)
    if below:
        print(f"readiness {result.score_text} is below --min {args.min:g}", file=sys.stderr)
        return 1
    return 0


def _print_table(result: Readiness) -> None:
    """One row per requirement, then the spec text to add for each one that falls short."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"production readiness of `{result.project}`")
    table.add_column("#", justify="right")
    table.add_column("requirement", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("found")
    for f in result.findings:
        label, style = _STATUS_STYLE[f.status]
        table.add_row(str(f.number), f.requirement, f"[{style}]{label}[/]", escape(f.detail))
    console = Console()
    console.print(table)
    for f in result.findings:
        if f.fix:
            console.print(f"\n[bold]{f.number}. {f.requirement}[/]: add to the spec")
            console.print(escape("\n".join(f"    {line}" for line in f.fix.splitlines())), highlight=False)
    counts = result.to_data()["counts"]
    console.print(f"\n[bold]score {result.score_text}[/]  ({counts['met']} met, {counts['partial']} partial, "
                  f"{counts['missing']} missing)")


def cmd_runbook(args: argparse.Namespace) -> int:
    from mlspec.cli import _compiled_or_exit, _spec_paths
    from mlspec.ops.runbook import render_runbook

    text = render_runbook(_compiled_or_exit(_spec_paths(args.paths)).checked[0])
    if args.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({text.count(chr(10))} lines)")
    return 0
