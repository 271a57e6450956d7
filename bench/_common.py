"""Shared helpers for the benchmarks: timing, subprocess workers, environment, tables.

Every benchmark reports ratios against a baseline measured in the same run; absolute times are
printed for the record only (this machine is shared, so they move with the load average).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable


def cache_dir() -> Path:
    """Where generated data is kept between runs ($MLSPEC_BENCH_DIR, else a folder in the temp dir)."""
    d = Path(os.environ.get("MLSPEC_BENCH_DIR") or Path(tempfile.gettempdir()) / "mlspec-bench")
    d.mkdir(parents=True, exist_ok=True)
    return d


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process) of `repeat` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB.

    VmHWM (Linux), not ru_maxrss: after fork + exec, ru_maxrss starts from the parent's peak, so a
    worker started by a big parent would report the parent's memory.
    """
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    rss = _status_mb("VmRSS")
    return rss if rss is not None else float("nan")


class Stopwatch:
    """Wall and CPU seconds of a `with` block."""

    def __enter__(self) -> Stopwatch:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


def run_worker(args: Sequence[str], timeout: float = 3600) -> dict[str, Any]:
    """Run `python <args>` in a fresh process; it prints one JSON object as its last stdout line."""
    proc = subprocess.run([PYTHON, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """A worker's answer: its last stdout line."""
    print(json.dumps(result, default=str), flush=True)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment() -> dict[str, Any]:
    """What the numbers depend on: when, where, which versions, how busy the machine was."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "mlspec": f"{_version('mlspec')} @ {_git('rev-parse', '--short', 'HEAD')}{' + uncommitted changes' if dirty else ''}",
        "versions": {d: _version(d) for d in ("duckdb", "polars", "pandas", "numpy", "pyarrow", "lark", "networkx")},
    }


def fmt_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[("-" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])
