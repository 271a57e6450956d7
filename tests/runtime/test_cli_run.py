"""`mlspec run` end to end: exit code, the JSON summary, the registry, the scores file.

In process through `mlspec.cli.main`, plus one real subprocess run of `mlspec demo` + `mlspec run --json`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from tests.runtime.conftest import (
    CUSTOMERS,
    EXECUTED,
    NOT_RUN_HERE,
    REGISTRY,
    SCORES,
    Ran,
    assert_no_traceback,
    champion_pointer,
    cli,
    copy_state,
    subprocess_mlspec,
    table,
    tables,
    versions,
    warehouse,
)

VERSION = re.compile(r"^[0-9a-f]{12}$")


def test_run_exits_0_and_every_node_reports(ran: Ran) -> None:
    r = ran.result
    assert r.rc == 0
    assert_no_traceback(r)
    assert r.data["ok"] is True and r.data["error"] is None and r.data["warnings"] == []
    assert r.data["engine"] == "duckdb"
    assert r.ran() == list(EXECUTED)
    assert all(r.node(n)["status"] == "ok" for n in EXECUTED)
    assert {n["node"]: n["status"] for n in r.data["nodes"] if n["node"] in NOT_RUN_HERE} == dict.fromkeys(
        NOT_RUN_HERE, "skipped")


def test_summary_counts_match_the_demo_and_the_warehouse(ran: Ran) -> None:
    r, demo = ran.result, ran.demo.summary
    d = {n: r.node(n)["detail"] for n in EXECUTED}
    assert (d["source:customers"]["rows_in"], d["source:customers"]["rows_passed"]) == (CUSTOMERS, CUSTOMERS)
    assert (d["source:orders"]["rows_in"], d["source:orders"]["rows_passed"]) == (demo.orders_rows, demo.orders_rows)
    assert (d["source:churn_labels"]["rows_in"], d["source:churn_labels"]["rows_passed"]) == (demo.labels_rows,
                                                                                               demo.labels_rows)
    for node in ("source:customers", "source:orders", "source:churn_labels"):
        assert d[node]["rows_quarantined"] == 0
        assert d[node]["rows_total"] == d[node]["rows_passed"]
        assert d[node]["incremental"] is False  # a first extraction is a full load
    assert d["label:churned"]["rows_passed"] == demo.labels_rows
    assert d["label:churned"]["positives"] == demo.labels_positive
    # Feature tables hold one row per label event (the training spine), the dataset one per label.
    for node, n_features in (("features:profile", 4), ("features:activity", 7)):
        assert (d[node]["rows_in"], d[node]["rows_passed"], d[node]["features"]) == (demo.labels_rows,
                                                                                     demo.labels_rows, n_features)
    assert d["check:orders"]["rows_passed"] == demo.orders_rows
    assert d["check:activity"]["rows_passed"] == demo.labels_rows
    assert (d["dataset:churn_risk"]["rows_passed"], d["dataset:churn_risk"]["features"]) == (demo.labels_rows, 11)
    assert d["model:churn_risk"]["n_train"] + d["model:churn_risk"]["n_test"] == demo.labels_rows
    assert d["serve:churn_risk"]["rows"] == CUSTOMERS

    expected_tables = {"src__customers": CUSTOMERS, "src__orders": demo.orders_rows,
                       "src__churn_labels": demo.labels_rows, "chk__orders": demo.orders_rows,
                       "label__churned": demo.labels_rows, "feat__profile": demo.labels_rows,
                       "feat__activity": demo.labels_rows, "chk__activity": demo.labels_rows,
                       "dataset__churn_risk": demo.labels_rows}
    with warehouse(ran.dir) as conn:
        for name, rows in expected_tables.items():
            assert conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == rows, name
        recorded = conn.execute("SELECT node, status FROM _mlspec_node_runs WHERE run_id = ? ORDER BY started_at",
                                [r.data["run_id"]]).fetchall()
    assert [n for n, _ in recorded] == list(EXECUTED)
    assert {s for _, s in recorded} == {"ok"}


def test_champion_is_registered_as_a_real_xgboost_model(ran: Ran) -> None:
    model, gate = ran.result.node("model:churn_risk")["detail"], ran.result.node("gate:churn_risk")["detail"]
    version = model["version"]
    assert VERSION.match(version)
    assert model["gate_passed"] is True and model["champion_before"] is None
    assert model["metrics"]["auc"] >= 0.70
    assert (gate["version"], gate["passed"], gate["promoted"]) == (version, True, True)

    assert champion_pointer(ran.dir)["current"] == version
    meta = versions(ran.dir)
    assert list(meta) == [version]
    assert meta[version]["status"] == "candidate" and meta[version]["gate"]["passed"] is True
    assert meta[version]["metrics"]["auc"] == pytest.approx(model["metrics"]["auc"])
    model_file = ran.dir / REGISTRY / "versions" / version / "model.ubj"
    data = model_file.read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta[version]["model_sha256"]
    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    assert booster.num_features() == len(meta[version]["features"]) == 11  # plan is one categorical column
    assert booster.num_boosted_rounds() == 200

    listed = cli("models", "--json", ran.dir)
    assert listed.rc == 0
    assert [(m["version"], m["status"], m["champion"]) for m in listed.data] == [(version, "candidate", True)]


def test_scores_parquet_has_every_customer(ran: Ran) -> None:
    serve = ran.result.node("serve:churn_risk")["detail"]
    assert serve["output"] == SCORES
    scores = pl.read_parquet(ran.dir / SCORES)
    assert {"customer_id", "score", "model_version", "as_of"} <= set(scores.columns)
    customers = pl.read_parquet(ran.demo.summary.customers_path)
    assert scores.height == CUSTOMERS
    assert sorted(scores["customer_id"].to_list()) == sorted(customers["customer_id"].to_list())
    assert scores["customer_id"].n_unique() == CUSTOMERS
    s = scores["score"].to_numpy()
    assert scores["score"].null_count() == 0 and np.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
    assert s.std() > 0  # not a constant model
    assert set(scores["model_version"].to_list()) == {ran.champion}
    assert scores["as_of"].n_unique() == 1
    assert scores["as_of"][0] == dt.datetime.fromisoformat(serve["as_of"])
    assert serve["mean_score"] == pytest.approx(float(s.mean()))


def test_score_command_scores_as_of_a_given_time_reproducibly(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    first = cli("score", "--as-of", "2026-11-01", project)
    assert first.rc == 0, first.err
    assert f"serve:churn_risk: {CUSTOMERS:,} scores as of 2026-11-01T00:00:00 by version {ran.champion}" in first.out
    a = pl.read_parquet(project / SCORES)
    assert a.height == CUSTOMERS
    assert set(a["as_of"].to_list()) == {dt.datetime(2026, 11, 1)}
    again = cli("score", "--as-of", "2026-11-01", project)
    assert again.rc == 0
    b = pl.read_parquet(project / SCORES)
    assert a.select("customer_id", "score", "model_version").equals(b.select("customer_id", "score", "model_version"))


def test_run_defaults_to_the_current_directory(ran: Ran, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cd DIR && mlspec run` (text output): exit 0, the summary table, the champion line."""
    project = copy_state(ran.dir, tmp_path / "churn")
    monkeypatch.chdir(project)
    r = cli("run", "--until", "dataset:churn_risk")
    assert r.rc == 0, r.text
    assert_no_traceback(r)
    for node in ("source:orders", "features:activity", "dataset:churn_risk"):
        assert node in r.out
    assert "model:churn_risk" not in r.out  # --until stops at the dataset
    assert "dataset__churn_risk" in tables(project)


