"""`mlspec report`: one self-contained HTML file (inline CSS, SVG and a little JS; opens offline).

Sections: rules (this evaluation), feature distributions (reference vs current, per reference
bin), drift over time (PSI per feature from the monitoring table), prediction distribution and
risk bands, outcome metric over time, latency and errors, data quality, alert and retrain history.
The charts are plain SVG written here, so the report needs no plotting library and no network.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlspec.runtime.monitoring.drift import DriftResult
from mlspec.runtime.monitoring.store import ALERTS, RETRAINS, format_duration, history
from mlspec.runtime.warehouse import Warehouse

if TYPE_CHECKING:
    from mlspec.compiler import Compiled
    from mlspec.runtime.monitoring.evaluate import Measurement, ModelState, MonitorRun

__all__ = ["SECTIONS", "bar_chart", "line_chart", "render_report", "write_report"]

SECTIONS = ("summary", "rules", "feature-distributions", "drift-over-time", "prediction-distribution", "outcomes",
            "latency", "data-quality", "history")
REF_COLOR, CUR_COLOR = "#8da0cb", "#fc8d62"
PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4",
           "#b2df8a", "#fb9a99", "#cab2d6")
STATUS_COLOR = {"alert": "#c0392b", "warn": "#d68910", "ok": "#1e8449", "no_data": "#7f8c8d"}


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if unit == "ms":
        return format_duration(v)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:,.4g}"


# ---- SVG charts --------------------------------------------------------------------------------

def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], *, width: int = 420,
              height: int = 190, title: str = "", y_label: str = "share", ticks: Sequence[str] | None = None) -> str:
    """Grouped vertical bars: one group per label, one bar per series (name, values, color).

    `ticks` are the short axis labels (default: the labels); the full label is in each bar's tooltip.
    """
    left, right, top, bottom = 54, 8, 22, 44
    pw, ph = width - left - right, height - top - bottom
    vmax = max([v for _, vals, _ in series for v in vals if math.isfinite(v)] + [1e-9])
    n, k = max(len(labels), 1), max(len(series), 1)
    group = pw / n
    bar = max(group * 0.8 / k, 1.0)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{_e(title)}">', f'<text x="{left}" y="14" class="t">{_e(title)}</text>']
    for frac in (0.0, 0.5, 1.0):
        y = top + ph * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 3:.1f}" class="ax" text-anchor="end">{vmax * frac:.2g}</text>')
    for i, lab in enumerate(labels):
        x0 = left + i * group + group * 0.1
        for j, (name, vals, color) in enumerate(series):
            v = vals[i] if i < len(vals) and math.isfinite(vals[i]) else 0.0
            h = ph * v / vmax
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + ph - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>{_e(name)} · {_e(lab)}: {v:.4f}</title></rect>')
        if n <= 14:
            cx = left + (i + 0.5) * group
            tick = ticks[i] if ticks is not None and i < len(ticks) else lab
            short = tick if len(tick) <= 10 else tick[:9] + "…"
            parts.append(f'<text x="{cx:.1f}" y="{top + ph + 10}" class="ax" text-anchor="end" '
                         f'transform="rotate(-35 {cx:.1f} {top + ph + 10})">{_e(short)}</text>')
    legend_x = left + pw - 150
    for j, (name, _, color) in enumerate(series):
        parts.append(f'<rect x="{legend_x + j * 75}" y="5" width="9" height="9" fill="{color}"/>'
                     f'<text x="{legend_x + j * 75 + 12}" y="13" class="ax">{_e(name)}</text>')
    parts.append(f'<text x="10" y="{top + ph / 2:.0f}" class="ax" transform="rotate(-90 10 {top + ph / 2:.0f})" '
                 f'text-anchor="middle">{_e(y_label)}</text></svg>')
    return "".join(parts)


def bin_ticks(d: DriftResult) -> list[str]:
    """Short tick labels of reference bins: the lower edge of each (`<first`, `>last` for the open ones)."""
    if d.kind != "numeric":
        return [b if b != "__unseen__" else "unseen" for b in d.bins]
    out = []
    for b in d.bins:
        if b.startswith(("< ", "> ", "= ")):
            out.append(b.replace(" ", ""))
        elif b.startswith("["):
            out.append(b[1:].split(",")[0])
        else:
            out.append(b)
    return out


def line_chart(series: Sequence[tuple[str, Sequence[tuple[dt.datetime, float]], str]], *, width: int = 860,
               height: int = 260, title: str = "", thresholds: Sequence[tuple[float, str, str]] = (),
               unit: str = "", legend: bool = True) -> str:
    """Lines over time: (name, [(time, value)], color); dashed horizontal thresholds (value, label, color)."""
    left, right, top, bottom = 56, 170 if legend else 12, 22, 34
    pw, ph = width - left - right, height - top - bottom
    points = [(t, v) for _, pts, _ in series for t, v in pts if v is not None and math.isfinite(v)]
    times = [t for t, _ in points]
    values = [v for _, v in points] + [v for v, _, _ in thresholds]
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}">', f'<text x="{left}" y="14" class="t">{_e(title)}</text>']
    if not times:
        parts.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph / 2:.0f}" class="ax" text-anchor="middle">'
                     'no history yet: run `mlspec monitor` on a schedule (or with --as-of to backfill)</text></svg>')
        return "".join(parts)
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)
    lo, hi = min([*values, 0.0]), max(values)
    hi = hi if hi > lo else lo + 1.0
    hi += (hi - lo) * 0.05

    def x(t: dt.datetime) -> float:
        return left + pw * ((t - t0).total_seconds() / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = lo + (hi - lo) * frac
        label = _num(v, unit) if unit else f"{v:.3g}"
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y(v) + 3:.1f}" class="ax" text-anchor="end">{_e(label)}</text>')
    for t in sorted({t0, t1}):
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 14}" class="ax" text-anchor="middle">'
                     f'{t:%Y-%m-%d}</text>')
    for v, label, color in thresholds:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{color}" '
                     f'stroke-dasharray="5,4" stroke-width="1.2"><title>{_e(label)}</title></line>'
                     f'<text x="{left + pw - 2}" y="{y(v) - 3:.1f}" class="ax" text-anchor="end" '
                     f'fill="{color}">{_e(label)}</text>')
    for i, (name, pts, color) in enumerate(series):
        clean = sorted((t, v) for t, v in pts if v is not None and math.isfinite(v))
        if not clean:
            continue
        cls = f"s{i}"
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in clean)
        parts.append(f'<g class="series {cls}" data-series="{_e(name)}">')
        if len(clean) > 1:
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        for t, v in clean:
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"><title>{_e(name)} '
                         f'{t:%Y-%m-%d %H:%M}: {_e(_num(v, unit))}</title></circle>')
        parts.append("</g>")
        if legend:
            ly = top + 12 * i
            parts.append(f'<g class="legend" data-series="{_e(name)}"><rect x="{left + pw + 10}" y="{ly}" width="9" '
                         f'height="9" fill="{color}"/><text x="{left + pw + 23}" y="{ly + 8}" class="ax">'
                         f'{_e(name if len(name) <= 26 else name[:25] + "…")}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


# ---- sections -------------------------------------------------------------------------------------

def _status(s: str) -> str:
    return f'<span class="st" style="background:{STATUS_COLOR.get(s, "#999")}">{_e(s)}</span>'


def _rules_table(ms: Sequence[Measurement]) -> str:
    rows = []
    for m in ms:
        thr = f"{m.op} {_num(m.threshold, m.unit)}" if m.op else ""
        rows.append(f"<tr><td>{_e(m.monitor)}</td><td><code>{_e(m.rule or m.metric)}</code></td>"
                    f"<td>{_e(m.subject)}</td><td class=r>{_num(m.value, m.unit)}</td><td class=r>{_e(thr)}</td>"
                    f"<td>{_status(m.status)}</td><td>{_e(m.window_end.strftime('%Y-%m-%d %H:%M'))}</td>"
                    f"<td class=r>{'' if m.n is None else f'{m.n:,}'}</td></tr>")
    head = "<tr><th>monitor</th><th>rule</th><th>subject</th><th>value</th><th>threshold</th><th>status</th>" \
           "<th>window end</th><th>n</th></tr>"
    return f'<table class="grid-table">{head}{"".join(rows)}</table>' if rows else "<p>No monitor rules.</p>"


def _feature_cards(state: ModelState, ms: Sequence[Measurement]) -> str:
    status = {m.subject: m.status for m in ms if m.kind == "drift" and m.monitor == state.monitor and m.rule}
    cards = []
    for name, d in state.features.items():
        st = status.get(name, "ok" if (d.psi or 0) <= 0.1 else "warn")
        stats = f"PSI {_num(d.psi)} · JS {_num(d.js)}" + (f" · KS {_num(d.ks)} (p {_num(d.ks_pvalue)})"
                                                          if d.ks is not None else "")
        chart = bar_chart(d.bins, [("reference", d.ref_shares, REF_COLOR), ("current", d.cur_shares, CUR_COLOR)],
                          title=name, ticks=bin_ticks(d))
        cards.append(f'<div class="card" data-feature="{_e(name)}"><div>{_status(st)} <small>{_e(stats)} · nulls '
                     f'{d.null_share:.1%} (ref {d.ref_null_share:.1%})</small></div>{chart}</div>')
    return "".join(cards) or "<p>No feature distributions (no champion or no current data).</p>"


def _series(rows: Sequence[dict[str, Any]], **match: Any) -> list[tuple[dt.datetime, float]]:
    out = []
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and r.get("value") is not None:
            out.append((r["window_end"], float(r["value"])))
    return out


def _merged_history(stored: list[dict[str, Any]], run: MonitorRun) -> list[dict[str, Any]]:
    """Stored measurements plus this evaluation's (which replace a stored row of the same window)."""
    key = ("monitor", "rule", "metric", "subject", "window_end")
    merged = {tuple(r.get(k) for k in key): r for r in stored}
    for m in run.measurements:
        merged[(m.monitor, m.rule, m.metric, m.subject, m.window_end)] = {
            "monitor": m.monitor, "rule": m.rule, "metric": m.metric, "subject": m.subject, "value": m.value,
            "window_end": m.window_end, "kind": m.kind, "threshold": m.threshold, "status": m.status}
    return sorted(merged.values(), key=lambda r: r["window_end"])


