"""The model validation gate (requirement 6): a candidate's metrics against the spec's `gate` rules.

Absolute rules compare a metric with a number.  Champion rules (`auc >= champion.auc - 0.005`)
compare with the current champion's recorded metric plus the rule's offset; with no champion yet
they pass, and the reason says so.  A metric that was not computed (or is NaN) fails its rule.
Values within 1e-12 of the threshold count as equal (``>=``/``<=`` pass, ``>``/``<`` fail), so float
rounding in a threshold computed as ``0.8 - 0.005`` cannot decide a rule.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlspec.ir.spec import GateRule

__all__ = ["GateVerdict", "RuleResult", "evaluate_gate"]

TOLERANCE = 1e-12

_OPS: dict[str, tuple[Callable[[float, float], bool], bool]] = {
    # op -> (comparison, whether values equal within TOLERANCE pass)
    ">=": (operator.ge, True),
    ">": (operator.gt, False),
    "<=": (operator.le, True),
    "<": (operator.lt, False),
}


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's outcome: the rule text, the candidate's value, the threshold it met or missed."""

    text: str
    value: float | None
    threshold: float | None
    passed: bool
    reason: str

    def to_data(self) -> dict[str, Any]:
        return {"text": self.text, "value": _json_float(self.value), "threshold": _json_float(self.threshold),
                "passed": self.passed, "reason": self.reason}

    @staticmethod
    def from_data(d: Mapping[str, Any]) -> RuleResult:
        return RuleResult(str(d["text"]), _opt(d.get("value")), _opt(d.get("threshold")), bool(d["passed"]),
                          str(d["reason"]))


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """All rules' outcomes; `passed` only when every rule passed (an empty gate passes)."""

    passed: bool
    results: tuple[RuleResult, ...]

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        """One line per rule, for the CLI and the registry's rejection messages."""
        if not self.results:
            return "no gate rules: passed"
        return "\n".join(f"{'pass' if r.passed else 'FAIL'}  {r.text}: {r.reason}" for r in self.results)

    def to_data(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": [r.to_data() for r in self.results]}

    @staticmethod
    def from_data(d: Mapping[str, Any]) -> GateVerdict:
        return GateVerdict(bool(d["passed"]), tuple(RuleResult.from_data(r) for r in d["results"]))


def evaluate_gate(rules: Sequence[GateRule], metrics: Mapping[str, float],
                  champion_metrics: Mapping[str, float] | None) -> GateVerdict:
    """Judge every rule (no short-circuit: the report shows all of them)."""
    results = tuple(_judge(rule, metrics, champion_metrics) for rule in rules)
    return GateVerdict(all(r.passed for r in results), results)


def _judge(rule: GateRule, metrics: Mapping[str, float], champion: Mapping[str, float] | None) -> RuleResult:
    if rule.op not in _OPS:
        return RuleResult(rule.text, None, None, False, f"unknown comparison `{rule.op}`")
    compare, equal_passes = _OPS[rule.op]
    value = metrics.get(rule.metric)
    if value is None:
        known = ", ".join(sorted(metrics)) or "none"
        return RuleResult(rule.text, None, None, False,
                          f"metric `{rule.metric}` was not computed for this model (available: {known})")
    value = float(value)
    if rule.vs_champion:
        if champion is None:
            return RuleResult(rule.text, value, None, True, "no champion yet: passes until a model is promoted")
        base = champion.get(rule.metric)
        if base is None or math.isnan(float(base)):
            return RuleResult(rule.text, value, None, True,
                              f"the champion has no recorded `{rule.metric}`: nothing to compare with, passes")
        threshold = float(base) + rule.threshold
        offset = "" if rule.threshold == 0 else f" {'+' if rule.threshold > 0 else '-'} {abs(rule.threshold):g}"
        target = f"champion {rule.metric} {_fmt(float(base))}{offset} = {_fmt(threshold)}"
    else:
        threshold = rule.threshold
        target = _fmt(threshold)
    if math.isnan(value):
        return RuleResult(rule.text, value, threshold, False, f"{rule.metric} is undefined (NaN) on the test split")
    passed = equal_passes if abs(value - threshold) <= TOLERANCE else compare(value, threshold)
    verb = "meets" if passed else "misses"
    return RuleResult(rule.text, value, threshold, passed,
                      f"{rule.metric} = {_fmt(value)} {verb} {rule.op} {target}")


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.6g}"


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _opt(x: object) -> float | None:
    return None if x is None else float(x)  # type: ignore[arg-type]
