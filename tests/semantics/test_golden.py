"""Golden diagnostic cases (tests/cases/check/): one bad spec per code, with its exact output.

The format and the refresh command are described in tests/semantics/golden.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlspec.semantics.context import CODES
from tests.semantics.golden import (
    ROOT,
    UPDATE,
    all_cases,
    codes_in,
    read_case,
    run_check,
    spec_to_write,
    write_expected,
)

CASES = all_cases()
# Cases whose committed expectation is the correct output that the code does not give yet.
# Strict: once the bug is fixed the case passes, the xfail turns into a failure, and the entry goes.
KNOWN_BUGS: dict[str, str] = {}
SYNTAX_CODES = frozenset({"E001", "E002", "E003", "E004"})  # emitted by mlspec/syntax/parse.py
CODE_LITERAL = re.compile(r"""["']([EW]\d{3})["']""")


def _param(path: Path) -> object:
    reason = KNOWN_BUGS.get(path.stem)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in CASES])
def test_golden_case(path: Path, tmp_path: Path) -> None:
    case = read_case(path)
    update = UPDATE and path.stem not in KNOWN_BUGS  # a known bug's expectation is written by hand
    spec = spec_to_write(case) if update else case.spec
    exit_code, output = run_check(case.name, spec, tmp_path)
    if update:
        write_expected(case, output)
    else:
        assert case.expected is not None, f"{case.name} has no expected output: run with MLSPEC_UPDATE_GOLDEN=1"
        assert "\n".join(output) == "\n".join(case.expected)

    errors = [line for line in output if re.match(r"^\S+:\d+:\d+: error\[", line)]
    assert exit_code == (1 if errors else 0), "errors fail the check; warnings alone do not"
    if case.code is not None:
        found = set(codes_in(output))
        assert found == {case.code}, f"{case.name} is the case for {case.code}; it reports {sorted(found)}"


def test_known_bugs_are_cases() -> None:
    assert set(KNOWN_BUGS) <= {p.stem for p in CASES}


def test_every_code_has_a_golden_case() -> None:
    covered = {read_case(p).code for p in CASES} - {None}
    known = set(CODES) | SYNTAX_CODES
    assert not (known - covered), f"codes without a case in tests/cases/check/: {sorted(known - covered)}"
    assert not (covered - known), f"cases for codes that do not exist: {sorted(covered - known)}"


def test_every_emitted_code_is_catalogued() -> None:
    """A code written anywhere in the checker, loader or parser is in CODES (or is a syntax code)."""
    sources = [*(ROOT / "mlspec" / "semantics").glob("*.py"), ROOT / "mlspec" / "load.py"]
    used = {code for f in sources for code in CODE_LITERAL.findall(f.read_text(encoding="utf-8"))}
    assert used <= set(CODES), f"codes used but not in CODES: {sorted(used - set(CODES))}"
    parser_codes = set(CODE_LITERAL.findall((ROOT / "mlspec" / "syntax" / "parse.py").read_text(encoding="utf-8")))
    assert parser_codes == SYNTAX_CODES


def test_codes_are_well_formed() -> None:
    for code, meaning in CODES.items():
        assert re.fullmatch(r"[EW]\d{3}", code), code
        assert meaning and meaning == meaning.strip()
        assert not code.startswith("E0"), "E0xx is reserved for syntax errors"


def test_case_names_say_their_code() -> None:
    for path in CASES:
        case = read_case(path)
        assert re.fullmatch(r"([ew]\d{3}_)?[a-z0-9_]+\.mlspec", case.name), case.name
        assert any(line.startswith("#") for line in case.spec.splitlines()), f"{case.name}: say what is wrong"
