"""Lowering of the operational declarations: check, model, serve, monitor, alert."""

from __future__ import annotations

import datetime as dt
import fnmatch
import re

from mlspec.diagnostics import did_you_mean
from mlspec.ir import expr as ir
from mlspec.ir.spec import (
    Action,
    Alert,
    Check,
    CheckRule,
    FeatureGroup,
    GateRule,
    Label,
    Model,
    Monitor,
    MonitorRule,
    Serve,
    Source,
    Split,
)
from mlspec.ir.types import DType
from mlspec.semantics.context import Collector, Fields, literal_number
from mlspec.semantics.exprs import Scope, lower
from mlspec.syntax import ast
from mlspec.syntax.fmt import format_expr

ON_FAIL = ("quarantine", "fail", "warn")
TASKS = ("binary", "regression", "multiclass")
METRICS = {
    "binary": ("auc", "logloss", "f1", "precision", "recall", "accuracy", "brier"),
    "regression": ("rmse", "mae", "r2"),
    "multiclass": ("accuracy", "mlogloss", "f1_macro"),
}
HIGHER_IS_BETTER = {"auc", "f1", "precision", "recall", "accuracy", "r2", "f1_macro"}
UNIT_METRICS = {"auc", "f1", "precision", "recall", "accuracy", "brier", "f1_macro"}
# xgboost parameters a spec may set, with the test a value must pass and what it means.
PARAMS: dict[str, tuple[str, str]] = {
    "n_estimators": ("int>=1", "number of boosting rounds"),
    "max_depth": ("int>=1", "maximum tree depth"),
    "learning_rate": ("(0,1]", "shrinkage per round"),
    "subsample": ("(0,1]", "row subsample per tree"),
    "colsample_bytree": ("(0,1]", "column subsample per tree"),
    "min_child_weight": (">=0", "minimum hessian per leaf"),
    "gamma": (">=0", "minimum loss reduction per split"),
    "reg_lambda": (">=0", "L2 regularisation"),
    "reg_alpha": (">=0", "L1 regularisation"),
    "max_bin": ("int>=2", "histogram bins"),
    "scale_pos_weight": (">0", "weight of positive examples"),
    "num_class": ("int>=2", "classes for multiclass"),
    "seed": ("int>=0", "random seed"),
    "early_stopping_rounds": ("int>=1", "stop when validation stops improving"),
}
DATASET_FUNCS = ("null_rate", "row_count", "unique", "freshness", "psi", "js", "ks", "ks_pvalue")
DRIFT_STATS = ("psi", "js", "ks", "ks_pvalue")
SERVE_FIELDS = {
    "batch": ("model", "mode", "schedule", "output"),
    "realtime": ("model", "mode", "latency_p99", "replicas", "shadow"),
    "streaming": ("model", "mode", "input", "output", "latency_p99", "replicas"),
}
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


# ---- checks ------------------------------------------------------------------------------

def lower_check(decl: ast.Decl, sources: dict[str, Source], groups: dict[str, FeatureGroup],
                out: Collector) -> Check | None:
    owner = f"check `{decl.name}`"
    f = Fields(owner, decl.items, ("on", "on_fail"), out)
    target = f.name("on") or decl.name
    default = f.choice("on_fail", ON_FAIL, "fail") or "fail"
    if target in sources:
        kind, columns = "source", {c.name: c.dtype for c in sources[target].columns}
    elif target in groups:
        kind, columns = "features", {x.name: x.dtype for x in groups[target].features}
        prefix = f"feature:{target}."  # features that failed (reported) still have names here
        columns.update({b[len(prefix):]: DType.NULL for b in out.broken if b.startswith(prefix)})
    else:
        if not (out.is_broken("source", target) or out.is_broken("features", target)):
            where = f.span("on") if "on" in f else decl.name_span
            out.unknown("source or feature group", target, where, [*sources, *groups])
        return None
    rules: list[CheckRule] = []
    for item in f.others:
        if not isinstance(item, ast.Rule) or item.over is not None:
            out.error("E102", f"{owner} holds predicates like `amount >= 0` and `on_fail = ...`", item.span)
            continue
        rule = _check_rule(item, columns, default, out)
        if rule is not None:
            rules.append(rule)
    if not rules and not out.has_errors:
        out.error("E101", f"{owner} has no predicates", decl.name_span, "add e.g. `amount >= 0`")
    return Check(decl.name, target, kind, tuple(rules), decl.span)


