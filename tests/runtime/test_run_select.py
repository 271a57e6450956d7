"""`mlspec run --node` (one node, as an orchestrator task runs it) and `--until` (a node and its ancestors)."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from mlspec.compiler import compile_paths
from tests.runtime.conftest import (
    Ran,
    assert_frames_equal,
    assert_no_traceback,
    cli,
    copy_state,
    error_line,
    run_json,
    subprocess_mlspec,
    table,
    tables,
    warehouse,
)


def _node_runs(project: Path, node: str) -> list[tuple[str, str]]:
    with warehouse(project) as conn:
        return conn.execute("SELECT run_id, status FROM _mlspec_node_runs WHERE node = ? ORDER BY started_at",
                            [node]).fetchall()


def test_one_node_alone_in_a_fresh_process(ran: Ran, tmp_path: Path) -> None:
    """After the upstream ran, `mlspec run --node features:activity` in a new process rebuilds just that table."""
    project = copy_state(ran.dir, tmp_path / "churn")
    before = table(project, "feat__activity", "customer_id, __as_of")
    with warehouse(project) as conn:
        conn_tables = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    r = subprocess_mlspec("run", "--node", "features:activity", "--json", cwd=project)
    assert r.rc == 0, r.err
    assert_no_traceback(r)
    assert r.ran() == ["features:activity"]
    d = r.node("features:activity")["detail"]
    assert (d["rows_in"], d["rows_passed"], d["rows_quarantined"], d["features"]) == (
        ran.demo.summary.labels_rows, ran.demo.summary.labels_rows, 0, 7)
    runs = _node_runs(project, "features:activity")
    assert [run_id for run_id, _ in runs] == [ran.result.data["run_id"], r.data["run_id"]]
    assert tables(project) == conn_tables
    assert_frames_equal(table(project, "feat__activity", "customer_id, __as_of"), before, float_rel=1e-12)
    # nothing else was touched by that process
    for other in ("source:orders", "check:orders", "model:churn_risk"):
        assert [run_id for run_id, _ in _node_runs(project, other)] == [ran.result.data["run_id"]]


def test_node_by_bare_name_when_unique(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    r = run_json(project, "--node", "profile")
    assert r.rc == 0, r.data["error"]
    assert r.ran() == ["features:profile"]


def test_node_before_its_inputs_exist_fails_clearly(project: Path) -> None:
    r = run_json(project, "--node", "dataset:churn_risk")
    assert r.rc == 1
    assert_no_traceback(r)
    assert error_line(r) == "error in dataset:churn_risk: its input `label__churned` has not been built yet"
    assert r.data["hint"] == "run the upstream nodes first (e.g. `mlspec run --until dataset:churn_risk`)"
    assert r.ran() == ["dataset:churn_risk"]


def test_until_dataset_runs_exactly_its_ancestors(project: Path) -> None:
    compiled = compile_paths([project])
    expected = nx.ancestors(compiled.dag, "dataset:churn_risk") | {"dataset:churn_risk"}
    assert expected == {"source:churn_labels", "label:churned", "source:customers", "features:profile",
                        "source:orders", "check:orders", "features:activity", "check:activity", "dataset:churn_risk"}
    r = run_json(project, "--until", "dataset:churn_risk")
    assert r.rc == 0, r.data["error"]
    assert set(r.ran()) == expected and len(r.ran()) == len(expected)
    assert all(r.node(n)["status"] == "ok" for n in expected)
    assert "dataset__churn_risk" in tables(project)
    assert not (project / ".mlspec" / "registry").exists() and not (project / "scores").exists()


def test_until_features_runs_only_its_ancestors_and_succeeds(project: Path) -> None:
    r = run_json(project, "--until", "features:activity")
    assert r.rc == 0, r.data["error"]
    assert set(r.ran()) == {"source:orders", "check:orders", "source:customers", "source:churn_labels",
                            "label:churned", "features:activity"}  # labels reference customers
    built = tables(project)
    assert "feat__activity" in built
    assert not {"feat__profile", "chk__activity", "dataset__churn_risk"} & built


@pytest.mark.parametrize(("flag", "name", "hint"), [
    ("--node", "activty", "did you mean `activity`?"),
    ("--until", "dataset:churn_rsk", "did you mean `dataset:churn_risk`?"),
    ("--node", "model:churn", "did you mean `model:churn_risk`?"),
])
def test_unknown_node_gives_did_you_mean(project: Path, flag: str, name: str, hint: str) -> None:
    r = run_json(project, flag, name)
    assert r.rc == 1
    assert_no_traceback(r)
    assert error_line(r) == f"error in {name}: no node `{name}` in the DAG"
    assert r.data["hint"] == hint
    assert r.data["nodes"] == []
    text = cli("run", flag, name, project)
    assert text.rc == 1
    assert_no_traceback(text)
    assert f"no node `{name}` in the DAG" in text.text and hint in text.text


def test_ambiguous_bare_name_asks_for_kind(project: Path) -> None:
    r = run_json(project, "--node", "activity")
    assert r.rc == 1
    assert error_line(r) == "error in activity: `activity` names several nodes: check:activity, features:activity"
    assert r.data["hint"] == "write it as kind:name"
    assert r.data["nodes"] == []
