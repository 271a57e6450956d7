"""The model-side nodes of the DAG: train + judge (model), promote (gate), batch score (serve)."""

from __future__ import annotations

from typing import Any

from mlspec.runtime.engines.sql import AS_OF, ident
from mlspec.runtime.errors import RunError
from mlspec.runtime.pipeline import Detail, RunContext
from mlspec.runtime.registry import RegistryError
from mlspec.runtime.score import registry_for, score
from mlspec.runtime.warehouse import table_for


def run_model(ctx: RunContext, name: str) -> Detail:
    """Train on the point-in-time dataset, judge against the gate and register the version."""
    from mlspec.runtime.gate import evaluate_gate
    from mlspec.runtime.train import TrainingError, train

    node = f"model:{name}"
    model = ctx.spec.model(name)
    dataset = table_for(f"dataset:{name}")
    ctx.require(node, dataset)
    frame = ctx.wh.conn.sql(f"SELECT * FROM {ident(dataset)}").pl()
    types = {q: ctx.spec.feature(q).dtype for q in model.features}
    try:
        result = train(model, frame, "__label", AS_OF, feature_types=types)
    except TrainingError as e:
        raise RunError(node, str(e), "see the dataset node's counts; `mlspec run --until dataset:" + name + "`") from None
    registry = registry_for(ctx.wh)
    champion = registry.champion(name)
    champion_metrics = registry.get(name, champion).metrics if champion else None
    verdict = evaluate_gate(model.gate, result.metrics, champion_metrics)
    info = registry.register(name, result, spec_hash=ctx.spec_hash, compiled_spec=ctx.compiled_spec,
                             status="candidate" if verdict.passed else "rejected", gate=verdict)
    return {"version": info.version, "metrics": result.metrics, "n_train": result.n_train, "n_test": result.n_test,
            "gate_passed": verdict.passed, "champion_before": champion, "notes": list(result.notes)}


def run_gate(ctx: RunContext, name: str) -> Detail:
    """Promote the latest trained version if it passed its gate; otherwise say why not."""
    node = f"gate:{name}"
    last: dict[str, Any] | None = ctx.wh.last_detail(f"model:{name}")
    if last is None:
        raise RunError(node, f"model `{name}` has not been trained yet", f"run `mlspec run --until model:{name}`")
    registry = registry_for(ctx.wh)
    try:
        info = registry.get(name, last["version"])
    except RegistryError as e:
        raise RunError(node, str(e)) from None
    gate = info.metadata.get("gate", {})
    results = gate.get("results", [])
    summary = "; ".join(f"{r['text']}: {r['reason']}" for r in results) or "no gate rules"
    detail: dict[str, Any] = {"version": info.version, "passed": info.gate_passed, "summary": summary,
                              "results": results, "promoted": False}
    if info.gate_passed:
        before = registry.champion(name)
        registry.promote(name, info.version)
        detail.update(promoted=before != info.version, champion_before=before)
    else:
        current = registry.champion(name)
        ctx.warnings.append(f"{node}: version {info.version} rejected ({summary}); champion stays "
                            f"{current or 'unset'}")
        detail["champion"] = current
    return detail


def run_serve(ctx: RunContext, name: str) -> Detail:
    serve = next(s for s in ctx.spec.serves if s.name == name)
    if serve.mode != "batch":
        return {"note": f"{serve.mode} serving starts with `mlspec serve`"}
    tables = {s.name: ctx.input_table("source", s.name) for s in ctx.spec.sources}
    for t in tables.values():
        ctx.require(f"serve:{name}", t)
    return score(ctx.wh, ctx.spec, serve, tables, ctx.engine, ctx.as_of)
