"""The `monitor`, `report` and `retrain` subcommands: argument parsing and rendering only.

`mlspec.cli` registers them with `add_parsers(sub)`; the work is in evaluate.py, report.py and
retrain.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mlspec.runtime.errors import RunError

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that import light
    from rich.console import Console

    from mlspec.compiler import Compiled
    from mlspec.runtime.monitoring.evaluate import MonitorRun
    from mlspec.runtime.monitoring.retrain import RetrainOutcome

__all__ = ["add_parsers", "cmd_monitor", "cmd_report", "cmd_retrain", "parse_duration"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_duration(text: str) -> int:
    """`90s`, `1h`, `1d`, `2w` -> milliseconds (argparse type)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h, 1d or 2w")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


def _bands(text: str) -> tuple[float, ...]:
    try:
        cuts = tuple(sorted(float(x) for x in text.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of score cut points") from None
    if not cuts:
        raise argparse.ArgumentTypeError("give at least one cut point, e.g. 0.2,0.5")
    return cuts


def add_parsers(sub: Any) -> None:
    """Register `monitor`, `report` and `retrain` on the CLI's subparsers object."""
    p = sub.add_parser("monitor", help="evaluate monitor rules (drift, outcomes, latency, data quality); "
                                       "exit 1 when an alert fires")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    _common(p)
    p.add_argument("--json", action="store_true", help="print every measurement as JSON")
    p.add_argument("--act", action="store_true", help="run `-> retrain` actions and due `retrain every` schedules")
    p.add_argument("--dry-run", action="store_true",
                   help="measure and print only: record nothing, send no alert, run no action")
    p.add_argument("--no-alerts", action="store_true", help="record measurements but send no alert (backfills)")
    p.add_argument("--all", action="store_true", help="print info rows too (every statistic, not just rules)")
    p.add_argument("--min-new-labels", type=int, help="retrain guardrail for --act (default 100)")
    p.add_argument("--min-interval", type=parse_duration, help="retrain guardrail for --act (default 1d)")
    p.add_argument("--pushgateway", metavar="URL",
                   help="push the measurements as the gauge mlspec_monitor_value{project,monitor,metric,subject} "
                        "(base units) to this Prometheus Pushgateway, job mlspec_<project>; an empty URL warns")
    p.add_argument("--metrics-file", metavar="PATH",
                   help="write the same gauge to PATH for node-exporter's textfile collector (name it *.prom)")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("report", help="write a self-contained HTML monitoring dashboard")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    _common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("retrain", help="retrain on fresh data; promote only through the gate and guardrails")
    p.add_argument("paths", nargs="*", help="spec files or directories (default: the current directory)")
    p.add_argument("--model", help="which model, when the spec has several")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb")
    p.add_argument("--min-new-labels", type=int, help="label rows newer than the champion's data needed (default 100)")
    p.add_argument("--min-interval", type=parse_duration, help="at most one retrain per this interval (default 1d)")
    p.add_argument("--force", action="store_true",
                   help="skip the new-labels and frequency guardrails (never the gate or the data checks)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fail-on-rejected", action="store_true",
                   help="exit 3 when the gate rejects the retrained candidate (the champion stays), as `mlspec run "
                        "--fail-on-rejected` does: what orchestrators use to show a rejected retrain as a failed task")
    p.set_defaults(func=cmd_retrain)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=parse_duration, default=86_400_000,
                   help="window of log-based metrics (latency, errors, quarantine) and of --current predictions "
                        "(default 1d)")
    p.add_argument("--current", metavar="PATH|TABLE|predictions",
                   help="current data: a parquet/csv/jsonl file or warehouse table of feature rows, or `predictions` "
                        "(the realtime prediction log); default: the latest label cohort")
    p.add_argument("--population", choices=("cohort", "all"), default="cohort",
                   help="default current data: the latest label cohort (like training rows), or every entity")
    p.add_argument("--as-of", help="evaluate as of this time (default: now, UTC)")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb")
    p.add_argument("--bands", type=_bands, help="risk band cut points on the score, e.g. 0.2,0.5 "
                                                "(default: the reference median and 90th percentile)")
    p.add_argument("--metrics-url", help="a running `mlspec serve` /metrics URL for latency and error rate")
    p.add_argument("--no-refresh", action="store_true", help="do not extract new source rows first")


T = TypeVar("T")


def _locked(work: Callable[[], T]) -> T:
    """Run `work`; a warehouse held by another process becomes a RunError with a hint, not a traceback."""
    import duckdb

    try:
        return work()
    except duckdb.IOException as e:
        raise RunError("warehouse", f"cannot open the warehouse: {e}",
                       "another mlspec command is using it; try again when it has finished") from None


def _as_of(text: str | None) -> dt.datetime | None:
    from mlspec.cli import _parse_as_of

    return _parse_as_of(text)


def _options(args: argparse.Namespace, **extra: Any) -> Any:
    from mlspec.runtime.monitoring.evaluate import Options

    return Options(window_ms=args.window, as_of=_as_of(args.as_of), current=args.current,
                   population=args.population, engine=args.engine, refresh=not args.no_refresh, bands=args.bands,
                   metrics_url=args.metrics_url, **extra)


def _compiled(paths: list[str]) -> Compiled:
    from mlspec.cli import _compiled_or_exit, _spec_paths

    return _compiled_or_exit(_spec_paths(paths))


def cmd_monitor(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlspec.runtime.monitoring.evaluate import evaluate

    compiled = _compiled(args.paths)
    dry = args.dry_run
    options = _options(args, record=not dry, notify=not (dry or args.no_alerts), act=args.act and not dry,
                       min_new_labels=args.min_new_labels, min_interval_ms=args.min_interval)
    run = _locked(lambda: evaluate(compiled, options))
    if args.json:
        print(json.dumps(run.to_data(), indent=2, default=str))
    else:
        print_run(run, Console(), show_all=args.all)
    for w in run.warnings:
        print(f"warning: {w}", file=sys.stderr)
    exported = _export(run, args)
    return 0 if run.ok and exported else 1


def _export(run: MonitorRun, args: argparse.Namespace) -> bool:
    """--pushgateway and --metrics-file; False (after saying why) when an export failed."""
    from mlspec.runtime.monitoring.promtext import monitor_samples, push_monitor, write_monitor_textfile

    wanted = args.pushgateway is not None or args.metrics_file is not None
    if wanted and args.dry_run:
        print("note: --dry-run: nothing pushed or written", file=sys.stderr)
        return True
    ok = True
    if args.pushgateway is not None:
        url = args.pushgateway.strip()
        if not url:  # e.g. $(MLSPEC_PUSHGATEWAY_URL) of a CronJob whose ConfigMap key is still empty
            print("warning: --pushgateway is empty: no measurement pushed, so Prometheus alert rules on "
                  "mlspec_monitor_value see no data", file=sys.stderr)
        else:
            try:
                job = push_monitor(run, url)
                print(f"pushed {len(monitor_samples(run))} series to {url} (job {job})", file=sys.stderr)
            except (OSError, ValueError) as e:
                print(f"error: cannot push to the Pushgateway at {url}: {e}", file=sys.stderr)
                ok = False
    if args.metrics_file is not None:
        try:
            write_monitor_textfile(run, args.metrics_file)
        except (OSError, ValueError) as e:
            print(f"error: cannot write {args.metrics_file}: {e}", file=sys.stderr)
            ok = False
    return ok


def _value(v: float | None, unit: str) -> str:
    from mlspec.runtime.monitoring.store import format_duration

    if v is None:
        return "—"
    if unit == "ms":
        return format_duration(v)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.4g}"


def _threshold(v: float | None, unit: str) -> str:
    from mlspec.runtime.monitoring.store import format_duration

    return "—" if v is None else format_duration(v) if unit == "ms" else f"{v:g}"


_STYLE = {"alert": "bold red", "warn": "yellow", "ok": "green", "no_data": "dim"}


def print_run(run: MonitorRun, console: Console, *, show_all: bool = False) -> None:
    """The rule table (plus warn-level info rows), alert deliveries and retrain outcomes."""
    from rich.table import Table

    for state in run.states:
        when = f" of {state.data_time:%Y-%m-%d %H:%M}" if state.data_time and "cohort" not in state.population else ""
        console.print(f"[bold]monitor {state.monitor}[/]: model {state.model}, champion {state.version or '(none)'}; "
                      f"current = {state.population or 'n/a'}{when}, {state.n_current:,} rows")
    table = Table(title=f"{run.project} · as of {run.now:%Y-%m-%d %H:%M} UTC", title_justify="left")
    several = len(run.states) > 1
    if several:
        table.add_column("monitor")
    for col in ("rule", "subject", "value", "threshold", "status", "n"):
        table.add_column(col, justify="right" if col in ("value", "threshold", "n") else "left",
                         overflow="fold")
    shown = [m for m in run.measurements if show_all or m.rule is not None or m.status in ("warn", "alert")]
    for m in shown:
        threshold = f"{m.op} {_threshold(m.threshold, m.unit)}" if m.op else ""
        cells = [m.rule or f"[dim]{m.metric}[/]", m.subject, _value(m.value, m.unit), threshold,
                 f"[{_STYLE.get(m.status, '')}]{m.status}[/]", "" if m.n is None else f"{m.n:,}"]
        table.add_row(*([m.monitor] if several else []), *cells)
    console.print(table)
    hidden = len(run.measurements) - len(shown)
    if hidden:
        console.print(f"[dim]{hidden} more measurements (ok / no data) in --all, --json and the monitoring table[/]")
    for d in run.deliveries:
        extra = f" ({d.error})" if d.error else ""
        console.print(f"alert {d.alert} via {d.sink}: {d.status}{extra} · {d.rule}")
    for r in run.retrains:
        console.print(f"retrain {r.model} ({r.trigger}): [bold]{r.status}[/] — {r.reason}")
    firing = len(run.firing)
    console.print(f"[bold red]{firing} rule(s) firing[/]" if firing else "[green]no rule firing[/]")


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlspec.runtime.monitoring.evaluate import evaluate
    from mlspec.runtime.monitoring.report import write_report

    compiled = _compiled(args.paths)
    run = _locked(lambda: evaluate(compiled, _options(args, record=False, notify=False, act=False)))
    out = Path(args.output)
    write_report(compiled, run, out)
    for w in run.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size / 1024:,.0f} KiB): {len(run.firing)} rule(s) firing")
    return 0


