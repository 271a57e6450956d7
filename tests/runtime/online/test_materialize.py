"""`materialize`: what online serving needs, copied from the warehouse incrementally and idempotently."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from mlspec.runtime.errors import RunError
from mlspec.runtime.online.materialize import group_window, materialize, serving_models, source_needs
from mlspec.runtime.online.store import OnlineStore, RedisStore, SqliteStore, decode_row
from mlspec.runtime.warehouse import Warehouse

from .conftest import append_orders, build, build_tiny, compile_spec, write_events, write_users


def run(root: Path, store: OnlineStore, spec_file: str = "churn.mlspec") -> dict[str, dict[str, Any]]:
    spec = compile_spec(root / spec_file)
    with Warehouse.open(root, read_only=True) as wh:
        stats = materialize(wh, spec, store)
    return {s.namespace: s.__dict__ for s in stats.sources}


def content(store: OnlineStore, *sources: str) -> dict[str, object]:
    return {s: (store.dump(s), store.watermark(s), store.meta(f"materialized:{s}")) for s in sources}


def warehouse_rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse.open(root, read_only=True) as wh:
        return wh.conn.execute(sql).fetchall()


def test_what_the_churn_spec_needs(churn_built: Path) -> None:
    spec = compile_spec(churn_built / "churn.mlspec")
    assert [m.name for m in serving_models(spec)] == ["churn_risk"]
    needs = {n.source: n for n in source_needs(spec)}
    assert needs["orders"].window_ms is None  # days_since_order = max(ordered_at) over all history
    assert needs["orders"].key_column == "customer_id" and needs["orders"].namespace == "orders"
    assert needs["customers"].window_ms == 0  # row features only
    assert group_window(spec.group("activity")) is None
    assert "churn_labels" not in needs


def test_materialize_demo_data(churn_project: Path, tmp_path: Path) -> None:
    # orders are read from the check's output: a row that fails `amount >= 0` never reaches serving
    # (planted behind extraction's back, since the schema's range already stops such rows there)
    with Warehouse.open(churn_project) as wh:
        wh.conn.execute("INSERT INTO src__orders SELECT order_id + 1000000, customer_id, ordered_at, -5.0, "
                        "channel, __seq + 1000000 FROM src__orders WHERE customer_id = 7 LIMIT 1")
    build(churn_project, until="check:orders")
    store = SqliteStore(tmp_path / "online.sqlite")
    stats = run(churn_project, store)
    (checked,) = warehouse_rows(churn_project, "SELECT count(*), max(__seq) FROM chk__orders")
    (raw,) = warehouse_rows(churn_project, "SELECT count(*) FROM src__orders")
    assert checked[0] == raw[0] - 1
    assert all(r["amount"] >= 0 for r in store.rows_for("orders", 7))
    assert stats["orders"]["rows_written"] == checked[0] == len(store.dump("orders"))
    assert stats["orders"]["watermark"] == store.watermark("orders") == checked[1]
    assert stats["orders"]["table"] == "chk__orders" and stats["orders"]["keep_from"] is None
    (customers,) = warehouse_rows(churn_project, "SELECT count(*) FROM src__customers")
    assert stats["customers"]["rows_written"] == customers[0]
    one = store.rows_for("orders", 7)
    assert one and all(r["customer_id"] == 7 and isinstance(r["ordered_at"], dt.datetime) for r in one)
    assert isinstance(store.rows_for("customers", 7)[0]["signup_date"], dt.date)
    store.close()


def test_run_twice_is_run_once(churn_project: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "online.sqlite")
    run(churn_project, store)
    first = content(store, "orders", "customers")
    again = run(churn_project, store)
    assert all(s["rows_written"] == 0 and s["mode"] == "incremental" for s in again.values())
    assert content(store, "orders", "customers") == first
    store.close()


def test_incremental_writes_only_new_rows_and_equals_a_full_run(churn_project: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "online.sqlite")
    run(churn_project, store)
    before = len(store.dump("orders"))
    append_orders(churn_project, [(3, "2026-11-02T10:00:00", 12.5), (3, "2026-11-03T11:00:00", 99.0),
                                  (8, "2026-11-04T09:30:00", 5.0), (8, "2026-11-05T09:30:00", -1.0)])
    build(churn_project, until="check:orders")  # the -1.0 order is quarantined: amount range [0, 100000]
    stats = run(churn_project, store)
    assert stats["orders"]["rows_written"] == 3 and stats["orders"]["mode"] == "incremental"
    assert stats["customers"]["rows_written"] == 0
    assert len(store.dump("orders")) == before + 3
    assert [r["amount"] for r in store.rows_for("orders", 3)][-2:] == [12.5, 99.0]
    fresh = SqliteStore(tmp_path / "fresh.sqlite")
    run(churn_project, fresh)
    assert content(fresh, "orders", "customers") == content(store, "orders", "customers")
    store.close()
    fresh.close()


def test_needs_the_warehouse_built(tmp_path: Path, churn_built: Path) -> None:
    root = tmp_path / "empty"
    (root / "data").mkdir(parents=True)
    (root / "churn.mlspec").write_text((churn_built / "churn.mlspec").read_text())
    spec = compile_spec(root / "churn.mlspec")
    store = SqliteStore(tmp_path / "online.sqlite")
    with Warehouse.open(root) as wh, pytest.raises(RunError, match="has no table `chk__orders`") as err:
        materialize(wh, spec, store)
    assert "mlspec run" in (err.value.hint or "")
    store.close()


def test_windowed_history_is_pruned_but_every_key_keeps_its_latest_row(tiny_project: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "online.sqlite")
    stats = run(tiny_project, store, "tiny.mlspec")
    latest = warehouse_rows(tiny_project, 'SELECT max("at") FROM src__events')[0][0]
    keep_from = latest - dt.timedelta(days=7)
    assert stats["events"]["keep_from"] == keep_from.isoformat()
    expected = warehouse_rows(tiny_project, f"""
        SELECT __seq FROM (SELECT *, row_number() OVER (PARTITION BY user_id, "at" < TIMESTAMP '{keep_from}'
                           ORDER BY "at" DESC, __seq DESC) AS rn FROM src__events WHERE user_id IS NOT NULL)
        WHERE "at" >= TIMESTAMP '{keep_from}' OR rn = 1 ORDER BY __seq""")
    assert [seq for _, seq, _, _ in store.dump("events")] == [s for (s,) in expected]
    assert stats["events"]["rows_written"] == len(expected) < warehouse_rows(
        tiny_project, "SELECT count(*) FROM src__events")[0][0]
    # ten more days arrive: new rows are written, rows now outside the window are pruned
    write_events(tiny_project, 10_000, range(30, 40), range(1, 5))
    build_tiny(tiny_project)
    again = run(tiny_project, store, "tiny.mlspec")
    assert again["events"]["rows_pruned"] > 0 and again["events"]["rows_written"] > 0
    fresh = SqliteStore(tmp_path / "fresh.sqlite")
    run(tiny_project, fresh, "tiny.mlspec")
    assert content(fresh, "events") == content(store, "events")
    store.close()
    fresh.close()


def test_snapshot_sources_are_synchronised_whole(tiny_project: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "online.sqlite")
    stats = run(tiny_project, store, "tiny.mlspec")
    assert stats["users"]["mode"] == "snapshot" and stats["users"]["rows_written"] == 4
    assert run(tiny_project, store, "tiny.mlspec")["users"]["rows_written"] == 0
    write_users(tiny_project, {1: "gold", 2: "bronze", 4: "gold", 6: "silver"})  # 2 changed, 3 gone, 6 new
    build_tiny(tiny_project)
    stats = run(tiny_project, store, "tiny.mlspec")
    assert {k: [decode_row(p)["tier"] for kk, _, _, p in store.dump("users") if kk == k] for k in "12346"} == {
        "1": ["gold"], "2": ["bronze"], "3": [], "4": ["gold"], "6": ["silver"]}
    assert stats["users"]["rows_written"] == 3  # every __seq after the removed row moved: 2, 4 and 6 rewritten
    store.close()


def test_a_changed_need_rewrites_the_source(tiny_project: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "online.sqlite")
    run(tiny_project, store, "tiny.mlspec")
    kept = len(store.dump("events"))
    spec_file = tiny_project / "tiny.mlspec"
    spec_file.write_text(spec_file.read_text().replace("count(event_id, last 7d)", "count(event_id, last 14d)"))
    stats = run(tiny_project, store, "tiny.mlspec")
    assert stats["events"]["mode"] == "rebuild" and "changed" in stats["events"]["reason"]
    assert len(store.dump("events")) > kept
    fresh = SqliteStore(tmp_path / "fresh.sqlite")
    run(tiny_project, fresh, "tiny.mlspec")
    assert content(fresh, "events") == content(store, "events")
    store.close()
    fresh.close()


def test_a_rebuilt_warehouse_rewrites_the_store(tiny_project: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "online.sqlite")
    run(tiny_project, store, "tiny.mlspec")
    store.set_watermark("events", 10**9)  # as if the warehouse had held more rows than it does now
    stats = run(tiny_project, store, "tiny.mlspec")
    assert stats["events"]["mode"] == "rebuild" and "fewer rows" in stats["events"]["reason"]
    store.close()


@pytest.mark.slow
def test_redis_holds_exactly_what_sqlite_holds(churn_project: Path, tmp_path: Path, redis_url: str) -> None:
    sqlite, redis = SqliteStore(tmp_path / "online.sqlite"), RedisStore(redis_url, "churn")
    run(churn_project, sqlite)
    stats = run(churn_project, redis)
    assert stats["orders"]["rows_written"] > 0
    first = content(redis, "orders", "customers")
    assert first == content(sqlite, "orders", "customers")
    assert all(s["rows_written"] == 0 for s in run(churn_project, redis).values())
    assert content(redis, "orders", "customers") == first
    sqlite.close()
    redis.close()


def test_a_new_or_changed_check_rewrites_the_source(tiny_project: Path, tmp_path: Path) -> None:
    """Rows a check now sets aside must leave serving too: the check's rules are part of the need."""
    from mlspec.compiler import compile_paths
    from mlspec.runtime.runner import run_pipeline

    store = SqliteStore(tmp_path / "online.sqlite")
    run(tiny_project, store, "tiny.mlspec")
    spec_file = tiny_project / "tiny.mlspec"
    base = spec_file.read_text()
    for threshold in (3, 6):
        spec_file.write_text(base + f"\ncheck events {{\n  amount >= {threshold}\n  on_fail = quarantine\n}}\n")
        assert run_pipeline(compile_paths([spec_file]), node="check:events").ok
        stats = run(tiny_project, store, "tiny.mlspec")
        assert stats["events"]["mode"] == "rebuild" and stats["events"]["table"] == "chk__events"
        amounts = [decode_row(p)["amount"] for _, _, _, p in store.dump("events")]
        assert amounts and min(amounts) >= threshold
    assert run(tiny_project, store, "tiny.mlspec")["events"]["mode"] == "incremental"
    store.close()
