"""Compiler speed on a large spec: 1,000 features over 50 sources.

    .venv/bin/python bench/compile_1000.py [--repeat 7] [--json out.json]

Generates the text of a spec with 5 entities, 50 sources (per entity one dimension source and
nine event sources), 50 feature groups (aggregates over 1d/7d/30d/90d windows, row features,
derived features, references to features of other groups), checks, five models selecting
their features by glob, batch and realtime serves, monitors and alerts; writes it to a temporary
directory; checks that it compiles clean; then times the three compiler stages separately
(`mlspec.load.load`, `mlspec.semantics.check.check_modules`, `mlspec.ir.dag.build_dag`) and
the whole `mlspec.compiler.compile_paths`, median of --repeat runs in this process, so the
Lark parser is already built. The goal (under 1 s) is judged on the CPU time of
`compile_paths`: the machine is shared, and its wall time moves with other work.

Ratios, all measured in the same run:
- scaling: time(1,000 features) / time(200 features), per stage (5.0 = linear);
- `import mlspec.cli` and `mlspec check` wall time relative to a bare `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, REPO, environment, fmt_seconds, median_time, table

ENTITIES = ("customer", "merchant", "device", "account", "store")
EVENT_SOURCES_PER_ENTITY = 9
WINDOWS = ("1d", "7d", "30d", "90d")
GOAL_SECONDS = 1.0
STAGES = ("parse", "check", "dag", "total", "compile_paths")  # total: the three stages' sum


def _dimension_source(e: str) -> str:
    return f"""
source {e}s {{
  path      = "data/{e}s.parquet"
  key       = {e}_id
  timestamp = created_at
  schema {{
    {e}_id     int not null unique
    created_at timestamp not null
    tier       string not null in ("gold", "silver", "bronze")
    score      float range [0, 100]
    region     string
    active     bool
    limit_amt  float range [0, 1000000]
  }}
}}
"""


def _event_source(e: str, j: int) -> str:
    label_col = "\n    outcome  bool not null" if j == 1 else ""
    return f"""
source {e}_ev{j} {{
  path      = "data/{e}_ev{j}.parquet"
  key       = event_id
  timestamp = at
  freshness = 26h
  schema {{
    event_id int not null unique
    {e}_id   int not null references {e}s.{e}_id
    at       timestamp not null
    amount   float range [0, 100000]
    qty      int range [0, 1000]
    kind     string in ("x", "y", "z")
    flag     bool{label_col}
  }}
}}
"""


def _event_group(e: str, j: int) -> str:
    """20 features: 14 windowed aggregates, 1 unbounded, 4 derived, 1 cross-group reference."""
    lines = [f"features {e}_g{j} {{", f"  entity = {e}", f"  from   = {e}_ev{j}",
             f'  description = "activity of {e} from event source {j}"']
    lines += [f"  cnt_{w} = count(event_id, last {w})" for w in WINDOWS]
    lines += [f"  amt_{w} = sum(amount, last {w})" for w in WINDOWS]
    lines += [f"  avg_amt_{w} = mean(amount, last {w})" for w in ("7d", "30d")]
    lines += ["  max_amt_30d = max(amount, last 30d)",
              "  min_qty_90d = min(qty, last 90d)",
              '  kind_x_30d = count_if(kind == "x", last 30d)',
              "  flagged_7d = count_if(flag, last 7d)",
              "  days_since = days_between(max(at), as_of)",
              "  ratio_7_30 = cnt_7d / cnt_30d",
              "  basket_30d = amt_30d / cnt_30d",
              "  hot = case when cnt_1d > 3 then true when cnt_7d > 10 then true else false end",
              "  spend_growth = coalesce(amt_7d * 4.0 - amt_30d, 0.0)"]
    if j == 1:
        lines.append(f"  spend_per_tenure = amt_90d / ({e}_profile.tenure_days + 1)")
    else:
        lines.append(f"  cnt_30d_vs_prev = cnt_30d - {e}_g{j - 1}.cnt_30d")
    return "\n".join(lines) + "\n}\n"


def _profile_group(e: str) -> str:
    """20 row features over the dimension source."""
    lines = [f"features {e}_profile {{", f"  entity = {e}", f"  from   = {e}s",
             "  tenure_days = days_between(created_at, as_of)",
             "  tier_name = tier",
             '  is_gold = tier == "gold"',
             '  is_top_tier = tier in ("gold", "silver")',
             "  score_or_zero = coalesce(score, 0.0)",
             '  region_name = coalesce(region, "unknown")',
             '  region_upper = upper(coalesce(region, "unknown"))',
             "  has_region = region is not null",
             "  is_active = coalesce(active, false)",
             "  limit_or_zero = coalesce(limit_amt, 0.0)",
             "  signup_year = year(created_at)",
             "  signup_month = month(created_at)",
             "  signup_dow = day_of_week(created_at)",
             "  log_limit = ln(coalesce(limit_amt, 0.0) + 1.0)",
             "  score_sq = score_or_zero * score_or_zero"]
    lines += [f"  score_band_{k} = score_or_zero >= {k * 20}.0" for k in range(1, 5)]
    lines.append("  limit_per_score = limit_or_zero / score_or_zero")
    return "\n".join(lines) + "\n}\n"


def generate_spec(entities: int = 5) -> str:
    """The spec text: `entities` x (10 sources, 10 groups, 200 features, 1 label, 1 model, 2 serves, 1 monitor)."""
    parts = ['project bench_large {\n  owner = "bench@example.com"\n  description = "1,000 features over 50 sources"\n}\n',
             "alert oncall {\n  webhook = env(\"ONCALL_WEBHOOK_URL\")\n  dedupe  = 1h\n}\n",
             'alert sre {\n  file = "alerts/sre.jsonl"\n}\n']
    for e in ENTITIES[:entities]:
        parts.append(f"entity {e} {{\n  key = {e}_id\n}}\n")
        parts.append(_dimension_source(e))
        parts.append(_profile_group(e))
        for j in range(1, EVENT_SOURCES_PER_ENTITY + 1):
            parts.append(_event_source(e, j))
            parts.append(_event_group(e, j))
            parts.append(f"check {e}_ev{j} {{\n  amount >= 0\n  qty >= 0\n  on_fail = quarantine\n}}\n")
            parts.append(f"check {e}_g{j} {{\n  cnt_7d <= cnt_30d\n  cnt_30d <= cnt_90d\n"
                         f"  null_rate(days_since) < 0.5\n  row_count() >= 100\n  on_fail = quarantine\n}}\n")
        parts.append(f"label {e}_outcome {{\n  entity = {e}\n  from   = {e}_ev1\n  value  = outcome\n}}\n")
        globs = ", ".join([f"{e}_profile.*"] + [f"{e}_g{j}.*" for j in range(1, EVENT_SOURCES_PER_ENTITY + 1)])
        parts.append(f"""model {e}_risk {{
  algorithm = xgboost
  task      = binary
  label     = {e}_outcome
  features  = [{globs}]
  segment   = {e}_profile.tier_name
  split     = by_time(test_from = "2026-04-01")
  params {{
    max_depth     = 4
    learning_rate = 0.1
    n_estimators  = 200
    seed          = 7
  }}
  gate {{
    auc >= 0.70
    auc >= champion.auc - 0.005
  }}
}}

