"""Which probe tasks a dataset offers, read from its manifest (no audio is decoded).

Order of evidence: the manifest's declared ``tasks`` (TaskSpec contract), the synthetic corpus's
task description, and finally the label and split keys present on the rows themselves.
"""

from __future__ import annotations

from typing import Any

#: Label keys per task when a dataset does not declare its tasks.
TASK_LABEL_KEYS: dict[str, tuple[str, ...]] = {
    "sid": ("sid",), "pr": ("pr",), "ks": ("ks",), "ic": ("ic_action", "ic_object", "ic_location"),
    "er": ("er",), "style": ("style",), "asr": ("transcript",),
}
#: Tasks that ``tasks: all`` expands to (ASR is optional in the paper: list it explicitly to probe it).
DEFAULT_TASKS = ("pr", "ks", "ic", "sid", "asv", "er", "style")
CONTENT_TASKS = ("pr", "ks", "ic")
SPEAKER_TASKS = ("sid", "asv")
#: The tasks an importer declares (``layerlab.data.tasks``), used by a dry run before the import has happened.
IMPORTER_TASKS: dict[str, tuple[str, ...]] = {
    "librispeech": ("sid", "asr"), "voxceleb1": ("sid", "asv"), "speechcommands": ("ks",), "fluent": ("ic",),
    "iemocap": ("er",), "folder": (), "csv": (),
}
#: Per importer, the tasks that need a source file the import reads them from (task -> file name suffixes).
IMPORTER_TASK_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "librispeech": {"asr": (".trans.txt",)},
    "voxceleb1": {"asv": ("veri_test2.txt", "veri_test.txt", "list_test_all2.txt", "list_test_hard2.txt", "list_test_all.txt",
                          "list_test_hard.txt")},
}


def predicted_import_tasks(kind: str, src: str) -> tuple[list[str], dict[str, str]]:
    """(tasks, task -> why it is missing) an import of ``src`` will declare, known before it runs.

    A local source tree is listed (names only): a task whose labels come from files the tree lacks
    (LibriSpeech transcripts, VoxCeleb1 trial lists) is left out, as the finished import leaves it out.
    Remote sources are not read offline: they get every task the importer can declare.
    """
    from layerlab import storage

    tasks = list(IMPORTER_TASKS.get(kind, ()))
    needs = IMPORTER_TASK_FILES.get(kind, {})
    if not needs or not storage.is_local(src):
        return tasks, {}
    fs, path = storage.url_to_fs(src)
    try:
        names = [str(f).rsplit("/", 1)[-1] for f in fs.find(path)]
    except FileNotFoundError:
        return tasks, {}
    missing = {t: f"the source {src} has no {' or '.join(sfx)} file" for t, sfx in needs.items() if not any(n.endswith(sfx) for n in names)}
    return [t for t in tasks if t not in missing], missing


def predicted_synth_tasks(synth: dict[str, Any]) -> list[str]:
    """Tasks a synthetic corpus with these settings will carry (before it is built)."""
    from layerlab.data.synth import SynthConfig

    c = SynthConfig.model_validate(synth)
    tasks = ["sid", "asv", "pr", "asr"]
    if c.keyword_repeats or c.unknown_per_speaker or c.silence_per_speaker:
        tasks.append("ks")
    if c.commands_per_speaker:
        tasks.append("ic")
    if c.style_sentences_per_speaker:
        tasks.append("style")
    return tasks


def dataset_tasks(corpus_url: str) -> dict[str, str]:
    """Task name -> where its labels come from, for the audio-shard dataset at ``corpus_url``."""
    from layerlab.data.manifest import read_manifest

    manifest = read_manifest(corpus_url)
    declared = getattr(manifest, "tasks", None)
    if declared:  # a declared task no row has labels for is not offered (a synthetic corpus without keyword clips, LibriSpeech
        present = _labelled_keys(corpus_url)  # without .trans.txt): planning it would plan a probe that cannot run
        return {name: "declared in the dataset manifest" for name, spec in declared.items() if all(k in present for k in spec.label_keys)}
    described = manifest.extra.get("tasks")
    if isinstance(described, dict):
        return {k: "described by the synthetic corpus" for k, v in described.items() if isinstance(v, dict) and "split_key" in v}
    return _tasks_from_rows(corpus_url, manifest.tables)


def _labelled_keys(corpus_url: str) -> set[str]:
    """Label keys with a value on at least one row (``transcript`` for a non-empty transcript); labels and transcripts only are read."""
    from layerlab.data.shards import read_metadata

    keys: set[str] = set()
    for row in read_metadata(corpus_url, columns=("labels", "transcript")).to_pylist():
        keys.update(k for k, v in (row.get("labels") or []) if v not in (None, ""))
        if row.get("transcript"):
            keys.add("transcript")
    return keys


def _tasks_from_rows(corpus_url: str, tables: dict[str, Any]) -> dict[str, str]:
    """Tasks whose label keys appear on the rows (and ASV when a trial table exists)."""
    from layerlab.data.shards import read_metadata

    meta = read_metadata(corpus_url, columns=("labels", "transcript")).to_pylist()
    keys: set[str] = set()
    for row in meta:
        keys.update(k for k, _ in (row.get("labels") or []))
        if row.get("transcript"):
            keys.add("transcript")
    out = {task: "labels on the rows" for task, need in TASK_LABEL_KEYS.items() if all(k in keys for k in need)}
    if "asv_trials" in tables:
        out["asv"] = "trial table asv_trials"
    return out


def missing_reason(task: str, available: dict[str, str], dataset: str) -> str | None:
    """None when ``dataset`` offers ``task``, else a one-line reason naming what is missing."""
    base = task.split("-")[0]  # pr-frame, asv-cosine: variants of pr, asv
    if task in available or base in available:
        return None
    task = base
    need = "a trial table asv_trials" if task == "asv" else "labels " + ", ".join(repr(k) for k in TASK_LABEL_KEYS.get(task, (task,)))
    have = ", ".join(sorted(available)) or "none"
    return f"dataset {dataset!r} has no {task} labels (needs {need}; it offers: {have})"
