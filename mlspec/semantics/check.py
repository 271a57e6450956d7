"""AST modules -> checked IR Spec, with every diagnostic found."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from pathlib import Path

from mlspec.diagnostics import Diagnostic
from mlspec.ir.spec import Spec
from mlspec.semantics.context import Collector
from mlspec.semantics.data_decls import FeatureLowering, lower_entity, lower_label, lower_project, lower_source
from mlspec.semantics.ops_decls import lower_alert, lower_check, lower_model, lower_monitor, lower_serve
from mlspec.semantics.rules import RULES
from mlspec.syntax import ast


def _by_name(decls: Sequence[ast.Decl], kind: str, out: Collector) -> dict[str, ast.Decl]:
    seen: dict[str, ast.Decl] = {}
    for d in decls:
        if d.kind != kind:
            continue
        if d.name in seen:
            first = seen[d.name].name_span
            out.error("E103", f"{kind} `{d.name}` is declared twice", d.name_span,
                      f"first declared at {first.file}:{first.line}:{first.col}")
            continue
        seen[d.name] = d
    return seen


def _mark_broken(out: Collector, kind: str, declared: Mapping[str, ast.Decl], lowered: Container[str]) -> None:
    """Declarations that failed have reported why; references to them stay quiet."""
    out.broken.update(f"{kind}:{n}" for n in declared if n not in lowered)


def check_modules(modules: Sequence[ast.Module]) -> tuple[Spec | None, list[Diagnostic]]:
    """Resolve names, infer types and apply every rule. The Spec is None when there are errors."""
    out = Collector()
    decls = [d for m in modules for d in m.decls]
    projects = _by_name(decls, "project", out)
    if len(projects) > 1:
        extra = list(projects.values())[1]
        out.error("E103", "a spec has one project", extra.name_span)
    default_name = Path(modules[0].file).stem if modules else "project"
    project = lower_project(next(iter(projects.values()), None), default_name, out)

    source_decls = _by_name(decls, "source", out)
    sources = {n: s for n, d in source_decls.items() if (s := lower_source(d, out))}
    _mark_broken(out, "source", source_decls, sources)
    entity_decls = _by_name(decls, "entity", out)
    entities = {n: e for n, d in entity_decls.items() if (e := lower_entity(d, out))}
    _mark_broken(out, "entity", entity_decls, entities)
    label_decls = _by_name(decls, "label", out)
    labels = {n: x for n, d in label_decls.items() if (x := lower_label(d, sources, entities, out))}
    _mark_broken(out, "label", label_decls, labels)
    group_decls = _by_name(decls, "features", out)
    lowering = FeatureLowering(group_decls, sources, entities, out)
    groups = {g.name: g for g in lowering.run()}
    _mark_broken(out, "features", group_decls, groups)
    out.broken.update(f"feature:{g}.{n}" for (g, n), f in lowering.done.items() if f is None)
    checks = [c for d in _by_name(decls, "check", out).values() if (c := lower_check(d, sources, groups, out))]
    model_decls = _by_name(decls, "model", out)
    models = {n: m for n, d in model_decls.items() if (m := lower_model(d, groups, labels, out))}
    _mark_broken(out, "model", model_decls, models)
    alert_decls = _by_name(decls, "alert", out)
    alerts = [a for d in alert_decls.values() if (a := lower_alert(d, out))]
    serves = [sv for d in _by_name(decls, "serve", out).values() if (sv := lower_serve(d, models, sources, out))]
    monitors = [mon for d in _by_name(decls, "monitor", out).values()
                if (mon := lower_monitor(d, models, groups, sources, set(alert_decls), out))]

    spec = Spec(project, tuple(sources.values()), tuple(entities.values()), tuple(groups.values()),
                tuple(labels.values()), tuple(checks), tuple(models.values()), tuple(serves), tuple(monitors),
                tuple(alerts), tuple(m.file for m in modules))
    if not out.has_errors:
        for rule in RULES:
            rule(spec, out)
    return (None if out.has_errors else spec), out.diagnostics
