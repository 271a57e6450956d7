"""DVC target: dvc.yaml with one stage per node `mlspec run` executes, and a params.yaml.

Place both next to the spec (the project directory). Each stage runs `mlspec run --node` and
writes the run report to `.mlspec/dvc/<stage>.json` (its output, or its metrics for train and
evaluate); its dependencies are the upstream reports and, for extraction, the source files.
params.yaml holds the models' params and every node's fingerprint, so after an edit of the spec
and `mlspec compile --target dvc`, `dvc repro` reruns exactly the stages whose meaning changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlspec.backends import BackendError
from mlspec.backends.common import STEP, Context, header, make_context, option_choice, step, yaml_dump

if TYPE_CHECKING:
    import networkx as nx

    from mlspec.ir.spec import Spec

DVC_STEP = {**STEP, "gate": "evaluate"}
REPORTS = ".mlspec/dvc"


def stage_name(nid: str) -> str:
    return step(nid, DVC_STEP)


def dvc_path(value: str, what: str) -> str:
    """A path DVC reads literally: dvc.yaml interpolates `${...}`, so such paths are refused."""
    if "${" in value or not value:
        raise BackendError(f"{what} {value!r} cannot be a DVC path: dvc.yaml would interpolate `${{...}}`")
    return value


class DvcBackend:
    name = "dvc"
    description = "dvc.yaml (extract, features, train, evaluate, score stages) and params.yaml"
    options: Mapping[str, str] = {
        # true: an evaluate stage whose gate rejects the candidate fails `dvc repro` (exit 3 of
        # `mlspec run --fail-on-rejected`), as CI wants; false keeps the rejection as metrics only
        # (`dvc exp run` keeps experiments whose model the gate rejected)
        "fail_on_rejected": "false",
    }

    def generate(self, spec: Spec, dag: nx.DiGraph, spec_path: str, options: Mapping[str, str]) -> dict[str, str]:
        ctx = make_context(spec, dag, spec_path)
        strict = option_choice(options, "fail_on_rejected", ("false", "true")) == "true"
        top = header(ctx, self.name)
        usage = ("# Copy dvc.yaml and params.yaml next to the spec, then `dvc repro`. After editing the spec run\n"
                 "# `mlspec compile --target dvc` again: params.yaml carries every node's fingerprint.\n")
        return {"dvc.yaml": top + usage + yaml_dump({"stages": stages(ctx, fail_on_rejected=strict)}),
                "params.yaml": top + yaml_dump(params(ctx))}


def params(ctx: Context) -> dict[str, Any]:
    models = {m.name: {k: v for k, v in m.params} for m in ctx.spec.models}
    nodes = {stage_name(n): ctx.dag.nodes[n]["fingerprint"] for n in ctx.nodes}
    return {"models": models, "mlspec": {"fingerprint": ctx.fingerprint, "nodes": nodes}}


def stages(ctx: Context, *, fail_on_rejected: bool = False) -> dict[str, Any]:
    parents: dict[str, list[str]] = {n: [] for n in ctx.nodes}
    for a, b in ctx.edges:
        parents[b].append(a)
    out: dict[str, Any] = {}
    for nid in ctx.nodes:
        kind, name = nid.split(":", 1)
        stage = stage_name(nid)
        report = f"{REPORTS}/{stage}.json"
        deps = [f"{REPORTS}/{stage_name(p)}.json" for p in sorted(parents[nid])]
        if kind == "source":
            deps.append(dvc_path(ctx.spec.source(name).path, f"source {name} path"))
        flag = " --fail-on-rejected" if kind == "gate" and fail_on_rejected else ""
        entry: dict[str, Any] = {
            "cmd": f"mkdir -p {REPORTS} && mlspec run --node {nid} {ctx.spec_arg}{flag} --json > {report}",
            "deps": deps,
            "params": [f"mlspec.nodes.{stage}"] + ([f"models.{name}"] if kind == "model" and _has_params(ctx, name)
                                                   else []),
        }
        if kind in ("model", "gate"):
            entry["metrics"] = [{report: {"cache": False}}]
        else:
            outs: list[Any] = [{report: {"cache": False}}]
            if kind == "serve":
                serve = next(s for s in ctx.spec.serves if s.name == name)
                target = serve.output or f"scores/{name}.parquet"
                if not target.startswith("duckdb:"):
                    outs.append(dvc_path(target, f"serve {name} output"))
            entry["outs"] = outs
        out[stage] = entry
    return out


def _has_params(ctx: Context, model: str) -> bool:
    return bool(ctx.spec.model(model).params)


BACKEND = DvcBackend()
