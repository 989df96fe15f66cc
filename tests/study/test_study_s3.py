"""One results URL per study: a tiny study writes corpus, caches, CKA, markers and report to s3:// (moto)."""

from __future__ import annotations

import pytest

from layerlab import storage
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
