"""Online features (store + online evaluator) equal batch features, value for value."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlspec.ir.spec import Spec
from mlspec.runtime.engines.online import Evaluator, GroupInput
from mlspec.runtime.online.features import FeatureService, online_features
from mlspec.runtime.online.materialize import materialize, source_tables
from mlspec.runtime.online.store import SqliteStore
from mlspec.runtime.online.verify import values_equal
from mlspec.runtime.score import features_as_of
from mlspec.runtime.warehouse import Warehouse

from .conftest import compile_spec, tiny_with_request

AS_OF = [
    dt.datetime(2025, 8, 1),  # the first label time: 90 days of history
    dt.datetime(2026, 2, 14, 13, 45, 7, 250_000),
    dt.datetime(2026, 10, 31, 23, 59, 59),  # the last day of data
    dt.datetime(2026, 12, 31),  # after the data: windows emptying out
]


@pytest.fixture(scope="module")
def churn_online(churn_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Spec, SqliteStore]]:
    spec = compile_spec(churn_built / "churn.mlspec")
    store = SqliteStore(tmp_path_factory.mktemp("store") / "online.sqlite")
    with Warehouse.open(churn_built, read_only=True) as wh:
        materialize(wh, spec, store)
    yield spec, store
    store.close()


@pytest.mark.parametrize("as_of", AS_OF, ids=lambda t: t.isoformat())
def test_online_equals_batch_for_every_feature(churn_built: Path, churn_online: tuple[Spec, SqliteStore],
                                               as_of: dt.datetime) -> None:
    spec, store = churn_online
    model = spec.model("churn_risk")
    with Warehouse.open(churn_built) as wh:
        frame = features_as_of(wh, spec, model, as_of, "duckdb", source_tables(wh, spec), prefix="t_online")
    rows = {r["customer_id"]: r for r in frame.to_dicts()}
    keys = random.Random(as_of.toordinal()).sample(sorted(rows), 60)
    service = FeatureService(spec)
    nonzero = 0
    for key in keys:
        result = service.features(model, store, key, as_of)
        assert list(result.values) == list(model.features)
        for q in model.features:
            batch, online = rows[key][q], result.values[q]
            assert values_equal(batch, online, spec.feature(q).dtype), (key, q, batch, online)
        nonzero += bool(result.values["activity.orders_90d"])
    if as_of <= dt.datetime(2026, 10, 31, 23, 59, 59):
        assert nonzero > 10  # the comparison is not vacuous


def test_unknown_entity_gets_the_empty_history_features(churn_online: tuple[Spec, SqliteStore]) -> None:
    spec, store = churn_online
    as_of = dt.datetime(2026, 6, 1)
    result = online_features(spec, "churn_risk", store, 10**9, as_of)
    assert result.known_entity is False
    expected = {}
    for g in ("activity", "profile"):
        for name, value in Evaluator(spec, spec.group(g)).evaluate(GroupInput(as_of, [])).items():
            expected[f"{g}.{name}"] = value
    assert result.values == expected
    assert result.values["activity.orders_30d"] == 0 and result.values["activity.spend_90d"] == 0.0
    assert result.values["activity.avg_basket_90d"] is None  # 0 / 0: null, never an error
    assert result.values["profile.plan"] is None and result.values["profile.monthly_fee"] == 0.0  # coalesce
    known = online_features(spec, "churn_risk", store, 7, as_of)
    assert known.known_entity is True and known.values["profile.plan"] is not None


def test_a_string_key_from_a_request_finds_the_entity(churn_online: tuple[Spec, SqliteStore]) -> None:
    spec, store = churn_online
    as_of = dt.datetime(2026, 6, 1)
    assert online_features(spec, "churn_risk", store, "7", as_of) == online_features(spec, "churn_risk", store, 7,
                                                                                      as_of)


def test_the_service_compiles_each_group_once(churn_online: tuple[Spec, SqliteStore]) -> None:
    spec, store = churn_online
    service = FeatureService(spec)
    first = service.evaluator("activity")
    service.features("churn_risk", store, 7, dt.date(2026, 6, 1))
    assert service.evaluator("activity") is first
    assert service.plan("churn_risk") is service.plan(spec.model("churn_risk"))


def test_aware_as_of_is_read_in_utc(churn_online: tuple[Spec, SqliteStore]) -> None:
    spec, store = churn_online
    naive = dt.datetime(2026, 6, 1, 10, 0)
    aware = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert online_features(spec, "churn_risk", store, 7, aware) == online_features(spec, "churn_risk", store, 7,
                                                                                    naive)


def test_request_groups_read_the_request_and_upstream_groups(tiny_project: Path, tmp_path: Path) -> None:
    spec = compile_spec(tiny_with_request(tiny_project))
    store = SqliteStore(tmp_path / "online.sqlite")
    with Warehouse.open(tiny_project, read_only=True) as wh:
        materialize(wh, spec, store)
    as_of = dt.datetime(2026, 1, 31)
    request = {"user_id": 2, "seen_at": dt.datetime(2026, 1, 31, 13, 5), "bad": None}
    result = online_features(spec, "m", store, 2, as_of, request)
    assert result.known_entity
    assert result.values["ev.late"] is True
    assert result.values["ev.n_plus"] == result.values["recent.n_7d"] + 1 > 1
    assert result.values["tier.tier"] == "silver" and result.values["tier.big"] is False
    without = online_features(spec, "m", store, 2, as_of)
    assert without.values["ev.late"] is None and without.values["ev.n_plus"] == result.values["ev.n_plus"]
    store.close()


def test_a_source_read_by_two_entities_is_stored_per_key_column(tiny_project: Path, tmp_path: Path) -> None:
    from mlspec.runtime.online.materialize import namespace

    from .conftest import TINY_SPEC

    path = tiny_project / "tiny.mlspec"
    path.write_text(TINY_SPEC.replace("features tier {", """entity shop { key = kind }

