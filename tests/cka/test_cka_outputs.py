"""Parquet tables, heat maps, bootstrap CIs, cache reading and the ``layerlab cka`` command end to end."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cka_helpers import layer_stack
from typer.testing import CliRunner

from layerlab.cka import FeatureCKA, cka_matrix, pilot_shift
from layerlab.cka.bootstrap import bootstrap_cka
from layerlab.cka.heatmap import HeatmapPanel, render_heatmaps
from layerlab.cka.tables import read_matrix, write_matrix


def write_cache(root, names, dims, rate, utts, seed, tier="frames"):
    """A tiny activation cache in the planned layout (metadata.json + frames/ shards)."""
    rng = np.random.default_rng(seed)
    (root / tier).mkdir(parents=True)
    (root / "metadata.json").write_text(json.dumps({"model_spec": f"tiny:{root.name}", "layer_names": names, "dims": dims, "frame_rates_hz": [rate] * len(names)}))
    for shard in range(2):
        rows = {"id": [], "speaker": [], "num_frames": [], **{f"frames/{n}": [] for n in names}}
        for u in range(utts):
            t = int(rng.integers(5, 30)) * (2 if rate == 100 else 1)
            lat = rng.standard_normal((t, 4))
            rows["id"].append(f"utt-{shard}-{u}")
            rows["speaker"].append(f"spk{u % 3}")
            rows["num_frames"].append(t)
            for li, (n, d) in enumerate(zip(names, dims)):
                x = lat @ np.random.default_rng(li).standard_normal((4, d)) + rng.standard_normal((t, d)) * (0.5 + li) + 100.0
                rows[f"frames/{n}"].append(x.astype(np.float16).ravel().tolist())
        pq.write_table(pa.table(rows), root / tier / f"shard-{shard:05d}.parquet")
    return root


def test_matrix_parquet_round_trip_on_s3(s3_bucket):
    mat = np.array([[1.0, 0.5, 0.25], [0.5, 1.0, 0.75]])
    url = f"{s3_bucket}/out/cka.parquet"
    write_matrix(url, mat, ["l0", "l1"], ["m0", "m1", "m2"], estimator="biased")
    back, names_a, names_b, meta = read_matrix(url)
    np.testing.assert_array_equal(back, mat)
    assert names_b == ["m0", "m1", "m2"] and meta["estimator"] == "biased"


def test_heatmap_png_has_shared_scale():
    png = render_heatmaps([HeatmapPanel(np.eye(3), "a"), HeatmapPanel(np.full((3, 4), 0.5), "b")])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bootstrap_over_groups():
    layers = layer_stack(600, [5, 5], seed=8)
    shift = pilot_shift([x[:50] for x in layers])
    groups = []
    for g in range(12):
        acc = FeatureCKA([5, 5], shift=shift)
        acc.update([x[50 * g : 50 * (g + 1)] for x in layers])
        groups.append(acc)
    res = bootstrap_cka(groups, num_resamples=60, seed=1)
    np.testing.assert_allclose(res.point, cka_matrix(layers), atol=1e-12)
    assert res.low[0, 1] < res.point[0, 1] < res.high[0, 1]
    assert 0 < res.high[0, 1] - res.low[0, 1] < 0.3
    np.testing.assert_allclose(res.low[0, 0], 1.0)


def test_cli_two_caches_frame_level(tmp_path):
    from layerlab.cli import app

    a = write_cache(tmp_path / "wavlm", ["h0", "h1", "h2"], [6, 6, 6], 50, 8, seed=1)
    b = write_cache(tmp_path / "ecapa", ["e0", "e1"], [4, 5], 50, 8, seed=1)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["cka", "--a", str(a), "--b", str(b), "--out", str(out), "--estimator", "debiased", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    mat, names_a, names_b, meta = read_matrix(str(out / "cka_debiased_frame_a_b.parquet"))
    assert mat.shape == (3, 2) and names_b == ["e0", "e1"] and meta["model_b"] == "tiny:ecapa"
    table = pq.read_table(out / "cka_debiased_frame_a_b.parquet")
    assert "ci_low" in table.column_names
    within, *_ = read_matrix(str(out / "cka_debiased_frame_a_a.parquet"))
    np.testing.assert_allclose(np.diag(within), 1.0, atol=1e-12)
    assert (out / "cka_debiased_frame.png").stat().st_size > 5000


def test_cli_reports_bad_cache(tmp_path):
    from layerlab.cli import app

    result = CliRunner().invoke(app, ["cka", "--a", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "metadata.json" in result.output


def test_cli_help_has_example():
    from layerlab.cli import app

    result = CliRunner().invoke(app, ["cka", "--help"])
    assert result.exit_code == 0 and "Example" in result.output


@pytest.mark.slow
def test_distributed_job_equals_single_process(tmp_path, ray_session):
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cka.reducer import run_cka_on_ray

    a = write_cache(tmp_path / "m", ["h0", "h1"], [5, 5], 50, 6, seed=2)
    job = CKAJob(str(a), estimator="biased")
    single = run_cka(job, str(tmp_path / "single"))
    dist = run_cka_on_ray(job, str(tmp_path / "dist"), str(tmp_path / "ckpt.npz"))
    np.testing.assert_allclose(read_matrix(dist["tables"][0])[0], read_matrix(single["tables"][0])[0], atol=1e-12)
