"""extract() on the session's real Ray: local end to end, CKA side-output, resume, mismatch, S3 (moto), faults, CLI."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from layerlab import storage
from layerlab.cache import format as cf
from layerlab.cache import open_cache
from layerlab.extract import CKASideOutput, ExtractConfig


def read_quarantine(url):
    return open_cache(url, allow_partial=True).quarantine()


def verify_cache(url):
    return open_cache(url, allow_partial=True).verify_files()

pytestmark = pytest.mark.usefixtures("ray_session")


def _extract(spec, data, out, **cfg):
    from layerlab.extract import extract

    return extract(spec, data, out, ExtractConfig(progress=False, **cfg))


def _ids(url, tier):
    if tier == "pooled":
        return open_cache(url).read_pooled().ids
    return [r.id for r in open_cache(url).iter_frames()]


def test_local_end_to_end_both_tiers_with_cka_side_output(wavlm_spec, corpus, tmp_path):
    from layerlab.cka import cka_matrix

    root, expected = corpus
    out = str(tmp_path / "cache")
    s = _extract(wavlm_spec, root, out, tier="both", mode="bucketed", cka=[CKASideOutput(name="all")])
    assert s.ok and s.complete and s.shards_written == s.shards_total == 3
    assert (s.utterances, s.quarantined_source, s.quarantined_model) == (len(expected), 1, 1)
    for tier in ("pooled", "frames"):
        assert sorted(_ids(out, tier)) == sorted(expected)  # every kept utterance exactly once
        assert s.tier_bytes[tier] > 0
    q = read_quarantine(out).to_pylist()
    assert sorted((r["id"], r["stage"]) for r in q) == [("utt004", "model"), ("utt007", "ingest")]
    meta = open_cache(out).metadata
    assert meta.mode == "bucketed" and meta.dtype == {"frames": "float16", "pooled": "float32"}
    assert meta.layer_names == ["hidden_0", "hidden_1", "hidden_2"] and meta.frame_rates_hz == [50.0] * 3
    assert meta.source.manifest_checksum and meta.tiers == ["pooled", "frames"]
    assert verify_cache(out) == []
    # the side-output (float32 activations, never stored) matches CKA recomputed from the fp16 frames tier
    rows = list(open_cache(out).iter_frames())
    layers = [np.concatenate([r.frames[n] for r in rows]).astype(np.float64) for n in meta.layer_names]
    from_frames = np.asarray(cka_matrix(layers))
    assert np.abs(np.asarray(s.cka_results["all"]) - from_frames).max() < 2e-3
    assert not np.allclose(from_frames, 1.0)  # layers differ: the comparison is not trivially 1


def test_auto_mode_records_unbatched_for_a_padding_sensitive_model(wavlm_spec, corpus, tmp_path):
    out = str(tmp_path / "cache")
    s = _extract(wavlm_spec, corpus[0], out)
    assert s.mode == "unbatched" and open_cache(out).metadata.mode == "unbatched"
    assert s.tiers == ["pooled"] and not storage.exists(storage.join(out, "frames"))


def test_rerun_after_interruption_writes_only_missing_shards(wavlm_spec, corpus, tmp_path):
    root, expected = corpus
    out = str(tmp_path / "cache")

    class Crash(RuntimeError):
        pass

    def crash_after_first(task, pool):
        raise Crash(task.name)

    with pytest.raises(Crash):  # the driver dies after the first shard result (others may be in flight)
        _extract_with_hook(wavlm_spec, root, out, crash_after_first, tier="both", mode="bucketed")
    manifest = open_cache(out, allow_partial=True).manifest
    assert not manifest.complete and len(manifest.shards) >= 1
    done = sorted(manifest.shards)
    mtimes = {n: os.stat(storage.url_to_fs(storage.join(out, rec.files["frames"].name))[1]).st_mtime_ns for n, rec in manifest.shards.items()}
    s = _extract(wavlm_spec, root, out, tier="both", mode="bucketed")
    assert s.complete and s.shards_skipped == len(done)
    assert sorted(s.written_shards) == sorted(set(open_cache(out, allow_partial=True).manifest.shards) - set(done))
    assert s.shards_written == 3 - len(done) >= 1
    for n, t in mtimes.items():  # completed shards were not rewritten
        assert os.stat(storage.url_to_fs(storage.join(out, f"frames/{cf.shard_stem(n)}.parquet"))[1]).st_mtime_ns == t
    assert sorted(_ids(out, "frames")) == sorted(expected) and sorted(_ids(out, "pooled")) == sorted(expected)
    again = _extract(wavlm_spec, root, out, tier="both", mode="bucketed")
    assert again.shards_written == 0 and again.shards_skipped == 3 and again.complete


def test_max_shards_stops_early_and_a_different_setup_is_refused(wavlm_spec, corpus, tmp_path):
    from layerlab.extract.pipeline import CacheMismatch

    out = str(tmp_path / "cache")
    s = _extract(wavlm_spec, corpus[0], out, mode="bucketed", max_shards=1)
    assert s.shards_written == 1 and not s.complete
    with pytest.raises(CacheMismatch, match="tiers"):
        _extract(wavlm_spec, corpus[0], out, mode="bucketed", tier="both")


def test_s3_end_to_end(wavlm_spec, s3_bucket, tmp_path):
    from helpers.speech_corpus import build_corpus

    data = f"{s3_bucket}/corpus"
    expected = build_corpus(data, utterances=8, seed=3, max_shard_bytes=60_000)
    out = f"{s3_bucket}/caches/wavlm"
    s = _extract(wavlm_spec, data, out, tier="both", mode="padded")
    assert s.ok and s.complete and s.shards_total >= 2
    assert sorted(_ids(out, "pooled")) == sorted(expected) == sorted(_ids(out, "frames"))
    assert storage.exists(f"{out}/manifest.json") and verify_cache(out) == []
    assert [(r["id"], r["stage"]) for r in read_quarantine(out).to_pylist()] == [("utt007", "ingest"), ("utt004", "model")]


def test_killing_a_busy_actor_mid_run_still_writes_every_utterance_once(wavlm_spec, big_corpus, tmp_path):
    import ray

    root, expected = big_corpus
    out = str(tmp_path / "cache")
    killed: dict[str, object] = {}

    def kill_a_busy_actor(task, pool):
        busy = pool.busy_actors()
        if not killed and busy:
            killed["shard"] = pool.busy[busy[0]][0].name
            ray.kill(busy[0], no_restart=False)  # crash: Ray restarts the actor and retries its shard

    s = _extract_with_hook(wavlm_spec, root, out, kill_a_busy_actor, concurrency=(2, 2), num_cpus_per_actor=1, mode="bucketed", tier="both")
    assert killed, "the hook never saw a busy actor"
    assert s.ok and s.complete and s.shards_written == s.shards_total >= 6
    counts = Counter(_ids(out, "frames"))
    assert sorted(counts) == sorted(expected) and set(counts.values()) == {1}
    assert Counter(_ids(out, "pooled")) == counts
    assert killed["shard"] in open_cache(out, allow_partial=True).manifest.shards


def _extract_with_hook(spec, data, out, hook, **cfg):
    from layerlab.extract import extract

    return extract(spec, data, out, ExtractConfig(progress=False, **cfg), after_shard=hook)


def test_pool_grows_from_min_to_max_while_work_is_queued(wavlm_spec, big_corpus, tmp_path):
    s = _extract(wavlm_spec, big_corpus[0], str(tmp_path / "cache"), concurrency=(1, 2), num_cpus_per_actor=1, mode="bucketed")
    assert s.ok and s.actors_started == 2


def test_cli_extract_runs_and_prints_a_summary(wavlm_spec, corpus, tmp_path):
    from typer.testing import CliRunner

    from layerlab.cli import app

    out = str(tmp_path / "cache")
    result = CliRunner().invoke(app, ["extract", "--model", wavlm_spec, "--data", corpus[0], "--out", out, "--tier", "pooled",
                                      "--batch-seconds", "4", "--mode", "padded", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "shards: 3 written" in result.output and "quarantined: 1 at source, 1 in the model" in result.output
    assert open_cache(out).metadata.batch["batch_seconds"] == 4.0
    help_text = CliRunner().invoke(app, ["extract", "--help"]).output
    assert "Example:" in help_text
