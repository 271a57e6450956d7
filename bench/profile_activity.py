"""Why is the generated `activity` query slower than the hand-written one? Ablations + EXPLAIN ANALYZE.

    .venv/bin/python bench/profile_activity.py [--customers 100000] [--repeat 3] [--plans DIR]

Uses the data and warehouse of bench/features.py (same cache). Each variant runs in its own process,
interleaved, `--repeat` times; CPU seconds (all threads) are the steadier number on a shared machine.

  generated               feature_sql(...) exactly as the pipeline runs it
  generated-no-guard      the same text without the `e.__seq IS NOT NULL` guard in every FILTER (fix 1)
  generated-no-guard-sort ... and without the final ORDER BY
  fixed-bucketed          what sql.py would emit with fixes 1-3: no guard, each aggregate once, the join
                          bounded by the largest *finite* window (90d), and the unbounded aggregate
                          max(ordered_at) computed per "bucket" (events ASOF-assigned to the next spine
                          point of their key) and accumulated over the spine with a running window
  fixed-window-asof       the same, but max(ordered_at) as a running window over all events read with an
                          ASOF join (fast, but holds all events: ~1.5 GB)
  hand                    bench/features.py's hand-written baseline (one join over all history + FILTER)
  hand-tuned              bench/features.py's tuned hand-written query (90d join + ASOF)

With --plans DIR, EXPLAIN ANALYZE of `generated` and `hand` are written to DIR.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import features
from _common import Stopwatch, current_rss_mb, emit, environment, fmt_seconds, peak_rss_mb, run_worker, table

VARIANTS = ("generated", "generated-no-guard", "generated-no-guard-sort", "fixed-bucketed", "fixed-window-asof", "hand",
            "hand-tuned")
GUARD = "e.__seq IS NOT NULL"

# What mlspec/runtime/engines/sql.py would emit for `activity` with the proposed fixes, written out by hand
# in the generator's style. Shared by both shapes: no `__seq IS NOT NULL` guard (fix 1), each aggregate
# once (fix 3), and the join that feeds the windowed aggregates bounded by the largest *finite* window,
# 90d (fix 2). They differ in how the one unbounded aggregate, max(ordered_at), is computed.
_WINDOWED = f"""
LEFT JOIN (SELECT s."customer_id", s.__as_of,
    count(e."order_id") FILTER (WHERE e."ordered_at" > s.__as_of - to_microseconds(CAST(2592000000000 AS BIGINT))) AS a0,
    count(e."order_id") AS a1,
    (CASE WHEN isfinite(COALESCE(CAST(fsum(e."amount") AS DOUBLE), CAST(0.0 AS DOUBLE)))
          THEN COALESCE(CAST(fsum(e."amount") AS DOUBLE), CAST(0.0 AS DOUBLE)) END) AS a2,
    max(e."amount") AS a3,
    count(e.__seq) FILTER (WHERE (e."channel" = 'app')) AS a4
  FROM "{features.SPINE}" s
  LEFT JOIN "src__orders" e ON e."customer_id" = s."customer_id" AND e."ordered_at" <= s.__as_of
    AND e."ordered_at" > s.__as_of - to_microseconds(CAST(7776000000000 AS BIGINT))
  GROUP BY s."customer_id", s.__as_of) g ON g."customer_id" = s."customer_id" AND g.__as_of = s.__as_of"""

_SELECT = f"""
SELECT s."customer_id", s.__as_of, CAST(g.a0 AS BIGINT) AS "orders_30d", CAST(g.a1 AS BIGINT) AS "orders_90d",
  CAST(g.a2 AS DOUBLE) AS "spend_90d",
  CAST((CASE WHEN isfinite((CASE WHEN (g.a1) = 0 THEN NULL ELSE CAST((g.a2) AS DOUBLE) / (g.a1) END)) THEN (CASE WHEN (g.a1) = 0 THEN NULL ELSE CAST((g.a2) AS DOUBLE) / (g.a1) END) END) AS DOUBLE) AS "avg_basket_90d",
  CAST(g.a3 AS DOUBLE) AS "max_order_90d",
  CAST((CASE WHEN isfinite((CASE WHEN (g.a1) = 0 THEN NULL ELSE CAST(g.a4 AS DOUBLE) / (g.a1) END)) THEN (CASE WHEN (g.a1) = 0 THEN NULL ELSE CAST(g.a4 AS DOUBLE) / (g.a1) END) END) AS DOUBLE) AS "app_share_90d",
  CAST(CAST(floor((epoch_us(s.__as_of) - epoch_us(u.a5)) / 86400000000.0) AS BIGINT) AS BIGINT) AS "days_since_order"
FROM "{features.SPINE}" s"""

# Unbounded aggregates by bucketing: every event is assigned (ASOF, events probing the small sorted spine)
# to the first spine point of its key at or after its timestamp, aggregated per bucket, and the buckets
# are combined with a running aggregate over the spine points of each key (count/sum -> sum, min/max ->
# min/max, last/first -> arg_max/arg_min, mean -> sum/sum). Work O(events + spine), memory ~ spine.
FIXED_BUCKETED = _SELECT + _WINDOWED + f"""
LEFT JOIN (SELECT p."customer_id", p.__as_of,
    max(b.a5) OVER (PARTITION BY p."customer_id" ORDER BY p.__as_of ROWS UNBOUNDED PRECEDING) AS a5
  FROM (SELECT DISTINCT "customer_id", __as_of FROM "{features.SPINE}") p
  LEFT JOIN (SELECT p."customer_id", p.__as_of, max(e."ordered_at") AS a5
             FROM "src__orders" e
             ASOF JOIN (SELECT DISTINCT "customer_id", __as_of FROM "{features.SPINE}") p
               ON p."customer_id" = e."customer_id" AND p.__as_of >= e."ordered_at"
             GROUP BY p."customer_id", p.__as_of) b ON b."customer_id" = p."customer_id" AND b.__as_of = p.__as_of
  ) u ON u."customer_id" = s."customer_id" AND u.__as_of = s.__as_of
