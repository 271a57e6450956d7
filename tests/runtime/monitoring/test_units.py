"""Durations on the command line and in tables."""

from __future__ import annotations

import argparse

import pytest

from mlspec.runtime.monitoring.commands import parse_duration
from mlspec.runtime.monitoring.store import format_duration


@pytest.mark.parametrize(("text", "ms"), [("50ms", 50), ("90s", 90_000), ("30m", 1_800_000), ("1h", 3_600_000),
                                          ("1d", 86_400_000), ("2w", 1_209_600_000), ("1.5h", 5_400_000)])
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["", "1", "h", "1y", "-1h", "1 h x"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(bad)


@pytest.mark.parametrize(("ms", "text"), [(50, "50ms"), (12.5, "12.5ms"), (1500, "1.5s"), (93_600_000, "26h"),
                                          (3_600_000, "1h"), (30 * 86_400_000, "30d"), (26.1 * 86_400_000, "26.1d"),
                                          (5_400_000, "90m"), (0, "0ms")])
def test_format_duration_writes_spec_durations(ms: float, text: str) -> None:
    assert format_duration(ms) == text
