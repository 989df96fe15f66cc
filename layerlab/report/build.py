"""Build the report from a study index: tables (Parquet), figures (PNG), findings, one HTML file."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from layerlab import storage
from layerlab.report import figures, html
from layerlab.report.checks import capped_probes, instrument_check, leakage_statement
from layerlab.report.encodes import encodes_section, load_profiles, training_free_profiles
from layerlab.report.findings import compute_findings
from layerlab.report.load import WEIGHTED, CKAMatrix, load_cka, load_metrics, load_replicates, load_weights
from layerlab.report.tables import fmt, model_task_table, ordered_tasks, selectivity, weighted_vs_best_layer


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
    replicates = load_replicates(index.get("probes", []))
    table = model_task_table(metrics, models)
    tf_profiles, tf_replicates = training_free_profiles(*load_profiles(index.get("profiles", [])), models)
    findings = [f.as_dict() for f in compute_findings(metrics, weights, maps, models, split, replicates, tf_profiles, tf_replicates)]
    encodes_html, encodes_pngs, encodes_tables = encodes_section(index, metrics, models, split)
    leakage = leakage_statement(index)
    capped = capped_probes(index)
    versus = weighted_vs_best_layer(metrics, split)
    select = selectivity(metrics, models, split)
    classes = {(p["model"], p["task"]): p["classes"] for p in index.get("probes", []) if p.get("classes")}
    checks = instrument_check(metrics, weights, models, split, maps, classes)
    cap_cells = {(m, t): f"weighted sum stopped at the epoch cap ({c.get('epochs', '?')} of {c.get('max_epochs', '?')} epochs): not converged"
                 for (m, t, p), c in capped.items() if p == WEIGHTED}
    worse_cells = {(r["model"], r["task"]): f"worse than the best single layer {r['best_layer']} (chosen on dev): {fmt(r['layer_value'], r['metric'])} "
                   f"[{fmt(r['layer_ci_low'], r['metric'])}, {fmt(r['layer_ci_high'], r['metric'])}] on {split}"
                   for _, r in versus.iterrows() if r["worse"]}
    methods = sorted({str(x) for x in metrics.get("ci_method", pd.Series(dtype=str)) if str(x)}) if not metrics.empty else []
    ci_label = "95% CI (" + (", ".join(methods) if methods else "method not recorded") + ")"

    from layerlab.report.measures import measures_section

    measures_html, agreement, measure_pngs = measures_section(index.get("cka", []), models)
    written: dict[str, str] = {}
    if not agreement.empty:
        url = storage.join(out, "tables", "measure_agreement.parquet")
        _write_parquet(url, agreement)
        written["measure_agreement"] = url
    for name, df in (("model_task", table), ("probe_metrics", metrics), ("layer_weights", weights), ("weighted_vs_best_layer", versus),
                     ("selectivity", select),
                     ("cka", pd.concat([m.tidy() for m in maps], ignore_index=True) if maps else pd.DataFrame()), *encodes_tables.items()):
        url = storage.join(out, "tables", f"{name}.parquet")
        _write_parquet(url, df)
        written[name] = url

    pngs: list[tuple[str, str, bytes, str]] = []  # (section, file name, png, caption)
    single = []
    for name, info in models.items():
        if not weights.empty and (weights["model"] == name).any():
            if weights.loc[weights["model"] == name, "layer"].nunique() < 2:
                single.append(info.get("label", name))
                continue
            pngs.append(("weights", f"layer_weights_{name}.png", figures.weights_figure(weights, name, info.get("label", name), info.get("layers", [])),
                         f"Figure 2 — {info.get('label', name)}: left, each layer's contribution share of the weighted sum (accounts for activation "
                         "norms, projections and layer norm; sums to 1); right, the raw softmax weights, per task"))
    per_layer = metrics[metrics["probe"] != "weighted_sum"] if not metrics.empty else metrics
    for task in ordered_tasks(list(per_layer["task"])) if not per_layer.empty else []:
        pngs.append(("profiles", f"profile_{task}.png", figures.profile_figure(metrics, task, models, split, ci_label, set(capped)),
                     f"Per-layer {task.upper()} probes ({split}) with {ci_label}; dotted: the random-init control, with selectivity (probe minus control); "
                     "red rings: probes that stopped at the epoch cap (not converged)"))
    pngs += [("encodes", fname, png, caption) for fname, png, caption in encodes_pngs]
    for mode, caption in (("within", "Figures 3–4 — CKA within each model"), ("across", "Figure 5 — CKA across models")):
        for key in sorted({(m.dataset, m.level) for m in maps if m.mode == mode}):
            group = [m for m in maps if m.mode == mode and (m.dataset, m.level) == key and not (mode == "within" and m.value.size == 1)]
            if not group:
                continue  # a one-layer model's map is a single 1
            pngs.append(("cka", f"cka_{mode}_{key[0]}_{key[1]}.png", figures.cka_figure(group, models, f"{caption} ({key[0]}, {key[1]} level)"),
                         f"{caption}: dataset {key[0]}, {key[1]} level, one colour scale [0, 1]"))
    pngs += [("measures", fname, png, cap) for fname, png, cap in measure_pngs]
    for _, fname, png, _ in pngs:
        url = storage.join(out, "figures", fname)
        storage.atomic_write_bytes(url, png)
        written[fname] = url

    def figs(section: str) -> str:
        items = [html.figure(png, cap, fname) for s, fname, png, cap in pngs if s == section]
        return "".join(items) or "<p>No results for this section.</p>"

    single_html = (f"<p id='single-layer'>Single-layer models (no layer weights to compare, not plotted): {html.esc(', '.join(single))}.</p>" if single else "")
    cap_html = ("<h3>Probes stopped at the epoch cap (not converged)</h3><ul>" + "".join(
        f"<li>{html.esc(models.get(m, {}).get('label', m))}, {html.esc(t.upper())}, {html.esc(p)}: {c.get('epochs', '?')} of {c.get('max_epochs', '?')} epochs</li>"
        for (m, t, p), c in sorted(capped.items())) + "</ul>") if capped else ""
    if checks:
        check_html = "<ul id='instrument-check'>" + "".join(
            f"<li><span class='{'pass' if c['passed'] else 'fail' if c['passed'] is False else 'untestable'}'>"
            f"{'PASS' if c['passed'] else 'FAIL' if c['passed'] is False else 'NOT CHECKED'}</span> {html.esc(c['text'])}</li>" for c in checks) + "</ul>"
    else:
        check_html = "<p>No planted (known-answer) model in this study: instrument check skipped.</p>"

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
        ("summary", "Summary", f"<p id='leakage'>{html.esc(leakage['text'])}</p>" + status + f"<p>{len(models)} models, {len(set(table['task'])) if not table.empty else 0} probe tasks, "
                               f"{len(maps)} CKA maps. Results folder: <code>{html.esc(index.get('out', ''))}</code></p>"),
        ("findings", "Findings", html.findings_html(findings)),
        ("table", "Model × task (Table 1)", html.model_task_html(table, models, split, cap_cells, worse_cells) + notes_html + cap_html),
        ("weights", "Learned layer weights (Figure 2)", single_html + figs("weights")),
        ("profiles", "Per-layer probe profiles", figs("profiles") + html.selectivity_html(select, models)),
        ("encodes", "What each layer encodes (training-free and SGD)", encodes_html + (figs("encodes") if encodes_pngs else "")),
        ("cka", "CKA (Figures 3–5)", figs("cka")),
        *([("measures", "Similarity measures", measures_html)] if measures_html else []),
        ("instrument", "Instrument check", check_html),
        ("skipped", "Skipped tasks", skipped_html),
        ("run", "Run metadata", html.stages_html(index.get("stages", []), index.get("cost")) +
         f"<h3>Quarantined utterances</h3><table><tbody>{quarantine}</tbody></table><p><small>{versions}</small></p>"
         f"<h3>Study config</h3><pre>{html.esc(index.get('config_text', ''))}</pre>"),
    ]
    page = html.page(index.get("title", "layerlab study"), sections)
    html_url = storage.join(out, "index.html")
    storage.atomic_write_bytes(html_url, page.encode())
    summary = {"html": html_url, "tables": {k: v for k, v in written.items() if k.endswith("") and v.endswith(".parquet")},
               "figures": [v for v in written.values() if v.endswith(".png")], "findings": findings,
               "failed": [s["id"] for s in failed], "models": list(models), "leakage": leakage, "instrument_check": checks,
               "capped": [list(k) for k in capped]}
    storage.write_json(storage.join(out, "findings.json"), findings)
    storage.write_json(storage.join(out, "summary.json"), json.loads(json.dumps(summary, default=str)))
    return summary
