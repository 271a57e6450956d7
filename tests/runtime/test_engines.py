"""Parity: the Polars engine computes exactly what the DuckDB engine (the reference meaning) computes.

Every feature group of the churn example on demo data, and hand-built specs that exercise every
IR node kind, every scalar function and every aggregate against the edges the IR pins: nulls,
NaN/±inf (normalised to null in the fixture, as validation does for both engines), zero
divisors, negative modulo, empty windows, rows exactly at the window boundary and exactly at
as_of, entities without rows, date vs timestamp, duplicate timestamps.

Integers, strings, booleans, dates and timestamps must be identical. Floats must be identical
or both null, except the columns listed in APPROX, compared to 1e-12 relative: there DuckDB and
Polars add the same floats in a different order (parallel hash aggregation vs pairwise sums).

Places where the DuckDB engine does not implement the documented semantics are pinned by
strict xfails (KNOWN_SQL_BUGS), so fixing sql.py turns them into failures to un-mark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from mlspec.compiler import compile_paths
from mlspec.diagnostics import MlspecError
from mlspec.ir import expr as ir
from mlspec.ir.functions import AGGREGATE_SIGNATURES, FUNCTIONS
from mlspec.ir.spec import ColumnDef, Entity, Feature, FeatureGroup, Project, Source, Spec
from mlspec.ir.types import DType
from mlspec.runtime.demo import write_churn_demo
from mlspec.runtime.engines.online import Evaluator, GroupInput, History
from mlspec.runtime.engines.polars_engine import compute_features
from mlspec.runtime.engines.sql import feature_sql
from mlspec.syntax.span import Span

ROOT = Path(__file__).resolve().parents[2]
CHURN = ROOT / "specs" / "churn.mlspec"
KEY = "user_id"
World = tuple[Spec, dict[str, pl.DataFrame], pl.DataFrame]  # spec, normalised rows per source, spine

# Float features whose value is a sum over many rows (order-dependent rounding), by group.
APPROX: dict[str, set[str]] = {
    "activity": {"spend_90d", "avg_basket_90d"},  # sum(amount) and sum / count over up to ~100 orders
}


# ---- running both engines ----------------------------------------------------------------------


def normalise(frame: pl.DataFrame) -> pl.DataFrame:
    """What validation hands both engines: non-finite floats are null, rows carry __seq."""
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    out = frame.with_columns(pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in floats)
    return out.with_row_index("__seq", offset=1).with_columns(pl.col("__seq").cast(pl.Int64))


def run_duckdb(spec: Spec, group: FeatureGroup, spine: pl.DataFrame, rows: pl.DataFrame,
               upstream: dict[str, pl.DataFrame]) -> pl.DataFrame:
    con = duckdb.connect()
    con.register("spine", spine.to_arrow())
    con.register("rows", rows.to_arrow())
    names = {}
    for name, table in upstream.items():
        con.register(f"up_{name}", table.to_arrow())
        names[name] = f"up_{name}"
    out = pl.from_arrow(con.sql(feature_sql(spec, group, "spine", "rows", names)).to_arrow_table())
    assert isinstance(out, pl.DataFrame)
    return out


def run_online(spec: Spec, group: FeatureGroup, spine: pl.DataFrame, rows: pl.DataFrame,
               upstream: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The online evaluator, one spine row at a time, shaped like the batch engines' output."""
    key = spec.entity(group.entity).key
    by_key: dict[object, list[dict[str, object]]] = {}
    for r in rows.iter_rows(named=True):
        if r[key] is not None:
            by_key.setdefault(r[key], []).append(r)
    evaluator = Evaluator(spec, group)
    ups = {name: {(u[key], u["__as_of"]): u for u in frame.iter_rows(named=True)} for name, frame in upstream.items()}
    out: dict[str, list[object]] = {key: [], "__as_of": [], **{f.name: [] for f in group.features}}
    prepared: dict[object, History] = {}
    for r in spine.sort([key, "__as_of"], nulls_last=True).select(key, "__as_of").iter_rows(named=True):
        upstream_values = {name: by_point[(r[key], r["__as_of"])] for name, by_point in ups.items()}
        history = by_key.get(r[key], []) if r[key] is not None else []
        values = evaluator.evaluate(GroupInput(r["__as_of"], history, upstream=upstream_values))
        # Serving prepares an entity's history once and evaluates it as of many times.
        if r[key] not in prepared:
            prepared[r[key]] = evaluator.history(history)
        assert evaluator.evaluate_history(r["__as_of"], prepared[r[key]], upstream=upstream_values) == values
        if history and r["__as_of"] is not None:  # a live event at as_of, after every stored row
            event = {**history[0], "__seq": 2**62}
            if evaluator.ts:  # the event's time in the column's type, as serving makes it
                stored = history[0][evaluator.ts]
                event[evaluator.ts] = r["__as_of"] if isinstance(stored, dt.datetime) else r["__as_of"].date()
            assert (evaluator.evaluate_history(r["__as_of"], prepared[r[key]], event, upstream=upstream_values)
                    == evaluator.evaluate(GroupInput(r["__as_of"], [*history, event], upstream=upstream_values)))
        out[key].append(r[key])
        out["__as_of"].append(r["__as_of"])
        for f in group.features:
            out[f.name].append(values[f.name])
    return pl.DataFrame(out, schema={key: spine.schema[key], "__as_of": pl.Datetime("us"),
                                     **{f.name: _POLARS_TYPES[f.dtype] for f in group.features}})


