"""The embedded default job end to end on a tiny corpus: corpus -> caches on Ray -> CKA -> EERs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from layerlab.cka.tables import read_matrix
from layerlab.demo import DemoConfig, run_demo


def test_demo_runs_end_to_end_and_resumes(tmp_path: Path, ray_session: None) -> None:
    out = str(tmp_path / "demo")
    config = DemoConfig(speakers=6, models=["ge2e", "fbank"], concurrency=(1, 1))
    lines: list[str] = []
    summary = run_demo(out, config, say=lines.append)
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk["caches"] == summary["caches"]
    # GE2E is a real pretrained speaker encoder: its lstm layers separate synthetic voices far better than chance
    eer = summary["asv_eer_percent_by_layer"]["ge2e"]
    assert set(eer) == {"lstm1", "lstm2", "lstm3", "embedding"}
    assert min(eer.values()) < 35.0, eer
    frame = np.array(summary["frame_cka"]["ge2e:biased"])
    assert frame.shape == (3, 3) and np.allclose(np.diag(frame), 1.0) and np.allclose(frame, frame.T)
    mat, names_a, names_b, _ = read_matrix(summary["utterance_cka"]["tables"][-1])
    assert names_a == ["lstm1", "lstm2", "lstm3", "embedding"] and names_b == ["fbank"]
    assert np.all((mat >= 0) & (mat <= 1))
    assert Path(summary["utterance_cka"]["heatmap"]).stat().st_size > 5000
    assert (tmp_path / "demo" / "cka" / "frame_within.png").stat().st_size > 5000
    # a rerun reuses the corpus and every finished cache shard
    lines.clear()
    run_demo(out, config, say=lines.append)
    text = "\n".join(lines)
    assert "corpus: reusing" in text and "0 written" in text
