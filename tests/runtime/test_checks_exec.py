"""Bad rows end to end: every node reconciles, and the quarantine table holds exactly the planted rows.

`mlspec demo --bad-rows` corrupts a known number of order rows per kind (DemoSummary.bad_rows).  The
rows are found again here from the parquet file itself, independently of mlspec, and compared with
what the run put in `_mlspec_quarantine` (read with duckdb, read-only, after the run).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.runtime.conftest import (
    CUSTOMERS,
    EXECUTED,
    Demo,
    Result,
    assert_no_traceback,
    cli,
    copy_project,
    error_line,
    run_json,
    table,
    warehouse,
)

CHANNELS = ("web", "app", "store")
AMOUNT_MAX = 100_000.0


@dataclass(frozen=True)
class BadRun:
    dir: Path
    result: Result
    demo: Demo
    orders: pl.DataFrame  # the orders parquet as written


@pytest.fixture(scope="module")
def bad_run(bad_demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> BadRun:
    project = copy_project(bad_demo.dir, tmp_path_factory.mktemp("bad_run") / "churn")
    result = run_json(project)
    return BadRun(project, result, bad_demo, pl.read_parquet(bad_demo.summary.orders_path))


def planted(orders: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The corrupted rows by kind, found from the data alone (clean amounts are in [1, 100000])."""
    return {
        "negative_amount": orders.filter(pl.col("amount") < 0),
        "amount_above_range": orders.filter(pl.col("amount") > AMOUNT_MAX),
        "channel_outside_set": orders.filter(pl.col("channel").is_not_null() & ~pl.col("channel").is_in(CHANNELS)),
        "null_amount": orders.filter(pl.col("amount").is_null()),
    }


def test_the_planted_rows_are_what_the_demo_says(bad_run: BadRun) -> None:
    counts = bad_run.demo.summary.bad_rows
    found = planted(bad_run.orders)
    assert {k: v.height for k, v in found.items()} == counts.as_dict()
    assert counts.violating > 0 and counts.null_amount > 0
    ids = [i for v in found.values() for i in v["order_id"].to_list()]
    assert len(ids) == len(set(ids)) == counts.total  # one defect per row


def test_the_run_succeeds_despite_bad_rows(bad_run: BadRun) -> None:
    r = bad_run.result
    assert r.rc == 0, r.data["error"]
    assert_no_traceback(r)
    assert r.ran() == list(EXECUTED)
    assert r.node("serve:churn_risk")["detail"]["rows"] == CUSTOMERS


def test_every_node_reconciles(bad_run: BadRun) -> None:
    """rows_in == rows_passed + rows_quarantined for every node that moves rows."""
    r = bad_run.result
    counted = [n for n in r.data["nodes"] if "rows_in" in n["detail"]]
    assert {n["node"] for n in counted} == {n for n in EXECUTED if n.split(":")[0] in
                                            ("source", "check", "label", "features", "dataset")}
    for n in counted:
        d = n["detail"]
        assert d["rows_in"] == d["rows_passed"] + d["rows_quarantined"], (n["node"], d)


def test_orders_counts_match_the_planted_defects(bad_run: BadRun) -> None:
    s = bad_run.demo.summary
    orders = bad_run.result.node("source:orders")["detail"]
    assert orders["rows_in"] == s.orders_rows
    assert orders["rows_quarantined"] == s.bad_rows.violating
    assert orders["rows_passed"] == orders["rows_total"] == s.orders_rows - s.bad_rows.violating
    # null amounts are allowed by the schema and pass `amount >= 0` (null is not a violation)
    check = bad_run.result.node("check:orders")["detail"]
    assert (check["rows_in"], check["rows_quarantined"]) == (orders["rows_passed"], 0)
    chk = table(bad_run.dir, "chk__orders")
    assert chk.height == orders["rows_passed"]
    assert chk["amount"].null_count() == s.bad_rows.null_amount
    assert chk.filter(pl.col("amount") < 0).height == 0
    assert set(chk["channel"].drop_nulls().unique().to_list()) <= set(CHANNELS)
    # nothing else loses rows
    for node in ("source:customers", "source:churn_labels", "label:churned", "features:activity",
                 "features:profile", "check:activity", "dataset:churn_risk"):
        assert bad_run.result.node(node)["detail"]["rows_quarantined"] == 0, node