def _threshold(ms: Sequence[Measurement], monitor: str, kind: str, metric: str) -> float | None:
    return next((m.threshold for m in ms if m.monitor == monitor and m.rule and m.kind == kind and m.metric == metric),
                None)


def _drift_over_time(state: ModelState, rows: list[dict[str, Any]], ms: Sequence[Measurement]) -> str:
    series = []
    for i, name in enumerate(state.features):
        pts = _series(rows, monitor=state.monitor, metric="psi", subject=name)
        series.append((name, pts, PALETTE[i % len(PALETTE)]))
    alert = _threshold(ms, state.monitor, "drift", "psi") or 0.25
    psi_chart = line_chart(series, title=f"PSI per feature · {state.monitor}",
                           thresholds=[(alert, f"alert {alert:g}", STATUS_COLOR["alert"]),
                                       (0.1, "warn 0.1", STATUS_COLOR["warn"])])
    pred = [(m, _series(rows, monitor=state.monitor, metric=m, subject="prediction"), PALETTE[i])
            for i, m in enumerate(("psi", "js", "ks"))]
    js_thr = _threshold(ms, state.monitor, "prediction_drift", "js")
    pred_chart = line_chart(pred, title="prediction drift (PSI, JS, KS)", height=220,
                            thresholds=[(js_thr, f"js alert {js_thr:g}", STATUS_COLOR["alert"])] if js_thr else [])
    return psi_chart + pred_chart


