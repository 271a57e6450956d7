"""The operational runbook, generated from a checked spec.

On-call engineers read this at 3 a.m.: for every source, check, gate, monitor rule and alert it
says what firing means, the exact commands to investigate, and how to roll back. Generated, so
it can never drift from the spec. Output is a pure function of the IR (same spec -> same bytes),
and every section carries an explicit anchor (`runbook_anchor`) that alert payloads link to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mlspec.ir.spec import Alert, Check, CheckRule, ColumnDef, Model, Monitor, MonitorRule, Serve, Spec
from mlspec.plan.diff import fmt_duration

__all__ = ["check_rule_anchor", "monitor_rule_anchor", "render_runbook", "runbook_anchor"]

_OPS = (("->", " to "), (">=", " ge "), ("<=", " le "), ("!=", " ne "), ("==", " eq "), (">", " gt "),
        ("<", " lt "), ("+", " plus "), ("-", " minus "), ("*", " times "), ("/", " div "), ("%", " mod "))
_NOT_SLUG = re.compile(r"[^a-z0-9_]+")
_COMMENT = re.compile(r"\s+#\s+")
_DRIFT_MEANING = {
    "psi": "Population Stability Index of current values against the champion's training reference "
           "(10 reference-quantile bins plus two open outer bins; below 0.1 stable, 0.1-0.25 a moderate shift, "
           "above 0.25 a major one)",
    "js": "Jensen-Shannon distance between the current and reference distributions (log base 2: 0 identical, "
          "1 disjoint)",
    "ks": "two-sample Kolmogorov-Smirnov statistic: the largest gap between the current and reference "
          "cumulative distributions (0..1)",
    "ks_pvalue": "p-value of the two-sample Kolmogorov-Smirnov test: small means the distributions differ "
                 "(on large samples even a tiny shift is significant, so read it next to psi and js)",
}
_ON_FAIL = {
    "quarantine": "failing rows are set aside in the quarantine table with the reason; the run continues without them",
    "fail": "the run stops at this check: nothing downstream trains or scores, and the champion keeps serving",
    "warn": "a warning in the run summary only; the rows continue",
}
_OP_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below", "==": "equal to",
             "!=": "not equal to"}


# ---- anchors -----------------------------------------------------------------------------

def _slug(text: str) -> str:
    text = text.lower()
    for op, word in _OPS:
        text = text.replace(op, word)
    return _NOT_SLUG.sub("-", text).strip("-")


def runbook_anchor(kind: str, name: str) -> str:
    """The anchor of a runbook section: `runbook_anchor("alert", "oncall")` -> `alert-oncall`.

    Kinds: source, check, check-rule, gate, monitor, monitor-rule, alert, serve, and section (for
    the fixed sections: overview, paged, rollback). Link with `RUNBOOK.md#<anchor>`; stable as
    long as the named thing keeps its name (rules: their text).
    """
    return f"{_NOT_SLUG.sub('-', kind.lower()).strip('-')}-{_slug(name)}"


def monitor_rule_anchor(monitor: str, rule: MonitorRule | str) -> str:
    """The anchor of one monitor rule, from the monitor's name and the rule (or its text)."""
    return runbook_anchor("monitor-rule", f"{monitor} {rule if isinstance(rule, str) else rule.text}")


def check_rule_anchor(check: str, rule: CheckRule | str) -> str:
    """The anchor of one check rule, from the check's name and the rule (or its text)."""
    return runbook_anchor("check-rule", f"{check} {rule if isinstance(rule, str) else rule.text}")


# ---- Markdown helpers ----------------------------------------------------------------------

def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _link(text: str, anchor: str) -> str:
    return f"[{text}](#{anchor})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(items: Sequence[str]) -> str:
    return ", ".join(_code(x) for x in items)


def _num(x: float) -> str:
    return f"{x:g}"