_POLARS_TYPES = {DType.INT: pl.Int64, DType.FLOAT: pl.Float64, DType.BOOL: pl.Boolean, DType.STRING: pl.String,
                 DType.DATE: pl.Date, DType.TIMESTAMP: pl.Datetime("us")}


def evaluate(expr: ir.Expr, frame: pl.DataFrame) -> pl.Series:
    """A row-level expression over `frame` on the Polars engine (one entity per row, no timestamp)."""
    types = {pl.Float64(): DType.FLOAT, pl.Int64(): DType.INT, pl.String(): DType.STRING}
    columns = tuple(ColumnDef(c, types[t], t.to_python().__name__) for c, t in frame.schema.items())
    source = Source("src", "parquet", "src.parquet", None, "k", None, None, (ColumnDef("k", DType.INT, "int"), *columns))
    group = FeatureGroup("g", "e", "src", (Feature("g", "out", expr, expr.dtype, "row"),))
    spec = Spec(Project("p"), sources=(source,), entities=(Entity("e", "k"),), groups=(group,))
    rows = frame.with_row_index("k").with_columns(pl.col("k").cast(pl.Int64))
    spine = rows.select("k", pl.lit(dt.datetime(2024, 1, 1)).alias("__as_of"))
    return compute_features(spec, group, spine, rows, {})["out"]


def assert_same(duck: pl.DataFrame, polars: pl.DataFrame, approx: Collection[str] = ()) -> None:
    """Same schema, same rows in the same order, values equal (see the module docstring)."""
    assert polars.schema == duck.schema
    assert polars.height == duck.height
    for name in duck.columns:
        a, b = duck[name], polars[name]
        if name in approx:
            close = (a - b).abs() <= 1e-12 * pl.select(pl.max_horizontal(a.abs(), b.abs())).to_series()
            same = (a.is_null() & b.is_null()) | close.fill_null(False)
        else:
            same = a.eq_missing(b)
        if not same.all():
            rows = pl.DataFrame({KEY: duck[duck.columns[0]], "__as_of": duck["__as_of"], "duckdb": a, "polars": b})
            raise AssertionError(f"column {name!r} differs:\n{rows.filter(~same)}")


def compile_text(tmp: Path, text: str) -> Spec:
    path = tmp / "case.mlspec"
    path.write_text(text, encoding="utf-8")
    compiled = compile_paths([path])
    assert compiled.ok and compiled.spec is not None, compiled.diagnostics
    return compiled.spec


def topo(spec: Spec, only: str | None = None) -> list[FeatureGroup]:
    """Groups with every group they reference before them (`only`: that group and its upstream)."""
    done: list[FeatureGroup] = []

    def visit(g: FeatureGroup) -> None:
        if g in done:
            return
        for f in g.features:
            for n in ir.walk(f.expr):
                if isinstance(n, ir.FeatureRef) and n.group != g.name:
                    visit(spec.group(n.group))
        done.append(g)

    for g in spec.groups if only is None else [spec.group(only)]:
        visit(g)
    return done


# ---- the churn example -------------------------------------------------------------------------


def test_churn_every_group_matches(tmp_path: Path) -> None:
    write_churn_demo(tmp_path, customers=300, seed=1, spec_text=CHURN.read_text(encoding="utf-8"))
    spec = compile_text(tmp_path, CHURN.read_text(encoding="utf-8"))
    sources = {s.name: normalise(pl.read_parquet(tmp_path / s.path)) for s in spec.sources}
    labels = sources["churn_labels"]
    spine = labels.select("customer_id", pl.col("observed_at").alias("__as_of")).unique()
    spine = pl.concat([spine, pl.DataFrame({"customer_id": [10**9], "__as_of": [dt.datetime(2026, 1, 1)]})])  # no rows
    done_duck: dict[str, pl.DataFrame] = {}
    done_polars: dict[str, pl.DataFrame] = {}
    for group in topo(spec):
        duck = run_duckdb(spec, group, spine, sources[group.source], done_duck)
        polars = compute_features(spec, group, spine, sources[group.source], done_polars)
        assert_same(duck, polars, APPROX.get(group.name, ()))
        assert duck.height == spine.height
        done_duck[group.name], done_polars[group.name] = duck, polars


