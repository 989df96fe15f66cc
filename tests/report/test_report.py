"""The report from result tables only: the model x task table, findings that follow the numbers, files written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from layerlab.report import build_report
from layerlab.report.findings import compute_findings
from layerlab.report.load import load_cka, load_metrics, load_weights
from layerlab.report.tables import model_task_table
from report_fixtures import MODELS, write_study_results


def _findings(index: dict[str, Any]) -> dict[str, Any]:
    metrics, weights = load_metrics(index["probes"]), load_weights(index["probes"])
    maps = [load_cka(e, index["models"]) for e in index["cka"]]
    return {f.id: f for f in compute_findings(metrics, weights, maps, index["models"], "test")}


def test_model_task_table_marks_best_per_task_and_keeps_baseline_first(study_results: dict[str, Any]) -> None:
    table = model_task_table(load_metrics(study_results["probes"]), MODELS)
    test = table[table["split"] == "test"]
    best = {t: set(g.loc[g["best"], "model"]) for t, g in test.groupby("task")}
    assert best == {"pr": {"wavlm"}, "ks": {"wavlm"}, "sid": {"ecapa"}, "asv": {"ecapa"}}  # lower PER/EER wins, higher accuracy wins
    assert set(test.loc[test["task"] == "asv", "metric"]) == {"eer"}  # primary metric, min_dcf kept out of the table
    assert table["model"].iloc[0] == "fbank"  # baseline row first
    assert set(table["model"]) == set(MODELS)  # study names, not the cache specs
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()


def test_findings_supported_when_the_numbers_show_them(study_results: dict[str, Any]) -> None:
    f = _findings(study_results)
    assert f["content_vs_speaker"].verdict == "supported", f["content_vs_speaker"].sentence
    assert re.search(r"ρ = [+-]0\.00 \(95% CI \[[+-]\d\.\d\d, [+-]\d\.\d\d\], n = 4 models", f["content_vs_speaker"].sentence)
    assert f["ssl_deep_content"].verdict == "supported", f["ssl_deep_content"].evidence
    assert any(e.startswith("HuBERT-mini (speech_ssl): PR peaks at t4") for e in f["ssl_deep_content"].evidence)
    assert f["speaker_discard"].verdict == "supported", f["speaker_discard"].evidence


def test_findings_not_supported_when_the_numbers_contradict(tmp_path: Path) -> None:
    aligned = {"fbank": (0.6, 0.4, 0.3, 0.3), "hubert": (0.2, 0.9, 0.9, 0.03), "wavlm": (0.3, 0.8, 0.8, 0.06),
               "ecapa": (0.4, 0.7, 0.7, 0.09), "dino": (0.5, 0.6, 0.6, 0.12)}  # content and speaker rank the models alike
    f = _findings(write_study_results(tmp_path, shape="contradict", scores=aligned))
    assert f["content_vs_speaker"].verdict == "not supported", f["content_vs_speaker"].sentence
    assert "related" in f["content_vs_speaker"].sentence
    assert f["ssl_deep_content"].verdict == "not supported"  # PR best at the first layer of speech-SSL models
    assert f["speaker_discard"].verdict == "not supported"  # speaker models' PR keeps improving; late layers most SSL-like


def test_findings_say_not_supported_without_data() -> None:
    empty = pd.DataFrame(columns=["model", "task", "probe", "split", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better"])
    f = compute_findings(empty, pd.DataFrame(columns=["model", "task", "layer", "weight", "normalized_weight"]), [], MODELS, "test")
    assert [x.verdict for x in f] == ["not supported"] * 3
    assert all(x.sentence.startswith("Not supported: ") for x in f)


def test_build_report_writes_one_self_contained_html_with_pngs_and_tables(study_results: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = build_report(study_results, str(out))
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens from a bucket or a laptop
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(images) == len(pngs) == 5 + 1 + 2  # weights per model, the PR profile, CKA within + across
    assert {"layer_weights_hubert.png", "profile_pr.png", "cka_within_synth_utterance.png", "cka_across_synth_utterance.png"} <= set(pngs)
    for name in ("model_task", "probe_metrics", "layer_weights", "cka"):
        assert not pd.read_parquet(out / "tables" / f"{name}.parquet").empty
    cka = pd.read_parquet(out / "tables" / "cka.parquet")
    assert {"model_a", "model_b", "layer_a", "layer_b", "value", "ci_low", "ci_high", "level", "estimator"} <= set(cka.columns)
    assert set(cka.loc[cka["model_a"] == "hubert", "layer_a"]) == set(MODELS["hubert"]["layers"])  # layer names kept
    assert len(re.findall(r"<tr class='baseline' data-model='fbank'>", page)) == 1
    assert page.count("class='best'") == 4  # one best model per task
    assert "dataset &#x27;synth&#x27; has no ic labels" in page  # skipped tasks listed with their reason
    assert [f["verdict"] for f in summary["findings"]] == ["supported"] * 3
