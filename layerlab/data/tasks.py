"""The task contract: what a dataset offers each downstream task (labels, splits or folds, classes, trials).

Recorded as ``AudioManifest.tasks`` by the synthetic corpus and every importer, copied into each
activation cache, and read by probes (``CacheReader.tasks``). Manifests written before the contract
existed get their tasks derived from what they hold (``tasks_from_manifest``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskKind = Literal["utterance_classification", "verification", "frame_sequence", "transcription"]

#: label key meaning "the row's transcript" rather than an entry of its ``labels`` map
TRANSCRIPT = "transcript"
#: at most this many distinct values of a label are listed as its classes when classes are observed
MAX_OBSERVED_CLASSES = 500


class TaskSpec(BaseModel):
    """One task a dataset supports: its kind, where the labels and the split live, classes, trial table."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: TaskKind
    label_keys: list[str]
    split_key: str | None = None
    folds: list[str] = Field(default_factory=list)
    classes: dict[str, list[str]] = Field(default_factory=dict)
    trials: str | None = None
    alignment: bool = False
    notes: str = ""


def _spec(name: str, kind: TaskKind, keys: list[str], split: str | None, **more: Any) -> TaskSpec:
    return TaskSpec(name=name, kind=kind, label_keys=keys, split_key=split, **more)


def _synth_tasks(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    """The synthetic corpus: SID, ASV trials, PR with alignments, ASR, KS, IC slots, style."""
    desc = extra.get("tasks") or {}
    speakers = sorted(str(s.get("id")) for s in extra.get("speakers", []) if isinstance(s, dict) and s.get("id") is not None)
    out = {
        "sid": _spec("sid", "utterance_classification", ["sid"], "sid", classes={"sid": speakers} if speakers else {},
                     notes=desc.get("sid", {}).get("rule", "")),
        "asv": _spec("asv", "verification", ["sid"], "asv", trials="asv_trials", notes=desc.get("asv", {}).get("rule", "")),
        "pr": _spec("pr", "frame_sequence", ["pr"], "pr", alignment=True, classes={"pr": list(extra["phones"])} if extra.get("phones") else {},
                    notes=desc.get("pr", {}).get("labels", "")),
        "asr": _spec("asr", "transcription", [TRANSCRIPT], "asr", notes=desc.get("asr", {}).get("rule", "")),
    }
    if "ks" in desc:
        out["ks"] = _spec("ks", "utterance_classification", ["ks"], "ks", classes={"ks": list(desc["ks"].get("labels", []))})
    if "ic" in desc:
        keys = list(desc["ic"].get("label_keys", ["ic_action", "ic_object", "ic_location"]))
        out["ic"] = _spec("ic", "utterance_classification", keys, "ic", classes={k: list(desc["ic"][k]) for k in keys if k in desc["ic"]})
    if "style" in desc:
        out["style"] = _spec("style", "utterance_classification", ["style"], "style", classes={"style": list(desc["style"].get("labels", []))},
                             notes=desc["style"].get("note", ""))
    return out


def _librispeech_tasks(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    split_tasks = extra.get("split_tasks")
    if split_tasks is None:  # manifests before split_tasks was recorded: parse the convention text
        m = re.search(r"for tasks (.*)$", str(extra.get("split_convention", "")))
        split_tasks = [t.strip() for t in m.group(1).split(",")] if m else ["asr"]
    out = {"sid": _spec("sid", "utterance_classification", ["sid"], None, notes="speaker ids; LibriSpeech subsets are speaker-disjoint, so no SID split")}
    out["asr"] = _spec("asr", "transcription", [TRANSCRIPT], "asr" if "asr" in split_tasks else None, notes="splits from the subset name")
    return out


def _voxceleb1_tasks(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    out = {"sid": _spec("sid", "utterance_classification", ["sid"], "sid", notes="iden_split.txt 1/2/3 = train/dev/test")}
    if extra.get("asv_trial_list"):
        out["asv"] = _spec("asv", "verification", ["sid"], "asv", trials="asv_trials", notes=f"trials from {extra['asv_trial_list']}")
    return out


def _speechcommands_tasks(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    classes = {"ks": list(extra["ks_classes"])} if extra.get("ks_classes") else {}
    return {"ks": _spec("ks", "utterance_classification", ["ks"], "ks", classes=classes, notes=str(extra.get("split_convention", "")))}


def _fluent_tasks(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    return {"ic": _spec("ic", "utterance_classification", ["ic_action", "ic_object", "ic_location"], "ic", notes=str(extra.get("split_convention", "")))}


def _iemocap_tasks(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    classes = {"er": list(extra["er_classes"])} if extra.get("er_classes") else {}
    return {"er": _spec("er", "utterance_classification", ["er"], "er", folds=[f"session{k}" for k in range(1, 6)], classes=classes,
                        notes="leave-one-session-out: fold k tests on session<k>")}


_BY_IMPORTER = {
    "librispeech": _librispeech_tasks, "voxceleb1": _voxceleb1_tasks, "speechcommands": _speechcommands_tasks,
    "fluent": _fluent_tasks, "iemocap": _iemocap_tasks,
}


def observed_tasks(labels: dict[str, set[str]], splits: dict[str, set[str]], has_transcript: bool) -> dict[str, TaskSpec]:
    """Tasks of a generic dataset (folder, CSV) from the label and split keys its rows carry."""
    out: dict[str, TaskSpec] = {}
    for key, values in sorted(labels.items()):
        classes = {key: sorted(values)} if len(values) <= MAX_OBSERVED_CLASSES else {}
        out[key] = _spec(key, "utterance_classification", [key], key if key in splits else None, classes=classes)
    if has_transcript:
        out["asr"] = _spec("asr", "transcription", [TRANSCRIPT], "asr" if "asr" in splits else None)
    return out


def tasks_from_extra(extra: dict[str, Any]) -> dict[str, TaskSpec]:
    """Tasks of a synthetic or imported dataset, from the manifest's ``extra`` (empty when unknown)."""
    if str(extra.get("generator", "")).startswith("layerlab corpus synth"):
        return _synth_tasks(extra)
    build = _BY_IMPORTER.get(str(extra.get("importer", "")))
    return build(extra) if build else {}


def parse_tasks(doc: Iterable[Any] | dict[str, Any]) -> dict[str, TaskSpec]:
    """Validate a ``{name: spec}`` mapping (as stored in JSON) into TaskSpecs."""
    items = doc.items() if isinstance(doc, dict) else ((d["name"], d) for d in doc)
    return {str(k): TaskSpec.model_validate(v) for k, v in items}