# ---- hand-built cases --------------------------------------------------------------------------

T0 = dt.datetime(2024, 1, 10, 12, 0)
US = dt.timedelta(microseconds=1)
DAY, HOUR = dt.timedelta(days=1), dt.timedelta(hours=1)
INF, NAN = float("inf"), float("nan")

SPEC_HEAD = """
project parity { owner = "tests" }

entity user { key = user_id }

source events {
  path      = "events.parquet"
  key       = user_id
  timestamp = ts
  schema {
    user_id int
    ts      timestamp
    x       float
    y       float
    n       int
    m       int
    s       string
    t       string
    b       bool
    d       date
  }
}

source daily {
  path      = "daily.parquet"
  key       = user_id
  timestamp = day
  schema {
    user_id int
    day     date
    v       float
    note    string
  }
}

source profiles {
  path = "profiles.parquet"
  key  = user_id
  schema {
    user_id int
    tier    string
    score   float
  }
}
"""

# name -> (source, features). One feature group per case, so a failure names its case.
CASES: dict[str, tuple[str, str]] = {
    "aggregates": ("events", """
        cnt_all       = count()
        cnt_x_2d      = count(x, last 2d)
        cnt_s         = count(s)
        cnt_1h        = count(last 1h)
        cnt_if_2d     = count_if(b, last 2d)
        cnt_if_all    = count_if(x > 1.0 or n < 0)
        sum_x_2d      = sum(x, last 2d)
        sum_n         = sum(n)
        sum_n_1h      = sum(n, last 1h)
        sum_x_1h      = sum(x, last 1h)
        sum_expr      = sum(x * 2.0 + n, last 3d)
        mean_x_2d     = mean(x, last 2d)
        mean_n        = mean(n)
        mean_1h       = mean(y, last 1h)
        min_x         = min(x)
        max_x_2d      = max(x, last 2d)
        min_n_1h      = min(n, last 1h)
        min_s         = min(s)
        max_s_2d      = max(s, last 2d)
        min_d         = min(d)
        max_ts        = max(ts)
        min_ts_2d     = min(ts, last 2d)
        first_ts_1h   = first(ts, last 1h)
        last_ts       = last(ts)
        dc_s          = distinct_count(s)
        dc_x_3d       = distinct_count(x, last 3d)
        dc_b          = distinct_count(b, last 90m)
        first_x       = first(x)
        first_s_2d    = first(s, last 2d)
        first_d       = first(d, last 1500ms)
        ratio         = sum_x_2d / cnt_x_2d
        days_since    = days_between(max(ts), as_of)
        hours_since   = hours_between(max(ts, last 2d), as_of)
        any_recent    = count(last 1h) > 0
    """),
    "arithmetic": ("events", """
        add      = x + y
        sub      = n - m
        mul      = n * m
        mul_mix  = x * n
        big_mul  = x * y
        div      = x / y
        div_int  = n / m
        div_zero = n / 0
        mod_int  = n % m
        mod_neg  = -7 % 3
        mod_flt  = x % y
        mod_mix  = x % m
        mod_zero = x % 0.0
        neg      = -x
        neg_int  = -n
        add_null = x + null
        chained  = (x + n) * 2 - m / 4
        same_ref = add * 2.0
    """),
    "logic": ("events", """
        lt        = x < y
        le_mix    = n <= x
        eq_s      = s == t
        ne_b      = b != true
        gt_s      = s > "a"
        ge        = m >= 0
        date_ts   = d < ts
        date_eq   = d == to_date(ts)
        d_lit     = d >= "2024-01-02"
        ts_lit    = ts < "2024-01-09T12:00:00"
        ts_date   = ts >= "2024-01-09"
        and_      = b and x > 0.0
        or_       = b or x > 0.0
        not_      = not b
        not_null  = not (x > y)
        is_null   = x is null
        not_nulls = s is not null
        in_s      = s in ("a", "b", "")
        not_in_n  = n not in (1, 2, 5)
        in_null   = n in (1, null)
        nin_null  = n not in (1, null)
        in_mix    = x in (1, 2.25)
        in_bool   = b in (true)
        null_eq   = x == null
        as_of_gt  = as_of > ts
        case_s    = case when x > 1.0 then "big" when x is null then "none" else "small" end
        case_null = case when b then 1 end
        case_num  = case when b then 1 when n > 0 then 2.5 else m end
        case_time = case when b then d else ts end
        lit_i     = 1
        lit_f     = 2.5
        lit_s     = "x"
        lit_b     = false
        lit_null  = null
    """),
    "functions": ("events", """
        co_f      = coalesce(x, y, 0.0)
        co_s      = coalesce(s, t, "none")
        co_mix    = coalesce(n, x)
        least_f   = least(x, n, y)
        least_i   = least(n, m)
        great_f   = greatest(y, x)
        great_i   = greatest(n, m, 0)
        abs_f     = abs(x)
        abs_i     = abs(n)
        floor_f   = floor(x)
        floor_i   = floor(n)
        ceil_f    = ceil(y)
        ceil_i    = ceil(m)
        ln_f      = ln(x)
        ln_i      = ln(n)
        exp_f     = exp(x)
        exp_i     = exp(n)
        sqrt_f    = sqrt(x)
        sqrt_i    = sqrt(m)
        lower_s   = lower(s)
        upper_s   = upper(s)
        trim_s    = trim(s)
        length_s  = length(s)
        has       = contains(s, t)
        has_lit   = contains(s, "ß")
        starts    = starts_with(s, "a")
        starts_t  = starts_with(s, t)
        ends      = ends_with(s, t)
        days_dt   = days_between(d, ts)
        days_td   = days_between(ts, d)
        days_asof = days_between(ts, as_of)
        hours     = hours_between(ts, as_of)
        hours_dd  = hours_between(d, d)
        year_d    = year(d)
        year_ts   = year(ts)
        month_d   = month(d)
        month_ts  = month(as_of)
        day_d     = day(d)
        day_ts    = day(ts)
        hour_d    = hour(d)
        hour_ts   = hour(ts)
        dow_d     = day_of_week(d)
        dow_ts    = day_of_week(ts)
        date_ts   = to_date(ts)
        date_d    = to_date(d)
        date_asof = to_date(as_of)
    """),
    "daily_aggs": ("daily", """
        cnt_1d    = count(v, last 1d)
        cnt_2d    = count(last 2d)
        sum_v     = sum(v, last 7d)
        first_n   = first(note)
        since     = days_between(max(day), as_of)
        hrs_since = hours_between(max(day), as_of)
    """),
    "daily_rows": ("daily", """
        v2      = v * 2.0
        before  = day < as_of
        dd      = days_between(day, as_of)
        note_up = upper(note)
    """),
    "profile": ("profiles", """
        tier     = tier
        score2   = score * 2.0
        positive = score > 0.0
    """),
    "derived": ("events", """
        mix      = aggregates.sum_x_2d + arithmetic.add
        flag     = aggregates.cnt_all > 0 and logic.lt
        tier_len = length(profile.tier)
        days     = daily_aggs.since - aggregates.days_since
    """),
    "rounding": ("events", """
        r2   = round(x, 2)
        r0   = round(y, 0)
        rneg = round(n, -1)
    """),
    "in_null_string": ("events", """
        in_s_null = s in ("a", null)
    """),
    "mean_overflow": ("events", """
        mean_big = mean(y)  # user 5: 1e200 + 1.5e308 + 1.5e308 overflows
    """),
}

