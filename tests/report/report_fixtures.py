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

SPEAKER_LEVELS = {"fbank_in": "frame", "block1": "frame", "block2": "frame", "block3": "frame", "mfa": "frame", "embedding": "utterance"}
MODELS = {
    "fbank": {"label": "FBANK", "family": "baseline", "baseline": True, "layers": ["fbank"], "layer_levels": {"fbank": "frame"}},
    "hubert": {"label": "HuBERT-mini", "family": "speech_ssl", "layers": ["cnn", "t1", "t2", "t3", "t4", "t5"]},
    "wavlm": {"label": "WavLM-mini", "family": "speech_ssl", "layers": ["cnn", "t1", "t2", "t3", "t4", "t5"]},
    "ecapa": {"label": "ECAPA", "family": "speaker", "layers": list(SPEAKER_LEVELS), "layer_levels": SPEAKER_LEVELS, "trained": True,
              "training_speakers": [f"train{i}" for i in range(20)]},
    "dino": {"label": "DINO", "family": "speaker", "layers": list(SPEAKER_LEVELS), "layer_levels": SPEAKER_LEVELS, "trained": True,
             "training_speakers": [f"train{i}" for i in range(20)]},
    "hubert_rand": {"label": "HuBERT-mini (random init)", "family": "speech_ssl", "control_of": "hubert", "layers": ["cnn", "t1", "t2", "t3", "t4", "t5"]},
    "planted": {"label": "Planted", "family": "planted", "planted": True, "layers": ["content", "speaker", "noise", "mix"],
                "expect": {"pr_best": "content", "sid_best": "speaker", "chance_layers": ["noise"], "chance": {"sid": 0.1}, "cka_zero": ["noise"]}},
}
for _m in ("hubert", "wavlm", "hubert_rand"):
    MODELS[_m]["layer_levels"] = {n: "frame" for n in MODELS[_m]["layers"]}
#: weighted-sum test scores per model: (pr PER, ks acc, sid acc, asv EER)
SCORES = {
    "fbank": (0.60, 0.40, 0.30, 0.30),
    "hubert": (0.20, 0.90, 0.55, 0.12),
    "wavlm": (0.15, 0.92, 0.80, 0.05),
    "ecapa": (0.45, 0.60, 0.95, 0.02),
    "dino": (0.50, 0.55, 0.70, 0.08),
    "hubert_rand": (0.90, 0.20, 0.10, 0.40),
    "planted": (0.30, 0.50, 0.60, 0.20),
}
HIGHER = {"per": False, "accuracy": True, "eer": False}
GROUPS = [f"spk{i:02d}" for i in range(12)]
CI_METHOD = "logit-scale cluster jackknife"


def _row(model: str, task: str, probe: str, split: str, metric: str, value: float, half: float = 0.01, groups: int = len(GROUPS)) -> dict[str, Any]:
    return {"model": f"spec:{model}", "task": task, "probe": probe, "split": split, "metric": metric, "value": value,
            "ci_low": value - half, "ci_high": value + half, "n": 200, "higher_is_better": HIGHER[metric],
            "n_groups": groups, "grouping": "speaker", "ci_method": CI_METHOD, "note": ""}


def pr_profile(model: str, n: int, shape: str) -> np.ndarray:
    """PER per frame-level layer: speech-SSL falls to a minimum in the upper layers; speaker models dip early then rise."""
    x = np.linspace(0, 1, n)
    family = MODELS[model]["family"]
    if model == "hubert_rand":
        return np.full(n, 0.9)
    if shape == "flat":
        return 0.5 + 0.002 * np.cos(7 * x)
    if shape == "contradict":
        return 0.6 - 0.3 * x if family == "speaker" else 0.3 + 0.3 * x
    if family == "speech_ssl":
        return 0.6 - 0.5 * np.clip(x / 0.8, 0, 1) + 0.05 * (x > 0.9)
    return 0.55 - 0.25 * np.exp(-((x - 0.25) ** 2) / 0.02) + 0.25 * x


def _per_layer(model: str, task: str, shape: str) -> dict[str, float]:
    """Per-layer values of one model x task (PR for every model with layers; SID for the planted model)."""
    info = MODELS[model]
    if model == "planted":
        return {"pr": {"content": 0.2, "speaker": 0.8, "noise": 0.97, "mix": 0.45},
                "sid": {"content": 0.2, "speaker": 0.9, "noise": 0.1, "mix": 0.6}}.get(task, {})
    if task != "pr" or len(info["layers"]) < 2:
        return {}
    frames = [n for n in info["layers"] if info["layer_levels"].get(n) == "frame"]
    out = dict(zip(frames, map(float, pr_profile(model, len(frames), shape))))
    out.update({n: 0.99 for n in info["layers"] if n not in frames})  # a CTC head on one repeated vector: PER ~ 100 %
    return out