class _Doc:
    """Lines of Markdown with one blank line between blocks, never two."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.used: set[str] = set()

    def block(self, *lines: str) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.lines.extend(lines)

    def heading(self, level: int, text: str, anchor: str) -> None:
        while anchor in self.used:  # two rules with the same text: the later one gets a suffix
            anchor += "-2"
        self.used.add(anchor)
        self.block(f'<a id="{anchor}"></a>', "", f"{'#' * level} {text}")

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        self.block("| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
                   *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows))

    def commands(self, *lines: str) -> None:
        """A shell block with the `# comments` aligned in one column."""
        split = [_COMMENT.split(line, maxsplit=1) for line in lines]
        width = max((len(parts[0]) for parts in split if len(parts) == 2), default=0)
        self.block("```sh", *(f"{parts[0].ljust(width)}  # {parts[1]}" if len(parts) == 2 else parts[0]
                              for parts in split), "```")

    def bullets(self, items: Iterable[str]) -> None:
        self.block(*(f"- {x}" for x in items))

    def text(self) -> str:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"


# ---- the spec, read for people --------------------------------------------------------------

def _spec_arg(spec: Spec) -> str:
    """What commands pass as SPEC: the one file, or `.` for a project of several files."""
    return spec.files[0] if len(spec.files) == 1 else "."


def _constraints(c: ColumnDef) -> str:
    parts = []
    if c.not_null:
        parts.append("not null")
    if c.unique:
        parts.append("unique")
    if c.allowed is not None:
        parts.append("in (" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in c.allowed) + ")")
    if c.value_range is not None:
        parts.append(f"range [{_num(c.value_range[0])}, {_num(c.value_range[1])}]")
    if c.references is not None:
        parts.append(f"references {c.references[0]}.{c.references[1]}")
    return ", ".join(parts) or "-"


def _threshold(rule: MonitorRule) -> str:
    return fmt_duration(rule.threshold) if rule.kind in ("latency", "freshness") else _num(rule.threshold)


def _window(rule: MonitorRule) -> str:
    return f"over the last {fmt_duration(rule.window_ms)}" if rule.window_ms else \
        "over the monitoring window (`mlspec monitor --window`)"


def _spelling(rule: MonitorRule) -> str:
    """The rule as the spec writes it, with its window (the anchor keeps to the condition)."""
    return rule.text + (f" over {fmt_duration(rule.window_ms)}" if rule.window_ms else "")


def _subject(rule: MonitorRule, model: Model) -> str:
    if rule.subject == ("prediction",):
        return "the prediction (score) distribution"
    if not rule.subject:
        return "the serving traffic"
    if rule.kind in ("freshness", "quarantine_rate"):
        return f"source {_code(rule.subject[0])}"
    names = ", ".join(_code(q) for q in rule.subject)
    if rule.subject == model.features:
        return f"every feature of the model ({_plural(len(rule.subject), 'feature')}: {names})"
    return f"{_plural(len(rule.subject), 'feature')}: {names}"


def _routes(rule: MonitorRule) -> list[str]:
    return [t for a in rule.actions if a.kind == "alert" for t in a.targets]


def _retrains(rule: MonitorRule) -> bool:
    return any(a.kind == "retrain" for a in rule.actions)


def _serves_of(spec: Spec, model: str) -> list[Serve]:
    return [s for s in spec.serves if s.model == model]


def _serve_line(s: Serve) -> str:
    if s.mode == "batch":
        when = f"schedule {_code(s.schedule)}" if s.schedule else "on demand (`mlspec score`)"
        return f"{when}; writes {_code(s.output)}" if s.output else when
    parts = []
    if s.latency_p99_ms is not None:
        parts.append(f"latency_p99 {fmt_duration(s.latency_p99_ms)}")
    if s.replicas is not None:
        parts.append(f"replicas {s.replicas[0]}..{s.replicas[1]}")
    if s.shadow:
        parts.append(f"shadow {_code(s.shadow)}")
    if s.input_stream:
        parts.append(f"reads stream {_code(s.input_stream)}")
    if s.output_stream:
        parts.append(f"writes stream {_code(s.output_stream)}")
    return "; ".join(parts) or "-"


def _sinks(a: Alert) -> str:
    parts = []
    if a.webhook is not None:
        kind = "Slack-compatible webhook" if a.slack else "webhook (JSON POST)"
        parts.append(f"{kind} to the URL in the environment variable {_code(a.webhook.env)}")
    if a.file is not None:
        parts.append(f"JSON lines appended to {_code(a.file)}")
    if a.log:
        parts.append("the mlspec log")
    return "; ".join(parts)


# ---- sections ------------------------------------------------------------------------------

def _overview(doc: _Doc, spec: Spec, arg: str) -> None:
    p = spec.project
    doc.heading(2, "Overview", runbook_anchor("section", "overview"))
    facts = [f"Project: {_code(p.name)}" + (f" - {p.description}" if p.description else ""),
             "Owner: " + (p.owner or '(none in the spec: add `owner = "team@example.com"` to the project)'),
             f"Spec: {', '.join(_code(f) for f in spec.files)}",
             f"Online store: {p.online_store}"]
    doc.bullets(facts)
    doc.block(f"Run every command from the directory that holds {_code(spec.files[0] if spec.files else arg)}. "
              "Nothing here needs a secret: webhook URLs are read from the environment by name.")
    if spec.models:
        doc.block("**Models**")
        rows = []
        for m in spec.models:
            gate = _link("gated", runbook_anchor("gate", m.name)) if m.gate else "no gate"
            monitors = ", ".join(_link(mon.name, runbook_anchor("monitor", mon.name))
                                 for mon in spec.monitors if mon.model == m.name) or "not monitored"
            rows.append([_code(m.name), m.task, _code(m.label), str(len(m.features)), gate, monitors])
        doc.table(["model", "task", "label", "features", "gate", "monitored by"], rows)
    if spec.serves:
        doc.block("**Serving**")
        doc.table(["serve", "model", "mode", "details"],
                  [[_code(s.name), _code(s.model), s.mode, _serve_line(s)] for s in spec.serves])
    schedules = [f"serve {_code(s.name)}: cron {_code(s.schedule)} (batch scores)"
                 for s in spec.serves if s.schedule]
    schedules += [f"monitor {_code(m.name)}: retrain every {fmt_duration(m.retrain_every_ms)}"
                  for m in spec.monitors if m.retrain_every_ms]
    schedules += [f"source {_code(s.name)}: new rows expected within {fmt_duration(s.freshness_ms)}"
                  for s in spec.sources if s.freshness_ms]
    doc.block("**Schedules**")
    doc.bullets(schedules or ["none declared: the pipeline runs when someone runs `mlspec run`"])


def _paged(doc: _Doc, spec: Spec) -> None:
    """The first thing to read when paged: alert -> the rules that route to it."""
    doc.heading(2, "If you were paged", runbook_anchor("section", "paged"))
    rows = [[_link(_code(_spelling(r)), monitor_rule_anchor(mon.name, r)), _code(mon.model),
             ", ".join(_link(t, runbook_anchor("alert", t)) for t in _routes(r)) or "(no alert)",
             "yes" if _retrains(r) else "no"]
            for mon in spec.monitors for r in mon.rules]
    if not rows:
        doc.block("No monitor rule alerts anyone: add a `monitor` block with `-> alert(name)` rules.")
        return
    doc.block("The alert payload names the rule and links here. Find the rule, read what it means, run the "
              "investigation commands, then decide; when in doubt, " + _link("roll back", runbook_anchor(
                  "section", "rollback")) + " first and investigate after.")
    doc.table(["rule", "model", "alerts", "retrains"], rows)


def _sources(doc: _Doc, spec: Spec, arg: str) -> None:
    doc.heading(2, "Sources", runbook_anchor("section", "sources"))
    doc.block("Every run extracts each source into the warehouse and checks its schema on read. A missing or "
              "renamed column, or a changed type, stops the run naming the source, the column and what was "
              "expected. Rows that break a declared constraint (not null, unique, allowed values, range, "
              "references) are quarantined: set aside in `_mlspec_quarantine` with their reason, so one bad "
              "export never poisons training or scores, and never silently disappears either.")
    for s in spec.sources:
        doc.heading(3, f"Source {_code(s.name)}", runbook_anchor("source", s.name))
        where = _code(s.path) + (f", table {_code(s.table)}" if s.table else "") + f" ({s.format})"
        facts = [f"Reads {where}" + (f"; live rows on stream {_code(s.stream)}" if s.stream else "")]
        facts.append(f"Key: {_code(s.key)}" if s.key else "Key: none (rows are not deduplicated by key)")
        facts.append(f"Incremental by {_code(s.timestamp)}: each run reads only rows past the watermark"
                     if s.timestamp else "No timestamp: re-read in full on every run, and its rows count as known "
                     "at every time")
        guards = [_link(f"check {c.name}", runbook_anchor("check", c.name)) for c in spec.checks
                  if c.target == s.name]
        freshness_rules = [_link(_code(r.text), monitor_rule_anchor(mon.name, r)) for mon in spec.monitors
                           for r in mon.rules if r.kind in ("freshness", "quarantine_rate") and r.subject == (s.name,)]
        if s.freshness_ms is not None:
            facts.append(f"Freshness: new rows expected within {fmt_duration(s.freshness_ms)}")
        if guards:
            facts.append(f"Checked by {', '.join(guards)}")
        if freshness_rules:
            facts.append(f"Watched by {', '.join(freshness_rules)}")
        doc.bullets(facts)
        doc.table(["column", "type", "constraints"],
                  [[_code(c.name), c.type_name, _constraints(c)] for c in s.columns])
        doc.block(f"**Quarantine here means** rows of {_code(s.name)} broke one of these constraints and were left "
                  "out of this run. A few is normal noise; a jump means the upstream export changed. The reason "
                  "names the constraint.")
        doc.block("**Investigate**")
        doc.commands(f"mlspec quarantine {arg} --json            # rows set aside, by node and reason",
                     f"mlspec run {arg} --node source:{s.name}   # re-extract this source alone")


def _checks(doc: _Doc, spec: Spec, arg: str) -> None:
    doc.heading(2, "Checks", runbook_anchor("section", "checks"))
    if not spec.checks:
        doc.block("The spec has no `check` block: nothing but the source schemas validates the data.")
        return
    for c in spec.checks:
        _check(doc, c, arg)


def _check(doc: _Doc, c: Check, arg: str) -> None:
    node = f"check:{c.name}"
    doc.heading(3, f"Check {_code(c.name)}", runbook_anchor("check", c.name))
    what = "source" if c.target_kind == "source" else "feature group"
    where = "after extraction, before anything reads the source" if c.target_kind == "source" else \
        "after the features are computed, before training and scoring read them"
    doc.block(f"Guards {what} {_code(c.target)}, {where}. Node {_code(node)}.")
    for r in c.rules:
        doc.heading(4, _code(r.text), check_rule_anchor(c.name, r))
        if r.level == "row":
            fires = f"some rows make {_code(r.text)} false (a null result passes: unknown is not a violation)"
        else:
            fires = f"the table as a whole fails {_code(r.text)}"
        doc.bullets([f"Fires when {fires}.",
                     f"Then ({r.level} rule, on_fail = {r.on_fail}): {_ON_FAIL[r.on_fail]}." +
                     (f" The quarantine reason is {_code(r.text + ' is false')}." if r.on_fail == "quarantine"
                      else "")])
    doc.block("**Investigate**")
    doc.commands(f"mlspec quarantine {arg} --json        # rows set aside, by node ({node}) and reason",
                 f"mlspec run {arg} --node {node}   # re-run this check on what the warehouse holds",
                 f"mlspec run {arg} --until {node}  # re-extract upstream, then re-run the check")
    doc.block("Then: bad upstream data is fixed at the source and the pipeline re-run; a rule that no longer "
              "matches reality is changed in the spec, reviewed with `mlspec plan`.")


def _gates(doc: _Doc, spec: Spec, arg: str) -> None:
    doc.heading(2, "Gates", runbook_anchor("section", "gates"))
    for m in spec.models:
        doc.heading(3, f"Gate {_code(m.name)}", runbook_anchor("gate", m.name))
        if not m.gate:
            doc.block(f"Model {_code(m.name)} has no gate: every trained version becomes champion. Add "
                      "`gate { ... }` with absolute thresholds and a champion comparison.")
            continue
        doc.table(["rule", "compares with"],
                  [[_code(r.text), "the current champion" if r.vs_champion else "an absolute threshold"]
                   for r in m.gate])
        doc.block("**A rejection means** the candidate was registered with status `rejected` and never promoted; "
                  "the champion is unchanged and keeps serving, and the run names the failing rule. A rejection "
                  "protects production: it is an incident only when the champion itself is degrading (see the "
                  "outcome rules of its monitor).")
        doc.block("**Investigate**")
        doc.commands(f"mlspec models {arg}                    # candidate vs champion metrics",
                     f"mlspec run {arg} --until gate:{m.name}   # retrain and re-judge",
                     f"mlspec quarantine {arg}                # did a data problem shrink the training set?")
        doc.block(f"Override only after review: `mlspec promote VERSION {arg} --model {m.name} --force`.")


def _rule_meaning(spec: Spec, mon: Monitor, r: MonitorRule) -> tuple[str, list[str], str]:
    """(what it means, investigation commands, what to decide) for one monitor rule."""
    arg = _spec_arg(spec)
    model = spec.model(mon.model)
    online = [s.name for s in _serves_of(spec, model.name) if s.mode in ("realtime", "streaming")]
    http = any(s.mode == "realtime" for s in _serves_of(spec, model.name))
    base = [f"mlspec monitor {arg} --json               # every rule: value, threshold, status",
            f"mlspec report {arg} -o report.html        # distributions and history, offline HTML"]
    verify = [f"mlspec verify {arg} --model {model.name}   # batch vs online features: must be 0 mismatches"]
    match r.kind:
        case "drift":
            meaning = (f"{_DRIFT_MEANING.get(r.metric, r.metric)}, on {_subject(r, model)}. The inputs the champion "
                       "sees no longer look like its training data. Most likely causes first: an upstream change "
                       "(format, unit, default value, a broken join), a real shift in the population (season, "
                       "campaign, new market), or training-serving skew.")
            cmds = [*base, *(verify if online else []), f"mlspec quarantine {arg}   # rows set aside upstream"]
            decide = ("upstream bug: fix the source and re-run. Real shift: retrain (`mlspec retrain " + arg +
                      "`); the gate decides whether the new model is promoted. Skew: a bug in serving, not in the "
                      "model; rolling back does not fix it.")
        case "prediction_drift":
            meaning = (f"{_DRIFT_MEANING.get(r.metric, r.metric)}, on {_subject(r, model)}. Scores moved: more or "
                       "fewer entities land in each risk band. Either the inputs drifted (see the data drift rules) "
                       "or a different version is serving.")
            cmds = [*base, f"mlspec models {arg}                   # was a new champion promoted recently?"]
            decide = ("a recent promotion explains it and outcomes look worse: roll back. Inputs drifted: follow the "
                      "data drift rules. Neither: watch the outcome rules as labels arrive.")
        case "outcome":
            meaning = (f"The model's {r.metric} {_window(r)}, on predictions joined with labels as they arrive, is "
                       f"{_OP_WORDS.get(r.op, r.op)} {_threshold(r)}. The model is making worse decisions, measured "
                       "on real outcomes.")
            cmds = [*base, f"mlspec models {arg}                   # the metric that justified deployment"]
            decide = ("degraded since a recent promotion: roll back. Otherwise the world moved: retrain (`mlspec "
                      f"retrain {arg}`); the gate keeps a worse candidate out.")
        case "latency":
            slas = [f"{_code(s.name)} promises {fmt_duration(s.latency_p99_ms)}"
                    for s in _serves_of(spec, model.name) if s.latency_p99_ms is not None]
            meaning = (f"Request latency ({r.metric}) is {_OP_WORDS.get(r.op, r.op)} {_threshold(r)}"
                       + (f" ({'; '.join(slas)})" if slas else "") + ". Scores arrive later than promised, "
                       "or callers time out.")
            cmds = [*base, *(["curl -s http://127.0.0.1:8080/metrics | grep mlspec_request_duration_seconds",
                              "curl -s http://127.0.0.1:8080/ready"] if http else [])]
            decide = ("started with a promotion (a bigger model): roll back. Load grew: add replicas within the serve "
                      "block's range. The online store is slow: check it before the model.")
        case "error_rate":
            meaning = f"More than the tolerated share ({_threshold(r)}) of predictions end in an error."
            cmds = [*base, *(["curl -s http://127.0.0.1:8080/metrics | grep mlspec_requests_total",
                              "curl -s http://127.0.0.1:8080/ready"] if http else [])]
            decide = ("5xx after a promotion: roll back. 4xx: clients send invalid requests (compare them with "
                      "/openapi.json). /ready failing: the champion or the online store is not loaded.")
        case "null_rate":
            meaning = (f"The share of null values of {_code(r.subject[0])} in scored data is "
                       f"{_OP_WORDS.get(r.op, r.op)} {_threshold(r)}: an upstream column went missing or a join "
                       "stopped matching. The model still scores, on less information.")
            group = r.subject[0].split(".")[0]
            cmds = [*base, f"mlspec quarantine {arg}   # rows set aside upstream",
                    f"mlspec run {arg} --until features:{group}   # recompute the group from fresh data",
                    *(verify if online else [])]
            decide = "fix the upstream data; when scores are already affected and outcomes suffer, roll back."
        case "freshness":
            meaning = (f"Source {_code(r.subject[0])} has had no new rows for longer than {_threshold(r)}: the "
                       "upstream export stalled or the pipeline stopped. Scores meanwhile use stale features.")
            cmds = [*base, f"mlspec run {arg} --node source:{r.subject[0]}   # extract now and see what arrives"]
            decide = "restore the upstream feed or the scheduler; a rollback does not help stale data."
        case "quarantine_rate":
            meaning = (f"The share of rows of source {_code(r.subject[0])} set aside by its schema constraints and "
                       f"checks is {_OP_WORDS.get(r.op, r.op)} {_threshold(r)}: the upstream export changed.")
            cmds = [*base, f"mlspec quarantine {arg} --json   # the reasons, with example rows"]
            decide = ("fix the export, or, when the data is right and the constraint is wrong, change the spec "
                      "(reviewed with `mlspec plan`).")
        case _:
            meaning = f"{_code(r.text)} {_window(r)}."
            cmds, decide = base, "read the monitor output and decide."
    return meaning, cmds, decide


def _monitors(doc: _Doc, spec: Spec, arg: str) -> None:
    doc.heading(2, "Monitors", runbook_anchor("section", "monitors"))
    if not spec.monitors:
        doc.block("The spec has no `monitor` block: drift, outcomes and latency go unwatched.")
        return
    doc.block(f"`mlspec monitor {arg}` evaluates every rule against the champion's reference statistics (fitted "
              "at training and stored with the version) and the latest data, records one row per metric per "
              "window, and exits 1 when an alert fires.")
    for mon in spec.monitors:
        doc.heading(3, f"Monitor {_code(mon.name)}", runbook_anchor("monitor", mon.name))
        facts = [f"Watches model {_code(mon.model)}"]
        if mon.retrain_every_ms:
            facts.append(f"Retrains every {fmt_duration(mon.retrain_every_ms)} (`mlspec retrain {arg}`): fresh "
                         "data, the gate against the champion, promotion only when it passes")
        doc.bullets(facts)
        for r in mon.rules:
            doc.heading(4, _code(_spelling(r)), monitor_rule_anchor(mon.name, r))
            meaning, cmds, decide = _rule_meaning(spec, mon, r)
            actions = [f"alert {_link(t, runbook_anchor('alert', t))}" for t in _routes(r)]
            if _retrains(r):
                actions.append("retrain: `mlspec retrain` runs, gated against the champion (guardrails: enough new "
                               "labelled rows, a maximum retrain frequency, no promotion when data checks failed)")
            doc.bullets([f"Fires when {r.metric} is {_OP_WORDS.get(r.op, r.op)} {_threshold(r)} {_window(r)}.",
                         f"Means: {meaning}",
                         f"Does: {'; '.join(actions)}."])
            doc.block("**Investigate**")
            doc.commands(*cmds)
            doc.block(f"**Decide**: {decide}")


def _alerts(doc: _Doc, spec: Spec) -> None:
    doc.heading(2, "Alerts", runbook_anchor("section", "alerts"))
    if not spec.alerts:
        doc.block("The spec has no `alert` block: no one is notified.")
        return
    doc.block("Each alert carries the spec, model version, metric, value, threshold, window and a link to the "
              "rule's section of this runbook. Repeats of the same rule within the dedupe interval are sent once.")
    for a in spec.alerts:
        doc.heading(3, f"Alert {_code(a.name)}", runbook_anchor("alert", a.name))
        fired = [_link(f"{mon.name}: {_code(_spelling(r))}", monitor_rule_anchor(mon.name, r))
                 for mon in spec.monitors for r in mon.rules if a.name in _routes(r)]
        doc.bullets([f"Delivers to: {_sinks(a)}", f"Dedupe: {fmt_duration(a.dedupe_ms)}",
                     "Fired by: " + (", ".join(fired) if fired else "no rule (nothing routes here)")])


def _rollback(doc: _Doc, spec: Spec, arg: str) -> None:
    doc.heading(2, "Rollback", runbook_anchor("section", "rollback"))
    doc.block("`mlspec rollback` makes the previous champion current again, atomically, in well under a second. "
              "Running servers poll the registry and reload it (default every 0.2 s); batch scoring uses it on "
              "its next run. Nothing is retrained and nothing is deleted, so a rollback is itself reversible.")
    if not spec.models:
        doc.block("The spec has no model yet.")
        return
    for m in spec.models:
        doc.heading(3, f"Roll back {_code(m.name)}", runbook_anchor("rollback", m.name))
        steps = [f"mlspec models {arg}                      # champion (★) and earlier versions",
                 f"mlspec rollback {arg} --model {m.name}     # champion -> previous champion",
                 f"mlspec models {arg}                      # confirm the new champion"]
        realtime = False
        for s in _serves_of(spec, m.name):
            if s.mode == "realtime":
                realtime = True
                key = spec.entity(m.entity).key
                steps += ["curl -s http://127.0.0.1:8080/ready   # the version each serve now answers with",
                          f"curl -s -X POST http://127.0.0.1:8080/v1/models/{s.name}/predict \\",
                          f"     -H 'content-type: application/json' -d '{{\"{key}\": 1}}'"]
            elif s.mode == "batch":
                steps.append(f"mlspec score {arg} --serve {s.name}   # rescore with the restored champion")
        doc.commands(*steps)
        if realtime:
            request = [g.name for g in spec.groups if g.request and any(q.split(".")[0] == g.name for q in m.features)]
            doc.block("A running `mlspec serve` picks the restored champion up by itself; start one with "
                      f"`mlspec serve {arg}` when none runs. /ready must answer 200 with the restored version"
                      + (f"; a predict request also carries the request fields of {_names(request)} "
                         "(see /openapi.json)." if request else "."))
        doc.block(f"To undo: `mlspec promote VERSION {arg} --model {m.name}` with the version that was champion "
                  "before (the rollback prints it).")


def render_runbook(spec: Spec) -> str:
    """The whole runbook as Markdown: a pure function of the spec, so the same spec gives the same bytes."""
    arg = _spec_arg(spec)
    doc = _Doc()
    doc.block(f"# Runbook: {spec.project.name}",
              "",
              f"<!-- generated by `mlspec runbook` from {', '.join(spec.files) or 'the spec'}; "
              "edit the spec, not this file -->")
    sections = [("Overview", "overview"), ("If you were paged", "paged"), ("Sources", "sources"),
                ("Checks", "checks"), ("Gates", "gates"), ("Monitors", "monitors"), ("Alerts", "alerts"),
                ("Rollback", "rollback")]
    doc.block(*(f"{i}. {_link(t, runbook_anchor('section', a))}" for i, (t, a) in enumerate(sections, start=1)))
    _overview(doc, spec, arg)
    _paged(doc, spec)
    _sources(doc, spec, arg)
    _checks(doc, spec, arg)
    _gates(doc, spec, arg)
    _monitors(doc, spec, arg)
    _alerts(doc, spec)
    _rollback(doc, spec, arg)
    return doc.text()
