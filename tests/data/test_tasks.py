"""The task contract: manifests written before it get their tasks derived from what they record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from layerlab.data.manifest import read_manifest
from layerlab.data.tasks import TaskSpec, tasks_from_extra


def _old_manifest(root: Path, extra: dict) -> str:
    """A manifest.json as written before ``tasks`` existed."""
    root.mkdir(parents=True)
    doc = {"format": "layerlab-audio-shards", "version": 1, "dataset": "old", "sample_rate": 16000, "shards": [], "kept": 0,
           "quarantined": 0, "audio_seconds": 0.0, "quarantine": None, "tables": {}, "extra": extra}
    (root / "manifest.json").write_text(json.dumps(doc))
    return str(root)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"importer": "librispeech", "split_convention": "splits from the LibriSpeech subset name (train-*/dev-*/test-*) for tasks asr, pr"}, {"sid", "asr"}),
        ({"importer": "voxceleb1", "asv_trial_list": "veri_test2.txt"}, {"sid", "asv"}),
        ({"importer": "speechcommands", "ks_classes": ["yes", "_silence_"]}, {"ks"}),
        ({"importer": "fluent"}, {"ic"}),
        ({"importer": "iemocap", "er_classes": ["neu", "hap", "ang", "sad"]}, {"er"}),
        ({"importer": "folder"}, set()),
    ],
)
def test_old_importer_manifests_get_tasks(tmp_path: Path, extra: dict, expected: set) -> None:
    m = read_manifest(_old_manifest(tmp_path / "d", extra))
    assert set(m.tasks) == expected
    assert all(isinstance(t, TaskSpec) and t.name == k for k, t in m.tasks.items())
    if "asr" in expected:
        assert m.tasks["asr"].split_key == "asr" and m.tasks["asr"].label_keys == ["transcript"]


def test_old_synth_manifest_gets_its_structured_tasks(tmp_path: Path) -> None:
    extra = {"generator": "layerlab corpus synth (espeak-ng via espeakng-loader 0.2.4)", "phones": ["a", "b"],
             "speakers": [{"id": "s01"}, {"id": "s00"}],
             "tasks": {"ks": {"labels": ["yes", "no"]}, "ic": {"label_keys": ["ic_action"], "ic_action": ["x"]}, "style": {"labels": ["slow"]}}}
    m = read_manifest(_old_manifest(tmp_path / "d", extra))
    assert set(m.tasks) == {"sid", "asv", "pr", "asr", "ks", "ic", "style"}
    assert m.tasks["sid"].classes == {"sid": ["s00", "s01"]} and m.tasks["pr"].classes == {"pr": ["a", "b"]}
    assert m.tasks["ic"].classes == {"ic_action": ["x"]}


def test_task_spec_is_strict_and_round_trips() -> None:
    spec = tasks_from_extra({"importer": "iemocap"})["er"]
    assert TaskSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError):
        TaskSpec(name="x", kind="regression", label_keys=["x"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TaskSpec(name="x", kind="verification", label_keys=[], surprise=1)  # type: ignore[call-arg]
