"""The one cache reader: pooled tier in one pass, frames streamed and shuffled, source join, exact frame geometry."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from layerlab import storage
from layerlab.cache import open_cache
from layerlab.cache.layers import LayerMeta
from layerlab.cache.reader import CacheError, select_layers


def test_read_pooled_reads_each_shard_once_for_all_layers(wavlm_cache, monkeypatch) -> None:
    cache = open_cache(wavlm_cache)
    reads: Counter[str] = Counter()
    for name in ("read_bytes", "open_input"):
        original = getattr(storage, name)

        def counting(url, *a, _original=original, **k):
            reads[url.rsplit("/", 2)[-2] + "/" + url.rsplit("/", 1)[-1]] += 1
            return _original(url, *a, **k)

        monkeypatch.setattr(storage, name, counting)
    pooled = cache.read_pooled(stats=("mean", "std"))
    shard_reads = {k: v for k, v in reads.items() if k.startswith("pooled/")}
    assert len(shard_reads) == len(cache.manifest.shards) >= 3
    assert set(shard_reads.values()) == {1}  # one read per shard, whatever the number of layers
    assert set(pooled.mean) == set(pooled.std) == set(cache.metadata.layer_names)
    assert all(m.shape == (len(pooled.ids), cache.layer(n).dim) and m.dtype == np.float32 for n, m in pooled.mean.items())
    # the one-pass matrices equal reading each layer on its own
    for name in cache.metadata.layer_names:
        np.testing.assert_array_equal(cache.read_pooled([name]).mean[name], pooled.mean[name])


def test_iter_frames_shuffle_buffer_is_a_seeded_permutation(fbank_cache, aligned_corpus) -> None:
    cache = open_cache(fbank_cache)
    plain = [r.id for r in cache.iter_frames()]
    assert sorted(plain) == sorted(aligned_corpus[1])
    a = [r.id for r in cache.iter_frames(shuffle_buffer=4, seed=1)]
    b = [r.id for r in cache.iter_frames(shuffle_buffer=4, seed=1)]
    c = [r.id for r in cache.iter_frames(shuffle_buffer=4, seed=2)]
    assert a == b and sorted(a) == sorted(plain) and a != plain and c != a
    # utterances from different shards interleave (the buffer spans shard boundaries)
    shard_of = {r.id: r.shard for r in cache.iter_frames()}
    assert len({shard_of[i] for i in a[:6]}) >= 2


def test_source_rows_join_labels_splits_transcript_alignment(fbank_cache, aligned_corpus) -> None:
    cache = open_cache(fbank_cache)
    rows = cache.source_rows(["u05", "u00"])
    assert list(rows.index) == ["u05", "u00"]
    assert rows.loc["u05", "labels"] == {"sid": "spk2"} and rows.loc["u00", "splits"] == {"sid": "test"}
    assert rows.loc["u05", "transcript"] == "word 5"
    spans = rows.loc["u05", "alignment"]
    assert spans[0][1] == 0 and spans[-1][2] == rows.loc["u05", "num_samples"]
    assert len(cache.source_rows()) == len(aligned_corpus[1])
    assert cache.table("asv_trials").num_rows == 2
    with pytest.raises(CacheError, match="no table 'nope'"):
        cache.table("nope")


@pytest.mark.parametrize("fixture", ["fbank_cache", "wavlm_cache"])
def test_recorded_geometry_maps_samples_to_frames_exactly(fixture, request) -> None:
    """num_frames of every utterance and layer follows from num_samples; every frame gets a phone."""
    cache = open_cache(request.getfixturevalue(fixture))
    src = cache.source_rows()
    frame_layers = [m for m in cache.layers if m.level == "frame"]
    assert frame_layers and {m.frame_convention for m in frame_layers} == ({"window"} if fixture == "fbank_cache" else {"stride"})
    for row in cache.iter_frames([m.name for m in frame_layers]):
        n_samples = int(src.loc[row.id, "num_samples"])
        spans = src.loc[row.id, "alignment"]
        for meta in frame_layers:
            t = row.frames[meta.name].shape[0]
            assert meta.num_frames(n_samples) == t
            labels = meta.spans_to_frames([s[1] for s in spans], [s[2] for s in spans], t)
            assert (labels >= 0).all()  # tiled spans: every frame's centre lies in one span
            assert labels[0] == 0 and labels[-1] == len(spans) - 1 and (np.diff(labels) >= 0).all()


def test_layer_meta_conventions_match_the_model_frame_counters() -> None:
    import torch

    from layerlab.models.base import frames_after_stride, frames_centered
    from layerlab.models.baseline_features import kaldi_frames

    lengths = torch.arange(400, 5000, 37)
    for meta, ref in (
        (LayerMeta("s", 8, 50.0, 320, "stride"), frames_after_stride(lengths, 320)),
        (LayerMeta("c", 8, 100.0, 160, "centered"), frames_centered(lengths, 160)),
        (LayerMeta("w", 8, 100.0, 160, "window", 400), kaldi_frames(lengths)),
    ):
        np.testing.assert_array_equal(meta.num_frames(lengths.numpy()), ref.numpy())
    centred = LayerMeta("c", 8, 100.0, 160, "centered")
    assert centred.frame_index(0) == 0 and centred.frame_index(80) == 0 and centred.frame_index(81) == 1 and centred.frame_index(160) == 1
    with pytest.raises(ValueError, match="utterance-level"):
        LayerMeta("e", 8, None, None, "utterance").frame_index(0)


def test_caches_written_before_geometry_and_tasks_still_read(fbank_cache, tmp_path: Path) -> None:
    from helpers.cache_builder import copy_cache

    old = copy_cache(fbank_cache, tmp_path / "old")
    meta_path = Path(old) / "metadata.json"
    doc = json.loads(meta_path.read_text())
    assert doc.pop("layers") and doc.pop("tasks")  # what older layerlab versions did not write
    meta_path.write_text(json.dumps(doc))
    cache = open_cache(old)
    (fbank,) = cache.layers
    assert (fbank.hop_samples, fbank.frame_convention, fbank.window_samples) == (160, "window", 400)
    assert set(cache.tasks) == {"sid", "asr"}  # read from the source dataset's manifest
    assert len(cache.read_pooled().ids) == cache.manifest.kept


def test_frames_tier_is_raw_fp16_bytes_and_format_1_lists_still_read(fbank_cache, tmp_path: Path) -> None:
    """Format 2 stores each utterance-layer as little-endian fp16 bytes; a cache written as list<float16> reads the same values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from helpers.cache_builder import copy_cache
    from layerlab.artifacts import entry_for_bytes
    from layerlab.cache import format as cf

    new = open_cache(fbank_cache)
    (layer,) = new.layer_names()
    want = {r.id: r.frames[layer] for r in new.iter_frames()}
    old = copy_cache(fbank_cache, tmp_path / "old")
    manifest_path = Path(old) / cf.MANIFEST_NAME
    doc = json.loads(manifest_path.read_text())
    for record in doc["shards"].values():
        entry = record["files"]["frames"]
        table = pq.read_table(Path(old) / entry["name"])
        col = table.column(cf.frames_column(layer)).combine_chunks()
        assert pa.types.is_binary(col.type)
        assert table.schema.field(cf.frames_column(layer)).metadata[b"dtype"] == b"float16"
        values = [np.frombuffer(v.as_py(), "<f2") for v in col]  # what any Parquet reader sees: the bytes of [num_frames, dim]
        as_lists = pa.array([v.tolist() for v in values], pa.list_(pa.float16()))
        table = table.set_column(table.schema.get_field_index(cf.frames_column(layer)), cf.frames_column(layer), as_lists)
        pq.write_table(table, Path(old) / entry["name"], row_group_size=3)  # several row groups: batches cross them
        data = (Path(old) / entry["name"]).read_bytes()
        record["files"]["frames"] = entry_for_bytes(entry["name"], data, rows=entry["rows"]).model_dump(mode="json")
    manifest_path.write_text(json.dumps(doc))
    got = {r.id: r.frames[layer] for r in open_cache(old).iter_frames(batch_rows=2)}
    assert got.keys() == want.keys()
    for uid, frames in want.items():
        assert frames.dtype == np.float16 and frames.ndim == 2
        np.testing.assert_array_equal(got[uid], frames)


