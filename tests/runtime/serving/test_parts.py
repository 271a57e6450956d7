"""The serving parts on their own: prediction log, champion holder, metrics registry, CLI parser."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from mlspec.runtime.serving.commands import add_parsers
from mlspec.runtime.serving.log import PredictionLog
from mlspec.runtime.serving.metrics import ServingMetrics
from mlspec.runtime.serving.models import ChampionHolder
from tests.runtime.serving.conftest import Project


def test_log_rotates_by_day_and_serialises_values(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.start()
    log.append({"time": "2026-11-01T23:59:59.000001Z", "serve": "a", "as_of": dt.datetime(2026, 11, 1), "x": None})
    log.append({"time": "2026-11-02T00:00:00.000000Z", "serve": "a", "d": dt.date(2026, 1, 2)})
    log.append({"time": "2026-11-02T00:00:01.000000Z", "serve": "b", "v": 0.5})
    assert log.flush()
    log.close()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jsonl")) == [
        "a/2026-11-01.jsonl", "a/2026-11-02.jsonl", "b/2026-11-02.jsonl"]
    first = json.loads((tmp_path / "a" / "2026-11-01.jsonl").read_text())
    assert first["as_of"] == "2026-11-01T00:00:00" and first["x"] is None
    assert json.loads((tmp_path / "a" / "2026-11-02.jsonl").read_text())["d"] == "2026-01-02"
    assert log.written == 3 and log.dropped == 0


def test_log_drops_instead_of_blocking_when_the_writer_is_behind(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = PredictionLog(tmp_path, max_pending=2, on_drop=lambda: dropped.append(1))
    for i in range(5):  # writer not started: nothing drains
        log.append({"time": "2026-11-01T00:00:00Z", "serve": "a", "i": i})
    assert log.dropped == 3 and len(dropped) == 3
    log.start()
    assert log.flush()
    log.close()
    lines = (tmp_path / "a" / "2026-11-01.jsonl").read_text().splitlines()
    assert [json.loads(x)["i"] for x in lines] == [0, 1]


def test_holder_loads_the_champion_and_follows_the_pointer(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "project")
    swaps: list[tuple[str | None, str]] = []
    features = p.spec().model("churn_risk").features
    holder = ChampionHolder(p.registry, "churn_risk", features,
                            on_swap=lambda old, new: swaps.append((old.version if old else None, new.version)))
    assert holder.refresh() and holder.current is not None and holder.current.version == p.v1
    loaded = holder.current
    assert not holder.refresh()  # pointer unchanged: nothing read, nothing loaded
    p.registry.promote("churn_risk", p.v2, force=True)
    assert holder.refresh() and holder.current.version == p.v2
    assert loaded.version == p.v1  # a request holding the old object keeps a whole, working model
    p.registry.rollback("churn_risk")
    assert holder.refresh() and holder.current.version == p.v1
    assert swaps == [(None, p.v1), (p.v1, p.v2), (p.v2, p.v1)] and holder.reloads == 2


def test_holder_keeps_serving_when_a_version_cannot_be_used(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "project")
    features = p.spec().model("churn_risk").features
    ok = ChampionHolder(p.registry, "churn_risk", features)
    assert ok.refresh()
    # a holder for a spec that no longer computes one of the version's features refuses it
    narrow = ChampionHolder(p.registry, "churn_risk", [q for q in features if q != "profile.plan"])
    assert not narrow.refresh() and narrow.current is None
    assert narrow.last_error is not None and "profile.plan" in narrow.last_error
    # a corrupted model file is refused; the loaded champion keeps serving
    (p.registry.get("churn_risk", p.v2).path / "model.ubj").write_bytes(b"garbage")
    p.registry.promote("churn_risk", p.v2, force=True)
    assert not ok.refresh()
    assert ok.current is not None and ok.current.version == p.v1
    assert ok.last_error is not None and "checksum" in ok.last_error


def test_metrics_registries_are_independent() -> None:
    a, b = ServingMetrics(), ServingMetrics()
    a.count_request("predict", "s", 200)
    a.set_model("s", "champion", "m", None, "v1")
    a.set_model("s", "champion", "m", "v1", "v2")
    text = a.exposition().decode()
    assert 'mlspec_requests_total{endpoint="predict",serve="s",status="200"} 1.0' in text
    assert 'version="v2"} 1.0' in text and 'version="v1"' not in text
    assert "mlspec_requests_total{" not in b.exposition().decode()


def test_serve_subcommand_arguments() -> None:
    parser = argparse.ArgumentParser(prog="mlspec")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "specs/churn.mlspec", "--port", "9000"])
    assert args.command == "serve" and args.paths == ["specs/churn.mlspec"]
    assert args.host == "127.0.0.1" and args.port == 9000 and args.poll == 0.2 and callable(args.func)
