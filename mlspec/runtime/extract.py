"""Extraction: a declared source -> validated rows in the warehouse, incrementally.

The schema is checked on read (a missing or renamed column or a changed type stops the run);
rows that break a declared constraint go to quarantine with their reason. Every batch is
one transaction, so a process killed mid-way leaves the previous state, and
rows read = rows loaded + rows quarantined, exactly.
"""

from __future__ import annotations

import datetime as dt
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
        if col.references:
            target = ".".join(col.references)
            out.append(f"CASE WHEN {c} IS NOT NULL AND NOT __ref_{col.name} THEN '{col.name} = ' || "
                       f"CAST({c} AS VARCHAR) || ' has no match in {target}' END")
    return out


_BOUNDARY_DDL = ("CREATE TABLE IF NOT EXISTS _mlspec_boundary (source VARCHAR, kind VARCHAR, row_hash UBIGINT, "
                 "occ BIGINT)")


def _file_order(source: Source) -> str:
    """A column giving each row's position in the source, so __seq follows the file, every run."""
    return {"parquet": "file_row_number", "duckdb": "rowid"}.get(source.format, "__pos")


def extract(wh: Warehouse, source: Source, run_id: str) -> ExtractStats:
    """Load the rows of `source` that are new since the last watermark; quarantine the bad ones.

    Rows stamped exactly at the watermark (and rows without a time) are compared with the
    ones already seen there by content hash, so a late row at the boundary is never lost and
    an old one is never loaded twice.
    """
    conn = wh.conn
    node = f"source:{source.name}"
    if source.format == "duckdb":
        db = string_literal(str(wh.root / source.path))
        alias = ident("src_db_" + source.name)
        attached = {r[0] for r in conn.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        if "src_db_" + source.name not in attached:
            if not (wh.root / source.path).exists():
                raise RunError(node, f"database file {source.path} does not exist")
            conn.execute(f"ATTACH {db} AS {alias} (READ_ONLY)")
    reader = _reader(source, wh.root)
    csv = source.format == "csv"
    found = _validate_columns(wh, source, reader)
    for col in source.columns:
        if col.references and not wh.exists(f"src__{col.references[0]}"):
            raise RunError(node, f"`{col.name}` references source `{col.references[0]}`, which is not loaded yet",
                           f"run `mlspec run --until {node}`")
    conn.execute(_BOUNDARY_DDL)
    table = f"src__{source.name}"
    incremental = source.timestamp is not None
    rows = conn.execute("SELECT watermark, max_seq FROM _mlspec_watermarks WHERE source = ?", [source.name]).fetchall()
    row = rows[0] if rows and incremental else None
    watermark, max_seq = (row[0], int(row[1] or 0)) if row else (None, 0)
    exists_target = wh.exists(table) and incremental
    ts = ident(source.timestamp) if source.timestamp else None
    cols = ", ".join(ident(c.name) for c in source.columns)
    order = _file_order(source)
    if source.format == "parquet":
        reader = reader[:-1] + ", file_row_number = true)"
    scan = f"SELECT *, row_number() OVER () AS __pos FROM {reader}" if order == "__pos" else (
        f"SELECT *, {order} AS __pos FROM {reader}")
    typed = ", ".join(f"{_typed(c, found[c.name], csv)} AS {ident(c.name)}" for c in source.columns)
    raw = ", ".join(f"{ident(c.name)} AS __raw_{c.name}" for c in source.columns) if csv else ""
    hashed = (f"SELECT *, row_number() OVER (PARTITION BY __h ORDER BY __pos) AS __occ FROM "
              f"(SELECT *, hash(struct_pack({cols})) AS __h FROM "
              f"(SELECT {typed}{', ' + raw if raw else ''}, __pos FROM ({scan})))")
    boundary = f"({ts} IS NULL" + (f" OR {ts} = {literal(str(watermark), DType.TIMESTAMP)})" if watermark else ")")
    if watermark is not None and ts:
        where = (f"WHERE ({ts} > {literal(str(watermark), DType.TIMESTAMP)} OR {boundary}) AND NOT ({boundary} AND "
                 f"(__h, __occ) IN (SELECT (row_hash, occ) FROM _mlspec_boundary WHERE source = "
                 f"{string_literal(source.name)}))")
    elif ts:
        where = f"WHERE NOT ({ts} IS NULL AND (__h, __occ) IN (SELECT (row_hash, occ) FROM _mlspec_boundary WHERE " \
                f"source = {string_literal(source.name)} AND kind = 'null'))"
    else:
        where = ""
    staged = (f"SELECT *, CAST({max_seq} + row_number() OVER (ORDER BY __pos) AS BIGINT) AS __seq "
              f"FROM ({hashed}) {where}")
    unique_cols = [c for c in source.columns if c.unique or c.name == source.key]
    flags = [
        f"count({ident(c.name)}) OVER (PARTITION BY {ident(c.name)} ORDER BY __seq ROWS UNBOUNDED PRECEDING) "
        f"AS __dup_{c.name}, "
        + (f"{ident(c.name)} IN (SELECT {ident(c.name)} FROM {ident(table)})" if exists_target else "FALSE")
        + f" AS __exists_{c.name}"
        for c in unique_cols]
    flags += [f"{ident(c.name)} IN (SELECT {ident(c.references[1])} FROM {ident('src__' + c.references[0])} "
              f"WHERE {ident(c.references[1])} IS NOT NULL) AS __ref_{c.name}"
              for c in source.columns if c.references]
    reasons = _reasons(source, csv)
    reason_sql = f"concat_ws('; ', {', '.join(reasons)})" if reasons else "''"
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE __staged AS SELECT *, {reason_sql} AS __reason FROM "
                     f"(SELECT *{', ' + ', '.join(flags) if flags else ''} FROM ({staged}))")
        read = wh.count("__staged")
        if not wh.exists(table) or not incremental:
            conn.execute(f"CREATE OR REPLACE TABLE {ident(table)} AS SELECT {cols}, __seq FROM __staged WHERE false")
        conn.execute(f"INSERT INTO {ident(table)} SELECT {cols}, __seq FROM __staged WHERE __reason = '' "
                     "ORDER BY __seq")
        key_sql = f"CAST({ident(source.key)} AS VARCHAR)" if source.key else "CAST(__seq AS VARCHAR)"
        struct = ", ".join(f"{ident(c.name)} := {ident(c.name)}" for c in source.columns)
        conn.execute(f"INSERT INTO _mlspec_quarantine SELECT ?, ?, 'schema', {key_sql}, __reason, "
                     f"to_json(struct_pack({struct})), current_timestamp FROM __staged WHERE __reason <> '' "
                     "ORDER BY __seq", [run_id, node])
        quarantined = int(wh.scalar("SELECT count(*) FROM __staged WHERE __reason <> ''"))
        if incremental and ts:
            _advance_watermark(wh, source, ts, watermark, max_seq)
        conn.execute("DROP TABLE __staged")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    loaded = read - quarantined
    total = wh.count(table)
    if total == 0:
        set_aside = int(wh.scalar("SELECT count(*) FROM _mlspec_quarantine WHERE node = ?", [node]) or 0)
        if set_aside == 0:
            raise RunError(node, f"source `{source.name}` has no rows ({source.path} is empty)",
                           "check the export that writes this file")
        raise RunError(node, f"all {set_aside:,} rows of source `{source.name}` were quarantined",
                       "see the reasons with `mlspec quarantine`")
    mark = wh.scalar("SELECT watermark FROM _mlspec_watermarks WHERE source = ?", [source.name])
    return ExtractStats(read, loaded, quarantined, total, str(mark) if mark else None,
                        incremental and watermark is not None)


