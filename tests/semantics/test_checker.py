"""The checker's meaning of a spec: typed IR out, precise diagnostics, no cascades, no crashes."""

from __future__ import annotations

import pytest

from mlspec.diagnostics import Severity
from mlspec.ir import expr as ir
from mlspec.ir.types import DType
from tests.semantics.support import BASE, check_text, codes, edited, errors


def only_error(text: str) -> tuple[str, str, str | None]:
    spec, diags = check_text(text)
    assert spec is None
    errs = errors(diags)
    assert len(errs) == 1, [(d.code, d.message) for d in diags]
    return errs[0].code, errs[0].message, errs[0].hint


def test_base_is_clean() -> None:
    spec, diags = check_text(BASE)
    assert spec is not None and diags == []
    assert [g.name for g in spec.groups] == ["activity", "profile"]
    assert spec.models[0].features == ("activity.orders_30d", "activity.spend_90d", "profile.tenure_days")


# ---- time ---------------------------------------------------------------------------------


def check_expr(spec_text: str) -> ir.Expr:
    spec, diags = check_text(spec_text)
    assert spec is not None, diags
    return spec.checks[0].rules[0].expr


def test_timestamp_literal_with_offset_is_converted_to_utc() -> None:
    e = check_expr(edited("amount >= 0", 'ordered_at >= "2026-01-01T02:30:00+02:00"'))
    assert isinstance(e, ir.BinOp) and isinstance(e.right, ir.Lit)
    assert (e.right.value, e.right.dtype) == ("2026-01-01T00:30:00", DType.TIMESTAMP)


def test_naive_timestamp_literal_is_kept_as_utc() -> None:
    e = check_expr(edited("amount >= 0", 'ordered_at < "2026-01-01T00:00:00"'))
    assert isinstance(e, ir.BinOp) and isinstance(e.right, ir.Lit)
    assert e.right.value == "2026-01-01T00:00:00"


def test_date_literal_next_to_a_timestamp_is_midnight() -> None:
    e = check_expr(edited("amount >= 0", 'ordered_at >= "2026-01-01"'))
    assert isinstance(e, ir.BinOp) and isinstance(e.right, ir.Lit)
    assert (e.right.value, e.right.dtype) == ("2026-01-01T00:00:00", DType.TIMESTAMP)


def test_in_list_of_iso_strings_takes_the_temporal_type() -> None:
    text = edited("check orders {\n  amount >= 0", 'check customers {\n  signup_date in ("2026-01-01", "2026-02-01")')
    spec, diags = check_text(text)
    assert spec is not None, diags
    e = spec.checks[0].rules[0].expr
    assert isinstance(e, ir.InList)
    assert [(v.value, v.dtype) for v in e.values] == [("2026-01-01", DType.DATE), ("2026-02-01", DType.DATE)]


def test_bad_iso_literal_is_a_type_error() -> None:
    code, message, _ = only_error(edited("amount >= 0", 'ordered_at in ("2026-13-01")'))
    assert code == "E120" and "ISO" in message


def test_label_timestamp_must_be_temporal() -> None:
    code, message, _ = only_error(edited("  value  = churned", "  value  = churned\n  timestamp = customer_id"))
    assert (code, message) == ("E120", "timestamp column `customer_id` is int, not date or timestamp")


def test_label_inherits_a_broken_source_timestamp_without_crashing() -> None:
    """Found by fuzzing: the label looked up the span of a field it does not have (KeyError)."""
    spec, diags = check_text(edited("timestamp = observed_at", "timestamp = observd_at"))
    assert spec is None
    assert [(d.code, d.message) for d in diags] == [
        ("E111", "`timestamp` names `observd_at`, which is not a column of source `churn_labels`")]


def test_zero_length_window_is_rejected() -> None:
    code, message, hint = only_error(edited("last 30d", "last 0d"))
    assert code == "E160" and "empty" in message and hint is not None


# ---- aggregates and names ------------------------------------------------------------------


def test_max_of_two_values_points_at_greatest() -> None:
    code, _, hint = only_error(edited("sum(amount, last 90d)", "max(amount, 100.0)"))
    assert code == "E122" and hint is not None and "greatest(a, b)" in hint


def test_unknown_name_inside_an_aggregate_suggests_columns_only() -> None:
    code, _, hint = only_error(edited("sum(amount, last 90d)", "sum(price, last 90d)"))
    assert code == "E111" and hint is not None
    assert "orders_30d" not in hint and "as_of" not in hint and "amount" in hint


