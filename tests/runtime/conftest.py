"""Shared fixtures for the local-pipeline integration tests (issue: "The whole pipeline runs locally").

Everything here produces REAL artefacts: the churn demo's parquet files, the DuckDB warehouse under
``DIR/.mlspec``, xgboost models in the registry and parquet score files.  Nothing is mocked.

The demo dataset is written once per session (a few hundred customers, so the suite stays fast);
tests that change files or state work on their own copy (``copy_project`` / ``copy_state``).
Session fixtures that ran the pipeline (``ran``) must be treated as read-only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from mlspec.cli import main
from mlspec.runtime.demo import DemoSummary, write_churn_demo

SPEC_TEXT = resources.files("mlspec").joinpath("examples/churn.mlspec").read_text(encoding="utf-8")
CUSTOMERS = 300  # at seed 0 this trains a model with auc ~0.79, comfortably above the spec's 0.70 gate
SEED = 0
BAD_ROWS = 0.02
MODEL = "churn_risk"
STATE = ".mlspec"
WAREHOUSE = f"{STATE}/warehouse.duckdb"
REGISTRY = f"{STATE}/registry/{MODEL}"
SCORES = "scores/churn.parquet"
# Nodes `mlspec run` executes for the churn spec, and the ones it leaves to serve/monitor.
EXECUTED = ("source:customers", "source:churn_labels", "label:churned", "features:profile", "source:orders",
            "check:orders", "features:activity", "check:activity", "dataset:churn_risk", "model:churn_risk",
            "gate:churn_risk", "serve:churn_risk")
NOT_RUN_HERE = ("serve:churn_api", "monitor:churn_risk", "alert:oncall", "alert:sre")


# ---- running the CLI -----------------------------------------------------------------------

@dataclass
class Result:
    """What one `mlspec` invocation left behind: exit code, stdout, stderr, and parsed JSON if any."""

    rc: int
    out: str
    err: str
    data: Any = None

    @property
    def text(self) -> str:
        """stdout + stderr with line wrapping undone (rich wraps at the console width)."""
        return re.sub(r"\s+", " ", self.out + "\n" + self.err)

    def node(self, name: str) -> dict[str, Any]:
        """The report of node `name` in the JSON run summary."""
        assert self.data is not None, "not a --json run"
        found = [n for n in self.data["nodes"] if n["node"] == name]
        assert found, f"node {name} did not run; ran {[n['node'] for n in self.data['nodes']]}"
        return found[0]

    def ran(self) -> list[str]:
        """Nodes that executed (ok or failed), in order; skipped nodes left out."""
        return [n["node"] for n in self.data["nodes"] if n["status"] != "skipped"]


def cli(*argv: str | Path) -> Result:
    """`mlspec ARGV` in this process, exactly as the console script calls it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse and `raise SystemExit("error: ...")` paths
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
                rc = 1
            else:
                rc = int(e.code or 0)
    result = Result(rc, out.getvalue(), err.getvalue())
    if "--json" in [str(a) for a in argv] and result.out.strip():
        result.data = json.loads(result.out)
    return result


def run_json(project: Path, *extra: str) -> Result:
    """`mlspec run --json [EXTRA] PROJECT`."""
    return cli("run", "--json", *extra, project)


def mlspec_command() -> list[str]:
    """The installed `mlspec` console script next to this interpreter (python -m as a fallback)."""
    script = Path(sys.executable).with_name("mlspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlspec.cli"]


