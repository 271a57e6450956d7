"""Request schemas derived from the spec, and request-time features served end to end (fraud spec).

No trained fraud model is needed: validation happens before scoring, and for the end-to-end case a
small booster with the model's real feature encoding is put in the champion holder by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec
from mlspec.ir.types import DType
from mlspec.runtime.encode import EncodedFeature, FeatureEncoding, encode_row
from mlspec.runtime.online.store import open_store
from mlspec.runtime.serving.app import ServingState
from mlspec.runtime.serving.models import LoadedModel
from mlspec.runtime.serving.predictor import predictor_for
from mlspec.runtime.serving.schema import FieldError, RequestRow, schema_for
from tests.runtime.serving.conftest import REPO, Server, running

PREDICT = "/v1/models/fraud_api/predict"
TXN = {"card_id": 42, "txn_id": 7, "ts": "2026-05-02T03:04:05Z", "merchant": "m1", "mcc": 6051, "amount": 300.0,
       "country": "FR", "channel": "ecom", "card_present": False}


@pytest.fixture(scope="module")
def fraud_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fraud")
    shutil.copy(REPO / "specs" / "fraud.mlspec", root / "fraud.mlspec")
    return root


@pytest.fixture(scope="module")
def fraud(fraud_root: Path) -> Spec:
    return compile_paths([fraud_root / "fraud.mlspec"]).checked[0]


def errors_of(spec: Spec, body: object) -> dict[str, str]:
    got = schema_for(spec, next(s for s in spec.serves if s.name == "fraud_api")).validate(body)
    assert isinstance(got, list), got
    return {e.field: e.to_data()["message"] for e in got}


def test_schema_is_the_key_plus_the_event_columns_features_read(fraud: Spec) -> None:
    schema = schema_for(fraud, next(s for s in fraud.serves if s.name == "fraud_api"))
    assert schema.key.name == "card_id" and schema.key.dtype is DType.INT
    # read by the request group `txn`, or by `card_history`, where the event counts in its own history;
    # `is_fraud` (the label) and `card_id` (the key) are not fields
    assert [f.name for f in schema.fields] == ["txn_id", "ts", "merchant", "mcc", "amount", "country", "channel",
                                               "card_present"]
    assert schema.event_time == "ts"
    js = schema.json_schema()
    assert js["required"] == ["card_id", "txn_id", "ts", "merchant", "amount", "country", "channel",
                              "card_present"]  # mcc is nullable
    assert js["properties"]["amount"] == {"type": "number", "minimum": 0.0, "maximum": 1_000_000.0,
                                          "description": "`transactions.amount`, read by request features `txn`"}
    assert js["properties"]["channel"]["enum"] == ["pos", "ecom", "atm", "moto"]
    assert js["properties"]["mcc"]["type"] == ["integer", "null"]
    assert js["properties"]["ts"]["format"] == "date-time" and js["additionalProperties"] is False


def test_valid_row_is_converted_and_as_of_defaults_to_the_event_time(fraud: Spec) -> None:
    schema = schema_for(fraud, next(s for s in fraud.serves if s.name == "fraud_api"))
    row = schema.validate({**TXN, "mcc": None})
    assert isinstance(row, RequestRow)
    assert row.key == 42 and row.as_of == dt.datetime(2026, 5, 2, 3, 4, 5)  # UTC, naive
    assert row.request is not None
    assert row.request["ts"] == dt.datetime(2026, 5, 2, 3, 4, 5) and row.request["mcc"] is None
    assert row.request["card_id"] == 42 and row.fields["amount"] == 300.0
    later = schema.validate({**TXN, "as_of": "2026-05-03"})
    assert isinstance(later, RequestRow) and later.as_of == dt.datetime(2026, 5, 3)
    no_mcc = {k: v for k, v in TXN.items() if k != "mcc"}
    assert isinstance(schema.validate(no_mcc), RequestRow)  # a nullable column may be left out
    assert isinstance(schema.validate({**TXN, "amount": 300}), RequestRow)  # an int is a number


def test_every_invalid_field_is_named(fraud: Spec) -> None:
    errs = errors_of(fraud, {**TXN, "ts": "yesterday", "mcc": 12345, "amount": -5.0, "channel": "mail",
                             "card_present": "no", "amout": 1})
    assert set(errs) == {"ts", "mcc", "amount", "channel", "card_present", "amout"}
    assert errs["mcc"] == "`mcc`: 12345 is outside the range [0, 9999]"
    assert errs["amount"] == "`amount`: -5.0 is outside the range [0, 1000000]"
    assert errs["channel"] == "`channel`: 'mail' is not one of 'pos', 'ecom', 'atm', 'moto'"
    assert errs["card_present"].startswith("`card_present`: expected true or false (bool), got string")
    assert "did you mean `amount`?" in errs["amout"]
    assert "ISO 8601" in errs["ts"]
    missing = errors_of(fraud, {"card_id": 1})
    assert set(missing) == {"txn_id", "ts", "merchant", "amount", "country", "channel", "card_present"}
    assert missing["amount"] == "`amount`: missing field (float, required)"
    assert set(errors_of(fraud, {**TXN, "amount": None})) == {"amount"}  # not null
    assert set(errors_of(fraud, {**TXN, "mcc": 4829.5})) == {"mcc"}
    assert set(errors_of(fraud, {**TXN, "card_id": False})) == {"card_id"}
    assert FieldError("x", "y").to_data() == {"field": "x", "message": "`x`: y"}


# ---- over HTTP, with a stand-in booster ------------------------------------------------------


def _encoding(spec: Spec) -> FeatureEncoding:
    cats = {"card_profile.card_type": ("credit", "debit", "prepaid"), "card_profile.home_country": ("DE", "FR"),
            "txn.channel": ("atm", "ecom", "moto", "pos")}
    return FeatureEncoding(tuple(EncodedFeature(q, spec.feature(q).dtype, cats.get(q, ()))
                                 for q in spec.model("fraud_risk").features))


@pytest.fixture(scope="module")
def fraud_server(fraud: Spec, fraud_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = open_store(fraud, fraud_root)  # empty: nothing materialized
    try:
        state = ServingState(fraud, fraud_root, store, log_dir=tmp_path_factory.mktemp("fraud-log"))
        with running(state) as server:
            yield server
    finally:
        store.close()


def test_not_ready_without_a_champion_or_materialized_store(fraud_server: Server) -> None:
    assert fraud_server.client.get("/health").status_code == 200
    r = fraud_server.client.get("/ready")
    assert r.status_code == 503
    problems = " ".join(r.json()["problems"])
    assert "fraud_risk" in problems and "no champion" in problems
    assert "not materialized yet" in problems and "transactions" in problems
    assert fraud_server.client.post(PREDICT, json=TXN).status_code == 503  # valid, but nothing to score with
    r = fraud_server.client.post(PREDICT, json={**TXN, "amount": 2e6, "channel": "fax"})
    assert r.status_code == 422  # invalid requests are told so even before a model is loaded
    assert {e["field"] for e in r.json()["errors"]} == {"amount", "channel"}


def _stand_in(spec: Spec, state: ServingState) -> LoadedModel:
    """A small booster over the model's real encoding, put in the champion holder by hand."""
    current = state.holders["fraud_risk"].current
    if current is not None:
        return current
    enc = _encoding(spec)
    x = np.random.default_rng(0).normal(size=(200, len(enc.features))).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1, "max_depth": 2},
                        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(np.float32)), num_boost_round=5)
    model = state.holders["fraud_risk"].current = LoadedModel("fraud_risk", "standin", booster, enc, "binary", (),
                                                              predictor_for(booster, len(enc.features)))
    return model