def write_study_results(root: Path, shape: str = "paper", scores: dict[str, tuple[float, ...]] | None = None, *, old: bool = False,
                        leak: bool = False, capped: bool = False, planted_noise_cka: float = 0.01) -> dict[str, Any]:
    """Write per-(model, task) probe folders and CKA tables under ``root``; returns a study index for build_report.

    ``shape``: "paper" (numbers that show the findings), "contradict" (the opposite), "flat" (effects within noise).
    ``old``: tables as main wrote them before CONTRACTS (no group columns, replicates, contribution, convergence).
    ``leak``: the probes' test speakers overlap the trained models' training speakers. ``capped``: hubert's weighted sums hit the epoch cap.
    ``planted_noise_cka``: the planted noise layer's debiased CKA with the other layers (≈ 0 passes the instrument check).
    """
    scores = scores or SCORES
    noise = 0.03 if shape == "flat" else 0.0015
    rng = np.random.default_rng(1)
    probes, cka = [], []
    for model, info in MODELS.items():
        per, ks, sid, eer = scores[model]
        for task, metric, value in (("pr", "per", per), ("ks", "accuracy", ks), ("sid", "accuracy", sid), ("asv", "eer", eer)):
            rows, reps = [], []
            layer_values = _per_layer(model, task, shape)
            shared = rng.normal(0, 0.01, len(GROUPS))
            for split, shift in (("dev", -0.01), ("test", 0.0)):
                rows.append(_row(model, task, "weighted_sum", split, metric, value + shift))
                probes_here = [("weighted_sum", value + shift)] + [(layer, v + shift) for layer, v in layer_values.items()]
                for layer, v in layer_values.items():
                    rows.append(_row(model, task, layer, split, metric, v + shift, 0.02))
                for probe, v in probes_here:
                    own = rng.normal(0, noise, len(GROUPS))
                    reps += [{"model": f"spec:{model}", "task": task, "probe": probe, "split": split, "metric": metric, "group": g,
                              "value": v + a + b} for g, a, b in zip(GROUPS, shared, own)]
                if task == "asv":
                    rows.append({**_row(model, task, "weighted_sum", split, "eer", value + shift), "metric": "min_dcf", "value": 0.5, "ci_low": 0.45, "ci_high": 0.55, "higher_is_better": False})
            d = root / "probe" / model / task
            d.mkdir(parents=True)
            frame = pd.DataFrame(rows)
            if old:
                frame = frame.drop(columns=["n_groups", "grouping", "ci_method", "note"])
            frame.to_parquet(d / "metrics.parquet")
            if not old:
                pd.DataFrame(reps).to_parquet(d / "replicates.parquet")
            n = len(info["layers"])
            depth = np.linspace(0, 1, n)
            centre = {"pr": 0.8, "ks": 0.7, "sid": 0.2, "asv": 0.25}[task] if info["family"] == "speech_ssl" else 0.5
            w = np.exp(-((depth - centre) ** 2) / 0.05)
            weights = pd.DataFrame({"model": f"spec:{model}", "task": task, "layer": info["layers"], "weight": w / w.sum(),
                                    "normalized_weight": (w ** 2) / (w ** 2).sum()})
            if not old:
                weights["contribution"] = weights["normalized_weight"]
            weights.to_parquet(d / "layer_weights.parquet")
            entry = {"dataset": "synth", "model": model, "task": task, "dir": str(d), "metrics": str(d / "metrics.parquet"),
                     "layer_weights": str(d / "layer_weights.parquet")}
            if not old:
                stop = "max_epochs" if capped and model == "hubert" else "patience"
                entry["replicates"] = str(d / "replicates.parquet")
                entry["convergence"] = {p: {"stopped_by": stop if p == "weighted_sum" else "patience", "epochs": 40, "best_epoch": 30, "max_epochs": 40}
                                        for p in ["weighted_sum", *layer_values]}
                entry["test_speakers"] = sorted(["train3", "train4"] if leak else GROUPS)
            probes.append(entry)
    rng = np.random.default_rng(0)
    names = list(MODELS)
    for m in names:
        layers = MODELS[m]["layers"]
        n = len(layers)
        mat = np.exp(-np.abs(np.subtract.outer(range(n), range(n))) / 2.0)
        estimator = "debiased" if m == "planted" else "biased"
        if m == "planted":  # the noise layer shares nothing with the others: debiased CKA ~ 0 (planted_noise_cka sets it)
            k = layers.index("noise")
            mat[k, :] = mat[:, k] = planted_noise_cka
            mat[k, k] = 1.0
        url = str(root / "cka" / "within" / m / f"cka_{estimator}_utterance.parquet")
        write_matrix(url, mat, layers, layers, ci_low=mat - 0.02, ci_high=np.minimum(mat + 0.02, 1))
        cka.append({"dataset": "synth", "mode": "within", "models": [m], "level": "utterance", "estimator": estimator, "tables": [url], "bootstrap": 20, "frames": 100})
    names = [n for n in names if n in ("fbank", "hubert", "wavlm", "ecapa", "dino")]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            la, lb = MODELS[a]["layers"], MODELS[b]["layers"]
            mat = rng.uniform(0.2, 0.4, size=(len(la), len(lb)))
            fa, fb = MODELS[a]["family"], MODELS[b]["family"]
            if {fa, fb} == {"speaker", "speech_ssl"}:
                spk_rows = fa == "speaker"
                s_depth = np.linspace(0, 1, len(la) if spk_rows else len(lb))
                l_depth = np.linspace(0, 1, len(lb) if spk_rows else len(la))
                if shape == "paper":  # late speaker layers unlike SSL deep layers, like SSL shallow ones
                    grid = 0.1 + 0.7 * (1 - np.outer(s_depth, l_depth))
                elif shape == "contradict":  # late speaker layers most like SSL deep layers
                    grid = 0.1 + 0.7 * np.outer(s_depth, l_depth)
                else:  # late speaker layers unlike every SSL layer alike (the control shows no content-specific drop)
                    grid = 0.1 + 0.7 * (1 - s_depth)[:, None] * np.ones((len(s_depth), len(l_depth)))
                mat = grid if spk_rows else grid.T
            urls, rep_urls = [], []
            for tag, (na, nb, mm) in {"a_a": (la, la, np.eye(len(la))), "b_b": (lb, lb, np.eye(len(lb))), "a_b": (la, lb, mat)}.items():
                url = str(root / "cka" / "across" / f"{a}__{b}" / f"cka_biased_utterance_{tag}.parquet")
                write_matrix(url, mm, na, nb, ci_low=mm - 0.03, ci_high=mm + 0.03)
                urls.append(url)
                ia, ib = np.meshgrid(range(len(na)), range(len(nb)), indexing="ij")
                rep = pd.DataFrame([{"layer_a": na[i], "layer_b": nb[j], "group": g, "value": float(mm[i, j]) + float(e) + float(rng.normal(0, 0.3 * noise))}
                                    for g, e in zip(GROUPS, rng.normal(0, 0.01, len(GROUPS))) for i, j in zip(ia.ravel(), ib.ravel())])
                rep_url = url.replace(".parquet", "_replicates.parquet")
                rep.to_parquet(rep_url)
                rep_urls.append(rep_url)
            entry = {"dataset": "synth", "mode": "across", "models": [a, b], "level": "utterance", "estimator": "biased", "tables": urls, "bootstrap": 20, "frames": 100}
            if not old:
                entry.update({"replicates": rep_urls, "group_by": "speaker"})
            cka.append(entry)
    stages = [{"id": "extract/synth/hubert", "kind": "extract", "status": "done", "reused": False, "wall_seconds": 3.2, "error": None},
              {"id": "probe/synth/wavlm/pr", "kind": "probe", "status": "done", "reused": True, "wall_seconds": 1.0, "error": None}]
    return {"title": "test study", "study": "t", "out": str(root), "split": "test", "models": MODELS, "probes": probes, "cka": cka,
            "stages": stages, "skipped": [{"dataset": "synth", "task": "ic", "reason": "dataset 'synth' has no ic labels"}],
            "quarantine": {"corpus synth": 2}, "versions": {"layerlab": "0.1.0"}, "config_text": "name: t\n", "allow_overlap": leak}


def many_models_metrics(n: int, rho: float, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Weighted-sum test metrics of ``n`` learned models whose content and speaker abilities have latent correlation ``rho``.

    Content tasks PR/KS and speaker tasks SID/ASV each read their ability plus small task noise, so the
    rank correlation of the composites is close to the latent one (Spearman ≈ (6/π)·asin(ρ/2)).
    """
    rng = np.random.default_rng(seed)
    latent = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    rows, models = [], {}
    for k, (c, s) in enumerate(latent):
        name = f"m{k:02d}"
        models[name] = {"label": name, "family": "speech_ssl", "layers": ["l0"]}
        for task, metric, v in (("pr", "per", 0.5 - 0.1 * c), ("ks", "accuracy", 0.5 + 0.1 * c), ("sid", "accuracy", 0.5 + 0.1 * s), ("asv", "eer", 0.2 - 0.05 * s)):
            v = float(v + rng.normal(0, 0.005))
            rows.append({**_row(name, task, "weighted_sum", "test", metric, v), "model": name})
    return pd.DataFrame(rows), models
