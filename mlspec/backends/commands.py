"""The `compile` subcommand: argument parsing and writing files only (targets are in backends/).

`mlspec.cli` registers it with `add_parsers(sub)`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "cmd_compile", "default_out", "display_path", "option_default", "parse_options",
           "write_files"]


def add_parsers(sub: Any) -> None:
    """Register `compile` on the CLI's subparsers object."""
    p = sub.add_parser("compile", help="write a deployment target's files: airflow, k8s, docker, dvc")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--target", "-t", help="the target (see --list-targets), or `all`")
    p.add_argument("--out", help="output directory (default generated/<spec>/<target>/)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a target option, repeatable (see --list-targets)")
    p.add_argument("--list-targets", action="store_true", help="list the installed targets and their options")
    p.set_defaults(func=cmd_compile)


def cmd_compile(args: argparse.Namespace) -> int:
    from mlspec.backends import BUILTIN, BackendError, available, load

    if args.list_targets:
        for name, info in available().items():
            try:
                backend = load(name)
            except Exception as e:  # a broken plugin is listed, not fatal
                print(f"{name:8}  (cannot load {info.value}: {e})")
                continue
            print(f"{name:8}  {backend.description}")
            builtin = BUILTIN.get(name) == info.value
            for key, default in backend.options.items():
                print(f"{'':10}--option {key}={option_default(backend, key, default, builtin=builtin)}")
        return 0
    if not args.target:
        print("error: give --target NAME (or --list-targets)", file=sys.stderr)
        return 2
    from mlspec.cli import _compiled_or_exit, _spec_paths

    paths = _spec_paths(args.paths)
    compiled = _compiled_or_exit(paths)
    spec, dag = compiled.checked
    targets = list(available()) if args.target == "all" else [args.target]
    try:
        options = parse_options(args.option)
        for target in targets:
            out = Path(args.out) / target if args.out and len(targets) > 1 else Path(args.out or default_out(paths[0],
                                                                                                         target))
            files = compile_target(target, spec, dag, paths[0], out, options if len(targets) == 1 else {})
            written, removed = write_files(out, files)
            print(f"{target}: {len(files)} file{'s' if len(files) != 1 else ''} in {display_path(str(out))}"
                  f" ({written} written, {len(files) - written} unchanged"
                  + (f", {removed} stale removed" if removed else "") + ")")
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def option_default(backend: Any, key: str, default: str, *, builtin: bool = False) -> str:
    """How `--list-targets` shows a default: itself, `(derived: FROM)` when the target fills an empty one in
    (its `derived_options`; a built-in target without them: the shared DERIVED_OPTIONS), else `(unset)`."""
    from mlspec.backends.common import DERIVED_OPTIONS

    if default:
        return default
    derived = getattr(backend, "derived_options", None)
    if derived is None:
        derived = DERIVED_OPTIONS if builtin else {}
    how = derived.get(key)
    return f"(derived: {how})" if how else "(unset)"


def compile_target(target: str, spec: Any, dag: Any, spec_arg: str, out: Path,
                   options: Mapping[str, str]) -> dict[str, str]:
    """Generate one target, filling the options that depend on where files go."""
    from mlspec.backends import generate, load

    given = dict(options)
    if "out_dir" in load(target).options and "out_dir" not in given:
        given["out_dir"] = display_path(str(out))
    return generate(target, spec, dag, display_path(spec_arg), given)


def display_path(path: str) -> str:
    """A path relative to the current directory, in POSIX form: never an absolute path in output."""
    rel = os.path.relpath(Path(path).resolve(), Path.cwd().resolve())
    return Path(rel).as_posix()


def default_out(spec_arg: str, target: str) -> Path:
    p = Path(spec_arg)
    stem = p.resolve().name if p.is_dir() else p.stem
    return Path("generated") / stem / target


def parse_options(items: Sequence[str]) -> dict[str, str]:
    from mlspec.backends import BackendError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BackendError(f"--option {item!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


def write_files(out: Path, files: Mapping[str, str]) -> tuple[int, int]:
    """Write the files that changed; remove files mlspec generated here before and no longer does."""
    from mlspec.backends.common import MARKER

    written = removed = 0
    out.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            written += 1
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in files:
            try:
                head = path.read_text(encoding="utf-8")[:600]
            except (OSError, UnicodeDecodeError):
                continue
            if MARKER in head:
                path.unlink()
                removed += 1
    return written, removed
