"""The formatter is the inverse of the parser: golden layouts, real specs, and random trees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlspec.syntax import ast
from mlspec.syntax.fmt import format_expr, format_module, format_source
from mlspec.syntax.parse import parse
from mlspec.syntax.span import NO_SPAN
from tests.syntax.strategies import exprs, modules

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "cases" / "fmt").glob("*.mlspec"))
SPECS = sorted((ROOT / "specs").glob("*.mlspec"))
MARKER = "# ---- expected ----\n"
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def comment_texts(text: str) -> list[str]:
    return [c.text for c in parse(text).comments]


def assert_equivalent_and_stable(source: str, formatted: str) -> None:
    """Black's two checks: same meaning (and comments), and formatting again changes nothing."""
    assert parse(formatted) == parse(source)
    assert comment_texts(formatted) == comment_texts(source)
    assert format_source(formatted) == formatted


# ---- golden cases ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden(case: Path) -> None:
    source, expected = case.read_text(encoding="utf-8").split(MARKER)
    assert format_source(source) == expected
    assert_equivalent_and_stable(source, expected)


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 8


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_specs_reach_a_fixed_point(spec: Path) -> None:
    source = spec.read_text(encoding="utf-8")
    assert_equivalent_and_stable(source, format_source(source))


# ---- small rules -------------------------------------------------------------------------


def test_empty_module_is_empty() -> None:
    assert format_source("") == ""
    assert format_source("\n\n  \n") == ""


def test_output_ends_with_exactly_one_newline() -> None:
    assert format_source("project p { a = 1 }\n\n\n") == "project p {\n  a = 1\n}\n"
    assert format_source("# only a comment") == "# only a comment\n"


def test_strings_are_requoted_when_spelling_is_missing() -> None:
    lit = ast.Literal('say "hi"\\\n\t', "")
    assert format_expr(lit) == r'"say \"hi\"\\\n\t"'
    assert format_source('import "a\\"b"') == 'import "a\\"b"\n'


def test_odd_trees_do_not_crash() -> None:
    """Totality: trees the parser would never build still print (not necessarily re-parse)."""
    odd = ast.Decl("check", "c", (
        ast.Assign("a", ast.Case((), None)),
        ast.Assign("b", ast.Literal(1.5, "")),
        ast.Assign("c", ast.Duration(60_000, "")),
        ast.Schema((ast.Column("x", "int", (ast.Constraint("mystery", (ast.Literal(None, ""),)),)),)),
        ast.Rule(ast.Unary("~", ast.Ref(("x",))), None, ()),
    ))
    text = format_module(ast.Module("<t>", (odd,), (ast.Comment("# lost?", NO_SPAN),)))
    assert "# lost?" in text
    assert "c = 60000ms" in text


def test_item_starting_with_paren_after_an_assignment() -> None:
    """A newline ends an item, so `a = b` then `(x or y) and z` stays two items, not a call."""
    cond = ast.Binary("and", ast.Binary("or", ast.Ref(("x",)), ast.Ref(("y",))), ast.Ref(("z",)))
    module = ast.Module("<string>", (ast.Decl("check", "c", (ast.Assign("a", ast.Ref(("b",))),
                                                              ast.Rule(cond, None, ()))),))
    assert parse(format_module(module)) == module


# ---- properties on random trees ----------------------------------------------------------


@PROPERTY
@given(modules)
def test_format_is_the_inverse_of_parse(module: ast.Module) -> None:
    text = format_module(module)
    assert parse(text) == module
    assert format_source(text) == text
    assert text == "" or (text.endswith("\n") and not text.endswith("\n\n"))
    assert all(line == line.rstrip(" ") for line in text.split("\n"))


@PROPERTY
@given(exprs)
def test_expressions_round_trip_alone(expr: ast.Expr) -> None:
    module = parse(f"check c {{ x = {format_expr(expr)} }}")
    assert module.decls[0].items == (ast.Assign("x", expr),)


_bodies = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[0-9]+(?:ms|s|m|h|d|w)(?![A-Za-z0-9_])|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?'
                    r"|[A-Za-z_][A-Za-z0-9_]*|->|\.\.|[<>=!]=|\S")
_LINE_BREAKS = st.sampled_from(["\n", "\n\n", "  \t\n   ", "#", "\n\n#", "\n#"])  # `#`: a comment, then newline
_SPACES = st.sampled_from([" ", "  ", " \t "])


@st.composite
def commented(draw: st.DrawFn) -> tuple[ast.Module, str, list[str]]:
    """A random module's tokens re-spaced at random, with comments wherever a line ends.

    Newlines end items, so the line breaks of the formatted text stay line breaks (any mix of
    blank lines, indentation and comments); within a line, tokens get random spacing.
    """
    module = draw(modules)
    out: list[str] = []
    texts: list[str] = []
    for line in format_module(module).split("\n"):
        for token in _TOKEN.findall(line):
            out.append(token + draw(_SPACES))
        gap = draw(_LINE_BREAKS)
        if "#" in gap:
            texts.append(("#" + draw(_bodies)).rstrip())
            gap = gap.replace("#", f"{' ' * draw(st.integers(0, 2))}{texts[-1]}\n")
        out.append(gap)
    return module, "".join(out), texts


@PROPERTY
@given(commented())
def test_comments_survive(case: tuple[ast.Module, str, list[str]]) -> None:
    module, source, texts = case
    assert parse(source) == module and comment_texts(source) == texts  # the test built what it meant
    formatted = format_source(source)
    assert comment_texts(formatted) == texts
    assert parse(formatted) == module
    assert format_source(formatted) == formatted