def _check_rule(item: ast.Rule, columns: dict[str, DType], default: str, out: Collector) -> CheckRule | None:
    on_fail = default
    for a in item.actions:
        if a.name not in ON_FAIL or a.targets is not None:
            out.unknown("check action", a.name, a.span, ON_FAIL, code="E105")
            return None
        on_fail = a.name
    cond = item.condition
    dataset_call = _dataset_call(cond)
    scope = Scope(columns=columns)
    if dataset_call is not None:
        e = _dataset_predicate(cond, dataset_call, columns, out)
        level = "dataset"
        if on_fail == "quarantine":
            on_fail = "fail"  # a table cannot be quarantined row by row
    else:
        e = lower(cond, scope, out)
        level = "row"
    if e is None:
        return None
    if e.dtype not in (DType.BOOL, DType.NULL):
        out.error("E120", f"a check must be a true/false predicate, not {e.dtype.value}", cond.span)
        return None
    return CheckRule(format_expr(cond), level, e, on_fail, item.span)


def _dataset_call(e: ast.Expr) -> ast.Call | None:
    if isinstance(e, ast.Call) and e.func in DATASET_FUNCS:
        return e
    if isinstance(e, ast.Binary) and isinstance(e.left, ast.Call) and e.left.func in DATASET_FUNCS:
        return e.left
    return None


def _dataset_predicate(cond: ast.Expr, call: ast.Call, columns: dict[str, DType], out: Collector) -> ir.Expr | None:
    """`null_rate(x) < 0.02`, `row_count() >= 100`, `unique(x)`, `freshness() < 26h`, `psi(x) < 0.2`."""
    args = [a for a in call.args if isinstance(a, ast.Ref)]
    if len(args) != len(call.args):
        out.error("E102", f"`{call.func}` takes column names", call.span)
        return None
    for a in args:
        if a.dotted not in columns:
            out.unknown("column", a.dotted, a.span, columns)
            return None
    arity = {"row_count": 0, "freshness": 0}.get(call.func, 1)
    if len(args) != arity:
        out.error("E122", f"`{call.func}` takes {arity} column name{'s' if arity != 1 else ''}", call.span)
        return None
    cols = tuple(ir.Col(a.dotted, columns[a.dotted], span=a.span) for a in args)
    result = DType.BOOL if call.func == "unique" else DType.DURATION if call.func == "freshness" else (
        DType.INT if call.func == "row_count" else DType.FLOAT)
    fn = ir.Func(call.func, cols, result, span=call.span)
    if cond is call:
        if result is not DType.BOOL:
            out.error("E120", f"`{call.func}(...)` must be compared with a threshold", call.span)
            return None
        return fn
    assert isinstance(cond, ast.Binary)
    if cond.op not in ("<", "<=", ">", ">=", "==", "!="):
        out.error("E120", f"compare `{call.func}(...)` with a threshold", cond.span)
        return None
    if result is DType.DURATION:
        if not isinstance(cond.right, ast.Duration):
            out.error("E120", "compare freshness() with a duration like `26h`", cond.right.span)
            return None
        return ir.BinOp(cond.op, fn, ir.Lit(cond.right.ms, DType.INT, span=cond.right.span), DType.BOOL,
                        span=cond.span)
    n = literal_number(cond.right)
    if n is None:
        out.error("E120", f"compare `{call.func}(...)` with a number", cond.right.span)
        return None
    _threshold_range(call.func, n, cond.right.span, out)
    return ir.BinOp(cond.op, fn, ir.Lit(n, DType.FLOAT, span=cond.right.span), DType.BOOL, span=cond.span)


def _threshold_range(metric: str, n: float, span: object, out: Collector) -> None:
    from mlspec.syntax.span import Span

    assert isinstance(span, Span)
    bounds = {"psi": (0.0, None), "js": (0.0, 1.0), "ks": (0.0, 1.0), "ks_pvalue": (0.0, 1.0),
              "null_rate": (0.0, 1.0), "error_rate": (0.0, 1.0), "quarantine_rate": (0.0, 1.0),
              "row_count": (0.0, None)}
    for m in UNIT_METRICS:
        bounds[m] = (0.0, 1.0)
    lo, hi = bounds.get(metric, (None, None))
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        rng = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
        out.error("E160", f"{metric} threshold {n:g} is out of range: {metric} is {rng}", span)


# ---- models ------------------------------------------------------------------------------