def _prediction_section(state: ModelState) -> str:
    d: DriftResult | None = state.prediction
    if d is None:
        return "<p>No prediction distribution (no scores for the current data).</p>"
    chart = bar_chart(d.bins, [("reference", d.ref_shares, REF_COLOR), ("current", d.cur_shares, CUR_COLOR)],
                      width=640, height=230, title="score distribution over the reference bins", ticks=bin_ticks(d))
    stats = f"PSI {_num(d.psi)} · JS {_num(d.js)}" + (f" · KS {_num(d.ks)} (p {_num(d.ks_pvalue)})"
                                                      if d.ks is not None else "")
    bands = ""
    if state.bands:
        bands = bar_chart([f"{b['band']} {b['range']}" for b in state.bands],
                          [("reference", [b["reference"] for b in state.bands], REF_COLOR),
                           ("current", [b["current"] for b in state.bands], CUR_COLOR)],
                          width=420, height=230, title="risk bands", ticks=[b["band"] for b in state.bands])
    mean = f" · mean score {_num(d.mean)} (reference {_num(d.ref_mean)})" if d.mean is not None else ""
    return f"<p>{_e(stats)}{_e(mean)}</p><div class=row>{chart}{bands}</div>"


def _outcome_section(state: ModelState, rows: list[dict[str, Any]], ms: Sequence[Measurement]) -> str:
    rule = next((m for m in ms if m.monitor == state.monitor and m.kind == "outcome" and m.rule), None)
    metrics = [rule.metric] if rule else []
    for m in ms:
        if m.monitor == state.monitor and m.kind == "outcome" and m.metric not in metrics and m.value is not None:
            metrics.append(m.metric)
    series = [(m, _series(rows, monitor=state.monitor, kind="outcome", metric=m), PALETTE[i % len(PALETTE)])
              for i, m in enumerate(metrics[:4])]
    thr = [(rule.threshold, f"{rule.rule}", STATUS_COLOR["alert"])] if rule and rule.threshold is not None else []
    deployed = state.champion_metrics.get(metrics[0]) if metrics else None
    if deployed is not None:
        thr.append((deployed, f"{metrics[0]} at deployment {deployed:.3f}", "#7f8c8d"))
    note = ""
    if rule is not None:
        note = (f"<p>Current window: {_e(rule.metric)} = {_num(rule.value)} over {rule.n or 0:,} labelled "
                f"predictions ({_e(json.dumps(rule.detail.get('predictions_from', {})))}), {_status(rule.status)}</p>")
    return note + line_chart(series, title="outcome metrics over rolling label windows", thresholds=thr)