features by_kind {
  entity = shop
  from   = events
  n_kind = count(event_id, last 7d)
}

features tier {"""))
    spec = compile_spec(path)
    assert namespace(spec, "events", "user_id") == "events#user_id"
    assert namespace(spec, "users", "user_id") == "users"
    store = SqliteStore(tmp_path / "online.sqlite")
    with Warehouse.open(tiny_project, read_only=True) as wh:
        materialize(wh, spec, store)
    assert store.dump("events") == [] and store.dump("events#user_id")
    result = online_features(spec, "m", store, 1, dt.datetime(2026, 1, 31))
    assert result.known_entity and result.values["recent.n_7d"] > 0
    store.close()


@pytest.fixture
def two_handles(churn_built: Path, tmp_path: Path) -> Iterator[tuple[Spec, SqliteStore, SqliteStore]]:
    """The churn demo materialized, and two connections to that store (as two processes hold)."""
    spec = compile_spec(churn_built / "churn.mlspec")
    path = tmp_path / "online.sqlite"
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        with Warehouse.open(churn_built, read_only=True) as wh:
            materialize(wh, spec, first)
        yield spec, first, second
    finally:
        first.close()
        second.close()


def test_cached_rows_are_never_served_after_the_store_changes(
        two_handles: tuple[Spec, SqliteStore, SqliteStore]) -> None:
    """Rows are cached while the store's version holds; a write from another connection (as
    `mlspec materialize` in another process makes) must show in the very next call."""
    spec, reader, writer = two_handles
    service = FeatureService(spec)
    as_of = dt.datetime(2026, 10, 1)
    before = service.features("churn_risk", reader, 7, as_of).values
    assert service.features("churn_risk", reader, 7, as_of).values == before
    assert service.cache.hits >= 2 and len(service.cache) == 2  # orders and customers of entity 7
    order = {"__seq": 10**9, "order_id": 10**9, "customer_id": 7, "ordered_at": dt.datetime(2026, 9, 30, 12),
             "amount": 1234.5, "channel": "app"}
    from mlspec.runtime.online.materialize import namespace

    assert writer.write_rows(namespace(spec, "orders", "customer_id"), "customer_id", [order], "ordered_at") == 1
    after = service.features("churn_risk", reader, 7, as_of).values
    assert after["activity.orders_30d"] == before["activity.orders_30d"] + 1
    assert after["activity.max_order_90d"] == 1234.5
    assert after == FeatureService(spec, cache_rows=0).features("churn_risk", reader, 7, as_of).values


def test_the_cache_is_bounded_by_rows(churn_online: tuple[Spec, SqliteStore]) -> None:
    spec, store = churn_online
    service = FeatureService(spec, cache_rows=300)
    as_of = dt.datetime(2026, 10, 1)
    uncached = FeatureService(spec, cache_rows=0)
    for key in range(1, 40):
        assert service.features("churn_risk", store, key, as_of) == uncached.features("churn_risk", store, key, as_of)
    assert 0 < len(service.cache) < 39 * 2
    assert service.cache.rows <= 300
    assert len(uncached.cache) == 0


def test_own_writes_extend_cached_histories(two_handles: tuple[Spec, SqliteStore, SqliteStore]) -> None:
    """A consumer writing the events it scores keeps its cache: the written entity's history gains
    the rows, every other entity stays cached, and the values equal an uncached read's."""
    from mlspec.runtime.online.materialize import namespace

    spec, store, other = two_handles
    service, fresh = FeatureService(spec), FeatureService(spec, cache_rows=0)
    as_of = dt.datetime(2026, 10, 1)
    for key in (7, 8):
        service.features("churn_risk", store, key, as_of)
    ns = namespace(spec, "orders", "customer_id")

    def order(seq: int, key: int, amount: float) -> dict[str, object]:
        return {"__seq": seq, "order_id": seq, "customer_id": key, "ordered_at": dt.datetime(2026, 9, 30, 12),
                "amount": amount, "channel": "app"}

    assert service.write_rows(store, ns, "customer_id", [order(10**9, 7, 1234.5)], "ordered_at") == 1
    hits = service.cache.hits
    got = service.features("churn_risk", store, 7, as_of).values
    assert service.features("churn_risk", store, 8, as_of) == fresh.features("churn_risk", store, 8, as_of)
    assert service.cache.hits == hits + 4  # both entities, both sources: nothing was read again
    assert got == fresh.features("churn_risk", store, 7, as_of).values and got["activity.max_order_90d"] == 1234.5
    # Rows already stored are not added twice: that entity is read again instead.
    assert service.write_rows(store, ns, "customer_id", [order(10**9, 7, 1234.5), order(10**9 + 1, 7, 1.0)],
                              "ordered_at") == 1
    assert service.features("churn_risk", store, 7, as_of) == fresh.features("churn_risk", store, 7, as_of)
    # Another writer in between: the cache cannot know what changed, and starts over.
    other.write_rows(ns, "customer_id", [order(10**9 + 2, 8, 99.0)], "ordered_at")
    service.write_rows(store, ns, "customer_id", [order(10**9 + 3, 7, 2.0)], "ordered_at")
    for key in (7, 8):
        assert service.features("churn_risk", store, key, as_of) == fresh.features("churn_risk", store, key, as_of)


