"""Plan as data: two compiled specs in, their differences and what those differences cost out.

Why on the IR and not the text: layout, comments and declaration order never change what runs,
so they must never show in a review. Each declaration becomes a *view* (attribute path -> value
compared as plain IR data, plus its spelling for people); views are diffed key by key, so named
things (features, columns, params, rules) are matched by name, not position. The DAG's hashes
are the fast path: a node whose definition and metadata hashes match is skipped unread.

Every attribute change gets a category (SQLMesh's idea, mlspec's definitions):
- breaking: downstream must recompute (a feature's expression or window, a source's schema, a
  label, a model's inputs or params) or a consumer loses what it reads (a serve's output);
- non-breaking: nothing existing recomputes (a new feature no model uses yet, a new check, a
  gate or monitor threshold, a schedule);
- metadata-only: owner, description, alert sinks and alert routing.
Then impact is followed through the graph: features to backfill and over what window, models
to retrain (and whether their champion can still serve), the realtime API contract, monitors,
alerts, schedules, and which generated targets' files change. Rendering is mlspec.plan.render.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mlspec.ir import expr as ir
from mlspec.ir.serialize import JSON, canonical_json, to_data
from mlspec.ir.spec import (
    Alert,
    Check,
    ColumnDef,
    Entity,
    Feature,
    FeatureGroup,
    Label,
    Model,
    Monitor,
    MonitorRule,
    Project,
    SecretRef,
    Serve,
    Source,
    Spec,
)
from mlspec.ir.types import DType
from mlspec.syntax import ast
from mlspec.syntax.fmt import format_expr, quote

BREAKING, NON_BREAKING, METADATA = "breaking", "non-breaking", "metadata-only"
CATEGORIES = (METADATA, NON_BREAKING, BREAKING)  # least to most severe
NODE_ACTIONS = ("add", "remove", "change", "replace")
PLAN_KINDS = ("project", "entity", "source", "check", "features", "label", "model", "gate", "serve", "monitor", "alert")
TARGETS = ("airflow", "k8s", "docker", "dvc")

Snapshot = tuple[Spec, Any]  # (spec, networkx DAG) of a clean compile

# ---- the plan, as data ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttrChange:
    """One attribute, old -> new, each in the spec's own spelling (None when absent)."""

    path: str  # "mode", "params.max_depth", "features.spend_90d", "rules[psi(features) >].threshold"
    action: str  # "add" | "remove" | "change" | "rename"
    old: str | None
    new: str | None
    category: str
    to: str | None = None  # rename: the new path
    note: str | None = None  # "forces replacement", "renamed; expression unchanged", ...


@dataclass(frozen=True, slots=True)
class NodeChange:
    id: str  # "kind:name", as in the DAG
    kind: str
    name: str
    action: str  # "add" | "remove" | "change" | "replace"
    category: str
    attributes: tuple[AttrChange, ...]


@dataclass(frozen=True, slots=True)
class Backfill:
    """A feature group whose values change, and how far back the source must be read again."""

    group: str
    features: tuple[str, ...]
    window_ms: int | None  # largest window of these features; None = all history, 0 = latest row only
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Retrain:
    model: str
    new: bool  # a new model: trained for the first time, no champion yet
    champion_reusable: bool  # False when the champion's inputs changed: it cannot keep serving
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApiChange:
    """The request/response contract of one realtime serve: request = entity key + request-group
    columns, response = prediction + model version."""

    serve: str
    action: str  # "add" | "remove" | "change"
    breaking: bool  # would an existing client break?
    fields: tuple[AttrChange, ...]


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    node: str
    field: str  # "schedule" | "retrain_every"
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class TargetChange:
    target: str  # one of TARGETS
    nodes: tuple[str, ...]  # the changes that touch its generated files


@dataclass(frozen=True, slots=True)
class Impact:
    backfill: tuple[Backfill, ...] = ()
    retrain: tuple[Retrain, ...] = ()
    api: tuple[ApiChange, ...] = ()
    realtime: bool = False  # a realtime serve exists on either side, so "unchanged" is a statement
    monitors: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    schedules: tuple[ScheduleChange, ...] = ()
    targets: tuple[TargetChange, ...] = ()

    @property
    def backfill_features(self) -> int:
        return sum(len(b.features) for b in self.backfill)

    @property
    def backfill_window_ms(self) -> int | None:
        """The largest window over every backfill (None = all history)."""
        if any(b.window_ms is None for b in self.backfill):
            return None
        return max((b.window_ms or 0 for b in self.backfill), default=0)

    @property
    def api_contract(self) -> str | None:
        """"breaking", "non-breaking", "unchanged" (realtime serves exist, none changed) or None."""
        if any(a.breaking for a in self.api):
            return BREAKING
        if self.api:
            return NON_BREAKING
        return "unchanged" if self.realtime else None


