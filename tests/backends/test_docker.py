"""Docker target: no engine runs here, so the Dockerfile's content is checked, every file it COPYs
must exist (generated beside it or in the repository), and the start-up scripts are exercised."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlspec.backends.docker import copied_files
from mlspec.backends.docker.pins import PINS
from tests.backends.support import REPO, SPECS, golden_files


@pytest.mark.parametrize("name", SPECS)
def test_every_copied_file_exists(name: str) -> None:
    files = golden_files(name, "docker")
    out_dir = f"generated/{name}/docker"
    sources = copied_files(files["Dockerfile"])
    assert f"{out_dir}/requirements.txt" in sources and f"specs/{name}.mlspec" in sources and "mlspec" in sources
    for src in sources:
        generated = src.startswith(out_dir + "/") and src.removeprefix(out_dir + "/") in files
        assert generated or (REPO / src).exists(), f"COPY {src}: neither generated nor in the repository"
    ignore = files["Dockerfile.dockerignore"].splitlines()
    assert "*" in ignore
    for src in sources:  # the allow-list lets every copied path into the build context
        assert f"!{src}" in ignore, src


def test_dockerfile_content() -> None:
    text = golden_files("churn", "docker")["Dockerfile"]
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms == ["${PYTHON_IMAGE}"] * 2 and "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert re.search(r"^USER 10001:10001$", text, re.M), "runs as a non-root user"
    assert "useradd --system --uid 10001" in text
    assert text.index("USER 10001") < text.index("ENTRYPOINT")
    assert "pip install --no-deps -r /tmp/requirements.txt" in text and "pip install --no-deps /src" in text
    assert re.search(r"^HEALTHCHECK .*\n  CMD .*http://127\.0\.0\.1:8080/health", text, re.M)
    assert 'CMD ["mlspec", "serve", "churn.mlspec", "--host", "0.0.0.0", "--port", "8080"]' in text
    assert "COPY specs/churn.mlspec /opt/mlspec/spec/churn.mlspec" in text
    assert "EXPOSE 8080" in text
    sensors = golden_files("sensors", "docker")["Dockerfile"]  # streaming only: a job image, no HTTP health
    assert "HEALTHCHECK NONE" in sensors and 'CMD ["mlspec", "run", "sensors.mlspec"]' in sensors


def test_requirements_are_pinned_with_xgboost_cpu() -> None:
    lines = [x for x in golden_files("churn", "docker")["requirements.txt"].splitlines() if not x.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][0-9a-z.]*", x) for x in lines), lines
    names = {x.split("==")[0] for x in lines}
    assert "xgboost-cpu" in names and "xgboost" not in names and not any(n.startswith("nvidia") for n in names)
    assert {"duckdb", "polars", "uvicorn", "starlette", "prometheus-client", "lark"} <= names


def test_pins_agree_with_constraints() -> None:
    constraints = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            constraints[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    constraints["xgboost-cpu"] = constraints.get("xgboost", PINS["xgboost-cpu"])
    for name, version in PINS.items():
        if name in constraints:
            assert constraints[name] == version, f"{name}: pins.py {version} but constraints.txt {constraints[name]}"


def test_entrypoint_and_fetch_script(tmp_path: Path) -> None:
    files = golden_files("churn", "docker")
    ast.parse(files["fetch_model.py"])
    entry = tmp_path / "entrypoint.sh"
    entry.write_text(files["entrypoint.sh"])
    assert files["entrypoint.sh"].startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(entry)], check=True)
    # fetch a registry folder from a mounted volume (file://) into the workspace
    source = tmp_path / "volume/registry/churn_risk"
    source.mkdir(parents=True)
    (source / "champion.json").write_text('{"current": "abc"}')
    script = tmp_path / "fetch_model.py"
    script.write_text(files["fetch_model.py"])
    dest = tmp_path / "workspace/.mlspec/registry"
    for _ in range(2):  # a second start replaces the copy
        subprocess.run([sys.executable, str(script), (tmp_path / "volume/registry").as_uri(), str(dest)], check=True)
        assert (dest / "churn_risk/champion.json").read_text() == '{"current": "abc"}'
    missing = subprocess.run([sys.executable, str(script), (tmp_path / "nowhere").as_uri(), str(tmp_path / "d2")],
                             capture_output=True, text=True, check=True)
    assert "starting without a model" in missing.stderr
    shutil.rmtree(tmp_path / "volume")
