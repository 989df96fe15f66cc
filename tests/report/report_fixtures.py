"""Small result tables in the contract's schemas (probe metrics, layer weights, CKA matrices) for report tests.

The numbers are built to show (or, with ``shape="contradict"``, to contradict) the paper's findings,
so the tests can check that the findings follow the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from layerlab.cka.tables import write_matrix

MODELS = {
    "fbank": {"label": "FBANK", "family": "baseline", "baseline": True, "layers": ["fbank"]},
    "hubert": {"label": "HuBERT-mini", "family": "speech_ssl", "layers": ["cnn", "t1", "t2", "t3", "t4", "t5"]},
    "wavlm": {"label": "WavLM-mini", "family": "speech_ssl", "layers": ["cnn", "t1", "t2", "t3", "t4", "t5"]},
    "ecapa": {"label": "ECAPA", "family": "speaker", "layers": ["fbank_in", "block1", "block2", "block3", "mfa", "embedding"]},
    "dino": {"label": "DINO", "family": "speaker", "layers": ["fbank_in", "block1", "block2", "block3", "mfa", "embedding"]},
}
#: weighted-sum test scores per model: (pr PER, ks acc, sid acc, asv EER)
SCORES = {
    "fbank": (0.60, 0.40, 0.30, 0.30),
    "hubert": (0.20, 0.90, 0.55, 0.12),
    "wavlm": (0.15, 0.92, 0.80, 0.05),
    "ecapa": (0.45, 0.60, 0.95, 0.02),
    "dino": (0.50, 0.55, 0.70, 0.08),
}
HIGHER = {"per": False, "accuracy": True, "eer": False}


def _row(model: str, task: str, probe: str, split: str, metric: str, value: float, half: float = 0.01) -> dict[str, Any]:
    return {"model": f"spec:{model}", "task": task, "probe": probe, "split": split, "metric": metric, "value": value,
            "ci_low": value - half, "ci_high": value + half, "n": 200, "higher_is_better": HIGHER[metric]}


def pr_profile(model: str, n: int, shape: str) -> np.ndarray:
    """PER per layer: speech-SSL falls to a minimum in the upper layers; speaker models dip early then rise."""
    x = np.linspace(0, 1, n)
    family = MODELS[model]["family"]
    if shape == "contradict":
        return 0.6 - 0.3 * x if family == "speaker" else 0.3 + 0.3 * x
    if family == "speech_ssl":
        return 0.6 - 0.5 * np.clip(x / 0.8, 0, 1) + 0.05 * (x > 0.9)
    return 0.55 - 0.25 * np.exp(-((x - 0.2) ** 2) / 0.02) + 0.25 * x


def write_study_results(root: Path, shape: str = "paper", scores: dict[str, tuple[float, ...]] | None = None) -> dict[str, Any]:
    """Write per-(model, task) probe folders and CKA tables under ``root``; returns a study index for build_report."""
    scores = scores or SCORES
    probes, cka = [], []
    for model, info in MODELS.items():
        per, ks, sid, eer = scores[model]
        for task, metric, value in (("pr", "per", per), ("ks", "accuracy", ks), ("sid", "accuracy", sid), ("asv", "eer", eer)):
            rows = []
            for split, shift in (("dev", -0.01), ("test", 0.0)):
                rows.append(_row(model, task, "weighted_sum", split, metric, value + shift))
                if task == "pr":
                    for layer, v in zip(info["layers"], pr_profile(model, len(info["layers"]), shape)):
                        rows.append(_row(model, task, layer, split, metric, float(v) + shift, 0.02))
                if task == "asv":
                    rows.append({**_row(model, task, "weighted_sum", split, "eer", value + shift), "metric": "min_dcf", "value": 0.5, "ci_low": 0.45, "ci_high": 0.55, "higher_is_better": False})
            d = root / "probe" / model / task
            d.mkdir(parents=True)
            pd.DataFrame(rows).to_parquet(d / "metrics.parquet")
            n = len(info["layers"])
            depth = np.linspace(0, 1, n)
            centre = {"pr": 0.8, "ks": 0.7, "sid": 0.2, "asv": 0.25}[task] if info["family"] == "speech_ssl" else 0.5
            w = np.exp(-((depth - centre) ** 2) / 0.05)
            pd.DataFrame({"model": f"spec:{model}", "task": task, "layer": info["layers"], "weight": np.log(w + 1e-9),
                          "normalized_weight": w / w.sum()}).to_parquet(d / "layer_weights.parquet")
            probes.append({"dataset": "synth", "model": model, "task": task, "dir": str(d), "metrics": str(d / "metrics.parquet"),
                           "layer_weights": str(d / "layer_weights.parquet")})
    rng = np.random.default_rng(0)
    names = list(MODELS)
    for m in names:
        layers = MODELS[m]["layers"]
        n = len(layers)
        mat = np.exp(-np.abs(np.subtract.outer(range(n), range(n))) / 2.0)
        url = str(root / "cka" / "within" / m / "cka_biased_utterance.parquet")
        write_matrix(url, mat, layers, layers, ci_low=mat - 0.02, ci_high=np.minimum(mat + 0.02, 1))
        cka.append({"dataset": "synth", "mode": "within", "models": [m], "level": "utterance", "estimator": "biased", "tables": [url], "bootstrap": 20, "frames": 100})
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            la, lb = MODELS[a]["layers"], MODELS[b]["layers"]
            mat = rng.uniform(0.2, 0.4, size=(len(la), len(lb)))
            fa, fb = MODELS[a]["family"], MODELS[b]["family"]
            if {fa, fb} == {"speaker", "speech_ssl"}:
                spk_rows = fa == "speaker"
                s = np.linspace(1, 0, len(la) if spk_rows else len(lb)) if shape == "paper" else np.linspace(0, 1, len(la) if spk_rows else len(lb))
                mat = 0.1 + 0.7 * (s[:, None] if spk_rows else s[None, :]) * np.ones_like(mat)
            urls = []
            for tag, (na, nb, mm) in {"a_a": (la, la, np.eye(len(la))), "b_b": (lb, lb, np.eye(len(lb))), "a_b": (la, lb, mat)}.items():
                url = str(root / "cka" / "across" / f"{a}__{b}" / f"cka_biased_utterance_{tag}.parquet")
                write_matrix(url, mm, na, nb, ci_low=mm - 0.03, ci_high=mm + 0.03)
                urls.append(url)
            cka.append({"dataset": "synth", "mode": "across", "models": [a, b], "level": "utterance", "estimator": "biased", "tables": urls, "bootstrap": 20, "frames": 100})
    stages = [{"id": "extract/synth/hubert", "kind": "extract", "status": "done", "reused": False, "wall_seconds": 3.2, "error": None},
              {"id": "probe/synth/wavlm/pr", "kind": "probe", "status": "done", "reused": True, "wall_seconds": 1.0, "error": None}]
    return {"title": "test study", "study": "t", "out": str(root), "split": "test", "models": MODELS, "probes": probes, "cka": cka,
            "stages": stages, "skipped": [{"dataset": "synth", "task": "ic", "reason": "dataset 'synth' has no ic labels"}],
            "quarantine": {"corpus synth": 2}, "versions": {"layerlab": "0.1.0"}, "config_text": "name: t\n"}
