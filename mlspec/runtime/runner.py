"""Runs the DAG (or one node, or a prefix) in topological order and reports what happened."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from mlspec.compiler import Compiled
from mlspec.contract import EXIT_REJECTED as EXIT_REJECTED  # `mlspec run --fail-on-rejected` when a gate rejects
from mlspec.ir.dag import topological_order
from mlspec.ir.serialize import digest, to_data
from mlspec.runtime import pipeline
from mlspec.runtime.errors import RunError
from mlspec.runtime.warehouse import Warehouse, new_run_id

NOT_RUN_HERE = {
    "alert": "alert sinks are used by `mlspec monitor`",
    "monitor": "monitors run with `mlspec monitor`",
}
_ONLINE_SERVING = {  # serve modes that run as their own long-lived process, not as a run's node
    "realtime": "realtime serving starts with `mlspec serve`",
    "streaming": "streaming serving starts with `mlspec stream`",
}


@dataclass
class NodeReport:
    node: str
    kind: str
    status: str  # "ok" | "failed" | "skipped"
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    run_id: str
    engine: str
    nodes: list[NodeReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rejected(self) -> list[NodeReport]:
        """Gate nodes that ran and rejected their candidate (the champion stayed)."""
        return [n for n in self.nodes if n.kind == "gate" and n.status == "ok" and n.detail.get("passed") is False]

    def to_data(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "engine": self.engine, "ok": self.ok, "error": self.error, "hint": self.hint,
                "warnings": self.warnings, "rejected": [rejection(n) for n in self.rejected],
                "nodes": [n.__dict__ for n in self.nodes]}


def rejection(report: NodeReport) -> dict[str, Any]:
    """What a rejecting gate node decided: the model, the candidate, the failed conditions, the champion."""
    d = report.detail
    failed = [{"rule": r.get("text"), "reason": r.get("reason")} for r in d.get("results", []) if not r.get("passed")]
    return {"node": report.node, "model": report.node.split(":", 1)[1], "version": d.get("version"),
            "failed": failed, "champion": d.get("champion")}


def rejection_message(report: NodeReport) -> str:
    """`error in gate:M: version V of model `M` was rejected by its gate: RULE (REASON); ...`."""
    r = rejection(report)
    conditions = "; ".join(f"{f['rule']} ({f['reason']})" for f in r["failed"]) or "no rule passed"
    return (f"error in {r['node']}: version {r['version']} of model `{r['model']}` was rejected by its gate: "
            f"{conditions}; the champion stays {r['champion'] or 'unset'}")


def runners() -> dict[str, pipeline.NodeRunner]:
    from mlspec.runtime import modeling

    return {"source": pipeline.run_source, "check": pipeline.run_check_node, "label": pipeline.run_label,
            "features": pipeline.run_features, "dataset": pipeline.run_dataset, "model": modeling.run_model,
            "gate": modeling.run_gate, "serve": modeling.run_serve}


def resolve_node(dag: nx.DiGraph, name: str) -> str:
    """`features:activity` or just `activity` when only one node has that name."""
    if name in dag:
        return name
    matches: list[str] = sorted(n for n in dag if n.split(":", 1)[1] == name)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunError(name, f"`{name}` names several nodes: {', '.join(matches)}", "write it as kind:name")
    from mlspec.diagnostics import did_you_mean

    raise RunError(name, f"no node `{name}` in the DAG", did_you_mean(name, [*dag.nodes, *(n.split(':', 1)[1] for n in dag)])
                   or "see `mlspec graph`")


def select_nodes(dag: nx.DiGraph, node: str | None, until: str | None) -> list[str]:
    order = topological_order(dag)
    if node is not None:
        return [resolve_node(dag, node)]
    if until is not None:
        target = resolve_node(dag, until)
        keep = nx.ancestors(dag, target) | {target}
        return [n for n in order if n in keep]
    return order


def run_pipeline(compiled: Compiled, *, engine: str = "duckdb", node: str | None = None, until: str | None = None,
                 as_of: dt.datetime | None = None,
                 on_node: Callable[[NodeReport], None] | None = None,
                 on_start: Callable[[str], None] | None = None) -> RunSummary:
    assert compiled.spec is not None and compiled.dag is not None
    dag = compiled.dag
    summary = RunSummary(new_run_id(), engine)
    try:
        selected = select_nodes(dag, node, until)
    except RunError as e:
        summary.error, summary.hint = e.render(), e.hint
        return summary
    compiled_spec = to_data(compiled.spec)
    assert isinstance(compiled_spec, dict)
    compiled_spec.pop("files", None)  # where the files sit is not part of what the spec means
    with Warehouse.open(compiled.root) as wh:
        ctx = pipeline.RunContext(wh, compiled.spec, digest(compiled_spec), compiled_spec, summary.run_id, engine,
                                  as_of)
        table = runners()
        for nid in selected:
            kind, name = nid.split(":", 1)
            if on_start:
                on_start(nid)
            started = time.time()
            mode = compiled.spec.serve(name).mode if kind == "serve" else ""
            if kind in NOT_RUN_HERE or mode in _ONLINE_SERVING:
                note = NOT_RUN_HERE.get(kind) or _ONLINE_SERVING[mode]
                report = NodeReport(nid, kind, "skipped", 0.0, {"note": note})
            else:
                try:
                    detail = table[kind](ctx, name)
                    report = NodeReport(nid, kind, "ok", time.time() - started, detail)
                except RunError as e:
                    report = NodeReport(nid, kind, "failed", time.time() - started, {"error": e.message})
                    summary.error, summary.hint = e.render(), e.hint
                wh.record_node(summary.run_id, nid, report.status, started, report.seconds, report.detail)
            summary.nodes.append(report)
            if on_node:
                on_node(report)
            if report.status == "failed":
                break
        summary.warnings.extend(ctx.warnings)
    return summary
