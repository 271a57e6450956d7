"""Terminal rendering of runs: a line per node as it finishes, then one summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlspec.runtime.runner import NodeReport, RunSummary

_HEADLINE_METRICS = ("auc", "logloss", "f1", "rmse", "mae", "r2", "accuracy")
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
        if "rows_total" in d:
            parts.append(f"{_num(d['rows_total'])} in the warehouse")
    if "features" in d and r.kind in ("features", "dataset"):
        parts.append(f"{d['features']} features")
    if r.kind == "model" and "metrics" in d:
        parts.append(" ".join(f"{k} {v:.4f}" for k, v in sorted(d["metrics"].items())
                              if isinstance(v, float) and k in _HEADLINE_METRICS))
    if r.kind == "gate":
        verdict = "[green]passed[/]" if d.get("passed") else "[red]rejected[/]"
        parts.append(verdict + (" → champion" if d.get("passed") else f" ({d.get('summary', '')})"))
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
        if r.status != "skipped":
            self.console.print(f"{_MARK[r.status]} {r.node:<24} {r.seconds:6.2f}s  {_headline(r)}", highlight=False)


def print_summary(summary: RunSummary, console: Console) -> None:
    table = Table(title=f"run {summary.run_id} · engine {summary.engine}")
    table.add_column("node", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for col in ("in", "passed", "quarantined", "seconds"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in summary.nodes:
        if r.status == "skipped":
            continue
        d = r.detail
        table.add_row(r.node, _MARK[r.status], _num(d.get("rows_in")), _num(d.get("rows_passed")),
                      _num(d.get("rows_quarantined")), f"{r.seconds:.2f}")
    console.print(table)
    for r in summary.nodes:
        if r.status == "ok" and r.kind in ("model", "gate", "serve") and "version" in r.detail:
            console.print(f"{r.node}: {_headline(r)}", highlight=False)
    skipped: dict[str, list[str]] = {}  # why -> nodes, in run order
    for r in summary.nodes:
        if r.status == "skipped":
            skipped.setdefault(str(r.detail.get("note", "")), []).append(r.node)
    if skipped:
        parts = [", ".join(nodes) + (f" ({why})" if why else "") for why, nodes in skipped.items()]
        console.print(f"[dim]not run here: {'; '.join(parts)}[/]", highlight=False)
    for w in summary.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
