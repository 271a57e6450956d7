"""The online store protocol, against both backends: the embedded SQLite file and a real Redis.

Every value type the warehouse holds must come back exactly (type and value), writes must be
idempotent by (source, __seq), pruning must keep what a row feature still reads, and a reader
in another process must never fail or see half a batch while materialization writes.
"""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlspec.runtime.errors import RunError
from mlspec.runtime.online.store import (
    OnlineStore,
    RedisStore,
    SqliteStore,
    decode_row,
    encode_row,
    key_text,
    open_store,
)

from .conftest import compile_spec

VALUES: dict[str, Any] = {
    "i": 42, "i_neg": -7, "i_big": 2**62 + 1, "i_min": -(2**63), "zero": 0,
    "f": 0.1 + 0.2, "f_neg_zero": -0.0, "f_tiny": 5e-324, "f_huge": 1.7976931348623157e308, "f_int": 3.0,
    "s": "plain", "s_empty": "", "s_unicode": "ß → 東京 🎉", "s_quotes": 'a "b" \\ c\n', "s_tag": '{"$ts": "x"}',
    "b_true": True, "b_false": False, "none": None,
    "d": dt.date(2026, 2, 28), "d_old": dt.date(1, 1, 1),
    "t": dt.datetime(2026, 3, 1, 12, 30, 5, 123456), "t_midnight": dt.datetime(2026, 1, 1),
}


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    s: OnlineStore
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "online.sqlite")
    else:
        s = RedisStore(request.getfixturevalue("redis_url"), "test")
    yield s
    s.close()


