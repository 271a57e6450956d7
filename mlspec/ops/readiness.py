"""Scores a checked spec against the twelve production requirements of DESIGN.md.

Each requirement is judged from the IR alone (no data, no registry), so `mlspec readiness` can
run in review and CI before anything is trained. Every finding says what was found and, when
not met, the spec text that would meet it, written with the spec's own names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mlspec.ir.spec import Model, Monitor, Source, Spec
from mlspec.plan.diff import fmt_duration

MET, PARTIAL, MISSING = "met", "partial", "missing"
POINTS = {MET: 1.0, PARTIAL: 0.5, MISSING: 0.0}
REQUIREMENTS = (
    "reproducible training",
    "versioned artifacts",
    "automated data pipeline",
    "training-serving consistency",
    "data validation",
    "model validation gate",
    "containerized serving",
    "latency SLA",
    "monitoring dashboard",
    "alerting",
    "rollback plan",
    "operational runbook",
)
FORMAT_VERSION = "1.0"

# Per task: an absolute gate, a champion comparison, and the outcome rule a monitor would use.
_TASK_METRIC = {
    "binary": ("auc >= 0.75", "auc >= champion.auc - 0.005", "auc < 0.65 over 30d"),
    "regression": ("rmse <= 10.0", "rmse <= champion.rmse + 0.5", "rmse > 12.0 over 30d"),
    "multiclass": ("accuracy >= 0.8", "accuracy >= champion.accuracy - 0.01", "accuracy < 0.7 over 30d"),
}


class Verdict(NamedTuple):
    """What one judge decides; `assess` numbers and names it."""

    status: str
    detail: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One requirement's verdict: what the spec has, and the snippet to add when it falls short."""

    number: int
    requirement: str
    status: str  # met | partial | missing
    detail: str
    fix: str | None = None

    @property
    def points(self) -> float:
        return POINTS[self.status]

    def to_data(self) -> dict[str, Any]:
        return {"number": self.number, "requirement": self.requirement, "status": self.status,
                "points": self.points, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Readiness:
    """All twelve findings of one project, in the order of the DESIGN.md table."""

    project: str
    findings: tuple[Finding, ...]

    @property
    def score(self) -> float:
        return sum(f.points for f in self.findings)

    @property
    def total(self) -> int:
        return len(self.findings)

    @property
    def score_text(self) -> str:
        """`10.5/12`: halves are the only fractions a score can have."""
        return f"{self.score:g}/{self.total}"

    def to_data(self) -> dict[str, Any]:
        counts = {s: sum(1 for f in self.findings if f.status == s) for s in (MET, PARTIAL, MISSING)}
        return {"format_version": FORMAT_VERSION, "project": self.project, "score": self.score,
                "max_score": self.total, "counts": counts, "requirements": [f.to_data() for f in self.findings]}


# ---- helpers -----------------------------------------------------------------------------

def _names(items: Sequence[str]) -> str:
    return ", ".join(f"`{x}`" for x in items)


def _served_models(spec: Spec) -> list[str]:
    """Models a serve block answers with, or every model when nothing serves yet."""
    served = list(dict.fromkeys(s.model for s in spec.serves))
    return served or [m.name for m in spec.models]


def _alert_name(spec: Spec) -> str:
    """An existing alert sink to route to (one that is not log-only first), else `oncall`."""
    for a in spec.alerts:
        if a.webhook is not None or a.file is not None:
            return a.name
    return spec.alerts[0].name if spec.alerts else "oncall"


def _alert_snippet(spec: Spec) -> str:
    """The alert block to add with a rule routed to `_alert_name`, when the spec has none yet."""
    if spec.alerts:
        return ""
    return '\nalert oncall {\n  webhook = env("ONCALL_WEBHOOK_URL")\n  dedupe  = 1h\n}'


def _monitor_of(spec: Spec, model: str) -> list[Monitor]:
    return [m for m in spec.monitors if m.model == model]


def _model_sources(spec: Spec, model: Model) -> list[tuple[str, str, str]]:
    """(kind, name, source) the model reads: its feature groups and its label, in spec order."""
    out = [("features", g, spec.group(g).source) for g in dict.fromkeys(q.split(".")[0] for q in model.features)]
    out.append(("label", model.label, spec.label(model.label).source))
    return out


def _time_column(source: Source) -> str:
    """A column a `timestamp =` line could name: the first date/timestamp column, else a placeholder."""
    return next((c.name for c in source.columns if c.type_name in ("timestamp", "date")), "updated_at")


# ---- the twelve requirements -------------------------------------------------------------

def _reproducible(spec: Spec) -> Verdict:
    if not spec.models:
        return Verdict(MISSING, "no model block: nothing is trained",
                       "model churn_risk {\n  task     = binary\n  label    = <label>\n  features = [<group>.*]\n"
                       '  split    = by_time(test_from = "2026-01-01")\n  params { seed = 7 }\n}')
    no_seed = [m.name for m in spec.models if "seed" not in dict(m.params)]
    no_time = [m.name for m in spec.models if m.split.kind != "time"]
    if not no_seed and not no_time:
        return Verdict(MET, f"every model fixes its seed and splits by time ({_names([m.name for m in spec.models])})")
    problems: list[str] = []
    fixes: list[str] = []
    for name in dict.fromkeys([*no_seed, *no_time]):
        lines = []
        if name in no_time:
            lines.append('  split = by_time(test_from = "2026-01-01")   # a date inside the labelled history')
        if name in no_seed:
            lines.append("  params { seed = 7 }")
        fixes.append(f"model {name} {{\n" + "\n".join(lines) + "\n}")
    if no_seed:
        problems.append(f"no `seed` in params: {_names(no_seed)}")
    if no_time:
        problems.append(f"no time split (evaluation mixes past and future): {_names(no_time)}")
    status = MISSING if len(no_seed) == len(no_time) == len(spec.models) else PARTIAL
    return Verdict(status, "; ".join(problems), "\n".join(fixes))


def _versioned(spec: Spec) -> Verdict:
    return Verdict(MET, "the registry keeps every version with its spec hash, data fingerprint, params "
                   "and library versions (`mlspec models`)")


def _pipeline(spec: Spec) -> Verdict:
    if not spec.sources:
        return Verdict(MISSING, "no source block: nothing is extracted",
                       'source events {\n  path      = "data/events.parquet"\n  timestamp = event_time\n'
                       "  schema {\n    event_time timestamp not null\n  }\n}")
    full = [s for s in spec.sources if s.timestamp is None]
    scheduled = [s.name for s in spec.serves if s.mode == "batch" and s.schedule]
    problems: list[str] = []
    fixes: list[str] = []
    if full:
        problems.append(f"re-read in full on every run (no `timestamp`): {_names([s.name for s in full])}")
        fixes.extend(f"source {s.name} {{\n  timestamp = {_time_column(s)}   # when each row became true\n}}"
                     for s in full)
    if not scheduled:
        problems.append("no batch serve with a `schedule`: nothing runs the pipeline on its own")
        model = _served_models(spec)[0] if spec.models else "churn_risk"
        fixes.append(f'serve {model}_nightly {{\n  model    = {model}\n  mode     = batch\n  schedule = "0 2 * * *"\n'
                     f'  output   = "scores/{model}.parquet"\n}}')
    if not problems:
        return Verdict(MET, f"every source is incremental by timestamp; scheduled by {_names(scheduled)}")
    status = MISSING if len(full) == len(spec.sources) and not scheduled else PARTIAL
    return Verdict(status, "; ".join(problems), "\n".join(fixes))


def _consistency(spec: Spec) -> Verdict:
    if not spec.models:
        return Verdict(MISSING, "no model block: no features are served",
                       "model churn_risk {\n  features = [<group>.*]\n}")
    known = {f.qualified for g in spec.groups for f in g.features}
    served = _served_models(spec)
    foreign = sorted({q for name in served for q in spec.model(name).features if q not in known})
    if foreign:  # the checker rejects this today; kept so a future escape hatch cannot pass silently
        return Verdict(PARTIAL, f"features not defined in the feature IR: {_names(foreign)}",
                       "define them in a `features` block so one IR computes them for training and serving")
    online = [s.name for s in spec.serves if s.mode in ("realtime", "streaming")]
    note = (f"; run `mlspec verify` to prove it on real data ({_names(online)} serve online)" if online
            else "; `mlspec verify` proves it on real data once a model serves online")
    verb = "reads" if len(served) == 1 else "read"
    return Verdict(MET, f"{_names(served)} {verb} only features of the one IR{note}")


def _validation(spec: Spec) -> Verdict:
    if not spec.checks:
        target = spec.sources[0] if spec.sources else None
        return Verdict(MISSING, "no check block: bad rows reach training and scoring",
                       _check_snippet(target, row_rule=True) if target else "check <source> {\n  <column> is not null\n"
                       "  on_fail = quarantine\n}")
    targets = {c.target for c in spec.checks}
    quarantines = [c.name for c in spec.checks if any(r.on_fail == "quarantine" for r in c.rules)]
    uncovered: list[str] = []
    fixes: dict[str, str] = {}
    for model in spec.models:
        for kind, name, source in _model_sources(spec, model):
            if (kind == "features" and name in targets) or source in targets:
                continue
            what = f"{kind} `{name}` (source `{source}`)"
            if what not in uncovered:
                uncovered.append(what)
                fixes.setdefault(source, _check_snippet(spec.source(source), row_rule=not quarantines))
    problems: list[str] = []
    if uncovered:
        problems.append(f"no check on {', '.join(uncovered)}")
    if not quarantines:
        problems.append("no check quarantines rows (every failure stops the run or only warns)")
        fixes["__q"] = f"check {spec.checks[0].name} {{\n  on_fail = quarantine   # failing rows go to the " \
                       "dead-letter table, with reasons\n}"
    if not problems:
        return Verdict(MET, f"checks cover every source and feature group a model reads; "
                       f"{_names(quarantines)} quarantine{'s' if len(quarantines) == 1 else ''} bad rows")
    return Verdict(PARTIAL, "; ".join(problems), "\n".join(fixes.values()))


def _check_snippet(source: Source, row_rule: bool) -> str:
    """Rules the schema cannot express for this source: volume, null rates, freshness, and (when
    no check quarantines yet) one row rule to adapt, so bad rows have somewhere to go."""
    lines = []
    free = [c for c in source.columns if c.name not in (source.key, source.timestamp)]
    if row_rule:
        numeric = next((c.name for c in free if c.type_name in ("int", "float") and c.value_range is None), None)
        nullable = next((c.name for c in free if not c.not_null), None)
        rule = f"{numeric} >= 0" if numeric else f"{nullable} is not null" if nullable else \
            f"{(source.key or (free[0].name if free else 'id'))} is not null"
        lines.append(f"  {rule}   # adapt: rows failing a row rule are quarantined")
    lines.append("  row_count() >= 100")
    nullable_cols = [c.name for c in free if not c.not_null]
    if nullable_cols:
        lines.append(f"  null_rate({nullable_cols[0]}) < 0.05")
    if source.freshness_ms is not None:
        lines.append(f"  freshness() < {fmt_duration(source.freshness_ms)}")
    return f"check {source.name} {{\n" + "\n".join(lines) + "\n  on_fail = quarantine\n}"


def _gate(spec: Spec) -> Verdict:
    if not spec.models:
        return Verdict(MISSING, "no model block: nothing to gate",
                       "gate {\n  auc >= 0.75\n  auc >= champion.auc - 0.005\n}")
    short: list[str] = []
    fixes: list[str] = []
    good = 0
    for m in spec.models:
        absolute = any(not r.vs_champion for r in m.gate)
        champion = any(r.vs_champion for r in m.gate)
        abs_rule, champ_rule, _ = _TASK_METRIC[m.task]
        missing = [x for x, ok in ((abs_rule, absolute), (champ_rule, champion)) if not ok]
        if not missing:
            good += 1
            continue
        short.append(f"`{m.name}` has no " + " and no ".join(
            "absolute threshold" if x == abs_rule else "champion comparison" for x in missing))
        fixes.append(f"model {m.name} {{\n  gate {{\n" + "".join(f"    {x}\n" for x in missing) + "  }\n}")
    if not short:
        return Verdict(MET, "every model's gate has absolute thresholds and a champion comparison")
    any_gate = any(m.gate for m in spec.models)
    status = PARTIAL if good or any_gate else MISSING
    return Verdict(status, "; ".join(short), "\n".join(fixes))


def _containers(spec: Spec) -> Verdict:
    deployable = [s.name for s in spec.serves if s.mode in ("realtime", "batch")]
    if deployable:
        return Verdict(MET, f"docker and k8s targets compile from {_names(deployable)}")
    model = spec.models[0].name if spec.models else "churn_risk"
    fix = f"serve {model}_api {{\n  model       = {model}\n  mode        = realtime\n  latency_p99 = 50ms\n" \
          "  replicas    = 2..10\n}"
    streaming = [s.name for s in spec.serves if s.mode == "streaming"]
    if streaming:
        return Verdict(PARTIAL, f"only streaming serving ({_names(streaming)}): no HTTP Deployment with "
                       "readiness probes to compile", fix)
    return Verdict(MISSING, "no serve block: nothing to package or deploy", fix)


def _latency(spec: Spec) -> Verdict:
    online = [s for s in spec.serves if s.mode in ("realtime", "streaming")]
    alert = _alert_name(spec)
    if not online:
        model = spec.models[0].name if spec.models else "churn_risk"
        return Verdict(MISSING, "no realtime or streaming serve: no latency to promise",
                       f"serve {model}_api {{\n  model       = {model}\n  mode        = realtime\n"
                       f"  latency_p99 = 50ms\n}}\nmonitor {model} {{\n  latency_p99 > 50ms -> alert({alert})\n}}"
                       + _alert_snippet(spec))
    problems: list[str] = []
    fixes: list[str] = []
    no_sla = [s for s in online if s.latency_p99_ms is None]
    if no_sla:
        problems.append(f"no `latency_p99` on {_names([s.name for s in no_sla])}")
        fixes.extend(f"serve {s.name} {{\n  latency_p99 = 50ms\n}}" for s in no_sla)
    unwatched = [s for s in online
                 if not any(r.kind == "latency" for mon in _monitor_of(spec, s.model) for r in mon.rules)]
    if unwatched:
        problems.append(f"no latency monitor rule for {_names(list(dict.fromkeys(s.model for s in unwatched)))}")
        for model in dict.fromkeys(s.model for s in unwatched):
            sla = next((s.latency_p99_ms for s in online if s.model == model and s.latency_p99_ms), 50)
            fixes.append(f"monitor {model} {{\n  latency_p99 > {sla}ms -> alert({alert})\n}}")
        if not spec.alerts:
            fixes.append(_alert_snippet(spec).strip())
    if not problems:
        slas = ", ".join(f"`{s.name}` {s.latency_p99_ms}ms" for s in online)
        return Verdict(MET, f"latency_p99 on every online serve ({slas}), watched by a monitor rule")
    status = PARTIAL if len(no_sla) < len(online) or len(unwatched) < len(online) else MISSING
    return Verdict(status, "; ".join(problems), "\n".join(fixes))


def _dashboard(spec: Spec) -> Verdict:
    models = _served_models(spec)
    if not spec.monitors or not models:
        model = models[0] if models else "churn_risk"
        outcome = _TASK_METRIC[spec.model(model).task if spec.models else "binary"][2]
        alert = _alert_name(spec)
        return Verdict(MISSING, "no monitor block: drift and outcomes go unseen",
                       f"monitor {model} {{\n  psi(features) > 0.25 -> alert({alert})\n"
                       f"  js(prediction) > 0.1 -> alert({alert})\n  {outcome} -> retrain, alert({alert})\n}}"
                       + _alert_snippet(spec))
    problems: list[str] = []
    fixes: list[str] = []
    watched = 0
    for model in models:
        kinds = {r.kind for mon in _monitor_of(spec, model) for r in mon.rules}
        watched += bool(kinds & {"drift", "prediction_drift", "outcome"})
        alert = _alert_name(spec)
        wanted = {"drift": f"psi(features) > 0.25 -> alert({alert})",
                  "prediction_drift": f"js(prediction) > 0.1 -> alert({alert})",
                  "outcome": f"{_TASK_METRIC[spec.model(model).task][2]} -> retrain, alert({alert})"}
        lacking = [k for k in wanted if k not in kinds]
        if not lacking:
            continue
        words = {"drift": "data drift", "prediction_drift": "prediction drift", "outcome": "outcome"}
        problems.append(f"`{model}` has no {', no '.join(words[k] for k in lacking)} rule")
        fixes.append(f"monitor {model} {{\n" + "".join(f"  {wanted[k]}\n" for k in lacking) + "}")
    if not problems:
        return Verdict(MET, f"data drift, prediction drift and outcome rules watch {_names(models)} "
                       "(`mlspec report` draws them)")
    return Verdict(PARTIAL if watched else MISSING, "; ".join(problems), "\n".join(fixes))


def _alerting(spec: Spec) -> Verdict:
    rules = [(mon, r) for mon in spec.monitors for r in mon.rules]
    routed = {t for _, r in rules for a in r.actions if a.kind == "alert" for t in a.targets}
    if not routed:
        alert = _alert_name(spec)
        fix = (f"monitor {rules[0][0].name} {{\n  {rules[0][1].text} -> alert({alert})\n}}"
               if rules else f"monitor {_served_models(spec)[0] if spec.models else 'churn_risk'} {{\n"
               f"  psi(features) > 0.25 -> alert({alert})\n}}")
        return Verdict(MISSING, "no monitor rule alerts anyone", fix + _alert_snippet(spec))
    sinks = [a for a in spec.alerts if a.name in routed]
    loud = [a.name for a in sinks if a.webhook is not None or a.file is not None]
    problems: list[str] = []
    fixes: list[str] = []
    if not loud:
        problems.append(f"routed sinks only log ({_names([a.name for a in sinks])}): nobody is notified")
        fixes.append(f'alert {sinks[0].name} {{\n  webhook = env("{sinks[0].name.upper()}_WEBHOOK_URL")\n}}')
    silent_monitors = [mon.name for mon in spec.monitors
                       if mon.rules and not any(a.kind == "alert" for r in mon.rules for a in r.actions)]
    if silent_monitors:
        problems.append(f"monitors that never alert: {_names(silent_monitors)}")
        fixes.extend(f"monitor {mon.name} {{\n  {mon.rules[0].text} -> alert({_alert_name(spec)})\n}}"
                     for mon in spec.monitors if mon.name in silent_monitors)
    if not problems:
        return Verdict(MET, f"monitor rules route to {_names([a.name for a in sinks])}; "
                       f"{_names(loud)} notif{'ies' if len(loud) == 1 else 'y'} beyond the log")
    return Verdict(PARTIAL, "; ".join(problems), "\n".join(fixes))


def _rollback(spec: Spec) -> Verdict:
    ungated = [m.name for m in spec.models if not m.gate]
    if spec.models and not ungated:
        return Verdict(MET, "`mlspec rollback` returns to the previous champion, which a gate accepted")
    fixes = "\n".join(f"model {name} {{\n  gate {{\n    {_TASK_METRIC[spec.model(name).task][0]}\n"
                      f"    {_TASK_METRIC[spec.model(name).task][1]}\n  }}\n}}" for name in ungated)
    why = f"no gate on {_names(ungated)}: every trained version becomes champion, so the previous one may be " \
          "no better" if ungated else "no model to roll back"
    return Verdict(PARTIAL, f"`mlspec rollback` is available, but {why}", fixes or None)


def _runbook(spec: Spec) -> Verdict:
    silent = [f"`{mon.name}: {r.text}`" for mon in spec.monitors for r in mon.rules
              if not any(a.kind == "alert" for a in r.actions)]
    routed = {t for mon in spec.monitors for r in mon.rules for a in r.actions for t in a.targets}
    unused = [a.name for a in spec.alerts if a.name not in routed]
    warn_only = [f"`{c.name}: {r.text}`" for c in spec.checks for r in c.rules if r.on_fail == "warn"]
    if not spec.checks and not spec.monitors:
        return Verdict(PARTIAL, "`mlspec runbook` generates it, but with no check or monitor it can only "
                       "describe rollback", "add check and monitor blocks (see data validation and monitoring)")
    problems: list[str] = []
    fixes: list[str] = []
    alert = _alert_name(spec)
    if silent:
        problems.append(f"monitor rules that page no one: {', '.join(silent)}")
        fixes.append(f"append `, alert({alert})` to those rules, e.g. `-> retrain, alert({alert})`")
    if unused:
        problems.append(f"alert sinks no rule routes to: {_names(unused)}")
        fixes.append(f"route a rule to them, e.g. `error_rate > 0.01 over 1h -> alert({unused[0]})`, or remove them")
    if warn_only:
        problems.append(f"check rules that only warn: {', '.join(warn_only)}")
        fixes.append("end them with `-> quarantine` (rows set aside) or `-> fail` (the run stops)")
    if not problems:
        return Verdict(MET, "`mlspec runbook` generates it; every check and monitor rule has a route")
    return Verdict(PARTIAL, "; ".join(problems), "\n".join(fixes))


_JUDGES: tuple[Callable[[Spec], Verdict], ...] = (
    _reproducible, _versioned, _pipeline, _consistency, _validation, _gate, _containers, _latency, _dashboard,
    _alerting, _rollback, _runbook,
)


def assess(spec: Spec) -> Readiness:
    """Judge a checked spec against every requirement, in DESIGN.md's order."""
    findings = []
    for number, (name, judge) in enumerate(zip(REQUIREMENTS, _JUDGES, strict=True), start=1):
        v = judge(spec)
        findings.append(Finding(number, name, v.status, v.detail, v.fix if v.status != MET else None))
    return Readiness(spec.project.name, tuple(findings))