@dataclass(frozen=True, slots=True)
class Plan:
    base: str  # what was compared: labels for people, e.g. "HEAD:specs/churn.mlspec"
    head: str
    changes: tuple[NodeChange, ...]
    impact: Impact = field(default_factory=Impact)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def breaking(self) -> bool:
        return any(c.category == BREAKING for c in self.changes) or self.impact.api_contract == BREAKING

    def counts(self) -> dict[str, int]:
        """Terraform's counting: a replacement is one to add and one to remove."""
        n = {a: sum(1 for c in self.changes if c.action == a) for a in NODE_ACTIONS}
        return {"add": n["add"] + n["replace"], "change": n["change"], "remove": n["remove"] + n["replace"],
                "replace": n["replace"]}


# ---- spelling: IR back to spec text (display only; comparison never reads it) ------------


def fmt_duration(ms: int | float) -> str:
    """The largest whole unit, as specs write it: 90d, 24h, 26h, 15m, 250ms (days from 2d up)."""
    ms = int(ms)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms and ms % size == 0 and (unit != "d" or ms >= 2 * size):
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def fmt_window(window_ms: int | None) -> str:
    return "all history" if window_ms is None else "latest row" if window_ms == 0 else fmt_duration(window_ms)


def _num(v: int | float | str | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _to_ast(e: ir.Expr, group: str | None) -> ast.Expr:
    """The AST a spec author would write for this IR, so the canonical printer can spell it."""
    match e:
        case ir.Lit(value=v, dtype=DType.DURATION) if isinstance(v, int):
            return ast.Duration(v, fmt_duration(v))
        case ir.Lit(value=v):
            return ast.Literal(v, "")
        case ir.Col(name=n):
            return ast.Ref((n,))
        case ir.FeatureRef(group=g, name=n):
            return ast.Ref((n,) if g == group else (g, n))
        case ir.AsOf():
            return ast.Ref(("as_of",))
        case ir.BinOp(op=op, left=left, right=right):
            return ast.Binary(op, _to_ast(left, group), _to_ast(right, group))
        case ir.UnaryOp(op=op, operand=x):
            return ast.Unary(op, _to_ast(x, group))
        case ir.IsNull(operand=x, negated=neg):
            return ast.IsNull(_to_ast(x, group), neg)
        case ir.InList(operand=x, values=vs, negated=neg):
            return ast.InList(_to_ast(x, group), tuple(_to_ast(v, group) for v in vs), neg)
        case ir.CaseWhen(whens=ws, otherwise=o):
            return ast.Case(tuple(ast.When(_to_ast(c, group), _to_ast(r, group)) for c, r in ws),
                            None if o is None else _to_ast(o, group))
        case ir.Func(name=name, args=args):
            return ast.Call(name, tuple(_to_ast(a, group) for a in args))
        case ir.Agg(fn=fn, arg=arg, window_ms=w):
            parts: list[ast.Expr] = [] if arg is None else [_to_ast(arg, group)]
            if w is not None:
                parts.append(ast.Window(ast.Duration(w, fmt_duration(w))))
            return ast.Call(fn, tuple(parts))
    raise TypeError(f"not an IR expression: {e!r}")


def expr_text(e: ir.Expr, group: str | None = None) -> str:
    """Canonical spec text of an expression; references into `group` are written unqualified."""
    return format_expr(_to_ast(e, group))


def column_text(c: ColumnDef) -> str:
    parts = [c.type_name]
    if c.not_null:
        parts.append("not null")
    if c.unique:
        parts.append("unique")
    if c.allowed is not None:
        parts.append("in (" + ", ".join(_num(v) for v in c.allowed) + ")")
    if c.value_range is not None:
        parts.append(f"range [{_num(c.value_range[0])}, {_num(c.value_range[1])}]")
    if c.references is not None:
        parts.append(f"references {c.references[0]}.{c.references[1]}")
    return " ".join(parts)


def _secret(v: SecretRef | str) -> str:
    return f"env({quote(v.env)})" if isinstance(v, SecretRef) else quote(v)


_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w)?(?![\w.])')


def _shape(text: str) -> str:
    """A rule with its numbers blanked: `amount >= _`, so a new threshold pairs with the old rule."""
    return _NUMBER.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "_", text)


# ---- views: one declaration as attribute path -> (compared value, spelling) ----------------


@dataclass(frozen=True, slots=True)
class _Leaf:
    value: Any  # compared: IR objects or plain IR data, never text
    shown: str | Callable[[], str] | None  # spelled (lazily for expressions); None for members of a set


@dataclass(frozen=True, slots=True)
class _Composite:
    """A keyed element diffed field by field (a monitor rule); added or removed whole."""

    fields: dict[str, _Leaf]
    shown: str


View = dict[str, _Leaf | _Composite]


def _shown(item: _Leaf | _Composite) -> str | None:
    return item.shown() if callable(item.shown) else item.shown


def _put(view: dict[str, Any], key: str, value: Any, shown: str | Callable[[], str] | None) -> None:
    if value is not None and value is not False:  # absent and off are the same: `+ x` when it appears
        view[key] = _Leaf(value, shown)


def _keyed(view: View, key: str, item: _Leaf | _Composite) -> None:
    """Insert under a unique key: a second `auc >=` gate rule becomes `auc >= #2`."""
    k, n = key, 1
    while k in view:
        n += 1
        k = f"{key} #{n}"
    view[k] = item