# Cases that fail on the DuckDB side: (exception, why). The Polars engine implements the semantics.
KNOWN_SQL_BUGS: dict[str, tuple[type[BaseException], str]] = {}

# Rows per source. NaN/±inf are normalised to null before either engine sees them.
EVENTS = [
    # user 1: the edges of `last 2d` at as_of T0, a duplicate timestamp, a row exactly at T0, one after
    (1, T0 - 5 * DAY, 1.5, 2.0, 7, 3, "a", "a", True, dt.date(2024, 1, 5)),
    (1, T0 - 2 * DAY, 2.25, -0.5, -7, 3, "b", "b", False, dt.date(2024, 1, 8)),  # on the boundary: outside
    (1, T0 - 2 * DAY + US, NAN, 3.0, -7, -3, "B ", "b", None, dt.date(2024, 1, 8)),  # just inside
    (1, T0 - HOUR, INF, 4.0, 5, 0, " ß Σ ", "ß", True, dt.date(2024, 1, 10)),
    (1, T0 - HOUR, 4.0, -INF, 6, -4, "ΣΑΣ İ", "Σ", False, dt.date(2024, 1, 10)),  # same ts, later: wins
    (1, T0, 0.5, 0.0, -6, 4, "abc", "", True, dt.date(2024, 1, 10)),  # exactly at as_of: inside
    (1, T0 + HOUR, 100.0, 1.0, 1, 1, "late", "l", True, dt.date(2024, 1, 11)),  # after as_of
    # user 2: only rows after the first as_of
    (2, T0 + DAY, -7.5, 2.0, 7, -3, "\t x \n", "x", False, dt.date(2024, 1, 11)),
    (2, T0 + DAY + HOUR, 7.5, -2.0, -7, -3, "  x  ", " ", None, dt.date(2024, 1, 11)),
    # user 3: history older than every window; zero and negative inputs
    (3, dt.datetime(2023, 6, 1, 8, 30), 0.0, -0.0, 0, 0, "", "", False, dt.date(2023, 6, 1)),
    (3, dt.datetime(2023, 6, 2, 23, 59, 59, 999999), -1e-20, 3.0, 5, 2, "e\u0301", "\u0301", True, dt.date(2023, 6, 3)),
    (3, dt.datetime(2023, 6, 2, 12, 0), -0.0, 1.0, -3, 2, "", "e", None, dt.date(2023, 6, 2)),  # -0.0 == 0.0: one value
    # user 5: before 1970, nulls, overflow
    (5, dt.datetime(1969, 12, 31, 23, 30), 1e200, 1e200, -5, 2, None, "x", None, dt.date(1969, 12, 31)),
    (5, dt.datetime(1969, 12, 31, 23, 30), -1e300, 1.5e308, None, None, "Zß", None, True, None),
    (5, dt.datetime(1969, 12, 31, 23, 45), 800.0, 1.5e308, 9, -2, "İİ", "i", False, dt.date(1900, 2, 28)),
    # rows no aggregate or as-of join may pick up
    (None, T0 - HOUR, 9.0, 9.0, 9, 9, "nokey", "n", True, dt.date(2024, 1, 10)),
    (1, None, 9.0, 9.0, 9, 9, "notime", "n", True, dt.date(2024, 1, 10)),
]
DAILY = [
    (1, dt.date(2024, 1, 8), 1.0, "c"),
    (1, dt.date(2024, 1, 9), 2.0, "b"),  # T0 - 1d is 2024-01-09 12:00: midnight is outside `last 1d`
    (1, dt.date(2024, 1, 10), None, "a"),  # midnight of the as_of date: inside
    (1, dt.date(2024, 1, 10), 4.0, None),  # duplicate date, later row
    (2, dt.date(2024, 1, 12), 5.0, "z"),
    (3, dt.date(1969, 12, 31), -1.0, "ö"),
]
PROFILES = [(1, "gold", 1.5), (3, "silver", -2.0), (1, "platinum", NAN), (5, None, 0.0), (None, "x", 1.0)]

