"""Monitor thresholds -> Prometheus alerting rules (a prometheus-operator PrometheusRule).

Online rules read what `mlspec serve` exports: latency_p99 from the histogram
`mlspec_request_duration_seconds`, error rate from `mlspec_requests_total` by status. Every
other rule (drift, outcome, null and quarantine rates, freshness) reads the gauge the monitor
job publishes, `mlspec_monitor_value{project, monitor, metric, subject}`, in base units.
Label and annotation values are Go templates to Prometheus: spec text is escaped for that.
"""

from __future__ import annotations

import re
from typing import Any

from mlspec.backends.common import Context, dns_label, duration_ms
from mlspec.ir.spec import Monitor, MonitorRule
from mlspec.ops.runbook import monitor_rule_anchor

ONLINE_WINDOW_MS = 300_000  # rate() window when a latency rule names none
PROMQL_OP = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "==": "==", "!=": "!="}


def go_template_literal(text: str) -> str:
    """Text that Prometheus' template engine prints as is: `{{` and `}}` become template strings."""
    return re.sub(r"\{\{|\}\}", lambda m: '{{ "' + m.group() + '" }}', text)


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def promql_regex_alternatives(values: list[str]) -> str:
    """An RE2 alternation matching exactly these values (as a PromQL string literal)."""
    return promql_string("|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", v) for v in values))


def _seconds(ms: float) -> str:
    return format(ms / 1000, "g")


def _camel(*parts: str) -> str:
    return "".join(p[:1].upper() + p[1:] for part in parts for p in part.split("_") if p)


def _online_serves(ctx: Context, model: str) -> list[str]:
    return [s.name for s in ctx.spec.serves if s.model == model and s.mode in ("realtime", "streaming")]


def rule_expr(ctx: Context, mon: Monitor, rule: MonitorRule) -> str | None:
    """The PromQL of one monitor rule, or None when nothing exports its metric (no online serve)."""
    op, threshold = PROMQL_OP[rule.op], rule.threshold
    if rule.kind in ("latency", "error_rate"):
        serves = _online_serves(ctx, mon.model)
        if not serves:
            return None
        window = _seconds_window(rule.window_ms or ONLINE_WINDOW_MS)
        match = f"serve=~{promql_regex_alternatives(serves)}"
        if rule.kind == "latency":
            q = rule.metric.removeprefix("latency_p")
            quantile = format(int(q) / 100, "g") if q.isdigit() else "0.99"
            return (f"histogram_quantile({quantile}, sum by (le, serve) "
                    f"(rate(mlspec_request_duration_seconds_bucket{{{match}}}[{window}]))) {op} {_seconds(threshold)}")
        return (f"sum by (serve) (rate(mlspec_requests_total{{{match},status=~\"5..\"}}[{window}]))"
                f" / sum by (serve) (rate(mlspec_requests_total{{{match}}}[{window}])) {op} {threshold:g}")
    value = _seconds(threshold) if rule.kind == "freshness" else format(threshold, "g")
    labels = [f"project={promql_string(ctx.project)}", f"monitor={promql_string(mon.name)}",
              f"metric={promql_string(rule.metric)}"]
    if rule.subject:
        labels.append(f"subject=~{promql_regex_alternatives(list(rule.subject))}")
    return f"mlspec_monitor_value{{{','.join(labels)}}} {op} {value}"


def _seconds_window(ms: int) -> str:
    return duration_ms(max(ms, 60_000))


def prometheus_rule(ctx: Context, mon: Monitor, labels: dict[str, str], runbook: str) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for rule in mon.rules:
        expr = rule_expr(ctx, mon, rule)
        if expr is None:
            continue
        name = "Mlspec" + _camel(ctx.project, mon.name, rule.metric)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name += str(seen[name])
        sinks = sorted({t for a in rule.actions if a.kind == "alert" for t in a.targets})
        retrain = any(a.kind == "retrain" for a in rule.actions)
        entry: dict[str, Any] = {"alert": name, "expr": expr}
        if rule.kind in ("latency", "error_rate"):
            entry["for"] = "5m"
        entry["labels"] = {"severity": "page" if retrain else "warning", "mlspec_project": ctx.project,
                           "mlspec_monitor": mon.name, "mlspec_metric": go_template_literal(rule.metric),
                           "mlspec_alert": ",".join(sinks), "mlspec_retrain": "true" if retrain else "false"}
        entry["annotations"] = {
            "summary": go_template_literal(f"{ctx.project}/{mon.name}: {rule.text}"),
            "description": go_template_literal(f"monitor {mon.name} of model {mon.model}: `{rule.text}`")
            + " (value {{ $value }})",
            "runbook_url": go_template_literal(f"{runbook}#{monitor_rule_anchor(mon.name, rule)}"),
        }
        rules.append(entry)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": dns_label("mlspec", ctx.project, mon.name), "labels": labels},
        "spec": {"groups": [{"name": f"mlspec.{ctx.project}.{mon.name}", "rules": rules}]},
    }
