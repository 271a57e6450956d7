"""`mlspec verify`: zero mismatches on the demo, and a planted skew (stale materialization) is caught."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from mlspec.ir.types import DType
from mlspec.runtime.errors import RunError
from mlspec.runtime.online.store import SqliteStore
from mlspec.runtime.online.verify import values_equal, verify
from mlspec.runtime.warehouse import Warehouse

from .conftest import DEMO_CUSTOMERS, append_orders, build, cli, compile_spec, tiny_with_request


def verify_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def features_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models = report["models"]
    assert isinstance(models, list)
    return {f["feature"]: f for m in models for f in m["features"]}


def test_values_equal() -> None:
    assert values_equal(None, None, DType.FLOAT)
    assert not values_equal(None, 0.0, DType.FLOAT) and not values_equal(0, None, DType.INT)
    assert values_equal(0.1 + 0.2, 0.3, DType.FLOAT)  # 4e-17 apart: summation order
    assert values_equal(1e20, 1e20 * (1 + 5e-13), DType.FLOAT)
    assert not values_equal(1.0, 1.0 + 1e-9, DType.FLOAT)
    assert values_equal(-0.0, 0.0, DType.FLOAT)
    assert values_equal(3, 3, DType.INT) and not values_equal(3, 4, DType.INT)
    assert not values_equal(True, 1, DType.BOOL) and values_equal(False, False, DType.BOOL)
    assert not values_equal(dt.date(2026, 1, 1), dt.datetime(2026, 1, 1), DType.DATE)
    assert values_equal("a", "a", DType.STRING) and not values_equal("a", "A", DType.STRING)


def test_verify_demo_data_has_no_mismatches(churn_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = str(churn_project / "churn.mlspec")
    assert cli(["materialize", spec_file]) == 0
    code, report = verify_json(capsys, ["verify", spec_file, "--sample", "10000", "--as-of", "2026-11-01T08:00:00"])
    assert code == 0 and report["ok"] is True
    features = features_of(report)
    assert len(features) == 11
    assert all(f["compared"] == DEMO_CUSTOMERS and f["mismatched"] == 0 for f in features.values())
    (model,) = report["models"]
    assert model["known"] == DEMO_CUSTOMERS and model["notes"] == []
    # the default: now, in text
    capsys.readouterr()
    assert cli(["verify", spec_file, "--sample", "50"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "no skew" in out and "activity.orders_30d" in out
    with Warehouse.open(churn_project, read_only=True) as wh:  # verify leaves no scratch tables behind
        assert not wh.conn.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'verify%'").fetchall()


def test_verify_catches_a_stale_materialization(churn_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = str(churn_project / "churn.mlspec")
    assert cli(["materialize", spec_file]) == 0
    # new orders arrive and the pipeline runs, but nobody re-materializes: serving is stale
    append_orders(churn_project, [(c, f"2026-11-0{d}T12:00:00", 20.0 * d) for c in (3, 8, 21) for d in (2, 4)])
    build(churn_project, until="check:orders")
    argv = ["verify", spec_file, "--sample", "10000", "--as-of", "2026-11-10"]
    code, report = verify_json(capsys, argv)
    assert code == 1 and report["ok"] is False
    features = features_of(report)
    for name in ("activity.orders_30d", "activity.orders_90d", "activity.spend_90d", "activity.days_since_order"):
        assert features[name]["mismatched"] == 3, name
        assert sorted(e["key"] for e in features[name]["examples"]) == [3, 8, 21]
    assert features["activity.orders_30d"]["max_abs_diff"] == 2
    assert all(f["mismatched"] == 0 for n, f in features.items() if n.startswith("profile."))
    # the text report names the problem and the keys
    capsys.readouterr()
    assert cli(argv) == 1
    out = capsys.readouterr().out
    assert "skew" in out and "mismatched" in out
    # catching up fixes it
    assert cli(["materialize", spec_file]) == 0
    code, report = verify_json(capsys, argv)
    assert code == 0


def test_verify_against_redis_from_an_env_url(churn_project: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = churn_project / "churn.mlspec"
    text = spec_path.read_text()
    spec_path.write_text(text.replace("project churn {", 'project churn {\n  online_store = redis(env("CHURN_REDIS"))', 1))
    monkeypatch.setenv("CHURN_REDIS", redis_url)
    capsys.readouterr()
    assert cli(["materialize", str(spec_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {s["source"]: s["rows_written"] > 0 for s in stats["sources"]} == {"orders": True, "customers": True}
    assert redis_url not in json.dumps(stats)
    code, report = verify_json(capsys, ["verify", str(spec_path), "--sample", "100", "--as-of", "2026-09-01"])
    assert code == 0 and all(f["mismatched"] == 0 for f in features_of(report).values())
    assert not (churn_project / ".mlspec" / "online.sqlite").exists()
    monkeypatch.delenv("CHURN_REDIS")
    with pytest.raises(RunError, match="CHURN_REDIS is not set"):
        cli(["materialize", str(spec_path)])


def test_verify_with_pruned_history_and_request_features(tiny_project: Path, tmp_path: Path) -> None:
    spec = compile_spec(tiny_with_request(tiny_project))
    store = SqliteStore(tmp_path / "online.sqlite")
    with Warehouse.open(tiny_project) as wh:
        from mlspec.runtime.online.materialize import materialize

        materialize(wh, spec, store)
        latest = wh.scalar('SELECT max("at") FROM src__events')
        (check,) = verify(wh, spec, store, as_of=latest + dt.timedelta(hours=1), sample=100)
        assert check.ok and check.sampled == 4 and check.notes == []
        assert {f.feature for f in check.features} >= {"ev.late", "ev.n_plus", "recent.n_7d"}
        # before the retention horizon the store lacks history the batch path sees: said, and caught
        (early,) = verify(wh, spec, store, as_of=latest - dt.timedelta(days=5), sample=100)
        assert early.notes and "events" in early.notes[0]
        assert not early.ok
    store.close()


def test_verify_needs_a_served_model(tiny_project: Path, tmp_path: Path) -> None:
    path = tiny_project / "tiny.mlspec"
    path.write_text(path.read_text().replace("mode  = realtime", "mode  = batch\n  output = \"scores/m.parquet\""))
    spec = compile_spec(path)
    store = SqliteStore(tmp_path / "online.sqlite")
    with Warehouse.open(tiny_project) as wh, pytest.raises(RunError, match="no realtime or streaming serve"):
        verify(wh, spec, store, as_of=dt.datetime(2026, 2, 1))
    store.close()
