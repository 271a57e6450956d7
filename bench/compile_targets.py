"""Backend speed on a large spec: every target for the 1,000-feature spec of compile_1000.py.

    .venv/bin/python bench/compile_targets.py [--repeat 5] [--json out.json]

Writes the generated spec to a temporary directory, compiles it (`compile_paths`), then times
`generate(target, ...)` for every installed target, median of --repeat runs in this process (the
first run of each target is a warm-up: it imports the backend and PyYAML). Reported next to the
plain `compile_paths` time measured in the same run; the goal is compile + generate under 2 s for
every target. Results and the rerun command are recorded in bench/TARGETS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, fmt_seconds, median_time, table
from compile_1000 import generate_spec

GOAL_SECONDS = 2.0


def run(repeat: int) -> dict[str, Any]:
    from mlspec.backends import available, generate
    from mlspec.compiler import compile_paths

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "large.mlspec"
        path.write_text(generate_spec(5), encoding="utf-8")
        compiled = compile_paths([path])
        assert compiled.ok, compiled.diagnostics
        spec, dag = compiled.checked
        compile_wall, _ = median_time(lambda: compile_paths([path]), repeat)
        rows = []
        for target in available():
            options = {"out_dir": "generated/large/docker"} if target == "docker" else {}
            started = time.perf_counter()
            files = generate(target, spec, dag, "large.mlspec", options)  # warm-up: imports
            first = time.perf_counter() - started
            wall, _ = median_time(lambda t=target, o=options: generate(t, spec, dag, "large.mlspec", o), repeat)
            size = sum(len(t.encode()) for t in files.values())
            rows.append({"target": target, "generate": wall, "first": first, "files": len(files), "bytes": size,
                         "total": compile_wall + wall, "goal_met": compile_wall + wall < GOAL_SECONDS})
    features = sum(len(g.features) for g in spec.groups)
    return {"benchmark": "compile_targets", "repeat": repeat, "features": features, "nodes": dag.number_of_nodes(),
            "compile_paths": compile_wall, "targets": rows, "goal_seconds": GOAL_SECONDS,
            "goal_met": all(r["goal_met"] for r in rows)}


def report(r: dict[str, Any]) -> str:
    rows = [[t["target"], fmt_seconds(t["generate"]), fmt_seconds(t["first"]), fmt_seconds(r["compile_paths"]),
             fmt_seconds(t["total"]), f"{t['generate'] / r['compile_paths']:.2f}x", t["files"],
             f"{t['bytes'] / 1024:.0f} KiB", "yes" if t["goal_met"] else "NO"] for t in r["targets"]]
    load = r.get("environment", {}).get("load_avg")
    head = (f"{r['features']:,} features, {r['nodes']:,} DAG nodes; median of {r['repeat']} runs; "
            f"goal: compile_paths + generate < {r['goal_seconds']:.0f} s per target"
            + (f"; load average {load[0]:.1f} on {r['environment'].get('cpus')} cores" if load else ""))
    return head + "\n\n" + table(["target", "generate", "first (imports)", "compile_paths", "compile + generate",
                                  "generate / compile", "files", "size", "goal"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (median), default 5")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    result = run(max(1, args.repeat))
    result["environment"] = environment()
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
