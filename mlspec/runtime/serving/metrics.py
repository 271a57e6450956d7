"""Prometheus metrics of one serving app, in its own CollectorRegistry (no process-global state).

Names follow the project convention (base units, `_total` on counters). Label values are bounded:
`serve` is a serve block name of the spec (or "" when the path named none), `status` an HTTP code,
`feature` a qualified feature name. Children are bound once and cached, because label lookup is
the costly part of a prometheus_client update and it sits on the request path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "PREDICTION_BUCKETS", "ServeMetrics", "ServingMetrics", "set_version_info"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Probabilities (binary models) at 0.05 resolution, then coarse buckets for regression outputs.
PREDICTION_BUCKETS = (*(round(i * 0.05, 2) for i in range(1, 21)), 2.5, 5.0, 10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class ServeMetrics:
    """The per-serve children a scored request updates, bound once."""

    latency: Histogram
    predictions: Counter
    prediction_value: Histogram
    unknown_entities: Counter


class ServingMetrics:
    """Every metric `mlspec serve` exposes at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # CPU seconds, resident memory, open files: the infrastructure panel
        PlatformCollector(registry=r)
        self.requests = Counter("mlspec_requests", "HTTP requests by endpoint, serve block and status code",
                                ("endpoint", "serve", "status"), registry=r)
        self.latency = Histogram("mlspec_request_duration_seconds", "Prediction request latency, seconds",
                                 ("serve",), buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("mlspec_request_errors", "Failed prediction requests by kind "
                              "(bad_request, invalid, not_found, unavailable, internal)", ("serve", "kind"), registry=r)
        self.predictions = Counter("mlspec_predictions", "Rows scored (a batch counts each row)", ("serve",),
                                   registry=r)
        self.prediction_value = Histogram("mlspec_prediction_value", "Champion prediction (score) per row",
                                          ("serve",), buckets=PREDICTION_BUCKETS, registry=r)
        self.feature_nulls = Counter("mlspec_feature_null", "Rows served with a null feature value",
                                     ("serve", "feature"), registry=r)
        self.unknown_entities = Counter("mlspec_unknown_entity", "Rows whose entity had no online data "
                                        "(served with the default features)", ("serve",), registry=r)
        self.model_info = Gauge("mlspec_model_version_info", "The model version serving (1) per serve and role",
                                ("serve", "role", "model", "version"), registry=r)
        self.latency_objective = Gauge("mlspec_latency_p99_objective_seconds", "The serve block's `latency_p99`, "
                                       "for alert rules comparing it with mlspec_request_duration_seconds", ("serve",),
                                       registry=r)
        self.reloads = Counter("mlspec_model_reloads", "Champion swaps picked up without a restart", ("model",),
                               registry=r)
        self.shadow_errors = Counter("mlspec_shadow_errors", "Shadow scorings that failed (never seen by clients)",
                                     ("serve",), registry=r)
        self.log_dropped = Counter("mlspec_prediction_log_dropped", "Prediction log records dropped because the "
                                   "writer fell behind", registry=r)
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._null_children: dict[tuple[str, str], Counter] = {}
        self._serve_children: dict[str, ServeMetrics] = {}

    def serve(self, serve: str) -> ServeMetrics:
        found = self._serve_children.get(serve)
        if found is None:
            found = self._serve_children[serve] = ServeMetrics(
                self.latency.labels(serve), self.predictions.labels(serve), self.prediction_value.labels(serve),
                self.unknown_entities.labels(serve))
        return found

    def count_request(self, endpoint: str, serve: str, status: int) -> None:
        key = (endpoint, serve, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(endpoint, serve, str(status))
        child.inc()

    def count_nulls(self, serve: str, features: Iterable[str]) -> None:
        for name in features:
            key = (serve, name)
            child = self._null_children.get(key)
            if child is None:
                child = self._null_children[key] = self.feature_nulls.labels(serve, name)
            child.inc()

    def set_model(self, serve: str, role: str, model: str, old_version: str | None, version: str) -> None:
        set_version_info(self.model_info, serve, role, model, old_version, version)

    def watch_cache(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        """Expose the online feature cache: `stats()` gives (hits, misses, rows held), read at scrape time."""
        self.registry.register(_CacheCollector(stats))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def set_version_info(info: Gauge, serve: str, role: str, model: str, old_version: str | None, version: str) -> None:
    """`mlspec_model_version_info`: the version now serving is 1, the one it replaced is gone."""
    if old_version is not None and old_version != version:
        with contextlib.suppress(KeyError):
            info.remove(serve, role, model, old_version)
    info.labels(serve, role, model, version).set(1)


class _CacheCollector(Collector):
    """Reads the feature cache's counters when scraped, so the request path updates no metric for it."""

    def __init__(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        hits, misses, rows = self.stats()
        yield CounterMetricFamily("mlspec_feature_cache_hits", "Entity histories served from the online feature "
                                  "cache", value=hits)
        yield CounterMetricFamily("mlspec_feature_cache_misses", "Entity histories read from the online store "
                                  "(not cached, or the store changed)", value=misses)
        yield GaugeMetricFamily("mlspec_feature_cache_rows", "Stored rows held by the online feature cache",
                                value=rows)