def lower_model(decl: ast.Decl, groups: dict[str, FeatureGroup], labels: dict[str, Label],
                out: Collector) -> Model | None:
    owner = f"model `{decl.name}`"
    f = Fields(owner, decl.items, ("algorithm", "task", "label", "features", "split", "segment", "threshold",
                                   "description"), out)
    blocks = {b.name: b for b in f.others if isinstance(b, ast.Block)}
    for item in f.others:
        if not isinstance(item, ast.Block) or item.name not in ("params", "gate"):
            where = item.span
            if isinstance(item, ast.Block):
                out.unknown("block", item.name, where, ("params", "gate"), code="E100", where=owner)
            else:
                out.error("E102", f"{owner} holds fields and `params {{}}` / `gate {{}}` blocks", where)
    ok = all([f.require("task", decl.name_span, "task = binary | regression | multiclass"),
              f.require("label", decl.name_span), f.require("features", decl.name_span)])
    algorithm = f.choice("algorithm", ("xgboost",), "xgboost") or "xgboost"
    task = f.choice("task", TASKS)
    label_name = f.name("label")
    if not ok or task is None or label_name is None:
        return None
    label = labels.get(label_name)
    if label is None:
        if not out.is_broken("label", label_name):
            out.unknown("label", label_name, f.span("label"), labels)
        return None
    if task == "binary" and label.dtype not in (DType.BOOL, DType.INT):
        out.error("E120", f"a binary model needs a bool or 0/1 label; `{label_name}` is {label.dtype.value}",
                  f.span("label"))
    if task == "regression" and not label.dtype.is_numeric:
        out.error("E120", f"a regression model needs a numeric label; `{label_name}` is {label.dtype.value}",
                  f.span("label"))
    features = _select_features(f.values["features"].value, groups, out)
    for q in features:
        g = groups[q.split(".")[0]]
        if g.entity != label.entity:
            out.error("E150", f"feature `{q}` describes entity `{g.entity}`, but label `{label_name}` describes "
                      f"`{label.entity}`", f.span("features"), "a model's features and label must share one entity")
            break
    segment = None
    if "segment" in f:
        seg = f.values["segment"].value
        segment = seg.dotted if isinstance(seg, ast.Ref) else None
        if isinstance(seg, ast.Ref) and (out.is_broken("feature", seg.dotted)
                                         or out.is_broken("features", seg.parts[0])):
            segment = None  # its group or feature has errors, reported there
        elif segment is None or segment.count(".") != 1 or segment.split(".")[0] not in groups:
            out.error("E102", "`segment` must name a feature as `group.feature`", seg.span)
            segment = None
        elif segment.split(".")[1] not in {x.name for x in groups[segment.split(".")[0]].features}:
            out.unknown("feature", segment, seg.span, [x.qualified for g in groups.values() for x in g.features])
            segment = None
    threshold = f.number("threshold")
    if threshold is not None and not 0 < threshold < 1:
        out.error("E160", "`threshold` is a probability strictly between 0 and 1", f.span("threshold"))
    params = _params(blocks.get("params"), out)
    split = _split(f, decl, out)
    gate = _gate(blocks.get("gate"), task, out)
    return Model(decl.name, algorithm, task, label_name, label.entity, tuple(features), params, split, gate,
                 segment, threshold if threshold is not None else 0.5, decl.span)


def _select_features(value: ast.Expr, groups: dict[str, FeatureGroup], out: Collector) -> list[str]:
    items = value.items if isinstance(value, ast.ListLit) else (value,)
    every = [x.qualified for g in groups.values() for x in g.features]
    chosen: list[str] = []
    for item in items:
        if isinstance(item, ast.Glob) and item.prefix is not None:
            if item.prefix not in groups:
                if not out.is_broken("features", item.prefix):
                    out.unknown("feature group", item.prefix, item.span, groups)
                continue
            matched = [x.qualified for x in groups[item.prefix].features]
        elif isinstance(item, ast.Ref) and len(item.parts) == 2:
            matched = [q for q in every if fnmatch.fnmatchcase(q, item.dotted)]
            if not matched:
                if not (out.is_broken("feature", item.dotted) or out.is_broken("features", item.parts[0])):
                    out.unknown("feature", item.dotted, item.span, every)
                continue
        elif isinstance(item, ast.Ref) and len(item.parts) == 1 and item.parts[0] in groups:
            matched = [x.qualified for x in groups[item.parts[0]].features]
        elif isinstance(item, ast.Ref) and len(item.parts) == 1 and out.is_broken("features", item.parts[0]):
            continue
        else:
            out.error("E102", "select features as `group.*`, `group.feature` or `group`", item.span)
            continue
        chosen.extend(q for q in matched if q not in chosen)
    if not chosen and not out.has_errors:
        out.error("E101", "the model selects no features", value.span)
    return chosen