def test_invalid_as_of_is_a_clear_error(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    r = cli("run", "--as-of", "next tuesday", project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert "--as-of 'next tuesday' is not an ISO date" in r.err


def test_run_without_a_spec_is_a_clear_error(tmp_path: Path) -> None:
    r = cli("run", tmp_path)
    assert r.rc == 1
    assert_no_traceback(r)
    assert "no .mlspec files in" in r.err


@pytest.mark.slow
def test_subprocess_demo_then_run_json(tmp_path: Path) -> None:
    """The two commands a new user types, in real processes."""
    demo = subprocess_mlspec("demo", "churn", "proj", "--customers", str(CUSTOMERS), "--bad-rows", "0.01",
                             cwd=tmp_path)
    assert demo.rc == 0, demo.err
    assert_no_traceback(demo)
    assert f"wrote {CUSTOMERS} customers" in demo.out and "planted" in demo.out
    project = tmp_path / "proj"
    assert (project / "churn.mlspec").is_file()

    r = subprocess_mlspec("run", "--json", cwd=project)
    assert r.rc == 0, r.err
    assert_no_traceback(r)
    assert r.data["ok"] is True
    assert r.ran() == list(EXECUTED)
    for node in r.data["nodes"]:
        d = node["detail"]
        if "rows_in" in d:
            assert d["rows_in"] == d["rows_passed"] + d["rows_quarantined"], node["node"]
    orders = r.node("source:orders")["detail"]
    assert orders["rows_quarantined"] > 0  # the planted bad rows
    version = r.node("gate:churn_risk")["detail"]["version"]
    assert r.node("gate:churn_risk")["detail"]["promoted"] is True
    assert champion_pointer(project)["current"] == version
    assert (project / REGISTRY / "versions" / version / "model.ubj").stat().st_size > 0
    scores = pl.read_parquet(project / SCORES)
    assert scores.height == CUSTOMERS and set(scores["model_version"].to_list()) == {version}
    assert table(project, "src__orders").height == orders["rows_passed"]
