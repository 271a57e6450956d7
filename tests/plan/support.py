"""Shared helpers for the plan tests: compile text or files once, plan two of them, mirror a plan."""

from __future__ import annotations

import hashlib
import tempfile
from functools import cache
from pathlib import Path

from mlspec.compiler import Compiled, compile_paths
from mlspec.plan.diff import AttrChange, Plan, build_plan

ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = ROOT / "tests" / "cases" / "plan"
SPECS = sorted((ROOT / "specs").glob("*.mlspec"))
_TMP = Path(tempfile.mkdtemp(prefix="mlspec-plan-tests-"))


@cache
def compile_file(path: Path) -> Compiled:
    return compile_paths([path])


@cache
def compile_text(text: str) -> Compiled:
    """Compile spec text from a file of its own (named by content, so equal texts share one compile)."""
    path = _TMP / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.mlspec"
    path.write_text(text, encoding="utf-8")
    return compile_paths([path])


def plan_of(old: Compiled, new: Compiled, base: str = "old.mlspec", head: str = "new.mlspec") -> Plan:
    assert old.ok and new.ok
    return build_plan(old.checked, new.checked, base=base, head=head)


_FLIP = {"add": "remove", "remove": "add", "change": "change", "replace": "replace", "rename": "rename"}


def mirrored(a: AttrChange) -> tuple[str, str, str | None, str | None, str | None]:
    """The attribute change as plan(new, old) must report it: adds <-> removes, old <-> new."""
    if a.action == "rename":
        assert a.to is not None
        return (a.to, "rename", a.new, a.old, a.path)
    return (a.path, _FLIP[a.action], a.new, a.old, None)


def as_tuple(a: AttrChange) -> tuple[str, str, str | None, str | None, str | None]:
    return (a.path, a.action, a.old, a.new, a.to)


def assert_mirror(forward: Plan, backward: Plan) -> None:
    """plan(a, b) and plan(b, a) describe the same differences from opposite ends."""
    fwd = {c.id: c for c in forward.changes}
    bwd = {c.id: c for c in backward.changes}
    assert fwd.keys() == bwd.keys()
    for nid, c in fwd.items():
        b = bwd[nid]
        assert b.action == _FLIP[c.action], nid
        assert sorted(mirrored(a) for a in c.attributes) == sorted(as_tuple(a) for a in b.attributes), nid
    fapi = {a.serve: a for a in forward.impact.api}
    bapi = {a.serve: a for a in backward.impact.api}
    assert fapi.keys() == bapi.keys()
    for serve, a in fapi.items():
        assert bapi[serve].action == _FLIP[a.action]
        assert sorted(mirrored(f) for f in a.fields) == sorted(as_tuple(f) for f in bapi[serve].fields)
    assert forward.counts()["add"] == backward.counts()["remove"]
    assert forward.counts()["change"] == backward.counts()["change"]