def _params(block: ast.Block | None, out: Collector) -> tuple[tuple[str, int | float | str | bool], ...]:
    if block is None:
        return ()
    f = Fields("params", block.items, PARAMS, out)
    for item in f.others:
        out.error("E102", "params holds `name = value` lines", item.span)
    params: list[tuple[str, int | float | str | bool]] = []
    for name, assign in f.values.items():
        test, meaning = PARAMS[name]
        n = literal_number(assign.value)
        is_int = isinstance(assign.value, ast.Literal) and isinstance(assign.value.value, int)
        valid = n is not None and {
            "int>=1": is_int and n >= 1, "int>=2": is_int and n >= 2, "int>=0": is_int and n >= 0,
            "(0,1]": 0 < n <= 1, ">=0": n >= 0, ">0": n > 0,
        }[test]
        if not valid or n is None:
            out.error("E160", f"`{name}` ({meaning}) must be {test.replace('int', 'an integer ')}", assign.value.span)
            continue
        params.append((name, int(n) if is_int else n))
    return tuple(sorted(params))


def _split(f: Fields, decl: ast.Decl, out: Collector) -> Split:
    if "split" not in f:
        return Split("random", seed=0)
    v = f.values["split"].value
    if not isinstance(v, ast.Call) or v.func not in ("by_time", "random"):
        out.error("E102", '`split` is by_time(test_from = "YYYY-MM-DD") or random(test = 0.2, seed = 1)', v.span)
        return Split("random")
    kw = {a.name: a for a in v.args if isinstance(a, ast.KwArg)}
    known = ("test_from",) if v.func == "by_time" else ("test", "seed")
    for name, a in kw.items():
        if name not in known:
            out.unknown("argument", name, a.span, known, code="E100", where=f"{v.func}(...)")
    if v.func == "by_time":
        arg = kw.get("test_from")
        if arg is None or not (isinstance(arg.value, ast.Literal) and isinstance(arg.value.value, str)):
            out.error("E101", 'by_time needs test_from = "YYYY-MM-DD"', v.span)
            return Split("time")
        try:
            day = dt.date.fromisoformat(str(arg.value.value)).isoformat()
        except ValueError:
            out.error("E102", f"{arg.value.value!r} is not a date like \"2026-06-01\"", arg.value.span)
            return Split("time")
        return Split("time", test_from=day)
    test = literal_number(kw["test"].value) if "test" in kw else 0.2
    seed = literal_number(kw["seed"].value) if "seed" in kw else 0.0
    if test is None or not 0 < test < 1:
        out.error("E160", "`test` is the held-out fraction, strictly between 0 and 1", kw["test"].span)
        test = 0.2
    if seed is None or seed < 0 or seed != int(seed):
        out.error("E160", "`seed` is an integer >= 0", kw["seed"].span)
        seed = 0.0
    out.warning("W201", "a random split mixes past and future rows of time-dependent data", v.span,
                'prefer by_time(test_from = "YYYY-MM-DD") so evaluation matches deployment')
    return Split("random", test_fraction=test, seed=int(seed or 0))


def _gate(block: ast.Block | None, task: str, out: Collector) -> tuple[GateRule, ...]:
    if block is None:
        return ()
    rules: list[GateRule] = []
    metrics = METRICS[task]
    for item in block.items:
        if not isinstance(item, ast.Rule) or item.actions or item.over is not None:
            out.error("E102", "a gate holds comparisons like `auc >= 0.75` or `auc >= champion.auc - 0.01`",
                      item.span)
            continue
        c = item.condition
        if not (isinstance(c, ast.Binary) and c.op in (">=", ">", "<=", "<") and isinstance(c.left, ast.Ref)
                and len(c.left.parts) == 1):
            out.error("E102", "a gate rule is `metric op threshold`", c.span)
            continue
        metric = c.left.parts[0]
        if metric not in metrics:
            out.unknown(f"{task} metric", metric, c.left.span, metrics)
            continue
        vs_champion, offset = _champion_offset(c.right, metric)
        if offset is None:
            out.error("E102", f"compare `{metric}` with a number or `champion.{metric} +/- number`", c.right.span)
            continue
        if not vs_champion:
            _threshold_range(metric, offset, c.right.span, out)
        rules.append(GateRule(metric, c.op, offset, vs_champion, format_expr(c), item.span))
    return tuple(rules)