def subprocess_mlspec(*argv: str | Path, cwd: Path, timeout: float = 600) -> Result:
    """`mlspec ARGV` in a fresh process."""
    proc = subprocess.run([*mlspec_command(), *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if "--json" in map(str, argv) and proc.stdout.strip():
        result.data = json.loads(proc.stdout)
    return result


def assert_no_traceback(r: Result) -> None:
    assert "Traceback" not in r.err and "Traceback" not in r.out, f"a traceback reached the user:\n{r.err}"


def error_line(r: Result) -> str:
    """The first line of the run summary's error ("error in NODE: message")."""
    assert r.data is not None and r.data["error"], f"the run reported no error: {r.out[:2000]}"
    return str(r.data["error"]).splitlines()[0]


# ---- projects ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Demo:
    """A demo project written once: spec + three parquet sources, and what the generator says it wrote."""

    dir: Path
    summary: DemoSummary


def copy_project(src: Path, dst: Path) -> Path:
    """The spec and data of `src` in `dst`, without any run state (a fresh project)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(STATE, "scores"))
    return dst


def copy_state(src: Path, dst: Path) -> Path:
    """`src` including its warehouse, registry and scores (to continue from a run)."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The clean churn demo: 300 customers, seed 0."""
    out = tmp_path_factory.mktemp("demo") / "churn"
    return Demo(out, write_churn_demo(out, customers=CUSTOMERS, seed=SEED, spec_text=SPEC_TEXT))


@pytest.fixture(scope="session")
def bad_demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The same world with 2% of order rows corrupted (`mlspec demo --bad-rows 0.02`)."""
    out = tmp_path_factory.mktemp("bad_demo") / "churn"
    return Demo(out, write_churn_demo(out, customers=CUSTOMERS, seed=SEED, bad_rows=BAD_ROWS, spec_text=SPEC_TEXT))


@pytest.fixture
def project(demo: Demo, tmp_path: Path) -> Path:
    """A fresh copy of the clean demo project for one test."""
    return copy_project(demo.dir, tmp_path / "churn")


@dataclass(frozen=True)
class Ran:
    """A project after one full `mlspec run --json`: READ-ONLY, copy it (copy_state) to go on from it."""

    dir: Path
    result: Result
    demo: Demo
    champion: str = field(default="")


@pytest.fixture(scope="session")
def ran(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The clean demo after one full in-process `mlspec run --json DIR` (trains, promotes, scores)."""
    project = copy_project(demo.dir, tmp_path_factory.mktemp("ran") / "churn")
    result = run_json(project)
    assert result.rc == 0, result.data["error"] if result.data else result.err
    return Ran(project, result, demo, result.node(f"gate:{MODEL}")["detail"]["version"])


# ---- reading real outputs ------------------------------------------------------------------

@contextlib.contextmanager
def warehouse(project: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to PROJECT/.mlspec/warehouse.duckdb (closed on exit, so runs can reopen it)."""
    conn = duckdb.connect(str(project / WAREHOUSE), read_only=True)
    try:
        yield conn
    finally:
        conn.close()


def table(project: Path, name: str, order_by: str | None = None) -> pl.DataFrame:
    """A warehouse table as a polars frame, optionally sorted."""
    with warehouse(project) as conn:
        return conn.sql(f'SELECT * FROM "{name}"' + (f" ORDER BY {order_by}" if order_by else "")).pl()


def tables(project: Path) -> set[str]:
    with warehouse(project) as conn:
        return {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def champion_pointer(project: Path) -> dict[str, Any]:
    return json.loads((project / REGISTRY / "champion.json").read_text(encoding="utf-8"))


def versions(project: Path) -> dict[str, dict[str, Any]]:
    """version id -> metadata.json, for every registered version of the model."""
    root = project / REGISTRY / "versions"
    if not root.is_dir():
        return {}
    return {p.name: json.loads((p / "metadata.json").read_text(encoding="utf-8")) for p in sorted(root.iterdir())}


def assert_frames_equal(left: pl.DataFrame, right: pl.DataFrame, *, float_rel: float = 0.0) -> None:
    """Same columns, types and rows; floats equal, or within `float_rel` relative error when given."""
    assert left.columns == right.columns
    assert left.schema == right.schema
    assert left.height == right.height
    for col in left.columns:
        a, b = left.get_column(col), right.get_column(col)
        assert a.is_null().to_list() == b.is_null().to_list(), f"null masks differ in `{col}`"
        if float_rel and a.dtype.is_float():
            x, y = a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy()
            bad = abs(x - y) > float_rel * abs(y).clip(1.0)
            assert not bad.any(), f"`{col}` differs in {int(bad.sum())} rows, e.g. {x[bad][:3]} vs {y[bad][:3]}"
        else:
            diff = (a != b).fill_null(False)
            assert not diff.any(), (f"`{col}` differs in {int(diff.sum())} rows, "
                                    f"e.g. {a.filter(diff).head(3).to_list()} vs {b.filter(diff).head(3).to_list()}")
