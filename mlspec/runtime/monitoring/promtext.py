"""Latency quantiles and error rate from a running `mlspec serve`'s Prometheus /metrics page.

Counters and histograms there count since the server started (not a window); monitoring uses
them when the prediction log cannot answer (errors are not logged, only answered requests are).
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections.abc import Iterable
from typing import Any

__all__ = ["histogram_quantile", "parse_samples", "scrape_serving", "serving_stats"]

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