def _champion_offset(e: ast.Expr, metric: str) -> tuple[bool, float | None]:
    if isinstance(e, ast.Ref) and e.parts == ("champion", metric):
        return True, 0.0
    if (isinstance(e, ast.Binary) and e.op in ("+", "-") and isinstance(e.left, ast.Ref)
            and e.left.parts == ("champion", metric)):
        n = literal_number(e.right)
        return True, (n if e.op == "+" else -n) if n is not None else None
    return False, literal_number(e)


# ---- serve -------------------------------------------------------------------------------

def lower_serve(decl: ast.Decl, models: dict[str, Model], sources: dict[str, Source],
                out: Collector) -> Serve | None:
    owner = f"serve `{decl.name}`"
    every = sorted({k for keys in SERVE_FIELDS.values() for k in keys})
    f = Fields(owner, decl.items, every, out)
    for item in f.others:
        out.error("E102", f"{owner} holds `key = value` fields only", item.span)
    if not f.require("mode", decl.name_span, "mode = batch | realtime | streaming"):
        return None
    mode = f.choice("mode", tuple(SERVE_FIELDS))
    if mode is None:
        return None
    for key in f.values:
        if key not in SERVE_FIELDS[mode]:
            out.error("E100", f"`{key}` does not apply to a {mode} serve", f.values[key].key_span,
                      f"{mode} serves take: " + ", ".join(SERVE_FIELDS[mode]))
    model = f.name("model") if "model" in f else decl.name  # None: not a name, reported
    if model is not None and model not in models and not out.is_broken("model", model):
        where = f.span("model") if "model" in f else decl.name_span
        out.unknown("model", model, where, models, code="E151")
    schedule = output = shadow = in_stream = out_stream = None
    latency = None
    replicas: tuple[int, int] | None = None
    if mode == "batch":
        f.require("output", decl.name_span, 'e.g. output = "scores/churn.parquet"')
        schedule, output = f.string("schedule"), f.string("output")
        if schedule is not None and not _valid_cron(schedule):
            out.error("E102", f"{schedule!r} is not a cron schedule", f.span("schedule"),
                      'five fields: minute hour day month weekday, e.g. "0 2 * * *"')
    else:
        latency, replicas, shadow = f.duration("latency_p99"), _replicas(f, out), f.name("shadow")
        if shadow is not None and shadow not in models and not out.is_broken("model", shadow):
            out.unknown("shadow model", shadow, f.span("shadow"), models, code="E151")
        if mode == "streaming":
            f.require("input", decl.name_span, 'e.g. input = stream("readings")')
            in_stream, out_stream = _stream(f, "input", out), _stream(f, "output", out)
            streams = {s.stream for s in sources.values() if s.stream is not None}
            sources_ok = not any(b.startswith("source:") for b in out.broken)
            if in_stream is not None and in_stream not in streams and sources_ok:
                out.error("E111", f"no source reads the stream `{in_stream}`", f.span("input"),
                          did_you_mean(in_stream, streams)
                          or f'declare it in the source its events follow: stream = "{in_stream}"')
    if model is None or model not in models:
        return None  # the rest of the serve is checked all the same, so every error shows at once
    return Serve(decl.name, model, mode, schedule, output, latency, replicas, shadow, in_stream, out_stream,
                 decl.span)


def _valid_cron(text: str) -> bool:
    parts = text.split()
    return len(parts) == 5 and all(_CRON_FIELD.match(p) for p in parts)


def _replicas(f: Fields, out: Collector) -> tuple[int, int] | None:
    if "replicas" not in f:
        return None
    v = f.values["replicas"].value
    if isinstance(v, ast.RangeLit):
        lo, hi = literal_number(v.low), literal_number(v.high)
    else:
        lo = hi = literal_number(v)
    if lo is None or hi is None or lo < 1 or hi < lo or lo != int(lo) or hi != int(hi):
        out.error("E160", "`replicas` is a count like 2 or a range like 2..10 (min >= 1)", v.span)
        return None
    return int(lo), int(hi)


