"""Drift (PSI + KS + JS) for 50 numeric features: mlspec's monitoring path against Evidently, same data, same run.

    python3 -m venv VENV && VENV/bin/pip install evidently 'pandas<3'     # once, anywhere outside the repo
    .venv/bin/python bench/drift.py --evidently-python VENV/bin/python   # the recorded run (bench/DRIFT.md)
    MLSPEC_EVIDENTLY_PYTHON=VENV/bin/python .venv/bin/python bench/drift.py --evidently   # the same
    .venv/bin/python bench/drift.py --quick         # a smoke run on small data (scipy baseline)

(a) 100k reference rows vs 100k current rows: mlspec (fit the reference + compare, and compare
    only against a stored reference) against Evidently's DataDriftPreset run in its own venv on the
    same parquet files — its default per-column method, and PSI + KS + JS as three presets, the
    same three statistics mlspec computes.  Goal: mlspec at least 10x faster.  Evidently is
    compared when asked for (--evidently, or --evidently-python PATH); its interpreter comes from
    --evidently-python or the environment variable MLSPEC_EVIDENTLY_PYTHON.  Without it, or when
    Evidently fails, the baseline is a per-feature scipy loop (np.histogram + ks_2samp +
    jensenshannon) and the output says so.
(b) 1M vs 1M rows, mlspec only.  Goal: under 5 s.
Every mlspec number is checked against scipy on the same data before it is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import cache_dir, environment, fmt_seconds, median_time, table

from mlspec.runtime.monitoring.drift import compare_samples, drift_many, fit_numeric_fast

N_FEATURES = 50
EVIDENTLY_ENV = "MLSPEC_EVIDENTLY_PYTHON"  # the python of a venv with evidently and pandas<3

EVIDENTLY_WORKER = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset
imported = time.perf_counter() - t0
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
mode, repeat = sys.argv[3], int(sys.argv[4])
presets = [DataDriftPreset()] if mode == "default" else [DataDriftPreset(method=m) for m in ("psi", "ks", "jensenshannon")]
times, drifted = [], None
for _ in range(repeat):
    t = time.perf_counter()
    snap = Report(presets).run(cur, ref)
    data = snap.dict()
    times.append(time.perf_counter() - t)
drifted = [m["value"]["count"] for m in data["metrics"] if str(m.get("metric_name", "")).startswith("DriftedColumnsCount")]
values = {}
for m in data["metrics"]:
    cfg = m.get("config", {})
    if str(m.get("metric_name", "")).startswith("ValueDrift"):
        values.setdefault(cfg.get("method"), {})[cfg.get("column")] = m.get("value")
print(json.dumps({"version": evidently.__version__, "import_s": imported, "times": times,
                  "drifted": drifted, "values": values}, default=str))
"""


