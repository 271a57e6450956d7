"""`mlspec readiness`: the twelve requirements judged on the example specs, on a minimal spec, on
single-defect variants of churn, and through the CLI (exit codes under --min, the JSON shape)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlspec.ops.readiness import MET, MISSING, PARTIAL, REQUIREMENTS, Readiness, assess
from tests.ops.support import CASES, SPECS, churn_text, compile_spec, run_cli, spec_from_text

MINIMAL = CASES / "readiness" / "minimal.mlspec"
FIXED = CASES / "readiness" / "minimal_fixed.mlspec"


def _statuses(r: Readiness) -> dict[str, str]:
    return {f.requirement: f.status for f in r.findings}


def _not_met(r: Readiness) -> dict[str, str]:
    return {f.requirement: f.status for f in r.findings if f.status != MET}


def _finding(r: Readiness, requirement: str):  # type: ignore[no-untyped-def]
    return next(f for f in r.findings if f.requirement == requirement)


# ---- the example specs ---------------------------------------------------------------------

def test_churn_is_nearly_ready_and_says_what_is_left() -> None:
    r = assess(compile_spec(SPECS / "churn.mlspec"))
    assert r.score == 11.5 and r.score_text == "11.5/12"
    assert _not_met(r) == {"data validation": PARTIAL}
    f = _finding(r, "data validation")
    assert "`profile` (source `customers`)" in f.detail and "`churned` (source `churn_labels`)" in f.detail
    assert f.fix is not None and "check customers {" in f.fix and "check churn_labels {" in f.fix


def test_fraud_lacks_a_schedule_a_check_and_a_champion_comparison_for_v2() -> None:
    r = assess(compile_spec(SPECS / "fraud.mlspec"))
    assert r.score_text == "10.5/12"
    assert _not_met(r) == {"automated data pipeline": PARTIAL, "data validation": PARTIAL,
                           "model validation gate": PARTIAL}
    gate = _finding(r, "model validation gate")
    assert "`fraud_risk_v2` has no champion comparison" in gate.detail
    assert gate.fix == "model fraud_risk_v2 {\n  gate {\n    auc >= champion.auc - 0.005\n  }\n}"


def test_sensors_streaming_only_is_partly_containerized() -> None:
    r = assess(compile_spec(SPECS / "sensors.mlspec"))
    assert r.score_text == "10.5/12"
    assert _not_met(r) == {"automated data pipeline": PARTIAL, "data validation": PARTIAL,
                           "containerized serving": PARTIAL}
    assert _statuses(r)["latency SLA"] == MET  # latency_p99 on the streaming serve, watched by a rule


@pytest.mark.parametrize("name", ["churn", "fraud", "sensors"])
def test_met_findings_carry_no_fix_and_others_always_do(name: str) -> None:
    r = assess(compile_spec(SPECS / f"{name}.mlspec"))
    assert [f.requirement for f in r.findings] == list(REQUIREMENTS)
    assert [f.number for f in r.findings] == list(range(1, 13))
    for f in r.findings:
        assert (f.fix is None) == (f.status == MET), f
        assert f.detail


def test_consistency_points_at_mlspec_verify() -> None:
    f = _finding(assess(compile_spec(SPECS / "churn.mlspec")), "training-serving consistency")
    assert f.status == MET and "mlspec verify" in f.detail and "`churn_api`" in f.detail


# ---- a minimal spec, and the same spec with the advice applied -------------------------------

def test_minimal_spec_scores_low_with_specific_lines() -> None:
    r = assess(compile_spec(MINIMAL))
    assert r.score_text == "3.5/12"
    assert _statuses(r) == {
        "reproducible training": MISSING, "versioned artifacts": MET, "automated data pipeline": PARTIAL,
        "training-serving consistency": MET, "data validation": MISSING, "model validation gate": MISSING,
        "containerized serving": MISSING, "latency SLA": MISSING, "monitoring dashboard": MISSING,
        "alerting": MISSING, "rollback plan": PARTIAL, "operational runbook": PARTIAL,
    }
    repro = _finding(r, "reproducible training")
    assert "no `seed` in params: `churn_risk`" in repro.detail
    assert repro.fix is not None and "params { seed = 7 }" in repro.fix and "by_time(test_from" in repro.fix
    pipeline = _finding(r, "automated data pipeline")
    assert "`customers`" in pipeline.detail and "no batch serve with a `schedule`" in pipeline.detail
    assert pipeline.fix is not None and 'schedule = "0 2 * * *"' in pipeline.fix
    assert "no check block" in _finding(r, "data validation").detail
    gate = _finding(r, "model validation gate")
    assert gate.fix is not None and "auc >= 0.75" in gate.fix and "auc >= champion.auc - 0.005" in gate.fix
    latency = _finding(r, "latency SLA")
    assert latency.fix is not None and "latency_p99 = 50ms" in latency.fix and "latency_p99 > 50ms" in latency.fix
    monitoring = _finding(r, "monitoring dashboard")
    assert monitoring.fix is not None
    for rule in ("psi(features) > 0.25", "js(prediction) > 0.1", "auc < 0.65 over 30d"):
        assert rule in monitoring.fix
    assert 'alert oncall {\n  webhook = env("ONCALL_WEBHOOK_URL")' in (_finding(r, "alerting").fix or "")


def test_the_advice_applied_to_the_minimal_spec_meets_everything() -> None:
    r = assess(compile_spec(FIXED))
    assert r.score_text == "12/12", _not_met(r)


def test_whole_block_snippets_compile(tmp_path: Path) -> None:
    """The new blocks suggested for the minimal spec are valid mlspec, appended as they are."""
    r = assess(compile_spec(MINIMAL))
    base = MINIMAL.read_text(encoding="utf-8")
    wanted = ("data validation", "containerized serving", "monitoring dashboard", "automated data pipeline")
    blocks = [b for f in r.findings if f.requirement in wanted and f.fix for b in _blocks(f.fix)
              if not b.startswith("source ")]  # a `source` snippet adds a line to the existing block
    text = base + "\n" + "\n".join(blocks) + "\n"
    spec = spec_from_text(tmp_path, text)
    assert {c.name for c in spec.checks} == {"customers"}
    assert {s.mode for s in spec.serves} == {"batch", "realtime"}
    assert [m.model for m in spec.monitors] == ["churn_risk"]


def _blocks(fix: str) -> list[str]:
    """The top-level declarations of a snippet: each starts at column 0 and ends at its `}`."""
    out: list[list[str]] = []
    for line in fix.splitlines():
        if line and not line[0].isspace() and line[0] != "}":
            out.append([])
        out[-1].append(line)
    return ["\n".join(b) for b in out]


# ---- one defect at a time, on churn ----------------------------------------------------------

VARIANTS = {
    # name: (old, new, requirement, expected status, a phrase of the detail)
    "no_champion_comparison": ("    auc >= champion.auc - 0.005\n", "", "model validation gate", PARTIAL,
                               "no champion comparison"),
    "no_seed": ("    seed          = 7\n", "", "reproducible training", PARTIAL, "no `seed`"),
    "random_split": ('split     = by_time(test_from = "2026-04-01")', "split = random(test = 0.2, seed = 1)",
                     "reproducible training", PARTIAL, "no time split"),
    "no_latency_rule": ("  latency_p99 > 50ms              -> alert(sre)\n", "", "latency SLA", PARTIAL,
                        "no latency monitor rule"),
    "no_outcome_rule": ("  auc < 0.65 over 30d             -> retrain, alert(oncall)\n", "",
                        "monitoring dashboard", PARTIAL, "no outcome rule"),
    "log_only_sinks": ('  webhook = env("ONCALL_WEBHOOK_URL")\n', "  log = true\n", "alerting", MET, "oncall"),
    "warn_rule": ("  amount >= 0\n", "  amount >= 0 -> warn\n", "operational runbook", PARTIAL, "only warn"),
    "retrain_only_rule": ("-> retrain, alert(oncall)", "-> retrain", "operational runbook", PARTIAL,
                          "page no one"),
    "unused_sink": ("-> alert(sre)", "-> alert(oncall)", "operational runbook", PARTIAL, "no rule routes to"),
    "no_quarantine": ("on_fail = quarantine", "on_fail = fail", "data validation", PARTIAL,
                      "no check quarantines rows"),
    "no_gate": ("  gate {\n    auc >= 0.70\n    auc >= champion.auc - 0.005\n  }\n", "", "rollback plan",
                PARTIAL, "no gate on `churn_risk`"),
    "no_schedule": ('  schedule = "0 2 * * *"\n', "", "automated data pipeline", PARTIAL, "no batch serve"),
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_one_defect_shows_on_its_line(case: str, tmp_path: Path) -> None:
    old, new, requirement, status, phrase = VARIANTS[case]
    text = churn_text()
    assert old in text, case
    r = assess(spec_from_text(tmp_path, text.replace(old, new)))
    f = _finding(r, requirement)
    assert f.status == status and phrase in f.detail, f


def test_log_only_alerting_is_partial(tmp_path: Path) -> None:
    text = churn_text().replace('  webhook = env("ONCALL_WEBHOOK_URL")\n', "  log = true\n")
    text = text.replace('  file = "alerts/sre.jsonl"\n', "  log = true\n")
    f = _finding(assess(spec_from_text(tmp_path, text)), "alerting")
    assert f.status == PARTIAL and "only log" in f.detail
    assert f.fix is not None and 'webhook = env("' in f.fix


def test_batch_only_spec_has_no_latency_sla(tmp_path: Path) -> None:
    text = churn_text()
    start = text.index("serve churn_api {")
    text = text[:start] + text[text.index("}", start) + 1:]
    text = text.replace("  latency_p99 > 50ms              -> alert(sre)\n", "")
    r = assess(spec_from_text(tmp_path, text))
    assert _statuses(r)["latency SLA"] == MISSING
    assert _statuses(r)["containerized serving"] == MET  # a batch serve is deployable


# ---- the command -----------------------------------------------------------------------------

def test_min_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    churn = str(SPECS / "churn.mlspec")
    assert run_cli("readiness", churn) == 0
    assert run_cli("readiness", churn, "--min", "11.5") == 0
    capsys.readouterr()
    assert run_cli("readiness", churn, "--min", "12") == 1
    assert "11.5/12 is below --min 12" in capsys.readouterr().err
    assert run_cli("readiness", str(MINIMAL), "--min", "4") == 1
    assert run_cli("readiness", str(MINIMAL), "--min", "3.5") == 0
    assert run_cli("readiness", churn, "--min", "13") == 1  # not a score


def test_table_output_names_every_requirement_and_the_score(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("readiness", str(SPECS / "fraud.mlspec")) == 0
    out = capsys.readouterr().out
    for name in REQUIREMENTS:
        assert name in out
    assert "score 10.5/12" in out
    assert "model fraud_risk_v2 {" in out  # the snippets follow the table


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("readiness", str(MINIMAL), "--json", "--min", "5") == 1
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"format_version", "project", "score", "max_score", "counts", "requirements", "min",
                         "passed"}
    assert (data["project"], data["score"], data["max_score"], data["min"], data["passed"]) == \
        ("tiny", 3.5, 12, 5.0, False)
    assert data["counts"] == {"met": 2, "partial": 3, "missing": 7}
    assert [x["number"] for x in data["requirements"]] == list(range(1, 13))
    for x in data["requirements"]:
        assert set(x) == {"number", "requirement", "status", "points", "detail", "fix"}
        assert x["points"] == {"met": 1.0, "partial": 0.5, "missing": 0.0}[x["status"]]
        assert isinstance(x["detail"], str) and (x["fix"] is None) == (x["status"] == "met")


def test_a_spec_with_errors_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mlspec"
    bad.write_text(churn_text().replace("orders_30d <= orders_90d", "orders_30 <= orders_90d"), encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        run_cli("readiness", str(bad))
    assert e.value.code == 1
    assert "orders_30" in capsys.readouterr().err
