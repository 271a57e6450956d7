"""Properties of plans over random edits of the example specs.

Each side is an example spec after a few random edits of what the IR sees: a number in a window,
threshold or param changed, a feature line dropped, duplicated under a new name, or renamed.
Only pairs that compile clean are kept. Then:
- plan(a, a) and plan(a, fmt(a)) are "No changes" (the plan reads the IR, never the text);
- plan(a, b) and plan(b, a) mirror each other (adds <-> removes, old <-> new, renames reversed);
- the plan is empty exactly when the two IRs are equal: nothing changes unseen.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlspec.compiler import Compiled
from mlspec.ir.spec import Spec
from mlspec.syntax.fmt import format_source
from tests.plan.support import SPECS, assert_mirror, compile_text, plan_of

_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much]
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=_QUIET)  # ~100 compiles
THOROUGH = settings(max_examples=300, deadline=None, suppress_health_check=_QUIET)
TEXTS = {p.stem: p.read_text(encoding="utf-8") for p in SPECS}
NUMBER = re.compile(r"(?<=[\s(\[,=<>])(\d+)(\.\d+)?(ms|s|m|h|d|w)?(?=[\s),\]]|$)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
FEATURE_LINE = re.compile(r"^(\s+)(\w+)(\s*=\s*)(.+)$")
NOT_FEATURES = {"entity", "from", "request", "description"}

Edit = tuple[str, int, int]  # (kind, which match, new number)
edits = st.tuples(st.sampled_from(["number", "number", "drop", "copy", "rename"]), st.integers(0, 10_000),
                  st.integers(1, 400))


def _code(line: str) -> str:
    """The line with strings blanked and any comment cut, so matches never land in either."""
    blanked = STRING.sub(lambda m: "x" * len(m.group(0)), line)
    return blanked.split("#", 1)[0]


def _feature_lines(lines: list[str]) -> list[int]:
    """Indices of `name = expr` lines inside `features` blocks."""
    out, inside = [], False
    for i, line in enumerate(lines):
        if line.startswith("features "):
            inside = True
        elif line.startswith("}"):
            inside = False
        elif inside and (m := FEATURE_LINE.match(_code(line))) and m.group(2) not in NOT_FEATURES:
            out.append(i)
    return out


def apply_edit(text: str, edit: Edit) -> str:
    kind, pick, value = edit
    lines = text.split("\n")
    if kind == "number":
        spots = [(i, m) for i, line in enumerate(lines) for m in NUMBER.finditer(_code(line))]
        if not spots:
            return text
        i, m = spots[pick % len(spots)]
        number = str(value) if m.group(2) is None else f"{value / 100:g}" if value % 100 else f"{value // 100}.5"
        lines[i] = lines[i][: m.start()] + number + (m.group(3) or "") + lines[i][m.end():]
        return "\n".join(lines)
    features = _feature_lines(lines)
    if not features:
        return text
    i = features[pick % len(features)]
    m = FEATURE_LINE.match(lines[i])
    assert m is not None
    if kind == "drop":
        del lines[i]
    elif kind == "copy":
        lines.insert(i + 1, f"{m.group(1)}{m.group(2)}_copy{value}{m.group(3)}{m.group(4)}")
    else:
        lines[i] = f"{m.group(1)}{m.group(2)}_r{value}{m.group(3)}{m.group(4)}"
    return "\n".join(lines)


@st.composite
def edited(draw: st.DrawFn, base: str) -> str:
    text = TEXTS[base]
    for e in draw(st.lists(edits, max_size=3)):
        text = apply_edit(text, e)
    return text


@st.composite
def pairs(draw: st.DrawFn) -> tuple[str, str]:
    base = draw(st.sampled_from(sorted(TEXTS)))
    return draw(edited(base)), draw(edited(base))


def _ir(c: Compiled) -> Spec:
    return dataclasses.replace(c.checked[0], files=())


def check_pair(text_a: str, text_b: str) -> None:
    a, b = compile_text(text_a), compile_text(text_b)
    assume(a.ok and b.ok)
    forward, backward = plan_of(a, b), plan_of(b, a)
    assert_mirror(forward, backward)
    assert forward.has_changes == (_ir(a) != _ir(b))
    assert not plan_of(a, a).has_changes
    formatted = compile_text(format_source(text_a) + "\n# a trailing comment\n")
    assert not plan_of(a, formatted).has_changes


@PROPERTY
@given(pairs())
def test_plans_mirror_and_miss_nothing(pair: tuple[str, str]) -> None:
    check_pair(*pair)


@pytest.mark.slow
@THOROUGH
@given(pairs())
def test_plans_mirror_and_miss_nothing_thoroughly(pair: tuple[str, str]) -> None:
    check_pair(*pair)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_edits_reach_the_ir(name: str) -> None:
    """The generator is worth something only if its edits compile and change the plan."""
    changed = 0
    for e in [("number", k, 37) for k in range(0, 40, 7)] + [("drop", 0, 0), ("copy", 1, 5), ("rename", 2, 9)]:
        c = compile_text(apply_edit(TEXTS[name], e))
        if c.ok and plan_of(compile_text(TEXTS[name]), c).has_changes:
            changed += 1
    assert changed >= 4