def test_a_cache_moved_with_its_dataset_reads_the_dataset_at_its_new_place(aligned_corpus, tmp_path: Path) -> None:
    """The cache records where its dataset is relative to itself: a study moved as a whole still joins labels (the old place is gone)."""
    import shutil

    from helpers.cache_builder import build_cache_inline

    from layerlab.models import load

    study = tmp_path / "study"
    shutil.copytree(aligned_corpus[0], study / "corpus")
    build_cache_inline(load("fbank", "cpu"), str(study / "corpus"), str(study / "cache" / "fbank"), tier="pooled")
    assert json.loads((study / "cache" / "fbank" / "metadata.json").read_text())["source"]["relative"] == "../../corpus"
    moved = tmp_path / "moved"
    shutil.move(str(study), str(moved))
    cache = open_cache(str(moved / "cache" / "fbank"))
    assert cache.source_url == str(moved / "corpus") and cache.metadata.source.url == str(study / "corpus")
    assert sorted(cache.source_rows().index) == sorted(aligned_corpus[1])


def test_tasks_are_copied_into_the_cache(fbank_cache) -> None:
    tasks = open_cache(fbank_cache).metadata.tasks
    assert tasks["sid"].label_keys == ["sid"] and tasks["sid"].split_key == "sid" and tasks["asr"].kind == "transcription"


def test_layer_selection_by_names_and_ranges() -> None:
    names = [f"hidden_{i}" for i in range(13)] + ["embedding"]
    assert select_layers(names, None) == names
    assert select_layers(names, "hidden_2..hidden_4,embedding") == ["hidden_2", "hidden_3", "hidden_4", "embedding"]
    assert select_layers(names, "0-2") == ["hidden_0", "hidden_1", "hidden_2"]
    assert select_layers(names, ["hidden_12", "hidden_12"]) == ["hidden_12"]
    with pytest.raises(ValueError, match="no layer 'lstm9'"):
        select_layers(names, "lstm9")


def test_cache_info_and_verify_commands(fbank_cache) -> None:
    from typer.testing import CliRunner

    from layerlab.cli import app

    info = CliRunner().invoke(app, ["cache", "info", fbank_cache])
    assert info.exit_code == 0, info.output
    assert "complete" in info.output and "hop 160, window (window 400)" in info.output and "sid (utterance_classification)" in info.output
    ok = CliRunner().invoke(app, ["cache", "verify", fbank_cache])
    assert ok.exit_code == 0 and "match the manifest" in ok.output
