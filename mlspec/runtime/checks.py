"""Runs a `check` block where the DAG puts it: row rules quarantine or stop, dataset rules gate.

A row predicate that evaluates to null passes (unknown is not a violation); write
`x is not null` to demand presence. Rows in = rows passed + rows quarantined, exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from mlspec.ir import expr as ir
from mlspec.ir.spec import Check, CheckRule, Spec
from mlspec.runtime.engines.sql import AS_OF, ident, row_sql, string_literal
from mlspec.runtime.errors import RunError
from mlspec.runtime.warehouse import Warehouse


@dataclass(frozen=True)
class RuleOutcome:
    text: str
    level: str
    on_fail: str
    passed: bool
    failed_rows: int = 0
    value: float | None = None
    note: str = ""


@dataclass(frozen=True)
class CheckStats:
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    outcomes: tuple[RuleOutcome, ...]
    warnings: tuple[str, ...] = field(default=())


def _key_sql(spec: Spec, check: Check) -> str:
    if check.target_kind == "features":
        key = ident(spec.entity(spec.group(check.target).entity).key)
        return f"CAST({key} AS VARCHAR) || ' @ ' || CAST({AS_OF} AS VARCHAR)"
    src = spec.source(check.target)
    return f"CAST({ident(src.key)} AS VARCHAR)" if src.key else "CAST(__seq AS VARCHAR)"


def _failing(rule: CheckRule) -> str:
    return f"NOT COALESCE({row_sql(rule.expr, 't')}, TRUE)"


def run_check(wh: Warehouse, spec: Spec, check: Check, run_id: str, input_table: str, output_table: str) -> CheckStats:
    node = f"check:{check.name}"
    conn = wh.conn
    rows_in = wh.count(input_table)
    row_rules = [r for r in check.rules if r.level == "row"]
    outcomes: list[RuleOutcome] = []
    warnings: list[str] = []
    counts = {}
    for i, r in enumerate(row_rules):
        counts[i] = int(wh.scalar(f"SELECT count(*) FROM {ident(input_table)} t WHERE {_failing(r)}") or 0)
    for i, r in enumerate(row_rules):
        n = counts[i]
        outcomes.append(RuleOutcome(r.text, "row", r.on_fail, n == 0 or r.on_fail != "fail", n))
        if n and r.on_fail == "fail":
            examples = [row[0] for row in conn.execute(
                f"SELECT {_key_sql(spec, check)} FROM {ident(input_table)} t WHERE {_failing(r)} LIMIT 5").fetchall()]
            raise RunError(node, f"{n} of {rows_in} rows fail `{r.text}` (on_fail = fail); e.g. {', '.join(examples)}",
                           "fix the data, or set on_fail = quarantine to set those rows aside")
        if n and r.on_fail == "warn":
            warnings.append(f"{node}: {n} rows fail `{r.text}` (warn)")
    quarantine_rules = [r for r in row_rules if r.on_fail == "quarantine"]
    cases = [f"CASE WHEN {_failing(r)} THEN {string_literal(r.text + ' is false')} END" for r in quarantine_rules]
    reason = f"concat_ws('; ', {', '.join(cases)})" if cases else "''"
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE __checked AS SELECT t.*, {reason} AS __reason FROM {ident(input_table)} t")
        columns = [c[0] for c in conn.execute(f"DESCRIBE {ident(input_table)}").fetchall()]
        cols = ", ".join(ident(c) for c in columns)
        conn.execute(f"CREATE OR REPLACE TABLE {ident(output_table)} AS SELECT {cols} FROM __checked WHERE __reason = ''")
        conn.execute("DELETE FROM _mlspec_quarantine WHERE node = ?", [node])  # a check re-judges its whole input
        struct = ", ".join(f"{ident(c)} := {ident(c)}" for c in columns)
        conn.execute(f"INSERT INTO _mlspec_quarantine SELECT ?, ?, 'check', {_key_sql(spec, check)}, __reason, "
                     f"to_json(struct_pack({struct})), current_timestamp FROM __checked WHERE __reason <> ''",
                     [run_id, node])
        conn.execute("DROP TABLE __checked")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    passed = wh.count(output_table)
    quarantined = rows_in - passed
    outcomes.extend(_dataset_rules(wh, spec, check, output_table))
    for o in outcomes:
        if o.level == "dataset" and not o.passed and o.on_fail == "warn":
            warnings.append(f"{node}: `{o.text}` is false (value {o.value:g}) (warn)")
    failed = [o for o in outcomes if o.level == "dataset" and not o.passed and o.on_fail == "fail"]
    if failed:
        report = "; ".join(f"`{o.text}` is false (value {o.value:g})" if o.value is not None else f"`{o.text}`"
                           for o in failed)
        raise RunError(node, f"dataset check failed: {report}",
                       "the run stops before training; fix the data or relax the check")
    return CheckStats(rows_in, passed, quarantined, tuple(outcomes), tuple(warnings))


def _dataset_rules(wh: Warehouse, spec: Spec, check: Check, table: str) -> list[RuleOutcome]:
    out = []
    for r in check.rules:
        if r.level != "dataset":
            continue
        fn, op, threshold = _split(r.expr)
        if fn.name in ("psi", "js", "ks", "ks_pvalue"):
            out.append(RuleOutcome(r.text, "dataset", r.on_fail, True,
                                   note="compared by `mlspec monitor` against the champion's reference statistics"))
            continue
        value = _measure(wh, spec, check, table, fn)
        if value is None:
            out.append(RuleOutcome(r.text, "dataset", r.on_fail, True, note="no rows to measure"))
            continue
        passed = _compare(value, op, threshold) if op else bool(value)
        out.append(RuleOutcome(r.text, "dataset", r.on_fail, passed, value=float(value)))
    return out


def _split(e: ir.Expr) -> tuple[ir.Func, str | None, float]:
    if isinstance(e, ir.Func):
        return e, None, 0.0
    assert isinstance(e, ir.BinOp) and isinstance(e.left, ir.Func) and isinstance(e.right, ir.Lit)
    return e.left, e.op, float(e.right.value)  # type: ignore[arg-type]


def _compare(value: float, op: str, threshold: float) -> bool:
    return {"<": value < threshold, "<=": value <= threshold, ">": value > threshold, ">=": value >= threshold,
            "==": value == threshold, "!=": value != threshold}[op]


def _measure(wh: Warehouse, spec: Spec, check: Check, table: str, fn: ir.Func) -> float | None:
    t = ident(table)
    col = ident(fn.args[0].name) if fn.args and isinstance(fn.args[0], ir.Col) else None
    if fn.name == "row_count":
        return float(wh.count(table))
    if fn.name == "null_rate":
        v = wh.scalar(f"SELECT count(*) FILTER (WHERE {col} IS NULL) / count(*) FROM {t}")
        return float(v) if v is not None else None
    if fn.name == "unique":
        v = wh.scalar(f"SELECT count({col}) = count(DISTINCT {col}) FROM {t}")
        return 1.0 if v else 0.0
    if fn.name == "freshness":
        ts_col = spec.source(check.target).timestamp if check.target_kind == "source" else AS_OF
        latest: dt.datetime | None = wh.scalar(f"SELECT max(CAST({ident(ts_col or AS_OF)} AS TIMESTAMP)) FROM {t}")
        if latest is None:
            return None
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return (now - latest).total_seconds() * 1000.0
    raise RunError(f"check:{check.name}", f"`{fn.name}` cannot be measured on a table")
