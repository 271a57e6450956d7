"""The embedded warehouse: one DuckDB file under PROJECT/.mlspec plus mlspec's own tables.

Table names per node: src__<source>, chk__<check>, label__<label>, spine__<group>,
feat__<group>, dataset__<model>. System tables start with `_mlspec_`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from mlspec.runtime.engines.sql import ident

STATE_DIR = ".mlspec"

_SYSTEM_TABLES = (
    "CREATE TABLE IF NOT EXISTS _mlspec_quarantine (run_id VARCHAR, node VARCHAR, rule VARCHAR, row_key VARCHAR, "
    "reason VARCHAR, row_json VARCHAR, quarantined_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS _mlspec_watermarks (source VARCHAR PRIMARY KEY, watermark TIMESTAMP, "
    "max_seq BIGINT, updated_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS _mlspec_node_runs (run_id VARCHAR, node VARCHAR, status VARCHAR, "
    "started_at TIMESTAMP, seconds DOUBLE, detail VARCHAR)",
)


def table_for(node_id: str) -> str:
    """The warehouse table a node writes (kind:name -> kind-prefix__name)."""
    kind, name = node_id.split(":", 1)
    prefix = {"source": "src", "check": "chk", "label": "label", "features": "feat", "dataset": "dataset"}[kind]
    return f"{prefix}__{name}"


@dataclass
class Warehouse:
    """A connection to the project's DuckDB file; callers close it (or use `with`)."""

    root: Path
    conn: duckdb.DuckDBPyConnection

    @classmethod
    def open(cls, root: Path, read_only: bool = False) -> Warehouse:
        state = root / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(str(state / "warehouse.duckdb"), read_only=read_only)
        if not read_only:
            for ddl in _SYSTEM_TABLES:
                conn.execute(ddl)
        return cls(root, conn)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def exists(self, table: str) -> bool:
        row = self.conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()
        return bool(row and row[0][0])

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {ident(table)}") or 0)

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        rows = self.conn.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    def record_node(self, run_id: str, node: str, status: str, started: float, seconds: float,
                    detail: dict[str, Any]) -> None:
        self.conn.execute("INSERT INTO _mlspec_node_runs VALUES (?, ?, ?, to_timestamp(?), ?, ?)",
                          [run_id, node, status, started, seconds, json.dumps(detail, default=str, sort_keys=True)])

    def last_detail(self, node: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT detail FROM _mlspec_node_runs WHERE node = ? AND status = 'ok' "
                                "ORDER BY started_at DESC LIMIT 1", [node]).fetchall()
        return json.loads(row[0][0]) if row else None


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
