"""Extraction pieces without Ray: batch plans, resource arithmetic, the shard worker and the cache reader."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from layerlab import storage
from layerlab.data.manifest import read_manifest
from layerlab.cache import format as cf
from layerlab.cache.reader import CacheReader
from layerlab.batching import plan_batches
from layerlab.extract.config import ExtractConfig, resolve_mode
from layerlab.extract.resources import can_grow, plan_resources
from layerlab.extract.shard_worker import ShardExtractor
from layerlab.models import load
from layerlab.models.batching import pad_batch


# ------------------------------------------------------------------ batch plans
@pytest.mark.parametrize("mode", ["bucketed", "padded", "unbatched"])
def test_plans_cover_every_utterance_once_within_the_padded_budget(mode):
    rng = np.random.default_rng(0)
    lengths = rng.integers(400, 40_000, size=57).tolist() + [90_000]  # one longer than the budget
    batches = plan_batches(lengths, mode, max_batch_size=8, max_batch_samples=80_000)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 8
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 80_000
    if mode == "unbatched":
        assert all(len(b) == 1 for b in batches)
    if mode == "padded":
        assert flat == [i for b in batches for i in b]  # input order kept


def test_auto_mode_is_unbatched_for_padding_sensitive_models():
    assert resolve_mode("auto", padding_invariant=False) == "unbatched"
    assert resolve_mode("auto", padding_invariant=True) == "bucketed"
    assert resolve_mode("padded", padding_invariant=False) == "padded"


# ------------------------------------------------------------------ resources (GPUs faked as resource dicts)
def test_gpu_cluster_gives_gpu_actors_with_explicit_cpus():
    res = plan_resources({"CPU": 8.0, "GPU": 4.0}, ExtractConfig(concurrency=(2, 4)))
    assert (res.num_gpus, res.num_cpus, res.min_actors, res.max_actors, res.uses_gpu) == (1.0, 1.0, 2, 4, True)
    half = plan_resources({"CPU": 8.0, "GPU": 1.0}, ExtractConfig(concurrency=(1, 2), num_gpus_per_actor=0.5, num_cpus_per_actor=2))
    assert (half.num_gpus, half.num_cpus, half.torch_threads) == (0.5, 2, 2)


def test_cpu_cluster_splits_cpus_over_max_actors():
    res = plan_resources({"CPU": 8.0}, ExtractConfig(concurrency=(1, 3)))
    assert (res.num_gpus, res.num_cpus, res.torch_threads) == (0.0, 2.0, 2)
    assert plan_resources({"CPU": 2.0}, ExtractConfig()).num_cpus == 2.0


def test_pool_grows_only_with_queued_work_and_free_resources():
    res = plan_resources({"CPU": 8.0, "GPU": 2.0}, ExtractConfig(concurrency=(1, 2)))
    assert can_grow({"CPU": 4.0, "GPU": 1.0}, res, actors=1, queued=3)
    assert not can_grow({"CPU": 4.0, "GPU": 0.0}, res, actors=1, queued=3)  # no free GPU
    assert not can_grow({"CPU": 0.5, "GPU": 1.0}, res, actors=1, queued=3)  # no free CPU
    assert not can_grow({"CPU": 4.0, "GPU": 1.0}, res, actors=1, queued=0)  # nothing waiting
    assert not can_grow({"CPU": 4.0, "GPU": 1.0}, res, actors=2, queued=3)  # at max


def test_concurrency_accepts_n_and_min_max():
    assert ExtractConfig(concurrency=3).concurrency == (3, 3)
    assert ExtractConfig(concurrency="1,4").concurrency == (1, 4)
    with pytest.raises(ValueError):
        ExtractConfig(concurrency=(3, 2))


# ------------------------------------------------------------------ shard worker + reader
@pytest.fixture(scope="module")
def model(wavlm_spec):
    torch.set_num_threads(2)
    return load(wavlm_spec, "cpu")


def _run_shards(model, corpus, out, mode, tier="both"):
    root, _ = corpus
    config = ExtractConfig(tier=tier, mode=mode, batch_seconds=3.0)
    worker = ShardExtractor(model, config, mode)
    manifest = cf.CacheManifest()
    for s in read_manifest(root).shards:
        manifest.shards[s.name] = worker.run(storage.join(root, s.name), s.name, s.sha256, out, {}).record
    meta = cf.CacheMetadata(
        model_spec=model.spec, layer_names=model.layer_names, dims=model.dims, frame_rates_hz=model.frame_rates,
        sample_rate=16000, num_parameters=model.num_parameters, padding_invariant=model.padding_invariant, mode=mode,
        batch={}, tiers=config.tiers, source=cf.SourceInfo(url=root, dataset="t", manifest_checksum=read_manifest(root).checksum(), shards=3, utterances=17, audio_seconds=1.0),
    )
    return CacheReader(out, meta, manifest, allow_partial=True)


def test_model_failure_is_retried_alone_and_quarantined_with_reason(model, corpus, tmp_path):
    cache = _run_shards(model, corpus, str(tmp_path / "c"), "bucketed")
    quarantined = [q for rec in cache.manifest.shards.values() for q in rec.quarantined]
    assert [(q.id, q.stage) for q in quarantined] == [("utt004", "model")]
    assert "at least 400" in quarantined[0].reason and quarantined[0].source == "synthetic:4"
    ids = cache.read_pooled().ids
    assert sorted(ids) == sorted(corpus[1])  # the short utterance's batch-mates are all kept


def test_unbatched_frames_equal_the_model_on_each_utterance_alone(model, corpus, tmp_path):
    from layerlab.data.shards import iter_utterances

    cache = _run_shards(model, corpus, str(tmp_path / "c"), "unbatched")
    wavs = {u.id: u.wav for u in iter_utterances(corpus[0])}
    rows = list(cache.iter_frames())
    assert len(rows) == len(corpus[1])
    for row in rows[:4]:
        ref = model(*pad_batch([wavs[row.id]]))
        for name, h, n in zip(ref.names, ref.hidden, ref.lengths):
            assert row.frames[name].dtype == np.float16
            np.testing.assert_array_equal(row.frames[name], h[0, : int(n[0])].half().numpy())


def test_pooled_tier_equals_mean_and_std_of_the_frames_tier(model, corpus, tmp_path):
    cache = _run_shards(model, corpus, str(tmp_path / "c"), "bucketed")
    frames = {r.id: r.frames for r in cache.iter_frames()}
    pooled = cache.read_pooled(stats=("mean", "std"))
    source = cache.source_rows(pooled.ids)
    checked = 0
    for i, uid in enumerate(pooled.ids):
        for name in cache.metadata.layer_names:
            f = frames[uid][name].astype(np.float64)
            assert np.abs(pooled.mean[name][i] - f.mean(axis=0)).max() <= 1e-3
            assert np.abs(pooled.std[name][i] - f.std(axis=0)).max() <= 1e-3
            checked += 1
        assert source.loc[uid, "labels"] == {"sid": pooled.speakers[i]} and pooled.num_samples[i] == source.loc[uid, "num_samples"] > 0
    assert checked == len(corpus[1]) * len(cache.metadata.layer_names)


def test_a_failing_shard_publishes_nothing(model, tmp_path):
    from layerlab.data.records import AudioRecord
    from layerlab.data.shards import ShardWriter

    root = str(tmp_path / "data")
    with ShardWriter(root, "broken") as w:
        w.add(AudioRecord(id="a", audio=np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32), sample_rate=16000, speaker="s", source="x"))
    shard = read_manifest(root).shards[0]
    # truncate the shard so the Parquet reader fails mid-task
    path = storage.url_to_fs(storage.join(root, shard.name))[1]
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    out = tmp_path / "cache"
    worker = ShardExtractor(model, ExtractConfig(tier="both"), "bucketed")
    with pytest.raises(ValueError, match="checksum mismatch"):  # the source shard is verified before it is read
        worker.run(storage.join(root, shard.name), shard.name, shard.sha256, str(out), {})
    unverified = ShardExtractor(model, ExtractConfig(tier="both", verify=False), "bucketed")
    with pytest.raises(ValueError, match="not a readable Parquet shard"):
        unverified.run(storage.join(root, shard.name), shard.name, shard.sha256, str(out), {})
    assert not any(p.is_file() for p in out.rglob("*")) if out.exists() else True


def test_write_behind_writes_the_same_files_as_writing_on_the_model_thread(model, corpus, tmp_path):
    root, _ = corpus
    shard = read_manifest(root).shards[0]
    entries = {}
    for wb in (True, False):
        worker = ShardExtractor(model, ExtractConfig(tier="both", mode="bucketed", batch_seconds=3.0, write_behind=wb, row_group_mb=0.05), "bucketed")
        rec = worker.run(storage.join(root, shard.name), shard.name, shard.sha256, str(tmp_path / str(wb)), {}).record
        entries[wb] = {t: (e.rows, e.sha256) for t, e in rec.files.items()}
    assert entries[True] == entries[False] and entries[True]["frames"][0] > 0  # several row groups (0.05 MB each), same bytes


def test_write_behind_raises_the_writer_threads_error_and_publishes_nothing(tmp_path):
    from layerlab.cache.writer import TierWriter, UtteranceFeatures
    from layerlab.extract.write_behind import WriteBehind

    wb = WriteBehind([TierWriter("pooled", str(tmp_path), "pooled/x.parquet", ["a"], "zstd", 1)], max_pending_bytes=64)
    good = UtteranceFeatures(means=[np.zeros(2, np.float32)], stds=[np.ones(2, np.float32)], num_frames=[3], frames=None)
    wb.add({"id": "u1", "speaker": "s", "num_samples": 10, "labels": {}, "splits": {}}, good)
    with pytest.raises(Exception):  # a row without a speaker key fails in the writer thread, and surfaces here
        for i in range(50):
            wb.add({"id": f"v{i}"}, good)
        wb.finish()
    wb.abort()
    assert not list(tmp_path.rglob("*.parquet"))


def test_pilot_shards_are_a_seeded_sample_across_the_dataset():
    from types import SimpleNamespace

    from layerlab.extract.pipeline import pilot_urls

    source = SimpleNamespace(shards=[SimpleNamespace(name=f"shards/shard-{i:05d}.parquet") for i in range(40)])
    cfg = ExtractConfig(pilot_shards=6)
    picked = pilot_urls("/data", source, cfg)
    assert len(set(picked)) == 6 and picked == sorted(picked) and picked == pilot_urls("/data", source, cfg)
    assert max(int(u[-13:-8]) for u in picked) > 6  # not just the first shards
    assert len(pilot_urls("/data", SimpleNamespace(shards=source.shards[:2]), cfg)) == 2


def test_joint_group_member_names():
    from layerlab.extract.joint_cka import member_names, member_spec

    assert member_names(["ge2e", "fbank", "s3prl:wavlm_local:/ckpt/wavlm.pt", "big=s3prl:wavlm_local:/x/y.pt"]) == ["ge2e", "fbank", "wavlm", "big"]
    assert member_spec("big=s3prl:wavlm_local:/x/y.pt") == "s3prl:wavlm_local:/x/y.pt" and member_spec("ge2e") == "ge2e"
    with pytest.raises(ValueError, match="share the cache folder"):
        member_names(["s3prl:wavlm_local:/a/m.pt", "s3prl:wavlm_local:/b/m.pt"])


def test_the_run_summary_names_the_side_output_file_instead_of_printing_a_matrix():
    """The old demo printed CKA matrices as bare nested lists; the summary points at the merged state instead."""
    from layerlab.extract.summary import ExtractSummary

    summary = ExtractSummary(out_url="/c", model_spec="ge2e", mode="bucketed", tiers=["pooled"], shards_total=1, shards_written=1,
                             shards_skipped=0, complete=True, cka_results={"all": [[1.0, 0.25], [0.25, 1.0]]})
    text = summary.render()
    assert "cka side-output 'all': merged matrix in cka/all/merged.npz" in text and "[[" not in text and "0.25" not in text


# ------------------------------------------------------------------ non-finite activations
def test_non_finite_values_count_only_in_valid_frames():
    from layerlab.extract.features import split_features
    from layerlab.models.base import LayerOutput

    h = torch.randn(2, 5, 3)
    h[1, 4, 0] = float("nan")  # padding of the second utterance (3 valid frames)
    feats = split_features(LayerOutput([h], [torch.tensor([5, 3])], ["enc"]), keep_frames=True)
    assert all(np.isfinite(f.means[0]).all() and np.isfinite(f.frames[0]).all() for f in feats)
    bad = h.clone()
    bad[1, 2, 1] = float("inf")
    with pytest.raises(FloatingPointError, match="non-finite activations in layer enc"):
        split_features(LayerOutput([bad], [torch.tensor([5, 3])], ["enc"]), keep_frames=False)
    huge = torch.full((1, 4, 2), 3e38)  # finite frames whose float32 mean overflows: the exact check lets them through
    (kept,) = split_features(LayerOutput([huge], [torch.tensor([4])], ["enc"]), keep_frames=False)
    assert np.isinf(kept.means[0]).all()


class _PoisonOne:
    """The wrapped model, except that the utterance with ``num_samples`` samples gets a NaN in a valid frame of ``layer``."""

    def __init__(self, model, num_samples: int, layer: str) -> None:
        self.model, self.num_samples, self.layer = model, num_samples, layer

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, wavs, lengths):
        out = self.model(wavs, lengths)
        i = out.names.index(self.layer)
        out.hidden[i] = out.hidden[i].clone()
        for b, n in enumerate(lengths.tolist()):
            if n == self.num_samples:
                out.hidden[i][b, 1, 0] = float("nan")
        return out


def _poisoned_target(model, corpus):
    """(id, frames) of an utterance with a unique length, and a model that poisons it in its last layer."""
    from layerlab.data.shards import iter_utterances

    utts = {u.id: u.wav for u in iter_utterances(corpus[0]) if u.id in set(corpus[1])}
    counts = Counter(w.shape[0] for w in utts.values())
    target = next(uid for uid in sorted(utts) if counts[utts[uid].shape[0]] == 1 and utts[uid].shape[0] > 16000)
    frames = int(model(*pad_batch([utts[target]])).lengths[0][0])
    return target, frames, _PoisonOne(model, utts[target].shape[0], model.layer_names[-1])


def test_a_non_finite_utterance_is_quarantined_and_never_enters_the_cka_state(model, corpus, tmp_path):
    from layerlab.extract.config import CKASideOutput

    target, frames, poisoned = _poisoned_target(model, corpus)
    config = ExtractConfig(tier="pooled", mode="bucketed", batch_seconds=6.0, cka=[CKASideOutput(name="all")])
    rows, quarantined, retried = {}, [], 0
    for label, m in (("clean", model), ("poisoned", poisoned)):
        worker = ShardExtractor(m, config, "bucketed")
        rows[label] = 0
        for s in read_manifest(corpus[0]).shards:
            o = worker.run(storage.join(corpus[0], s.name), s.name, s.sha256, str(tmp_path / label), {})
            rows[label] += o.record.cka["all"].rows
            if label == "poisoned":
                quarantined += [(q.id, q.reason) for q in o.record.quarantined if q.stage == "model" and q.id == target]
                retried += o.retried_alone
    assert quarantined == [(target, f"FloatingPointError: non-finite activations in layer {model.layer_names[-1]}")]
    assert retried > 1  # it failed inside a batch first: its batch-mates were rerun alone and kept
    assert rows["poisoned"] == rows["clean"] - frames  # the failed batch reached no state; only the target is missing


def test_joint_members_update_no_state_for_a_batch_another_member_rejects(model, corpus, tmp_path):
    from layerlab.extract.config import CKASideOutput
    from layerlab.extract.joint_worker import JointShardExtractor

    target, frames, poisoned = _poisoned_target(model, corpus)
    config = ExtractConfig(tier="pooled", mode="bucketed", batch_seconds=6.0, cka=[CKASideOutput(name="all")])
    rows = {}
    for label, members in (("clean", {"a": model, "b": model}), ("poisoned", {"a": model, "b": poisoned})):
        worker = JointShardExtractor(members, config, "bucketed")
        rows[label] = Counter()
        for s in read_manifest(corpus[0]).shards:
            o = worker.run(storage.join(corpus[0], s.name), s.name, s.sha256, str(tmp_path / label), {})
            for name, out in o.members.items():
                rows[label].update({f"{name}/{k}": e.rows for k, e in out.record.cka.items()})
    assert set(rows["clean"]) == {"a/all", "b/all", "a/joint-b"}
    assert {k: rows["clean"][k] - v for k, v in rows["poisoned"].items()} == {k: frames for k in rows["clean"]}


def test_the_run_summary_adds_up_and_prints_where_actor_time_goes():
    from layerlab.extract.pipeline import add_step_seconds
    from layerlab.extract.summary import ExtractSummary

    summary = ExtractSummary(out_url="o", model_spec="m", mode="bucketed", tiers=["pooled"], shards_total=2, shards_written=2,
                             shards_skipped=0, complete=True, shard_seconds=10.0, model_seconds=9.0)
    for stats in ({"model_loop_seconds": 4.5, "finish_seconds": 0.25, "t_start": 1.0, "pid": 7.0},
                  {"model_loop_seconds": 4.0, "finish_seconds": 0.5, "features_seconds": 0.1}):
        add_step_seconds(summary.step_seconds, stats)
    assert summary.step_seconds == {"model_loop": 8.5, "finish": 0.75, "features": 0.1}  # timers only, summed over shards
    assert "actor busy 10.0 s, of which model calls with their checks, pooling and CKA 9.0 s; per step (s): model_loop 8.5, finish 0.8, features 0.1" in summary.render()