def test_a_read_racing_an_own_write_does_not_count_its_rows_twice(
        two_handles: tuple[Spec, SqliteStore, SqliteStore]) -> None:
    """Another thread may read an entity after this service's write committed, but cache it under the
    version from before it; adding the written rows then must not add them a second time."""
    from mlspec.runtime.online.materialize import namespace
    from mlspec.runtime.online.store import TrackedWrite

    spec, first, _ = two_handles
    service, fresh = FeatureService(spec), FeatureService(spec, cache_rows=0)
    as_of = dt.datetime(2026, 10, 1)
    ns = namespace(spec, "orders", "customer_id")

    class RacingStore(SqliteStore):
        """A real store where, right after a write commits, a reader thread's miss-read-put happens."""

        def write_rows_tracked(self, source: str, key_column: str, rows: list[dict[str, Any]],
                               ts_column: str | None = None) -> TrackedWrite:
            version = service.cache.sync(self)
            done = super().write_rows_tracked(source, key_column, rows, ts_column)
            reader = service.evaluator("activity")
            service.cache.put(ns, "7", reader.history(self.rows_for(ns, 7)), version)  # holds the new row
            return done

    store = RacingStore(first.path)
    try:
        order = {"__seq": 10**9, "order_id": 10**9, "customer_id": 7, "ordered_at": dt.datetime(2026, 9, 30, 12),
                 "amount": 1234.5, "channel": "app"}
        assert service.write_rows(store, ns, "customer_id", [order], "ordered_at") == 1
        assert service.cache.hits == 0
        got = service.features("churn_risk", store, 7, as_of)
        assert service.cache.hits == 1  # the orders history came from the cache
        assert got == fresh.features("churn_risk", store, 7, as_of)
    finally:
        store.close()
