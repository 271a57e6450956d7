"""The online store: each entity's recent source rows, kept where a server can read them fast.

Two backends behind one protocol. The embedded default is one SQLite file in WAL mode at
PROJECT/.mlspec/online.sqlite, so a fresh machine needs no server, and `mlspec serve` can read
while `mlspec materialize` writes from another process. Redis is used when the spec says
`online_store = redis("redis://...")` (or `redis(env("NAME"))`, read at open time and never
written anywhere).

Rows are stored whole, as the warehouse holds them, and serialized losslessly (see
`encode_row`): the online evaluator then computes exactly what the batch engines compute.

SQLite layout (file PROJECT/.mlspec/online.sqlite)::

    online_rows(source, key, seq, ts, payload)   PRIMARY KEY (source, key, seq), UNIQUE (source, seq)
                                                 ts = the row's time in epoch microseconds (NULL: none)
    online_watermarks(source, seq)               highest __seq materialized per source
    online_meta(name, value)                     layout version; what each source was materialized for

Redis layout (prefix P = "mlspec:{project}:{source}")::

    P:e:{key}   sorted set: member = payload (the row, with its __seq), score = __seq
    P:t         sorted set: member = "{seq}:{key}", score = the row's time in epoch microseconds
                (rows with a time only; lets `prune` find old rows without reading payloads)
    P:w         string: the watermark (highest __seq materialized)
    mlspec:{project}:version       counter: incremented by every write that changes rows
    mlspec:{project}:meta:{name}   string: the same metadata as online_meta

`key` is the entity key as text (`key_text`): ints in decimal, strings as they are, dates and
timestamps in ISO form. A key column has one type, so texts never collide within a source.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from mlspec.ir.spec import SecretRef, Spec
from mlspec.runtime.errors import RunError
from mlspec.runtime.warehouse import STATE_DIR

LAYOUT_VERSION = "1"
SQLITE_FILE = "online.sqlite"
_EPOCH = dt.datetime(1970, 1, 1)
_NODE = "online store"

Row = dict[str, Any]


# ---- rows as text, losslessly -----------------------------------------------------------------


def _encode_value(v: Any) -> Any:
    t = type(v)
    if t is str or t is int or v is None or t is bool:
        return v
    if t is float:
        return v if math.isfinite(v) else {"$float": repr(v)}
    if isinstance(v, dt.datetime):  # before date: a datetime is a date
        return {"$ts": v.isoformat()}
    if isinstance(v, dt.date):
        return {"$date": v.isoformat()}
    if isinstance(v, int | float | str):  # subclasses (numpy scalars, enums) as their plain value
        return _encode_value(int(v) if isinstance(v, int) else float(v) if isinstance(v, float) else str(v))
    raise TypeError(f"the online store cannot hold a {type(v).__name__} value ({v!r})")


# Stateless and configured once: building an encoder per row costs more than encoding the row.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _decode_tag(d: dict[str, Any]) -> Any:
    if len(d) == 1:
        tag, value = next(iter(d.items()))
        if tag == "$ts":
            return dt.datetime.fromisoformat(value)
        if tag == "$date":
            return dt.date.fromisoformat(value)
        if tag == "$float":
            return float(value)
    return d


def encode_row(row: Row) -> str:
    """A row as canonical JSON (sorted keys): ints, finite floats (shortest round-trip repr),
    strings, bools and null as JSON; dates, timestamps and non-finite floats as one-key
    tagged objects ({"$date": ...}, {"$ts": ...}, {"$float": "nan"}). Equal rows give equal
    text, which makes writes idempotent and stores comparable."""
    return _ENCODER.encode({k: _encode_value(v) for k, v in row.items()})


def decode_row(payload: str | bytes) -> Row:
    out: Row = json.loads(payload, object_hook=_decode_tag)
    return out


def decode_rows(payloads: Sequence[str | bytes]) -> list[Row]:
    """Decode many payloads in one parse (one `json.loads` of a list is much cheaper than many)."""
    if not payloads:
        return []
    if isinstance(payloads[0], bytes):
        text: str | bytes = b"[" + b",".join(p for p in payloads if isinstance(p, bytes)) + b"]"
    else:
        text = "[" + ",".join(p for p in payloads if isinstance(p, str)) + "]"
    out: list[Row] = json.loads(text, object_hook=_decode_tag)
    return out


def key_text(key: object) -> str:
    """The entity key as stored: one text per value (so 42 and "42" find the same entity)."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, dt.date):
        return key.isoformat()
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def epoch_us(v: object) -> int | None:
    """A row time as epoch microseconds, for pruning (dates are their midnight UTC)."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        t = v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    elif isinstance(v, dt.date):
        t = dt.datetime(v.year, v.month, v.day)
    else:
        raise TypeError(f"a row time must be a date or timestamp, not {type(v).__name__}")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _prepared(key_column: str, rows: Iterable[Row], ts_column: str | None) -> list[tuple[str, int, int | None, str]]:
    out = []
    for r in rows:
        key = r.get(key_column)
        if key is None:
            continue  # a row without an entity key belongs to no entity; batch joins never match it
        ts = epoch_us(r.get(ts_column)) if ts_column else None
        out.append((key_text(key), int(r["__seq"]), ts, encode_row(r)))
    return out


# ---- the protocol ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedWrite:
    """What `write_rows_tracked` did: rows newly written, and the versions either side of it."""

    written: int
    before: object = None
    after: object = None


@runtime_checkable
class OnlineStore(Protocol):
    """What serving and materialization need of an online store, whatever the backend."""

    def write_rows(self, source: str, key_column: str, rows: list[Row], ts_column: str | None = None) -> int:
        """Store rows (each carrying __seq); idempotent by (source, __seq); returns rows newly written.
        `ts_column` names the row time, which `prune` needs."""
        ...

    def write_rows_tracked(self, source: str, key_column: str, rows: list[Row],
                           ts_column: str | None = None) -> TrackedWrite:
        """`write_rows`, also giving the store's version just before and just after the write when no
        other write came between them (else both None): a reader holding rows read at `before` can
        apply these rows itself and move to `after` instead of reading everything again."""
        ...

    def rows_for(self, source: str, key: object) -> list[Row]:
        """Every stored row of one entity key, typed as in the warehouse, ordered by __seq."""
        ...

    def watermark(self, source: str) -> int | None:
        """The highest __seq materialized, or None before the first materialization."""
        ...

    def version(self) -> object:
        """A token that changes whenever stored rows may have changed, by this process or another.
        Readers may keep rows read after asking for it until it changes (serving caches them)."""
        ...

    def set_watermark(self, source: str, seq: int) -> None: ...

    def prune(self, source: str, older_than: dt.datetime) -> int:
        """Drop rows whose time is before `older_than`, except each key's latest such row (which
        a row feature still reads as of any later time). Returns the rows dropped."""
        ...

    def replace_source(self, source: str, key_column: str, rows: list[Row], ts_column: str | None = None) -> int:
        """Make `rows` the whole content of `source` (snapshot sources are reloaded whole, and
        their __seq restart). Returns rows newly written; unchanged rows are left in place."""
        ...

    def clear(self, source: str) -> int:
        """Forget a source: rows and watermark. Returns rows dropped."""
        ...

    def dump(self, source: str) -> list[tuple[str, int, int | None, str]]:
        """(key, seq, ts_us, payload) of every stored row, by seq: for tests and debugging."""
        ...

    def meta(self, name: str) -> str | None: ...

    def set_meta(self, name: str, value: str) -> None: ...

    def ping(self) -> bool:
        """True when the store answers (readiness probes)."""
        ...

    def close(self) -> None: ...


# ---- SQLite (embedded default) -----------------------------------------------------------------

_SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS online_rows (source TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, "
    "ts INTEGER, payload TEXT NOT NULL, PRIMARY KEY (source, key, seq)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS online_rows_seq ON online_rows (source, seq)",
    "CREATE INDEX IF NOT EXISTS online_rows_ts ON online_rows (source, ts)",
    "CREATE TABLE IF NOT EXISTS online_watermarks (source TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS online_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class SqliteStore:
    """One SQLite file in WAL mode: readers never block the writer and see only committed batches.

    One connection per store object, guarded by a lock, so a threaded server can share it.
    """

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._tx() as c:
            for ddl in _SQLITE_DDL:
                c.execute(ddl)
            c.execute("INSERT OR IGNORE INTO online_meta VALUES ('layout', ?)", [LAYOUT_VERSION])

    def _tx(self) -> _Tx:
        return _Tx(self._conn, self._lock)

    def write_rows(self, source: str, key_column: str, rows: list[Row], ts_column: str | None = None) -> int:
        return self.write_rows_tracked(source, key_column, rows, ts_column).written

    def write_rows_tracked(self, source: str, key_column: str, rows: list[Row],
                           ts_column: str | None = None) -> TrackedWrite:
        data = [(source, k, seq, ts, payload) for k, seq, ts, payload in _prepared(key_column, rows, ts_column)]
        with self._tx() as c:
            # Inside the write lock no other connection commits: the version read here is the one
            # just before this write, and committing it moves only this connection's changes.
            (data_version,) = c.execute("PRAGMA data_version").fetchone()
            before = self._conn.total_changes
            c.executemany("INSERT OR IGNORE INTO online_rows VALUES (?, ?, ?, ?, ?)", data)
            written = self._conn.total_changes - before
        return TrackedWrite(written, (data_version, before), (data_version, before + written))

    def rows_for(self, source: str, key: object) -> list[Row]:
        with self._lock:
            found = self._conn.execute("SELECT payload FROM online_rows WHERE source = ? AND key = ? ORDER BY seq",
                                       [source, key_text(key)]).fetchall()
        return decode_rows([p for (p,) in found])

    def watermark(self, source: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT seq FROM online_watermarks WHERE source = ?", [source]).fetchone()
        return int(row[0]) if row else None

    def version(self) -> object:
        # data_version moves on commits by other connections (other processes too, in WAL mode);
        # total_changes counts this connection's own writes.
        with self._lock:
            (data_version,) = self._conn.execute("PRAGMA data_version").fetchone()
            return data_version, self._conn.total_changes

    def set_watermark(self, source: str, seq: int) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO online_watermarks VALUES (?, ?)", [source, int(seq)])

    def prune(self, source: str, older_than: dt.datetime) -> int:
        bound = epoch_us(older_than)
        with self._tx() as c:
            before = self._conn.total_changes
            c.execute("DELETE FROM online_rows WHERE source = ? AND ts < ? AND (key, seq) NOT IN ("
                      "SELECT key, seq FROM (SELECT key, seq, row_number() OVER (PARTITION BY key "
                      "ORDER BY ts DESC, seq DESC) AS rn FROM online_rows WHERE source = ? AND ts < ?) WHERE rn = 1)",
                      [source, bound, source, bound])
            return self._conn.total_changes - before

    def replace_source(self, source: str, key_column: str, rows: list[Row], ts_column: str | None = None) -> int:
        wanted = {(k, seq, ts, payload) for k, seq, ts, payload in _prepared(key_column, rows, ts_column)}
        with self._tx() as c:
            have = set(c.execute("SELECT key, seq, ts, payload FROM online_rows WHERE source = ?", [source]))
            c.executemany("DELETE FROM online_rows WHERE source = ? AND seq = ?",
                          [(source, seq) for _, seq, _, _ in have - wanted])
            new = sorted(wanted - have, key=lambda r: r[1])
            c.executemany("INSERT INTO online_rows VALUES (?, ?, ?, ?, ?)", [(source, *r) for r in new])
            return len(new)

    def clear(self, source: str) -> int:
        with self._tx() as c:
            before = self._conn.total_changes
            c.execute("DELETE FROM online_rows WHERE source = ?", [source])
            dropped = self._conn.total_changes - before
            c.execute("DELETE FROM online_watermarks WHERE source = ?", [source])
            return dropped

    def dump(self, source: str) -> list[tuple[str, int, int | None, str]]:
        with self._lock:
            found = self._conn.execute("SELECT key, seq, ts, payload FROM online_rows WHERE source = ? ORDER BY seq",
                                       [source]).fetchall()
        return [(str(k), int(seq), None if ts is None else int(ts), str(p)) for k, seq, ts, p in found]

    def meta(self, name: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM online_meta WHERE name = ?", [name]).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO online_meta VALUES (?, ?)", [name, value])

    def ping(self) -> bool:
        try:
            with self._lock:
                self._conn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


class _Tx:
    """`BEGIN IMMEDIATE` … `COMMIT` under the store's lock; rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.lock.release()


