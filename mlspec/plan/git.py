"""The base side of `mlspec plan SPEC --base REF`: the spec files as they were at a git ref.

Why a temporary checkout of *every* .mlspec file at the ref rather than just the named ones:
a spec may `import` others, and the base must compile exactly as it did then. Files are read
with `git show REF:path` (argv lists, never a shell), so nothing in the working tree moves.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlspec.compiler import Compiled, compile_paths


class GitError(Exception):
    """A problem a user can fix (not a repository, unknown ref, no git); the message says how."""


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed; compare two files instead: mlspec plan OLD NEW") from None
    if proc.returncode != 0:
        raise GitError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return proc.stdout


def _git_bytes(args: Sequence[str], cwd: Path) -> bytes:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise GitError(proc.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed")
    return proc.stdout


def repo_root(path: Path) -> Path:
    """The top of the working tree holding `path`, or a GitError naming the alternative."""
    where = path if path.is_dir() else path.parent
    if not where.exists():
        raise GitError(f"{path} does not exist")
    try:
        return Path(_git(["rev-parse", "--show-toplevel"], where).strip()).resolve()
    except GitError:
        raise GitError(f"{where} is not inside a git repository; compare two files instead: "
                       "mlspec plan OLD NEW") from None


def resolve(root: Path, ref: str) -> str:
    """The commit a ref names, or a GitError that says the ref is unknown."""
    if ref.startswith("-"):
        raise GitError(f"unknown git ref `{ref}`")
    try:
        return _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root).strip()
    except GitError:
        if ref == "HEAD":
            raise GitError(f"the repository {root} has no commits yet; commit the spec first, or compare two "
                           "files: mlspec plan OLD NEW") from None
        raise GitError(f"unknown git ref `{ref}` in {root}") from None


def default_base(root: Path) -> str:
    """The merge-base with `main` (local, else origin/main) when one exists, else HEAD: what a PR changes."""
    for branch in ("main", "origin/main"):
        try:
            resolve(root, branch)
        except GitError:
            continue
        try:
            return _git(["merge-base", "HEAD", branch], root).strip()
        except GitError:
            break
    return "HEAD"


@dataclass(frozen=True)
class BaseSide:
    """The compiled base, or None when the spec did not exist at the ref (everything is new)."""

    ref: str
    commit: str
    compiled: Compiled | None
    label: str


def _relabel(compiled: Compiled, tmp: Path, root: Path, ref: str) -> Compiled:
    """Diagnostics name `REF:path/in/repo`, never the temporary directory."""
    def name(file: str) -> str:
        try:
            rel = Path(file).resolve().relative_to(tmp)
        except ValueError:
            return file
        return f"{ref}:{rel.as_posix()}"

    diags = tuple(dataclasses.replace(d, span=dataclasses.replace(d.span, file=name(d.span.file)))
                  for d in compiled.diagnostics)
    texts = {name(k): v for k, v in compiled.texts.items()}
    return dataclasses.replace(compiled, diagnostics=diags, texts=texts, root=root)


def compile_at(paths: Sequence[str | Path], ref: str | None) -> BaseSide:
    """Compile `paths` (files or directories of the working tree) as they were at `ref`."""
    if not paths:
        raise GitError("no spec given")
    first = Path(paths[0]).resolve()
    root = repo_root(first)
    given = ref
    ref = ref or default_base(root)
    commit = resolve(root, ref)
    rels = []
    for p in paths:
        try:
            rels.append(Path(p).resolve().relative_to(root))
        except ValueError:
            raise GitError(f"{p} is outside the git repository {root}") from None
    shown = ref if given or ref == "HEAD" else f"{commit[:12]} (merge-base with main)"
    label = f"{shown}:" + ", ".join(r.as_posix() for r in rels)
    listing = _git(["ls-tree", "-r", "-z", "--name-only", commit], root)
    specs = [name for name in listing.split("\0") if name.endswith(".mlspec")]
    with tempfile.TemporaryDirectory(prefix="mlspec-plan-") as tmp_name:
        tmp = Path(tmp_name).resolve()
        for name in specs:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_git_bytes(["show", f"{commit}:{name}"], root))
        present = [tmp / r for r in rels if (tmp / r).is_file() or any((tmp / r).glob("*.mlspec"))]
        if not present:
            return BaseSide(ref, commit, None, f"{label} (absent)")
        compiled = compile_paths(present)
        return BaseSide(ref, commit, _relabel(compiled, tmp, root, ref), label)
