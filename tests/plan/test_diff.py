"""The rules of the plan, one at a time, on the example specs and small edits of them."""

from __future__ import annotations

import re

import pytest

from mlspec.plan.diff import BREAKING, METADATA, NON_BREAKING, Plan, build_plan, contract, expr_text, fmt_duration
from mlspec.plan.render import render_text, summary_line
from tests.plan.support import ROOT, SPECS, assert_mirror, compile_file, compile_text, plan_of

CHURN = (ROOT / "specs" / "churn.mlspec").read_text(encoding="utf-8")
FRAUD = (ROOT / "specs" / "fraud.mlspec").read_text(encoding="utf-8")


def edit(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def plan_texts(old: str, new: str) -> Plan:
    a, b = compile_text(old), compile_text(new)
    assert a.ok, a.diagnostics
    assert b.ok, b.diagnostics
    return plan_of(a, b)


def change(plan: Plan, nid: str):  # type: ignore[no-untyped-def]
    return next(c for c in plan.changes if c.id == nid)


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_feature_expressions_print_as_written(spec) -> None:  # type: ignore[no-untyped-def]
    """The plan shows expressions in canonical spec text: the formatted example specs are that text."""
    compiled = compile_file(spec)
    lines = spec.read_text(encoding="utf-8").splitlines()
    for g in compiled.checked[0].groups:
        for f in g.features:
            written = re.sub(r"\s+#.*$", "", lines[f.span.line - 1]).split("=", 1)[1].strip()
            assert expr_text(f.expr, g.name) == written


def test_whole_spec_added_and_removed() -> None:
    churn = compile_file(ROOT / "specs" / "churn.mlspec").checked
    added, removed = build_plan(None, churn), build_plan(churn, None)
    assert {c.action for c in added.changes} == {"add"} and {c.action for c in removed.changes} == {"remove"}
    assert_mirror(added, removed)
    assert "dataset:churn_risk" not in {c.id for c in added.changes}  # derived from its model
    assert [r.model for r in added.impact.retrain if r.new] == ["model:churn_risk"]


def test_a_new_feature_no_model_uses_is_non_breaking() -> None:
    new = edit(CHURN, ("features  = [activity.*, profile.*]",
                       "features  = [activity.orders_30d, activity.spend_90d, profile.*]"))
    base = plan_texts(CHURN, new)
    assert change(base, "model:churn_risk").category == BREAKING  # fewer features: retrain
    added = edit(new, ("  orders_90d       = count", "  orders_7d        = count(order_id, last 7d)\n  orders_90d       = count"))
    plan = plan_texts(new, added)
    c = change(plan, "features:activity")
    assert (c.category, c.attributes[0].action) == (NON_BREAKING, "add")
    assert not plan.impact.retrain
    assert [(b.group, b.features, b.window_ms) for b in plan.impact.backfill] == [
        ("features:activity", ("orders_7d",), 7 * 86_400_000)]


def test_derived_features_follow_a_changed_feature_and_take_the_largest_window() -> None:
    plan = plan_texts(CHURN, edit(CHURN, ("orders_90d       = count(order_id, last 90d)",
                                          "orders_90d       = count(order_id, last 120d)")))
    (b,) = plan.impact.backfill
    assert b.features == ("orders_90d", "avg_basket_90d", "app_share_90d")
    assert fmt_duration(b.window_ms or 0) == "120d"
    assert "3 features to backfill (120d)" in summary_line(plan)
    assert [c.id for c in plan.changes] == ["features:activity"]  # checks reading it are unchanged


def test_unbounded_aggregates_backfill_all_history() -> None:
    plan = plan_texts(CHURN, edit(CHURN, ("days_between(max(ordered_at), as_of)", "days_between(min(ordered_at), as_of)")))
    assert plan.impact.backfill_window_ms is None
    assert "(all history)" in summary_line(plan)


def test_a_rename_keeps_derived_features_unchanged() -> None:
    new = edit(CHURN, ("  spend_90d        = sum", "  total_90d        = sum"),
               ("avg_basket_90d   = spend_90d /", "avg_basket_90d   = total_90d /"))
    plan = plan_texts(CHURN, new)
    (attr,) = change(plan, "features:activity").attributes
    assert (attr.action, attr.path, attr.to, attr.category) == ("rename", "features.spend_90d", "features.total_90d",
                                                                 BREAKING)
    assert not plan.impact.backfill  # same values under a new name
    (r,) = plan.impact.retrain
    assert not r.champion_reusable  # the champion was trained on the old name


def test_params_retrain_but_the_champion_keeps_serving() -> None:
    plan = plan_texts(CHURN, edit(CHURN, ("max_depth     = 4", "max_depth     = 5")))
    (r,) = plan.impact.retrain
    assert r.champion_reusable and r.reasons == ("params.max_depth changed",)
    assert [t.target for t in plan.impact.targets] == ["dvc"]


def test_gate_and_monitor_changes_never_retrain() -> None:
    plan = plan_texts(CHURN, edit(CHURN, ("auc >= 0.70", "auc >= 0.72"), ("psi(features) > 0.25", "psi(features) > 0.3")))
    assert {c.id: c.category for c in plan.changes} == {"gate:churn_risk": NON_BREAKING,
                                                       "monitor:churn_risk": NON_BREAKING}
    assert not plan.impact.retrain and not plan.impact.backfill and not plan.breaking


def test_alert_routing_and_sinks_are_metadata() -> None:
    plan = plan_texts(FRAUD, edit(FRAUD, ("latency_p99 > 30ms -> alert(sre)", "latency_p99 > 30ms -> alert(fraud_oncall)"),
                                  ('file    = "alerts/sre.jsonl"', 'file    = "alerts/platform.jsonl"')))
    assert {c.category for c in plan.changes} == {METADATA}
    assert plan.impact.alerts == ("alert:fraud_oncall", "alert:sre")
    assert not plan.breaking


def test_realtime_contract_is_key_plus_request_columns() -> None:
    spec = compile_file(ROOT / "specs" / "fraud.mlspec").checked[0]
    fields = contract(spec, spec.serves[0])
    assert fields is not None
    assert fields["request.card_id"] == ("int", True)
    assert {k for k in fields if k.startswith("request.")} == {
        "request.card_id", "request.amount", "request.ts", "request.channel", "request.card_present", "request.mcc"}
    assert fields["request.mcc"] == ("int", False)  # nullable column: clients may omit it
    assert fields["response.prediction"] == ("float", True) and "response.model_version" in fields


def test_optional_request_field_is_non_breaking_and_a_required_one_breaks_clients() -> None:
    with_optional = edit(FRAUD, ("  high_risk_mcc = mcc in", "  has_mcc       = mcc is not null\n  high_risk_mcc = mcc in"))
    assert plan_texts(FRAUD, with_optional).impact.api_contract == "unchanged"  # mcc was already sent
    optional = edit(FRAUD, ("    is_fraud     bool", "    is_fraud     bool\n    city         string"),
                    ("  channel       = channel\n", "  channel       = channel\n  city          = city\n"))
    required = optional.replace("city         string", "city         string not null")
    assert plan_texts(FRAUD, optional).impact.api_contract == NON_BREAKING
    plan = plan_texts(FRAUD, required)
    assert plan.impact.api_contract == BREAKING
    (api,) = plan.impact.api
    assert [(f.path, f.action, f.new) for f in api.fields] == [("request.city", "add", "string, required")]


def test_shadow_and_replicas_are_non_breaking_serving_changes() -> None:
    plan = plan_texts(FRAUD, edit(FRAUD, ("replicas    = 3..20", "replicas    = 4..20"),
                                  ("shadow      = fraud_risk_v2", "shadow      = fraud_risk")))
    (c,) = plan.changes
    assert (c.id, c.action, c.category) == ("serve:fraud_api", "change", NON_BREAKING)
    assert {t.target for t in plan.impact.targets} == {"airflow", "k8s"}


def test_entity_key_change_recomputes_everything_of_the_entity() -> None:
    new = CHURN.replace("customer_id", "client_id")
    plan = plan_texts(CHURN, new)
    assert change(plan, "entity:customer").category == BREAKING
    assert {b.group for b in plan.impact.backfill} == {"features:activity", "features:profile"}
    assert plan.impact.api_contract == BREAKING  # the request key is renamed


def test_source_freshness_is_non_breaking_but_a_constraint_is_breaking() -> None:
    fresh = plan_texts(CHURN, edit(CHURN, ("freshness = 26h", "freshness = 30h")))
    assert change(fresh, "source:orders").category == NON_BREAKING and not fresh.impact.backfill
    free = plan_texts(CHURN, edit(CHURN, ("    channel     string in", "    coupon      string\n    channel     string in")))
    assert change(free, "source:orders").category == NON_BREAKING
    strict = plan_texts(CHURN, edit(CHURN, ("amount      float range [0, 100000]", "amount      float range [0, 5000]")))
    assert change(strict, "source:orders").category == BREAKING
    assert {b.group for b in strict.impact.backfill} == {"features:activity"}


def test_text_rendering_is_stable_and_ends_with_the_summary() -> None:
    plan = plan_texts(CHURN, edit(CHURN, ("max_depth     = 4", "max_depth     = 5")))
    text = render_text(plan)
    assert text == render_text(plan)
    assert text.rstrip().splitlines()[-1] == summary_line(plan)
    assert "  ~ model churn_risk {\n      ~ params.max_depth = 4 -> 5\n    }" in text
