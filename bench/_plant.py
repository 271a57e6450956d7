"""The small "plant" project: sensors.mlspec in miniature, for the stream tests and bench/stream.py.

Readings every 10 minutes for a dozen devices over three days; the upper half of the devices warn,
fault and fail. Small on purpose: a real `mlspec run` of it takes seconds. Deterministic (no RNG).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mlspec.compiler import compile_paths
from mlspec.ir.spec import Spec

ENV = "PLANT_REDIS"
START = dt.datetime(2026, 1, 1)
DAYS = 3
DEVICES = 12

PLANT_SPEC = """\
project plant {
  online_store = redis(env("PLANT_REDIS"))
}

entity device { key = device_id }

source readings {
  path      = "data/readings.parquet"
  stream    = "readings"
  key       = reading_id
  timestamp = read_at
  schema {
    reading_id  int not null unique
    device_id   int not null references devices.device_id
    read_at     timestamp not null
    temperature float range [-60, 200]
    status      string in ("ok", "warn", "fault")
  }
}

source devices {
  path = "data/devices.parquet"
  key  = device_id
  schema {
    device_id int not null unique
    family    string not null in ("pump-a", "pump-b")
  }
}

source inspections {
  path      = "data/inspections.parquet"
  timestamp = inspected_at
  schema {
    device_id    int not null references devices.device_id
    inspected_at timestamp not null
    failed       bool not null
  }
}

features recent {
  entity       = device
  from         = readings
  n_1h         = count(reading_id, last 1h)
  temp_mean_1h = mean(temperature, last 1h)
  temp_max_10m = max(temperature, last 10m)
  warns_1h     = count_if(status == "warn", last 1h)
  last_temp    = last(temperature)
  last_status  = last(status, last 1h)
}

features info {
  entity = device
  from   = devices
  family = family
}

label failed {
  entity = device
  from   = inspections
  value  = failed
}

check readings {
  temperature is null or temperature < 150
  on_fail = quarantine
}

model risk {
  task     = binary
  label    = failed
  features = [recent.*, info.*]
  split    = by_time(test_from = "2026-01-03")
  params {
    max_depth    = 3
    n_estimators = 20
    seed         = 1
  }
}

serve risk_api {
  model = risk
  mode  = realtime
}

serve risk_stream {
  model  = risk
  mode   = streaming
  input  = stream("readings")
  output = stream("risk_scores")
}
"""


def _temperature(device: int, i: int) -> float:
    return round(40.0 + 3.0 * device + 10.0 * ((i * 7919 + device * 31) % 13) / 13.0, 2)


def write_plant(root: Path) -> None:
    import polars as pl

    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "plant.mlspec").write_text(PLANT_SPEC)
    pl.DataFrame({"device_id": list(range(1, DEVICES + 1)),
                  "family": ["pump-a" if d % 2 else "pump-b" for d in range(1, DEVICES + 1)]}
                 ).write_parquet(root / "data" / "devices.parquet")
    rows = []
    rid = 1
    for i in range(DAYS * 24 * 6):  # every 10 minutes
        for d in range(1, DEVICES + 1):
            temp = None if (i + d) % 29 == 0 else _temperature(d, i)
            status = ("ok", "ok", "warn", "fault")[(i + d) % 4 if d > DEVICES // 2 else 0]
            rows.append((rid, d, START + dt.timedelta(minutes=10 * i, seconds=d), temp, status))
            rid += 1
    pl.DataFrame(rows, schema={"reading_id": pl.Int64, "device_id": pl.Int64, "read_at": pl.Datetime("us"),
                               "temperature": pl.Float64, "status": pl.String}, orient="row"
                 ).write_parquet(root / "data" / "readings.parquet")
    labels = []
    for h in range(6, DAYS * 24, 3):
        for d in range(1, DEVICES + 1):
            labels.append((d, START + dt.timedelta(hours=h, minutes=5), (d > DEVICES // 2) != (h % 9 == 0)))
    pl.DataFrame(labels, schema={"device_id": pl.Int64, "inspected_at": pl.Datetime("us"), "failed": pl.Boolean},
                 orient="row").write_parquet(root / "data" / "inspections.parquet")


def compile_plant(root: Path) -> Spec:
    compiled = compile_paths([root / "plant.mlspec"])
    assert compiled.ok, compiled.diagnostics
    return compiled.checked[0]


def last_reading(root: Path) -> tuple[int, dt.datetime]:
    import polars as pl

    frame = pl.read_parquet(root / "data" / "readings.parquet")
    return int(frame["reading_id"].max()), frame["read_at"].max()  # type: ignore[arg-type,return-value]


def new_events(root: Path, n: int, devices: range = range(1, 6), step_s: int = 90) -> list[dict[str, str]]:
    """Readings after the file's last one, as stream fields (text), round robin over `devices`."""
    rid, t = last_reading(root)
    out = []
    for i in range(n):
        d = devices[i % len(devices)]
        rid += 1
        t = t + dt.timedelta(seconds=step_s)
        temp = "" if i % 11 == 5 else str(_temperature(d, i + 1000))
        out.append({"reading_id": str(rid), "device_id": str(d), "read_at": t.isoformat() + "Z",
                    "temperature": temp, "status": ("ok", "warn", "ok", "fault")[i % 4]})
    return out
