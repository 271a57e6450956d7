"""`mlspec report`: a self-contained HTML dashboard that parses and holds every section offline."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlspec.runtime.monitoring.report import SECTIONS, line_chart
from mlspec.runtime.monitoring.store import ALERTS, MONITORING
from mlspec.runtime.warehouse import Warehouse
from tests.runtime.monitoring.conftest import World, cli

FEATURES = ("activity.orders_30d", "activity.app_share_90d", "profile.plan", "profile.tenure_days")


class Collect(HTMLParser):
    """Tags, ids, attributes and text of a document; fails on unbalanced section/svg nesting."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, int] = {}
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        for k in ("src", "href", "xlink:href", "data"):
            if a.get(k):
                self.urls.append(str(a[k]))
        if tag in ("section", "svg", "table"):
            self.stack.append(tag)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("section", "svg", "table"):
            assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
            self.stack.pop()
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


def _parse(path: Path) -> Collect:
    doc = Collect()
    doc.feed(path.read_text(encoding="utf-8"))
    doc.close()
    assert doc.stack == []
    return doc


def test_report_is_self_contained_and_has_every_section(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    for as_of in ("2026-05-15", "2026-06-15", "2026-07-15"):  # a little history to plot
        assert cli("monitor", "--no-alerts", "--no-refresh", "--as-of", as_of, project).rc == 0
    out = tmp_path / "out" / "report.html"
    r = cli("report", project, "-o", out)
    assert r.rc == 0, r.err
    assert f"wrote {out}" in r.out
    doc = _parse(out)
    assert set(SECTIONS) <= set(doc.ids)
    assert doc.tags["svg"] >= 11 + 4  # a distribution per feature, drift, prediction, outcome, latency charts
    assert doc.tags.get("polyline", 0) >= 11  # a PSI line per feature over the four windows
    assert doc.tags.get("script") == 1 and "addEventListener" in "".join(doc.scripts)
    assert doc.tags.get("link", 0) == 0 and doc.tags.get("img", 0) == 0 and doc.tags.get("iframe", 0) == 0
    assert all(u.startswith("#") for u in doc.urls), [u for u in doc.urls if not u.startswith("#")]
    text = " ".join(doc.text)
    for name in FEATURES:
        assert name in text
    assert "psi(features) > 0.25" in text and world.champion in text
    assert "outcome metrics over rolling label windows" in text
    raw = out.read_text(encoding="utf-8")
    assert "http://" not in raw.replace("http://www.w3.org", "") and "https://" not in raw


def test_empty_history_renders_a_hint_not_an_error() -> None:
    svg = line_chart([("psi", [], "#000")], title="nothing yet")
    assert "no history yet" in svg and svg.startswith("<svg")
    one = line_chart([("auc", [(dt.datetime(2026, 1, 1), 0.8)], "#000")], thresholds=[(0.65, "auc < 0.65", "red")])
    assert "<circle" in one and "auc &lt; 0.65" in one


@pytest.mark.slow
def test_report_of_a_drifted_project_shows_the_alerts(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    world.arrive(project)
    out = tmp_path / "report.html"
    assert cli("report", project, "-o", out).rc == 0
    doc = _parse(out)
    text = " ".join(doc.text)
    assert "alert" in text and "label cohort of 2026-10-01" in text
    with Warehouse.open(project, read_only=True) as wh:  # a report records nothing and alerts no one
        assert not wh.exists(MONITORING) or wh.count(MONITORING) == 0
        assert not wh.exists(ALERTS) or wh.count(ALERTS) == 0
