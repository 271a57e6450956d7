"""Spec -> networkx DAG of typed nodes with deterministic ids and fingerprints.

Node ids are `kind:name`. Each node records its IR object, a hash of its definition (what
changes results), a hash of its metadata (what does not), and a fingerprint that also covers
its parents' fingerprints, so a change anywhere upstream shows in every node downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from mlspec.ir import expr as ir
from mlspec.ir.serialize import JSON, digest, to_data
from mlspec.ir.spec import Alert, FeatureGroup, Spec

NODE_KINDS = ("source", "check", "features", "label", "dataset", "model", "gate", "serve", "monitor", "alert")


@dataclass(frozen=True, slots=True)
class Dataset:
    """The point-in-time training set of a model: label rows joined with features as of label time."""

    model: str
    label: str
    features: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Gate:
    model: str


def node_id(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def _metadata(obj: object) -> JSON:
    if isinstance(obj, FeatureGroup):
        return {"description": obj.description}
    if isinstance(obj, Alert):
        return to_data(obj)
    return {}


def _definition(obj: object) -> JSON:
    data = to_data(obj)
    if isinstance(obj, FeatureGroup) and isinstance(data, dict):
        data.pop("description", None)
    if isinstance(obj, Alert):
        return {"name": obj.name}
    return data


def build_dag(spec: Spec) -> nx.DiGraph:
    """Every declaration becomes a node; edges point from what a node reads to the node."""
    g = nx.DiGraph(project=spec.project.name)
    checked: dict[str, str] = {}  # source or group name -> check node that validates it

    def add(kind: str, name: str, obj: object) -> str:
        nid = node_id(kind, name)
        g.add_node(nid, kind=kind, name=name, ir=obj)
        return nid

    for s in spec.sources:
        add("source", s.name, s)
    for s in spec.sources:
        for col in s.columns:
            if col.references is not None and col.references[0] != s.name:
                g.add_edge(node_id("source", col.references[0]), node_id("source", s.name))
    for c in spec.checks:
        add("check", c.name, c)
        checked[c.target] = node_id("check", c.name)
        g.add_edge(node_id("source" if c.target_kind == "source" else "features", c.target), node_id("check", c.name))

    def read(kind: str, name: str) -> str:
        return checked.get(name, node_id(kind, name))

    for grp in spec.groups:
        nid = add("features", grp.name, grp)
        g.add_edge(read("source", grp.source), nid)
        for f in grp.features:
            for n in ir.walk(f.expr):
                if isinstance(n, ir.FeatureRef) and n.group != grp.name:
                    g.add_edge(node_id("features", n.group), nid)
    for lab in spec.labels:
        g.add_edge(read("source", lab.source), add("label", lab.name, lab))
        for grp in spec.groups:
            if grp.entity == lab.entity:  # a group is computed as of every label time of its entity
                g.add_edge(node_id("label", lab.name), node_id("features", grp.name))
    for m in spec.models:
        ds = add("dataset", m.name, Dataset(m.name, m.label, m.features))
        g.add_edge(node_id("label", m.label), ds)
        for grp_name in dict.fromkeys(q.split(".")[0] for q in m.features):
            g.add_edge(read("features", grp_name), ds)
        g.add_edge(ds, add("model", m.name, m))
        g.add_edge(node_id("model", m.name), add("gate", m.name, Gate(m.name)))
    for serve in spec.serves:
        g.add_edge(node_id("gate", serve.model), add("serve", serve.name, serve))
    for a in spec.alerts:
        add("alert", a.name, a)
    for mon in spec.monitors:
        nid = add("monitor", mon.name, mon)
        g.add_edge(node_id("gate", mon.model), nid)
        for serve in spec.serves:
            if serve.model == mon.model:
                g.add_edge(node_id("serve", serve.name), nid)
        for rule in mon.rules:
            for action in rule.actions:
                for target in action.targets:
                    g.add_edge(nid, node_id("alert", target))
    _fingerprint(g)
    return g


def _fingerprint(g: nx.DiGraph) -> None:
    for nid in nx.lexicographical_topological_sort(g):
        attrs = g.nodes[nid]
        obj = attrs["ir"]
        attrs["data_hash"] = digest(_definition(obj))
        attrs["metadata_hash"] = digest(_metadata(obj))
        parents = sorted(g.nodes[p]["fingerprint"] for p in g.predecessors(nid))
        attrs["fingerprint"] = digest({"data": attrs["data_hash"], "meta": attrs["metadata_hash"], "parents": parents})


def topological_order(g: nx.DiGraph) -> list[str]:
    """The run order: deterministic for a given graph."""
    return list(nx.lexicographical_topological_sort(g))


def node_summary(g: nx.DiGraph, nid: str) -> dict[str, Any]:
    a = g.nodes[nid]
    return {"id": nid, "kind": a["kind"], "name": a["name"], "fingerprint": a["fingerprint"],
            "parents": sorted(g.predecessors(nid)), "definition": _definition(a["ir"])}


