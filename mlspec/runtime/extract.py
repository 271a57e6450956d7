"""Extraction: a declared source -> validated rows in the warehouse, incrementally.

The schema is checked on read (a missing or renamed column or a changed type stops the run);
rows that break a declared constraint go to quarantine with their reason. Every batch is
one transaction, so a process killed mid-way leaves the previous state, and
rows read = rows loaded + rows quarantined, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlspec.diagnostics import did_you_mean
from mlspec.ir.spec import ColumnDef, Source
from mlspec.ir.types import DType
from mlspec.runtime.engines.sql import SQL_TYPES, ident, literal, string_literal
from mlspec.runtime.errors import RunError
from mlspec.runtime.warehouse import Warehouse

_FAMILIES: dict[DType, tuple[str, ...]] = {
    DType.INT: ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
                "HUGEINT"),
    DType.FLOAT: ("FLOAT", "DOUBLE", "DECIMAL", "REAL", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT",
                  "USMALLINT", "UINTEGER", "UBIGINT", "HUGEINT"),
    DType.BOOL: ("BOOLEAN",),
    DType.STRING: ("VARCHAR", "ENUM"),
    DType.DATE: ("DATE",),
    DType.TIMESTAMP: ("TIMESTAMP", "DATE"),
}


@dataclass(frozen=True)
class ExtractStats:
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_total: int
    watermark: str | None
    incremental: bool


def _reader(source: Source, root: Path) -> str:
    path = root / source.path
    if not path.exists():
        raise RunError(f"source:{source.name}", f"file {source.path} does not exist (looked in {root})",
                       "check `path` in the spec, or run `mlspec demo churn DIR` for example data")
    quoted = string_literal(str(path))
    if source.format == "parquet":
        return f"read_parquet({quoted})"
    if source.format == "csv":
        return f"read_csv({quoted}, header = true, all_varchar = true)"
    return f"{ident('src_db_' + source.name)}.{ident(source.table or '')}"


def _family(type_name: str) -> str:
    base = type_name.split("(")[0].strip()
    return "TIMESTAMP" if base.startswith("TIMESTAMP") else base


def _validate_columns(wh: Warehouse, source: Source, reader: str) -> dict[str, str]:
    found = {row[0]: row[1] for row in wh.conn.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()}
    node = f"source:{source.name}"
    for col in source.columns:
        if col.name not in found:
            hint = did_you_mean(col.name, found) or "found columns: " + ", ".join(found)
            raise RunError(node, f"column `{col.name}` ({col.type_name}) is missing from {source.path}",
                           hint.replace("did you mean", "was it renamed? the file has") if "did you" in hint else hint)
        if source.format == "csv":
            continue
        actual = _family(found[col.name])
        if actual not in _FAMILIES[col.dtype]:
            raise RunError(node, f"column `{col.name}` is {found[col.name]} in {source.path}, "
                           f"but the schema declares {col.type_name}",
                           "fix the data, or change the column's type in the schema")
    return found


def _typed(col: ColumnDef, actual: str, csv: bool) -> str:
    name = ident(col.name)
    target = SQL_TYPES[col.dtype]
    if csv:
        value = f"TRY_CAST({name} AS {target})"
    elif col.dtype is DType.TIMESTAMP and "WITH TIME ZONE" in actual.upper():
        value = f"CAST(timezone('UTC', {name}) AS TIMESTAMP)"
    else:
        value = f"CAST({name} AS {target})"
    if col.dtype is DType.FLOAT:
        value = f"(CASE WHEN isfinite({value}) THEN {value} END)"
    return value


def _reasons(source: Source, csv: bool) -> list[str]:
    """One SQL expression per constraint, giving a reason string when the row breaks it."""
    out = []
    for col in source.columns:
        c = ident(col.name)
        if csv:
            out.append(f"CASE WHEN __raw_{col.name} IS NOT NULL AND __raw_{col.name} <> '' AND {c} IS NULL THEN "
                       f"'{col.name} = ' || __raw_{col.name} || ' is not a {col.type_name}' END")
        if col.not_null or col.name in (source.timestamp, source.key):
            out.append(f"CASE WHEN {c} IS NULL THEN '{col.name} is null' END")
        if col.allowed is not None:
            values = ", ".join(literal(v, col.dtype) for v in col.allowed)
            shown = ", ".join(str(v) for v in col.allowed).replace("'", "''")
            out.append(f"CASE WHEN {c} NOT IN ({values}) THEN '{col.name} = ' || CAST({c} AS VARCHAR) || "
                       f"' is not one of ({shown})' END")
        if col.value_range is not None:
            lo, hi = col.value_range
            out.append(f"CASE WHEN {c} < {lo!r} OR {c} > {hi!r} THEN '{col.name} = ' || CAST({c} AS VARCHAR) || "
                       f"' is outside [{lo:g}, {hi:g}]' END")
        if col.unique or col.name == source.key:
            out.append(f"CASE WHEN {c} IS NOT NULL AND (__dup_{col.name} > 1 OR __exists_{col.name}) THEN "
                       f"'duplicate {col.name} = ' || CAST({c} AS VARCHAR) END")
    return out


def extract(wh: Warehouse, source: Source, run_id: str) -> ExtractStats:
    """Load the rows of `source` that are new since the last watermark; quarantine the bad ones."""
    conn = wh.conn
    if source.format == "duckdb":
        db = string_literal(str(wh.root / source.path))
        alias = ident("src_db_" + source.name)
        attached = {r[0] for r in conn.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        if "src_db_" + source.name not in attached:
            if not (wh.root / source.path).exists():
                raise RunError(f"source:{source.name}", f"database file {source.path} does not exist")
            conn.execute(f"ATTACH {db} AS {alias} (READ_ONLY)")
    reader = _reader(source, wh.root)
    csv = source.format == "csv"
    found = _validate_columns(wh, source, reader)
    table = f"src__{source.name}"
    incremental = source.timestamp is not None
    rows = conn.execute("SELECT watermark, max_seq FROM _mlspec_watermarks WHERE source = ?", [source.name]).fetchall()
    row = rows[0] if rows else None
    watermark, max_seq = (row[0], row[1]) if row and incremental else (None, 0)
    if not incremental:
        max_seq = 0  # snapshot sources are reloaded whole each run
    unique_cols = [c for c in source.columns if c.unique or c.name == source.key]
    exists_target = wh.exists(table) and incremental
    typed = ", ".join(f"{_typed(c, found[c.name], csv)} AS {ident(c.name)}" for c in source.columns)
    raw = ", ".join(f"{ident(c.name)} AS __raw_{c.name}" for c in source.columns) if csv else ""
    ts = ident(source.timestamp) if source.timestamp else None
    where = f"WHERE {ts} > {literal(str(watermark), DType.TIMESTAMP)} OR {ts} IS NULL" if watermark and ts else ""
    staged = (f"SELECT *, CAST({max_seq or 0} + row_number() OVER () AS BIGINT) AS __seq FROM "
              f"(SELECT {typed}{', ' + raw if raw else ''} FROM {reader}) {where}")
    dup_cols = ", ".join(
        f"count({ident(c.name)}) OVER (PARTITION BY {ident(c.name)} ORDER BY __seq ROWS UNBOUNDED PRECEDING) "
        f"AS __dup_{c.name}, "
        + (f"{ident(c.name)} IN (SELECT {ident(c.name)} FROM {ident(table)})" if exists_target else "FALSE")
        + f" AS __exists_{c.name}"
        for c in unique_cols)
    reasons = _reasons(source, csv)
    reason_sql = f"concat_ws('; ', {', '.join(reasons)})" if reasons else "''"
    cols = ", ".join(ident(c.name) for c in source.columns)
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE __staged AS SELECT *, {reason_sql} AS __reason FROM "
                     f"(SELECT *{', ' + dup_cols if dup_cols else ''} FROM ({staged}))")
        read = wh.count("__staged")
        if not wh.exists(table) or not incremental:
            conn.execute(f"CREATE OR REPLACE TABLE {ident(table)} AS SELECT {cols}, __seq FROM __staged WHERE false")
        conn.execute(f"INSERT INTO {ident(table)} SELECT {cols}, __seq FROM __staged WHERE __reason = ''")
        key_sql = f"CAST({ident(source.key)} AS VARCHAR)" if source.key else "CAST(__seq AS VARCHAR)"
        conn.execute(f"INSERT INTO _mlspec_quarantine SELECT ?, ?, 'schema', {key_sql}, __reason, "
                     f"to_json(struct_pack({', '.join(f'{ident(c.name)} := {ident(c.name)}' for c in source.columns)})), "
                     "current_timestamp FROM __staged WHERE __reason <> ''", [run_id, f"source:{source.name}"])
        quarantined = int(wh.scalar("SELECT count(*) FROM __staged WHERE __reason <> ''"))
        loaded = read - quarantined
        new_mark = wh.scalar(f"SELECT max({ts}) FROM __staged") if ts else None
        if incremental and (new_mark is not None or row is None):
            conn.execute("INSERT OR REPLACE INTO _mlspec_watermarks VALUES (?, ?, ?, current_timestamp)",
                         [source.name, new_mark or watermark, int(wh.scalar("SELECT max(__seq) FROM __staged")
                                                                   or max_seq or 0)])
        conn.execute("DROP TABLE __staged")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    mark = wh.scalar("SELECT watermark FROM _mlspec_watermarks WHERE source = ?", [source.name])
    return ExtractStats(read, loaded, quarantined, wh.count(table), str(mark) if mark else None,
                        incremental and watermark is not None)