def _latency_section(state: ModelState, rows: list[dict[str, Any]], ms: Sequence[Measurement]) -> str:
    series = [(m, _series(rows, monitor=state.monitor, kind="latency", metric=m), PALETTE[i])
              for i, m in enumerate(("latency_p50", "latency_p99"))]
    thr = _threshold(ms, state.monitor, "latency", "latency_p99")
    out = line_chart(series, title="request latency (prediction log)", unit="ms",
                     thresholds=[(thr, f"p99 SLO {thr:g}ms", STATUS_COLOR["alert"])] if thr else [])
    err = _series(rows, monitor=state.monitor, kind="error_rate", metric="error_rate")
    out += line_chart([("error_rate", err, PALETTE[3])], title="error rate", height=200)
    if state.latencies:
        lat = np.asarray(state.latencies) * 1000.0
        edges = np.quantile(lat, np.linspace(0, 1, 13)) if lat.size > 20 else np.linspace(lat.min(), lat.max() + 1e-9,
                                                                                         7)
        edges = np.unique(edges)
        counts, _ = np.histogram(lat, bins=edges) if edges.size > 1 else (np.array([lat.size]), edges)
        labels = [f"{edges[i]:.1f}-{edges[i + 1]:.1f}ms" for i in range(len(counts))] if edges.size > 1 else ["all"]
        out += bar_chart(labels, [("requests", [float(c) for c in counts], CUR_COLOR)], width=640, height=220,
                         title=f"latency of the {lat.size:,} logged requests in the window", y_label="requests")
    return out