def _advance_watermark(wh: Warehouse, source: Source, ts: str, old: dt.datetime | None, max_seq: int) -> None:
    """Move the watermark to the newest time seen and remember the rows sitting exactly on it."""
    conn = wh.conn
    name = string_literal(source.name)
    new_mark: dt.datetime | None = wh.scalar(f"SELECT max(CAST({ts} AS TIMESTAMP)) FROM __staged")
    marks = [m for m in (old, new_mark) if m is not None]
    mark = max(marks) if marks else None
    if mark is not None and mark != old:
        conn.execute(f"DELETE FROM _mlspec_boundary WHERE source = {name} AND kind = 'ts'")
    if mark is not None:
        conn.execute(f"INSERT INTO _mlspec_boundary SELECT {name}, 'ts', __h, __occ FROM __staged "
                     f"WHERE {ts} = {literal(str(mark), DType.TIMESTAMP)}")
    conn.execute(f"INSERT INTO _mlspec_boundary SELECT {name}, 'null', __h, __occ FROM __staged WHERE {ts} IS NULL")
    seq = wh.scalar("SELECT max(__seq) FROM __staged")
    conn.execute("INSERT OR REPLACE INTO _mlspec_watermarks VALUES (?, ?, ?, current_timestamp)",
                 [source.name, mark, int(seq if seq is not None else max_seq)])
