"""The study index: a JSON document listing every result the report reads (and every stage's fate).

It is the only thing the report package needs from the study: models (label, family, layer names),
probe result folders, CKA tables, per-stage status and wall time, skipped tasks, config and versions.
"""

from __future__ import annotations

import platform
from typing import Any

from layerlab import storage
from layerlab.study.plan import StudyPlan


def versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("layerlab", "torch", "ray", "numpy", "pyarrow", "s3prl", "espnet-s3prl", "speechbrain", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def stage_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stage's usage for the run metadata: CPU and GPU seconds, and per node the same and the roles that ran there."""
    if not usage:
        return None
    nodes = {k: {f: v.get(f) for f in ("cpu_seconds", "gpu_seconds", "roles")} for k, v in (usage.get("nodes") or {}).items()}
    return {"cpu_seconds": usage.get("cpu_seconds"), "gpu_seconds": usage.get("gpu_seconds"), "nodes": nodes}


def study_index(plan: StudyPlan, results: dict[str, dict[str, Any]], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the report needs, as plain JSON."""
    config = plan.config
    models: dict[str, Any] = {}
    for name, m in config.models.items():
        extracted = next((results[k] for k in results if k.startswith("extract/") and k.endswith(f"/{name}")), {})
        rates = extracted.get("frame_rates_hz") or []
        layers = extracted.get("layer_names") or []
        models[name] = {
            "label": m.label or name, "family": m.resolved_family(),
            "spec": extracted.get("model_spec") or m.extract_spec() or (f"train:{m.train.recipe}" if m.train else f"random:{m.control_of}"),
            "layers": layers, "frame_layers": [n for n, r in zip(layers, rates) if r is not None],
            "baseline": m.resolved_family() == "baseline",
            "layer_levels": {n: ("frame" if r is not None else "utterance") for n, r in zip(layers, rates)} if len(rates) == len(layers) and layers else {},
            **config.model_extras(name),
        }
        for key in ("control_of", "planted", "expect"):  # CONTRACTS §6, where the model config carries them
            value = getattr(m, key, None)
            if value:
                models[name][key] = value
        trained = results.get(f"train/{name}")
        if trained is not None:
            models[name]["trained"] = True
            if "training_speakers" in trained:  # CONTRACTS §5
                models[name]["training_speakers"] = list(trained["training_speakers"])
    probes, cka, profiles, quarantine = [], [], [], {}
    for sid, stage in plan.stages.items():
        res = results.get(sid)
        if stage.kind == "probe" and res:
            summary = res.get("summary") or {}
            probes.append({"dataset": stage.params["dataset"], "model": stage.params["model"], "task": stage.params["task"],
                           "dir": res["dir"], "metrics": res["metrics"], "layer_weights": res["layer_weights"],
                           "replicates": storage.join(res["dir"], "replicates.parquet"), "summary": storage.join(res["dir"], "summary.json"),
                           "notes": list((summary.get("task_info") or {}).get("notes", [])),
                           "classes": (summary.get("task_info") or {}).get("test_classes") or (summary.get("task_info") or {}).get("classes"),
                           **{k: summary[k] for k in ("convergence", "speakers", "test_speakers") if k in summary}})
        elif stage.kind == "cka" and res:
            cka.append({"dataset": sid.split("/")[1], **{k: res.get(k) for k in ("mode", "models", "level", "estimator", "tables", "ci", "n_utterances", "n_frames", "notes")},
                        **{k: res[k] for k in ("replicates", "group_by", "measures", "agreement") if res.get(k)}})
        elif stage.kind == "profile" and res:
            profiles.append({k: res.get(k) for k in ("dataset", "model", "table", "replicates", "figure", "references", "skipped", "notes")})
        elif stage.kind == "corpus" and res:
            quarantine[f"corpus {stage.id.split('/', 1)[1]}"] = res.get("quarantined", 0)
        elif stage.kind == "extract" and res and "members" not in stage.params:  # a joint group's members report their own caches
            quarantine[f"cache {stage.id.split('/', 1)[1]}"] = res.get("quarantined_model", 0)
    estimates = {c["id"]: c for c in plan.cost.to_json()["stages"]} if plan.cost is not None else {}
    stages = [{**{k: r.get(k) for k in ("id", "kind", "status", "reused", "wall_seconds", "error")},
               "estimate": {k: estimates[r["id"]][k] for k in ("runs_on", "stored_bytes", "read_bytes", "gpu_hours", "peak_memory_bytes")}
               if r["id"] in estimates else None, "usage": stage_usage(r.get("usage"))} for r in records.values() if r["id"] != "report"]
    skipped = list(plan.skipped) + [
        {"dataset": r["id"].split("/")[1], "task": r["id"].split("/")[3], "reason": r.get("error") or ""}
        for r in records.values() if r["kind"] == "probe" and r["status"] == "skipped"
    ] + [
        {"dataset": r["id"].split("/")[1], "task": f"profile of {r['id'].split('/')[2]}", "reason": r.get("error") or ""}
        for r in records.values() if r["kind"] == "profile" and r["status"] == "skipped"
    ]
    return {
        "title": config.report.title, "study": config.name, "out": plan.out, "split": config.report.split,
        "models": models, "probes": probes, "cka": cka, "profiles": profiles, "stages": stages, "skipped": skipped,
        "quarantine": quarantine, "versions": versions(), "config_text": getattr(plan, "config_text", ""),
        "allow_overlap": bool(getattr(config, "allow_overlap", False)), "leakage": plan.leakage,
        "cost": None if plan.cost is None else {k: v for k, v in plan.cost.to_json().items() if k != "stages"},  # the plan's totals and budget
    }
