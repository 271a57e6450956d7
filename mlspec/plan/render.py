"""A Plan for people and for bots: Terraform's terminal language, a PR comment, versioned JSON.

Kept apart from mlspec.plan.diff (SQLMesh's Console split) so every format shows the same data
and a new format never touches the comparison. The JSON schema is docs/plan-json.md; bump
FORMAT_VERSION's major number when a field changes meaning or disappears, the minor one when a
field is added.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.text import Text

from mlspec.plan.diff import (
    BREAKING,
    CATEGORIES,
    AttrChange,
    Impact,
    NodeChange,
    Plan,
    fmt_window,
)

FORMAT_VERSION = "1.0"

SYMBOL = {"add": "+", "remove": "-", "change": "~", "replace": "-/+", "rename": "~"}
STYLE = {"add": "green", "remove": "red", "change": "yellow", "replace": "bold red", "rename": "yellow"}
VERB = {"add": "will be added", "remove": "will be removed", "change": "will be changed",
        "replace": "must be replaced"}
NO_CHANGES = "The compiled specs are equivalent: nothing to recompute, retrain or redeploy."
MAX_NAMES = 8  # features listed per backfill line in text; JSON always lists all


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary_line(plan: Plan) -> str:
    """`Plan: 2 to add, 1 to change, 0 to remove · 1 model to retrain · 3 features to backfill (90d) · API contract: breaking`."""
    n = plan.counts()
    parts = [f"Plan: {n['add']} to add, {n['change']} to change, {n['remove']} to remove"]
    imp = plan.impact
    retrain = sum(1 for r in imp.retrain if not r.new)
    train = len(imp.retrain) - retrain
    if retrain:
        parts.append(f"{_plural(retrain, 'model')} to retrain")
    if train:
        parts.append(f"{_plural(train, 'new model')} to train")
    if imp.backfill:
        window = imp.backfill_window_ms
        shown = "" if window == 0 else f" ({fmt_window(window)})"
        parts.append(f"{_plural(imp.backfill_features, 'feature')} to backfill{shown}")
    if imp.api_contract is not None:
        parts.append(f"API contract: {imp.api_contract}")
    return " · ".join(parts)


def category_counts(plan: Plan) -> dict[str, int]:
    seen = Counter(c.category for c in plan.changes)
    return {cat: seen[cat] for cat in reversed(CATEGORIES)}


def _value(v: str | None) -> str:
    return "(none)" if v is None else v


def _attr_text(a: AttrChange) -> str:
    """`path = old -> new` without the symbol (Terraform's attribute line)."""
    if a.action == "rename":
        return f"{a.path} -> {a.to}"
    if a.action == "change":
        return f"{a.path} = {_value(a.old)} -> {_value(a.new)}"
    value = a.new if a.action == "add" else a.old
    return a.path if value is None else f"{a.path} = {value}"


def _comment(a: AttrChange, node: NodeChange) -> str:
    notes = [x for x in (a.note, a.category if a.category != node.category else None) if x]
    return f"  # {'; '.join(notes)}" if notes else ""


def _over(window_ms: int | None) -> str:
    return "from the latest row" if window_ms == 0 else f"over {fmt_window(window_ms)}"


def _backfill_text(imp: Impact) -> list[tuple[str, str]]:
    rows = []
    for b in imp.backfill:
        names = list(b.features)
        listed = ", ".join(names[:MAX_NAMES]) + (f", … (+{len(names) - MAX_NAMES} more)" if len(names) > MAX_NAMES else "")
        rows.append((b.group, f"{_plural(len(names), 'feature')} {_over(b.window_ms)}: {listed}"
                              f"  ({'; '.join(b.reasons)})"))
    return rows


def _retrain_text(imp: Impact) -> list[tuple[str, str, str]]:
    rows = []
    for r in imp.retrain:
        if r.new:
            rows.append(("train", r.model, "new model: first training, no champion yet"))
        else:
            verdict = ("the champion keeps serving until a new version passes the gate" if r.champion_reusable
                       else "champion cannot be reused")
            rows.append(("retrain", r.model, f"{verdict} ({'; '.join(r.reasons)})"))
    return rows


def impact_rows(plan: Plan) -> list[tuple[str, str]]:
    """(heading, line) pairs of the impact section, shared by the text and Markdown renderings."""
    imp = plan.impact
    counts = category_counts(plan)
    rows = [("changes", ", ".join(f"{n} {cat}" for cat, n in counts.items() if n))]
    rows += [("backfill", f"{group}  {text}") for group, text in _backfill_text(imp)]
    rows += [(head, f"{model}  {text}") for head, model, text in _retrain_text(imp)]
    for api in imp.api:
        rows.append(("API", f"{api.serve}  {'breaking' if api.breaking else 'non-breaking'} ({api.action})"))
        rows += [("", f"  {SYMBOL[f.action]} {_attr_text(f)}") for f in api.fields]
    if imp.api_contract == "unchanged":
        rows.append(("API", "request and response schemas unchanged"))
    if imp.monitors:
        rows.append(("monitors", ", ".join(imp.monitors)))
    if imp.alerts:
        rows.append(("alerts", ", ".join(imp.alerts)))
    rows += [("schedules", f"{s.node}  {s.field} {_value(s.old)} -> {_value(s.new)}") for s in imp.schedules]
    rows += [("targets", f"{t.target}: {', '.join(t.nodes)}") for t in imp.targets]
    return rows


# ---- terminal ----------------------------------------------------------------------------


def text_lines(plan: Plan) -> list[Text]:
    """The plan as styled lines; `.plain` of each is the colourless text the golden cases hold."""
    out = [Text(f"mlspec plan: {plan.base} -> {plan.head}", style="bold"), Text("")]
    if not plan.has_changes:
        out.append(Text.assemble(("No changes. ", "bold green"), NO_CHANGES))
        return out
    out += [Text("mlspec will perform the following actions:"), Text("")]
    for c in plan.changes:
        out.append(Text(f"  # {c.id} {VERB[c.action]} ({c.category})", style="bold" if c.category == BREAKING else ""))
        out.append(Text.assemble((f"{SYMBOL[c.action]:>3} ", STYLE[c.action]), f"{c.kind} {c.name} {{"))
        for a in c.attributes:
            out.append(Text.assemble("      ", (SYMBOL[a.action], STYLE[a.action]), f" {_attr_text(a)}",
                                     (_comment(a, c), "dim")))
        out += [Text("    }"), Text("")]
    out.append(Text("Impact:", style="bold"))
    previous = None
    for head, line in impact_rows(plan):
        shown = "" if head == previous else head
        previous = head or previous
        out.append(Text(f"  {shown:<10} {line}".rstrip()))
    out += [Text(""), Text(summary_line(plan), style="bold")]
    return out


def render_text(plan: Plan) -> str:
    return "\n".join(line.plain for line in text_lines(plan)) + "\n"


def print_text(plan: Plan, console: Console | None = None) -> None:
    """Colour when the console is a terminal (rich honours NO_COLOR and pipes)."""
    console = console or Console(highlight=False, soft_wrap=True)
    for line in text_lines(plan):
        console.print(line)


# ---- Markdown (pull-request comments) ----------------------------------------------------

MARKDOWN_MARKER = "<!-- mlspec-plan -->"  # lets a CI job find and update its own comment


def _code(s: str) -> str:
    return f"`{s.replace('`', '')}`"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _diff_block(c: NodeChange) -> list[str]:
    """A ```diff block: GitHub colours `-` and `+` lines, so old and new read at a glance."""
    lines = [f"  {c.kind} {c.name} {{"]
    for a in c.attributes:
        comment = _comment(a, c)
        if a.action == "rename":
            lines += [f"-   {a.path}" + ("" if a.old is None else f" = {a.old}"),
                      f"+   {a.to}" + ("" if a.new is None else f" = {a.new}") + (comment or "  # renamed")]
        elif a.action == "change":
            lines += [f"-   {a.path} = {_value(a.old)}", f"+   {a.path} = {_value(a.new)}{comment}"]
        else:
            lines.append(f"{SYMBOL[a.action]}   {_attr_text(a)}{comment}")
    return [*lines, "  }"]


def render_markdown(plan: Plan) -> str:
    out = [MARKDOWN_MARKER, f"### mlspec plan: {_code(plan.base)} → {_code(plan.head)}", ""]
    if not plan.has_changes:
        return "\n".join([*out, f"**No changes.** {NO_CHANGES}", ""])
    verdict = "**breaking**" if plan.breaking else "no breaking changes"
    out += [f"**{_cell(summary_line(plan))}** — {verdict}", "",
            "| | node | action | category |", "|:-:|---|---|---|"]
    for c in plan.changes:
        category = f"**{c.category}**" if c.category == BREAKING else c.category
        out.append(f"| `{SYMBOL[c.action]}` | {_code(c.id)} | {c.action} | {category} |")
    out += ["", "| impact | |", "|---|---|"]
    previous = None
    for head, line in impact_rows(plan):
        out.append(f"| {'' if head == previous else head} | {_cell(line.strip())} |")
        previous = head or previous
    out.append("")
    for c in plan.changes:
        out += [f"<details><summary><code>{SYMBOL[c.action]} {c.id}</code> · {c.action} · {c.category}</summary>",
                "", "```diff", *_diff_block(c), "```", "", "</details>", ""]
    return "\n".join(out)


# ---- JSON (bots) -------------------------------------------------------------------------


def _attr_data(a: AttrChange) -> dict[str, Any]:
    return {"path": a.path, "action": a.action, "old": a.old, "new": a.new, "category": a.category, "to": a.to,
            "note": a.note}


def plan_data(plan: Plan) -> dict[str, Any]:
    """The plan as the documented JSON object (docs/plan-json.md)."""
    imp = plan.impact
    n = plan.counts()
    retrain = sum(1 for r in imp.retrain if not r.new)
    window = imp.backfill_window_ms if imp.backfill else None
    return {
        "format_version": FORMAT_VERSION,
        "base": plan.base,
        "head": plan.head,
        "has_changes": plan.has_changes,
        "breaking": plan.breaking,
        "summary": {
            **n,
            "categories": category_counts(plan),
            "models_to_retrain": retrain,
            "models_to_train": len(imp.retrain) - retrain,
            "features_to_backfill": imp.backfill_features,
            "backfill_window_ms": window,
            "backfill_window": fmt_window(imp.backfill_window_ms) if imp.backfill else None,
            "api_contract": imp.api_contract,
            "line": summary_line(plan),
        },
        "changes": [{"id": c.id, "kind": c.kind, "name": c.name, "action": c.action, "category": c.category,
                     "attributes": [_attr_data(a) for a in c.attributes]} for c in plan.changes],
        "impact": {
            "backfill": [{"group": b.group, "features": list(b.features), "window_ms": b.window_ms,
                          "window": fmt_window(b.window_ms), "reasons": list(b.reasons)} for b in imp.backfill],
            "retrain": [{"model": r.model, "new": r.new, "champion_reusable": r.champion_reusable,
                         "reasons": list(r.reasons)} for r in imp.retrain],
            "api": [{"serve": a.serve, "action": a.action, "breaking": a.breaking,
                     "fields": [_attr_data(f) for f in a.fields]} for a in imp.api],
            "monitors": list(imp.monitors),
            "alerts": list(imp.alerts),
            "schedules": [{"node": s.node, "field": s.field, "old": s.old, "new": s.new} for s in imp.schedules],
            "targets": [{"target": t.target, "nodes": list(t.nodes)} for t in imp.targets],
        },
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_data(plan), indent=2, ensure_ascii=False) + "\n"