def row(seq: int, key: object = 1, ts: dt.datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {"__seq": seq, "k": key, "ts": ts or dt.datetime(2026, 1, 1) + dt.timedelta(days=seq), **extra}


def same(a: Any, b: Any) -> bool:
    """Equal in type and value (and in sign for zeros, and NaN to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def test_every_value_type_round_trips(store: OnlineStore) -> None:
    store.write_rows("src", "k", [row(1, **VALUES)], ts_column="ts")
    (back,) = store.rows_for("src", 1)
    original = row(1, **VALUES)
    assert set(back) == set(original)
    for name, value in original.items():
        assert same(back[name], value), (name, value, back[name])


def test_non_finite_floats_round_trip(store: OnlineStore) -> None:
    store.write_rows("src", "k", [row(1, nan=math.nan, inf=math.inf, ninf=-math.inf)], ts_column="ts")
    (back,) = store.rows_for("src", 1)
    assert math.isnan(back["nan"]) and back["inf"] == math.inf and back["ninf"] == -math.inf


def test_encoding_is_canonical_and_lossless() -> None:
    r = row(3, **VALUES)
    text = encode_row(r)
    assert text == encode_row(dict(reversed(list(r.items()))))  # key order does not matter
    assert all(same(decode_row(text)[k], v) for k, v in r.items())
    with pytest.raises(TypeError, match="cannot hold"):
        encode_row({"x": object()})


def test_keys_of_any_type_and_their_text(store: OnlineStore) -> None:
    rows = [row(1, key=7), row(2, key="a:b c"), row(3, key=dt.date(2026, 1, 2)), row(4, key=None)]
    assert store.write_rows("src", "k", rows, ts_column="ts") == 3  # no key: belongs to no entity
    assert [r["__seq"] for r in store.rows_for("src", 7)] == [1]
    assert [r["__seq"] for r in store.rows_for("src", "7")] == [1]  # a request's "7" finds entity 7
    assert [r["__seq"] for r in store.rows_for("src", "a:b c")] == [2]
    assert [r["__seq"] for r in store.rows_for("src", dt.date(2026, 1, 2))] == [3]
    assert store.rows_for("src", 8) == []
    assert store.rows_for("other", 7) == []
    assert key_text(True) == "true" and key_text(7.0) == "7"


def test_writes_are_idempotent_by_seq(store: OnlineStore) -> None:
    rows = [row(i, key=i % 3) for i in range(1, 31)]
    assert store.write_rows("src", "k", rows, ts_column="ts") == 30
    before = store.dump("src")
    assert store.write_rows("src", "k", rows, ts_column="ts") == 0
    assert store.write_rows("src", "k", rows[5:12], ts_column="ts") == 0
    assert store.dump("src") == before
    assert sorted(r["__seq"] for r in store.rows_for("src", 0)) == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_incremental_writes_and_watermark(store: OnlineStore) -> None:
    assert store.watermark("src") is None
    assert store.write_rows("src", "k", [row(1), row(2)], ts_column="ts") == 2
    store.set_watermark("src", 2)
    assert store.write_rows("src", "k", [row(2), row(3), row(4)], ts_column="ts") == 2
    store.set_watermark("src", 4)
    assert store.watermark("src") == 4
    assert [r["__seq"] for r in store.rows_for("src", 1)] == [1, 2, 3, 4]  # ordered by __seq
    assert store.watermark("other") is None


def test_prune_keeps_each_keys_latest_row_before_the_bound(store: OnlineStore) -> None:
    day = dt.datetime(2026, 1, 1)
    rows = [
        row(1, key="a", ts=day), row(2, key="a", ts=day + dt.timedelta(days=1)),
        row(3, key="a", ts=day + dt.timedelta(days=10)),
        row(4, key="b", ts=day), row(5, key="b", ts=day),  # same time: the later seq is the latest
        row(6, key="c", ts=day + dt.timedelta(days=20)),
    ]
    store.write_rows("src", "k", rows, ts_column="ts")
    bound = day + dt.timedelta(days=5)
    assert store.prune("src", bound) == 2
    assert [r["__seq"] for r in store.rows_for("src", "a")] == [2, 3]
    assert [r["__seq"] for r in store.rows_for("src", "b")] == [5]
    assert [r["__seq"] for r in store.rows_for("src", "c")] == [6]
    assert store.prune("src", bound) == 0
    assert store.prune("src", day + dt.timedelta(days=30)) == 1  # a's day-1 row; a's day-10 row is its latest
    assert [r["__seq"] for r in store.rows_for("src", "a")] == [3]
    # a bound exactly at a row's time keeps that row (strictly older rows are dropped)
    store.write_rows("src", "k", [row(7, key="d", ts=day), row(8, key="d", ts=day + dt.timedelta(days=2))],
                     ts_column="ts")
    assert store.prune("src", day + dt.timedelta(days=2)) == 0


def test_rows_without_a_time_are_never_pruned(store: OnlineStore) -> None:
    store.write_rows("snap", "k", [{"__seq": 1, "k": 1, "v": "x"}, {"__seq": 2, "k": 1, "v": "y"}])
    assert store.prune("snap", dt.datetime(2100, 1, 1)) == 0
    assert len(store.rows_for("snap", 1)) == 2


def test_replace_source_makes_rows_the_whole_content(store: OnlineStore) -> None:
    first = [{"__seq": 1, "k": 1, "v": "a"}, {"__seq": 2, "k": 2, "v": "b"}, {"__seq": 3, "k": 3, "v": "c"}]
    assert store.replace_source("snap", "k", first) == 3
    assert store.replace_source("snap", "k", first) == 0
    before = store.dump("snap")
    assert store.replace_source("snap", "k", list(reversed(first))) == 0
    assert store.dump("snap") == before
    # reloaded: seqs restart, one key changed, one gone, one new
    second = [{"__seq": 1, "k": 1, "v": "a"}, {"__seq": 2, "k": 3, "v": "c2"}, {"__seq": 3, "k": 4, "v": "d"}]
    assert store.replace_source("snap", "k", second) == 2
    assert [r["v"] for r in store.rows_for("snap", 1)] == ["a"]
    assert store.rows_for("snap", 2) == []
    assert [r["v"] for r in store.rows_for("snap", 3)] == ["c2"]
    assert [r["v"] for r in store.rows_for("snap", 4)] == ["d"]
    assert [(k, seq) for k, seq, _, _ in store.dump("snap")] == [("1", 1), ("3", 2), ("4", 3)]


def test_clear_and_meta(store: OnlineStore) -> None:
    store.write_rows("src", "k", [row(1), row(2, key=2)], ts_column="ts")
    store.write_rows("keep", "k", [row(1)], ts_column="ts")
    store.set_watermark("src", 2)
    store.set_meta("materialized:src", "x")
    assert store.meta("materialized:src") == "x" and store.meta("nothing") is None
    assert store.clear("src") == 2
    assert store.dump("src") == [] and store.watermark("src") is None
    assert len(store.dump("keep")) == 1
    assert store.ping()


def test_dump_lists_time_index(store: OnlineStore) -> None:
    t = dt.datetime(2026, 5, 6, 7, 8, 9, 10)
    store.write_rows("src", "k", [row(1, ts=t)], ts_column="ts")
    ((key, seq, ts_us, payload),) = store.dump("src")
    assert (key, seq) == ("1", 1)
    assert ts_us == int((t - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    assert decode_row(payload)["ts"] == t


def test_sqlite_file_is_wal_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    s = SqliteStore(path)
    s.write_rows("src", "k", [row(1)], ts_column="ts")
    s.set_watermark("src", 1)
    s.close()
    assert not s.ping()
    import sqlite3

    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = SqliteStore(path)
    assert again.watermark("src") == 1 and len(again.rows_for("src", 1)) == 1
    again.close()


_WRITER = textwrap.dedent("""
    import datetime as dt, sys
    from pathlib import Path
    from mlspec.runtime.online.store import SqliteStore
    s = SqliteStore(Path(sys.argv[1]))
    seq = 0
    for batch in range(int(sys.argv[2])):
        rows = []
        for k in range(20):
            for _ in range(10):
                seq += 1
                rows.append({"__seq": seq, "k": k, "ts": dt.datetime(2026, 1, 1) + dt.timedelta(seconds=seq),
                             "batch": batch})
        s.write_rows("src", "k", rows, ts_column="ts")
        s.set_watermark("src", seq)
    s.close()
""")


def test_sqlite_reader_in_one_process_while_another_writes(tmp_path: Path) -> None:
    """WAL: the reader never waits on or fails because of the writer, and sees whole batches only."""
    path = tmp_path / "online.sqlite"
    reader = SqliteStore(path)
    batches = 60
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(batches)])
    seen: list[int] = []
    try:
        while writer.poll() is None:
            rows = reader.rows_for("src", 3)
            assert len(rows) % 10 == 0  # a batch writes 10 rows per key in one transaction
            assert [r["__seq"] for r in rows] == sorted(r["__seq"] for r in rows)
            seen.append(len(rows))
            time.sleep(0.001)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert seen == sorted(seen)  # never goes back
    assert any(0 < n < 10 * batches for n in seen), "the reader should have seen the writer mid-way"
    assert len(reader.rows_for("src", 3)) == 10 * batches
    assert reader.watermark("src") == 200 * batches
    reader.close()


def test_open_store_embedded_by_default(tmp_path: Path) -> None:
    (tmp_path / "p.mlspec").write_text("project p {}\n")
    s = open_store(compile_spec(tmp_path / "p.mlspec"), tmp_path)
    assert isinstance(s, SqliteStore) and s.path == tmp_path / ".mlspec" / "online.sqlite"
    s.close()


def test_open_store_redis_from_env_url(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL is an env() reference: read when the store opens, never in the IR or any output."""
    (tmp_path / "p.mlspec").write_text('project p { online_store = redis(env("MLSPEC_TEST_REDIS")) }\n')
    spec = compile_spec(tmp_path / "p.mlspec")
    assert redis_url not in repr(spec)
    monkeypatch.delenv("MLSPEC_TEST_REDIS", raising=False)
    with pytest.raises(RunError, match="MLSPEC_TEST_REDIS is not set"):
        open_store(spec, tmp_path)
    monkeypatch.setenv("MLSPEC_TEST_REDIS", redis_url)
    s = open_store(spec, tmp_path)
    assert isinstance(s, RedisStore) and s.ping()
    s.write_rows("src", "k", [row(1)], ts_column="ts")
    assert len(s.rows_for("src", 1)) == 1
    s.close()
    assert not (tmp_path / ".mlspec" / "online.sqlite").exists()


def test_redis_literal_url_and_unreachable_server(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "p.mlspec").write_text(f'project p {{ online_store = redis("{redis_url}") }}\n')
    s = open_store(compile_spec(tmp_path / "p.mlspec"), tmp_path)
    assert s.ping()
    s.close()
    with pytest.raises(RunError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0") as err:
        RedisStore("redis://user:secret@127.0.0.1:1/0", "p", timeout_s=0.5)
    assert "secret" not in err.value.render()


def test_redis_layout(redis_url: str) -> None:
    """The documented keys: P:e:{key} sorted by __seq, P:t by time, P:w the watermark."""
    import redis

    s = RedisStore(redis_url, "proj")
    s.write_rows("orders", "k", [row(5, key=9), row(6, key=9)], ts_column="ts")
    s.set_watermark("orders", 6)
    r: Any = redis.Redis.from_url(redis_url)
    assert sorted(r.keys("mlspec:proj:*")) == [b"mlspec:proj:meta:layout", b"mlspec:proj:orders:e:9",
                                               b"mlspec:proj:orders:t", b"mlspec:proj:orders:w",
                                               b"mlspec:proj:version"]
    assert r.get("mlspec:proj:version") == b"1"  # one write that changed rows
    assert [int(score) for _, score in r.zrange("mlspec:proj:orders:e:9", 0, -1, withscores=True)] == [5, 6]
    assert r.zrange("mlspec:proj:orders:t", 0, -1) == [b"5:9", b"6:9"]
    assert r.get("mlspec:proj:orders:w") == b"6"
    r.close()
    s.close()


def _other_writer(store: OnlineStore, redis_url: str | None) -> OnlineStore:
    """A second handle on the same store, as another process (materialize) would hold."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert redis_url is not None
    return RedisStore(redis_url, "test")


def test_version_moves_on_every_change_of_rows_by_any_writer(store: OnlineStore, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    """Serving caches rows under `version()`: every way rows change must move it, whoever writes."""
    url = request.getfixturevalue("redis_url") if isinstance(store, RedisStore) else None
    other = _other_writer(store, url)
    try:
        seen = [store.version()]

        def moved() -> bool:
            now = store.version()
            fresh = now not in seen
            seen.append(now)
            return fresh

        other.write_rows("src", "k", [row(1), row(2)], ts_column="ts")
        assert moved()
        assert store.version() == seen[-1]  # stable while nothing changes
        other.write_rows("src", "k", [row(1), row(2)], ts_column="ts")  # idempotent: nothing new
        store.write_rows("src", "k", [row(3)], ts_column="ts")
        assert moved()
        other.prune("src", dt.datetime(2026, 1, 4))
        assert moved()
        assert other.prune("src", dt.datetime(2026, 1, 4)) == 0
        assert store.version() == seen[-1]  # nothing dropped: cached rows stay valid
        other.replace_source("snap", "k", [row(10, key=5)], ts_column="ts")
        assert moved()
        store.clear("src")
        assert moved()
    finally:
        other.close()


def test_a_tracked_write_gives_the_versions_either_side(store: OnlineStore, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """`before` is the version a reader saw just before this write, `after` the one it sees just after;
    with another writer in between, `before` is not what the reader saw."""
    store.write_rows("src", "k", [row(1)], ts_column="ts")
    seen = store.version()
    done = store.write_rows_tracked("src", "k", [row(2), row(3, key=2)], ts_column="ts")
    assert (done.written, done.before, done.after) == (2, seen, store.version()) and done.before != done.after
    again = store.write_rows_tracked("src", "k", [row(2)], ts_column="ts")  # already stored
    assert again.written == 0 and again.before == again.after == store.version()
    url = request.getfixturevalue("redis_url") if isinstance(store, RedisStore) else None
    other = _other_writer(store, url)
    try:
        seen = store.version()
        other.write_rows("src", "k", [row(4)], ts_column="ts")
        done = store.write_rows_tracked("src", "k", [row(5)], ts_column="ts")
        assert done.written == 1 and done.before != seen and done.after == store.version()
    finally:
        other.close()
