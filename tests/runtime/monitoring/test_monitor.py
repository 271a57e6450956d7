"""`mlspec monitor` on real demo projects: clean data stays quiet, drifted data alerts, numbers match scipy."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from mlspec.compiler import compile_paths
from mlspec.runtime.encode import FeatureEncoding, encode
from mlspec.runtime.monitoring import data as mdata
from mlspec.runtime.monitoring.evaluate import Options, evaluate
from mlspec.runtime.monitoring.store import MONITORING, PREDICTIONS
from mlspec.runtime.registry import Registry
from mlspec.runtime.warehouse import STATE_DIR, Warehouse
from tests.runtime.monitoring.conftest import MODEL, Receiver, World, cli, with_rules

FEATURES = ("activity.orders_30d", "activity.orders_90d", "activity.spend_90d", "activity.avg_basket_90d",
            "activity.max_order_90d", "activity.app_share_90d", "activity.days_since_order", "profile.tenure_days",
            "profile.plan", "profile.monthly_fee", "profile.is_premium")


def _rules(data: dict, **match: object) -> list[dict]:
    return [m for m in data["measurements"] if m["rule"] is not None and all(m[k] == v for k, v in match.items())]


def _info(data: dict, **match: object) -> list[dict]:
    return [m for m in data["measurements"] if m["rule"] is None and all(m[k] == v for k, v in match.items())]


def test_clean_data_raises_no_alarm(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    r = cli("monitor", "--json", project)
    assert r.rc == 0, r.err
    d = r.data
    assert d["ok"] and d["firing"] == 0
    (state,) = d["monitors"]
    assert state["population"] == "label cohort of 2026-08-01 00:00" and state["version"] == world.champion
    psi = _rules(d, metric="psi")
    assert sorted(m["subject"] for m in psi) == sorted(FEATURES)
    assert all(m["status"] in ("ok", "warn") and m["value"] < 0.25 for m in psi)
    (js,) = _rules(d, metric="js", subject="prediction")
    assert js["status"] == "ok" and js["value"] < 0.1
    (auc,) = _rules(d, metric="auc")
    assert auc["status"] == "ok" and auc["value"] > 0.65 and auc["n"] > 300
    assert {m["status"] for m in _rules(d, kind="latency") + _rules(d, kind="error_rate")} == {"no_data"}


def test_compare_like_with_like_every_entity_would_false_alarm(world: World, tmp_path: Path) -> None:
    """The default cohort avoids it; `--population all` counts churned customers with empty activity."""
    project = world.copy(tmp_path / "p")
    r = cli("monitor", "--json", "--dry-run", "--population", "all", project)
    assert r.rc == 1
    worst = max(m["value"] for m in _rules(r.data, metric="psi"))
    assert worst > 1.0


def test_drift_is_detected_and_the_webhook_receives_the_alert(
        world: World, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    project = world.copy(tmp_path / "p")
    world.arrive(project)
    monkeypatch.setenv("ONCALL_WEBHOOK_URL", receiver.url)
    r = cli("monitor", "--json", project)
    assert r.rc == 1, r.err
    d = r.data
    (state,) = d["monitors"]
    assert state["population"] == "label cohort of 2026-10-01 00:00"
    firing = {(m["metric"], m["subject"]) for m in d["measurements"] if m["status"] == "alert"}
    assert ("js", "prediction") in firing
    assert ("psi", "activity.orders_30d") in firing
    bodies = receiver.bodies()
    assert {b["rule"] for b in bodies} == {"psi(features) > 0.25", "js(prediction) > 0.1"}
    for b in bodies:
        assert b["spec"] == "churn" and b["model_version"] == world.champion and b["runbook"]
        assert b["value"] > b["threshold"] and b["window"]["end"] == "2026-10-01T00:00:00"
    sent = {(a["alert"], a["sink"], a["status"]) for a in d["alerts"]}
    assert sent == {("oncall", "webhook", "sent")}
    # the same alerts again within `dedupe = 1h`: recorded as suppressed, nothing posted
    again = cli("monitor", "--json", "--no-refresh", project)
    assert again.rc == 1 and {a["status"] for a in again.data["alerts"]} == {"suppressed"}
    assert len(receiver.requests) == 2


def test_drift_numbers_equal_scipy_on_the_real_cohort(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    world.arrive(project)
    compiled = compile_paths([project / "churn.mlspec"])
    run = evaluate(compiled, Options(record=False, notify=False))
    state = run.states[0]
    registry = Registry(project / STATE_DIR / "registry")
    reference = registry.load_reference(MODEL)
    encoding = registry.load_encoding(MODEL)
    with Warehouse.open(project) as wh:
        frame = mdata.cohort_features(wh, compiled.checked[0], compiled.checked[0].model(MODEL),
                                      dt.datetime(2026, 10, 1), "duckdb")
    assert frame.height == state.n_current
    for name in ("activity.orders_30d", "activity.app_share_90d", "profile.tenure_days"):
        j = encoding.names.index(name)
        values = encode(frame, FeatureEncoding((encoding.features[j],)))[:, 0].astype(np.float64)
        values = values[np.isfinite(values)]
        got, ref = state.features[name], reference.features[name]
        want = ks_2samp(np.array(ref.sample), values)  # type: ignore[union-attr]
        assert got.ks == pytest.approx(float(want.statistic), abs=1e-12)
        assert got.ks_pvalue == pytest.approx(float(want.pvalue), rel=1e-9, abs=1e-300)
        assert got.js == pytest.approx(float(jensenshannon(ref.shares, got.cur_shares, base=2)), rel=1e-9)
    measured = {(m.metric, m.subject): m.value for m in run.measurements}
    assert measured[("ks", "activity.orders_30d")] == state.features["activity.orders_30d"].ks
    assert measured[("psi", "activity.orders_30d")] == state.features["activity.orders_30d"].psi


def test_history_has_one_row_per_metric_per_window(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    for as_of in ("2026-06-15", "2026-07-15", "2026-08-15"):
        assert cli("monitor", "--no-alerts", "--no-refresh", "--as-of", as_of, project).rc == 0
    assert cli("monitor", "--no-alerts", "--no-refresh", "--as-of", "2026-08-15", project).rc == 0  # same window
    with Warehouse.open(project, read_only=True) as wh:
        dup = wh.scalar(f"SELECT count(*) FROM (SELECT monitor, rule, metric, subject, window_start, window_end, "
                        f"count(*) n FROM {MONITORING} GROUP BY ALL HAVING n > 1)")
        windows = wh.conn.execute(f"SELECT DISTINCT window_end FROM {MONITORING} WHERE metric = 'psi' "
                                  "ORDER BY 1").fetchall()
        cols = {r[0] for r in wh.conn.execute(f"DESCRIBE {MONITORING}").fetchall()}
        auc = wh.conn.execute(f"SELECT value, threshold, status FROM {MONITORING} WHERE rule = 'auc < 0.65' "
                              "ORDER BY window_end").fetchall()
    assert dup == 0
    assert [w[0] for w in windows] == [dt.datetime(2026, 6, 1), dt.datetime(2026, 7, 1), dt.datetime(2026, 8, 1)]
    assert {"value", "threshold", "status", "window_start", "window_end", "evaluated_at"} <= cols
    assert len(auc) == 3 and all(t == 0.65 and s == "ok" for _, t, s in auc)


def test_outcomes_join_batch_scores_and_the_realtime_log(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    # a batch scoring run at the label time of the latest cohort
    assert cli("score", "--as-of", "2026-08-01", project).rc == 0
    scores = pl.read_parquet(project / "scores" / "churn.parquet")
    # a realtime log: 40 answered requests on 2026-08-01 about the same customers, with latencies
    log = project / STATE_DIR / "predictions" / "churn_api" / "2026-08-01.jsonl"
    log.parent.mkdir(parents=True)
    latencies = np.linspace(0.002, 0.080, 40)
    labels = pl.read_parquet(project / "data" / "churn_labels.parquet").filter(
        pl.col("observed_at") == dt.datetime(2026, 8, 1))
    keys = labels["customer_id"].to_list()[:40]
    with open(log, "w") as f:
        for i, (k, lat) in enumerate(zip(keys, latencies, strict=True)):
            f.write(json.dumps({"time": f"2026-08-01T12:{i:02d}:00Z", "serve": "churn_api", "model": MODEL,
                                "version": world.champion, "key": k, "as_of": "2026-08-01T12:00:00",
                                "features": {}, "prediction": 0.9, "latency_seconds": float(lat)}) + "\n")
    r = cli("monitor", "--json", "--no-alerts", "--as-of", "2026-08-01T12:45:00", "--window", "1d", project)
    d = r.data
    (auc,) = _rules(d, metric="auc")
    assert auc["detail"]["predictions_from"]["batch"] > 0
    assert auc["detail"]["predictions_from"].get("realtime", 0) + auc["detail"]["predictions_from"]["batch"] \
        + auc["detail"]["predictions_from"].get("monitor", 0) == auc["n"]
    (p99,) = _rules(d, metric="latency_p99")
    assert p99["value"] == pytest.approx(float(np.quantile(latencies, 0.99)) * 1000) and p99["n"] == 40
    assert p99["status"] == "alert"  # the spec's SLO is 50ms
    (err,) = _rules(d, metric="error_rate")
    assert err["status"] == "no_data" and "--metrics-url" in err["detail"]["note"]
    compiled = compile_paths([project / "churn.mlspec"])
    spec = compiled.checked[0]
    records = list(mdata.prediction_log_records(project, ["churn_api"], dt.datetime(2026, 8, 1),
                                                dt.datetime(2026, 8, 2)))
    with Warehouse.open(project) as wh:
        kept = wh.conn.execute(f"SELECT source, count(*) FROM {PREDICTIONS} GROUP BY 1 ORDER BY 1").fetchall()
        assert dict(kept)["batch"] == scores.height
        wh.conn.execute(f"DELETE FROM {PREDICTIONS}")  # only the realtime log is left to judge labels
        pairs = mdata.labelled_pairs(wh, spec, spec.model(MODEL), dt.datetime(2026, 7, 15), dt.datetime(2026, 8, 2),
                                     mdata.as_predictions(mdata.log_frame(records, spec.model(MODEL)), "realtime"))
    assert pairs.height == 40 and set(pairs["source"]) == {"realtime"} and set(pairs["score"]) == {0.9}
    assert set(pairs["entity_key"]) == {str(k) for k in keys}


def test_current_data_from_a_file_with_bare_names(world: World, tmp_path: Path) -> None:
    project = world.copy(tmp_path / "p")
    compiled = compile_paths([project / "churn.mlspec"])
    model = compiled.checked[0].model(MODEL)
    with Warehouse.open(project) as wh:
        frame = mdata.cohort_features(wh, compiled.checked[0], model, dt.datetime(2026, 8, 1), "duckdb")
    frame.rename({q: q.split(".", 1)[1] for q in FEATURES}).write_parquet(tmp_path / "current.parquet")
    base = evaluate(compiled, Options(record=False, notify=False, refresh=False))
    got = evaluate(compiled, Options(record=False, notify=False, refresh=False,
                                     current=str(tmp_path / "current.parquet")))
    for name in FEATURES:
        assert got.states[0].features[name].psi == pytest.approx(base.states[0].features[name].psi, abs=1e-12)
    assert got.states[0].prediction is not None and got.states[0].prediction.js == pytest.approx(
        base.states[0].prediction.js)  # type: ignore[union-attr]


def test_data_quality_rules(world: World, tmp_path: Path) -> None:
    rules = """
  null_rate(activity.avg_basket_90d) > 0.0001 -> alert(sre)
  quarantine_rate(orders) > 0.5 -> alert(sre)
  freshness(orders) > 26h -> alert(sre)
