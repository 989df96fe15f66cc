"""One results URL per study: a tiny study writes corpus, caches, CKA, markers and report to s3:// (moto)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from layerlab import artifacts, storage
from layerlab.study.config import parse_study_config
from layerlab.study.runner import run_study
from study_fixtures import tiny_study


@pytest.mark.slow
def test_tiny_study_on_s3_runs_and_reuses(s3_bucket: str, ray_session: None) -> None:
    out = f"{s3_bucket}/studies/tiny"
    doc = tiny_study(models={"fbank": {"spec": "fbank"}}, cka={"within": {"levels": ["utterance"]}, "across": None})
    config = parse_study_config(doc, "tiny.yaml")
    first = run_study(config, out, say=lambda line: None)
    assert not first.failed and first.report == f"{out}/report/index.html"
    assert storage.exists(f"{out}/report/index.html") and storage.exists(f"{out}/stages/extract__synth__fbank.done.json")
    assert storage.exists(f"{out}/cache/synth/fbank/manifest.json") and storage.exists(f"{out}/corpus/synth/manifest.json")
    again = run_study(config, out, say=lambda line: None)
    assert again.computed == [] and len(again.reused) == len(first.computed)


@pytest.mark.slow
def test_a_study_copied_from_s3_to_disk_reuses_its_stages_and_repairs_a_truncated_cache_shard(s3_bucket: str, ray_session: None,
                                                                                             tmp_path: Path) -> None:
    """The copy reuses every stage (paths in markers are relative to --out); a truncated shard is extracted again, the report equal."""
    out = f"{s3_bucket}/studies/tiny"
    doc = tiny_study(models={"fbank": {"spec": "fbank"}}, cka={"within": {"levels": ["utterance"], "bootstrap": 10}, "across": None})
    config = parse_study_config(doc, "tiny.yaml")
    first = run_study(config, out, say=lambda line: None)
    assert not first.failed
    local = tmp_path / "copy"
    fs, path = storage.url_to_fs(out)
    fs.get(path + "/", str(local), recursive=True)
    lines: list[str] = []
    copied = run_study(config, str(local), say=lines.append)
    assert copied.computed == [] and set(copied.reused) == set(first.computed), lines
    tables = {p.name: pd.read_parquet(p) for p in (local / "report" / "tables").glob("*.parquet")}

    shard = sorted((local / "cache" / "synth" / "fbank" / "pooled").glob("*.parquet"))[0]  # was an IntegrityError on every rerun, never repaired
    shard.write_bytes(shard.read_bytes()[:-100])
    shutil.rmtree(local / "report")
    lines.clear()
    repaired = run_study(config, str(local), say=lines.append)
    assert set(repaired.repaired) == {"extract/synth/fbank", "report"} and not repaired.failed, lines
    assert any(line.startswith("[repair] extract/synth/fbank: ") and "extracting the damaged shards again" in line for line in lines)
    from layerlab.cache import open_cache

    cache = open_cache(str(local / "cache" / "synth" / "fbank"))
    assert cache.source_url == str(local / "corpus" / "synth")  # the copy's own corpus, found beside the cache
    assert not [p for p in (artifacts.check_entry(cache.url, e) for r in cache.manifest.shards.values() for e in r.files.values()) if p]
    rebuilt = {p.name: pd.read_parquet(p) for p in (local / "report" / "tables").glob("*.parquet")}
    assert sorted(rebuilt) == sorted(tables)
    for name, table in tables.items():
        pd.testing.assert_frame_equal(rebuilt[name], table, check_exact=False, rtol=1e-9)
