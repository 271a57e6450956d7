"""`mlspec plan` speed on a large spec: two versions of a 1,000-feature spec over 50 sources.

    .venv/bin/python bench/plan_1000.py [--repeat 7] [--json out.json]

Generates (in this file, so the benchmark does not move when another one does) a spec with one
entity, 50 event sources and 50 feature groups of 20 features each (aggregates over 1h..180d
windows, unbounded aggregates, derived features, a reference into the previous group), a label,
checks on every source, two models reading the groups by glob, a batch and a realtime serve, a
monitor and alerts. Version 2 edits it the way a large pull request would: 20 windows changed,
10 features added, 5 dropped, 5 renamed, a source schema tightened, params and a gate threshold
changed, a serve rescheduled and a monitor threshold moved.

Timed in one process (median of --repeat): compiling each version (parse + check + DAG), then
`build_plan` over the two compiled DAGs, then rendering text, Markdown and JSON. The plan is
reported against the compile time measured in the same run; the goal is plan + render < 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOURCES = 50
WINDOWS = ("1h", "6h", "24h", "7d", "30d", "90d", "180d")
GOAL_SECONDS = 1.0


def _source(j: int, tight: bool = False) -> str:
    high = 50000 if tight else 100000
    return f"""source ev{j} {{
  path      = "data/ev{j}.parquet"
  key       = event_id
  timestamp = at
  freshness = 26h
  schema {{
    event_id int not null unique
    user_id  int not null
    at       timestamp not null
    amount   float range [0, {high}]
    qty      int range [0, 1000]
    kind     string in ("x", "y", "z")
    flag     bool{chr(10) + "    outcome  bool not null" if j == 1 else ""}
  }}
}}
"""


def _features(j: int, v2: bool) -> list[str]:
    """20 features: 14 windowed aggregates, 2 unbounded, 3 derived, 1 reference to the previous group."""
    w = list(WINDOWS)
    if v2 and j % 5 == 0:  # 10 groups: two windows longer
        w[1], w[3] = "12h", "14d"
    lines = [f"  cnt_{k} = count(event_id, last {x})" for k, x in enumerate(w)]
    lines += [f"  amt_{k} = sum(amount, last {x})" for k, x in enumerate(w)]
    lines += ["  first_seen = days_between(min(at), as_of)",
              "  last_seen = hours_between(max(at), as_of)",
              "  basket_30d = amt_4 / cnt_4",
              "  ratio_7d_30d = cnt_3 / cnt_4",
              '  x_share_90d = count_if(kind == "x", last 90d) / cnt_5']
    lines.append(f"  vs_prev = cnt_4 - g{j - 1}.cnt_4" if j > 1 else "  qty_max = max(qty, last 30d)")
    if v2 and j % 10 == 1:  # 5 groups: one feature dropped, one renamed, two added
        lines.remove("  last_seen = hours_between(max(at), as_of)")
        lines = [x.replace("  ratio_7d_30d =", "  week_month_ratio =") for x in lines]
        lines += ["  flagged_7d = count_if(flag, last 7d)", "  qty_mean_30d = mean(qty, last 30d)"]
    return lines


def generate_spec(v2: bool = False) -> str:
    parts = ['project bench_plan {\n  owner = "bench@example.com"\n}\n', "entity user {\n  key = user_id\n}\n"]
    for j in range(1, SOURCES + 1):
        parts.append(_source(j, tight=v2 and j == 7))
        parts.append("\n".join([f"features g{j} {{", "  entity = user", f"  from   = ev{j}", *_features(j, v2)]) + "\n}\n")
        parts.append(f"check ev{j} {{\n  amount >= 0\n  on_fail = quarantine\n}}\n")
    parts.append("label outcome {\n  entity = user\n  from   = ev1\n  value  = outcome\n}\n")
    for m, groups in (("risk_a", range(1, 26)), ("risk_b", range(26, 51))):
        depth = 7 if v2 and m == "risk_a" else 6
        auc = "0.72" if v2 and m == "risk_b" else "0.70"
        globs = ", ".join(f"g{j}.*" for j in groups)
        parts.append(f"""model {m} {{
  algorithm = xgboost
  task      = binary
  label     = outcome
  features  = [{globs}]
  split     = by_time(test_from = "2026-04-01")
  params {{
    max_depth     = {depth}
    learning_rate = 0.1
    n_estimators  = 200
    seed          = 7
  }}
  gate {{
    auc >= {auc}
    auc >= champion.auc - 0.005
  }}
}}
""")
    schedule = "0 3 * * *" if v2 else "0 2 * * *"
    psi = "0.2" if v2 else "0.25"
    parts.append(f"""serve risk_a {{
  mode     = batch
  schedule = "{schedule}"
  output   = "scores/risk_a.parquet"
}}

