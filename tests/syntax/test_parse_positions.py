"""`parse` computes spans and collects comments in one pass, faster than Lark's own way
(`propagate_positions=True`, then a second lex for the comments). Both must give the same
module, spans and comments included: the reference here is Lark's way, built in the test."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from lark import Lark
from lark.exceptions import UnexpectedInput

from mlspec.diagnostics import MlspecError
from mlspec.syntax import ast
from mlspec.syntax.lines import Lines
from mlspec.syntax.parse import _ToAst, parse
from mlspec.syntax.span import Span
from tests.syntax.test_fmt import commented

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted({*ROOT.glob("specs/*.mlspec"), *ROOT.glob("examples/**/*.mlspec"), *ROOT.glob("mlspec/examples/*.mlspec"),
                *ROOT.glob("tests/cases/**/*.mlspec")})


@lru_cache(maxsize=1)
def _reference_parser() -> Lark:
    grammar = resources.files("mlspec").joinpath("grammar/mlspec.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", postlex=Lines(), propagate_positions=True,
                maybe_placeholders=True)


def reference_parse(text: str, file: str = "<string>") -> ast.Module:
    """What `parse` did before: Lark's position propagation, and a second lex for comments."""
    lark = _reference_parser()
    body = _ToAst(file).transform(lark.parse(text))
    comments = tuple(ast.Comment(str(t).rstrip(), Span(file, t.line or 0, t.column or 0, t.line or 0, t.end_column or 0))
                     for t in lark.lex(text, dont_ignore=True) if t.type == "COMMENT")
    return ast.Module(file, body, comments)


def everything(x: Any) -> Any:
    """A node as nested tuples, spans included (AST equality ignores them)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return type(x).__name__, tuple((f.name, everything(getattr(x, f.name))) for f in dataclasses.fields(x))
    if isinstance(x, tuple | list):
        return tuple(everything(y) for y in x)
    return x


def test_there_are_files_to_compare() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_same_module_as_lark_positions(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        expected = reference_parse(text, path.name)
    except (UnexpectedInput, RecursionError):  # a case with errors: both refuse it (diagnostics: tested elsewhere)
        with pytest.raises(MlspecError):
            parse(text, path.name)
        return
    assert everything(parse(text, path.name)) == everything(expected)


def test_parentheses_and_inlined_rules() -> None:
    """Spans that Lark widens through inlined rules: parentheses, `case`, signed ranges, globs."""
    text = """# head
features f {  # trailing
  entity = e
  from = s
  a = ((x + 1) * (y - 2))   # parens
  b = -(x) / (case when x > 1 then (1) else ((2)) end)
  c = count_if((kind == "x") and not (flag), last 30d)
  d = ( x
        + y )
}
source s { schema { x int range [-1, 2.5] } }
model m { features = [f.*, *] ; params { p = (1) } }
monitor m {
  (psi(features)) > 0.25 -> alert(oncall)
  retrain every 30d
}
# tail"""
    assert everything(parse(text)) == everything(reference_parse(text))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commented())
def test_random_modules_with_comments(case: tuple[ast.Module, str, list[str]]) -> None:
    _, source, _ = case
    assert everything(parse(source)) == everything(reference_parse(source))
