"""`mlspec serve` over real HTTP on 127.0.0.1, against a trained and materialized churn project."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlspec.cli import main
from mlspec.runtime.encode import encode_row
from mlspec.runtime.train import predict_scores
from tests.runtime.serving.conftest import AS_OF, Project, RawClient, Server, serving

PREDICT = "/v1/models/churn_api/predict"


def post(server: Server, body: object, path: str = PREDICT, **params: str) -> httpx.Response:
    return server.client.post(path, json=body, params=params)


def fields_named(response: httpx.Response) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


# ---- predictions -------------------------------------------------------------------------------


def test_one_row_prediction(server: Server, project: Project) -> None:
    r = post(server, {"customer_id": 5, "as_of": AS_OF})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["serve"] == "churn_api" and body["model"] == "churn_risk" and body["version"] == project.v1
    assert body["key"] == 5 and body["as_of"] == AS_OF and body["known_entity"] is True
    assert 0.0 < body["prediction"] < 1.0
    assert "features" not in body and "shadow" not in json.dumps(body)


def test_explain_returns_the_feature_vector_used(server: Server, project: Project) -> None:
    r = post(server, {"customer_id": 5, "as_of": AS_OF}, explain="features")
    assert r.status_code == 200, r.text
    body = r.json()
    model = project.spec().model("churn_risk")
    assert list(body["features"]) == list(model.features)
    # the vector explains the score: the champion applied to it gives the returned prediction
    encoding = project.registry.load_encoding("churn_risk", project.v1)
    booster = project.registry.load_booster("churn_risk", project.v1)
    again = predict_scores(booster, encode_row(body["features"], encoding), "binary")[0]
    assert again == pytest.approx(body["prediction"], abs=1e-12)
    assert body["features"]["profile.plan"] in ("basic", "pro", "enterprise")


def test_batch_equals_single_rows(server: Server) -> None:
    keys = [3, 17, 250]
    r = post(server, {"instances": [{"customer_id": k, "as_of": AS_OF} for k in keys]})
    assert r.status_code == 200, r.text
    batch = r.json()
    assert [p["key"] for p in batch["predictions"]] == keys
    for p in batch["predictions"]:
        single = post(server, {"customer_id": p["key"], "as_of": AS_OF}).json()
        assert p["prediction"] == single["prediction"] and p["known_entity"] is True
    explained = post(server, {"instances": [{"customer_id": 3}]}, explain="features").json()
    assert "features" in explained["predictions"][0]


def test_as_of_defaults_to_now_utc(server: Server) -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    body = post(server, {"customer_id": 5}).json()
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert before <= dt.datetime.fromisoformat(body["as_of"]) <= after
    # an offset is converted to UTC
    body = post(server, {"customer_id": 5, "as_of": "2026-10-01T02:00:00+02:00"}).json()
    assert body["as_of"] == AS_OF


def test_unknown_entity_gets_default_features_and_a_flag(server: Server) -> None:
    r = post(server, {"customer_id": 10**9, "as_of": AS_OF}, explain="features")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["known_entity"] is False and 0.0 < body["prediction"] < 1.0
    f = body["features"]
    # docs/semantics.md over no rows: counts and sums 0, other aggregates and row features null
    assert f["activity.orders_30d"] == 0 and f["activity.spend_90d"] == 0.0
    assert f["activity.avg_basket_90d"] is None and f["activity.days_since_order"] is None
    assert f["profile.plan"] is None and f["profile.tenure_days"] is None
    assert f["profile.monthly_fee"] == 0.0  # coalesce(monthly_fee, 0.0)


# ---- errors ------------------------------------------------------------------------------------


def test_unknown_serve_is_404(server: Server) -> None:
    r = post(server, {"customer_id": 1}, path="/v1/models/churn_apj/predict")
    assert r.status_code == 404
    assert "churn_apj" in r.json()["error"] and "did you mean `churn_api`" in r.json()["error"]
    assert r.json()["serves"] == ["churn_api"]
    assert post(server, {"customer_id": 1}, path="/v1/models/churn_risk/predict").status_code == 404  # batch block


def test_malformed_json_is_400(server: Server) -> None:
    for raw in (b"{bad", b"", b'{"customer_id": NaN}', b"\xff\xfe"):
        r = server.client.post(PREDICT, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, raw
        assert r.json()["error"].startswith("malformed JSON")


def test_invalid_fields_are_422_naming_each_field(server: Server) -> None:
    r = post(server, {"customer": 5})
    assert r.status_code == 422
    assert fields_named(r) == {"customer", "customer_id"}
    message = r.json()["error"]
    assert "`customer`: unknown field; did you mean `customer_id`?" in message
    assert "`customer_id`: missing field" in message

    r = post(server, {"customer_id": "5", "as_of": "yesterday"})
    assert r.status_code == 422 and fields_named(r) == {"customer_id", "as_of"}
    assert "expected an integer (int), got string '5'" in r.json()["error"]

    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):  # ISO 8601, but out of range in UTC
        r = post(server, {"customer_id": 5, "as_of": when})
        assert r.status_code == 422 and fields_named(r) == {"as_of"}, when

    for bad in (True, 1.5, None, [1], {"id": 1}):
        r = post(server, {"customer_id": bad})
        assert r.status_code == 422 and fields_named(r) == {"customer_id"}, bad

    r = post(server, {"instances": [{"customer_id": 1}, {"customer_id": True, "extra": 1}]})
    assert r.status_code == 422
    assert fields_named(r) == {"instances[1].customer_id", "instances[1].extra"}
    assert post(server, {"instances": []}).status_code == 422
    assert post(server, {"instances": {"customer_id": 1}}).status_code == 422
    r = post(server, {"instances": [{"customer_id": 1}], "as_of": AS_OF})
    assert r.status_code == 422 and fields_named(r) == {"as_of"}
    r = post(server, [1, 2])
    assert r.status_code == 422 and fields_named(r) == {"body"}
    r = post(server, {"customer_id": 1}, explain="everything")
    assert r.status_code == 422 and fields_named(r) == {"explain"}


# ---- probes, metrics, OpenAPI ------------------------------------------------------------------


def test_health_and_ready(server: Server, project: Project) -> None:
    r = server.client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = server.client.get("/ready")
    assert r.status_code == 200, r.text
    ready = r.json()
    assert ready["ready"] is True and ready["store"] == "ok"
    assert ready["serves"]["churn_api"]["version"] == project.v1
    assert ready["serves"]["churn_api"]["shadow"]["model"] == "churn_lite"


def test_metrics_exposition(server: Server, project: Project) -> None:
    post(server, {"customer_id": 5, "as_of": AS_OF})
    post(server, {"customer_id": 10**9, "as_of": AS_OF})
    post(server, {"customer_id": "x"})
    post(server, {"customer_id": 1}, path="/v1/models/nope/predict")
    r = server.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("mlspec_requests_total", endpoint="predict", serve="churn_api", status="200") >= 2
    assert value("mlspec_requests_total", endpoint="predict", serve="churn_api", status="422") >= 1
    assert value("mlspec_requests_total", endpoint="predict", serve="", status="404") >= 1
    assert value("mlspec_request_errors_total", serve="churn_api", kind="invalid") >= 1
    assert value("mlspec_request_duration_seconds_count", serve="churn_api") >= 3
    assert families["mlspec_request_duration_seconds"].type == "histogram"
    assert value("mlspec_prediction_value_count", serve="churn_api") >= 2
    assert value("mlspec_feature_null_total", serve="churn_api", feature="activity.avg_basket_90d") >= 1
    assert value("mlspec_unknown_entity_total", serve="churn_api") >= 1
    assert value("mlspec_model_version_info", serve="churn_api", role="champion", model="churn_risk",
                 version=project.v1) == 1
    assert value("mlspec_latency_p99_objective_seconds", serve="churn_api") == 0.05  # latency_p99 = 50ms
    misses, hits = value("mlspec_feature_cache_misses_total"), value("mlspec_feature_cache_hits_total")
    post(server, {"customer_id": 5, "as_of": AS_OF})  # its rows are cached now
    again = {(s.name): s.value for f in text_string_to_metric_families(server.client.get("/metrics").text)
             for s in f.samples if s.name.startswith("mlspec_feature_cache")}
    assert misses >= 2 and again["mlspec_feature_cache_hits_total"] >= hits + 2  # orders and customers of 5
    assert again["mlspec_feature_cache_rows"] > 0
    lite = project.registry.champion("churn_lite")
    assert value("mlspec_model_version_info", serve="churn_api", role="shadow", model="churn_lite",
                 version=str(lite)) == 1


def test_metrics_are_per_app(server: Server, project: Project, tmp_path: Path) -> None:
    with serving(project, tmp_path / "log") as other:
        text = other.client.get("/metrics").text
        assert 'mlspec_requests_total{endpoint="predict"' not in text  # the other server's counts are not here


def test_openapi_document_comes_from_the_spec(server: Server) -> None:
    r = server.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"].startswith("churn")
    op = doc["paths"][PREDICT]["post"]
    assert set(op["responses"]) >= {"200", "400", "404", "422"}
    refs = [x["$ref"] for x in op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]]
    schemas = doc["components"]["schemas"]
    row = schemas[refs[0].rsplit("/", 1)[1]]
    assert row["properties"]["customer_id"] == {"type": "integer", "description": "the `customer` to score"}
    assert row["properties"]["as_of"]["format"] == "date-time"
    assert row["required"] == ["customer_id"] and row["additionalProperties"] is False
    batch = schemas[refs[1].rsplit("/", 1)[1]]
    assert batch["properties"]["instances"]["items"] == {"$ref": refs[0]}
    for path in ("/health", "/ready", "/metrics"):
        assert "get" in doc["paths"][path]
    for ref in _refs(doc):  # every reference resolves
        assert ref.rsplit("/", 1)[1] in schemas


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


# ---- prediction log and shadow -----------------------------------------------------------------


def test_prediction_log_and_shadow(project: Project, tmp_path: Path) -> None:
    log_dir = tmp_path / "predictions"
    with serving(project, log_dir) as s:
        single = post(s, {"customer_id": 7, "as_of": AS_OF}).json()
        batch = post(s, {"instances": [{"customer_id": 8, "as_of": AS_OF}, {"customer_id": 10**9}]}).json()
        assert "shadow" not in single and all("shadow" not in p for p in batch["predictions"])
        post(s, {"customer_id": "bad"})  # not scored, not logged
        deadline = time.monotonic() + 10
        assert s.state.log is not None
        while s.state.log.written < 3 and time.monotonic() < deadline:  # shadow runs after the response
            time.sleep(0.02)
        assert s.state.log.flush()
    files = list(log_dir.glob("churn_api/*.jsonl"))
    assert [f.name for f in files] == [f"{dt.datetime.now(dt.UTC).date().isoformat()}.jsonl"]
    lines = [json.loads(x) for x in files[0].read_text(encoding="utf-8").splitlines()]
    assert [x["key"] for x in lines] == [7, 8, 10**9]
    first = lines[0]
    assert first["serve"] == "churn_api" and first["version"] == project.v1 and first["model"] == "churn_risk"
    assert first["prediction"] == single["prediction"] and first["as_of"] == AS_OF
    assert first["known_entity"] is True and lines[2]["known_entity"] is False
    assert first["latency_seconds"] > 0 and first["time"].endswith("Z")
    assert set(first["features"]) == set(project.spec().model("churn_risk").features)
    assert lines[1]["batch_size"] == 2 and first["batch_size"] is None
    # the shadow (churn_lite's champion) scored the same features; only the log has it
    lite = project.registry.champion("churn_lite")
    assert lite is not None
    enc = project.registry.load_encoding("churn_lite", lite)
    booster = project.registry.load_booster("churn_lite", lite)
    for x in lines:
        shadow = x["shadow"]
        assert shadow["model"] == "churn_lite" and shadow["version"] == lite
        expected = predict_scores(booster, encode_row(x["features"], enc), "binary")[0]
        assert shadow["prediction"] == pytest.approx(expected, abs=1e-12)
        assert shadow["prediction"] != x["prediction"]


# ---- the one-transform promise -----------------------------------------------------------------


def test_prediction_equals_batch_scoring(project: Project, tmp_path: Path) -> None:
    """`mlspec score --as-of T` and the server as of T give every customer the same score."""
    p = project.copy(tmp_path / "project")
    assert main(["score", str(p.spec_path), "--as-of", AS_OF]) == 0
    scores = pl.read_parquet(p.root / "scores" / "churn.parquet").sort("customer_id")
    assert scores.height == 400 and set(scores["model_version"]) == {p.v1}
    with serving(p, tmp_path / "log") as s:
        rows = [{"customer_id": k, "as_of": AS_OF} for k in scores["customer_id"].to_list()]
        r = post(s, {"instances": rows})
        assert r.status_code == 200, r.text
        served = r.json()
    assert served["version"] == p.v1
    online = np.array([x["prediction"] for x in served["predictions"]])
    batch = scores["score"].to_numpy()
    assert np.max(np.abs(online - batch)) <= 1e-6
    assert all(x["known_entity"] for x in served["predictions"])


# ---- champion hot reload -----------------------------------------------------------------------


def test_promote_and_rollback_are_picked_up_under_load(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "project")
    spec = str(p.spec_path)
    statuses: collections.Counter[int] = collections.Counter()
    versions: list[list[str]] = [[] for _ in range(4)]
    flips_done = threading.Event()
    flip_errors: list[BaseException] = []

    def flip() -> None:
        try:
            for i in range(10):
                time.sleep(0.35)
                args = (["promote", p.v2, spec, "--model", "churn_risk", "--force"] if i % 2 == 0
                        else ["rollback", spec, "--model", "churn_risk"])
                assert main(args) == 0
        except BaseException as e:  # reported by the main thread
            flip_errors.append(e)
        finally:
            flips_done.set()

    def client(i: int, s: Server) -> None:
        c = RawClient(s.url)
        try:
            n = 0
            while n < 20_000 and (n < 500 or not flips_done.is_set()):  # bounded: >= 500 each, <= 20,000
                # one request in four for a known customer; unknown ones keep the load cheap to serve
                key = 1 + (n * 7 + i) % 400 if n % 4 == 0 else 10**6 + n
                body = json.dumps({"customer_id": key, "as_of": AS_OF}).encode()
                status, answer = c.post(PREDICT, body)
                statuses[status] += 1
                if status == 200:
                    versions[i].append(json.loads(answer)["version"])
                n += 1
        finally:
            c.close()

    with serving(p, tmp_path / "log") as s:
        flipper = threading.Thread(target=flip)
        clients = [threading.Thread(target=client, args=(i, s)) for i in range(4)]
        for t in (flipper, *clients):
            t.start()
        for t in (flipper, *clients):
            t.join(timeout=300)
        assert not flip_errors, flip_errors
        deadline = time.monotonic() + 10  # the last rollback is seen within a poll or two
        while (final := post(s, {"customer_id": 1, "as_of": AS_OF}).json()["version"]) != p.v1:
            assert time.monotonic() < deadline, "the last rollback was not picked up"
            time.sleep(0.05)
        reloads = s.state.metrics.reloads.labels("churn_risk")._value.get()
    assert sum(statuses.values()) >= 2000
    assert set(statuses) == {200}, statuses
    assert {v for vs in versions for v in vs} == {p.v1, p.v2}
    switches = max(sum(a != b for a, b in itertools.pairwise(vs)) for vs in versions)
    assert switches >= 4, switches  # most flips are seen by each client (10 happened)
    assert final == p.v1 and reloads >= 4
