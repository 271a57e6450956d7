"""The public pipeline: files -> AST -> checked IR -> DAG, each stage in order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import networkx as nx

from mlspec.diagnostics import Diagnostic
from mlspec.ir.dag import build_dag
from mlspec.ir.spec import Spec
from mlspec.load import load
from mlspec.semantics.check import check_modules


@dataclass(frozen=True)
class Compiled:
    """The result of compiling a spec: the IR and DAG when clean, and every diagnostic."""

    spec: Spec | None
    dag: nx.DiGraph | None
    diagnostics: tuple[Diagnostic, ...]
    texts: dict[str, str]
    root: Path

    @property
    def ok(self) -> bool:
        return self.spec is not None and not any(d.is_error for d in self.diagnostics)

    @property
    def checked(self) -> tuple[Spec, nx.DiGraph]:
        """The spec and DAG of a clean compile (callers check `ok` first)."""
        if self.spec is None or self.dag is None:
            raise ValueError("the spec has errors; check `ok` before using it")
        return self.spec, self.dag


def _relative(file: str, root: Path) -> str:
    """A spec file's path from the project root: the same wherever the command runs."""
    return Path(os.path.relpath(Path(file).resolve(), root.resolve())).as_posix()


def compile_paths(paths: Sequence[str | Path]) -> Compiled:
    loaded = load(paths)
    diagnostics = list(loaded.diagnostics)
    spec = dag = None
    if not diagnostics and loaded.modules:
        spec, found = check_modules(loaded.modules)
        diagnostics.extend(found)
        if spec is not None:
            spec = replace(spec, files=tuple(_relative(f, loaded.root) for f in spec.files))
            dag = build_dag(spec)
    return Compiled(spec, dag, tuple(diagnostics), loaded.texts, loaded.root)
