"""The "what each layer encodes" panel and the training-free line of evidence in findings 2 and 3 (result tables only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from layerlab.report import build_report
from layerlab.report.encodes import agreement_table, encodes_table, load_profiles, training_free_profiles
from layerlab.report.findings import compute_findings
from layerlab.report.load import load_cka, load_metrics, load_replicates, load_weights
from report_fixtures import GROUPS, write_study_results


def _phone_accuracy(model: str, layers: list[str], shape: str) -> np.ndarray:
    x = np.linspace(0, 1, len(layers))
    if shape == "deep":  # rises with depth
        return 0.3 + 0.5 * x
    if shape == "early":  # peaks early, then falls
        return 0.7 - 0.5 * x
    return np.full(len(layers), 0.5) + 0.001 * np.cos(5 * x)


def write_profiles(root: Path, index: dict[str, Any], shapes: dict[str, str]) -> dict[str, Any]:
    """Profile tables (dev and test phone accuracy with speaker replicates, a speaker reference) for the models in ``shapes``."""
    rng = np.random.default_rng(3)
    entries = []
    for model, shape in shapes.items():
        info = index["models"][model]
        layers = [n for n in info["layers"] if info.get("layer_levels", {}).get(n, "frame") == "frame"]
        rows, reps = [], []
        acc = _phone_accuracy(model, layers, shape)
        for i, (layer, a) in enumerate(zip(layers, acc)):
            for split, shift in (("dev", 0.01), ("test", 0.0)):
                rows.append({"model": model, "reference": "phone", "level": "frame", "layer": layer, "layer_index": i, "measure": "accuracy",
                             "value": a + shift, "ci_low": a + shift - 0.03, "ci_high": a + shift + 0.03, "ci_method": "jackknife", "n": 5000,
                             "n_groups": len(GROUPS), "grouping": "speaker", "split": split, "chance": 0.1, "ridge": 0.01, "note": ""})
            rows.append({**rows[-1], "measure": "cca_mean", "split": "all", "value": a / 2})
            shared = rng.normal(0, 0.002, len(GROUPS))
            reps += [{"model": model, "reference": "phone", "level": "frame", "layer": layer, "measure": "accuracy", "split": "test",
                      "group": g, "value": a + e} for g, e in zip(GROUPS, shared)]
        for i, layer in enumerate(info["layers"]):
            rows.append({**rows[0], "reference": "speaker", "level": "utterance", "layer": layer, "layer_index": i, "split": "test", "value": 0.9})
        d = root / "profile" / model
        d.mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(d / "profile.parquet")
        pd.DataFrame(reps).to_parquet(d / "profile_replicates.parquet")
        entries.append({"dataset": "synth", "model": model, "table": str(d / "profile.parquet"), "replicates": str(d / "profile_replicates.parquet"),
                        "references": ["phone", "speaker"], "skipped": [{"reference": "word_span", "reason": "word_span: no word alignments"}], "notes": []})
    return {**index, "profiles": entries}


def _findings(index: dict[str, Any], drop_layer_probes: bool = False) -> dict[str, Any]:
    metrics, weights = load_metrics(index["probes"]), load_weights(index["probes"])
    if drop_layer_probes:  # no SGD per-layer PR probes: the training-free line decides alone
        metrics = metrics[~((metrics["task"] == "pr") & (metrics["probe"] != "weighted_sum"))]
    maps = [] if drop_layer_probes else [load_cka(e, index["models"]) for e in index["cka"]]
    tf, tf_reps = training_free_profiles(*load_profiles(index.get("profiles", [])), index["models"])
    return {f.id: f for f in compute_findings(metrics, weights, maps, index["models"], "test", load_replicates(index["probes"]), tf, tf_reps)}


def test_training_free_profiles_are_a_named_second_line_of_evidence(tmp_path: Path) -> None:
    base = write_study_results(tmp_path / "r")
    agree = write_profiles(tmp_path / "a", base, {"hubert": "deep", "wavlm": "deep", "ecapa": "early", "dino": "early"})
    f = _findings(agree)
    assert f["ssl_deep_content"].verdict == "supported" and f["speaker_discard"].verdict == "supported"
    assert f["ssl_deep_content"].numbers["evidence"] == ["SGD per-layer PR probes", "training-free phone profiles (closed-form held-out accuracy)"]
    assert "evidence used: SGD per-layer PR probes, training-free phone profiles" in f["ssl_deep_content"].sentence
    assert "CKA speaker-late x SSL deep vs shallow" in f["speaker_discard"].numbers["evidence"]
    alone = _findings(agree, drop_layer_probes=True)
    assert alone["ssl_deep_content"].verdict == "supported"
    assert alone["ssl_deep_content"].numbers["evidence"] == ["training-free phone profiles (closed-form held-out accuracy)"]
    disagree = write_profiles(tmp_path / "d", base, {"hubert": "early", "wavlm": "early"})
    assert _findings(disagree)["ssl_deep_content"].verdict == "inconclusive"  # the two lines disagree
    assert _findings(base)["ssl_deep_content"].numbers["evidence"] == ["SGD per-layer PR probes"]  # no profiles: the SGD line only


def test_encodes_panel_puts_training_free_beside_sgd_with_layer_names(tmp_path: Path) -> None:
    index = write_profiles(tmp_path / "p", write_study_results(tmp_path / "r"), {"hubert": "deep", "ecapa": "early"})
    metrics = load_metrics(index["probes"])
    table = encodes_table(load_profiles(index["profiles"])[0], metrics, index["models"])
    hub = table[(table["model"] == "hubert") & (table["reference"] == "phone")]
    assert list(hub["layer"]) == index["models"]["hubert"]["layers"] and (hub["sgd_task"] == "pr").all() and hub["sgd_metric"].iloc[0] == "1 − PER"
    agree = agreement_table(table).set_index(["model", "reference"])
    assert agree.loc[("hubert", "phone"), "spearman"] > 0.8  # both profiles rise with depth
    assert agree.loc[("hubert", "phone"), "best_training_free"] == "t5"
    summary = build_report(index, str(tmp_path / "report"))
    page = Path(summary["html"]).read_text()
    assert "What each layer encodes" in page and "encodes-agreement" in page and "word_span: no word alignments" in page
    assert {"encodes_hubert.png", "encodes_ecapa.png"} <= {Path(f).name for f in summary["figures"]}
    assert pd.read_parquet(tmp_path / "report" / "tables" / "encodes.parquet")["model"].nunique() == 2
    bare = build_report(write_study_results(tmp_path / "r2"), str(tmp_path / "report2"))
    assert "No training-free profiles in this study" in Path(bare["html"]).read_text()
