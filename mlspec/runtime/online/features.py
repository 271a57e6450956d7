"""Online features: one entity's model features as of a time, from the online store.

The same IR the batch engines compile is evaluated here by the online evaluator
(mlspec/runtime/engines/online.py) over the entity's stored rows, group by group in dependency
order, each group seeing the features of the groups it references. This is the serving path;
`mlspec verify` proves it equal to the batch path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlspec.ir.spec import Model, Spec
from mlspec.runtime.engines.online import Evaluator, GroupInput, to_timestamp
from mlspec.runtime.online.materialize import namespace
from mlspec.runtime.online.store import OnlineStore
from mlspec.runtime.score import groups_for


@dataclass(frozen=True)
class OnlineResult:
    """The model's feature vector (qualified name -> value, in the model's order), and whether
    the store knows the entity at all. An unknown entity gets what the features mean over no
    rows (docs/semantics.md): counts and sums 0, everything else null, `as_of`-only features
    computed; it is never an error."""

    values: dict[str, Any]
    known_entity: bool


@dataclass(frozen=True)
class _Step:
    group: str
    evaluator: Evaluator
    namespace: str | None  # None: a request group (reads the request, not the store)
    events: bool = False  # the group reads the model's event source, of which the request is one row


class FeatureService:
    """Compiles each group's evaluator once per spec and serves many entities with them.

    Holds no connection: the store is passed per call, so one service can serve any store.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._evaluators: dict[str, Evaluator] = {}
        self._plans: dict[str, tuple[tuple[_Step, ...], tuple[str, ...]]] = {}

    def evaluator(self, group: str) -> Evaluator:
        ev = self._evaluators.get(group)
        if ev is None:
            ev = self._evaluators[group] = Evaluator(self.spec, self.spec.group(group))
        return ev

    def plan(self, model: Model | str) -> tuple[tuple[_Step, ...], tuple[str, ...]]:
        """The groups to evaluate (upstream first) and the model's qualified features."""
        m = self.spec.model(model) if isinstance(model, str) else model
        found = self._plans.get(m.name)
        if found is None:
            steps = []
            event_source = self.spec.label(m.label).source
            for name in groups_for(self.spec, m):
                g = self.spec.group(name)
                ns = None if g.request else namespace(self.spec, g.source, self.spec.entity(g.entity).key)
                steps.append(_Step(name, self.evaluator(name), ns, g.source == event_source))
            found = self._plans[m.name] = (tuple(steps), m.features)
        return found

    def features(self, model: Model | str, store: OnlineStore, key: object, as_of: dt.datetime | dt.date,
                 request: Mapping[str, Any] | None = None) -> OnlineResult:
        """Evaluate every group the model needs for one entity as of `as_of` (naive = UTC)."""
        steps, wanted = self.plan(model)
        when = to_timestamp(as_of)
        rows: dict[str, list[dict[str, Any]]] = {}
        done: dict[str, dict[str, Any]] = {}
        known = False
        for step in steps:
            history: list[dict[str, Any]] = []
            if step.namespace is not None:
                if step.namespace not in rows:
                    rows[step.namespace] = store.rows_for(step.namespace, key)
                history = rows[step.namespace]
                known = known or bool(history)
                if request is not None and step.events and "__seq" not in request:
                    # In training each labelled event is a row of its own history (ts <= as_of);
                    # a live request is that event, not yet in the store: count it the same way.
                    history = [*history, self._event_row(step, key, when, request)]
            done[step.group] = step.evaluator.evaluate(GroupInput(when, history, request, done))
        values = {}
        for q in wanted:
            group, name = q.split(".", 1)
            values[q] = done[group][name]
        return OnlineResult(values, known)

    def _event_row(self, step: _Step, key: object, when: dt.datetime, request: Mapping[str, Any]) -> dict[str, Any]:
        source = self.spec.source(self.spec.group(step.group).source)
        row: dict[str, Any] = {c.name: request.get(c.name) for c in source.columns}
        row[self.spec.entity(self.spec.group(step.group).entity).key] = key
        if source.timestamp:
            row[source.timestamp] = when
        row["__seq"] = 2**62  # after every stored row
        return row


def online_features(spec: Spec, model: Model | str, store: OnlineStore, key: object, as_of: dt.datetime | dt.date,
                    request: Mapping[str, Any] | None = None, service: FeatureService | None = None) -> OnlineResult:
    """One entity's features as of a time. Pass a long-lived `service` when serving many requests."""
    return (service or FeatureService(spec)).features(model, store, key, as_of, request)
