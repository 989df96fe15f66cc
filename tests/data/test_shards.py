"""Audio shards: normalisation, round trips (local and a real S3 endpoint), rolling, quarantine."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from layerlab import storage
from layerlab.data.audio import AudioLimits, decode_flac, normalise
from layerlab.data.manifest import read_manifest
from layerlab.data.records import AudioRecord, PhoneSpan
from layerlab.data.shards import ShardWriter, iter_utterances, read_metadata, read_quarantine, verify


def _real_records(excerpt: Path, n: int = 6) -> list[AudioRecord]:
    files = sorted(excerpt.glob("*/*.flac"))[:n]
    out = []
    for i, f in enumerate(files):
        spk = f.parent.name
        out.append(
            AudioRecord(
                id=f.stem,
                audio=f.read_bytes(),
                speaker=spk,
                source=str(f.relative_to(excerpt)),
                labels={"sid": spk, "style": "read"},
                splits={"sid": ["train", "dev", "test"][i % 3]},
                transcript=f"utterance {i}",
                alignment=[PhoneSpan("sil", 0, 1600), PhoneSpan("a", 1600, 3200)],
            )
        )
    return out


def _write(root: str, records: list[AudioRecord], **kw) -> ShardWriter:
    with ShardWriter(root, "test", **kw) as w:
        for r in records:
            w.add(r)
    return w


def test_local_round_trip_keeps_audio_and_labels(tmp_path: Path, librispeech_excerpt: Path) -> None:
    recs = _real_records(librispeech_excerpt)
    root = str(tmp_path / "ds")
    w = _write(root, recs)
    assert w.manifest is not None and w.manifest.kept == len(recs) and w.manifest.quarantined == 0
    utts = list(iter_utterances(root))
    assert [u.id for u in utts] == [r.id for r in recs]
    for u, r in zip(utts, recs):
        src, sr = sf.read(io.BytesIO(r.audio), dtype="float32")
        assert sr == 16000
        # 16-bit FLAC source at 16 kHz: the shard holds exactly the same samples
        np.testing.assert_array_equal(u.wav, src)
        assert u.labels == r.labels and u.splits == r.splits and u.transcript == r.transcript
        assert u.alignment == r.alignment and u.speaker == r.speaker
    assert verify(root) == []


def test_s3_round_trip_equals_local(tmp_path: Path, s3_bucket: str, librispeech_excerpt: Path) -> None:
    recs = _real_records(librispeech_excerpt, n=5)
    local_root = str(tmp_path / "ds")
    s3_root = storage.join(s3_bucket, "corpora", "ds")
    _write(local_root, recs, max_shard_bytes=150_000)
    _write(s3_root, recs, max_shard_bytes=150_000)
    m_local, m_s3 = read_manifest(local_root), read_manifest(s3_root)
    assert len(m_s3.shards) > 1, "small max_shard_bytes must roll shards"
    assert [s.sha256 for s in m_s3.shards] == [s.sha256 for s in m_local.shards]
    u_local, u_s3 = list(iter_utterances(local_root)), list(iter_utterances(s3_root))
    assert len(u_s3) == len(recs)
    for a, b in zip(u_local, u_s3):
        assert a.id == b.id and a.labels == b.labels and a.splits == b.splits and a.alignment == b.alignment
        np.testing.assert_array_equal(a.wav, b.wav)
    assert verify(s3_root) == []


def test_resample_and_downmix_are_recorded(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    root = str(tmp_path / "ds")
    _write(root, [AudioRecord("s", stereo, "spk", "gen", 44100, alignment=[PhoneSpan("a", 0, 44100)])])
    table = pq.read_table(storage.join(root, read_manifest(root).shards[0].name))
    row = table.to_pylist()[0]
    assert (row["sample_rate"], row["orig_sample_rate"], row["orig_channels"]) == (16000, 44100, 2)
    assert row["num_samples"] == 16000
    assert row["alignment"] == [{"phone": "a", "start": 0, "end": 16000}]
    wav = decode_flac(row["audio"])
    # the 440 Hz tone survives resampling: dominant FFT bin at 440 Hz
    spec = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spec) * 16000 / len(wav) - 440) < 2


def test_full_scale_input_is_scaled_not_clipped() -> None:
    n = normalise(np.array([0.0, 2.0, -4.0, 1.0] * 1000, dtype=np.float32), 16000)
    assert n.gain == pytest.approx(0.999 / 4.0)
    assert np.abs(n.wav).max() <= 1.0


def test_shards_roll_by_size_and_manifest_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    recs = [AudioRecord(f"u{i:03d}", (0.1 * rng.standard_normal(16000)).astype(np.float32), f"s{i % 3}", "gen", 16000) for i in range(40)]
    root = str(tmp_path / "ds")
    w = _write(root, recs, max_shard_bytes=200_000)
    m = read_manifest(root)
    assert len(m.shards) >= 4
    assert sum(s.rows for s in m.shards) == m.kept == 40
    assert all(s.bytes < 200_000 * 1.5 for s in m.shards)
    assert m.audio_seconds == pytest.approx(40.0)
    assert read_metadata(root).num_rows == 40
    assert "40" in w.summary().render()


def test_rebuild_removes_stale_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    recs = [AudioRecord(f"u{i}", (0.1 * rng.standard_normal(16000)).astype(np.float32), "s", "gen", 16000) for i in range(20)]
    root = str(tmp_path / "ds")
    _write(root, recs, max_shard_bytes=100_000)
    _write(root, recs[:3], max_shard_bytes=100_000)
    files = storage.list_files(storage.join(root, "shards"), ".parquet")
    assert len(files) == len(read_manifest(root).shards)
    assert sum(1 for _ in iter_utterances(root)) == 3


def test_verify_detects_corruption(tmp_path: Path) -> None:
    recs = [AudioRecord("u", (0.1 * np.ones(1600)).astype(np.float32), "s", "gen", 16000)]
    root = str(tmp_path / "ds")
    _write(root, recs)
    shard = tmp_path / "ds" / read_manifest(root).shards[0].name
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    problems = verify(root)
    assert len(problems) == 1 and "checksum mismatch" in problems[0]


def test_interrupted_build_is_not_visible(tmp_path: Path) -> None:
    root = str(tmp_path / "ds")
    with pytest.raises(RuntimeError):
        with ShardWriter(root, "t", row_group_rows=1) as w:
            w.add(AudioRecord("u", (0.1 * np.ones(1600)).astype(np.float32), "s", "gen", 16000))
            raise RuntimeError("crash")
    with pytest.raises(FileNotFoundError, match="not an audio-shard dataset"):
        read_manifest(root)
    leftovers = [p for p in (tmp_path / "ds").rglob("*") if p.is_file()] if (tmp_path / "ds").exists() else []
    assert leftovers == []


def _wav_bytes(x: np.ndarray, sr: int = 16000, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_every_kind_of_bad_input_is_quarantined_with_its_reason(tmp_path: Path, librispeech_excerpt: Path) -> None:
    good = _real_records(librispeech_excerpt, n=2)
    unreadable = tmp_path / "locked.wav"
    unreadable.write_bytes(_wav_bytes(np.zeros(100, np.float32) + 0.1))
    os.chmod(unreadable, 0)
    missing = tmp_path / "missing.wav"
    nan = np.full(1600, 0.1, np.float32)
    nan[10] = np.nan
    inf = np.full(1600, 0.1, np.float32)
    inf[5] = np.inf
    root = str(tmp_path / "ds")
    with ShardWriter(root, "t", limits=AudioLimits(max_seconds=30.0)) as w:
        for r in good:
            assert w.add(r)
        assert not w.add(AudioRecord("corrupt", b"RIFF\x00\x00garbage-bytes" * 10, "s", "corrupt.wav"))
        assert not w.add(AudioRecord("empty-file", b"", "s", "empty.wav"))
        assert not w.add(AudioRecord("empty-audio", _wav_bytes(np.zeros(0, np.float32)), "s", "zero.wav"))
        assert not w.add(AudioRecord("nan", _wav_bytes(nan), "s", "nan.wav"))
        assert not w.add(AudioRecord("inf", inf, "s", "inf-array", 16000))
        assert not w.add(AudioRecord("long", (0.1 * np.ones(16000 * 31)).astype(np.float32), "s", "long.wav", 16000))
        assert not w.add(AudioRecord(good[0].id, good[0].audio, "s", "copy.flac"))
        if os.geteuid() != 0:  # root can read mode-000 files; the missing file covers OSError then
            assert not w.add_file(str(unreadable), "unreadable", "s")
        assert not w.add_file(str(missing), "missing", "s")
    q = {row["id"]: row for row in read_quarantine(root).to_pylist()}
    expected = {
        "corrupt": "undecodable audio",
        "empty-file": "empty file",
        "empty-audio": "empty audio",
        "nan": "non-finite samples",
        "inf": "non-finite samples",
        "long": "too long: 31.00 s > max 30 s",
        good[0].id: "duplicate id: first seen in",
        "missing": "unreadable file",
    }
    for id_, reason in expected.items():
        assert id_ in q, f"{id_} not quarantined"
        assert reason in q[id_]["reason"], q[id_]
    assert q["missing"]["source"] == str(missing)
    m = read_manifest(root)
    assert m.kept == 2 and m.quarantined == len(q)
    assert [u.id for u in iter_utterances(root)] == [r.id for r in good]


def test_alignment_tiling_survives_resampling(tmp_path: Path) -> None:
    """Spans that tile a 22.05 kHz utterance still tile the 16 kHz row exactly, none collapses."""
    rng = np.random.default_rng(3)
    n = 22050 + 7
    cuts = np.sort(rng.choice(np.arange(1, n), size=40, replace=False))
    bounds = [0, 1, 2, *cuts.tolist(), n]  # includes 1-sample spans that naive rounding would collapse
    spans = [PhoneSpan(f"p{i}", a, b) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    root = str(tmp_path / "ds")
    _write(root, [AudioRecord("u", (0.1 * rng.standard_normal(n)).astype(np.float32), "s", "gen", 22050, alignment=spans)])
    (u,) = list(iter_utterances(root))
    got = u.alignment
    assert got is not None and len(got) == len(spans)
    assert got[0].start == 0 and got[-1].end == len(u.wav)
    assert all(a.end == b.start for a, b in zip(got[:-1], got[1:]))
    assert all(s.end > s.start for s in got)


def test_alignment_outside_the_audio_is_quarantined(tmp_path: Path) -> None:
    root = str(tmp_path / "ds")
    with ShardWriter(root, "t") as w:
        bad = AudioRecord("u", (0.1 * np.ones(1600)).astype(np.float32), "s", "gen", 16000, alignment=[PhoneSpan("a", 0, 5000)])
        assert not w.add(bad)
    (row,) = read_quarantine(root).to_pylist()
    assert row["id"] == "u" and row["reason"].startswith("bad alignment")
