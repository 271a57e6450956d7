"""Production monitoring: drift, outcomes, infrastructure and data quality; alerts, reports, retraining.

`mlspec monitor` (evaluate.py) measures every `monitor` rule against the champion's reference
statistics (drift.py) and the latest data (data.py), records the measurements (store.py), sends
alerts (alerts.py) and, with `--act`, retrains (retrain.py); `mlspec report` renders the history
as a self-contained HTML dashboard (report.py).  The CLI wiring is in commands.py.
"""
