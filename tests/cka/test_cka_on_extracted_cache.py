"""CKA on a cache written by the real extraction (tiny real WavLM on the session's Ray), frame and utterance level."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.speech_corpus import build_corpus

from layerlab.cka import cka_matrix
from layerlab.cka.tables import read_matrix
from layerlab.cache import open_cache
from layerlab.extract import CKASideOutput, ExtractConfig


def _build_corpus(root: str) -> list[str]:
    """The extraction tests' small audio-shard corpus of synthetic speech."""
    return build_corpus(root, utterances=10, max_shard_bytes=60_000)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> str:
    """A frames + pooled cache of a tiny s3prl WavLM over a few real audio shards, with a CKA side-output."""
    from layerlab.extract import extract
    from layerlab.models import tiny

    base = tmp_path_factory.mktemp("cka_on_extract")
    spec = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(base / 'wavlm.pt', seed=5)}"
    data = str(base / "data")
    expected = _build_corpus(data)
    out = str(base / "cache")
    summary = extract(spec, data, out, ExtractConfig(progress=False, tier="both", mode="bucketed", cka=[CKASideOutput(name="all")]))
    assert summary.complete and summary.shards_total >= 2 and summary.utterances == len(expected)
    return out


def _check_cka(mat: np.ndarray) -> None:
    np.testing.assert_allclose(np.diag(mat), 1.0, atol=1e-9)
    np.testing.assert_allclose(mat, mat.T, atol=1e-12)
    assert mat.min() >= 0.0 and mat.max() <= 1.0 + 1e-9


def test_cka_on_a_real_extracted_cache(extracted, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cli import app

    frame = run_cka(CKAJob(extracted, level="frame"), str(tmp_path / "frame"))
    mat, names, _, _ = read_matrix(frame["tables"][0])
    _check_cka(mat)
    assert names == ["hidden_0", "hidden_1", "hidden_2"] and not np.allclose(mat, 1.0)
    rows = list(open_cache(extracted).iter_frames())
    layers = [np.concatenate([r.frames[n] for r in rows]).astype(np.float32) for n in names]
    assert frame["n_frames"] == len(layers[0]) and frame["n_utterances"] == len(rows)
    np.testing.assert_allclose(mat, np.asarray(cka_matrix(layers)), atol=1e-6)

    utt = run_cka(CKAJob(extracted, level="utterance"), str(tmp_path / "utt"))
    umat = read_matrix(utt["tables"][0])[0]
    _check_cka(umat)
    assert utt["n_utterances"] == len(rows) and utt["n_frames"] is None  # one pooled mean per utterance

    # frame-level bootstrap grouped by the speakers stored in the frames tier
    boot = run_cka(CKAJob(extracted, level="frame", group_by="speaker"), str(tmp_path / "boot"), bootstrap=10)
    assert {r.speaker for r in rows} == {"spk0", "spk1", "spk2"}
    per_speaker = {s: sum(r.speaker == s for r in rows) for s in ("spk0", "spk1", "spk2")}
    assert per_speaker["spk1"] == 1  # its other utterances were too short or NaN
    # a one-utterance speaker is no jackknife group of its own: merged into the smallest other group, and said so
    assert boot["ci"]["n_groups"] == 2 and boot["ci"]["groups"] == ["spk0", "spk2"]
    assert any("spk1 -> spk2" in n for n in boot["notes"])

    # the extraction's CKA side-output (float32 activations, merged per shard) via the CLI, close to the fp16 frames' CKA
    result = CliRunner().invoke(app, ["cka", "--a", extracted, "--out", str(tmp_path / "side"), "--from-side-output", "all", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    side, side_names, _, _ = read_matrix(str(tmp_path / "side" / "cka_biased_frame.parquet"))
    _check_cka(side)
    import json

    import pyarrow.parquet as pq

    side_summary = json.loads((tmp_path / "side" / "summary.json").read_text())  # --bootstrap with a side-output was ignored
    assert side_summary["ci"]["group_by"] == "shard" and side_summary["ci"]["n_groups"] == len(open_cache(extracted).shard_names())
    table = pq.read_table(tmp_path / "side" / "cka_biased_frame.parquet").to_pandas()
    assert table["ci_low"].notna().all() and (table["ci_low"] <= table["value"] + 1e-9).all() and (table["value"] <= table["ci_high"] + 1e-9).all()
    assert side_names == names and np.abs(side - mat).max() < 2e-3
    with pytest.raises(ValueError, match="no CKA side-output 'nope'.*all"):
        CKAJob(extracted, side_output="nope")


def _copy(cache: str, dst) -> str:
    import shutil

    shutil.copytree(cache, dst)
    return str(dst)


def test_side_output_states_name_their_shard_and_utterances(extracted, tmp_path):
    """The side-output path merges per-shard states and reads no rows: a state copied over another shard's, or
    utterances inside two shards' states, were merged silently with --no-verify."""
    from pathlib import Path

    from layerlab.accumulator import state_from_bytes, state_to_bytes
    from layerlab.artifacts import IntegrityError
    from layerlab.cli import app

    cache = _copy(extracted, tmp_path / "c")
    first, second = sorted(Path(cache, "cka", "all").glob("shard-*.npz"))[:2]
    state = state_from_bytes(first.read_bytes())
    assert state["source_shard"] == open_cache(cache).shard_names()[0] and state["utterance_ids"]
    second.write_bytes(first.read_bytes())
    result = CliRunner().invoke(app, ["cka", "--a", cache, "--out", str(tmp_path / "o1"), "--from-side-output", "all", "--no-verify"])
    assert result.exit_code == 2 and "holds the CKA state of shard" in result.output and second.name in result.output, result.output
    state["source_shard"] = open_cache(cache).shard_names()[1]  # the same utterances, now claimed by the second shard
    second.write_bytes(state_to_bytes(state))
    result = CliRunner().invoke(app, ["cka", "--a", cache, "--out", str(tmp_path / "o2"), "--from-side-output", "all", "--no-verify"])
    assert result.exit_code == 2 and "appears twice" in result.output, result.output
    assert any("appears twice" in p or "checksum" in p or "size" in p for p in open_cache(cache).verify_files())
    with pytest.raises(IntegrityError):
        open_cache(cache, verify=False).cka_states("all")


def test_distributed_cka_counts_no_utterance_twice_even_with_no_verify(extracted, tmp_path):
    """`cka --on-ray`: one task per shard, so no reader saw two shards; a shard copied over another was merged twice."""
    import shutil
    from pathlib import Path

    from layerlab.artifacts import IntegrityError
    from layerlab.cka.pipeline import CKAJob
    from layerlab.cka.reducer import run_cka_on_ray

    cache = _copy(extracted, tmp_path / "c")
    first, second = sorted(Path(cache, "pooled").glob("shard-*.parquet"))[:2]
    shutil.copy(first, second)
    with pytest.raises(IntegrityError, match="appears twice"):
        run_cka_on_ray(CKAJob(cache, level="utterance", verify=False), str(tmp_path / "out"), str(tmp_path / "ckpt.npz"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt.npz").exists()
