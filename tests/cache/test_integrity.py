"""Integrity on every read: damaged, replaced, truncated or missing files and unfinished caches are never used silently."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers.cache_builder import build_cache_inline, copy_cache
from layerlab.artifacts import IntegrityError
from layerlab.cache import open_cache
from layerlab.cache.reader import IncompleteCache
from layerlab.cli import app


def _pooled_files(cache: str) -> list[Path]:
    return sorted(Path(cache, "pooled").glob("shard-*.parquet"))


def test_flipped_bytes_are_caught_on_read(fbank_cache, tmp_path: Path) -> None:
    """Four flipped bytes in a ZSTD pooled shard once gave CKA(lstm2, lstm2) = 0.000 with exit 0."""
    cache = copy_cache(fbank_cache, tmp_path / "c")
    shard = _pooled_files(cache)[1]
    data = bytearray(shard.read_bytes())
    for k in range(4):
        data[len(data) // 2 + k] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{shard.name}.*checksum mismatch"):
        open_cache(cache).read_pooled()
    result = CliRunner().invoke(app, ["cka", "--a", cache, "--out", str(tmp_path / "out"), "--level", "utterance"])
    assert result.exit_code == 2 and "checksum mismatch" in result.output and shard.name in result.output
    assert not (tmp_path / "out").exists()


def test_a_shard_replaced_by_another_is_caught_with_and_without_verification(fbank_cache, tmp_path: Path) -> None:
    """A copy of another shard made the old reader count its utterances twice (1,770 rows of a 1,728-utterance cache)."""
    cache = copy_cache(fbank_cache, tmp_path / "c")
    first, second = _pooled_files(cache)[:2]
    shutil.copy(first, second)
    with pytest.raises(IntegrityError, match="size|checksum"):
        open_cache(cache).read_pooled()
    with pytest.raises(IntegrityError, match="appears twice"):  # --no-verify: duplicate ids still detected
        open_cache(cache, verify=False).read_pooled()
    verify = CliRunner().invoke(app, ["cache", "verify", cache])
    assert verify.exit_code == 1 and second.name in verify.output


@pytest.mark.parametrize("tier,level", [("pooled", "utterance"), ("frames", "frame")])
def test_cka_counts_no_utterance_twice_even_with_no_verify(fbank_cache, tmp_path: Path, tier: str, level: str) -> None:
    """`layerlab cka` reads shard by shard: with --no-verify a shard copied over another was counted twice (1,770 of 1,728 rows)."""
    cache = copy_cache(fbank_cache, tmp_path / "c")
    first, second = sorted(Path(cache, tier).glob("shard-*.parquet"))[:2]
    shutil.copy(first, second)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["cka", "--a", cache, "--out", str(out), "--level", level, "--no-verify"])
    errors = [line for line in result.output.splitlines() if line.startswith("error")]  # after the per-shard progress lines
    assert result.exit_code == 2 and len(errors) == 1 and "appears twice" in errors[0], result.output
    assert not out.exists() or not any(out.iterdir())


def test_truncated_and_missing_files_name_the_file(fbank_cache, tmp_path: Path) -> None:
    cache = copy_cache(fbank_cache, tmp_path / "c")
    shard = _pooled_files(cache)[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(IntegrityError, match=f"{shard.name}: size 100 bytes, manifest says"):
        open_cache(cache).read_pooled()
    with pytest.raises(IntegrityError, match=f"{shard.name}: not a readable Parquet file"):  # was "Parquet magic bytes not found", no file
        open_cache(cache, verify=False).read_pooled()
    shard.unlink()
    problems = open_cache(cache).verify_files()
    assert any(shard.name in p and "missing" in p for p in problems)


def test_an_unfinished_cache_is_refused_unless_allow_partial(aligned_corpus, tmp_path: Path) -> None:
    """A cache killed after 1 of 4 shards once gave CKA on a quarter of the utterances with exit 0."""
    from layerlab.models import load

    cache = build_cache_inline(load("fbank", "cpu"), aligned_corpus[0], str(tmp_path / "partial"), max_shards=1)
    with pytest.raises(IncompleteCache, match=r"incomplete cache \(1 of \d+ shards"):
        open_cache(cache)
    out = tmp_path / "out"
    refused = CliRunner().invoke(app, ["cka", "--a", cache, "--out", str(out), "--level", "utterance"])
    assert refused.exit_code == 2 and "incomplete cache" in refused.output and "--allow-partial" in refused.output
    ok = CliRunner().invoke(app, ["cka", "--a", cache, "--out", str(out), "--level", "utterance", "--allow-partial"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_shards"] == 1 and summary["caches"][0]["n_shards_source"] > 1
    assert summary["n_utterances"] == open_cache(cache, allow_partial=True).manifest.kept < len(aligned_corpus[1])


def test_resume_reextracts_a_damaged_shard(fbank_cache, aligned_corpus, tmp_path: Path) -> None:
    """A truncated shard was 'already done' on resume; now it is checked and extracted again."""
    from layerlab.cache.reader import read_cache_manifest
    from layerlab.data.manifest import read_manifest
    from layerlab.extract.pipeline import finished_shards

    cache = copy_cache(fbank_cache, tmp_path / "c")
    manifest = read_cache_manifest(cache)
    by_name = {s.name: s for s in read_manifest(aligned_corpus[0]).shards}
    assert set(finished_shards(cache, manifest, by_name)) == set(manifest.shards)
    shard, other = _pooled_files(cache)[:2]
    shard.write_bytes(shard.read_bytes()[:-10])
    kept = finished_shards(cache, manifest, by_name)
    assert len(kept) == len(manifest.shards) - 1 and all(shard.stem not in r.files["pooled"].name for r in kept.values())
    shutil.copy(_pooled_files(cache)[2], other)  # a shard replaced by a copy of another: also extracted again
    kept = finished_shards(cache, manifest, by_name)
    assert len(kept) == len(manifest.shards) - 2 and all(other.stem not in r.files["pooled"].name for r in kept.values())


def test_the_same_dataset_named_another_way_resumes(fbank_cache, aligned_corpus, tmp_path: Path) -> None:
    """syn6, /abs/syn6 and file:///abs/syn6 are one dataset: its manifest checksum decides, not the spelling."""
    from layerlab import storage
    from layerlab.cache import format as cf
    from layerlab.extract.pipeline import CacheMismatch, _prepare_output

    cache = copy_cache(fbank_cache, tmp_path / "c")
    meta = cf.CacheMetadata.model_validate_json(Path(cache, "metadata.json").read_text())
    root = aligned_corpus[0]
    assert storage.canonical_url(f"file://{root}") == storage.canonical_url(root + "/") == root
    relative = os.path.relpath(root, Path.cwd())  # e.g. ../../tmp/...: a `ray job submit` from another working directory
    assert not relative.startswith("/") and storage.canonical_url(relative) == root
    for spelling in (f"file://{root}", root + "/", relative):
        other = meta.model_copy(update={"source": meta.source.model_copy(update={"url": spelling})})
        _prepare_output(cache, other, overwrite=False)  # no CacheMismatch
    changed = meta.model_copy(update={"source": meta.source.model_copy(update={"manifest_checksum": "0" * 64})})
    with pytest.raises(CacheMismatch, match="source"):
        _prepare_output(cache, changed, overwrite=False)


def test_caches_that_only_partly_overlap_are_refused_unless_allow_partial(fbank_cache, fbank_cache_of_fewer_utterances, tmp_path: Path) -> None:
    """Two caches sharing only some utterances were silently intersected."""
    out = tmp_path / "out"
    args = ["cka", "--a", fbank_cache, "--b", fbank_cache_of_fewer_utterances, "--out", str(out), "--level", "utterance"]
    refused = CliRunner().invoke(app, args)
    errors = [line for line in refused.output.splitlines() if line.startswith("error")]
    assert refused.exit_code == 2 and len(errors) == 1 and "--allow-partial" in errors[0], refused.output
    assert "do not hold the same shards" in errors[0] or "only partly overlap" in errors[0]
    assert not out.exists() or not any(out.iterdir())
    ok = CliRunner().invoke(app, [*args, "--allow-partial"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_utterances"] == 8 < open_cache(fbank_cache).manifest.kept  # what was used is recorded
