"""Shared helpers of the backend tests: compile the example specs once, generate targets."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx

from mlspec.backends import generate
from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec

REPO = Path(__file__).resolve().parents[2]
SPECS = ("churn", "fraud", "sensors")
TARGETS = ("airflow", "docker", "dvc", "k8s")
CASES = Path(__file__).resolve().parent / "cases"
PYTHON = sys.executable


@functools.cache
def compiled(path: str) -> tuple[Spec, nx.DiGraph]:
    result = compile_paths([REPO / path])
    assert result.ok, result.diagnostics
    return result.checked


def example(name: str) -> tuple[Spec, nx.DiGraph]:
    return compiled(f"specs/{name}.mlspec")


def golden_files(name: str, target: str, options: dict[str, str] | None = None) -> dict[str, str]:
    """What `mlspec compile specs/NAME.mlspec --target TARGET` writes, run from the repository root."""
    spec, dag = example(name)
    opts = dict(options or {})
    if target == "docker":
        opts.setdefault("out_dir", f"generated/{name}/docker")
    return generate(target, spec, dag, f"specs/{name}.mlspec", opts)


def mlspec_bin() -> str:
    """The `mlspec` console script next to this interpreter."""
    return str(Path(PYTHON).parent / "mlspec")


def env_with_venv() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env or env_with_venv(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr
