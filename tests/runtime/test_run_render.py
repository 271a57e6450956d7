"""The run summary as printed: nodes a run does not execute are named with where they do run."""

from __future__ import annotations

import io

from rich.console import Console

from mlspec.runtime.run_render import print_summary
from mlspec.runtime.runner import NOT_RUN_HERE, NodeReport, RunSummary


def test_skipped_nodes_say_which_command_runs_them() -> None:
    summary = RunSummary("r1", "duckdb", [
        NodeReport("source:orders", "source", "ok", 0.1, {"rows_in": 3, "rows_passed": 3, "rows_quarantined": 0}),
        NodeReport("serve:api", "serve", "skipped", 0.0, {"note": "realtime serving starts with `mlspec serve`"}),
        NodeReport("serve:events", "serve", "skipped", 0.0, {"note": "streaming serving starts with `mlspec stream`"}),
        NodeReport("alert:a", "alert", "skipped", 0.0, {"note": NOT_RUN_HERE["alert"]}),
        NodeReport("alert:b", "alert", "skipped", 0.0, {"note": NOT_RUN_HERE["alert"]}),
    ])
    out = io.StringIO()
    print_summary(summary, Console(file=out, width=400, color_system=None))
    (line,) = [x for x in out.getvalue().splitlines() if x.startswith("not run here:")]
    assert line == ("not run here: serve:api (realtime serving starts with `mlspec serve`); serve:events (streaming "
                    "serving starts with `mlspec stream`); alert:a, alert:b (alert sinks are used by `mlspec monitor`)")
