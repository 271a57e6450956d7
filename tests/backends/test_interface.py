"""The backend interface: discovery through entry points, options, headers, determinism, no secrets."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from mlspec.backends import BUILTIN, Backend, BackendError, available, generate, load
from mlspec.backends.commands import add_parsers, write_files
from mlspec.backends.common import MARKER, spec_fingerprint
from tests.backends.support import REPO, SPECS, TARGETS, example, golden_files


class FakeBackend:
    name = "fake"
    description = "a test plugin"
    options = {"greeting": "hello"}

    def generate(self, spec, dag, spec_path, options):  # type: ignore[no-untyped-def]
        return {"hello.txt": f"{options['greeting']} {spec.project.name}\n"}


FAKE = FakeBackend()


def test_builtin_targets_are_available() -> None:
    assert set(TARGETS) <= set(available())
    for name in TARGETS:
        backend = load(name)
        assert isinstance(backend, Backend) and backend.name == name and backend.description


def test_plugins_come_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint("fake", "tests.backends.test_interface:FAKE", "mlspec.backends")

    def entry_points(**kw: str) -> list[importlib.metadata.EntryPoint]:
        return [ep] if kw.get("group") == "mlspec.backends" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert available()["fake"].origin == "entry point"
    spec, dag = example("churn")
    assert generate("fake", spec, dag, "specs/churn.mlspec", {"greeting": "hi"}) == {"hello.txt": "hi churn\n"}


def test_pyproject_registers_every_builtin_target() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    registered = data["project"].get("entry-points", {}).get("mlspec.backends", {})
    if not registered:
        pytest.skip("pyproject.toml does not list the mlspec.backends entry points yet")
    assert registered == BUILTIN


def test_unknown_target_and_option_are_reported() -> None:
    spec, dag = example("churn")
    with pytest.raises(BackendError, match="did you mean `k8s`"):
        generate("k8", spec, dag, "specs/churn.mlspec")
    with pytest.raises(BackendError, match="no option 'replicas'"):
        generate("k8s", spec, dag, "specs/churn.mlspec", {"replicas": "3"})
    with pytest.raises(BackendError, match="not one of bash, kubernetes"):
        generate("airflow", spec, dag, "specs/churn.mlspec", {"operator": "ssh"})


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", SPECS)
def test_every_file_starts_with_the_header_and_is_stable(name: str, target: str) -> None:
    files = golden_files(name, target)
    assert files
    fingerprint = spec_fingerprint(example(name)[1])
    for path, text in files.items():
        lines = text.splitlines()
        if lines[0].startswith("#!"):
            lines = lines[1:]
        assert lines[0].startswith(f"# {MARKER}") and f"specs/{name}.mlspec" in lines[0], path
        assert lines[1] == f"# Spec fingerprint: sha256:{fingerprint}", path
        assert lines[2].startswith("# DO NOT EDIT"), path
        assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", text), f"{path} carries a timestamp"
        assert str(REPO) not in text and "/root" not in text, f"{path} carries an absolute path"
    assert golden_files(name, target) == files


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_value_is_ever_written(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"FRAUD_ONCALL_WEBHOOK_URL": "https://hooks.example/T000/very-secret",
               "SRE_WEBHOOK_URL": "https://hooks.example/sre-secret-token"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    text = "".join(golden_files("fraud", target).values())
    for value in secrets.values():
        assert value not in text
    if target in ("k8s", "airflow"):
        assert "FRAUD_ONCALL_WEBHOOK_URL" in text and "SRE_WEBHOOK_URL" in text


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_compile_command_writes_every_target_and_prunes_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    assert _cli(["compile", "specs/churn.mlspec", "--target", "k8s"]) == 0
    out = tmp_path / "generated/churn/k8s"
    assert {p.name for p in out.iterdir()} == set(golden_files("churn", "k8s"))
    assert (out / "serve-churn_api.yaml").read_text() == golden_files("churn", "k8s")["serve-churn_api.yaml"]
    (out / "serve-old_api.yaml").write_text(f"# {MARKER} once\n")  # generated before, no longer
    (out / "notes.txt").write_text("mine\n")  # not generated: kept
    assert _cli(["compile", "specs/churn.mlspec", "-t", "k8s"]) == 0
    assert not (out / "serve-old_api.yaml").exists() and (out / "notes.txt").exists()
    assert "1 stale removed" in capsys.readouterr().out
    assert _cli(["compile", "specs/churn.mlspec", "--target", "docker", "--out", "build/img"]) == 0
    assert "COPY build/img/requirements.txt" in (tmp_path / "build/img/Dockerfile").read_text()
    assert _cli(["compile", "specs/churn.mlspec", "--target", "dvc", "--option", "nope=1"]) == 1
    assert "no option 'nope'" in capsys.readouterr().err
    assert _cli(["compile", "--list-targets"]) == 0
    listing = capsys.readouterr().out
    assert all(t in listing for t in TARGETS) and "--option operator=bash" in listing


def test_write_files_only_touches_changed_files(tmp_path: Path) -> None:
    assert write_files(tmp_path, {"a/b.txt": "x\n", "c.txt": "y\n"}) == (2, 0)
    assert write_files(tmp_path, {"a/b.txt": "x\n", "c.txt": "z\n"}) == (1, 0)