def _print_retrain(r: RetrainOutcome) -> None:
    print(f"retrain {r.model}: {r.status} — {r.reason}")
    if r.version:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(r.metrics.items()) if k in ("auc", "logloss", "rmse",
                                                                                            "accuracy"))
        print(f"  candidate {r.version} {metrics}; champion {r.champion_before or '(none)'} -> "
              f"{r.champion_after or '(none)'}")
    for s in r.scored:
        print(f"  serve:{s} scored again with {r.champion_after}")


def cmd_retrain(args: argparse.Namespace) -> int:
    from mlspec.cli import _model_name
    from mlspec.runtime.monitoring.retrain import retrain

    compiled = _compiled(args.paths)
    name = _model_name(compiled, args.model)
    try:
        out = _locked(lambda: retrain(compiled, name, trigger="manual", force=args.force,
                                      min_new_labels=args.min_new_labels, min_interval_ms=args.min_interval,
                                      engine=args.engine))
    except RunError as e:
        print(e.render(), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out.to_data(), indent=2, default=str))
    else:
        _print_retrain(out)
    report = out.rejection()
    if args.fail_on_rejected and report is not None:
        from mlspec.runtime.runner import EXIT_REJECTED, rejection_message

        print(rejection_message(report), file=sys.stderr)
        return EXIT_REJECTED
    return 0 if out.status in ("promoted", "unchanged", "skipped", "rejected") else 1
