"""The sensors demo data must match specs/sensors.mlspec, be reproducible, and train a champion.

`mlspec demo sensors DIR` then `mlspec run sensors.mlspec` is the README's streaming quick start:
the files must satisfy every declaration and check of the spec (freshness included, so the data
ends "now"), and the planted precursor of failures must pass the spec's gate.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import polars as pl
import pytest

from mlspec.cli import main
from mlspec.compiler import compile_paths
from mlspec.runtime.demo import SENSOR_BAD_ROW_KINDS, SENSOR_TEST_FROM, SensorsDemoSummary, write_sensors_demo
from mlspec.runtime.runner import run_pipeline
from tests.runtime.test_demo import POLARS_TYPES, spec_schemas

SPEC_TEXT = (Path(__file__).resolve().parents[2] / "specs" / "sensors.mlspec").read_text(encoding="utf-8")
SCHEMAS = spec_schemas(SPEC_TEXT)
TYPES: dict[str, pl.DataType] = {**POLARS_TYPES, "category": pl.String()}
DEVICES = 20
SEED = 4
END = datetime(2026, 6, 1, 12, 30)
FILES = ("readings_path", "devices_path", "inspections_path")
SOURCES = [("readings", "readings_path"), ("devices", "devices_path"), ("inspections", "inspections_path")]
STATUSES = ["ok", "warn", "fault"]


def write(root: Path, **kwargs: object) -> SensorsDemoSummary:
    args: dict[str, object] = {"devices": DEVICES, "seed": SEED, "end": END, "spec_text": SPEC_TEXT, **kwargs}
    return write_sensors_demo(root, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> SensorsDemoSummary:
    return write(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> SensorsDemoSummary:
    return write(tmp_path_factory.mktemp("dirty"), bad_rows=0.02)


def test_shipped_example_is_the_spec() -> None:
    shipped = resources.files("mlspec").joinpath("examples/sensors.mlspec").read_text(encoding="utf-8")
    assert shipped == SPEC_TEXT


def test_layout_and_spec_copy(clean: SensorsDemoSummary) -> None:
    root = clean.spec_path.parent
    assert clean.spec_path.name == "sensors.mlspec"
    assert clean.spec_path.read_text(encoding="utf-8") == SPEC_TEXT
    paths = dict(re.findall(r'source\s+(\w+)\s*\{\s*path\s*=\s*"([^"]+)"', SPEC_TEXT))
    for source, attr in SOURCES:
        assert getattr(clean, attr) == root / paths[source]


def test_same_seed_and_end_give_byte_identical_files(clean: SensorsDemoSummary, dirty: SensorsDemoSummary,
                                                     tmp_path: Path) -> None:
    again = write(tmp_path / "again")
    dirty_again = write(tmp_path / "dirty", bad_rows=0.02)
    for attr in FILES:
        assert getattr(again, attr).read_bytes() == getattr(clean, attr).read_bytes(), attr
        assert getattr(dirty_again, attr).read_bytes() == getattr(dirty, attr).read_bytes(), attr
    assert dirty_again.bad_rows == dirty.bad_rows


def test_other_seed_gives_other_files(clean: SensorsDemoSummary, tmp_path: Path) -> None:
    other = write(tmp_path / "other", seed=SEED + 1)
    for attr in FILES:
        assert getattr(other, attr).read_bytes() != getattr(clean, attr).read_bytes(), attr


@pytest.mark.parametrize(("source", "attr"), SOURCES)
def test_schema_matches_spec_exactly(clean: SensorsDemoSummary, source: str, attr: str) -> None:
    schema = pl.read_parquet_schema(getattr(clean, attr))
    assert list(schema.items()) == [(c.name, TYPES[c.type]) for c in SCHEMAS[source]]


@pytest.mark.parametrize(("source", "attr"), SOURCES)
def test_clean_data_satisfies_every_declaration(clean: SensorsDemoSummary, source: str, attr: str) -> None:
    frame = pl.read_parquet(getattr(clean, attr))
    for column in SCHEMAS[source]:
        values = frame[column.name]
        if column.not_null:
            assert values.null_count() == 0, column.name
        if column.unique:
            assert values.n_unique() == frame.height, column.name
        present = values.drop_nulls()
        if column.allowed is not None:
            assert set(present.unique().to_list()) <= set(column.allowed), column.name
        if column.range is not None:
            assert present.min() >= column.range[0] and present.max() <= column.range[1], column.name  # type: ignore[operator]
    if source != "devices":
        ids = pl.read_parquet(clean.devices_path)["device_id"]
        assert frame["device_id"].is_in(ids.implode()).all()  # references devices.device_id
    if source == "readings":  # check readings { ... }
        assert (frame["vibration"] >= 0).all()
        assert frame["temperature"].null_count() / frame.height < 0.05
        assert END - timedelta(minutes=15) < frame["read_at"].max() <= END  # type: ignore[operator]


def test_shape_of_the_story(clean: SensorsDemoSummary) -> None:
    readings = pl.read_parquet(clean.readings_path)
    devices = pl.read_parquet(clean.devices_path)
    inspections = pl.read_parquet(clean.inspections_path)
    assert readings.height == clean.readings_rows and devices.height == clean.devices_rows == DEVICES
    assert inspections.height == clean.inspections_rows
    assert inspections["failed_24h"].sum() == clean.inspections_failed
    assert 0.1 < clean.inspections_failed / clean.inspections_rows < 0.35
    assert readings["read_at"].is_sorted() and readings["reading_id"].is_sorted()
    # Both sides of the spec's time split hold labels, and devices exist before their first reading.
    before = (inspections["inspected_at"] < SENSOR_TEST_FROM).sum()
    assert 0 < before < inspections.height
    assert devices["installed_at"].max() < readings["read_at"].min()  # type: ignore[operator]
    # Every inspection has the hour before it covered by readings of its device.
    joined = inspections.join(readings, on="device_id").filter(
        (pl.col("read_at") < pl.col("inspected_at"))
        & (pl.col("read_at") >= pl.col("inspected_at") - pl.duration(hours=1))
    )
    per = joined.group_by("device_id", "inspected_at").len()
    assert per.height == inspections.height and per["len"].min() >= 15  # type: ignore[operator]
    # Failures are preceded by heat: the hour before failing inspections runs hotter than before healthy ones.
    hot = joined.group_by("failed_24h").agg(pl.col("temperature").mean()).sort("failed_24h")["temperature"]
    assert hot[1] > hot[0] + 2


def test_bad_rows_are_exact_and_reconcile(clean: SensorsDemoSummary, dirty: SensorsDemoSummary) -> None:
    counts = dirty.bad_rows
    assert dirty.readings_rows == clean.readings_rows
    assert counts.total == math.floor(0.02 * dirty.readings_rows + 0.5)
    assert counts.violating == counts.total - counts.null_temperature
    assert min(counts.as_dict().values()) > 0 and list(counts.as_dict()) == list(SENSOR_BAD_ROW_KINDS)

    readings = pl.read_parquet(dirty.readings_path)
    clean_readings = pl.read_parquet(clean.readings_path)
    temp, status = pl.col("temperature"), pl.col("status")
    bad_status = status.is_not_null() & ~status.is_in(STATUSES)
    newly_null = temp.is_null() & pl.Series(clean_readings["temperature"].is_not_null())
    found = readings.select(
        temperature_above_range=(temp > 200).sum(),
        negative_vibration=(pl.col("vibration") < 0).sum(),
        status_outside_set=bad_status.sum(),
        null_temperature=newly_null.sum(),
    ).row(0, named=True)
    assert found == counts.as_dict()
    keys = ["reading_id", "device_id", "read_at"]
    assert readings.select(keys).equals(clean_readings.select(keys))
    changed = (readings["temperature"].ne_missing(clean_readings["temperature"])
               | readings["vibration"].ne_missing(clean_readings["vibration"])
               | readings["status"].ne_missing(clean_readings["status"]))
    assert changed.sum() == counts.total  # one defect per row
    for attr in ("devices_path", "inspections_path"):
        assert getattr(dirty, attr).read_bytes() == getattr(clean, attr).read_bytes()


def test_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad_rows"):
        write(tmp_path, bad_rows=1.5)
    with pytest.raises(ValueError, match="devices"):
        write(tmp_path, devices=0)
    with pytest.raises(ValueError, match="end must be"):
        write(tmp_path, end=SENSOR_TEST_FROM + timedelta(days=3))


def test_demo_then_run_passes_the_gate_and_quarantines_the_bad_rows(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The README's quick start on a small project: data ending now, every check passes, a champion."""
    root = tmp_path / "demo"
    assert main(["demo", "sensors", str(root), "--devices", "30", "--seed", "1", "--bad-rows", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "mlspec run sensors.mlspec" in out
    planted = {k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", out)}
    assert set(planted) == set(SENSOR_BAD_ROW_KINDS)

    summary = run_pipeline(compile_paths([root / "sensors.mlspec"]))
    assert summary.ok, (summary.error, summary.hint)
    nodes = {n.node: n for n in summary.nodes}
    source = nodes["source:readings"].detail
    violating = planted["temperature_above_range"] + planted["negative_vibration"] + planted["status_outside_set"]
    assert source["rows_quarantined"] + nodes["check:readings"].detail["rows_quarantined"] == violating
    assert source["rows_in"] == source["rows_passed"] + source["rows_quarantined"]
    assert all(r["passed"] for r in nodes["check:readings"].detail["rules"])  # freshness() < 15m included
    gate = nodes["gate:failure_risk"].detail
    assert gate["passed"] and gate["promoted"]
    metrics = nodes["model:failure_risk"].detail["metrics"]
    assert metrics["auc"] >= 0.8 and metrics["precision"] >= 0.5
    champion = json.loads((root / ".mlspec" / "registry" / "failure_risk" / "champion.json").read_text())
    assert champion["current"] == gate["version"]