# ---- Redis -----------------------------------------------------------------------------------

# KEYS = [ts index, version, entity key 1, entity key 2, ...]; ARGV = [key text, seq, ts or "", payload]
# per row. Checking the seq before adding makes a write idempotent by (source, __seq), atomically.
_WRITE_LUA = """
local n = 0
for i = 3, #KEYS do
  local a = (i - 3) * 4
  local seq = ARGV[a + 2]
  if redis.call('ZCOUNT', KEYS[i], seq, seq) == 0 then
    redis.call('ZADD', KEYS[i], seq, ARGV[a + 4])
    if ARGV[a + 3] ~= '' then
      redis.call('ZADD', KEYS[1], ARGV[a + 3], seq .. ':' .. ARGV[a + 1])
    end
    n = n + 1
  end
end
local version = redis.call('GET', KEYS[2])
if n > 0 then
  version = redis.call('INCR', KEYS[2])
end
return {n, version}
"""

_BATCH = 500


class RedisStore:
    """Redis sorted sets per entity (see the module docstring for the keys)."""

    def __init__(self, url: str, project: str, timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError:
            raise RunError(_NODE, "the spec keeps its online store in Redis, but the `redis` package is not "
                           "installed", "pip install redis") from None
        self.project = project
        self._where = redact_url(url)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        try:
            self._r: Any = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        except ValueError:  # the message would repeat the URL, which may carry a password
            raise RunError(_NODE, f"the Redis URL is not valid (read as {self._where})",
                           "write it as redis://[:password@]host:port/db") from None
        self._write = self._r.register_script(_WRITE_LUA)
        try:
            self._r.setnx(f"mlspec:{project}:meta:layout", LAYOUT_VERSION)
        except redis.RedisError as e:
            raise RunError(_NODE, f"cannot reach Redis at {self._where}: {e}",
                           "start redis-server, or check the URL in `online_store`") from None

    def _p(self, source: str) -> str:
        return f"mlspec:{self.project}:{source}"

    def _version_key(self) -> str:
        return f"mlspec:{self.project}:version"

    def write_rows(self, source: str, key_column: str, rows: list[Row], ts_column: str | None = None) -> int:
        return self.write_rows_tracked(source, key_column, rows, ts_column).written

    def write_rows_tracked(self, source: str, key_column: str, rows: list[Row],
                           ts_column: str | None = None) -> TrackedWrite:
        prepared = _prepared(key_column, rows, ts_column)
        p, written = self._p(source), 0
        first: int | None = None
        last: int | None = None
        adjacent = True
        for i in range(0, len(prepared), _BATCH):
            chunk = prepared[i:i + _BATCH]
            keys = [f"{p}:t", self._version_key(), *(f"{p}:e:{k}" for k, _, _, _ in chunk)]
            args: list[str | int] = []
            for k, seq, ts, payload in chunk:
                args.extend((k, seq, "" if ts is None else ts, payload))
            n, version = self._write(keys=keys, args=args)
            after = int(version) if version is not None else None
            before = after - 1 if n and after is not None else after
            # Each chunk is atomic; another writer may come between two of them.
            adjacent = adjacent and (i == 0 or before == last)
            first = before if i == 0 else first
            last, written = after, written + int(n)
        if not adjacent or not prepared:
            return TrackedWrite(written)
        return TrackedWrite(written, first, last)

    def rows_for(self, source: str, key: object) -> list[Row]:
        return decode_rows(self._r.zrange(f"{self._p(source)}:e:{key_text(key)}", 0, -1))

    def watermark(self, source: str) -> int | None:
        v = self._r.get(f"{self._p(source)}:w")
        return int(v) if v is not None else None

    def set_watermark(self, source: str, seq: int) -> None:
        self._r.set(f"{self._p(source)}:w", int(seq))

    def version(self) -> object:
        v = self._r.get(self._version_key())  # the write counter; None before the first write
        return int(v) if v is not None else None

    def prune(self, source: str, older_than: dt.datetime) -> int:
        p = self._p(source)
        bound = epoch_us(older_than)
        old: dict[str, list[tuple[float, int, bytes]]] = {}
        for member, ts in self._r.zrangebyscore(f"{p}:t", "-inf", f"({bound}", withscores=True):
            seq, key = member.split(b":", 1)
            old.setdefault(key.decode(), []).append((ts, int(seq), member))
        dropped = 0
        pipe = self._r.pipeline(transaction=True)
        for key, entries in old.items():
            entries.sort()
            for _, seq, member in entries[:-1]:  # keep the key's latest row before the bound
                pipe.zremrangebyscore(f"{p}:e:{key}", seq, seq)
                pipe.zrem(f"{p}:t", member)
                dropped += 1
        if dropped:  # readers' caches stay valid when nothing changed
            pipe.incr(self._version_key())
        pipe.execute()
        return dropped

    def replace_source(self, source: str, key_column: str, rows: list[Row], ts_column: str | None = None) -> int:
        p = self._p(source)
        wanted: dict[str, dict[bytes, tuple[int, int | None]]] = {}
        for k, seq, ts, payload in _prepared(key_column, rows, ts_column):
            wanted.setdefault(k, {})[payload.encode()] = (seq, ts)
        existing = {key.decode()[len(p) + 3:] for key in self._r.scan_iter(match=f"{p}:e:*", count=1000)}
        written = 0
        pipe = self._r.pipeline(transaction=True)
        for k in existing - wanted.keys():
            pipe.delete(f"{p}:e:{k}")
        for k, members in wanted.items():
            have = set(self._r.zrange(f"{p}:e:{k}", 0, -1)) if k in existing else set()
            if have == set(members):
                continue
            pipe.delete(f"{p}:e:{k}")
            pipe.zadd(f"{p}:e:{k}", {m: seq for m, (seq, _) in members.items()})
            written += len(set(members) - have)
        pipe.delete(f"{p}:t")
        index = {f"{seq}:{k}": ts for k, members in wanted.items() for seq, ts in members.values() if ts is not None}
        if index:
            pipe.zadd(f"{p}:t", index)
        pipe.incr(self._version_key())
        pipe.execute()
        return written

    def clear(self, source: str) -> int:
        p = self._p(source)
        dropped = 0
        keys = list(self._r.scan_iter(match=f"{p}:e:*", count=1000))
        for i in range(0, len(keys), _BATCH):
            chunk = keys[i:i + _BATCH]
            pipe = self._r.pipeline(transaction=False)
            for k in chunk:
                pipe.zcard(k)
            dropped += sum(int(n) for n in pipe.execute())
            self._r.delete(*chunk)
        self._r.delete(f"{p}:t", f"{p}:w")
        if dropped:
            self._r.incr(self._version_key())
        return dropped

    def dump(self, source: str) -> list[tuple[str, int, int | None, str]]:
        p = self._p(source)
        ts_of = {m.decode(): int(s) for m, s in self._r.zrange(f"{p}:t", 0, -1, withscores=True)}
        out = []
        for key in self._r.scan_iter(match=f"{p}:e:*", count=1000):
            k = key.decode()[len(p) + 3:]
            for member, seq in self._r.zrange(key, 0, -1, withscores=True):
                out.append((k, int(seq), ts_of.get(f"{int(seq)}:{k}"), member.decode()))
        return sorted(out, key=lambda r: r[1])

    def meta(self, name: str) -> str | None:
        v = self._r.get(f"mlspec:{self.project}:meta:{name}")
        return v.decode() if v is not None else None

    def set_meta(self, name: str, value: str) -> None:
        self._r.set(f"mlspec:{self.project}:meta:{name}", value)

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except self._errors:
            return False

    def close(self) -> None:
        self._r.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, project={self.project!r})"


def redact_url(url: str) -> str:
    """scheme://host:port/db of a Redis URL, never its credentials (they may come from a secret)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number: say so without repeating the URL
        return "(unparsable URL)"
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"


# ---- opening the store a spec asks for -----------------------------------------------------------


def redis_url(spec: Spec) -> str:
    """The Redis URL of the spec; an env() reference is read now, from the environment."""
    ref = spec.project.online_store_url
    if isinstance(ref, SecretRef):
        value = os.environ.get(ref.env)
        if not value:
            raise RunError(_NODE, f"environment variable {ref.env} is not set (the spec's online_store reads the "
                           "Redis URL from it)", f"export {ref.env}=redis://HOST:6379/0")
        return value
    if not ref:
        raise RunError(_NODE, "online_store = redis(...) needs a URL", 'write redis("redis://HOST:6379/0")')
    return ref


def open_store(spec: Spec, root: Path) -> OnlineStore:
    """The spec's online store: embedded SQLite under root/.mlspec, or Redis when configured."""
    if spec.project.online_store == "redis":
        return RedisStore(redis_url(spec), spec.project.name)
    return SqliteStore(root / STATE_DIR / SQLITE_FILE)
