"""`mlspec runbook`: golden Markdown per example spec (tests/cases/runbook/<spec>.md, byte for byte),
determinism, an anchor for every source, check, gate, monitor rule and alert, and links that resolve.

Refresh the goldens with `MLSPEC_UPDATE_GOLDEN=1 pytest tests/ops -k golden` (or `make golden`), then
read the diff: a committed runbook is a reviewed one.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from mlspec.ops.runbook import check_rule_anchor, monitor_rule_anchor, render_runbook, runbook_anchor
from tests.ops.support import CASES, EXAMPLES, SPECS, churn_text, compile_spec, run_cli, spec_from_text

UPDATE = os.environ.get("MLSPEC_UPDATE_GOLDEN") == "1"
GOLDEN = CASES / "runbook"
ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
LINK = re.compile(r"\]\(#([^)]+)\)")


@pytest.mark.parametrize("name", EXAMPLES)
def test_golden(name: str) -> None:
    actual = render_runbook(compile_spec(SPECS / f"{name}.mlspec"))
    expected = GOLDEN / f"{name}.md"
    if UPDATE or not expected.exists():
        GOLDEN.mkdir(parents=True, exist_ok=True)
        expected.write_bytes(actual.encode("utf-8"))
        if not UPDATE:
            pytest.fail(f"wrote the missing {expected.relative_to(CASES)}; review it and commit it")
    assert actual.encode("utf-8") == expected.read_bytes()


@pytest.mark.parametrize("name", EXAMPLES)
def test_same_spec_same_bytes_wherever_it_lives(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = render_runbook(compile_spec(SPECS / f"{name}.mlspec"))
    assert render_runbook(compile_spec(SPECS / f"{name}.mlspec")) == first
    copy = tmp_path / "elsewhere" / f"{name}.mlspec"
    copy.parent.mkdir()
    shutil.copy(SPECS / f"{name}.mlspec", copy)
    monkeypatch.chdir(tmp_path)
    assert render_runbook(compile_spec(Path("elsewhere") / f"{name}.mlspec")) == first


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_alert_check_and_monitor_rule_has_one_anchor(name: str) -> None:
    spec = compile_spec(SPECS / f"{name}.mlspec")
    text = render_runbook(spec)
    anchors = ANCHOR.findall(text)
    assert len(anchors) == len(set(anchors)), "anchors are unique"
    wanted = [runbook_anchor("alert", a.name) for a in spec.alerts]
    wanted += [runbook_anchor("source", s.name) for s in spec.sources]
    wanted += [runbook_anchor("check", c.name) for c in spec.checks]
    wanted += [check_rule_anchor(c.name, r) for c in spec.checks for r in c.rules]
    wanted += [runbook_anchor("gate", m.name) for m in spec.models if m.gate]
    wanted += [runbook_anchor("rollback", m.name) for m in spec.models]
    wanted += [runbook_anchor("monitor", m.name) for m in spec.monitors]
    wanted += [monitor_rule_anchor(m.name, r) for m in spec.monitors for r in m.rules]
    assert set(wanted) <= set(anchors), set(wanted) - set(anchors)
    for mon in spec.monitors:  # each rule's section holds its text, right under its anchor
        for r in mon.rules:
            section = text.split(f'<a id="{monitor_rule_anchor(mon.name, r)}"></a>', 1)[1]
            assert section.lstrip().startswith(f"#### `{r.text}"), r.text
    for c in spec.checks:
        for r in c.rules:
            section = text.split(f'<a id="{check_rule_anchor(c.name, r)}"></a>', 1)[1]
            assert section.lstrip().startswith(f"#### `{r.text}`"), r.text


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_link_resolves(name: str) -> None:
    text = render_runbook(compile_spec(SPECS / f"{name}.mlspec"))
    assert set(LINK.findall(text)) <= set(ANCHOR.findall(text))


def test_anchor_spelling_is_stable() -> None:
    """Alert payloads compute these; changing them breaks links in sent alerts."""
    assert runbook_anchor("alert", "oncall") == "alert-oncall"
    assert runbook_anchor("alert", "fraud_oncall") == "alert-fraud_oncall"
    assert monitor_rule_anchor("churn_risk", "psi(features) > 0.25") == "monitor-rule-churn_risk-psi-features-gt-0-25"
    assert monitor_rule_anchor("churn_risk", "auc >= champion.auc - 0.005") == \
        "monitor-rule-churn_risk-auc-ge-champion-auc-minus-0-005"
    assert check_rule_anchor("readings", "temperature is null or temperature > -60") == \
        "check-rule-readings-temperature-is-null-or-temperature-gt-minus-60"
    assert monitor_rule_anchor("m", "latency_p99 > 50ms") != monitor_rule_anchor("m", "latency_p99 < 50ms")


def test_what_each_section_tells_on_call() -> None:
    text = render_runbook(compile_spec(SPECS / "churn.mlspec"))
    for command in ("mlspec quarantine churn.mlspec --json", "mlspec run churn.mlspec --node check:orders",
                    "mlspec run churn.mlspec --node source:orders", "mlspec monitor churn.mlspec --json",
                    "mlspec report churn.mlspec -o report.html", "mlspec verify churn.mlspec --model churn_risk",
                    "mlspec models churn.mlspec", "mlspec rollback churn.mlspec --model churn_risk",
                    "curl -s http://127.0.0.1:8080/ready", "mlspec score churn.mlspec --serve churn_risk",
                    "mlspec serve churn.mlspec", "mlspec promote VERSION churn.mlspec --model churn_risk"):
        assert command in text, command
    assert "**A rejection means**" in text and "**Quarantine here means**" in text
    assert "ml-platform@example.com" in text and '`0 2 * * *`' in text and "retrain every 30d" in text
    assert "`ONCALL_WEBHOOK_URL`" in text


def test_no_secret_value_is_ever_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCALL_WEBHOOK_URL", "https://hooks.example.com/SECRET-TOKEN")
    assert "SECRET-TOKEN" not in render_runbook(compile_spec(SPECS / "churn.mlspec"))


def test_minimal_spec_still_gets_a_runbook() -> None:
    text = render_runbook(compile_spec(CASES / "readiness" / "minimal.mlspec"))
    assert "no `monitor` block" in text and "no `check` block" in text and "has no gate" in text
    assert "mlspec rollback minimal.mlspec --model churn_risk" in text
    assert set(LINK.findall(text)) <= set(ANCHOR.findall(text))


def test_duplicate_rule_texts_get_distinct_anchors(tmp_path: Path) -> None:
    text = churn_text().replace("  retrain every 30d\n", "  psi(features) > 0.25 -> retrain\n  retrain every 30d\n")
    anchors = ANCHOR.findall(render_runbook(spec_from_text(tmp_path, text)))
    assert len(anchors) == len(set(anchors))


def test_cli_writes_the_file_or_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = SPECS / "fraud.mlspec"
    expected = render_runbook(compile_spec(spec))
    assert run_cli("runbook", str(spec)) == 0
    assert capsys.readouterr().out == expected
    out = tmp_path / "ops" / "RUNBOOK.md"
    assert run_cli("runbook", str(spec), "-o", str(out)) == 0
    assert out.read_text(encoding="utf-8") == expected
    assert f"wrote {out}" in capsys.readouterr().out
