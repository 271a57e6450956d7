"""Latency quantiles and error rate read from a serving app's real Prometheus exposition."""

from __future__ import annotations

import pytest

from mlspec.runtime.monitoring.promtext import histogram_quantile, parse_samples, serving_stats


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.01, 50.0), (0.05, 90.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.04 * (70 - 50) / 40)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.05 + 0.05 * (99 - 90) / 10)
    assert histogram_quantile(0.99, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(0.1, 5.0), (float("inf"), 10.0)]) == 0.1  # in the +Inf bucket


def test_stats_from_a_real_serving_metrics_registry() -> None:
    metrics_mod = pytest.importorskip("mlspec.runtime.serving.metrics")
    m = metrics_mod.ServingMetrics()
    for i in range(100):
        m.latency.labels("churn_api").observe(0.004 if i < 95 else 0.2)
        m.count_request("predict", "churn_api", 500 if i % 25 == 0 else 200)
    m.count_request("predict", "other", 500)  # another serve block: not counted
    m.latency.labels("other").observe(2.0)
    text = m.exposition().decode()
    assert ("mlspec_requests_total", {"endpoint": "predict", "serve": "churn_api", "status": "200"}, 96.0) in \
        parse_samples(text)
    stats = serving_stats(text, ["churn_api"])
    assert stats["requests"] == 100 and stats["error_rate"] == pytest.approx(0.04)
    assert 0.003 <= stats["latency_p50"] <= 0.005 and 0.1 <= stats["latency_p99"] <= 0.25