def make_data(rows: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """50 numeric features of mixed shapes; the second half drifts (shift, scale, tail), 1% NaN in five."""
    rng = np.random.default_rng(seed)
    ref: dict[str, np.ndarray] = {}
    cur: dict[str, np.ndarray] = {}
    for j in range(N_FEATURES):
        kind = j % 5
        drift = j >= N_FEATURES // 2

        def draw(shifted: bool, kind: int = kind) -> np.ndarray:
            s = 1.0 if not shifted else 1.0 + 0.1 * (kind + 1)
            if kind == 0:
                return rng.normal(0.2 * shifted, s, rows)
            if kind == 1:
                return rng.lognormal(3.0 + 0.15 * shifted, 0.6, rows)
            if kind == 2:
                return rng.exponential(2.0 * s, rows)
            if kind == 3:
                return rng.poisson(4.0 * s, rows).astype(np.float64)  # ties
            return rng.uniform(0.0, 10.0 * s, rows)

        a, b = draw(False), draw(drift)
        if j % 10 == 7:
            a[rng.random(rows) < 0.01] = np.nan
            b[rng.random(rows) < 0.01] = np.nan
        ref[f"f{j:02d}"], cur[f"f{j:02d}"] = a, b
    return pl.DataFrame(ref), pl.DataFrame(cur)


def mlspec_drift(ref: pl.DataFrame, cur: pl.DataFrame, *, refs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit references (unless given: then compare only) and compute PSI, JS and KS for every feature."""
    if refs is None:
        refs = {c: fit_numeric_fast(ref.get_column(c).to_numpy(), seed=j) for j, c in enumerate(ref.columns)}
    return drift_many(refs, {c: cur.get_column(c).to_numpy() for c in cur.columns})


def mlspec_full_ks(ref: pl.DataFrame, cur: pl.DataFrame) -> dict[str, Any]:
    """The same statistics with KS against every reference row (Evidently's KS), no stored sample."""
    return {c: compare_samples(c, ref.get_column(c).to_numpy(), cur.get_column(c).to_numpy()) for c in ref.columns}


def check_against_scipy(ref: pl.DataFrame, cur: pl.DataFrame) -> dict[str, Any]:
    """Our PSI/JS/KS equal scipy's on the same reference bins and samples (3 features, full-reference KS)."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import ks_2samp

    from mlspec.runtime.reference import fit_numeric

    worst = 0.0
    for c in ("f00", "f27", "f43"):
        a, b = ref.get_column(c).to_numpy(), cur.get_column(c).to_numpy()
        r = fit_numeric(a, sample_size=len(a))
        assert fit_numeric_fast(a, sample_size=len(a)) == r
        d = compare_samples(c, a, b)
        assert d.ref_shares == r.shares and drift_many({c: r}, {c: b})[c].cur_shares == d.cur_shares
        fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
        k = ks_2samp(fa, fb)
        js = float(jensenshannon(r.shares, d.cur_shares, base=2))
        worst = max(worst, abs(d.ks - k.statistic), abs(d.ks_pvalue - k.pvalue), abs(d.js - js))
    return {"max_abs_diff_vs_scipy": worst, "equal": worst < 1e-9}


def scipy_loop(ref: pl.DataFrame, cur: pl.DataFrame) -> None:
    """The fallback baseline: per feature, quantile bins by np.quantile, np.histogram, ks_2samp, jensenshannon."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import ks_2samp

    for c in ref.columns:
        a, b = ref.get_column(c).to_numpy(), cur.get_column(c).to_numpy()
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)))
        edges = np.concatenate(([-np.inf], edges, [np.inf]))
        p = np.maximum(np.histogram(a, edges)[0] / a.size, 1e-4)
        q = np.maximum(np.histogram(b, edges)[0] / b.size, 1e-4)
        float(np.sum((q - p) * np.log(q / p)))
        ks_2samp(a, b)
        jensenshannon(p, q, base=2)


