"""`mlspec stream` on real components: redis-server, a model trained by a real `mlspec run`, the
online store in Redis. Features and predictions of streamed events are compared with the batch
path and the HTTP path, value for value; bad events are dead-lettered with reasons; counts add up;
promote and rollback are picked up by a running consumer."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl

from mlspec.ir.types import DType
from mlspec.runtime.online.store import decode_row
from mlspec.runtime.online.verify import values_equal
from tests.runtime.stream.conftest import compile_plant, entries, last_reading, new_events, wait_for


def _append_to_file(root: Path, events: list[dict[str, str]]) -> None:
    """The streamed events, as the batch path later sees them: rows of the readings file."""
    path = root / "data" / "readings.parquet"
    frame = pl.read_parquet(path)
    new = pl.DataFrame({
        "reading_id": [int(e["reading_id"]) for e in events],
        "device_id": [int(e["device_id"]) for e in events],
        "read_at": [dt.datetime.fromisoformat(e["read_at"].removesuffix("Z")) for e in events],
        "temperature": [float(e["temperature"]) if e["temperature"] else None for e in events],
        "status": [e["status"] for e in events],
    }, schema=frame.schema)
    pl.concat([frame, new]).write_parquet(path)


def _counter(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_streamed_features_and_predictions_equal_the_batch_and_http_paths(plant: Path, run_consumer: Any) -> None:
    from mlspec.compiler import compile_paths
    from mlspec.runtime.encode import encode
    from mlspec.runtime.online.materialize import source_tables
    from mlspec.runtime.online.store import open_store
    from mlspec.runtime.runner import run_pipeline
    from mlspec.runtime.score import features_as_of
    from mlspec.runtime.serving.app import ServingState
    from mlspec.runtime.serving.models import load_version
    from mlspec.runtime.warehouse import Warehouse

    running, client = run_consumer(plant, with_features=True, batch=7)
    events = new_events(plant, 40)
    ids = [client.xadd("readings", e).decode() for e in events]
    wait_for(lambda: client.xlen("risk_scores") == len(events), what="every event scored")
    running.stop()
    out = entries(client, "risk_scores")
    assert [f["event_id"] for _, f in out] == ids  # one output per event, in stream order
    assert client.xlen("risk_scores.dead") == 0
    assert client.xpending("readings", "mlspec.risk_stream")["pending"] == 0

    spec = compile_plant(plant)
    model = spec.model("risk")
    dtypes = {f.qualified: f.dtype for g in spec.groups for f in g.features}
    # the batch path: the same events, extracted from the file and checked, features as of each event
    _append_to_file(plant, events)
    compiled = compile_paths([plant / "plant.mlspec"])
    for node in ("source:readings", "check:readings"):
        assert run_pipeline(compiled, node=node).ok
    by_id = {f["event_id"]: f for _, f in out}
    store = open_store(spec, plant)
    state = ServingState(spec, plant, store, prediction_log=False)
    state.start()
    try:
        with Warehouse.open(plant) as wh:
            tables = source_tables(wh, spec)
            champion = load_version(state.registry, "risk", by_id[ids[0]]["version"])
            compared = 0
            for event, eid in zip(events, ids, strict=True):
                streamed = by_id[eid]
                as_of = dt.datetime.fromisoformat(event["read_at"].removesuffix("Z"))
                assert streamed["event_time"] == as_of.isoformat() and streamed["key"] == event["device_id"]
                frame = features_as_of(wh, spec, model, as_of, "duckdb", tables, prefix="streamtest")
                row = frame.filter(pl.col("device_id") == int(event["device_id"]))
                batch = row.row(0, named=True)
                online = decode_row(streamed["features"])
                assert set(online) == set(model.features)
                for q in model.features:
                    assert values_equal(batch[q], online[q], dtypes[q]), (eid, q, batch[q], online[q])
                    compared += 1
                batch_score = float(champion.scores(encode(row, champion.encoding))[0])
                assert float(streamed["prediction"]) == batch_score
                # the realtime HTTP path, reading the store the stream wrote, as of the same time
                http = state.predict("risk_api", json.dumps({"device_id": int(event["device_id"]),
                                                             "as_of": event["read_at"]}).encode())
                assert http.status == 200 and http.payload["prediction"] == float(streamed["prediction"])
            assert compared == len(events) * len(model.features)
            # the event itself counts (time <= as_of): its own reading is the latest temperature
            first = decode_row(by_id[ids[0]]["features"])
            assert first["recent.last_temp"] == float(events[0]["temperature"])
    finally:
        state.stop()
        store.close()
    assert DType.FLOAT in dtypes.values()


def test_bad_events_are_dead_lettered_with_reasons_and_counts_reconcile(plant: Path, run_consumer: Any) -> None:
    from mlspec.runtime.stream.http import create_app

    running, client = run_consumer(plant, batch=5)
    rid, t = last_reading(plant)
    at = (t + dt.timedelta(minutes=1)).isoformat()
    good = {"reading_id": str(rid + 1), "device_id": "3", "read_at": at, "temperature": "50.5", "status": "ok"}
    bad: list[tuple[dict[str, Any], str]] = [
        ({**good, "reading_id": "x1"}, "reading_id = x1 is not a int"),
        ({**good, "device_id": ""}, "device_id is null"),
        ({k: v for k, v in good.items() if k != "read_at"}, "read_at is null"),
        ({**good, "temperature": "250"}, "temperature = 250.0 is outside [-60, 200]"),
        ({**good, "status": "exploded"}, "status = exploded is not one of (ok, warn, fault)"),
        ({**good, "temperature": "170"}, "temperature is null or temperature < 150 is false"),
        ({**good, "device_id": "999"}, "device_id = 999 has no match in devices.device_id"),
        ({**good, "temprature": "1"}, "unknown field `temprature` (did you mean `temperature`?)"),
        ({**good, "read_at": "yesterday"}, "read_at = yesterday is not a timestamp"),
        # valid ISO 8601, but out of range in UTC: once an OverflowError that stopped the consumer
        ({**good, "read_at": "0001-01-01T00:00:00+01:00"}, "read_at = 0001-01-01T00:00:00+01:00 is not a timestamp"),
        ({**good, "status": b"\xff\xfe"}, "field `status` is not valid UTF-8"),
    ]
    sent = [client.xadd("readings", good).decode()]
    for fields, _ in bad:
        sent.append(client.xadd("readings", fields).decode())
    sent.append(client.xadd("readings", {**good, "reading_id": str(rid + 2), "temperature": "nan"}).decode())
    wait_for(lambda: client.xlen("risk_scores") + client.xlen("risk_scores.dead") == len(sent), what="all handled")
    dead = entries(client, "risk_scores.dead")
    assert [f["event_id"] for _, f in dead] == sent[1:-1]
    for (_, f), (fields, reason) in zip(dead, bad, strict=True):
        assert reason in f["reason"], (f["reason"], reason)
        assert f["kind"] == "invalid" and f["serve"] == "risk_stream"
        original = json.loads(f["fields"])
        assert set(original) == {k for k in fields}  # the fields as received
    assert [f["event_id"] for _, f in entries(client, "risk_scores")] == [sent[0], sent[-1]]  # nan -> null, valid
    # a rejected event never reaches the online store
    assert [r["reading_id"] for r in running.consumer.store.rows_for("readings", 3) if r["__seq"] > 2**52] == \
        [rid + 1, rid + 2]
    wait_for(lambda: client.xpending("readings", "mlspec.risk_stream")["pending"] == 0, what="all acknowledged")
    import asyncio

    import httpx

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=create_app(running.consumer))
        async with httpx.AsyncClient(transport=transport, base_url="http://stream") as http:
            return (await http.get("/metrics")).text

    text = asyncio.run(scrape())
    running.stop()
    read = _counter(text, "mlspec_stream_events_read_total")
    scored = _counter(text, "mlspec_stream_events_scored_total")
    dead_n = _counter(text, "mlspec_stream_events_dead_lettered_total")
    released = _counter(text, "mlspec_stream_events_released_total")
    assert (read, scored, dead_n, released) == (len(sent), 2, len(bad), 0)
    assert read == scored + dead_n
    assert _counter(text, "mlspec_requests_total", status="422") == len(bad)
    assert _counter(text, "mlspec_stream_pending") == 0


def test_promote_and_rollback_are_picked_up_without_restart(plant: Path, run_consumer: Any) -> None:
    from mlspec.compiler import compile_paths
    from mlspec.runtime.registry import Registry
    from mlspec.runtime.runner import run_pipeline

    # a second version: other params, trained by a real run (no gate: it becomes the champion)
    path = plant / "plant.mlspec"
    path.write_text(path.read_text().replace("n_estimators = 20", "n_estimators = 35"))
    assert run_pipeline(compile_paths([path]), until="gate:risk").ok
    registry = Registry(plant / ".mlspec" / "registry")
    new, old = registry.champion("risk"), registry.champion_history("risk")[-1]
    assert new != old
    running, client = run_consumer(plant, batch=3)
    wait_for(lambda: running.consumer.holder.current is not None, what="champion loaded")
    events = new_events(plant, 9)
    for e in events[:3]:
        client.xadd("readings", e)
    wait_for(lambda: client.xlen("risk_scores") == 3, what="first events")
    registry.rollback("risk")
    wait_for(lambda: running.consumer.holder.current.version == old, what="rollback seen")
    for e in events[3:6]:
        client.xadd("readings", e)
    wait_for(lambda: client.xlen("risk_scores") == 6, what="events after rollback")
    registry.promote("risk", new)
    wait_for(lambda: running.consumer.holder.current.version == new, what="promote seen")
    for e in events[6:]:
        client.xadd("readings", e)
    wait_for(lambda: client.xlen("risk_scores") == 9, what="events after promote")
    running.stop()
    versions = [f["version"] for _, f in entries(client, "risk_scores")]
    assert versions == [new] * 3 + [old] * 3 + [new] * 3