def _renamed(data: JSON, renames: Mapping[str, str]) -> JSON:
    """Plain expression data with feature references renamed, so `a / b` is unchanged when b is renamed."""
    if isinstance(data, dict):
        if data.get("kind") == "FeatureRef":
            q = renames.get(f"{data['group']}.{data['name']}")
            if q is not None:
                group, name = q.split(".", 1)
                return {**data, "group": group, "name": name}
        return {k: _renamed(v, renames) for k, v in data.items()}
    if isinstance(data, list):
        return [_renamed(v, renames) for v in data]
    return data


def _feature_value(f: Feature, renames: Mapping[str, str] | None) -> Any:
    """IR objects compare as they are (spans never count); with renames in play, as renamed data."""
    if renames is None:
        return (f.expr, f.dtype, f.kind)
    data = {"expr": to_data(f.expr), "dtype": f.dtype.value, "kind": f.kind}
    return _renamed(data, renames) if renames else data


def _project(p: Project, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    _put(v, "owner", p.owner, None if p.owner is None else quote(p.owner))
    _put(v, "description", p.description, None if p.description is None else quote(p.description))
    _put(v, "online_store", p.online_store, p.online_store)
    if p.online_store_url is not None:
        _put(v, "online_store_url", to_data(p.online_store_url), _secret(p.online_store_url))
    return v


def _entity(e: Entity, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    _put(v, "key", e.key, e.key)
    return v


def _source(s: Source, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    for name in ("format", "key", "timestamp"):
        _put(v, name, getattr(s, name), getattr(s, name))
    for name in ("path", "table", "stream"):
        value = getattr(s, name)
        _put(v, name, value, None if value is None else quote(value))
    if s.freshness_ms is not None:
        _put(v, "freshness", s.freshness_ms, fmt_duration(s.freshness_ms))
    for col in s.columns:
        _put(v, f"columns.{col.name}", to_data(col), column_text(col))
    return v


def _rename_words(text: str, renames: Mapping[str, str]) -> str:
    """Rule text with renamed names replaced, so a rule keeps its key when a feature it reads is renamed."""
    for old, new in renames.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, text)
    return text


def _check(c: Check, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    _put(v, "target", [c.target_kind, c.target], f"{c.target_kind} {c.target}")
    on_fail = ", ".join(dict.fromkeys(r.on_fail for r in c.rules))
    _put(v, "on_fail", on_fail or None, on_fail)
    local = {o.split(".", 1)[1]: n.split(".", 1)[1] for o, n in (renames or {}).items()
             if c.target_kind == "features" and o.split(".", 1)[0] == c.target}
    for r in c.rules:
        key = _shape(_rename_words(r.text, local) if local else r.text)
        _keyed(v, f"rules[{key}]", _Leaf({"expr": to_data(r.expr), "level": r.level}, r.text))
    return v


def _features(g: FeatureGroup, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    _put(v, "entity", g.entity, g.entity)
    _put(v, "from", g.source, g.source)
    _put(v, "request", g.request, "true")
    _put(v, "description", g.description, None if g.description is None else quote(g.description))
    for f in g.features:
        _put(v, f"features.{f.name}", _feature_value(f, renames), partial(expr_text, f.expr, g.name))
    return v


def _label(lab: Label, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    for key, value in (("entity", lab.entity), ("from", lab.source), ("value", lab.value),
                       ("timestamp", lab.timestamp), ("dtype", lab.dtype.value)):
        _put(v, key, value, value)
    return v


def _model(m: Model, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    for name in ("algorithm", "task", "label", "entity", "segment"):
        _put(v, name, getattr(m, name), getattr(m, name))
    _put(v, "threshold", m.threshold, _num(m.threshold))
    sp = m.split
    split = (f"by_time(test_from = {quote(sp.test_from or '')})" if sp.kind == "time"
             else f"random(test = {_num(sp.test_fraction)}, seed = {sp.seed})")
    _put(v, "split", to_data(sp), split)
    for k, value in m.params:
        _put(v, f"params.{k}", value, _num(value))
    for q in m.features:
        _put(v, f"features.{q}", True, None)
    return v


def _gate(m: Model, renames: Mapping[str, str] | None) -> View:
    """The gate's rules live in the model IR but judge without retraining, so they get their own node."""
    v: View = {}
    for r in m.gate:
        rhs = (f"champion.{r.metric} {'-' if r.threshold < 0 else '+'} {_num(abs(r.threshold))}"
               if r.vs_champion else _num(r.threshold))
        key = f"rules[{r.metric} {r.op}{f' champion.{r.metric}' if r.vs_champion else ''}]"
        _keyed(v, key, _Leaf([r.threshold, r.vs_champion], rhs))
    return v


def _serve(s: Serve, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    for name in ("model", "mode", "shadow"):
        _put(v, name, getattr(s, name), getattr(s, name))
    for name in ("schedule", "output", "input_stream", "output_stream"):
        value = getattr(s, name)
        _put(v, name, value, None if value is None else quote(value))
    if s.latency_p99_ms is not None:
        _put(v, "latency_p99", s.latency_p99_ms, fmt_duration(s.latency_p99_ms))
    if s.replicas is not None:
        _put(v, "replicas", list(s.replicas), f"{s.replicas[0]}..{s.replicas[1]}")
    return v


def _rule_head(r: MonitorRule) -> str:
    """What a monitor rule watches, as written: `psi(features)`, `latency_p99`."""
    return " ".join(r.text.split(f" {r.op} ", 1)[0].split())


def _monitor_rule(r: MonitorRule, renames: Mapping[str, str] | None) -> tuple[str, _Composite]:
    """Keyed by what it watches (`psi(features) >`); threshold, window, actions, subject are fields."""
    head = _rule_head(r)
    threshold = fmt_duration(r.threshold) if r.kind in ("latency", "freshness") else _num(r.threshold)
    actions = ", ".join(a.kind if a.kind == "retrain" else f"alert({', '.join(a.targets)})" for a in r.actions)
    fields: dict[str, _Leaf] = {}
    _put(fields, "threshold", r.threshold, threshold)
    if r.window_ms is not None:
        _put(fields, "over", r.window_ms, fmt_duration(r.window_ms))
    _put(fields, "actions", to_data(r.actions), actions)
    for x in r.subject:
        _put(fields, f"subject.{x}", True, None)
    over = f" over {fmt_duration(r.window_ms)}" if r.window_ms is not None else ""
    key = _rename_words(head, renames) if renames else head
    return f"rules[{key} {r.op}]", _Composite(fields, f"{head} {r.op} {threshold}{over} -> {actions}")


def _monitor(mon: Monitor, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    _put(v, "model", mon.model, mon.model)
    if mon.retrain_every_ms is not None:
        _put(v, "retrain_every", mon.retrain_every_ms, fmt_duration(mon.retrain_every_ms))
    for r in mon.rules:
        _keyed(v, *_monitor_rule(r, renames))
    return v


def _alert(a: Alert, renames: Mapping[str, str] | None) -> View:
    v: View = {}
    if a.webhook is not None:
        _put(v, "webhook", to_data(a.webhook), _secret(a.webhook))
    _put(v, "file", a.file, None if a.file is None else quote(a.file))
    _put(v, "log", a.log, "true")
    _put(v, "slack", a.slack, "true")
    _put(v, "dedupe", a.dedupe_ms, fmt_duration(a.dedupe_ms))
    return v


_VIEWS: dict[str, Callable[[Any, Mapping[str, str] | None], View]] = {
    "project": _project, "entity": _entity, "source": _source, "check": _check, "features": _features,
    "label": _label, "model": _model, "gate": _gate, "serve": _serve, "monitor": _monitor, "alert": _alert,
}


def _generic(obj: Any, renames: Mapping[str, str] | None) -> View:
    """A node kind this module does not know yet: its top-level IR fields, compared as data."""
    v: View = {}
    data = to_data(obj)
    for key, value in data.items() if isinstance(data, dict) else ():
        if key not in ("name", "kind", "node"):
            _put(v, key, value, canonical_json(value))
    return v


def _view(kind: str, obj: Any, renames: Mapping[str, str] | None) -> View:
    """A declaration as attributes. `renames` rewrites the old side's feature references (the new
    side passes {}); None, when nothing was renamed, compares IR objects directly (faster)."""
    return _VIEWS.get(kind, _generic)(obj, renames)


@dataclass(frozen=True, slots=True)
class _Raw:
    path: str
    action: str
    old: str | None
    new: str | None


def _whole(view: View, action: str) -> list[_Raw]:
    """Every attribute of a node that is added or removed as a whole (Terraform lists them all)."""
    out = []
    for key, item in view.items():
        shown = _shown(item)
        out.append(_Raw(key, action, shown if action == "remove" else None, shown if action == "add" else None))
    return out


def _diff_views(old: Mapping[str, _Leaf | _Composite], new: Mapping[str, _Leaf | _Composite],
                prefix: str = "") -> list[_Raw]:
    out: list[_Raw] = []
    for key, n in new.items():
        path = f"{prefix}{key}"
        o = old.get(key)
        if o is None:
            out.append(_Raw(path, "add", None, _shown(n)))
        elif isinstance(o, _Composite) and isinstance(n, _Composite):
            out.extend(_diff_views(o.fields, n.fields, f"{path}."))
        elif isinstance(o, _Leaf) and isinstance(n, _Leaf) and o.value != n.value:
            out.append(_Raw(path, "change", _shown(o), _shown(n)))
    out.extend(_Raw(f"{prefix}{key}", "remove", _shown(o), None) for key, o in old.items() if key not in new)
    return out


# ---- nodes and their categories ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str
    name: str
    obj: Any
    hash: str | None  # definition + metadata hash from the DAG (None: compare views)


@dataclass
class _Side:
    spec: Spec | None
    nodes: dict[str, _Node]

    @classmethod
    def of(cls, snap: Snapshot | None) -> _Side:
        if snap is None:
            return cls(None, {})
        spec, dag = snap
        nodes = {f"project:{spec.project.name}": _Node("project", spec.project.name, spec.project, None)}
        nodes.update({f"entity:{e.name}": _Node("entity", e.name, e, None) for e in spec.entities})
        for nid, attrs in dag.nodes(data=True):
            kind, name = attrs["kind"], attrs["name"]
            if kind == "dataset":  # derived from its model alone: a model change says it all
                continue
            src = dag.nodes[f"model:{name}"] if kind == "gate" else attrs  # gate rules live in the model
            nodes[nid] = _Node(kind, name, src["ir"], src["data_hash"] + src["metadata_hash"])
        return cls(spec, nodes)

    @property
    def models(self) -> tuple[Model, ...]:
        return self.spec.models if self.spec else ()


_REPLACES: dict[str, frozenset[str]] = {
    "features": frozenset({"entity", "request"}), "label": frozenset({"entity"}),
    "model": frozenset({"task", "label", "entity"}), "serve": frozenset({"mode"}), "check": frozenset({"target"}),
    "monitor": frozenset({"model"}),
}
# Category of a changed attribute by its first path segment; "*" covers the rest of the kind.
_FIELD_CATEGORY: dict[str, dict[str, str]] = {
    "project": {"*": METADATA, "online_store": NON_BREAKING, "online_store_url": NON_BREAKING},
    "entity": {"*": BREAKING},
    "source": {"*": BREAKING, "freshness": NON_BREAKING, "stream": NON_BREAKING},
    "check": {"*": NON_BREAKING},
    "features": {"*": BREAKING, "description": METADATA},
    "label": {"*": BREAKING},
    "model": {"*": BREAKING, "segment": NON_BREAKING, "threshold": NON_BREAKING},
    "gate": {"*": NON_BREAKING},
    "serve": {"*": NON_BREAKING, "model": BREAKING, "mode": BREAKING, "output": BREAKING,
              "input_stream": BREAKING, "output_stream": BREAKING},
    "monitor": {"*": NON_BREAKING},
    "alert": {"*": METADATA},
}
_NODE_ADDED = {"alert": METADATA}
_NODE_REMOVED = {"model": BREAKING, "gate": BREAKING, "serve": BREAKING, "alert": METADATA}


def _head(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _worst(categories: Iterable[str]) -> str:
    return max(categories, key=CATEGORIES.index, default=METADATA)


@dataclass
class _Context:
    old: _Side
    new: _Side
    renames: dict[str, str]  # qualified feature name, old -> new
    used_new: set[str] = field(init=False)
    used_old: set[str] = field(init=False)

    def __post_init__(self) -> None:
        both = {m.name for m in self.old.models} & {m.name for m in self.new.models}
        # features read by a model that exists on both sides: adding or dropping one retrains it
        self.used_new = {q for m in self.new.models if m.name in both for q in m.features}
        self.used_old = {q for m in self.old.models if m.name in both for q in m.features}

    def attr_category(self, kind: str, group: str, raw: _Raw, to: str | None = None) -> str:
        head = _head(raw.path)
        if kind == "features" and head == "features":
            if raw.action == "change":
                return BREAKING
            old_q = f"{group}.{raw.path.split('.', 1)[1]}"
            new_q = f"{group}.{(to or raw.path).split('.', 1)[1]}"
            used = ((raw.action != "add" and old_q in self.used_old)
                    or (raw.action != "remove" and new_q in self.used_new))
            return BREAKING if used else NON_BREAKING  # "a new feature no model uses yet" recomputes nothing
        if kind == "source" and head == "columns" and raw.action == "add":
            constrained = " " in (raw.new or "")  # column_text adds a word per constraint after the type
            return BREAKING if constrained else NON_BREAKING  # an unconstrained column changes no row
        if kind == "monitor" and raw.path.endswith(".actions"):
            return METADATA  # alert routing
        table = _FIELD_CATEGORY.get(kind, {"*": BREAKING})  # unknown kinds: assume the worst
        return table.get(head, table["*"])

    def node_category(self, kind: str, name: str, action: str) -> str:
        if kind == "features":
            used = self.used_new if action == "add" else self.used_old
            return BREAKING if any(q.split(".", 1)[0] == name for q in used) else NON_BREAKING
        table = _NODE_ADDED if action == "add" else _NODE_REMOVED
        return table.get(kind, NON_BREAKING)


def _pair_renames(kind: str, name: str, raws: list[_Raw], renames: Mapping[str, str]) -> list[_Raw | AttrChange]:
    """Fold `- a` + `+ b` into one rename when b is a's new name (a group's own feature, a model's
    feature, a monitor subject)."""
    pairs: dict[str, str] = {}
    for old_q, new_q in renames.items():
        if kind == "features" and old_q.split(".", 1)[0] == name:
            pairs[f"features.{old_q.split('.', 1)[1]}"] = f"features.{new_q.split('.', 1)[1]}"
    suffixes = [(f".{o}", f".{n}") for o, n in renames.items()]
    added = {r.path: r for r in raws if r.action == "add"}
    used: set[str] = set()
    out: list[_Raw | AttrChange] = []
    for r in raws:
        target = None
        if r.action == "remove":
            target = pairs.get(r.path)
            if target is None:
                target = next((r.path[: -len(so)] + sn for so, sn in suffixes if r.path.endswith(so)
                               and r.path[: -len(so)] + sn in added), None)
        if target is not None and target in added and target not in used:
            used.add(target)
            note = "renamed; expression unchanged" if r.path in pairs else "renamed"
            out.append(AttrChange(r.path, "rename", r.old, added[target].new, "", to=target, note=note))
        else:
            out.append(r)
    return [x for x in out if not (isinstance(x, _Raw) and x.action == "add" and x.path in used)]


def _diff_node(ctx: _Context, nid: str, o: _Node | None, n: _Node | None) -> NodeChange | None:
    node = n or o
    assert node is not None
    kind, name = node.kind, node.name
    if o is not None and n is not None:
        if o.hash is not None and o.hash == n.hash:
            return None
        renames = ctx.renames or None
        raws = _diff_views(_view(kind, o.obj, renames), _view(kind, n.obj, {} if renames else None))
        if not raws:
            return None
        attrs: list[AttrChange] = []
        replace = False
        for r in _pair_renames(kind, name, raws, ctx.renames):
            if isinstance(r, AttrChange):
                category = ctx.attr_category(kind, name, _Raw(r.path, "rename", r.old, r.new), r.to)
                attrs.append(AttrChange(r.path, r.action, r.old, r.new, category, r.to, r.note))
                continue
            forces = _head(r.path) in _REPLACES.get(kind, frozenset())
            replace = replace or forces
            attrs.append(AttrChange(r.path, r.action, r.old, r.new, ctx.attr_category(kind, name, r),
                                    note="forces replacement" if forces else None))
        return NodeChange(nid, kind, name, "replace" if replace else "change",
                          _worst(a.category for a in attrs), tuple(attrs))
    action = "add" if n is not None else "remove"
    category = ctx.node_category(kind, name, action)
    raws = _whole(_view(kind, node.obj, None), action)
    return NodeChange(nid, kind, name, action, category,
                      tuple(AttrChange(r.path, r.action, r.old, r.new, category) for r in raws))


def feature_renames(old: Spec | None, new: Spec | None) -> dict[str, str]:
    """Features that disappeared and reappeared under another name in the same group with the
    same expression (modulo earlier renames), qualified old -> new. Matched in spec order."""
    if old is None or new is None:
        return {}
    renames: dict[str, str] = {}
    old_groups = {g.name: g for g in old.groups}
    progress = True
    while progress:
        progress = False
        for g in new.groups:
            og = old_groups.get(g.name)
            if og is None:
                continue
            new_names, old_names = {f.name for f in g.features}, {f.name for f in og.features}
            taken = set(renames.values())
            added = [f for f in g.features if f.name not in old_names and f"{g.name}.{f.name}" not in taken]
            for f in og.features:
                q = f"{g.name}.{f.name}"
                if f.name in new_names or q in renames:
                    continue
                value = _feature_value(f, renames)
                match = next((a for a in added if f"{g.name}.{a.name}" not in set(renames.values())
                              and _feature_value(a, {}) == value), None)
                if match is not None:
                    renames[q] = f"{g.name}.{match.name}"
                    progress = True
    return renames


# ---- impact ------------------------------------------------------------------------------


def _window_of(spec: Spec) -> Callable[[str], float]:
    """Per qualified feature, the furthest back it reads (ms; inf = all history), through references."""
    feats = {f"{g.name}.{f.name}": f for g in spec.groups for f in g.features}
    memo: dict[str, float] = {}

    def window(q: str, seen: frozenset[str] = frozenset()) -> float:
        if q in memo:
            return memo[q]
        best = 0.0
        f = feats.get(q)
        for node in ir.walk(f.expr) if f is not None else ():
            if isinstance(node, ir.Agg):
                best = max(best, math.inf if node.window_ms is None else float(node.window_ms))
            elif isinstance(node, ir.FeatureRef) and node.qualified not in seen:
                best = max(best, window(node.qualified, seen | {q}))
        memo[q] = best
        return best

    return window


def _backfill(ctx: _Context, by_id: Mapping[str, NodeChange]) -> tuple[tuple[Backfill, ...], dict[str, str]]:
    spec = ctx.new.spec
    if spec is None:
        return (), {}
    breaking_sources = {c.name for c in by_id.values() if c.kind == "source" and c.action in ("change", "replace")
                        and c.category == BREAKING}
    rekeyed = {c.name for c in by_id.values() if c.kind == "entity" and c.action != "add"}
    reason: dict[str, str] = {}
    for g in spec.groups:
        c = by_id.get(f"features:{g.name}")
        whole = None
        if c is not None and c.action in ("add", "replace"):
            whole = "new group" if c.action == "add" else "group replaced"
        elif c is not None and any(_head(a.path) in ("entity", "from", "request") for a in c.attributes):
            whole = "group definition changed"
        elif g.source in breaking_sources:
            whole = f"source:{g.source} changed"
        elif g.entity in rekeyed:
            whole = f"entity:{g.entity} changed"
        if whole is not None:
            reason.update({f"{g.name}.{f.name}": whole for f in g.features})
        elif c is not None:
            for a in c.attributes:
                if _head(a.path) == "features" and a.action in ("add", "change"):
                    reason[f"{g.name}.{a.path.split('.', 1)[1]}"] = ("new feature" if a.action == "add"
                                                                     else "definition changed")
    readers: dict[str, list[str]] = {}
    for g in spec.groups:
        for f in g.features:
            for node in ir.walk(f.expr):
                if isinstance(node, ir.FeatureRef):
                    readers.setdefault(node.qualified, []).append(f"{g.name}.{f.name}")
    queue = list(reason)
    while queue:
        q = queue.pop()
        for r in readers.get(q, ()):
            if r not in reason:
                reason[r] = f"reads {q}"
                queue.append(r)
    window = _window_of(spec)
    out = []
    for g in spec.groups:
        names = tuple(f.name for f in g.features if f"{g.name}.{f.name}" in reason)
        if names:
            w = max(window(f"{g.name}.{n}") for n in names)
            out.append(Backfill(f"features:{g.name}", names, None if math.isinf(w) else int(w),
                                tuple(dict.fromkeys(reason[f"{g.name}.{n}"] for n in names))))
    return tuple(out), reason


_PAST = {"add": "added", "remove": "removed", "change": "changed", "rename": "renamed"}


def _short(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _retrain(ctx: _Context, by_id: Mapping[str, NodeChange], recomputed: Mapping[str, str]) -> tuple[Retrain, ...]:
    spec = ctx.new.spec
    if spec is None:
        return ()
    old_models = {m.name: m for m in ctx.old.models}
    changed_labels = {c.name for c in by_id.values() if c.kind == "label" and c.action != "add"
                      and c.category == BREAKING}
    breaking_sources = {c.name for c in by_id.values() if c.kind == "source" and c.category == BREAKING}
    out = []
    for m in spec.models:
        c = by_id.get(f"model:{m.name}")
        if c is not None and c.action == "add":
            out.append(Retrain(c.id, True, False, ("new model",)))
            continue
        inputs: list[str] = []
        others: list[str] = []
        for a in c.attributes if c is not None else ():
            if a.category == BREAKING:
                text = f"{a.path} {_PAST[a.action]}"
                (inputs if _head(a.path) in ("features", "label", "entity", "task") else others).append(text)
        before = set(old_models[m.name].features) if m.name in old_models else set()
        changed = [q for q in m.features if q in recomputed and q in before]
        if changed:
            inputs.append(f"features recomputed: {_short(changed)}")
        lab = spec.label(m.label)
        if m.label in changed_labels or lab.source in breaking_sources:
            inputs.append(f"label:{m.label} changed")
        if inputs or others:
            out.append(Retrain(f"model:{m.name}", False, not inputs, tuple(inputs + others)))
    return tuple(out)


def _key_type(spec: Spec, m: Model) -> str:
    key = spec.entity(m.entity).key
    sources = [spec.group(q.split(".", 1)[0]).source for q in m.features] + [spec.label(m.label).source]
    for s in dict.fromkeys(sources):
        col = spec.source(s).column(key)
        if col is not None:
            return col.type_name
    return "unknown"


def contract(spec: Spec, serve: Serve) -> dict[str, tuple[str, bool]] | None:
    """A realtime serve's API: field path -> (type, required); None when the serve is not realtime."""
    if serve.mode != "realtime":
        return None
    m = spec.model(serve.model)
    fields = {f"request.{spec.entity(m.entity).key}": (_key_type(spec, m), True)}
    for q in m.features:
        g = spec.group(q.split(".", 1)[0])
        if not g.request:
            continue
        source = spec.source(g.source)
        for node in ir.walk(spec.feature(q).expr):
            if isinstance(node, ir.Col):
                col = source.column(node.name)
                if col is not None:
                    fields[f"request.{col.name}"] = (col.type_name, col.not_null)
    fields["response.prediction"] = ("string" if m.task == "multiclass" else "float", True)
    fields["response.model_version"] = ("string", True)
    return fields


def _field_text(path: str, spec: tuple[str, bool]) -> str:
    return spec[0] if path.startswith("response.") else f"{spec[0]}, {'required' if spec[1] else 'optional'}"


def _api(ctx: _Context) -> tuple[ApiChange, ...]:
    def contracts(side: _Side) -> dict[str, dict[str, tuple[str, bool]]]:
        if side.spec is None:
            return {}
        out = {}
        for s in side.spec.serves:
            c = contract(side.spec, s)
            if c is not None:
                out[s.name] = c
        return out

    old, new = contracts(ctx.old), contracts(ctx.new)
    result = []
    for name in sorted(old.keys() | new.keys()):
        o, n = old.get(name, {}), new.get(name, {})
        fields = []
        breaking = False
        for path in [*n, *(p for p in o if p not in n)]:
            before, after = o.get(path), n.get(path)
            if before == after:
                continue
            request = path.startswith("request.")
            if before is None and after is not None:
                hurts = request and after[1]
                fields.append(AttrChange(path, "add", None, _field_text(path, after), BREAKING if hurts else NON_BREAKING))
            elif after is None and before is not None:
                hurts = not request
                fields.append(AttrChange(path, "remove", _field_text(path, before), None,
                                         BREAKING if hurts else NON_BREAKING))
            elif before is not None and after is not None:
                hurts = before[0] != after[0] or (after[1] and not before[1])
                fields.append(AttrChange(path, "change", _field_text(path, before), _field_text(path, after),
                                         BREAKING if hurts else NON_BREAKING))
            breaking = breaking or hurts
        action = "change" if o and n else "add" if n else "remove"
        if action != "change":  # a new endpoint has no clients yet; a removed one fails all of them
            breaking = action == "remove"
            category = BREAKING if breaking else NON_BREAKING
            fields = [AttrChange(f.path, f.action, f.old, f.new, category) for f in fields]
        if fields:
            result.append(ApiChange(f"serve:{name}", action, breaking, tuple(fields)))
    return tuple(result)


def _routes(side: _Side) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for mon in side.spec.monitors if side.spec else ():
        for r in mon.rules:
            for a in r.actions:
                for t in a.targets:
                    out.setdefault(t, set()).add((mon.name, f"{_rule_head(r)} {r.op}"))
    return out


def _targets(ctx: _Context, changes: Iterable[NodeChange]) -> tuple[TargetChange, ...]:
    """Which backends' generated files change. The rule backends keep (docs/plan-json.md): airflow
    has a task per pipeline node and the schedules; k8s has serving deployments, Prometheus rules
    and alert routes; docker the serving image (entry points, model runtime, online store); dvc a
    stage per batch node with its data dependencies, outputs and params."""
    pipeline = {"source", "check", "features", "label", "model", "gate", "serve", "monitor"}
    batch = {"source", "check", "features", "label", "model", "gate"}
    batch_serves = {s.name for side in (ctx.old, ctx.new) for s in (side.spec.serves if side.spec else ())
                    if s.mode == "batch"}
    hits: dict[str, list[str]] = {t: [] for t in TARGETS}
    for c in changes:
        heads = {_head(a.path) for a in c.attributes}
        structural = c.action != "change"
        store = c.kind == "project" and (structural or bool(heads & {"online_store", "online_store_url"}))
        if c.kind in ("serve", "monitor") or (structural and c.kind in pipeline) or (c.kind == "project" and structural):
            hits["airflow"].append(c.id)
        if c.kind in ("serve", "monitor", "alert") or store:
            hits["k8s"].append(c.id)
        if (c.kind == "serve" and structural) or (c.kind == "model" and "algorithm" in heads) or store:
            hits["docker"].append(c.id)
        if ((structural and c.kind in batch) or (c.kind == "source" and heads & {"path", "format", "table"})
                or (c.kind == "model" and "params" in heads)
                or (c.kind == "serve" and c.name in batch_serves and (structural or "output" in heads or "mode" in heads))):
            hits["dvc"].append(c.id)
    return tuple(TargetChange(t, tuple(ids)) for t, ids in hits.items() if ids)


def _impact(ctx: _Context, changes: tuple[NodeChange, ...]) -> Impact:
    by_id = {c.id: c for c in changes}
    backfill, recomputed = _backfill(ctx, by_id)
    old_routes, new_routes = _routes(ctx.old), _routes(ctx.new)
    alerts = {c.id for c in changes if c.kind == "alert"}
    alerts |= {f"alert:{a}" for a in old_routes.keys() | new_routes.keys() if old_routes.get(a) != new_routes.get(a)}
    schedules = tuple(ScheduleChange(c.id, a.path, a.old, a.new) for c in changes if c.kind in ("serve", "monitor")
                      for a in c.attributes if a.path in ("schedule", "retrain_every"))
    realtime = any(s.mode == "realtime" for side in (ctx.old, ctx.new) for s in (side.spec.serves if side.spec else ()))
    return Impact(backfill=backfill, retrain=_retrain(ctx, by_id, recomputed), api=_api(ctx), realtime=realtime,
                  monitors=tuple(c.id for c in changes if c.kind == "monitor"), alerts=tuple(sorted(alerts)),
                  schedules=schedules, targets=_targets(ctx, changes))


# ---- entry point -------------------------------------------------------------------------


def _order(nid: str) -> tuple[int, str]:
    kind, name = nid.split(":", 1)
    return (PLAN_KINDS.index(kind) if kind in PLAN_KINDS else len(PLAN_KINDS), name)


def build_plan(old: Snapshot | None, new: Snapshot | None, base: str = "base", head: str = "head") -> Plan:
    """Compare two clean compiles (spec, DAG); None stands for a spec that does not exist on that side."""
    o, n = _Side.of(old), _Side.of(new)
    ctx = _Context(o, n, feature_renames(o.spec, n.spec))
    changes = []
    for nid in sorted(o.nodes.keys() | n.nodes.keys(), key=_order):
        change = _diff_node(ctx, nid, o.nodes.get(nid), n.nodes.get(nid))
        if change is not None:
            changes.append(change)
    result = tuple(changes)
    return Plan(base, head, result, _impact(ctx, result) if result else Impact())