def test_quarantine_table_holds_exactly_the_planted_rows_with_reasons(bad_run: BadRun) -> None:
    found = planted(bad_run.orders)
    with warehouse(bad_run.dir) as conn:
        rows = pl.DataFrame(conn.execute("SELECT run_id, node, rule, row_key, reason, row_json "
                                         "FROM _mlspec_quarantine").fetchall(),
                            schema=["run_id", "node", "rule", "row_key", "reason", "row_json"], orient="row")
    assert rows.height == bad_run.demo.summary.bad_rows.violating
    assert set(rows["node"].to_list()) == {"source:orders"}
    assert set(rows["rule"].to_list()) == {"schema"}
    assert set(rows["run_id"].to_list()) == {bad_run.result.data["run_id"]}
    assert rows["row_key"].n_unique() == rows.height
    by_key = {r["row_key"]: r for r in rows.iter_rows(named=True)}

    expected = {kind: found[kind] for kind in ("negative_amount", "amount_above_range", "channel_outside_set")}
    assert set(by_key) == {str(i) for f in expected.values() for i in f["order_id"].to_list()}
    for kind, frame in expected.items():
        for row in frame.iter_rows(named=True):
            q = by_key[str(row["order_id"])]
            if kind == "channel_outside_set":
                assert q["reason"] == f"channel = {row['channel']} is not one of (web, app, store)"
            else:
                m = re.fullmatch(r"amount = (\S+) is outside \[0, 100000\]", q["reason"])
                assert m, q["reason"]
                assert float(m.group(1)) == pytest.approx(row["amount"])
            kept = json.loads(q["row_json"])
            assert kept["order_id"] == row["order_id"] and kept["customer_id"] == row["customer_id"]
    assert not set(by_key) & {str(i) for i in found["null_amount"]["order_id"].to_list()}
    # quarantined rows never reach the warehouse table
    loaded = set(table(bad_run.dir, "src__orders")["order_id"].to_list())
    assert not loaded & {int(k) for k in by_key}


def test_quarantine_command_reports_the_same_rows(bad_run: BadRun) -> None:
    r = cli("quarantine", "--json", "--limit", "100000", bad_run.dir)
    assert r.rc == 0
    violating = bad_run.demo.summary.bad_rows.violating
    assert sum(c["rows"] for c in r.data["counts"]) == violating
    assert len(r.data["rows"]) == violating
    assert {x["node"] for x in r.data["rows"]} == {"source:orders"}
    assert all(x["reason"] and isinstance(x["row"], dict) for x in r.data["rows"])
    text = cli("quarantine", bad_run.dir)
    assert text.rc == 0 and "source:orders" in text.out


def test_quarantine_of_a_clean_run_is_empty(ran) -> None:  # type: ignore[no-untyped-def]
    r = cli("quarantine", ran.dir)
    assert (r.rc, r.out.strip()) == (0, "quarantine is empty")


# ---- check blocks with each on_fail --------------------------------------------------------

def _with_orders_check(project: Path, rule: str, on_fail: str) -> None:
    spec = project / "churn.mlspec"
    text = spec.read_text(encoding="utf-8")
    new = re.sub(r"check orders \{.*?\n\}", f"check orders {{\n  {rule}\n  on_fail = {on_fail}\n}}", text, flags=re.S)
    assert new != text
    spec.write_text(new, encoding="utf-8")


def _big_orders(demo: Demo) -> pl.DataFrame:
    return pl.read_parquet(demo.summary.orders_path).filter(pl.col("amount") > 500)


def test_check_quarantines_failing_rows_with_the_rule_as_reason(demo: Demo, tmp_path: Path) -> None:
    project = copy_project(demo.dir, tmp_path / "churn")
    _with_orders_check(project, "amount <= 500", "quarantine")
    big = _big_orders(demo)
    assert big.height > 0
    r = run_json(project, "--until", "dataset:churn_risk")
    assert r.rc == 0, r.data["error"]
    d = r.node("check:orders")["detail"]
    assert (d["rows_in"], d["rows_quarantined"], d["rows_passed"]) == (demo.summary.orders_rows, big.height,
                                                                       demo.summary.orders_rows - big.height)
    assert d["rules"][0]["failed_rows"] == big.height
    with warehouse(project) as conn:
        q = conn.execute("SELECT node, rule, row_key, reason FROM _mlspec_quarantine").fetchall()
    assert {(n, rule, reason) for n, rule, _, reason in q} == {("check:orders", "check", "amount <= 500 is false")}
    assert sorted(int(k) for _, _, k, _ in q) == sorted(big["order_id"].to_list())
    assert table(project, "chk__orders")["amount"].max() <= 500


def test_check_with_on_fail_fail_stops_the_run(demo: Demo, tmp_path: Path) -> None:
    project = copy_project(demo.dir, tmp_path / "churn")
    _with_orders_check(project, "amount <= 500", "fail")
    big = _big_orders(demo)
    r = run_json(project)
    assert r.rc == 1
    assert_no_traceback(r)
    line = error_line(r)
    assert line.startswith(f"error in check:orders: {big.height} of {demo.summary.orders_rows} rows fail "
                           "`amount <= 500` (on_fail = fail); e.g. ")
    assert r.ran()[-1] == "check:orders" and r.node("check:orders")["status"] == "failed"
    assert not (project / ".mlspec" / "registry").exists()


def test_check_with_on_fail_warn_keeps_rows_and_warns(demo: Demo, tmp_path: Path) -> None:
    project = copy_project(demo.dir, tmp_path / "churn")
    _with_orders_check(project, "amount <= 500", "warn")
    big = _big_orders(demo)
    r = run_json(project, "--until", "check:orders")
    assert r.rc == 0, r.data["error"]
    d = r.node("check:orders")["detail"]
    assert (d["rows_in"], d["rows_passed"], d["rows_quarantined"]) == (demo.summary.orders_rows,) * 2 + (0,)
    assert r.data["warnings"] == [f"check:orders: {big.height} rows fail `amount <= 500` (warn)"]