def _quality_section(state: ModelState, ms: Sequence[Measurement]) -> str:
    rows = []
    for name, d in state.features.items():
        rows.append(f"<tr><td>{_e(name)}</td><td class=r>{d.null_share:.2%}</td><td class=r>"
                    f"{d.ref_null_share:.2%}</td></tr>")
    nulls = ("<table class='grid-table'><tr><th>feature</th><th>null rate (current)</th><th>reference</th></tr>"
             + "".join(rows) + "</table>")
    src = []
    for m in ms:
        if m.monitor == state.monitor and m.kind in ("freshness", "quarantine_rate", "null_rate") and \
                (m.rule or m.kind != "null_rate"):
            thr = f"{m.op} {_num(m.threshold, m.unit)}" if m.op else ""
            src.append(f"<tr><td>{_e(m.kind)}</td><td>{_e(m.subject)}</td><td class=r>{_num(m.value, m.unit)}</td>"
                       f"<td class=r>{_e(thr)}</td><td>{_status(m.status)}</td></tr>")
    sources = ("<table class='grid-table'><tr><th>check</th><th>subject</th><th>value</th><th>threshold</th>"
               "<th>status</th></tr>" + "".join(src) + "</table>") if src else ""
    return f"<div class=row><div>{nulls}</div><div>{sources}</div></div>"


def _history_section(wh: Warehouse) -> str:
    out = []
    if wh.exists(ALERTS):
        rows = wh.conn.execute(f"SELECT sent_at, alert, sink, status, error, payload FROM {ALERTS} "
                               "ORDER BY sent_at DESC LIMIT 25").fetchall()
        body = "".join(f"<tr><td>{t:%Y-%m-%d %H:%M}</td><td>{_e(a)}</td><td>{_e(s)}</td><td>{_e(st)}</td>"
                       f"<td><code>{_e(json.loads(p).get('rule', ''))}</code></td><td>{_e(err or '')}</td></tr>"
                       for t, a, s, st, err, p in rows)
        out.append("<h3>alerts</h3><table class='grid-table'><tr><th>time</th><th>alert</th><th>sink</th>"
                   f"<th>status</th><th>rule</th><th>error</th></tr>{body}</table>" if rows else
                   "<h3>alerts</h3><p>No alert sent yet.</p>")
    if wh.exists(RETRAINS):
        rows = wh.conn.execute(f"SELECT started_at, model, trigger, status, reason FROM {RETRAINS} "
                               "ORDER BY started_at DESC LIMIT 25").fetchall()
        body = "".join(f"<tr><td>{t:%Y-%m-%d %H:%M}</td><td>{_e(m)}</td><td>{_e(tr)}</td><td>{_e(st)}</td>"
                       f"<td>{_e(r)}</td></tr>" for t, m, tr, st, r in rows)
        out.append("<h3>retrains</h3><table class='grid-table'><tr><th>time</th><th>model</th><th>trigger</th>"
                   f"<th>status</th><th>reason</th></tr>{body}</table>" if rows else
                   "<h3>retrains</h3><p>No retrain yet.</p>")
    return "".join(out)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243447;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
