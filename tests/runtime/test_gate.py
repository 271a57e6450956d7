"""The model validation gate: absolute rules, champion rules, and honest reasons."""

from __future__ import annotations

import math

from mlspec.ir.spec import GateRule
from mlspec.runtime.gate import GateVerdict, evaluate_gate

AUC_MIN = GateRule("auc", ">=", 0.75, False, "auc >= 0.75")
AUC_VS_CHAMPION = GateRule("auc", ">=", -0.005, True, "auc >= champion.auc - 0.005")
BRIER_MAX = GateRule("brier", "<=", 0.2, False, "brier <= 0.2")
LOGLOSS_VS_CHAMPION = GateRule("logloss", "<", 0.0, True, "logloss < champion.logloss")


def test_absolute_rules() -> None:
    verdict = evaluate_gate((AUC_MIN, BRIER_MAX), {"auc": 0.8, "brier": 0.25}, None)
    assert not verdict.passed
    ok, bad = verdict.results
    assert (ok.passed, ok.value, ok.threshold) == (True, 0.8, 0.75)
    assert (bad.passed, bad.value, bad.threshold) == (False, 0.25, 0.2)
    assert bad.reason == "brier = 0.2500 misses <= 0.2000"
    assert verdict.failures == (bad,)
    assert evaluate_gate((AUC_MIN,), {"auc": 0.75}, None).passed  # boundary: >= includes equality


def test_champion_rules_pass_without_a_champion_and_say_so() -> None:
    verdict = evaluate_gate((AUC_MIN, AUC_VS_CHAMPION), {"auc": 0.8}, None)
    assert verdict.passed
    r = verdict.results[1]
    assert r.passed and r.threshold is None and "no champion yet" in r.reason


def test_champion_rules_compare_with_the_champion_plus_offset() -> None:
    worse = evaluate_gate((AUC_VS_CHAMPION,), {"auc": 0.80}, {"auc": 0.81})
    assert not worse.passed
    assert worse.results[0].threshold == 0.81 - 0.005
    assert "champion auc 0.8100 - 0.005 = 0.8050" in worse.results[0].reason
    assert evaluate_gate((AUC_VS_CHAMPION,), {"auc": 0.806}, {"auc": 0.81}).passed
    # float rounding never rejects a value equal to the threshold on paper
    assert evaluate_gate((AUC_VS_CHAMPION,), {"auc": 0.795}, {"auc": 0.8}).passed
    assert evaluate_gate((LOGLOSS_VS_CHAMPION,), {"logloss": 0.4}, {"logloss": 0.5}).passed
    assert not evaluate_gate((LOGLOSS_VS_CHAMPION,), {"logloss": 0.5}, {"logloss": 0.5}).passed


def test_champion_without_the_metric_passes_with_a_reason() -> None:
    verdict = evaluate_gate((AUC_VS_CHAMPION,), {"auc": 0.7}, {"rmse": 1.0})
    assert verdict.passed and "no recorded `auc`" in verdict.results[0].reason


def test_missing_or_undefined_metrics_fail() -> None:
    verdict = evaluate_gate((AUC_MIN, BRIER_MAX), {"brier": math.nan, "logloss": 0.3}, None)
    assert not verdict.passed
    assert verdict.results[0].reason == "metric `auc` was not computed for this model (available: brier, logloss)"
    assert "undefined" in verdict.results[1].reason and not verdict.results[1].passed


def test_all_rules_are_reported_and_empty_gates_pass() -> None:
    verdict = evaluate_gate((BRIER_MAX, AUC_MIN), {"auc": 0.1, "brier": 0.9}, None)
    assert [r.passed for r in verdict.results] == [False, False]
    assert evaluate_gate((), {}, None) == GateVerdict(True, ())
    assert "FAIL  auc >= 0.75" in verdict.summary()


def test_verdict_round_trips_through_data() -> None:
    verdict = evaluate_gate((AUC_MIN, AUC_VS_CHAMPION), {"auc": 0.8}, {"auc": 0.7})
    assert GateVerdict.from_data(verdict.to_data()) == verdict
