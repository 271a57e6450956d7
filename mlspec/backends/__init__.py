"""Backends: compile a checked spec and its DAG into the files of a deployment target.

A backend is a plugin found through the entry-point group `mlspec.backends` and imported only
when it is used. It is pure: `generate` returns `{relative path: file text}` and never touches
the file system, the clock or the environment, so the same spec gives the same bytes.

    [project.entry-points."mlspec.backends"]
    airflow = "mlspec.backends.airflow:BACKEND"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import networkx as nx

    from mlspec.ir.spec import Spec

__all__ = ["BUILTIN", "Backend", "BackendError", "BackendInfo", "available", "generate", "load"]

GROUP = "mlspec.backends"

# The targets shipped with mlspec. Installed entry points come first; these keep a source
# checkout whose package metadata predates a target working (the same objects either way).
BUILTIN: dict[str, str] = {
    "airflow": "mlspec.backends.airflow:BACKEND",
    "docker": "mlspec.backends.docker:BACKEND",
    "dvc": "mlspec.backends.dvc:BACKEND",
    "k8s": "mlspec.backends.k8s:BACKEND",
}


class BackendError(Exception):
    """The spec cannot be expressed safely on this target (a name, path or option it rejects)."""


@runtime_checkable
class Backend(Protocol):
    """What every target implements."""

    name: str
    description: str
    options: Mapping[str, str]  # option name -> default, documented in `--list-targets`

    def generate(self, spec: Spec, dag: nx.DiGraph, spec_path: str,
                 options: Mapping[str, str]) -> dict[str, str]:
        """The target's files for one compiled spec: relative POSIX path -> text. Pure."""
        ...


@dataclass(frozen=True)
class BackendInfo:
    name: str
    value: str  # "module:attribute"
    origin: str  # "entry point" | "built in"


def available() -> dict[str, BackendInfo]:
    """Every installed target, by name, without importing any of them."""
    from importlib.metadata import entry_points

    found = {name: BackendInfo(name, value, "built in") for name, value in BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        found[ep.name] = BackendInfo(ep.name, ep.value, "entry point")
    return dict(sorted(found.items()))


def load(name: str) -> Backend:
    """Import one target (and only it)."""
    from importlib.metadata import EntryPoint

    targets = available()
    if name not in targets:
        from mlspec.diagnostics import did_you_mean

        hint = did_you_mean(name, list(targets))
        raise BackendError(f"no target `{name}` (installed: {', '.join(targets)})" + (f"; {hint}" if hint else ""))
    obj = EntryPoint(name, targets[name].value, GROUP).load()
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise BackendError(f"target `{name}` ({targets[name].value}) does not implement the Backend protocol")
    return backend


def generate(name: str, spec: Spec, dag: nx.DiGraph, spec_path: str,
             options: Mapping[str, str] | None = None) -> dict[str, str]:
    """Load target `name`, check the options against what it declares, and generate its files."""
    backend = load(name)
    given = dict(options or {})
    unknown = sorted(set(given) - set(backend.options))
    if unknown:
        known = ", ".join(backend.options) or "none"
        raise BackendError(f"target `{name}` has no option {', '.join(map(repr, unknown))} (options: {known})")
    return backend.generate(spec, dag, spec_path, {**backend.options, **given})