def test_wall_clock_is_a_leak() -> None:
    code, message, hint = only_error(edited("days_between(signup_date, as_of)", "days_between(signup_date, today())"))
    assert code == "E142" and "wall clock" in message and hint is not None and "as_of" in hint


@pytest.mark.parametrize(("literal", "message"), [
    ("1e999", "`1e999` is too large for a float"),
    ("99999999999999999999", "`99999999999999999999` does not fit in an int"),
])
def test_literals_must_fit_their_type(literal: str, message: str) -> None:
    assert only_error(edited("amount >= 0", f"amount >= {literal}"))[:2] == ("E120", message)


def test_int64_max_is_a_valid_literal() -> None:
    spec, diags = check_text(edited("amount >= 0", "order_id <= 9223372036854775807"))
    assert spec is not None, diags


def test_integer_division_is_float_and_modulo_of_ints_is_int() -> None:
    text = edited("  spend_90d  = sum(amount, last 90d)",
                  "  spend_90d  = sum(amount, last 90d)\n  half = orders_30d / 2\n  odd = orders_30d % 2")
    spec, diags = check_text(text)
    assert spec is not None, diags
    types = {f.name: f.dtype for f in spec.group("activity").features}
    assert types["half"] is DType.FLOAT and types["odd"] is DType.INT


# ---- operational values --------------------------------------------------------------------


def test_dedupe_zero_means_no_dedupe() -> None:
    spec, diags = check_text(edited('alert oncall { webhook = env("ONCALL_WEBHOOK_URL") }',
                                    'alert oncall {\n  webhook = env("ONCALL_WEBHOOK_URL")\n  dedupe = 0s\n}'))
    assert spec is not None, diags
    assert spec.alerts[0].dedupe_ms == 0


def test_dedupe_defaults_to_one_hour() -> None:
    spec, _ = check_text(BASE)
    assert spec is not None and spec.alerts[0].dedupe_ms == 3_600_000


@pytest.mark.parametrize(("old", "new"), [
    ("replicas    = 2..4", "replicas    = 1e999"),  # was OverflowError: int(inf)
    ("replicas    = 2..4", "replicas    = 1..1" + "0" * 400),  # was OverflowError: int too large for float
    ('split    = by_time(test_from = "2026-04-01")', "split = random(seed = 1e999)"),  # was OverflowError
    ("psi(features) > 0.25", "psi(features) > 1" + "0" * 400),
])
def test_huge_numbers_are_errors_not_crashes(old: str, new: str) -> None:
    spec, diags = check_text(edited(old, new))
    assert spec is None
    assert {d.code for d in errors(diags)} <= {"E102", "E120", "E160"}


def test_random_split_seed_is_a_non_negative_integer() -> None:
    spec, diags = check_text(edited('split    = by_time(test_from = "2026-04-01")', "split = random(seed = 1.5)"))
    assert spec is None
    assert sorted(codes(diags)) == ["E160", "W201"]


@pytest.mark.parametrize(("rule", "message"), [
    ("psi(features) > -0.1", "psi threshold -0.1 is out of range: psi is >= 0"),
    ("js(prediction) > 1.5", "js threshold 1.5 is out of range: js is [0, 1]"),
    ("ks_pvalue(prediction) < 2", "ks_pvalue threshold 2 is out of range: ks_pvalue is [0, 1]"),
    ("error_rate > 1.01", "error_rate threshold 1.01 is out of range: error_rate is [0, 1]"),
    ("quarantine_rate(orders) > 5", "quarantine_rate threshold 5 is out of range: quarantine_rate is [0, 1]"),
    ("null_rate(activity.spend_90d) > -1", "null_rate threshold -1 is out of range: null_rate is [0, 1]"),
    ("auc < 1.2", "auc threshold 1.2 is out of range: auc is [0, 1]"),
])
def test_monitor_thresholds_out_of_range(rule: str, message: str) -> None:
    assert only_error(edited("psi(features) > 0.25", rule))[:2] == ("E160", message)


def test_drift_of_a_group_the_model_does_not_use_is_an_error() -> None:
    text = edited("features = [activity.*, profile.*]", "features = [activity.*]",
                  "psi(features) > 0.25", "psi(profile) > 0.25")
    code, message, _ = only_error(text)
    assert (code, message) == ("E111", "model `churn_risk` uses no features of group `profile`")


