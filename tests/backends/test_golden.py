"""Committed golden output: generated/<spec>/<target>/ for every example spec and target.

Regenerated and compared byte for byte; refresh with `MLSPEC_UPDATE_GOLDEN=1 pytest tests/backends -k golden`
(or `make golden`), then review the diff: a committed expectation is a reviewed one.
"""

from __future__ import annotations

import os

import pytest

from mlspec.backends.commands import write_files
from tests.backends.support import REPO, SPECS, TARGETS, golden_files

UPDATE = os.environ.get("MLSPEC_UPDATE_GOLDEN") == "1"


# Target options worth a reviewed example: generated/<spec>/<dir>/ holds `--target T -o K=V ...`.
VARIANTS = [("fraud", "k8s-kserve", "k8s", {"kserve": "true"})]
CASES = [(name, target, target, {}) for name in SPECS for target in TARGETS] + VARIANTS


@pytest.mark.parametrize(("name", "folder", "target", "options"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_golden_output(name: str, folder: str, target: str, options: dict[str, str]) -> None:
    files = golden_files(name, target, options)
    out = REPO / "generated" / name / folder
    if UPDATE:
        write_files(out, files)
    assert out.is_dir(), f"no golden output in {out}: run with MLSPEC_UPDATE_GOLDEN=1"
    committed = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert sorted(committed) == sorted(files), "files added or removed: refresh the golden output"
    for rel, text in files.items():
        assert committed[rel] == text.encode("utf-8"), f"{out / rel} differs: refresh the golden output and review"
    assert golden_files(name, target, options) == files, "generating twice gives different bytes"
