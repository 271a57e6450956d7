"""The Prometheus text format, both ways.

Reading: latency quantiles and error rate from a running `mlspec serve`'s /metrics page. Counters
and histograms there count since the server started (not a window); monitoring uses them when the
prediction log cannot answer (errors are not logged, only answered requests are).

Writing: what `mlspec monitor` measured, as the gauge the generated PrometheusRule reads
(mlspec/backends/k8s/alerts.py): `mlspec_monitor_value{project, monitor, metric, subject}` in base
units (seconds for latency and freshness), pushed to a Pushgateway or written for node-exporter's
textfile collector.
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from mlspec.runtime.monitoring.evaluate import MonitorRun

__all__ = ["MONITOR_GAUGE", "MONITOR_LABELS", "histogram_quantile", "monitor_registry", "monitor_samples",
           "parse_samples", "push_monitor", "scrape_serving", "serving_stats", "write_monitor_textfile"]

MONITOR_GAUGE = "mlspec_monitor_value"
MONITOR_LABELS = ("project", "monitor", "metric", "subject")
_TO_BASE_UNIT = {"ms": 1e-3, "": 1.0}  # Measurement.unit -> factor to the Prometheus base unit

_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line of the Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, value))
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) buckets; None when empty."""
    b = sorted(buckets)
    if not b or b[-1][1] <= 0:
        return None
    rank = q * b[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in b:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return b[-1][0]


def serving_stats(text: str, serves: Iterable[str]) -> dict[str, Any]:
    """latency_p50/p99 (seconds), error_rate (5xx share of predict requests) and requests, over `serves`."""
    wanted = set(serves)
    samples = parse_samples(text)
    buckets: dict[float, float] = {}
    total = errors = 0.0
    for name, labels, value in samples:
        if wanted and labels.get("serve") not in wanted:
            continue
        if name == "mlspec_request_duration_seconds_bucket":
            le = float(labels.get("le", "inf").replace("+Inf", "inf"))
            buckets[le] = buckets.get(le, 0.0) + value
        elif name == "mlspec_requests_total" and labels.get("endpoint", "predict") == "predict":
            total += value
            if labels.get("status", "200").isdigit() and int(labels["status"]) >= 500:
                errors += value
    pairs = list(buckets.items())
    return {"latency_p50": histogram_quantile(0.5, pairs), "latency_p99": histogram_quantile(0.99, pairs),
            "error_rate": errors / total if total else None, "requests": int(total)}


def scrape_serving(url: str, serves: Iterable[str], timeout: float = 5.0) -> dict[str, Any]:
    """Fetch and summarise a /metrics page (raises OSError when it cannot be read)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode("utf-8", errors="replace")
    return serving_stats(text, serves)


# ---- writing: the monitor gauge -------------------------------------------------------------------

def monitor_samples(run: MonitorRun) -> dict[tuple[str, str, str, str], float]:
    """(project, monitor, metric, subject) -> value in base units, for every measurement with a finite
    value. A rule's measurement comes before the info row of the same metric and subject (evaluate.py
    orders them so), and the first one of a label set is kept: one series per label set."""
    out: dict[tuple[str, str, str, str], float] = {}
    for m in run.measurements:
        if m.value is None or not math.isfinite(m.value):
            continue
        key = (run.project, m.monitor, m.metric, m.subject)
        if key not in out:
            out[key] = float(m.value) * _TO_BASE_UNIT.get(m.unit, 1.0)
    return out


def monitor_registry(run: MonitorRun) -> CollectorRegistry:
    """A fresh prometheus_client registry holding the monitor gauge of this run (nothing else)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry(auto_describe=True)
    gauge = Gauge(MONITOR_GAUGE, "Latest value measured by `mlspec monitor` (base units: seconds, ratios)",
                  list(MONITOR_LABELS), registry=registry)
    for labels, value in sorted(monitor_samples(run).items()):
        gauge.labels(*labels).set(value)
    return registry


def push_monitor(run: MonitorRun, url: str, timeout: float = 10.0) -> str:
    """PUT the gauge to a Pushgateway, replacing the group `job="mlspec_<project>"`; returns the job name."""
    from prometheus_client import push_to_gateway

    job = f"mlspec_{run.project}"
    push_to_gateway(url, job=job, registry=monitor_registry(run), timeout=timeout)
    return job


def write_monitor_textfile(run: MonitorRun, path: str) -> None:
    """Write the gauge for node-exporter's textfile collector (atomically: a temp file, then a rename)."""
    from prometheus_client import write_to_textfile

    write_to_textfile(path, monitor_registry(run))
