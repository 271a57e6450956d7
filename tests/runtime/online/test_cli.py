"""The README flow end to end, as a user types it: demo, run, materialize, verify (slow: trains a model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def mlspec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_demo_run_materialize_verify(tmp_path: Path) -> None:
    assert mlspec("demo", "churn", "demo", "--customers", "300", cwd=tmp_path).returncode == 0
    root = tmp_path / "demo"
    run = mlspec("run", "churn.mlspec", cwd=root)
    assert run.returncode == 0, run.stderr
    mat = mlspec("materialize", "churn.mlspec", cwd=root)
    assert mat.returncode == 0, mat.stderr
    assert "orders" in mat.stdout and "customers" in mat.stdout
    again = mlspec("materialize", "churn.mlspec", "--json", cwd=root)
    assert again.returncode == 0 and '"rows_written": 0' in again.stdout
    ver = mlspec("verify", "churn.mlspec", "--sample", "300", cwd=root)
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert "no skew" in ver.stdout


def test_verify_and_materialize_explain_a_missing_warehouse(tmp_path: Path) -> None:
    from mlspec.runtime.errors import RunError

    from .conftest import TINY_SPEC, cli

    (tmp_path / "tiny.mlspec").write_text(TINY_SPEC)
    for command in ("materialize", "verify"):
        with pytest.raises(RunError, match="has not been built") as err:
            cli([command, str(tmp_path / "tiny.mlspec")])
        assert "mlspec run" in (err.value.hint or "")
