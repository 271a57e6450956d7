"""The gate in a real run, and `mlspec promote` / `mlspec rollback` switching the champion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.runtime.conftest import (
    MODEL,
    SCORES,
    Ran,
    Result,
    assert_no_traceback,
    champion_pointer,
    cli,
    copy_project,
    copy_state,
    run_json,
    versions,
)


@dataclass(frozen=True)
class Gated:
    """A project whose champion A came from the spec's gate, then a run under `auc >= 0.99` made B."""

    dir: Path
    champion: str  # A
    rejected: str  # B
    result: Result  # the run that produced B


@pytest.fixture(scope="module")
def gated(ran: Ran, tmp_path_factory: pytest.TempPathFactory) -> Gated:
    project = copy_state(ran.dir, tmp_path_factory.mktemp("gated") / "churn")
    spec = project / "churn.mlspec"
    text = spec.read_text(encoding="utf-8")
    assert "auc >= 0.70" in text
    spec.write_text(text.replace("auc >= 0.70", "auc >= 0.99"), encoding="utf-8")
    result = run_json(project)
    return Gated(project, ran.champion, result.node(f"model:{MODEL}")["detail"]["version"], result)


def _state(gated: Gated, tmp_path: Path) -> Path:
    return copy_state(gated.dir, tmp_path / "churn")


def _scored_by(project: Path) -> set[str]:
    assert cli("score", "--as-of", "2026-11-01", project).rc == 0
    return set(pl.read_parquet(project / SCORES)["model_version"].to_list())


def test_rejected_version_is_registered_not_promoted_and_the_run_says_why(gated: Gated) -> None:
    r = gated.result
    assert r.rc == 0, r.data["error"]  # a rejected candidate is not a failed run
    assert_no_traceback(r)
    assert gated.rejected != gated.champion
    model, gate = r.node(f"model:{MODEL}")["detail"], r.node(f"gate:{MODEL}")["detail"]
    assert model["gate_passed"] is False and model["champion_before"] == gated.champion
    assert (gate["version"], gate["passed"], gate["promoted"], gate["champion"]) == (gated.rejected, False, False,
                                                                                     gated.champion)
    failed = [x for x in gate["results"] if not x["passed"]]
    assert [x["text"] for x in failed] == ["auc >= 0.99"]
    assert len(r.data["warnings"]) == 1
    warning = r.data["warnings"][0]
    assert warning.startswith(f"gate:{MODEL}: version {gated.rejected} rejected (auc >= 0.99: auc = ")
    assert "misses >= 0.9900" in warning
    assert warning.endswith(f"champion stays {gated.champion}")


def test_registry_keeps_the_previous_champion(gated: Gated) -> None:
    meta = versions(gated.dir)
    assert {v: m["status"] for v, m in meta.items()} == {gated.champion: "candidate", gated.rejected: "rejected"}
    assert meta[gated.rejected]["gate"]["passed"] is False
    pointer = champion_pointer(gated.dir)
    assert (pointer["current"], pointer["history"]) == (gated.champion, [])
    # the same run's batch scoring used the champion, not the rejected candidate
    assert gated.result.node(f"serve:{MODEL}")["detail"]["version"] == gated.champion
    assert set(pl.read_parquet(gated.dir / SCORES)["model_version"].to_list()) == {gated.champion}
    listed = cli("models", "--json", gated.dir)
    assert {(m["version"], m["status"], m["champion"]) for m in listed.data} == {
        (gated.champion, "candidate", True), (gated.rejected, "rejected", False)}


def test_promote_of_a_rejected_version_needs_force(gated: Gated, tmp_path: Path) -> None:
    project = _state(gated, tmp_path)
    r = cli("promote", gated.rejected, project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert r.err.startswith(f"error: version {gated.rejected} of `{MODEL}` was rejected by its gate: auc >= 0.99 (")
    assert "--force" in r.err
    assert champion_pointer(project)["current"] == gated.champion

    forced = cli("promote", gated.rejected, project, "--force")
    assert forced.rc == 0, forced.err
    assert forced.out.strip() == f"{MODEL}: champion {gated.champion} -> {gated.rejected}"
    assert champion_pointer(project)["current"] == gated.rejected


def test_promote_and_rollback_switch_the_champion(gated: Gated, tmp_path: Path) -> None:
    project = _state(gated, tmp_path)
    a, b = gated.champion, gated.rejected
    assert _scored_by(project) == {a}

    assert cli("promote", b[:7], project, "--force").rc == 0  # a unique prefix is enough
    assert champion_pointer(project)["current"] == b and champion_pointer(project)["history"] == [a]
    assert _scored_by(project) == {b}

    back = cli("rollback", project)
    assert back.rc == 0, back.err
    assert back.out.strip() == f"{MODEL}: champion {b} -> {a} (rolled back)"
    assert champion_pointer(project)["current"] == a and champion_pointer(project)["history"] == []
    assert _scored_by(project) == {a}

    again = cli("rollback", project)
    assert again.rc == 1
    assert_no_traceback(again)
    assert again.err.strip() == f"error: cannot roll back `{MODEL}`: the champion is {a} and it has no predecessor"
    assert champion_pointer(project)["current"] == a


def test_promoting_the_champion_again_changes_nothing(gated: Gated, tmp_path: Path) -> None:
    project = _state(gated, tmp_path)
    r = cli("promote", gated.champion, project)
    assert r.rc == 0
    assert champion_pointer(project)["history"] == []


def test_promote_unknown_version_is_a_clear_error(gated: Gated, tmp_path: Path) -> None:
    r = cli("promote", "ffffffffffff", _state(gated, tmp_path))
    assert r.rc == 1
    assert_no_traceback(r)
    assert r.err.startswith(f"error: model `{MODEL}` has no version `ffffffffffff`; known versions: ")
    assert gated.champion in r.err and gated.rejected in r.err


def test_rollback_with_no_history_fails_clearly(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    r = cli("rollback", project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert r.err.strip() == f"error: cannot roll back `{MODEL}`: the champion is {ran.champion} and it has no predecessor"
    assert champion_pointer(project)["current"] == ran.champion


def test_rollback_before_any_model_fails_clearly(project: Path) -> None:
    r = cli("rollback", project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert r.err.strip() == f"error: cannot roll back `{MODEL}`: there is no champion"


def test_score_before_any_champion_fails_clearly(ran: Ran, tmp_path: Path) -> None:
    project = copy_project(ran.demo.dir, tmp_path / "churn")
    assert run_json(project, "--until", "dataset:churn_risk").rc == 0
    r = cli("score", project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert r.err.startswith(f"error in serve:{MODEL}: model `{MODEL}` has no registered versions")


def test_promote_accepts_options_before_the_project_path(gated: Gated, tmp_path: Path) -> None:
    project = _state(gated, tmp_path)
    r = cli("promote", gated.rejected, "--force", project)
    assert r.rc == 0, r.err
    assert champion_pointer(project)["current"] == gated.rejected