SPINE = [
    (1, T0), (1, T0 - HOUR), (1, T0 - 2 * DAY), (1, T0 + 10 * DAY), (1, dt.datetime(2024, 1, 10)),
    (2, T0), (2, T0 + 2 * DAY), (3, T0), (3, dt.datetime(2023, 6, 2, 23, 59, 59, 999999)),
    (4, T0),  # an entity with no rows anywhere
    (5, T0), (5, dt.datetime(1969, 12, 31, 23, 40)),
    (None, T0), (1, None),  # no key / no time: only key- and time-free features have values
]


def _frame(rows: Sequence[tuple[object, ...]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    body = "".join(f"\nfeatures {name} {{\n  entity = user\n  from   = {source}\n{text}}}\n"
                   for name, (source, text) in CASES.items())
    spec = with_last_aggregates(compile_text(tmp_path_factory.mktemp("parity"), SPEC_HEAD + body))
    sources = {
        "events": _frame(EVENTS, {KEY: pl.Int64(), "ts": pl.Datetime("us"), "x": pl.Float64(), "y": pl.Float64(),
                                  "n": pl.Int64(), "m": pl.Int64(), "s": pl.String(), "t": pl.String(),
                                  "b": pl.Boolean(), "d": pl.Date()}),
        "daily": _frame(DAILY, {KEY: pl.Int64(), "day": pl.Date(), "v": pl.Float64(), "note": pl.String()}),
        "profiles": _frame(PROFILES, {KEY: pl.Int64(), "tier": pl.String(), "score": pl.Float64()}),
    }
    spine = _frame(SPINE, {KEY: pl.Int64(), "__as_of": pl.Datetime("us")})
    return spec, {k: normalise(v) for k, v in sources.items()}, spine


def with_last_aggregates(spec: Spec) -> Spec:
    """Add `last(...)` features as IR: `last(` does not parse today (the window keyword `last`
    takes it), but the IR has the aggregate and both engines must agree on it."""
    extra = {
        "aggregates": [("last_x", "x", DType.FLOAT, None), ("last_s_2d", "s", DType.STRING, 2 * 86_400_000),
                       ("last_b", "b", DType.BOOL, None), ("last_ts_1h", "ts", DType.TIMESTAMP, 3_600_000)],
        "daily_aggs": [("last_v", "v", DType.FLOAT, None), ("last_note_1d", "note", DType.STRING, 86_400_000)],
    }
    groups = []
    for g in spec.groups:
        feats = [Feature(g.name, name, ir.Agg("last", ir.Col(col, t), window, t), t, "aggregate")
                 for name, col, t, window in extra.get(g.name, [])]
        groups.append(dataclasses.replace(g, features=(*g.features, *feats)))
    return dataclasses.replace(spec, groups=tuple(groups))


def _compute(world: World, engine: str, case: str) -> pl.DataFrame:
    """The case's group on one engine, its upstream groups computed by the same engine first."""
    spec, sources, spine = world
    out: dict[str, pl.DataFrame] = {}
    for g in topo(spec, only=case):
        rows = sources[g.source]
        if engine == "duckdb":
            out[g.name] = run_duckdb(spec, g, spine, rows, out)
        elif engine == "online":
            out[g.name] = run_online(spec, g, spine, rows, out)
        else:
            out[g.name] = compute_features(spec, g, spine, rows, out)
    return out[case]


def _parity_params() -> Iterator[object]:
    for name in CASES:
        if name in KNOWN_SQL_BUGS:
            raises, why = KNOWN_SQL_BUGS[name]
            yield pytest.param(name, marks=pytest.mark.xfail(raises=raises, strict=True, reason=why))
        else:
            yield name


@pytest.mark.parametrize("case", list(_parity_params()))
def test_case_matches(world: World, case: str) -> None:
    polars = _compute(world, "polars", case)
    duck = _compute(world, "duckdb", case)
    assert_same(duck, polars)
    assert duck.height == world[2].height
    # The third executor, online serving, always has a key and a time: spine rows without one
    # exist only in batch (where they get null aggregates) and are left out of this comparison.
    known = duck[KEY].is_not_null() & duck["__as_of"].is_not_null()
    assert_same(duck.filter(known), _compute(world, "online", case).filter(known))


def random_world(world: World, seed: int) -> World:
    """The parity spec over random rows on a half-hour grid: duplicate timestamps and rows
    exactly on window boundaries are the rule, not the exception. Floats are multiples of
    1/4, so every sum is exact whatever the order and the comparison can stay exact."""
    rng = np.random.default_rng(seed)
    n, keys = 3000, 40
    grid = [T0 - dt.timedelta(minutes=30 * int(k)) for k in rng.integers(-20, 400, n)]

    def maybe(values: np.ndarray, null_share: float) -> list[object]:
        return [None if rng.random() < null_share else v.item() for v in values]

    events = pl.DataFrame({
        KEY: maybe(rng.integers(1, keys, n), 0.01), "ts": maybe(np.array(grid, dtype="datetime64[us]"), 0.01),
        "x": maybe(rng.integers(-40, 40, n) / 4, 0.2), "y": maybe(rng.integers(-8, 8, n) / 4, 0.2),
        "n": maybe(rng.integers(-9, 9, n), 0.2), "m": maybe(rng.integers(-3, 3, n), 0.2),
        "s": maybe(rng.choice(["a", "b", "B ", "ß", ""], n), 0.2), "t": maybe(rng.choice(["a", "b", ""], n), 0.2),
        "b": maybe(rng.random(n) < 0.5, 0.2), "d": maybe(np.array(grid, dtype="datetime64[D]"), 0.2),
    }, schema=world[1]["events"].drop("__seq").schema)
    days = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 1, 12), eager=True)
    daily = pl.DataFrame({KEY: rng.integers(1, keys, 600), "day": rng.choice(days.to_numpy(), 600),
                          "v": maybe(rng.integers(-8, 8, 600) / 2, 0.2), "note": maybe(rng.choice(["p", "q"], 600), 0.2)},
                         schema=world[1]["daily"].drop("__seq").schema)
    times = [T0 - dt.timedelta(minutes=30 * int(k)) for k in rng.integers(-30, 420, 400)]
    spine = pl.DataFrame({KEY: rng.integers(1, keys + 5, 400), "__as_of": times},
                         schema=world[2].schema).unique()
    sources = {"events": normalise(events), "daily": normalise(daily), "profiles": world[1]["profiles"]}
    return world[0], sources, spine


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", ["aggregates", "daily_aggs", "logic", "arithmetic"])
def test_random_rows_match(world: World, case: str, seed: int) -> None:
    rand = random_world(world, seed)
    assert_same(_compute(rand, "duckdb", case), _compute(rand, "polars", case))