serve risk_api {{
  model       = risk_b
  mode        = realtime
  latency_p99 = 50ms
  replicas    = 2..10
}}

monitor risk_b {{
  psi(features) > {psi} -> alert(oncall)
  latency_p99 > 50ms -> alert(oncall)
  auc < 0.65 over 30d -> retrain, alert(oncall)
  retrain every 30d
}}

alert oncall {{
  webhook = env("ONCALL_WEBHOOK_URL")
}}
""")
    return "\n".join(parts)


def median(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def fmt(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def run(repeat: int) -> dict[str, Any]:
    from mlspec.compiler import compile_paths
    from mlspec.plan.diff import build_plan
    from mlspec.plan.render import render_json, render_markdown, render_text

    with tempfile.TemporaryDirectory(prefix="mlspec-bench-plan-") as tmp:
        v1, v2 = Path(tmp) / "v1.mlspec", Path(tmp) / "v2.mlspec"
        v1.write_text(generate_spec(False), encoding="utf-8")
        v2.write_text(generate_spec(True), encoding="utf-8")
        a, b = compile_paths([v1]), compile_paths([v2])  # also builds the Lark parser, outside the timings
        for c, name in ((a, "v1"), (b, "v2")):
            if not c.ok:
                shown = "\n".join(f"{d.span.line}:{d.span.col} {d.code} {d.message}" for d in c.diagnostics[:10])
                raise SystemExit(f"the generated spec {name} does not compile clean:\n{shown}")
        compile_one = median(lambda: compile_paths([v2]), repeat)
        plan = build_plan(a.checked, b.checked, "v1", "v2")
        plan_time = median(lambda: build_plan(a.checked, b.checked, "v1", "v2"), repeat)
        same_time = median(lambda: build_plan(a.checked, a.checked, "v1", "v1"), repeat)
        text = median(lambda: render_text(plan), repeat)
        markdown = median(lambda: render_markdown(plan), repeat)
        js = median(lambda: render_json(plan), repeat)
    spec = b.checked[0]
    n = plan.counts()
    return {
        "benchmark": "plan_1000", "repeat": repeat,
        "features": sum(len(g.features) for g in a.checked[0].groups),
        "features_v2": sum(len(g.features) for g in spec.groups), "sources": len(spec.sources),
        "nodes": b.checked[1].number_of_nodes(),
        "changes": len(plan.changes), "counts": n, "attributes": sum(len(c.attributes) for c in plan.changes),
        "backfill_features": plan.impact.backfill_features, "retrain": len(plan.impact.retrain),
        "summary": plan_line(plan),
        "compile_one": compile_one, "plan": plan_time, "plan_unchanged": same_time,
        "render_text": text, "render_markdown": markdown, "render_json": js,
        "plan_and_render": plan_time + text, "ratio_plan_to_compile": plan_time / compile_one,
        "goal_seconds": GOAL_SECONDS, "goal_met": plan_time + text < GOAL_SECONDS,
    }


def plan_line(plan: Any) -> str:
    from mlspec.plan.render import summary_line

    return str(summary_line(plan))


def report(r: dict[str, Any]) -> str:
    rows = [("compile one version (parse + check + DAG)", r["compile_one"], 1.0),
            ("build_plan (v1 -> v2)", r["plan"], r["plan"] / r["compile_one"]),
            ("build_plan (v1 -> v1, no changes)", r["plan_unchanged"], r["plan_unchanged"] / r["compile_one"]),
            ("render text", r["render_text"], r["render_text"] / r["compile_one"]),
            ("render markdown", r["render_markdown"], r["render_markdown"] / r["compile_one"]),
            ("render json", r["render_json"], r["render_json"] / r["compile_one"])]
    lines = [f"plan: {r['features']} -> {r['features_v2']} features, {r['sources']} sources, {r['nodes']} DAG nodes; "
             f"{r['changes']} nodes changed ({r['attributes']} attribute changes), median of {r['repeat']}",
             f"  {r['summary']}", "",
             "| step | time | vs compile |", "|---|---|---|"]
    lines += [f"| {name} | {fmt(t)} | {ratio:.2f}x |" for name, t, ratio in rows]
    lines += ["", f"goal: plan + text render < {r['goal_seconds']:.0f} s -> "
                  f"{'met' if r['goal_met'] else 'NOT met'} ({fmt(r['plan_and_render'])})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per measurement (median)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--print-spec", choices=("v1", "v2"), help="print a generated version and exit")
    args = ap.parse_args(argv)
    if args.print_spec:
        print(generate_spec(args.print_spec == "v2"))
        return 0
    result = run(args.repeat)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
