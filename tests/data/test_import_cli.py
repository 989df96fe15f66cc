"""The import entry points: `layerlab corpus import`, argument errors, and s3:// sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layerlab.cli import app
from layerlab.data.importers import KINDS, import_dataset
from layerlab.data.shards import read_metadata, verify

runner = CliRunner()


def test_help_lists_every_kind_and_an_example() -> None:
    result = runner.invoke(app, ["corpus", "import", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for kind in KINDS:
        assert kind in result.output
    assert "layerlab corpus import librispeech" in result.output


def test_cli_imports_and_prints_the_summary(tmp_path: Path, import_audio, import_bad_files) -> None:
    import_audio.write(tmp_path / "src" / "spk" / "a.wav", 0)
    import_bad_files[1](tmp_path / "src" / "spk" / "b.wav")
    out = tmp_path / "out"
    result = runner.invoke(app, ["corpus", "import", "folder", str(tmp_path / "src"), "--out", str(out), "-o", "speaker_from=top"])
    assert result.exit_code == 0, result.output
    assert "kept: 1 utterances" in result.output and "quarantined: 1" in result.output
    assert "empty file (0 bytes)" in result.output
    assert "import counts:" in result.output and "1  kept" in result.output
    assert verify(str(out)) == []


def test_cli_rejects_unknown_kind_and_option(tmp_path: Path) -> None:
    bad_kind = runner.invoke(app, ["corpus", "import", "timit", str(tmp_path), "--out", str(tmp_path / "o")])
    assert bad_kind.exit_code != 0 and "known kinds: librispeech" in bad_kind.output
    bad_opt = runner.invoke(app, ["corpus", "import", "folder", str(tmp_path), "--out", str(tmp_path / "o"), "-o", "colour=red"])
    assert bad_opt.exit_code != 0 and "speaker_from" in bad_opt.output


def test_api_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset kind 'timit'"):
        import_dataset("timit", str(tmp_path), str(tmp_path / "o"))
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['colour'\]"):
        import_dataset("folder", str(tmp_path), str(tmp_path / "o"), colour="red")
    with pytest.raises(FileNotFoundError, match="nowhere: source not found"):
        import_dataset("folder", str(tmp_path / "nowhere"), str(tmp_path / "o"))


def test_librispeech_from_s3_to_s3(s3_bucket: str, librispeech_excerpt: Path, tmp_path: Path) -> None:
    import s3fs

    local = tmp_path / "excerpt"
    for spk in ("367", "1688"):
        (local / spk).mkdir(parents=True)
        for f in sorted((librispeech_excerpt / spk).glob("*.flac"))[:2]:
            shutil.copy(f, local / spk / f.name)
    shutil.copy(librispeech_excerpt / "SPEAKERS.TXT", local / "SPEAKERS.TXT")
    (local / "1688" / "stray.txt").write_text("x")
    fs = s3fs.S3FileSystem()
    fs.put(str(local), f"{s3_bucket[5:]}/raw/excerpt", recursive=True)
    out = f"{s3_bucket}/corpora/ls"
    summary = import_dataset("librispeech", f"{s3_bucket}/raw/excerpt", out)
    assert (summary.kept, summary.quarantined) == (4, 1)
    assert summary.reasons == {"unexpected file": 1}
    meta = read_metadata(out).to_pylist()
    assert {(r["speaker"], dict(r["labels"])["sex"]) for r in meta} == {("367", "F"), ("1688", "M")}
    assert verify(out) == []