def _stream(f: Fields, key: str, out: Collector) -> str | None:
    if key not in f:
        return None
    v = f.values[key].value
    if isinstance(v, ast.Call) and v.func == "stream" and len(v.args) == 1 and isinstance(v.args[0], ast.Literal) \
            and isinstance(v.args[0].value, str):
        return v.args[0].value
    out.error("E102", f'`{key}` must be stream("name")', v.span)
    return None


# ---- monitors and alerts -----------------------------------------------------------------

def lower_monitor(decl: ast.Decl, models: dict[str, Model], groups: dict[str, FeatureGroup],
                  sources: dict[str, Source], alerts: set[str], out: Collector) -> Monitor | None:
    owner = f"monitor `{decl.name}`"
    f = Fields(owner, decl.items, ("model",), out)
    model_name = f.name("model") if "model" in f else decl.name
    if model_name is None:  # not a name: reported
        return None
    model = models.get(model_name)
    if model is None:
        if not out.is_broken("model", model_name):
            where = f.span("model") if "model" in f else decl.name_span
            out.unknown("model", model_name, where, models, code="E151")
        return None
    rules: list[MonitorRule] = []
    retrain_every = None
    for item in f.others:
        if isinstance(item, ast.Every):
            if item.action != "retrain":
                out.error("E105", f"only `retrain every <duration>` is scheduled, not `{item.action}`", item.span)
            retrain_every = item.interval.ms
        elif isinstance(item, ast.Rule):
            rule = _monitor_rule(item, model, groups, sources, alerts, out)
            if rule is not None:
                rules.append(rule)
        else:
            out.error("E102", f"{owner} holds rules like `psi(features) > 0.25 -> alert(oncall)`", item.span)
    return Monitor(decl.name, model_name, tuple(rules), retrain_every, decl.span)


def _monitor_rule(item: ast.Rule, model: Model, groups: dict[str, FeatureGroup], sources: dict[str, Source],
                  alerts: set[str], out: Collector) -> MonitorRule | None:
    c = item.condition
    text = format_expr(c)
    if not (isinstance(c, ast.Binary) and c.op in ("<", "<=", ">", ">=")):
        out.error("E102", "a monitor rule is `metric op threshold [over window] -> action`", c.span)
        return None
    actions = _actions(item, alerts, out)
    if actions is None:
        return None
    if not actions:
        out.error("E101", "a monitor rule needs an action", c.span, "add `-> alert(name)` or `-> retrain`")
        return None
    left, right = c.left, c.right
    window = item.over.ms if item.over else None
    if isinstance(left, ast.Call) and left.func in DRIFT_STATS:
        subject = _drift_subject(left, model, groups, out)
        n = literal_number(right)
        if subject is None:
            return None
        if n is None:
            out.error("E120", f"compare {left.func}(...) with a number", right.span)
            return None
        _threshold_range(left.func, n, right.span, out)
        kind = "prediction_drift" if subject == ("prediction",) else "drift"
        return MonitorRule(kind, left.func, subject, c.op, n, window, actions, text, item.span)
    if isinstance(left, ast.Call) and left.func in ("null_rate", "freshness", "quarantine_rate"):
        return _quality_rule(left, c, model, groups, sources, window, actions, text, item, out)
    if isinstance(left, ast.Ref) and len(left.parts) == 1:
        metric = left.parts[0]
        if metric == "latency_p99" or metric == "latency_p50":
            if not isinstance(right, ast.Duration):
                out.error("E120", f"compare {metric} with a duration like `50ms`", right.span)
                return None
            return MonitorRule("latency", metric, (), c.op, float(right.ms), window, actions, text, item.span)
        n = literal_number(right)
        if metric == "error_rate":
            if n is None:
                out.error("E120", "compare error_rate with a number", right.span)
                return None
            _threshold_range("error_rate", n, right.span, out)
            return MonitorRule("error_rate", metric, (), c.op, n, window, actions, text, item.span)
        if metric in METRICS[model.task]:
            if n is None:
                out.error("E120", f"compare {metric} with a number", right.span)
                return None
            _threshold_range(metric, n, right.span, out)
            return MonitorRule("outcome", metric, (), c.op, n, window or 30 * 86_400_000, actions, text, item.span)
        known = ["latency_p99", "latency_p50", "error_rate", *METRICS[model.task],
                 *(f"{s}(...)" for s in DRIFT_STATS)]
        out.unknown("monitor metric", metric, left.span, known, code="E111")
        return None
    out.error("E102", "a monitor watches psi/js/ks/ks_pvalue(...), null_rate(...), freshness(source), "
              "latency_p99, error_rate or a model metric", left.span)
    return None


