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


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", SPECS)
def test_golden_output(name: str, target: str) -> None:
    files = golden_files(name, target)
    out = REPO / "generated" / name / target
    if UPDATE:
        write_files(out, files)
    assert out.is_dir(), f"no golden output in {out}: run with MLSPEC_UPDATE_GOLDEN=1"
    committed = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert sorted(committed) == sorted(files), "files added or removed: refresh the golden output"
    for rel, text in files.items():
        assert committed[rel] == text.encode("utf-8"), f"{out / rel} differs: refresh the golden output and review"
    assert golden_files(name, target) == files, "generating twice gives different bytes"