@pytest.mark.parametrize("empty", ["spine", "rows", "both"])
@pytest.mark.parametrize("case", ["aggregates", "daily_aggs", "logic", "profile", "derived"])
def test_empty_inputs_match(world: World, case: str, empty: str) -> None:
    spec, sources, spine = world
    if empty in ("rows", "both"):
        sources = {name: rows.clear() for name, rows in sources.items()}
    if empty in ("spine", "both"):
        spine = spine.clear()
    empty_world = (spec, sources, spine)
    assert_same(_compute(empty_world, "duckdb", case), _compute(empty_world, "polars", case))


def test_every_kind_function_and_aggregate_is_in_the_parity_suite(world: World) -> None:
    """A new node kind, function or aggregate cannot be added without a parity case.

    Only cases that really run against DuckDB count; a function whose only case is a known
    SQL bug is listed there with the reason.
    """
    spec = world[0]
    kinds, functions, aggregates = set(), set(), set()
    for g in spec.groups:
        if g.name in KNOWN_SQL_BUGS:
            continue
        for f in g.features:
            for n in ir.walk(f.expr):
                kinds.add(type(n))
                if isinstance(n, ir.Func):
                    functions.add(n.name)
                if isinstance(n, ir.Agg):
                    aggregates.add(n.fn)
    assert set(ir.EXPR_KINDS) - kinds == set()
    assert set(FUNCTIONS) - functions == set()
    assert set(AGGREGATE_SIGNATURES) - aggregates == set()
    assert set(ir.AGGREGATES) == set(AGGREGATE_SIGNATURES)


