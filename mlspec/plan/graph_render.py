"""Renderings of the compiled DAG: a rich tree for people, Mermaid and DOT for pictures, JSON for tools."""

from __future__ import annotations

import json

import networkx as nx

from mlspec.ir.dag import node_summary, topological_order

_STYLE = {"source": "cyan", "check": "yellow", "features": "green", "label": "magenta", "dataset": "blue",
          "model": "bold blue", "gate": "red", "serve": "bold green", "monitor": "yellow", "alert": "red"}


def _detail(g: nx.DiGraph, nid: str) -> str:
    obj = g.nodes[nid]["ir"]
    kind = g.nodes[nid]["kind"]
    if kind == "source":
        return f"{obj.format} {obj.path} · {len(obj.columns)} columns"
    if kind == "features":
        return f"{len(obj.features)} features of {obj.entity}"
    if kind == "check":
        return f"{len(obj.rules)} rules on {obj.target}"
    if kind == "model":
        return f"{obj.algorithm} {obj.task} · {len(obj.features)} features"
    if kind == "serve":
        return str(obj.mode)
    if kind == "monitor":
        return f"{len(obj.rules)} rules"
    return ""


def tree(g: nx.DiGraph) -> None:
    from rich.console import Console
    from rich.tree import Tree

    root = Tree(f"[bold]project {g.graph.get('project', '')}[/] · {g.number_of_nodes()} nodes")
    for nid in topological_order(g):
        kind = g.nodes[nid]["kind"]
        parents = sorted(g.predecessors(nid))
        label = f"[{_STYLE[kind]}]{nid}[/]  [dim]{g.nodes[nid]['fingerprint'][:10]}[/]"
        detail = _detail(g, nid)
        branch = root.add(label + (f"  {detail}" if detail else ""))
        if parents:
            branch.add("[dim]← " + ", ".join(parents) + "[/]")
    Console(highlight=False).print(root)


def _mermaid_id(nid: str) -> str:
    return nid.replace(":", "__")


def mermaid(g: nx.DiGraph) -> None:
    lines = ["flowchart LR"]
    for nid in topological_order(g):
        lines.append(f'  {_mermaid_id(nid)}["{nid}"]')
    for a, b in sorted(g.edges):
        lines.append(f"  {_mermaid_id(a)} --> {_mermaid_id(b)}")
    print("\n".join(lines))


def dot(g: nx.DiGraph) -> None:
    lines = [f'digraph "{g.graph.get("project", "mlspec")}" {{', "  rankdir=LR;"]
    for nid in topological_order(g):
        lines.append(f'  "{nid}" [shape=box, label="{nid}"];')
    for a, b in sorted(g.edges):
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    print("\n".join(lines))


def json_graph(g: nx.DiGraph) -> None:
    nodes = [node_summary(g, nid) for nid in topological_order(g)]
    edges = [{"from": a, "to": b} for a, b in sorted(g.edges)]
    print(json.dumps({"project": g.graph.get("project"), "nodes": nodes, "edges": edges}, indent=2))