def run_evidently(python: str, ref_path: Path, cur_path: Path, mode: str, repeat: int) -> dict[str, Any]:
    proc = subprocess.run([python, "-c", EVIDENTLY_WORKER, str(ref_path), str(cur_path), mode, str(repeat)],
                          capture_output=True, text=True, timeout=3600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "evidently failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evidently_interpreter(evidently: bool, flag: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The python to run Evidently with: --evidently-python, else $MLSPEC_EVIDENTLY_PYTHON, when the comparison
    is asked for (--evidently, or --evidently-python itself); None when it is not. Raises ValueError with what
    to do when it is asked for without an interpreter, or the interpreter is not an executable file."""
    if not (evidently or flag):
        return None
    python = flag or (os.environ if environ is None else environ).get(EVIDENTLY_ENV, "")
    if not python:
        raise ValueError(f"the Evidently comparison needs the python of a venv with evidently and pandas<3: pass "
                         f"--evidently-python PATH or set {EVIDENTLY_ENV} (python3 -m venv VENV && "
                         "VENV/bin/pip install evidently 'pandas<3')")
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        source = "--evidently-python" if flag else EVIDENTLY_ENV
        raise ValueError(f"{source}={python!r} is not an executable python")
    return python


def run(quick: bool = False, evidently_python: str | None = None) -> dict[str, Any]:
    rows_a, rows_b = (20_000, 100_000) if quick else (100_000, 1_000_000)
    repeat = 1 if quick else 3
    out: dict[str, Any] = {"features": N_FEATURES, "rows_a": rows_a, "rows_b": rows_b}

    ref, cur = make_data(rows_a, seed=1)
    folder = cache_dir() / "drift"
    folder.mkdir(parents=True, exist_ok=True)
    ref_path, cur_path = folder / f"ref_{rows_a}.parquet", folder / f"cur_{rows_a}.parquet"
    ref.write_parquet(ref_path)
    cur.write_parquet(cur_path)
    out["check"] = check_against_scipy(ref, cur)
    mlspec_drift(ref, cur)  # warm up: scipy's import, thread pool
    fitted = {c: fit_numeric_fast(ref.get_column(c).to_numpy(), seed=j) for j, c in enumerate(ref.columns)}
    a: dict[str, Any] = {
        "mlspec_fit_and_compare": median_time(lambda: mlspec_drift(ref, cur), repeat)[0],
        "mlspec_fit_and_compare_full_ks": median_time(lambda: mlspec_full_ks(ref, cur), repeat)[0],
        "mlspec_compare_only": median_time(lambda: mlspec_drift(ref, cur, refs=fitted), repeat)[0],
    }
    res = mlspec_drift(ref, cur)
    a["mlspec_drifted_psi_0_25"] = sum(1 for d in res.values() if d.psi > 0.25)
    a["mlspec_drifted_psi_0_1"] = sum(1 for d in res.values() if d.psi > 0.1)
    a["mlspec_drifted_ks_p_0_05"] = sum(1 for d in res.values() if (d.ks_pvalue or 1) < 0.05)
    baseline = None
    if evidently_python is None:
        a["evidently_skipped"] = f"not requested (--evidently-python PATH, or --evidently with ${EVIDENTLY_ENV})"
    else:
        try:
            a["evidently_default"] = run_evidently(evidently_python, ref_path, cur_path, "default", repeat)
            a["evidently_psi_ks_js"] = run_evidently(evidently_python, ref_path, cur_path, "three", 1 if quick else 2)
            baseline = "evidently"
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            a["evidently_error"] = str(e)
    if baseline is None:
        a["scipy_loop"] = median_time(lambda: scipy_loop(ref, cur), repeat)[0]
        baseline = "scipy"
    a["baseline"] = baseline
    if baseline == "evidently":
        ev = float(np.median(a["evidently_default"]["times"]))
        ev3 = float(np.median(a["evidently_psi_ks_js"]["times"]))
        a["speedup_vs_evidently_default"] = ev / a["mlspec_fit_and_compare"]
        a["speedup_vs_evidently_psi_ks_js"] = ev3 / a["mlspec_fit_and_compare_full_ks"]
        a["goal_10x_met"] = a["speedup_vs_evidently_default"] >= 10 and a["speedup_vs_evidently_psi_ks_js"] >= 10
    else:
        a["speedup_vs_scipy_loop"] = a["scipy_loop"] / a["mlspec_fit_and_compare_full_ks"]
        a["goal_10x_met"] = a["speedup_vs_scipy_loop"] >= 10
    out["a"] = a

    del ref, cur
    ref, cur = make_data(rows_b, seed=2)
    fitted = {}
    t = time.perf_counter()
    fitted = {c: fit_numeric_fast(ref.get_column(c).to_numpy(), seed=j) for j, c in enumerate(ref.columns)}
    fit_s = time.perf_counter() - t
    b = {"mlspec_fit": fit_s,
         "mlspec_compare_only": median_time(lambda: mlspec_drift(ref, cur, refs=fitted), repeat)[0],
         "mlspec_fit_and_compare": median_time(lambda: mlspec_drift(ref, cur), repeat)[0]}
    b["goal_5s_met"] = b["mlspec_fit_and_compare"] < 5.0
    out["b"] = b
    return out


def summary(r: dict[str, Any]) -> str:
    a, b = r["a"], r["b"]
    rows = [[f"(a) {r['rows_a']:,} vs {r['rows_a']:,}: mlspec fit + compare (2,000-value KS sample)",
             fmt_seconds(a["mlspec_fit_and_compare"]), ""],
            ["(a) mlspec fit + compare, KS against the whole reference",
             fmt_seconds(a["mlspec_fit_and_compare_full_ks"]), ""],
            ["(a) mlspec compare only (stored reference, as `mlspec monitor` runs)",
             fmt_seconds(a["mlspec_compare_only"]), ""]]
    if a["baseline"] == "evidently":
        ev, ev3 = a["evidently_default"], a["evidently_psi_ks_js"]
        rows.append([f"(a) Evidently {ev['version']} DataDriftPreset() (default methods)",
                     fmt_seconds(float(np.median(ev["times"]))),
                     f"mlspec {a['speedup_vs_evidently_default']:.0f}x faster"])
        rows.append(["(a) Evidently DataDriftPreset x3 (psi, ks, jensenshannon)",
                     fmt_seconds(float(np.median(ev3["times"]))),
                     f"mlspec (whole-reference KS) {a['speedup_vs_evidently_psi_ks_js']:.0f}x faster"])
    else:
        why = "not requested" if "evidently_skipped" in a else "unavailable: " + a.get("evidently_error", "?")
        rows.append([f"(a) scipy per-feature loop (Evidently {why})", fmt_seconds(a["scipy_loop"]),
                     f"mlspec {a['speedup_vs_scipy_loop']:.0f}x faster"])
    rows.append(["(a) goal: >= 10x", "", "met" if a["goal_10x_met"] else "NOT met"])
    if a["baseline"] == "evidently":
        rows.append(["(a) drifted columns found (25 of 50 drift)",
                     f"mlspec: {a['mlspec_drifted_ks_p_0_05']} by KS p < 0.05, {a['mlspec_drifted_psi_0_1']} by "
                     f"PSI > 0.1", "Evidently: " + ", ".join(
                         f"{n:g}" for n in a["evidently_default"]["drifted"] + a["evidently_psi_ks_js"]["drifted"])
                     + " (default, psi, ks, js)"])
    rows += [[f"(b) {r['rows_b']:,} vs {r['rows_b']:,}: mlspec fit + compare", fmt_seconds(b["mlspec_fit_and_compare"]),
              f"< 5 s: {'met' if b['goal_5s_met'] else 'NOT met'}"],
             ["(b) of which fitting the reference (training time)", fmt_seconds(b["mlspec_fit"]), ""],
             ["(b) mlspec compare only (what monitoring does)", fmt_seconds(b["mlspec_compare_only"]), ""]]
    return table(["drift, 50 numeric features", "time (median)", "ratio / goal"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--evidently", action="store_true",
                    help=f"compare with Evidently, run by --evidently-python or ${EVIDENTLY_ENV}")
    ap.add_argument("--evidently-python", metavar="PATH",
                    help=f"the python of a venv with evidently and pandas<3 (implies --evidently; default "
                         f"${EVIDENTLY_ENV})")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        evidently_python = evidently_interpreter(args.evidently, args.evidently_python)
    except ValueError as e:
        ap.error(str(e))
    env = environment()
    print(f"# drift benchmark{' (quick)' if args.quick else ''} - {env['date']}, {env['cpus']} CPUs, "
          f"load {env['load_avg']}", flush=True)
    result = run(quick=args.quick, evidently_python=evidently_python)
    print(summary(result))
    print(f"checked against scipy: max |diff| {result['check']['max_abs_diff_vs_scipy']:.2e}")
    if args.json:
        args.json.write_text(json.dumps({"env": env, **result}, indent=2, default=str))
    return 0 if result["check"]["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
