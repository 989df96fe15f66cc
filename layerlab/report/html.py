"""Render the report as ONE self-contained HTML file (figures as data URIs, no scripts, no network)."""

from __future__ import annotations

import base64
import html
from typing import Any, Sequence

import pandas as pd

from layerlab.report.tables import fmt, metric_header, ordered_tasks

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:center}
th{background:#f3f3f3}td.name{text-align:left;font-weight:600}tr.baseline td{background:#fafaf0}
td.best{background:#d8f0d8;font-weight:700}small{color:#666}.ci{color:#666;font-size:.8em}
.verdict{font-weight:700}.supported{color:#1a7f37}.contradicted{color:#b3261e}.inconclusive{color:#9a6700}.untestable{color:#555}
.warn{color:#9a6700;font-size:.8em}.fail{color:#b3261e;font-weight:700}.pass{color:#1a7f37;font-weight:700}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}.failed{color:#b3261e;font-weight:700}
"""


def esc(text: Any) -> str:
    return html.escape(str(text))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure(png: bytes, caption: str, alt: str) -> str:
    return f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'


def model_task_html(table: pd.DataFrame, models: dict[str, Any], split: str, capped: dict[tuple[str, str], str] | None = None,
                    worse: dict[tuple[str, str], str] | None = None) -> str:
    """The model x task table: value, CI, group count and notes; probes at the epoch cap and weighted sums worse than the best layer marked."""
    capped, worse = capped or {}, worse or {}
    if table.empty:
        rows = "".join(f"<tr data-model='{esc(n)}'><td class='name'>{esc(i.get('label', n))}<br><small>{esc(i.get('family', ''))}</small></td><td>–</td></tr>"
                       for n, i in models.items())
        return (f"<table id='model-task'><thead><tr><th>model</th><th>probe results</th></tr></thead><tbody>{rows}</tbody></table>"
                "<p><small>No probe results in this study (no probe stage ran or finished).</small></p>")
    tasks = ordered_tasks(list(table["task"]))
    head = "".join(f"<th>{metric_header(t, table.loc[table['task'] == t, 'metric'].iloc[0], bool(table.loc[table['task'] == t, 'higher_is_better'].iloc[0]))}</th>" for t in tasks)
    other = "dev" if split == "test" else "test"
    rows = []
    names = list(dict.fromkeys(table["model"])) + [n for n in models if n not in set(table["model"])]
    for name in names:
        info = models.get(name, {})
        cells = []
        for t in tasks:
            sel = table[(table["model"] == name) & (table["task"] == t)]
            main, alt = sel[sel["split"] == split], sel[sel["split"] == other]
            if main.empty and alt.empty:
                cells.append("<td>–</td>")
                continue
            r = (main if not main.empty else alt).iloc[0]
            text = f"{fmt(r['value'], r['metric'])}<br><span class='ci'>[{fmt(r['ci_low'], r['metric'])}, {fmt(r['ci_high'], r['metric'])}]</span>"
            g = int(r.get("n_groups", 0) or 0)
            text += f"<br><small class='groups'>{g} groups</small>" if g else "<br><small class='groups'>groups not recorded</small>"
            if not main.empty and not alt.empty:
                a = alt.iloc[0]
                text += f"<br><small>{other} {fmt(a['value'], a['metric'])}</small>"
            elif main.empty:
                text = f"<small>{other}</small> " + text
            if r.get("note"):
                text += f"<br><span class='warn note'>⚠ {esc(r['note'])}</span>"
            if (name, t) in capped:
                text += f"<br><span class='warn cap'>⚑ {esc(capped[(name, t)])}</span>"
            if (name, t) in worse:
                text += f"<br><span class='warn worse'>▼ {esc(worse[(name, t)])}</span>"
            cells.append(f"<td class='{'best' if r['best'] else ''}'>{text}</td>")
        cls = " class='baseline'" if info.get("baseline") else ""
        label = esc(info.get("label", name)) + (" <small>(baseline)</small>" if info.get("baseline") else "")
        rows.append(f"<tr{cls} data-model='{esc(name)}'><td class='name'>{label}<br><small>{esc(info.get('family', ''))}</small></td>{''.join(cells)}</tr>")
    methods = sorted({str(x) for x in table.get("ci_method", pd.Series(dtype=str)) if str(x)})
    how = ", ".join(methods) if methods else "interval method not recorded (old table)"
    return (f"<table id='model-task'><thead><tr><th>model</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p><small>Weighted-sum probes, {esc(split)} split (95% interval in brackets: {esc(how)}; number of groups behind it below; "
            "the other split below that); best per task shaded. ⚠ fewer than 10 groups or another note; ⚑ the probe stopped at the epoch cap "
            "(not converged); ▼ the weighted sum is worse than the best single layer (chosen on dev) beyond that layer's interval.</small></p>")


def findings_html(findings: Sequence[dict[str, Any]]) -> str:
    out = []
    for i, f in enumerate(findings, 1):
        cls = esc(f["verdict"])
        ev = "".join(f"<li>{esc(e)}</li>" for e in f["evidence"])
        out.append(f"<div class='finding' id='finding-{esc(f['id'])}'><h3>({i}) {esc(f['claim'])}</h3>"
                   f"<p><span class='verdict {cls}'>{esc(f['verdict'])}</span> — {esc(f['sentence'])}</p>"
                   + (f"<ul>{ev}</ul>" if ev else "") + "</div>")
    return "".join(out)


def selectivity_html(select: pd.DataFrame, models: dict[str, Any]) -> str:
    """Selectivity table: each layer's probe result minus its random-init control's (positive = better than the control)."""
    if select.empty:
        return "<p id='selectivity'><small>No random-initialisation control in this study: selectivity not computed.</small></p>"
    rows = "".join(
        f"<tr><td class='name'>{esc(models.get(r['model'], {}).get('label', r['model']))}</td><td>{esc(r['task'].upper())}</td><td>{esc(r['layer'])}</td>"
        f"<td>{fmt(r['value'], r['metric'])}</td><td>{fmt(r['control_value'], r['metric'])}</td><td>{fmt(r['selectivity'], r['metric'])}</td></tr>"
        for _, r in select.iterrows())
    return ("<h3>Selectivity (probe minus its random-init control)</h3><table id='selectivity'><thead><tr><th>model</th><th>task</th><th>layer</th>"
            f"<th>probe</th><th>control</th><th>selectivity</th></tr></thead><tbody>{rows}</tbody></table>")


def _usage_cells(usage: dict[str, Any] | None) -> str:
    """CPU s, GPU s and the nodes (with what ran there) of one stage; blank where it was not measured."""
    if not usage:
        return "<td></td><td></td><td></td>"
    nodes = "; ".join(f"{esc(k)}: {', '.join(esc(str(r)) for r in v.get('roles') or [])} ({float(v.get('cpu_seconds') or 0):.1f} CPU s)"
                      for k, v in (usage.get("nodes") or {}).items())
    return (f"<td>{float(usage.get('cpu_seconds') or 0):.1f}</td><td>{float(usage.get('gpu_seconds') or 0):.1f}</td>"
            f"<td style='text-align:left'><small>{nodes}</small></td>")


def stages_html(stages: Sequence[dict[str, Any]], cost: dict[str, Any] | None = None) -> str:
    """The stage table: status, wall time, the plan's estimate (where it runs, bytes written and read, GPU-hours, peak memory) and
    what it used (CPU and GPU seconds, the nodes and what ran on each)."""
    rows = []
    for s in stages:
        status = esc(s["status"]) if s["status"] != "failed" else "<span class='failed'>FAILED</span>"
        est = s.get("estimate") or {}
        planned = (f"<td>{esc(est.get('runs_on', ''))}</td><td>{est.get('stored_bytes', 0) / 1e9:,.2f}</td><td>{est.get('read_bytes', 0) / 1e9:,.2f}</td>"
                   f"<td>{est.get('gpu_hours', 0):,.2f}</td><td>{est.get('peak_memory_bytes', 0) / 1e9:,.1f}</td>") if est else "<td></td>" * 5
        rows.append(f"<tr><td class='name'>{esc(s['id'])}</td><td>{status}</td><td>{'reused' if s.get('reused') else 'computed'}</td>"
                    f"<td>{float(s.get('wall_seconds') or 0):.1f}</td>{planned}{_usage_cells(s.get('usage'))}"
                    f"<td style='text-align:left'>{esc(s.get('error') or '')}</td></tr>")
    totals = ""
    if cost and cost.get("totals"):
        t = cost["totals"]
        totals = (f"<p>Planned cost (estimates): {t.get('stored_bytes', 0) / 1e12:,.3f} TB written, {t.get('read_bytes', 0) / 1e12:,.3f} TB read "
                  f"(CKA stages {t.get('cka_read_bytes', 0) / 1e12:,.3f} TB, probes {t.get('probe_read_bytes', 0) / 1e12:,.3f} TB), "
                  f"{t.get('gpu_hours', 0):,.1f} GPU-hours, largest peak memory {t.get('peak_memory_bytes', 0) / 1e9:,.1f} GB.</p>")
    return (totals + "<table id='stages'><thead><tr><th>stage</th><th>status</th><th>this run</th><th>wall time (s)</th><th>runs on</th>"
            "<th>est. written GB</th><th>est. read GB</th><th>est. GPU-h</th><th>est. peak GB</th><th>CPU s</th><th>GPU s</th>"
            "<th>nodes (what ran there)</th><th>note</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def page(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: sections of (anchor id, heading, inner HTML)."""
    toc = "".join(f"<li><a href='#{sid}'>{esc(h)}</a></li>" for sid, h, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{esc(h)}</h2>{inner}</section>" for sid, h, inner in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><ul>{toc}</ul>{body}</body></html>")
