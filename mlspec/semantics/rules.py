"""Whole-spec rules, one function each, run in order after lowering (listed in RULES)."""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from mlspec.ir import expr as ir
from mlspec.ir.spec import Spec
from mlspec.semantics.context import Collector


def label_columns_not_features(spec: Spec, out: Collector) -> None:
    """A feature that reads a label's value column would hand the model its answer."""
    for label in spec.labels:
        for g in spec.groups:
            if g.source != label.source:
                continue
            for f in g.features:
                if any(isinstance(n, ir.Col) and n.name == label.value for n in ir.walk(f.expr)):
                    out.error("E142", f"feature `{f.qualified}` reads `{label.value}`, the value of label "
                              f"`{label.name}`: the model would see its own answer", f.span,
                              "features must not be computed from the label column")


def no_group_cycles(spec: Spec, out: Collector) -> None:
    """Groups run as units, so references between groups must form a DAG."""
    graph = nx.DiGraph()
    for g in spec.groups:
        graph.add_node(g.name)
        for f in g.features:
            for n in ir.walk(f.expr):
                if isinstance(n, ir.FeatureRef) and n.group != g.name:
                    graph.add_edge(n.group, g.name, span=n.span)
    # Each cycle starts at its smallest name and cycles are sorted, so the report is stable run to run.
    cycles = sorted(c[c.index(min(c)):] + c[:c.index(min(c))] for c in nx.simple_cycles(graph))
    for cycle in cycles:
        first = cycle[0]
        span = spec.group(first).span
        out.error("E130", "feature groups depend on each other in a cycle: " + " -> ".join([*cycle, first]),
                  span, "move the shared features into one group")


def references_exist(spec: Spec, out: Collector) -> None:
    names = {s.name: s for s in spec.sources}
    for s in spec.sources:
        for c in s.columns:
            if c.references is None:
                continue
            target, col = c.references
            if target not in names:
                out.unknown("source", target, c.span, names)
            elif names[target].column(col) is None:
                out.unknown("column", col, c.span, [x.name for x in names[target].columns], where=f"source `{target}`")


def timeless_sources_warned(spec: Spec, out: Collector) -> None:
    for g in spec.groups:
        src = spec.source(g.source)
        if src.timestamp is None and not g.request:
            out.warning("W200", f"source `{src.name}` has no timestamp, so features `{g.name}` treat its rows as "
                        "known at every time", g.span,
                        f"add `timestamp = <column>` to source `{src.name}` to make them point-in-time")


def request_groups_match_labels(spec: Spec, out: Collector) -> None:
    """Request features are computed on the label's own event row in training: also when a model
    reads them through another group's features (training would have no event row to read)."""
    groups = {g.name: g for g in spec.groups}
    reads = {g.name: [n.group for f in g.features for n in ir.walk(f.expr)
                      if isinstance(n, ir.FeatureRef) and n.group != g.name and n.group in groups]
             for g in spec.groups}
    reported: set[tuple[str, str]] = set()
    for m in spec.models:
        label = spec.label(m.label)
        direct = list(dict.fromkeys(q.split(".")[0] for q in m.features if q.split(".")[0] in groups))
        via: dict[str, str] = {name: name for name in direct}  # group -> the model's group that reads it
        queue = list(direct)
        while queue:  # every group the model's features read, directly or through others
            name = queue.pop(0)
            for up in reads[name]:
                if up not in via:
                    via[up] = via[name]
                    queue.append(up)
        for name, through in via.items():
            g = groups[name]
            if not g.request or g.source == label.source or (name, label.name) in reported:
                continue
            reported.add((name, label.name))
            hint = "in training, request features are read from the label's own event rows"
            if through != name:
                hint += f" (model `{m.name}` reads them through `{through}`)"
            out.error("E142", f"request features `{g.name}` come from `{g.source}`, but label `{label.name}` "
                      f"comes from `{label.source}`", g.span, hint)


RULES: tuple[Callable[[Spec, Collector], None], ...] = (
    label_columns_not_features,
    no_group_cycles,
    references_exist,
    timeless_sources_warned,
    request_groups_match_labels,
)