nav{padding:6px 24px;background:#e8ecf1;position:sticky;top:0}nav a{margin-right:14px;color:#243447}
section{padding:8px 24px;border-bottom:1px solid #ddd}h2{font-size:17px;margin:14px 0 6px}
.st{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px}.grid-table{border-collapse:collapse;margin:6px 0}
.grid-table td,.grid-table th{border:1px solid #ddd;padding:3px 8px;font-size:13px}.r{text-align:right}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #ddd;padding:6px}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.chart{background:#fff;border:1px solid #e3e3e3}
.chart .t{font-size:12px;font-weight:600}.chart .ax{font-size:10px;fill:#555}.chart .grid{stroke:#eee}
.dim{opacity:.12}.legend{cursor:pointer}#filter{margin:4px 0;padding:3px 6px;width:260px}
"""

_JS = """
(function(){
  var box=document.getElementById('filter');
  if(box){box.addEventListener('input',function(){var q=box.value.toLowerCase();
    document.querySelectorAll('[data-feature]').forEach(function(c){
      c.style.display=c.getAttribute('data-feature').toLowerCase().indexOf(q)>=0?'':'none';});});}
  document.querySelectorAll('svg.chart').forEach(function(svg){
    svg.querySelectorAll('.legend').forEach(function(l){l.addEventListener('click',function(){
      var name=l.getAttribute('data-series'),on=l.classList.toggle('picked');
      svg.querySelectorAll('.series').forEach(function(s){
        s.classList.toggle('dim',on&&s.getAttribute('data-series')!==name);});
      svg.querySelectorAll('.legend').forEach(function(o){if(o!==l)o.classList.remove('picked');});});});});
})();
"""


def render_report(run: MonitorRun, stored: list[dict[str, Any]], wh: Warehouse | None = None) -> str:
    """The whole HTML document for one evaluation plus the stored history."""
    rows = _merged_history(stored, run)
    rules = [m for m in run.measurements if m.rule is not None]
    counts = {s: sum(1 for m in rules if m.status == s) for s in ("alert", "warn", "ok", "no_data")}
    summary = " ".join(f"{_status(s)} {n}" for s, n in counts.items())
    states = "".join(f"<li><b>{_e(s.monitor)}</b>: model <code>{_e(s.model)}</code>, champion "
                     f"<code>{_e(s.version or '(none)')}</code>; current data = {_e(s.population or 'n/a')}, "
                     f"{s.n_current:,} rows</li>" for s in run.states)
    warnings = "".join(f"<li>{_e(w)}</li>" for w in run.warnings)
    body = [f'<section id="summary"><h2>summary</h2><p>{summary}</p><ul>{states}</ul>'
            + (f"<details><summary>{len(run.warnings)} warning(s)</summary><ul>{warnings}</ul></details>"
               if warnings else "") + "</section>",
            f'<section id="rules"><h2>rules</h2>{_rules_table(rules)}</section>']
    feat, drift, pred, outc, lat, qual = [], [], [], [], [], []
    for s in run.states:
        head = f"<h3>{_e(s.monitor)} · {_e(s.model)} {_e(s.version or '')}</h3>" if len(run.states) > 1 else ""
        feat.append(head + f'<div class="cards">{_feature_cards(s, run.measurements)}</div>')
        drift.append(head + _drift_over_time(s, rows, run.measurements))
        pred.append(head + _prediction_section(s))
        outc.append(head + _outcome_section(s, rows, run.measurements))
        lat.append(head + _latency_section(s, rows, run.measurements))
        qual.append(head + _quality_section(s, run.measurements))
    body += [
        '<section id="feature-distributions"><h2>feature distributions: reference vs current</h2>'
        '<input id="filter" placeholder="filter features…" aria-label="filter features">' + "".join(feat)
        + "</section>",
        f'<section id="drift-over-time"><h2>drift over time</h2>{"".join(drift)}</section>',
        f'<section id="prediction-distribution"><h2>prediction distribution</h2>{"".join(pred)}</section>',
        f'<section id="outcomes"><h2>outcome metric over time</h2>{"".join(outc)}</section>',
        f'<section id="latency"><h2>latency and errors</h2>{"".join(lat)}</section>',
        f'<section id="data-quality"><h2>data quality</h2>{"".join(qual)}</section>',
        f'<section id="history"><h2>alert and retrain history</h2>{_history_section(wh) if wh else ""}</section>',
    ]
    nav = "".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in SECTIONS)
    title = f"mlspec monitoring · {run.project}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><header><h1>{_e(title)}</h1><div>evaluated {run.evaluated_at:%Y-%m-%d %H:%M} UTC · as of '
            f'{run.now:%Y-%m-%d %H:%M} UTC · spec {_e(", ".join(run.spec_files))}</div></header><nav>{nav}</nav>'
            + "".join(body) + f"<script>{_JS}</script></body></html>\n")


def write_report(compiled: Compiled, run: MonitorRun, out: Path) -> None:
    """Render the report for `run` with the project's stored history and write it to `out`."""
    with Warehouse.open(compiled.root) as wh:
        stored = history(wh)
        text = render_report(run, stored, wh)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
