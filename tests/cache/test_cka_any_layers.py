"""Any layers at any level: utterance-level layers dropped at frame level (noted), layer selection, cross-rate
frame-level CKA with the alignment recorded, utterance level pooled from a frames-only cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.cache_builder import build_cache_inline
from layerlab.cka.pipeline import CKAJob, run_cka
from layerlab.cka.tables import read_matrix


@pytest.fixture(scope="module")
def ge2e_cache(aligned_corpus, tmp_path_factory) -> str:
    from layerlab.models import load

    return build_cache_inline(load("ge2e", "cpu"), aligned_corpus[0], str(tmp_path_factory.mktemp("ge2e") / "c"))


def test_frame_level_drops_utterance_level_layers_with_a_note(ge2e_cache, tmp_path: Path) -> None:
    """GE2E's `embedding` once made `--level frame` refuse the whole cache."""
    summary = run_cka(CKAJob(ge2e_cache, level="frame"), str(tmp_path / "o"))
    mat, names, _, meta = read_matrix(summary["tables"][0])
    assert names == ["lstm1", "lstm2", "lstm3"] and np.allclose(np.diag(mat), 1.0)
    assert any("embedding" in n and "left out" in n for n in summary["notes"])
    assert summary["n_utterances"] == 12 and summary["n_frames"] > 12 * 40
    picked = run_cka(CKAJob(ge2e_cache, level="frame", layers_a="lstm1,lstm3"), str(tmp_path / "p"))
    assert read_matrix(picked["tables"][0])[1] == ["lstm1", "lstm3"]


def test_cross_model_frame_level_records_the_alignment(ge2e_cache, fbank_cache, wavlm_cache, tmp_path: Path) -> None:
    same_rate = run_cka(CKAJob(ge2e_cache, fbank_cache, level="frame"), str(tmp_path / "gf"))  # GE2E x FBANK, both 100 Hz
    align = same_rate["alignment"]
    assert align["common_rate_hz"] == 100.0 and align["pool_factor"]["fbank"] == 1
    assert align["frames_dropped"]["lstm1"] > 0 and "note" in align  # centred vs windowed frames: counts differ
    cross, names_a, names_b, _ = read_matrix(same_rate["tables"][-1])
    assert names_a == ["lstm1", "lstm2", "lstm3"] and names_b == ["fbank"] and np.isfinite(cross).all()
    mixed = run_cka(CKAJob(wavlm_cache, fbank_cache, level="frame"), str(tmp_path / "wf"))  # 50 Hz x 100 Hz
    assert mixed["alignment"]["common_rate_hz"] == 50.0 and mixed["alignment"]["pool_factor"]["fbank"] == 2
    heat = json.loads((tmp_path / "wf" / "summary.json").read_text())
    assert heat["heatmap"].endswith(".png") and Path(heat["heatmap"]).stat().st_size > 5000


def test_utterance_level_from_a_frames_only_cache_equals_the_pooled_tier(aligned_corpus, fbank_cache, tmp_path: Path) -> None:
    from layerlab.models import load

    frames_only = build_cache_inline(load("fbank", "cpu"), aligned_corpus[0], str(tmp_path / "fo"), tier="frames")
    pooled = run_cka(CKAJob(fbank_cache, level="utterance"), str(tmp_path / "a"))
    from_frames = run_cka(CKAJob(frames_only, level="utterance"), str(tmp_path / "b"))
    np.testing.assert_allclose(read_matrix(from_frames["tables"][0])[0], read_matrix(pooled["tables"][0])[0], atol=1e-3)
    assert from_frames["n_utterances"] == pooled["n_utterances"] == 12


def test_heatmaps_name_layers_and_titles_carry_estimator_level_counts_and_models(ge2e_cache, fbank_cache, tmp_path: Path, monkeypatch) -> None:
    """Heat-map axes showed layer indices; summaries' "frames" held utterance counts (and 0 for minibatch)."""
    from layerlab.cka import heatmap

    drawn: list = []
    real = heatmap.write_heatmaps

    def recording(url, panels, *args, **kwargs):  # the real PNG is still written; the panels are kept to inspect the figure
        drawn.append(list(panels))
        return real(url, panels, *args, **kwargs)

    monkeypatch.setattr(heatmap, "write_heatmaps", recording)
    summary = run_cka(CKAJob(ge2e_cache, fbank_cache, level="frame"), str(tmp_path / "cross"))
    fig = heatmap.heatmap_figure(drawn[-1])
    cross = fig.axes[2]  # A x B: ge2e layers down, fbank across
    assert [t.get_text() for t in cross.get_yticklabels()] == ["lstm1", "lstm2", "lstm3"]
    assert [t.get_text() for t in cross.get_xticklabels()] == ["fbank"]
    assert cross.get_ylabel() == "ge2e layer" and cross.get_xlabel() == "fbank layer"
    n = summary["n_utterances"]
    assert cross.get_title() == f"ge2e vs fbank\nbiased CKA, frame level, N={n} utt, {summary['n_frames']} frames"
    assert n == 12 and summary["n_frames"] > 12 * 40  # utterances and frames, each named for what it counts
    mini = run_cka(CKAJob(fbank_cache, level="frame", estimator="minibatch", batch_size=64), str(tmp_path / "mini"))
    assert mini["n_utterances"] == 12 and mini["n_frames"] > 0 and "minibatch CKA, frame level, N=12 utt" in drawn[-1][0].title
