"""Errors a user will meet: each one clear message, exit 1, no traceback, nothing trained or scored."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from tests.runtime.conftest import Result, assert_no_traceback, cli, error_line, run_json

ORDERS, LABELS = "data/orders.parquet", "data/churn_labels.parquet"


def _rewrite(project: Path, relpath: str, change) -> None:  # type: ignore[no-untyped-def]
    path = project / relpath
    change(pl.read_parquet(path)).write_parquet(path)


def _failed(project: Path, node: str | None, *, text_mode: bool = True) -> Result:
    """Run in JSON (and text) mode: exit 1 without a traceback; the JSON run stopped at `node` (if given)."""
    r = run_json(project)
    assert r.rc == 1
    assert_no_traceback(r)
    assert node is None or (r.ran()[-1] == node and r.node(node)["status"] == "failed")
    assert all(r.node(n)["status"] == "ok" for n in r.ran()[:-1])
    assert not (project / ".mlspec" / "registry").exists() and not (project / "scores").exists()
    if not text_mode:
        return r
    text = cli("run", project)
    assert text.rc == 1
    assert_no_traceback(text)
    assert error_line(r) in text.text
    return r


def test_missing_data_file(project: Path) -> None:
    (project / ORDERS).unlink()
    r = _failed(project, "source:orders")
    assert error_line(r) == (f"error in source:orders: file {ORDERS} does not exist (looked in {project})")
    assert "mlspec demo churn DIR" in r.data["hint"]


def test_empty_label_source(project: Path) -> None:
    _rewrite(project, LABELS, lambda f: f.head(0))
    r = _failed(project, "source:churn_labels")
    assert error_line(r) == ("error in source:churn_labels: source `churn_labels` has no rows "
                             "(data/churn_labels.parquet is empty)")


def test_all_label_rows_quarantined(project: Path) -> None:
    _rewrite(project, LABELS, lambda f: f.with_columns(pl.lit(None, pl.Boolean).alias("churned")))
    r = _failed(project, "source:churn_labels")
    n = len(pl.read_parquet(project / LABELS))
    assert error_line(r) == f"error in source:churn_labels: all {n:,} rows of source `churn_labels` were quarantined"
    assert r.data["hint"] == "see the reasons with `mlspec quarantine`"
    quarantined = cli("quarantine", "--json", project)
    assert quarantined.data["counts"] == [{"node": "source:churn_labels", "reason": "churned is null", "rows": n}]


def test_label_with_no_matching_features(project: Path) -> None:
    """Every label row's features are set aside by a check: the dataset node says so."""
    spec = project / "churn.mlspec"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(re.sub(r"check activity \{.*?\n\}", "check activity {\n  orders_90d < 0\n  on_fail = quarantine\n}",
                           text, flags=re.S), encoding="utf-8")  # no row can pass
    r = _failed(project, "dataset:churn_risk")
    n = r.node("label:churned")["detail"]["rows_passed"]
    assert error_line(r) == (f"error in dataset:churn_risk: no label row of `churned` has features (all {n} were set "
                             "aside by checks or have no matching entity)")
    assert r.node("check:activity")["detail"]["rows_quarantined"] == n


def test_a_failing_dataset_check_stops_before_training(project: Path) -> None:
    _rewrite(project, LABELS, lambda f: f.head(60))  # fewer than `row_count() >= 100`
    r = _failed(project, "check:activity")
    assert error_line(r) == "error in check:activity: dataset check failed: `row_count() >= 100` is false (value 60)"


def test_empty_source(project: Path) -> None:
    _rewrite(project, ORDERS, lambda f: f.head(0))
    r = _failed(project, None, text_mode=False)
    assert "orders" in error_line(r) and "empty" in error_line(r)


def test_all_rows_of_a_source_quarantined(project: Path) -> None:
    _rewrite(project, ORDERS, lambda f: f.with_columns(-pl.col("amount").abs() - 1.0))  # all outside [0, 100000]
    r = _failed(project, None, text_mode=False)
    assert "orders" in error_line(r) and "quarantine" in error_line(r)


def test_labels_of_unknown_customers(project: Path) -> None:
    _rewrite(project, LABELS, lambda f: f.with_columns(pl.col("customer_id") + 1_000_000))
    r = _failed(project, "source:churn_labels", text_mode=False)
    assert "churn_labels" in error_line(r) and "quarantined" in error_line(r)
    reasons = {c["reason"] for c in cli("quarantine", "--json", project).data["counts"]}
    assert all(reason.endswith("has no match in customers.customer_id") for reason in reasons), reasons