# ---- round: DuckDB's kernel, since the SQL engine cannot call it today --------------------------


def test_round_matches_duckdbs_round_double_integer() -> None:
    """round(x, n) = DuckDB round(DOUBLE, INTEGER), bit for bit, half away from zero."""
    rng = np.random.default_rng(7)
    x = np.concatenate([
        rng.normal(0, 1e3, 3000), np.round(rng.normal(0, 100, 2000)) + 0.5, np.round(rng.normal(0, 1e4, 1000)) / 1000 + 5e-4,
        [0.49999999999999994, -0.5, 2.5, -2.5, 2.675, 1.005, 1e300, -1e300, 5e-324, 0.0, -0.0],
    ])
    for digits in (*range(-22, 23), 300, 400, -300, -400):  # beyond 22, 10^n is not a double: unpinned
        expr = ir.Func("round", (ir.Col("x", DType.FLOAT), ir.Lit(digits, DType.INT)), DType.FLOAT)
        got = evaluate(expr, pl.DataFrame({"x": x}))
        con = duckdb.connect()
        con.register("t", pl.DataFrame({"x": x}).to_arrow())
        want = con.sql(f"SELECT round(x, CAST({digits} AS INTEGER)) AS r FROM t").pl()["r"]
        assert got.eq_missing(want).all(), (digits, pl.DataFrame({"x": x, "duckdb": want, "polars": got}).filter(
            got.ne_missing(want)))


def test_round_examples() -> None:
    cases = [(2.5, 0, 3.0), (-2.5, 0, -3.0), (0.49999999999999994, 0, 0.0), (1234.5, -1, 1230.0), (1250.0, -2, 1300.0),
             (-1250.0, -2, -1300.0), (2.675, 2, 2.67), (1e300, 10, 1e300), (1e300, -400, 0.0), (None, 1, None)]
    for value, digits, want in cases:
        expr = ir.Func("round", (ir.Col("x", DType.FLOAT), ir.Lit(digits, DType.INT)), DType.FLOAT)
        got = evaluate(expr, pl.DataFrame({"x": [value]}, schema={"x": pl.Float64()}))
        assert got.to_list() == [want], (value, digits)


def test_round_by_a_column_of_digits() -> None:
    frame = pl.DataFrame({"x": [2.5, 1234.5, 2.675, 7.0], "n": [0, -1, 2, None]})
    expr = ir.Func("round", (ir.Col("x", DType.FLOAT), ir.Col("n", DType.INT)), DType.FLOAT)
    assert evaluate(expr, frame).to_list() == [3.0, 1230.0, 2.67, None]


# ---- exhaustive and adversarial checks of single translations ----------------------------------


def test_lower_upper_length_match_duckdb_for_every_code_point() -> None:
    """DuckDB maps case code point by code point (no final sigma, no expansions like ß -> SS)."""
    points = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    text = "".join(chr(c) for c in points)
    chunks = [text[i:i + 64] + " Σ" for i in range(0, len(text), 64)]  # a word-final sigma in every value
    frame = pl.DataFrame({"s": chunks})
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    want = con.sql("SELECT lower(s) AS lo, upper(s) AS up, length(s) AS n FROM t").pl()
    for fn, col in (("lower", "lo"), ("upper", "up"), ("length", "n")):
        dtype = DType.INT if fn == "length" else DType.STRING
        got = evaluate(ir.Func(fn, (ir.Col("s", DType.STRING),), dtype), frame)
        assert got.eq_missing(want[col]).all(), fn