serve {e}_risk {{
  model    = {e}_risk
  mode     = batch
  schedule = "0 2 * * *"
  output   = "scores/{e}.parquet"
}}

serve {e}_api {{
  model       = {e}_risk
  mode        = realtime
  latency_p99 = 50ms
  replicas    = 2..10
}}

monitor {e}_risk {{
  psi(features) > 0.25 -> alert(oncall)
  js(prediction) > 0.1 -> alert(oncall)
  null_rate({e}_g1.avg_amt_7d) > 0.3 -> alert(oncall)
  freshness({e}_ev1) > 2h -> alert(oncall)
  latency_p99 > 50ms -> alert(sre)
  error_rate > 0.01 over 1h -> alert(sre)
  auc < 0.65 over 30d -> retrain, alert(oncall)
  retrain every 30d
}}
""")
    return "\n".join(parts)


def _stage_times(path: Path, repeat: int) -> dict[str, Any]:
    from mlspec.compiler import compile_paths
    from mlspec.ir.dag import build_dag
    from mlspec.load import load
    from mlspec.semantics.check import check_modules

    compiled = compile_paths([path])  # also builds the Lark parser once, outside the timings
    if not compiled.ok or compiled.diagnostics:
        shown = "\n".join(f"{d.span.line}:{d.span.col} {d.code} {d.message}" for d in compiled.diagnostics[:10])
        raise SystemExit(f"the generated spec does not compile clean:\n{shown}")
    assert compiled.spec is not None and compiled.dag is not None
    loaded = load([path])
    spec, _ = check_modules(loaded.modules)
    assert spec is not None
    parse, parse_cpu = median_time(lambda: load([path]), repeat)
    check, check_cpu = median_time(lambda: check_modules(loaded.modules), repeat)
    dag, dag_cpu = median_time(lambda: build_dag(spec), repeat)
    whole, whole_cpu = median_time(lambda: compile_paths([path]), repeat)
    return {"features": sum(len(g.features) for g in compiled.spec.groups), "sources": len(compiled.spec.sources),
            "groups": len(compiled.spec.groups), "models": len(compiled.spec.models),
            "nodes": compiled.dag.number_of_nodes(), "edges": compiled.dag.number_of_edges(),
            "lines": path.read_text().count("\n"), "parse": parse, "check": check, "dag": dag,
            "total": parse + check + dag, "compile_paths": whole,
            "cpu": {"parse": parse_cpu, "check": check_cpu, "dag": dag_cpu, "total": parse_cpu + check_cpu + dag_cpu,
                    "compile_paths": whole_cpu}}


def _wall(cmd: list[str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        samples.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return statistics.median(samples)


def _top_imports(n: int = 6) -> list[tuple[str, float]]:
    """The slowest imports (cumulative) of `import mlspec.cli`, from -X importtime."""
    proc = subprocess.run([PYTHON, "-X", "importtime", "-c", "import mlspec.cli"], capture_output=True, text=True,
                          cwd=REPO)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name not in ("mlspec", "mlspec.cli"):
            rows.append((name, int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def run(quick: bool = False, repeat: int | None = None) -> dict[str, Any]:
    repeat = repeat or (1 if quick else 7)
    with tempfile.TemporaryDirectory(prefix="mlspec-bench-compile-") as tmp:
        big, small = Path(tmp) / "large" / "bench.mlspec", Path(tmp) / "small" / "bench.mlspec"
        for p, n in ((big, 5), (small, 1)):
            p.parent.mkdir()
            p.write_text(generate_spec(n), encoding="utf-8")
        large = _stage_times(big, repeat)
        base = _stage_times(small, repeat)
        python_pass = _wall([PYTHON, "-c", "pass"], repeat)
        import_cli = _wall([PYTHON, "-c", "import mlspec.cli"], repeat)
        check_cli = _wall([PYTHON, "-m", "mlspec.cli", "check", str(big)], repeat)
        check_churn = _wall([PYTHON, "-m", "mlspec.cli", "check", str(REPO / "specs" / "churn.mlspec")], repeat)
    scaling = {k: large[k] / base[k] for k in STAGES}
    scaling_cpu = {k: large["cpu"][k] / base["cpu"][k] for k in STAGES}
    return {"benchmark": "compile_1000", "repeat": repeat, "large": large, "small": base,
            "size_ratio": large["features"] / base["features"], "scaling": scaling, "scaling_cpu": scaling_cpu,
            "python_pass": python_pass, "import_cli": import_cli, "check_cli": check_cli, "check_churn": check_churn,
            "top_imports": _top_imports(), "goal_seconds": GOAL_SECONDS, "goal_basis": "compile_paths CPU",
            "goal_met": large["cpu"]["compile_paths"] < GOAL_SECONDS}


def report(r: dict[str, Any]) -> str:
    lg, sm = r["large"], r["small"]
    rows = [[stage, fmt_seconds(lg[stage]), fmt_seconds(lg["cpu"][stage]), fmt_seconds(sm[stage]),
             fmt_seconds(sm["cpu"][stage]), f"{r['scaling'][stage]:.2f}x", f"{r['scaling_cpu'][stage]:.2f}x"]
            for stage in STAGES]
    out = [f"compile: {lg['features']} features, {lg['sources']} sources, {lg['groups']} groups, {lg['models']} models, "
           f"{lg['lines']} lines -> {lg['nodes']} DAG nodes / {lg['edges']} edges (median of {r['repeat']})",
           table(["stage", f"{lg['features']} features", "CPU", f"{sm['features']} features", "CPU",
                  "wall ratio", f"CPU ratio (sizes {r['size_ratio']:.1f}x)"], rows),
           f"goal: total < {r['goal_seconds']:.0f} s for {lg['features']} features -> "
           f"{'met' if r['goal_met'] else 'NOT met'} (compile_paths {fmt_seconds(lg['cpu']['compile_paths'])} CPU, "
           f"{fmt_seconds(lg['compile_paths'])} wall; judged on CPU)",
           "",
           table(["command", "wall (median)", "vs `python -c pass`"],
                 [["python -c pass", fmt_seconds(r["python_pass"]), "1.00x"],
                  ["python -c 'import mlspec.cli'", fmt_seconds(r["import_cli"]),
                   f"{r['import_cli'] / r['python_pass']:.2f}x"],
                  ["mlspec check specs/churn.mlspec", fmt_seconds(r["check_churn"]),
                   f"{r['check_churn'] / r['python_pass']:.2f}x"],
                  [f"mlspec check <{lg['features']}-feature spec>", fmt_seconds(r["check_cli"]),
                   f"{r['check_cli'] / r['python_pass']:.2f}x"]]),
           "slowest imports under mlspec.cli (cumulative): "
           + ", ".join(f"{n} {fmt_seconds(s)}" for n, s in r["top_imports"])]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per measurement (median); default 7, quick 1")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--print-spec", action="store_true", help="print the generated 1,000-feature spec and exit")
    args = ap.parse_args(argv)
    if args.print_spec:
        print(generate_spec(5))
        return 0
    result = run(args.quick, args.repeat)
    result["environment"] = environment()
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
