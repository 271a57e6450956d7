"""Extraction: incremental by watermark, and the declared schema checked on read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from tests.runtime.conftest import (
    Ran,
    assert_frames_equal,
    assert_no_traceback,
    cli,
    copy_state,
    error_line,
    run_json,
    table,
    tables,
    warehouse,
)

SOURCES = ("source:churn_labels", "source:customers", "source:orders")


def _watermarks(project: Path) -> dict[str, dt.datetime]:
    with warehouse(project) as conn:
        return dict(conn.execute("SELECT source, watermark FROM _mlspec_watermarks").fetchall())


def _quarantine_count(project: Path) -> int:
    with warehouse(project) as conn:
        return int(conn.execute("SELECT count(*) FROM _mlspec_quarantine").fetchone()[0])


# ---- incremental extraction ----------------------------------------------------------------

def test_second_run_reads_no_new_rows(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    marks = _watermarks(project)
    assert set(marks) == {"orders", "customers", "churn_labels"}
    before = table(project, "dataset__churn_risk")
    r = run_json(project, "--until", "dataset:churn_risk")
    assert r.rc == 0, r.data["error"]
    for node in SOURCES:
        d = r.node(node)["detail"]
        first = ran.result.node(node)["detail"]
        assert (d["rows_in"], d["rows_passed"], d["rows_quarantined"]) == (0, 0, 0), node
        assert d["incremental"] is True
        assert d["rows_total"] == first["rows_total"]
        assert d["watermark"] == first["watermark"]
    assert _watermarks(project) == marks
    assert_frames_equal(table(project, "dataset__churn_risk"), before, float_rel=1e-12)


def _new_orders(old: pl.DataFrame) -> pl.DataFrame:
    """20 good orders after the data ends, one reusing an existing order_id, one with a negative amount."""
    start = dt.datetime(2026, 11, 2, 8, 0, 0)
    next_id = int(old["order_id"].max()) + 1
    good = pl.DataFrame({
        "order_id": list(range(next_id, next_id + 20)),
        "customer_id": list(range(1, 21)),
        "ordered_at": [start + dt.timedelta(hours=i) for i in range(20)],
        "amount": [10.0 + i for i in range(20)],
        "channel": ["web"] * 20,
    })
    dup = pl.DataFrame({"order_id": [int(old["order_id"][0])], "customer_id": [3],
                        "ordered_at": [start + dt.timedelta(days=1)], "amount": [12.5], "channel": ["app"]})
    neg = pl.DataFrame({"order_id": [next_id + 20], "customer_id": [4],
                        "ordered_at": [start + dt.timedelta(days=2)], "amount": [-5.0], "channel": ["store"]})
    return pl.concat([good, dup, neg]).cast(old.schema)  # type: ignore[arg-type]


def test_appended_rows_are_read_exactly_once(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    path = project / "data" / "orders.parquet"
    old = pl.read_parquet(path)
    new = _new_orders(old)
    pl.concat([old, new]).write_parquet(path)
    total_before = ran.result.node("source:orders")["detail"]["rows_total"]
    dataset_before = table(project, "dataset__churn_risk")
    quarantined_before = _quarantine_count(project)

    r = run_json(project, "--until", "dataset:churn_risk")
    assert r.rc == 0, r.data["error"]
    d = r.node("source:orders")["detail"]
    assert (d["rows_in"], d["rows_passed"], d["rows_quarantined"]) == (22, 20, 2)
    assert d["rows_total"] == total_before + 20
    assert d["incremental"] is True
    assert d["watermark"] == str(new["ordered_at"].max())
    for node in ("source:customers", "source:churn_labels"):
        assert r.node(node)["detail"]["rows_in"] == 0

    loaded = table(project, "src__orders")
    assert loaded.height == total_before + 20
    assert loaded["order_id"].n_unique() == loaded.height
    assert set(new["order_id"][:20].to_list()) <= set(loaded["order_id"].to_list())
    assert (new["order_id"][21] not in set(loaded["order_id"].to_list()))
    assert loaded.filter(pl.col("order_id") == new["order_id"][20])["amount"].to_list() == [
        old["amount"][0]]  # the original row survives, the duplicate does not
    with warehouse(project) as conn:
        q = conn.execute("SELECT row_key, reason FROM _mlspec_quarantine WHERE run_id = ? ORDER BY row_key",
                         [r.data["run_id"]]).fetchall()
    assert sorted(q) == sorted([(str(new["order_id"][20]), f"duplicate order_id = {new['order_id'][20]}"),
                                (str(new["order_id"][21]), "amount = -5.0 is outside [0, 100000]")])
    assert _quarantine_count(project) == quarantined_before + 2
    # The new orders are after every label's observation time: training data does not change.
    assert_frames_equal(table(project, "dataset__churn_risk"), dataset_before, float_rel=1e-9)

    again = run_json(project, "--until", "source:orders")
    assert again.rc == 0
    assert again.node("source:orders")["detail"]["rows_in"] == 0
    assert _quarantine_count(project) == quarantined_before + 2  # nothing quarantined twice


def test_snapshot_of_an_unchanged_source_is_not_duplicated(ran: Ran, tmp_path: Path) -> None:
    """Re-running the whole pipeline keeps one row per key in every source table."""
    project = copy_state(ran.dir, tmp_path / "churn")
    r = run_json(project, "--until", "dataset:churn_risk")
    assert r.rc == 0
    for name, key in (("src__customers", "customer_id"), ("src__orders", "order_id")):
        t = table(project, name)
        assert t[key].n_unique() == t.height == ran.result.node("source:" + name[5:])["detail"]["rows_total"]


# ---- schema checked on read ----------------------------------------------------------------

SCHEMA_BREAKS = {
    "renamed": (lambda f: f.rename({"amount": "amount_usd"}),
                "column `amount` (float) is missing from data/orders.parquet", "amount_usd"),
    "missing": (lambda f: f.drop("channel"),
                "column `channel` (string) is missing from data/orders.parquet", "order_id"),
    "string_amount": (lambda f: f.with_columns(pl.col("amount").cast(pl.String)),
                      "column `amount` is VARCHAR in data/orders.parquet, but the schema declares float", "fix"),
    "float_ids": (lambda f: f.with_columns(pl.col("customer_id").cast(pl.Float64)),
                  "column `customer_id` is DOUBLE in data/orders.parquet, but the schema declares int", "fix"),
    "string_timestamp": (lambda f: f.with_columns(pl.col("ordered_at").cast(pl.String)),
                         "column `ordered_at` is VARCHAR in data/orders.parquet, but the schema declares timestamp",
                         "fix"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_BREAKS))
def test_schema_break_stops_the_run_naming_source_column_and_expectation(case: str, project: Path) -> None:
    change, message, hint_word = SCHEMA_BREAKS[case]
    path = project / "data" / "orders.parquet"
    change(pl.read_parquet(path)).write_parquet(path)

    r = run_json(project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert error_line(r) == f"error in source:orders: {message}"
    assert hint_word in r.data["hint"]
    assert r.node("source:orders")["status"] == "failed"
    assert r.ran()[-1] == "source:orders"  # nothing downstream ran
    assert "src__orders" not in tables(project)
    assert not (project / ".mlspec" / "registry").exists() and not (project / "scores").exists()

    if case != "string_amount":
        return
    text = cli("run", project)  # the same in the default (text) output
    assert text.rc == 1
    assert_no_traceback(text)
    assert f"error in source:orders: {message}" in text.text


def test_renamed_column_hint_suggests_the_new_name(project: Path) -> None:
    path = project / "data" / "orders.parquet"
    pl.read_parquet(path).rename({"amount": "amount_usd"}).write_parquet(path)
    r = run_json(project, "--until", "source:orders")
    assert r.data["hint"] == "was it renamed? the file has `amount_usd`?"


def test_schema_error_is_one_line_on_stderr(project: Path) -> None:
    path = project / "data" / "orders.parquet"
    pl.read_parquet(path).with_columns(pl.col("amount").cast(pl.String)).write_parquet(path)
    r = cli("run", project)
    assert r.rc == 1
    expected = ("error in source:orders: column `amount` is VARCHAR in data/orders.parquet, "
                "but the schema declares float")
    assert expected in r.err.splitlines()


def test_schema_break_after_a_first_load_is_still_caught(ran: Ran, tmp_path: Path) -> None:
    """An incremental run checks the file's schema again, and keeps the previous state."""
    project = copy_state(ran.dir, tmp_path / "churn")
    path = project / "data" / "orders.parquet"
    pl.read_parquet(path).rename({"amount": "total"}).write_parquet(path)
    rows_before = table(project, "src__orders").height
    r = run_json(project, "--until", "source:orders")
    assert r.rc == 1
    assert error_line(r) == "error in source:orders: column `amount` (float) is missing from data/orders.parquet"
    assert table(project, "src__orders").height == rows_before


def test_rows_appended_at_the_watermark_time_are_not_lost(ran: Ran, tmp_path: Path) -> None:
    project = copy_state(ran.dir, tmp_path / "churn")
    path = project / "data" / "customers.parquet"
    old = pl.read_parquet(path)
    last = old["signup_date"].max()
    assert ran.result.node("source:customers")["detail"]["watermark"] == f"{last} 00:00:00"
    new = pl.DataFrame({"customer_id": [10_001, 10_002], "signup_date": [last, last + dt.timedelta(days=1)],
                        "plan": ["pro", "pro"], "monthly_fee": [49.0, 49.0], "region": ["EU", "EU"]})
    pl.concat([old, new.cast(old.schema)]).write_parquet(path)  # type: ignore[arg-type]
    r = run_json(project, "--until", "source:customers")
    assert r.rc == 0, r.data["error"]
    loaded = set(table(project, "src__customers")["customer_id"].to_list())
    assert {10_001, 10_002} <= loaded
    assert r.node("source:customers")["detail"]["rows_in"] == 2