def test_float_modulo_and_division_are_exact() -> None:
    """Polars' float % is floored and inexact, and x / literal multiplies by the reciprocal."""
    rng = np.random.default_rng(3)
    n = 5000
    x = np.concatenate([rng.normal(0, 1e6, n), np.exp(rng.uniform(-700, 700, n))])
    y = np.concatenate([rng.normal(0, 1e3, n), rng.normal(0, 1e-3, n)])
    frame = pl.DataFrame({"x": x, "y": y})
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    want = con.sql("SELECT x % y AS m, x / y AS q, x / 100 AS h, x % 7.5 AS l FROM t").pl()
    for col, expr in (
        ("m", ir.BinOp("%", ir.Col("x", DType.FLOAT), ir.Col("y", DType.FLOAT), DType.FLOAT)),
        ("q", ir.BinOp("/", ir.Col("x", DType.FLOAT), ir.Col("y", DType.FLOAT), DType.FLOAT)),
        ("h", ir.BinOp("/", ir.Col("x", DType.FLOAT), ir.Lit(100, DType.INT), DType.FLOAT)),
        ("l", ir.BinOp("%", ir.Col("x", DType.FLOAT), ir.Lit(7.5, DType.FLOAT), DType.FLOAT)),
    ):
        got = evaluate(expr, frame)
        assert got.eq_missing(want[col]).all(), col


def test_integer_modulo_is_truncated() -> None:
    frame = pl.DataFrame({"x": [-7, 7, -7, 7, 0, 5, -9223372036854775807, None], "y": [3, -3, -3, 3, 5, 0, 2, 1]})
    expr = ir.BinOp("%", ir.Col("x", DType.INT), ir.Col("y", DType.INT), DType.INT)
    assert evaluate(expr, frame).to_list() == [-1, 1, -1, 1, 0, None, -1, None]


# ---- known DuckDB-engine bugs outside the case table (strict: fixing sql.py flips them) -------


def _events_only(world: World, text: str, tmp: Path) -> tuple[Spec, FeatureGroup, pl.DataFrame]:
    spec = compile_text(tmp, SPEC_HEAD + "features g {\n entity = user\n from = events\n" + text + "\n}\n")
    return spec, spec.group("g"), world[1]["events"]


def test_duplicate_spine_rows_do_not_multiply_aggregates(world: World, tmp_path: Path) -> None:
    spec, group, rows = _events_only(world, "c = count()\ns = sum(n)", tmp_path)
    spine = _frame([(1, T0), (1, T0)], {KEY: pl.Int64(), "__as_of": pl.Datetime("us")})
    polars = compute_features(spec, group, spine, rows, {})
    assert polars["c"].to_list() == [6, 6]  # six rows of user 1 with ts <= T0, whatever the spine
    assert_same(run_duckdb(spec, group, spine, rows, {}), polars)


def test_days_between_is_exact_over_centuries(world: World, tmp_path: Path) -> None:
    spec, group, rows = _events_only(world, "d = days_between(max(ts), as_of)", tmp_path)
    as_of = dt.datetime(2324, 1, 10, 12, 59, 59, 999999)  # 1 us short of whole days after T0 + 1h, the last event
    spine = _frame([(1, as_of)], {KEY: pl.Int64(), "__as_of": pl.Datetime("us")})
    polars = compute_features(spec, group, spine, rows, {})
    elapsed_us = (as_of - (T0 + HOUR)) // US
    assert polars["d"].to_list() == [elapsed_us // 86_400_000_000]
    assert_same(run_duckdb(spec, group, spine, rows, {}), polars)


# ---- refusals ------------------------------------------------------------------------------------


def test_unknown_nodes_and_functions_are_refused_with_their_span(world: World) -> None:
    spec, sources, spine = world
    span = Span("case.mlspec", 3, 5, 3, 12)
    group = spec.group("profile")

    class Mystery:
        dtype = DType.INT

        def __init__(self) -> None:
            self.span = span

    for bad in (ir.Func("nope", (), DType.INT, span=span), Mystery(),
                ir.Agg("median", ir.Col("score", DType.FLOAT), None, DType.FLOAT, span=span)):
        broken = dataclasses.replace(group, features=(Feature(group.name, "bad", bad, DType.INT, "row"),))  # type: ignore[arg-type]
        with pytest.raises(MlspecError) as err:
            compute_features(spec, broken, spine, sources["profiles"], {})
        assert err.value.diagnostics[0].span == span
        assert "Polars engine cannot compile" in err.value.diagnostics[0].message


def test_missing_upstream_is_an_error(world: World) -> None:
    spec, sources, spine = world
    with pytest.raises(MlspecError, match="upstream group"):
        compute_features(spec, spec.group("derived"), spine, sources["events"], {})


def test_output_shape_and_types(world: World) -> None:
    spec, sources, spine = world
    group = spec.group("logic")
    out = compute_features(spec, group, spine.reverse(), sources["events"].drop("__seq"), {})  # __seq optional
    assert out.columns == [KEY, "__as_of", *[f.name for f in group.features]]
    assert out.height == len(SPINE)
    assert out[KEY].is_sorted(nulls_last=True)
    assert out.schema["lit_null"] == pl.Float64 and out.schema["case_time"] == pl.Datetime("us")
    assert math.isclose(out.filter(pl.col(KEY) == 4)["lit_f"].item(), 2.5)
