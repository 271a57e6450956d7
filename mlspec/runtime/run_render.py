"""Terminal rendering of runs: a line per node as it finishes, then one summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlspec.runtime.runner import NodeReport, RunSummary

_MARK = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[dim]-[/]"}


def _num(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else ("" if x is None else str(x))


def _headline(r: NodeReport) -> str:
    d = r.detail
    if r.status == "skipped":
        return f"[dim]{d.get('note', '')}[/]"
    if r.status == "failed":
        return f"[red]{d.get('error', '')}[/]"
    parts = []
    if "rows_in" in d:
        parts.append(f"{_num(d['rows_in'])} in → {_num(d.get('rows_passed'))} passed")
        if d.get("rows_quarantined"):
            parts.append(f"[yellow]{_num(d['rows_quarantined'])} quarantined[/]")
    if "features" in d and r.kind in ("features", "dataset"):
        parts.append(f"{d['features']} features")
    if r.kind == "model" and "metrics" in d:
        parts.append("  ".join(f"{k} {v:.4f}" for k, v in sorted(d["metrics"].items()) if isinstance(v, float)))
    if r.kind == "gate":
        parts.append(("[green]passed[/]" if d.get("passed") else "[red]rejected[/]") + f" · {d.get('summary', '')}")
    if "version" in d:
        parts.append(f"version {d['version']}")
    if r.kind == "serve" and "rows" in d:
        parts.append(f"{_num(d['rows'])} scores → {d.get('output')}")
    return " · ".join(p for p in parts if p)


class LiveRun:
    """Prints each node as it completes (the progress display of `mlspec run`)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("starting")

    def start(self, node: str) -> None:
        self.status.update(f"running [bold]{node}[/]")
        self.status.start()

    def done(self, r: NodeReport) -> None:
        self.status.stop()
        self.console.print(f"{_MARK[r.status]} {r.node:<28} {r.seconds:6.2f}s  {_headline(r)}", highlight=False)


def print_summary(summary: RunSummary, console: Console) -> None:
    table = Table(title=f"run {summary.run_id} · engine {summary.engine}", show_lines=False)
    for col in ("node", "status", "in", "passed", "quarantined", "details", "seconds"):
        table.add_column(col, justify="right" if col in ("in", "passed", "quarantined", "seconds") else "left")
    for r in summary.nodes:
        d = r.detail
        details = ""
        if r.kind == "model":
            details = ", ".join(f"{k}={v:.3f}" for k, v in sorted(d.get("metrics", {}).items())
                                if isinstance(v, float) and k in ("auc", "logloss", "f1", "rmse", "mae", "accuracy"))
        elif r.kind == "gate":
            details = ("passed" if d.get("passed") else "rejected") + (f" → champion {d['version']}"
                                                                       if d.get("promoted") else "")
        elif r.kind in ("features", "dataset"):
            details = f"{d.get('features', '')} features" if d.get("features") else ""
        elif r.kind == "serve":
            details = f"{_num(d.get('rows'))} scores → {d.get('output', '')}" if r.status == "ok" else d.get("note", "")
        elif r.status != "ok":
            details = d.get("note", d.get("error", ""))
        table.add_row(r.node, _MARK[r.status], _num(d.get("rows_in")), _num(d.get("rows_passed")),
                      _num(d.get("rows_quarantined")), details, f"{r.seconds:.2f}")
    console.print(table)
    for w in summary.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if summary.error:
        console.print(f"[red]{summary.error}[/]", highlight=False)