ORDER BY s."customer_id", s.__as_of
"""

# Unbounded aggregates as a running window over all events, read with an ASOF join (spine probing the
# events): as fast, but DuckDB sorts and holds all 8.4M events, so the peak is ~1.5 GB.
FIXED_WINDOW_ASOF = _SELECT + _WINDOWED + """
ASOF LEFT JOIN (SELECT e."customer_id", e."ordered_at" AS __ts,
    max(e."ordered_at") OVER (PARTITION BY e."customer_id" ORDER BY e."ordered_at"
                              RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS a5
  FROM "src__orders" e) u ON u."customer_id" = s."customer_id" AND u.__ts <= s.__as_of
ORDER BY s."customer_id", s.__as_of
"""


def sql_for(variant: str) -> str:
    from mlspec.runtime.engines.sql import feature_sql

    spec = features._spec()
    generated = feature_sql(spec, spec.group("activity"), features.SPINE, "src__orders", {})
    if variant == "generated":
        return generated
    if variant.startswith("generated-no-guard"):
        sql = generated.replace(f"{GUARD} AND ", "").replace(f" FILTER (WHERE {GUARD})", "")
        assert GUARD not in sql
        return sql.rsplit("\nORDER BY", 1)[0] if variant.endswith("-sort") else sql
    if variant == "fixed-bucketed":
        return FIXED_BUCKETED
    if variant == "fixed-window-asof":
        return FIXED_WINDOW_ASOF
    return features.HAND_SQL["duckdb-hand" if variant == "hand" else "duckdb-hand-tuned"]["activity"]


def worker(variant: str, root: Path) -> dict[str, Any]:
    from mlspec.runtime.warehouse import Warehouse

    sql = sql_for(variant)
    with Warehouse.open(root) as wh:
        base = current_rss_mb()
        with Stopwatch() as sw:
            wh.conn.execute(f'CREATE OR REPLACE TABLE "bench_prof_{variant}" AS {sql}')
    return {"wall": sw.wall, "cpu": sw.cpu, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base}


def explain(root: Path, plans: Path) -> dict[str, str]:
    import duckdb

    plans.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / ".mlspec" / "warehouse.duckdb"))
    out = {}
    try:
        for v in ("generated", "hand", "fixed-bucketed"):
            text = con.execute("EXPLAIN ANALYZE " + sql_for(v)).fetchall()[0][1]
            path = plans / f"activity-{v}.txt"
            path.write_text(text)
            out[v] = str(path)
    finally:
        con.close()
    return out


def run(customers: int, repeat: int, plans: Path | None) -> dict[str, Any]:
    data = features.prepare(customers)
    root = Path(data["root"])
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(repeat):
        for v in VARIANTS:
            samples[v].append(run_worker([__file__, "--worker", v, "--root", str(root)]))
    import duckdb

    con = duckdb.connect(str(root / ".mlspec" / "warehouse.duckdb"))
    try:
        checks = {v: features.compare(con, '"bench_prof_generated"', f'"bench_prof_{v}"') for v in VARIANTS[1:]}
        for v in VARIANTS:
            con.execute(f'DROP TABLE IF EXISTS "bench_prof_{v}"')
    finally:
        con.close()
    result: dict[str, Any] = {"data": data, "repeat": repeat, "checks": checks, "variants": {}}
    for v, s in samples.items():
        result["variants"][v] = {"wall": statistics.median(x["wall"] for x in s),
                                 "cpu": statistics.median(x["cpu"] for x in s),
                                 "peak_rss_mb": max(x["peak_rss_mb"] for x in s)}
    base = result["variants"]["hand"]
    for e in result["variants"].values():
        e["ratio_wall"], e["ratio_cpu"] = e["wall"] / base["wall"], e["cpu"] / base["cpu"]
    if plans:
        result["plans"] = explain(root, plans)
    return result


def report(r: dict[str, Any]) -> str:
    rows = [[v, fmt_seconds(e["wall"]), f"{e['ratio_wall']:.2f}x", fmt_seconds(e["cpu"]), f"{e['ratio_cpu']:.2f}x",
             f"{e['peak_rss_mb']:.0f} MB", "(reference)" if v == "generated" else
             ("yes" if r["checks"][v]["equal"] else f"NO {r['checks'][v]}")]
            for v, e in r["variants"].items()]
    out = [f"activity ablations: {r['data']['orders']:,} orders, spine {r['data']['spine_rows']:,} rows, "
           f"median of {r['repeat']}, ratios vs hand",
           table(["variant" + " " * 16, "wall", "wall ratio", "CPU", "CPU ratio", "peak RSS", "equal"], rows)]
    for v, p in r.get("plans", {}).items():
        out.append(f"EXPLAIN ANALYZE {v}: {p}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plans", type=Path, help="write EXPLAIN ANALYZE output of generated/hand/fixed-bucketed here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        emit(worker(args.worker, Path(args.root)))
        return 0
    env = environment()
    print(f"# {env['date']}, load {env['load_avg']}, duckdb {env['versions']['duckdb']}")
    r = run(args.customers, args.repeat, args.plans)
    print(report(r))
    return 0 if all(c["equal"] for c in r["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