def test_request_features_come_from_the_request(fraud: Spec, fraud_server: Server) -> None:
    state = fraud_server.state
    standin = _stand_in(fraud, state)
    booster, enc = standin.booster, standin.encoding
    r = fraud_server.client.post(PREDICT, json=TXN, params={"explain": "features"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "standin" and body["known_entity"] is False
    assert body["as_of"] == "2026-05-02T03:04:05"  # the event time
    f = body["features"]
    assert f["txn.amount"] == 300.0 and f["txn.log_amount"] == pytest.approx(np.log(301.0))
    assert f["txn.hour_of_day"] == 3 and f["txn.day_of_week"] == 6 and f["txn.is_weekend"] is True
    assert f["txn.is_night"] is True and f["txn.channel"] == "ecom" and f["txn.card_present"] is False
    assert f["txn.is_round"] is True and f["txn.high_risk_mcc"] is True
    # the history groups are the online feature path's, given this request (the event itself counts
    # in its own history there, as in training); the server passed it the validated request row
    row = state.serves["fraud_api"].schema.validate(TXN)
    assert isinstance(row, RequestRow)
    direct = state.features.features(state.serves["fraud_api"].model, state.store, 42, row.as_of, row.request)
    assert f == json.loads(json.dumps(direct.values, default=str))
    assert direct.known_entity is False
    expected = float(booster.inplace_predict(encode_row(f, enc), missing=np.nan)[0])
    assert body["prediction"] == pytest.approx(expected, abs=1e-7)
    # the shadow (fraud_risk_v2) has no champion: the client is not affected, the log says so
    assert state.log is not None and state.log.flush()
    assert "shadow" not in body


class _DownStore:
    """A store whose backend went away mid-flight (what a Redis outage looks like to the app)."""

    def version(self) -> object:
        raise ConnectionError("connection refused")

    def rows_for(self, source: str, key: object) -> list[dict[str, object]]:
        raise ConnectionError("connection refused")

    def ping(self) -> bool:
        return False


def test_store_outage_is_503_not_500(fraud: Spec, fraud_server: Server) -> None:
    state = fraud_server.state
    _stand_in(fraud, state)
    real = state.store
    state.store = _DownStore()  # type: ignore[assignment]
    try:
        r = fraud_server.client.post(PREDICT, json=TXN)
        assert r.status_code == 503 and "online store unavailable" in r.json()["error"]
        assert fraud_server.client.get("/ready").json()["store"] == "does not answer"
    finally:
        state.store = real


def test_oversized_body_is_413(fraud_server: Server) -> None:
    big = b'{"card_id": 1, "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    r = fraud_server.client.post(PREDICT, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "MiB" in r.json()["error"]