def test_drift_of_a_used_group_watches_its_features() -> None:
    spec, diags = check_text(edited("psi(features) > 0.25", "psi(activity) > 0.25"))
    assert spec is not None, diags
    assert spec.monitors[0].rules[0].subject == ("activity.orders_30d", "activity.spend_90d")


# ---- streams -------------------------------------------------------------------------------


STREAMING = edited('  key       = order_id\n  timestamp = ordered_at',
                   '  key       = order_id\n  timestamp = ordered_at\n  stream    = "orders"',
                   "  mode        = realtime", '  mode        = streaming\n  input       = stream("orders")')


def test_streaming_serve_reads_a_declared_stream() -> None:
    spec, diags = check_text(STREAMING)
    assert spec is not None, diags
    assert (spec.serves[0].mode, spec.serves[0].input_stream) == ("streaming", "orders")


def test_streaming_serve_of_an_undeclared_stream() -> None:
    code, message, hint = only_error(edited('input       = stream("orders")', 'input       = stream("order")',
                                            base=STREAMING))
    assert (code, message, hint) == ("E111", "no source reads the stream `order`", "did you mean `orders`?")


# ---- one mistake, one report ---------------------------------------------------------------


def test_a_broken_model_is_not_reported_again_by_its_serve_and_monitor() -> None:
    code, message, _ = only_error(edited("label    = churned", "label    = churnd"))
    assert (code, message) == ("E111", "unknown label `churnd`")


def test_a_broken_group_is_not_reported_again_by_its_model_and_check() -> None:
    text = edited("  entity     = customer\n  from       = orders", "  entity     = custmer\n  from       = orders",
                  "check orders {", "check activity {\n  orders_30d >= 0\n}\n\ncheck orders {")
    code, message, _ = only_error(text)
    assert (code, message) == ("E111", "unknown entity `custmer`")


def test_a_broken_feature_is_not_reported_again_by_a_check_on_its_group() -> None:
    text = edited("sum(amount, last 90d)", "sum(amont, last 90d)",
                  "check orders {", "check activity {\n  spend_90d >= 0\n}\n\ncheck orders {")
    code, message, _ = only_error(text)
    assert (code, message) == ("E111", "unknown name `amont`")


def test_a_broken_source_is_not_reported_again_by_its_label_model_serve_and_monitor() -> None:
    code, message, _ = only_error(edited('  path      = "data/churn_labels.parquet"\n', ""))
    assert (code, message) == ("E101", "source `churn_labels` needs `path = ...`")


def test_a_serve_for_an_unknown_model_still_checks_its_fields() -> None:
    spec, diags = check_text(edited("model       = churn_risk", "model       = churn_rsk",
                                    "latency_p99 = 50ms", 'latency_p99 = "50ms"'))
    assert spec is None
    assert codes(diags) == ["E151", "E102"]


def test_invalid_choice_names_the_field_and_suggests() -> None:
    code, message, hint = only_error(edited("task     = binary", "task     = regresion"))
    assert (code, message, hint) == ("E105", "`task` cannot be `regresion`", "did you mean `regression`?")


def test_unknown_field_names_its_declaration() -> None:
    code, message, hint = only_error(edited("  value  = churned", "  value  = churned\n  timestamps = observed_at"))
    assert (code, message, hint) == ("E100", "unknown field `timestamps` in label `churned`", "did you mean `timestamp`?")


# ---- rules ---------------------------------------------------------------------------------


def test_group_cycle_is_reported_once_from_the_smallest_name() -> None:
    text = edited("  tenure_days = days_between(signup_date, as_of)",
                  "  tenure_days = days_between(signup_date, as_of)\n  active = activity.orders_30d > 0",
                  "  spend_90d  = sum(amount, last 90d)",
                  "  spend_90d  = sum(amount, last 90d)\n  per_day = orders_30d / (profile.tenure_days + 1)")
    for name_a, name_b in (("activity", "profile"), ("zeta", "alpha")):
        renamed = text.replace("activity", name_a).replace("profile", name_b)
        _, diags = check_text(renamed)
        cycles = [d.message for d in diags if d.code == "E130"]
        first, second = sorted((name_a, name_b))
        assert cycles == [f"feature groups depend on each other in a cycle: {first} -> {second} -> {first}"]


def test_warnings_leave_the_spec_usable() -> None:
    spec, diags = check_text(edited('split    = by_time(test_from = "2026-04-01")', "split = random(test = 0.3)"))
    assert spec is not None
    assert [(d.code, d.severity) for d in diags] == [("W201", Severity.WARNING)]
    assert spec.models[0].split.test_fraction == 0.3