"""
    project = world.copy(tmp_path / "p", with_rules(rules))
    r = cli("monitor", "--json", "--as-of", "2026-09-01T12:00:00", project)
    d = r.data
    (nulls,) = _rules(d, kind="null_rate")
    (quarantine,) = _rules(d, kind="quarantine_rate")
    (fresh,) = _rules(d, kind="freshness")
    assert nulls["value"] > 0.0001 and nulls["status"] == "alert"  # customers without orders in 90 days
    assert quarantine["value"] == 0 and quarantine["status"] == "ok"
    assert fresh["value"] == pytest.approx(12 * 3_600_000, rel=0.01) and fresh["status"] == "ok"
    assert r.rc == 1
    lines = (project / "alerts" / "sre.jsonl").read_text().splitlines()
    assert [json.loads(x)["rule"] for x in lines] == ["null_rate(activity.avg_basket_90d) > 0.0001"]


def test_current_data_from_the_realtime_prediction_log(world: World, tmp_path: Path) -> None:
    """Logged requests (features as the online path computed them) are measured like any population."""
    project = world.copy(tmp_path / "p")
    compiled = compile_paths([project / "churn.mlspec"])
    spec = compiled.checked[0]
    with Warehouse.open(project) as wh:
        frame = mdata.cohort_features(wh, spec, spec.model(MODEL), dt.datetime(2026, 8, 1), "duckdb")
    base = evaluate(compiled, Options(record=False, notify=False, refresh=False))
    log = project / STATE_DIR / "predictions" / "churn_api" / "2026-08-01.jsonl"
    log.parent.mkdir(parents=True)
    scores = base.states[0]
    with open(log, "w") as f:
        for i, row in enumerate(frame.iter_rows(named=True)):
            f.write(json.dumps({"time": f"2026-08-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z", "serve": "churn_api",
                                "model": MODEL, "version": world.champion, "key": row["customer_id"],
                                "as_of": "2026-08-01T10:00:00", "features": {q: row[q] for q in FEATURES},
                                "prediction": 0.1, "latency_seconds": 0.003}) + "\n")
    got = evaluate(compiled, Options(record=False, notify=False, refresh=False, current="predictions",
                                     as_of=dt.datetime(2026, 8, 1, 18), window_ms=86_400_000))
    state = got.states[0]
    assert state.population == "prediction log" and state.n_current == frame.height == scores.n_current
    for name in FEATURES:
        assert state.features[name].psi == pytest.approx(scores.features[name].psi, abs=1e-12), name
    assert state.prediction is not None and state.prediction.cur_shares[0] + state.prediction.cur_shares[-1] < 1
    (p99,) = [m for m in got.measurements if m.metric == "latency_p99" and m.rule]
    assert p99.value == pytest.approx(3.0) and p99.status == "ok"
