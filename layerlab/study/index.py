"""The study index: a JSON document listing every result the report reads (and every stage's fate).

It is the only thing the report package needs from the study: models (label, family, layer names),
probe result folders, CKA tables, per-stage status and wall time, skipped tasks, config and versions.
"""

from __future__ import annotations

import platform
from typing import Any

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


def study_index(plan: StudyPlan, results: dict[str, dict[str, Any]], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the report needs, as plain JSON."""
    config = plan.config
    models: dict[str, Any] = {}
    for name, m in config.models.items():
        extracted = next((results[k] for k in results if k.startswith("extract/") and k.endswith(f"/{name}")), {})
        rates = extracted.get("frame_rates_hz") or []
        layers = extracted.get("layer_names") or []
        models[name] = {
            "label": m.label or name, "family": m.resolved_family(), "spec": extracted.get("model_spec") or m.spec or f"train:{m.train.recipe}",
            "layers": layers, "frame_layers": [n for n, r in zip(layers, rates) if r is not None],
            "baseline": m.resolved_family() == "baseline",
        }
    probes, cka, quarantine = [], [], {}
    for sid, stage in plan.stages.items():
        res = results.get(sid)
        if stage.kind == "probe" and res:
            probes.append({"dataset": stage.params["dataset"], "model": stage.params["model"], "task": stage.params["task"],
                           "dir": res["dir"], "metrics": res["metrics"], "layer_weights": res["layer_weights"],
                           "notes": list(((res.get("summary") or {}).get("task_info") or {}).get("notes", [])),
                           "summary": f"{str(res['dir']).rstrip('/')}/summary.json",
                           "convergence": (res.get("summary") or {}).get("convergence", {}),
                           "test_speakers": (res.get("summary") or {}).get("test_speakers", [])})
        elif stage.kind == "cka" and res:
            cka.append({"dataset": sid.split("/")[1], **{k: res.get(k) for k in ("mode", "models", "level", "estimator", "tables", "ci", "n_utterances", "n_frames", "notes")}})
        elif stage.kind == "corpus" and res:
            quarantine[f"corpus {stage.id.split('/', 1)[1]}"] = res.get("quarantined", 0)
        elif stage.kind == "extract" and res:
            quarantine[f"cache {stage.id.split('/', 1)[1]}"] = res.get("quarantined_model", 0)
    stages = [{k: r.get(k) for k in ("id", "kind", "status", "reused", "wall_seconds", "error")} for r in records.values() if r["id"] != "report"]
    skipped = list(plan.skipped) + [
        {"dataset": r["id"].split("/")[1], "task": r["id"].split("/")[3], "reason": r.get("error") or ""}
        for r in records.values() if r["kind"] == "probe" and r["status"] == "skipped"
    ]
    return {
        "title": config.report.title, "study": config.name, "out": plan.out, "split": config.report.split,
        "models": models, "probes": probes, "cka": cka, "stages": stages, "skipped": skipped,
        "quarantine": quarantine, "versions": versions(), "config_text": getattr(plan, "config_text", ""),
    }
