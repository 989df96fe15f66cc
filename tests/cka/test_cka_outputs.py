"""Parquet tables, heat maps, bootstrap CIs, cache reading and the ``layerlab cka`` command end to end."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from cka_helpers import layer_stack
from typer.testing import CliRunner

from layerlab import storage
from layerlab.cka import FeatureCKA, cka_matrix, pilot_shift
from layerlab.cka.intervals import jackknife_cka
from layerlab.cka.heatmap import HeatmapPanel, render_heatmaps
from layerlab.cka.tables import read_matrix, write_matrix
from layerlab.cache import format as cf
from layerlab.cache import open_cache
from layerlab.cache.writer import TierWriter
from layerlab.extract.features import split_features
from layerlab.models.base import LayerOutput


def write_cache(root, names, dims, rate, utts, seed, tiers=("pooled", "frames")):
    """A tiny activation cache in the real format, written by the extraction stage's own code.

    Features come from ``split_features`` (fp16 frames, float32 mean/std), shards from ``TierWriter``
    (small row groups, so readers must stream several per shard), and ``metadata.json`` /
    ``manifest.json`` from ``CacheMetadata`` / ``CacheManifest`` exactly as ``extract()`` publishes them.
    """
    rng = np.random.default_rng(seed)
    url = str(root)
    source = cf.SourceInfo(url="synthetic://cka-tests", dataset="synthetic", manifest_checksum="0" * 64, shards=2, utterances=2 * utts, audio_seconds=0.0)
    meta = cf.CacheMetadata(model_spec=f"tiny:{root.name}", layer_names=names, dims=dims, frame_rates_hz=[float(rate)] * len(names),
                            sample_rate=16000, num_parameters=0, padding_invariant=True, mode="bucketed", batch={}, tiers=list(tiers), source=source)
    storage.write_json(storage.join(url, cf.METADATA_NAME), meta.model_dump(mode="json"))
    manifest = cf.CacheManifest()
    for shard in range(2):
        name = f"shard-{shard:05d}.parquet"
        writers = {t: TierWriter(t, url, cf.tier_file(t, name), names, "zstd", row_group_bytes=512) for t in tiers}
        seconds = 0.0
        for u in range(utts):
            t = int(rng.integers(5, 30)) * (2 if rate == 100 else 1)
            lat = rng.standard_normal((t, 4))
            hidden = []
            for li, d in enumerate(dims):
                x = lat @ np.random.default_rng(li).standard_normal((4, d)) + rng.standard_normal((t, d)) * (0.5 + li) + 100.0
                hidden.append(torch.from_numpy(x[None].astype(np.float32)))
            out = LayerOutput(hidden=hidden, lengths=[torch.tensor([t])] * len(names), names=list(names))
            row = {"id": f"utt-{shard}-{u}", "speaker": f"spk{u % 3}", "num_samples": t * 320, "labels": {}, "splits": {}}
            for w in writers.values():
                w.add(row, split_features(out, keep_frames="frames" in tiers)[0])
            seconds += t * 320 / 16000
        manifest.shards[name] = cf.ShardRecord(source=name, source_sha256="0" * 64, kept=utts, audio_seconds=seconds, files={t: w.finish() for t, w in writers.items()})
    manifest.recount()
    manifest.complete = True
    storage.write_json(storage.join(url, cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
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


def test_jackknife_interval_over_groups():
    layers = layer_stack(600, [5, 5], seed=8)
    shift = pilot_shift([x[:50] for x in layers])
    groups = []
    for g in range(12):
        acc = FeatureCKA([5, 5], shift=shift)
        acc.update([x[50 * g : 50 * (g + 1)] for x in layers])
        groups.append(acc)
    res = jackknife_cka(groups)
    np.testing.assert_allclose(res.estimate, cka_matrix(layers), atol=1e-12)
    assert res.low[0, 1] < res.estimate[0, 1] < res.high[0, 1] and res.n_groups == 12
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


def test_parquet_files_not_in_the_manifest_are_ignored(tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka

    a = write_cache(tmp_path / "m", ["h0", "h1"], [5, 5], 50, 6, seed=3)
    assert pq.ParquetFile(a / "frames" / "shard-00000.parquet").num_row_groups > 1  # readers must stream row groups
    before = run_cka(CKAJob(str(a)), str(tmp_path / "before"))
    # a valid shard left by an interrupted task: on disk in frames/, never recorded in manifest.json
    shutil.copy(a / "frames" / "shard-00000.parquet", a / "frames" / "shard-00099.parquet")
    job = CKAJob(str(a))
    assert [name for name, _ in job.shard_pairs()] == ["shard-00000.parquet", "shard-00001.parquet"]
    after = run_cka(job, str(tmp_path / "after"))
    total = sum(len(r.frames["h0"]) for r in open_cache(str(a)).iter_frames())
    assert before["n_frames"] == after["n_frames"] == total
    np.testing.assert_array_equal(read_matrix(after["tables"][0])[0], read_matrix(before["tables"][0])[0])


def test_group_by_speaker_at_frame_level_uses_the_cached_speakers(tmp_path):
    from layerlab.cka.pipeline import CKAJob, collect_groups, pilot_shift_for

    a = write_cache(tmp_path / "m", ["h0", "h1"], [5, 5], 50, 6, seed=4)
    frames_per_speaker: dict[str, int] = {}
    for row in open_cache(str(a)).iter_frames():
        frames_per_speaker[row.speaker] = frames_per_speaker.get(row.speaker, 0) + len(row.frames["h0"])
    assert sorted(frames_per_speaker) == ["spk0", "spk1", "spk2"]
    job = CKAJob(str(a), level="frame", group_by="speaker", bootstrap=10)
    groups = collect_groups(job, pilot_shift_for(job))
    # one group per speaker across both shards, holding exactly that speaker's frames
    assert {k: g.n for k, g in groups.items()} == frames_per_speaker
    # without intervals no group is kept: one state for all (memory of one state, not one per speaker)
    single = CKAJob(str(a), level="frame", group_by="speaker")
    assert {k: g.n for k, g in collect_groups(single, pilot_shift_for(single)).items()} == {"all": sum(frames_per_speaker.values())}


def test_frame_level_on_a_pooled_only_cache_fails_clearly_and_utterance_level_works(tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cli import app

    a = write_cache(tmp_path / "pooled_only", ["h0", "h1", "h2"], [5, 6, 7], 50, 8, seed=5, tiers=("pooled",))
    with pytest.raises(ValueError, match="needs the frames tier.*--level utterance"):
        CKAJob(str(a), level="frame")
    result = CliRunner().invoke(app, ["cka", "--a", str(a), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs the frames tier" in result.output and str(a) in result.output
    summary = run_cka(CKAJob(str(a), level="utterance"), str(tmp_path / "utt"))
    mat = read_matrix(summary["tables"][0])[0]
    pooled = open_cache(str(a)).read_pooled(["h0", "h1", "h2"])
    means = [pooled.mean[n].astype(np.float64) for n in ["h0", "h1", "h2"]]
    np.testing.assert_allclose(mat, np.asarray(cka_matrix(means)), atol=1e-9)
    assert summary["n_utterances"] == 16  # one row per utterance
