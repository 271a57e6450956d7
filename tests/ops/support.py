"""Shared helpers for the ops tests: compile a spec (file or text) and run the two subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec
from mlspec.ops.commands import add_parsers

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
EXAMPLES = ("churn", "fraud", "sensors")
CASES = ROOT / "tests" / "cases"


def compile_spec(path: Path) -> Spec:
    compiled = compile_paths([path])
    assert compiled.ok, [d.message for d in compiled.diagnostics if d.is_error]
    return compiled.checked[0]


def spec_from_text(tmp: Path, text: str, name: str = "churn.mlspec") -> Spec:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return compile_spec(path)


def churn_text() -> str:
    return (SPECS / "churn.mlspec").read_text(encoding="utf-8")


def run_cli(*argv: str) -> int:
    """The subcommands through their own parser, exactly as `mlspec.cli` registers them."""
    parser = argparse.ArgumentParser(prog="mlspec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code
