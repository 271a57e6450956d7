"""Declaration IR: the checked, typed, resolved meaning of a spec.

Produced by mlspec.semantics, read by the DAG builder, plan, backends and runtime. Nothing
downstream re-parses text. All nodes are frozen; collections are tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlspec.ir.expr import Expr
from mlspec.ir.types import DType
from mlspec.syntax.span import Span, span_field


@dataclass(frozen=True, slots=True)
class SecretRef:
    """`env("NAME")`: resolved from the environment at run time, never written out."""

    env: str


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    owner: str | None = None
    description: str | None = None
    online_store: str = "embedded"  # "embedded" | "redis"
    online_store_url: SecretRef | str | None = None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: str
    dtype: DType
    type_name: str
    not_null: bool = False
    unique: bool = False
    allowed: tuple[int | float | str | bool, ...] | None = None
    value_range: tuple[float, float] | None = None
    references: tuple[str, str] | None = None  # (source, column)
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    format: str  # "csv" | "parquet" | "duckdb"
    path: str
    table: str | None
    key: str | None
    timestamp: str | None
    freshness_ms: int | None
    columns: tuple[ColumnDef, ...]
    stream: str | None = None
    span: Span = span_field()

    def column(self, name: str) -> ColumnDef | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    key: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Feature:
    group: str
    name: str
    expr: Expr
    dtype: DType
    kind: str  # "aggregate" | "row" | "derived"
    span: Span = span_field()

    @property
    def qualified(self) -> str:
        return f"{self.group}.{self.name}"


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    name: str
    entity: str
    source: str
    features: tuple[Feature, ...]
    request: bool = False  # computed from the request/event row itself, not from history
    description: str | None = None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Label:
    name: str
    entity: str
    source: str
    value: str
    dtype: DType
    timestamp: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class CheckRule:
    """One predicate. Row rules judge each row; dataset rules judge the table as a whole."""

    text: str  # the predicate as written (canonical), used as the quarantine reason
    level: str  # "row" | "dataset"
    expr: Expr
    on_fail: str  # "quarantine" | "fail" | "warn"
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    target: str
    target_kind: str  # "source" | "features"
    rules: tuple[CheckRule, ...]
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class GateRule:
    """`metric op threshold`, or `metric op champion.metric + offset` when vs_champion."""

    metric: str
    op: str
    threshold: float
    vs_champion: bool
    text: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Split:
    kind: str  # "time" | "random"
    test_from: str | None = None  # ISO date, for "time"
    test_fraction: float = 0.2  # for "random"
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    algorithm: str
    task: str  # "binary" | "regression" | "multiclass"
    label: str
    entity: str
    features: tuple[str, ...]  # qualified feature names, in spec order
    params: tuple[tuple[str, int | float | str | bool], ...]
    split: Split
    gate: tuple[GateRule, ...]
    segment: str | None = None
    threshold: float = 0.5
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Serve:
    name: str
    model: str
    mode: str  # "batch" | "realtime" | "streaming"
    schedule: str | None = None
    output: str | None = None
    latency_p99_ms: int | None = None
    replicas: tuple[int, int] | None = None
    shadow: str | None = None
    input_stream: str | None = None
    output_stream: str | None = None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # "alert" | "retrain"
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MonitorRule:
    """`metric(subject) op threshold [over window] -> actions`."""

    kind: str  # "drift" | "prediction_drift" | "outcome" | "latency" | "error_rate" | "null_rate" | "freshness"
    metric: str  # psi | js | ks | ks_pvalue | auc | latency_p99 | error_rate | null_rate | freshness | ...
    subject: tuple[str, ...]  # qualified feature names, ("prediction",), a source, or ()
    op: str
    threshold: float  # durations in milliseconds
    window_ms: int | None
    actions: tuple[Action, ...]
    text: str
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Monitor:
    name: str
    model: str
    rules: tuple[MonitorRule, ...]
    retrain_every_ms: int | None = None
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    webhook: SecretRef | None = None
    file: str | None = None
    log: bool = False
    slack: bool = False
    dedupe_ms: int = 3_600_000
    span: Span = span_field()


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole checked project. Tuples keep declaration order; lookups go through helpers."""

    project: Project
    sources: tuple[Source, ...] = ()
    entities: tuple[Entity, ...] = ()
    groups: tuple[FeatureGroup, ...] = ()
    labels: tuple[Label, ...] = ()
    checks: tuple[Check, ...] = ()
    models: tuple[Model, ...] = ()
    serves: tuple[Serve, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    alerts: tuple[Alert, ...] = ()
    files: tuple[str, ...] = ()

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def entity(self, name: str) -> Entity:
        return next(e for e in self.entities if e.name == name)

    def group(self, name: str) -> FeatureGroup:
        return next(g for g in self.groups if g.name == name)

    def label(self, name: str) -> Label:
        return next(x for x in self.labels if x.name == name)

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    def serve(self, name: str) -> Serve:
        return next(s for s in self.serves if s.name == name)

    def feature(self, qualified: str) -> Feature:
        group, name = qualified.split(".", 1)
        return next(f for f in self.group(group).features if f.name == name)
