"""CKA replicates (leave-one-group-out values beside every table with intervals) and merged one-utterance groups."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers.cache_builder import build_cache_inline
from helpers.speech_corpus import build_corpus

from layerlab.cka import cka_matrix
from layerlab.models import load


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Frames + pooled tiers of the planted model over 12 utterances of 3 speakers (several shards)."""
    base = tmp_path_factory.mktemp("cka_replicates")
    build_corpus(str(base / "data"), utterances=12, short_ids=(), nan_ids=(), max_shard_bytes=60_000)
    return build_cache_inline(load("planted:seed=0", device="cpu"), str(base / "data"), str(base / "cache"), tier="both")


def test_replicates_are_the_leave_one_out_cka(cache, tmp_path):
    from layerlab.cache import open_cache
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cka.tables import read_replicates

    out = run_cka(CKAJob(cache, level="frame", group_by="utterance"), str(tmp_path / "cka"), bootstrap=1)
    assert out["replicates"] == [str(tmp_path / "cka" / "cka_biased_frame_replicates.parquet")] and out["group_by"] == "utterance"
    table = pq.read_table(out["replicates"][0])
    assert table.column_names == ["layer_a", "layer_b", "group", "value"]
    assert set(pq.read_table(out["tables"][0]).column("ci_group_by").to_pylist()) == {"utterance"}
    reps = read_replicates(out["replicates"][0])
    rows = list(open_cache(cache).iter_frames())
    names = ["noise", "speaker", "mix", "content"]
    assert set(reps) == {(a, b) for a in names for b in names} and len(reps["mix", "content"]) == len(rows)
    for left_out in (rows[0].id, rows[5].id):
        kept = [r for r in rows if r.id != left_out]
        direct = np.asarray(cka_matrix([np.concatenate([r.frames[n] for r in kept]).astype(np.float64) for n in names]))
        got = np.array([[reps[a, b][left_out] for b in names] for a in names])
        np.testing.assert_allclose(got, direct, atol=1e-6)


def test_no_replicates_without_intervals(cache, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka

    out = run_cka(CKAJob(cache, level="utterance"), str(tmp_path / "cka"))
    assert out["replicates"] == [] and out["group_by"] is None
    assert not list((tmp_path / "cka").glob("*_replicates.parquet"))


def test_across_models_writes_one_replicates_table_per_block(cache, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka

    other = build_cache_inline(load("planted:seed=3", device="cpu"), open_cache_source(cache), str(tmp_path / "other"), tier="pooled")
    out = run_cka(CKAJob(cache, other, level="utterance", group_by="speaker"), str(tmp_path / "cka"), bootstrap=1)
    assert [u.rsplit("/", 1)[-1] for u in out["replicates"]] == [
        f"cka_biased_utterance_{tag}_replicates.parquet" for tag in ("a_a", "b_b", "a_b")]
    groups = set(pq.read_table(out["replicates"][2]).column("group").to_pylist())
    assert groups == set(out["ci"]["groups"]) == {"spk0", "spk1", "spk2"}


def open_cache_source(cache: str) -> str:
    """The audio dataset a cache was extracted from."""
    from layerlab.cache import open_cache

    return open_cache(cache).metadata.source.url


def test_one_utterance_groups_are_merged_not_jackknifed():
    from layerlab.cka.feature_stats import FeatureCKA
    from layerlab.cka.pipeline import merge_small_groups

    rng = np.random.default_rng(0)

    def acc() -> FeatureCKA:
        a = FeatureCKA([3, 2], mode="within", shift=np.zeros(5))
        a.update([rng.normal(size=(20, 3)), rng.normal(size=(20, 2))])
        return a

    groups = {"s1": acc(), "s2": acc(), "s3": acc(), "s4": acc(), "s5": acc()}
    merged, notes = merge_small_groups(groups, {"s1": 1, "s2": 5, "s3": 3, "s4": 1, "s5": 1}, "shard")
    # s1 joins the smallest other group (s4, one utterance), then s5 the smallest left (s4, now two): every group has >= 2
    assert sorted(merged) == ["s2", "s3", "s4"] and len(notes) == 1
    assert "2 shard group(s)" in notes[0] and "s1 -> s4" in notes[0] and "s5 -> s4" in notes[0]
    assert sum(m.n for m in merged.values()) == 100  # nothing dropped
    same, none = merge_small_groups({"a": acc(), "b": acc()}, {"a": 2, "b": 3}, "speaker")
    assert sorted(same) == ["a", "b"] and none == []


def test_a_one_utterance_shard_of_side_output_states_is_merged(tmp_path):
    """Shards of 5, 3 and 1 utterances: the 1-utterance shard joins another group instead of being a jackknife group."""
    from layerlab import storage
    from layerlab.cache import format as cf
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cka.tables import read_replicates
    from layerlab.data.manifest import read_manifest
    from layerlab.extract.config import CKASideOutput, ExtractConfig
    from layerlab.extract.pipeline import _metadata
    from layerlab.extract.shard_worker import ShardExtractor, describe_model

    data, out = str(tmp_path / "data"), str(tmp_path / "cache")
    build_corpus(data, utterances=9, short_ids=(), nan_ids=(), max_shard_bytes=60_000)
    source = read_manifest(data)
    model = load("planted:seed=0", device="cpu")
    config = ExtractConfig(tier="pooled", mode="bucketed", batch_seconds=3.0, progress=False, cka=[CKASideOutput(name="all")])
    worker = ShardExtractor(model, config, "bucketed")
    storage.write_json(storage.join(out, cf.METADATA_NAME),
                       _metadata(model.spec, data, config, describe_model(model, "bucketed"), source).model_dump(mode="json"))
    shifts = worker.pilot_shifts([storage.join(data, s.name) for s in source.shards])
    manifest = cf.CacheManifest()
    for s in source.shards:
        manifest.shards[s.name] = worker.run(storage.join(data, s.name), s.name, s.sha256, out, shifts).record
    manifest.recount()
    manifest.complete = True
    storage.write_json(storage.join(out, cf.MANIFEST_NAME), manifest.model_dump(mode="json"))
    rows = sorted((s.rows, s.name) for s in source.shards)
    assert [n for n, _ in rows] == [1, 3, 5]

    result = run_cka(CKAJob(out, level="frame", side_output="all"), str(tmp_path / "cka"), bootstrap=1)
    assert result["ci"]["n_groups"] == 2 and rows[0][1] not in result["ci"]["groups"]
    assert any(f"{rows[0][1]} -> {rows[1][1]}" in n for n in result["notes"]), (rows, result["notes"])
    reps = read_replicates(result["replicates"][0])
    assert set(reps["noise", "content"]) == set(result["ci"]["groups"])
