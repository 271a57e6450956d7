"""Request features belong to one event: two events of an entity at the same time keep their own fields.

In training, a request group is read from the labelled event's own row (its __seq), not from the
entity's latest row as of the label time; serving reads the request. Both engines and the online
path must agree per event, including a group that reads request features from another source.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlspec.compiler import compile_paths
from mlspec.runtime.online.features import FeatureService
from mlspec.runtime.online.materialize import materialize
from mlspec.runtime.online.store import SqliteStore
from mlspec.runtime.online.verify import values_equal
from mlspec.runtime.runner import run_pipeline
from mlspec.runtime.warehouse import Warehouse, table_for

from .conftest import TINY_SPEC, compile_spec, write_events, write_users

NOON = dt.datetime(2026, 1, 31, 12, 0)
# (user_id, seen_at, amount, bad): user 2 has two events at one time with different amounts,
# user 3 two events at different times, user 4 an event without an amount
OUTCOMES = [
    (1, dt.datetime(2026, 1, 31, 9, 0), 3.0, True),
    (2, NOON, 5.0, True),
    (2, NOON, 50.0, False),
    (3, dt.datetime(2026, 1, 31, 8, 0), 7.0, False),
    (3, NOON, 70.0, True),
    (4, NOON, None, False),
]


def request_spec(root: Path) -> Path:
    text = (TINY_SPEC
            .replace("    bad     bool not null\n", "    bad     bool not null\n    amount  float\n")
            .replace("label bad {", """features ev {
  entity  = user
  from    = outcomes
  request = true
  amt     = amount
  big     = amount > 10.0
  late    = hour(seen_at) >= 12
  n_plus  = recent.n_7d + 1
}

features mix {
  entity   = user
  from     = users
  tier_amt = coalesce(ev.amt, 0.0) + 1.0
}

label bad {""")
            .replace("features = [recent.*, tier.*]", "features = [recent.*, tier.*, ev.*, mix.*]"))
    path = root / "tiny.mlspec"
    path.write_text(text)
    pl.DataFrame(OUTCOMES, schema={"user_id": pl.Int64, "seen_at": pl.Datetime("us"), "amount": pl.Float64,
                                   "bad": pl.Boolean}, orient="row").write_parquet(root / "data" / "outcomes.parquet")
    return path


def dataset(root: Path, engine: str) -> pl.DataFrame:
    summary = run_pipeline(compile_paths([root / "tiny.mlspec"]), engine=engine, until="dataset:m")
    assert summary.ok, summary.error
    with Warehouse.open(root, read_only=True) as wh:
        frame: pl.DataFrame = wh.conn.sql(f'SELECT * FROM "{table_for("dataset:m")}"').pl()
    return frame


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict[str, pl.DataFrame]]:
    """The tiny project (events every 12 hours, user tiers) with the outcomes above, trained by both engines."""
    root = tmp_path / "tiny"
    (root / "data").mkdir(parents=True)
    write_events(root, 1, range(0, 30), range(1, 5))
    write_users(root, {1: "gold", 2: "silver", 3: None, 4: "gold"})
    request_spec(root)
    return root, {engine: dataset(root, engine) for engine in ("duckdb", "polars")}


def test_each_labelled_event_gets_its_own_request_features(built: tuple[Path, dict[str, pl.DataFrame]]) -> None:
    _, frames = built
    for engine, frame in frames.items():
        assert frame.height == len(OUTCOMES), engine
        # rows are ordered by (key, as_of, event): the label rows in source order
        assert frame["user_id"].to_list() == [r[0] for r in OUTCOMES], engine
        assert frame["__label"].to_list() == [r[3] for r in OUTCOMES], engine
        assert frame["ev.amt"].to_list() == [r[2] for r in OUTCOMES], engine
        assert frame["ev.big"].to_list() == [None if r[2] is None else r[2] > 10.0 for r in OUTCOMES], engine
        assert frame["mix.tier_amt"].to_list() == [(r[2] or 0.0) + 1.0 for r in OUTCOMES], engine
        assert frame["ev.late"].to_list() == [r[1].hour >= 12 for r in OUTCOMES], engine
        assert (frame["ev.n_plus"] == frame["recent.n_7d"] + 1).all(), engine
    assert frames["duckdb"].equals(frames["polars"])


def test_training_equals_serving_for_every_event(built: tuple[Path, dict[str, pl.DataFrame]],
                                                  tmp_path: Path) -> None:
    root, frames = built
    spec = compile_spec(root / "tiny.mlspec")
    model = spec.model("m")
    store = SqliteStore(tmp_path / "online.sqlite")
    try:
        with Warehouse.open(root, read_only=True) as wh:
            materialize(wh, spec, store)
        service = FeatureService(spec)
        for row, (user, seen_at, amount, bad) in zip(frames["duckdb"].to_dicts(), OUTCOMES, strict=True):
            request: dict[str, Any] = {"user_id": user, "seen_at": seen_at, "amount": amount, "bad": None}
            online = service.features(model, store, user, seen_at, request).values
            for q in model.features:
                assert values_equal(row[q], online[q], spec.feature(q).dtype), (user, seen_at, q, row[q], online[q])
            assert online["ev.amt"] == amount and row["__label"] == bad
    finally:
        store.close()
