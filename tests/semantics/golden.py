"""Golden diagnostic cases: a readable spec followed by the exact `mlspec check` output it gives.

A case file in tests/cases/check/ looks like this::

    # What the mistake is, in a sentence.

    source orders { ... }

    # ---- expected ----
    # case.mlspec:4:15: error[E111]: unknown name `amout`
    # 4 |   spend = sum(amout, last 90d)
    #                 ^^^^^
    #   = hint: did you mean `amount`?
    # 1 error, 0 warnings

Everything above the marker is the spec. Below it, each line of the expected output is a comment
(`# ` + line, or `#` alone for an empty line): what the CLI prints on stderr (diagnostics and
the summary), then on stdout (the `ok: ...` line when the check passes). The spec part alone is
checked, from a directory of its own, under the case's file name, so the trailer never changes
the result and file names in the output are the bare case name.

Refresh expectations with `MLSPEC_UPDATE_GOLDEN=1 pytest tests/semantics -k golden` (or
`make golden`), then review the diff: a committed expectation is a reviewed one.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mlspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = ROOT / "tests" / "cases" / "check"
MARKER = "# ---- expected ----"
UPDATE = os.environ.get("MLSPEC_UPDATE_GOLDEN") == "1"
CODE_IN_NAME = re.compile(r"^([ew]\d{3})_")
CODE_IN_OUTPUT = re.compile(r"^\S+:\d+:\d+: (?:error|warning)\[(\w+)\]: ", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    path: Path
    spec: str  # the text above the marker, exactly
    expected: list[str] | None  # None when the file has no trailer yet

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def code(self) -> str | None:
        """The code the case exists for, from its file name (`e111_...` -> E111), if any."""
        m = CODE_IN_NAME.match(self.name)
        return m.group(1).upper() if m else None


def read_case(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.rstrip("\n") == MARKER), None)
    if at is None:
        return Case(path, text, None)
    expected = []
    for line in lines[at + 1:]:
        line = line.rstrip("\n")
        if line == "#":
            expected.append("")
        elif line.startswith("# "):
            expected.append(line[2:])
        else:
            raise ValueError(f"{path.name}: expected-output lines start with `# `: {line!r}")
    return Case(path, "".join(lines[:at]), expected)


def run_check(name: str, spec: str, workdir: Path) -> tuple[int, list[str]]:
    """`mlspec check NAME` on the spec in workdir: exit code and output lines (stderr, then stdout)."""
    (workdir / name).write_text(spec, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", name])
    finally:
        os.chdir(cwd)
    text = err.getvalue() + out.getvalue()
    return code, [line.rstrip() for line in text.rstrip("\n").splitlines()]


def spec_to_write(case: Case) -> str:
    """The spec part as it will be stored: as is, or with one blank line before a new trailer."""
    return case.spec if case.expected is not None else case.spec.rstrip("\n") + "\n\n"


def write_expected(case: Case, output: list[str]) -> None:
    trailer = "\n".join(f"# {line}" if line else "#" for line in output)
    case.path.write_text(f"{spec_to_write(case)}{MARKER}\n{trailer}\n", encoding="utf-8")


def codes_in(output: list[str]) -> list[str]:
    return CODE_IN_OUTPUT.findall("\n".join(output))


def all_cases() -> list[Path]:
    return sorted(CASES_DIR.glob("*.mlspec"))
