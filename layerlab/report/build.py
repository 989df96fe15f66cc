"""Build the report from a study index: tables (Parquet), figures (PNG), findings, one HTML file."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from layerlab import storage
from layerlab.report import figures, html
from layerlab.report.findings import compute_findings
from layerlab.report.load import CKAMatrix, load_cka, load_metrics, load_weights
from layerlab.report.tables import model_task_table, ordered_tasks


def _write_parquet(url: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.atomic_write_bytes(url, buf.getvalue())


def build_report(index: dict[str, Any], out: str) -> dict[str, Any]:
    """Read the results listed in ``index`` and write ``out/index.html``, ``out/figures/``, ``out/tables/``."""
    models: dict[str, Any] = index["models"]
    split = index.get("split", "test")
    metrics, weights = load_metrics(index.get("probes", [])), load_weights(index.get("probes", []))
    maps: list[CKAMatrix] = [m for m in (load_cka(e, models) for e in index.get("cka", [])) if m is not None]
    table = model_task_table(metrics, models)
    findings = [f.as_dict() for f in compute_findings(metrics, weights, maps, models, split)]

    written: dict[str, str] = {}
    for name, df in (("model_task", table), ("probe_metrics", metrics), ("layer_weights", weights),
                     ("cka", pd.concat([m.tidy() for m in maps], ignore_index=True) if maps else pd.DataFrame())):
        url = storage.join(out, "tables", f"{name}.parquet")
        _write_parquet(url, df)
        written[name] = url

    pngs: list[tuple[str, str, bytes, str]] = []  # (section, file name, png, caption)
    for name, info in models.items():
        if not weights.empty and (weights["model"] == name).any():
            pngs.append(("weights", f"layer_weights_{name}.png", figures.weights_figure(weights, name, info.get("label", name), info.get("layers", [])),
                         f"Figure 2 — learned layer weights of {info.get('label', name)} per task"))
    per_layer = metrics[metrics["probe"] != "weighted_sum"] if not metrics.empty else metrics
    for task in ordered_tasks(list(per_layer["task"])) if not per_layer.empty else []:
        pngs.append(("profiles", f"profile_{task}.png", figures.profile_figure(metrics, task, models, split), f"Per-layer {task.upper()} probes ({split}) with 95% CIs"))
    for mode, caption in (("within", "Figures 3–4 — CKA within each model"), ("across", "Figure 5 — CKA across models")):
        for key in sorted({(m.dataset, m.level) for m in maps if m.mode == mode}):
            group = [m for m in maps if m.mode == mode and (m.dataset, m.level) == key and not (mode == "within" and m.value.size == 1)]
            if not group:
                continue  # a one-layer model's map is a single 1
            pngs.append(("cka", f"cka_{mode}_{key[0]}_{key[1]}.png", figures.cka_figure(group, models, f"{caption} ({key[0]}, {key[1]} level)"),
                         f"{caption}: dataset {key[0]}, {key[1]} level, one colour scale [0, 1]"))
    for _, fname, png, _ in pngs:
        url = storage.join(out, "figures", fname)
        storage.atomic_write_bytes(url, png)
        written[fname] = url

    def figs(section: str) -> str:
        items = [html.figure(png, cap, fname) for s, fname, png, cap in pngs if s == section]
        return "".join(items) or "<p>No results for this section.</p>"

    failed = [s for s in index.get("stages", []) if s["status"] == "failed"]
    status = (f"<p class='failed'>{len(failed)} stage(s) failed: " + "; ".join(html.esc(f"{s['id']}: {s['error']}") for s in failed) + "</p>") if failed else ""
    skipped = index.get("skipped", [])
    skipped_html = ("<ul>" + "".join(f"<li>{html.esc(s['task'])} on {html.esc(s['dataset'])}: {html.esc(s['reason'])}</li>" for s in skipped) + "</ul>") if skipped else "<p>None.</p>"
    probe_notes = [(p["model"], p["task"], n) for p in index.get("probes", []) for n in p.get("notes", [])]
    notes_html = ("<h3>Notes on these probes</h3><ul>" + "".join(
        f"<li>{html.esc(models.get(m, {}).get('label', m))}, {html.esc(t.upper())}: {html.esc(n)}</li>" for m, t, n in probe_notes) + "</ul>") if probe_notes else ""
    quarantine = "".join(f"<tr><td class='name'>{html.esc(k)}</td><td>{v}</td></tr>" for k, v in index.get("quarantine", {}).items())
    versions = ", ".join(f"{html.esc(k)} {html.esc(v)}" for k, v in index.get("versions", {}).items())
    sections = [
        ("summary", "Summary", status + f"<p>{len(models)} models, {len(set(table['task'])) if not table.empty else 0} probe tasks, "
                               f"{len(maps)} CKA maps. Results folder: <code>{html.esc(index.get('out', ''))}</code></p>"),
        ("findings", "Findings", html.findings_html(findings)),
        ("table", "Model × task (Table 1)", html.model_task_html(table, models, split) + notes_html),
        ("weights", "Learned layer weights (Figure 2)", figs("weights")),
        ("profiles", "Per-layer probe profiles", figs("profiles")),
        ("cka", "CKA (Figures 3–5)", figs("cka")),
        ("skipped", "Skipped tasks", skipped_html),
        ("run", "Run metadata", html.stages_html(index.get("stages", [])) +
         f"<h3>Quarantined utterances</h3><table><tbody>{quarantine}</tbody></table><p><small>{versions}</small></p>"
         f"<h3>Study config</h3><pre>{html.esc(index.get('config_text', ''))}</pre>"),
    ]
    page = html.page(index.get("title", "layerlab study"), sections)
    html_url = storage.join(out, "index.html")
    storage.atomic_write_bytes(html_url, page.encode())
    summary = {"html": html_url, "tables": {k: v for k, v in written.items() if k.endswith("") and v.endswith(".parquet")},
               "figures": [v for v in written.values() if v.endswith(".png")], "findings": findings,
               "failed": [s["id"] for s in failed], "models": list(models)}
    storage.write_json(storage.join(out, "findings.json"), findings)
    storage.write_json(storage.join(out, "summary.json"), json.loads(json.dumps(summary, default=str)))
    return summary
