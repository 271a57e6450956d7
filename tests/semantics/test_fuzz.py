"""`mlspec check` never crashes: any text, and valid specs with random damage, give exit 0 or 1.

The damage is what an editor produces mid-keystroke: characters or whole tokens deleted,
inserted or replaced, a few at a time, anywhere in the example specs.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlspec.cli import main
from tests.semantics.golden import ROOT

SPEC_TEXTS = tuple(p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").glob("*.mlspec")))
TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?[a-z]*|\.\.|->|[-+*/%<>=!]=?|\S')
# Every token of the examples, and a few that are known to be trouble for a checker.
VOCAB = sorted({t for text in SPEC_TEXTS for t in TOKEN.findall(text) if not t.startswith("#")} | {
    "1e999", "0d", "0ms", "-1", '""', '"2026-13-01"', '"2026-01-01T00:00:00+14:00"', "null", "now()", "as_of",
    "9" * 30, "1" + "0" * 400, "case when true then 1 end", "*", "last 0d", "env(\"X\")", "{", "}", "(", ")",
    "..", "schema", "import", "request = true", "stream(\"x\")", "champion.auc", "not", "is null", "in", "over",
})
JSON_KEYS = {"code", "severity", "message", "file", "line", "col", "end_line", "end_col", "hint"}
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def mutate(text: str, edits: list[tuple[str, str, float, str]]) -> str:
    """Apply (level, op, where in [0, 1), new text) edits in order; level is "char" or "token"."""
    for level, op, where, new in edits:
        spans = [(m.start(), m.end()) for m in TOKEN.finditer(text)] if level == "token" else []
        if spans:
            a, b = spans[int(where * len(spans))]
        else:
            a = int(where * (len(text) + 1))
            b = min(len(text), a + 1)
        if op == "delete":
            text = text[:a] + text[b:]
        elif op == "insert":
            text = text[:a] + new + (" " if level == "token" else "") + text[a:]
        else:
            text = text[:a] + new + text[b:]
    return text


edits = st.lists(st.tuples(
    st.sampled_from(["char", "token"]),
    st.sampled_from(["delete", "insert", "replace"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.one_of(st.sampled_from(VOCAB), st.characters(), st.text(max_size=3)),
), min_size=1, max_size=4)
mutated_specs = st.builds(mutate, st.sampled_from(SPEC_TEXTS), edits)
spec_like_text = st.text(alphabet='{}()[]=<>!.,*+-/%"#\n\t _abcdefgilmnoprstuxy0123456789', max_size=200)
any_text = st.one_of(st.text(max_size=300), spec_like_text)


def check(path: Path, fmt: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", "--format", fmt, str(path)])
    return code, out.getvalue(), err.getvalue()


def assert_well_behaved(path: Path, text: str, fmt: str) -> None:
    path.write_text(text, encoding="utf-8")
    code, out, err = check(path, fmt)
    assert code in (0, 1)
    if fmt == "json":
        found = json.loads(out)
        assert all(set(d) == JSON_KEYS for d in found)
        assert code == (1 if any(d["severity"] == "error" for d in found) else 0)
    else:
        assert (code == 0) == out.startswith("ok: ")
        assert (code == 1) == bool(re.search(r"^\S+:\d+:\d+: error\[", err, re.MULTILINE))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=any_text, fmt=st.sampled_from(["text", "json"]))
def test_arbitrary_text_never_crashes(workdir: Path, text: str, fmt: str) -> None:
    assert_well_behaved(workdir / "any.mlspec", text, fmt)


@FUZZ
@given(text=mutated_specs, fmt=st.sampled_from(["text", "json"]))
def test_damaged_specs_never_crash(workdir: Path, text: str, fmt: str) -> None:
    assert_well_behaved(workdir / "damaged.mlspec", text, fmt)


def test_mutate_edits_what_it_is_told() -> None:
    assert mutate("a b c", [("token", "delete", 0.4, "")]) == "a  c"
    assert mutate("a b c", [("token", "replace", 0.0, "x")]) == "x b c"
    assert mutate("ab", [("char", "insert", 0.99, "!")]) == "ab!"


def test_damaged_specs_through_the_real_command(tmp_path: Path) -> None:
    """A few damaged specs through `mlspec check` in a subprocess: exit 0 or 1, never a traceback."""
    rng = random.Random(20261127)
    paths = []
    for i in range(3):
        spec = SPEC_TEXTS[i % len(SPEC_TEXTS)]
        damage = [(rng.choice(["char", "token"]), rng.choice(["delete", "insert", "replace"]), rng.random(),
                   rng.choice(VOCAB)) for _ in range(3)]
        path = tmp_path / f"damaged_{i}.mlspec"
        path.write_text(mutate(spec, damage), encoding="utf-8")
        paths.append(path)
    script = Path(sys.executable).parent / "mlspec"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mlspec.cli"]
    for path in paths:
        done = subprocess.run([*command, "check", path.name], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode in (0, 1), done.stderr
        assert "Traceback" not in done.stderr


# ---- inputs that once crashed the parser (mlspec/syntax/parse.py) ----------------------------


def test_deeply_nested_expression(tmp_path: Path) -> None:
    path = tmp_path / "deep.mlspec"
    path.write_text("features f {\n  entity = e\n  from = s\n  x = " + "-" * 1000 + "1\n}\n", encoding="utf-8")
    assert check(path, "text")[0] == 1


def test_int_literal_over_4300_digits(tmp_path: Path) -> None:
    path = tmp_path / "long.mlspec"
    path.write_text("project p { owner = " + "1" * 5000 + " }\n", encoding="utf-8")
    assert check(path, "text")[0] == 1
