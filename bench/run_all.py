"""Run every benchmark and print one table of ratios (and the absolute times, for the record).

    .venv/bin/python bench/run_all.py            # the full run recorded in bench/README.md (~10 min here)
    .venv/bin/python bench/run_all.py --quick    # a smoke run on small data (~30 s here)

Exit status 0 when every benchmark ran and every variant's results equal the generated ones;
nothing here asserts an absolute time, because every number is a ratio to a baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compile_1000
import features
from _common import environment, fmt_seconds, table


def summary(comp: dict[str, Any], feat: dict[str, Any]) -> str:
    lg = comp["large"]
    rows: list[list[str]] = [
        [f"compile {lg['features']} features: parse+check+dag", f"{fmt_seconds(lg['total'])} ({fmt_seconds(lg['cpu']['total'])} CPU)",
         f"{comp['scaling_cpu']['total']:.2f}x CPU vs {comp['small']['features']} features (size {comp['size_ratio']:.0f}x)",
         f"< 1 s: {'met' if comp['goal_met'] else 'NOT met'}"],
        ["`import mlspec.cli`", fmt_seconds(comp["import_cli"]),
         f"{comp['import_cli'] / comp['python_pass']:.1f}x `python -c pass`", ""],
        [f"`mlspec check` ({lg['features']} features)", fmt_seconds(comp["check_cli"]),
         f"{comp['check_cli'] / comp['python_pass']:.1f}x `python -c pass`", ""],
    ]
    for v, e in feat["results"].items():
        goal = ""
        if v == "duckdb-generated":
            goal = f"<= 1.2x: {'met' if feat['goals']['generated_within_1_2x_wall'] else 'NOT met'}"
        if v.startswith("duckdb-"):
            goal += ("; " if goal else "") + f"peak {e['peak_rss_mb']:.0f} MB"
        rows.append([f"features {v} (activity+profile)", fmt_seconds(e["total"]["wall"]),
                     f"{e['ratio']['total']['wall']:.2f}x wall / {e['ratio']['total']['cpu']:.2f}x CPU "
                     f"vs {features.BASELINE}", goal])
    a = feat["asof"]
    rows.append([f"as-of join {a['rows']:,} rows: polars vs duckdb", fmt_seconds(a["polars"]["wall"]),
                 f"{a['polars_vs_duckdb']['wall']:.2f}x wall vs duckdb ({fmt_seconds(a['duckdb']['wall'])})",
                 f"equal: {'yes' if a['check']['equal'] else 'NO'}"])
    return table(["benchmark", "time", "ratio to its baseline (same run)", "goal / note"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, few repetitions: a smoke run")
    ap.add_argument("--json", type=Path, help="also write every result as JSON here")
    args = ap.parse_args(argv)
    env = environment()
    print(f"# mlspec benchmarks{' (quick)' if args.quick else ''} - {env['date']}, {env['cpus']} CPUs, "
          f"{env['memory_gb']} GB, load {env['load_avg']}, mlspec {env['mlspec']}")
    print("# " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), flush=True)
    comp = compile_1000.run(quick=args.quick)
    print("\n" + compile_1000.report(comp) + "\n", flush=True)
    feat = features.run(quick=args.quick)
    print(features.report(feat) + "\n")
    env["load_avg_end"] = environment()["load_avg"]
    print(summary(comp, feat))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "compile_1000": comp, "features": feat}, indent=2,
                                        default=str))
    return 0 if feat["all_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