def _actions(item: ast.Rule, alerts: set[str], out: Collector) -> tuple[Action, ...] | None:
    actions: list[Action] = []
    for a in item.actions:
        if a.name == "alert":
            targets = a.targets or ()
            if not targets:
                out.error("E101", "alert(...) names the alert sinks to notify", a.span)
                return None
            for t in targets:
                if t not in alerts:
                    out.unknown("alert", t, a.span, alerts)
                    return None
            actions.append(Action("alert", targets))
        elif a.name == "retrain" and a.targets is None:
            actions.append(Action("retrain"))
        else:
            out.unknown("action", a.name, a.span, ("alert", "retrain"), code="E105")
            return None
    return tuple(actions)


def _drift_subject(call: ast.Call, model: Model, groups: dict[str, FeatureGroup],
                   out: Collector) -> tuple[str, ...] | None:
    if len(call.args) != 1:
        out.error("E122", f"{call.func}(...) takes one subject: features, prediction, a group or a feature",
                  call.span)
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Ref) and arg.parts == ("features",):
        return model.features
    if isinstance(arg, ast.Ref) and arg.parts == ("prediction",):
        return ("prediction",)
    name = arg.prefix if isinstance(arg, ast.Glob) else arg.dotted if isinstance(arg, ast.Ref) else None
    if name is not None and name in groups:
        subject = tuple(q for q in model.features if q.startswith(name + "."))
        if not subject:
            out.error("E111", f"model `{model.name}` uses no features of group `{name}`", arg.span,
                      "watch `features`, `prediction`, or a group or feature the model uses")
            return None
        return subject
    if name is not None and name in model.features:
        return (name,)
    out.unknown("drift subject", name or "?", arg.span, ["features", "prediction", *model.features])
    return None


def _quality_rule(left: ast.Call, c: ast.Binary, model: Model, groups: dict[str, FeatureGroup],
                  sources: dict[str, Source], window: int | None, actions: tuple[Action, ...], text: str,
                  item: ast.Rule, out: Collector) -> MonitorRule | None:
    arg = left.args[0] if len(left.args) == 1 else None
    name = arg.dotted if isinstance(arg, ast.Ref) else None
    if left.func == "null_rate":
        if name not in model.features:
            out.unknown("feature", name or "?", left.span, model.features, where=f"model `{model.name}`")
            return None
        n = literal_number(c.right)
        if n is None:
            out.error("E120", "compare null_rate(...) with a number", c.right.span)
            return None
        _threshold_range("null_rate", n, c.right.span, out)
        return MonitorRule("null_rate", "null_rate", (name,), c.op, n, window, actions, text, item.span)
    if name not in sources:
        out.unknown("source", name or "?", left.span, sources)
        return None
    if left.func == "freshness":
        if not isinstance(c.right, ast.Duration):
            out.error("E120", "compare freshness(...) with a duration like `26h`", c.right.span)
            return None
        return MonitorRule("freshness", "freshness", (name,), c.op, float(c.right.ms), window, actions, text,
                           item.span)
    n = literal_number(c.right)
    if n is None:
        out.error("E120", "compare quarantine_rate(...) with a number", c.right.span)
        return None
    _threshold_range("quarantine_rate", n, c.right.span, out)
    return MonitorRule("quarantine_rate", "quarantine_rate", (name,), c.op, n, window, actions, text, item.span)


def lower_alert(decl: ast.Decl, out: Collector) -> Alert | None:
    owner = f"alert `{decl.name}`"
    f = Fields(owner, decl.items, ("webhook", "file", "log", "slack", "dedupe"), out)
    for item in f.others:
        out.error("E102", f"{owner} holds `key = value` fields only", item.span)
    if not any(k in f for k in ("webhook", "file", "log")):
        out.error("E101", f"{owner} needs a sink: webhook = env(\"NAME\"), file = \"path\" or log = true",
                  decl.name_span)
    return Alert(decl.name, f.secret("webhook"), f.string("file"), bool(f.boolean("log")), bool(f.boolean("slack")),
                 dedupe if (dedupe := f.duration("dedupe")) is not None else 3_600_000, decl.span)
