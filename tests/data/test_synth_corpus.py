"""The synthetic corpus end to end: determinism, exact phone alignments, labels and split rules."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from layerlab import storage
from layerlab.data.manifest import read_manifest
from layerlab.data.shards import iter_utterances, read_metadata, read_table, verify
from layerlab.data.synth import SynthConfig, build_synth_corpus
from layerlab.data.synth.alignment import SILENCE, tiling_problem
from layerlab.data.synth.tasks import KEYWORDS, KS_LABELS

TINY = dict(speakers=4, read_per_speaker=4, unknown_per_speaker=1, commands_per_speaker=2, style_sentences_per_speaker=1)


def _digests(root: str) -> dict[str, str]:
    """sha256 of every file of a dataset (manifest included), keyed by relative path."""
    m = read_manifest(root)
    names = ["manifest.json", *(s.name for s in m.shards), *(t.name for t in m.tables.values()), m.quarantine.name]
    return {n: storage.sha256_url(storage.join(root, n)) for n in names}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SynthConfig]:
    """A tiny corpus (4 speakers) built once for this module."""
    cfg = SynthConfig(seed=0, **TINY)
    root = str(tmp_path_factory.mktemp("synth") / "corpus")
    build_synth_corpus(root, cfg, progress=False)
    return root, cfg


@pytest.fixture(scope="module")
def utterances(corpus: tuple[str, SynthConfig]) -> list:
    return list(iter_utterances(corpus[0]))


def test_rebuild_with_same_seed_is_byte_identical_even_on_another_store_and_worker_count(corpus: tuple[str, SynthConfig]) -> None:
    root, cfg = corpus
    again = "memory://synth-rebuild/corpus"
    try:
        build_synth_corpus(again, cfg.model_copy(update={"workers": 1}), progress=False)
        assert _digests(again) == _digests(root)
        assert storage.read_bytes(storage.join(again, "manifest.json")) == Path(root, "manifest.json").read_bytes()
    finally:
        storage.remove("memory://synth-rebuild", recursive=True, within="memory://synth-rebuild")
    assert verify(root) == []


def test_other_seed_gives_other_corpus(corpus: tuple[str, SynthConfig], tmp_path: Path) -> None:
    root, cfg = corpus
    other = str(tmp_path / "seed1")
    build_synth_corpus(other, cfg.model_copy(update={"seed": 1}), progress=False)
    a, b = _digests(root), _digests(other)
    shards_a = {k: v for k, v in a.items() if k.startswith("shards/")}
    shards_b = {k: v for k, v in b.items() if k.startswith("shards/")}
    assert shards_a != shards_b
    speakers_a = read_manifest(root).extra["speakers"]
    speakers_b = read_manifest(other).extra["speakers"]
    assert speakers_a != speakers_b


def test_counts_and_manifest(corpus: tuple[str, SynthConfig], utterances: list) -> None:
    root, cfg = corpus
    m = read_manifest(root)
    per_speaker = cfg.read_per_speaker + 10 * cfg.keyword_repeats + cfg.unknown_per_speaker + cfg.silence_per_speaker
    per_speaker += cfg.commands_per_speaker + cfg.style_sentences_per_speaker * len(cfg.styles)
    assert m.kept == len(utterances) == cfg.speakers * per_speaker
    assert m.quarantined == 0
    assert m.audio_seconds > 60
    assert set(m.tables) == {"asv_trials"}
    assert {"config", "speakers", "tasks", "phones", "generator"} <= set(m.extra)
    assert "workers" not in m.extra["config"]  # output must not depend on parallelism
    assert set(m.tasks) == {"sid", "asv", "pr", "asr", "ks", "ic", "style"}
    assert m.tasks["pr"].alignment and m.tasks["pr"].classes["pr"] == m.extra["phones"] and m.tasks["asv"].trials == "asv_trials"
    assert m.tasks["ic"].label_keys == ["ic_action", "ic_object", "ic_location"] and len(m.tasks["sid"].classes["sid"]) == cfg.speakers
    assert len({json.dumps(s, sort_keys=True) for s in m.extra["speakers"]}) == cfg.speakers


def test_alignments_tile_every_utterance_exactly(utterances: list) -> None:
    for u in utterances:
        spans = u.alignment
        assert spans, u.id
        assert spans[0].start == 0, u.id
        assert spans[-1].end == len(u.wav), u.id
        for a, b in zip(spans, spans[1:]):
            assert a.end == b.start, (u.id, a, b)
        assert all(s.end > s.start for s in spans), u.id
        assert tiling_problem(spans, len(u.wav)) is None


def test_phones_are_plausible(utterances: list) -> None:
    for u in utterances:
        phones = [s.phone for s in u.alignment]
        if u.labels.get("ks") == "_silence_":
            assert phones == [SILENCE]
            continue
        assert phones[-1] == SILENCE, u.id  # espeak ends every utterance with a pause
        speech = [p for p in phones if p != SILENCE]
        assert len(speech) >= 2, (u.id, phones)
        assert all(p and " " not in p and "'" not in p and p != ";" for p in speech), phones
        for s in u.alignment:  # no phone shorter than 1 ms or longer than 1.5 s
            if s.phone != SILENCE:
                assert 16 <= s.end - s.start <= 24_000, (u.id, s)
        if "pr" in u.labels:
            assert u.labels["pr"].split() == speech
    by_id = {u.id: u for u in utterances}
    yes = next(u for u in utterances if u.labels.get("ks") == "yes")
    assert [s.phone for s in yes.alignment if s.phone != SILENCE] == ["j", "E", "s"], by_id[yes.id].alignment
    assert all(len(u.wav) >= 16_000 for u in utterances if "ks" in u.labels)  # padded keyword clips


def test_labels_and_transcripts(utterances: list, corpus: tuple[str, SynthConfig]) -> None:
    _, cfg = corpus
    ks = {u.labels["ks"] for u in utterances if "ks" in u.labels}
    assert ks <= set(KS_LABELS) and set(KEYWORDS) | {"_silence_", "_unknown_"} == ks
    for u in utterances:
        if "ks" in u.labels and u.labels["ks"] in KEYWORDS:
            assert u.transcript == u.labels["ks"]
        if "sid" in u.labels:
            assert u.labels["sid"] == u.speaker and u.transcript and u.transcript == u.transcript.lower()
        if "ic_action" in u.labels:
            assert {"ic_object", "ic_location"} <= set(u.labels) and u.splits.keys() == {"ic"}
    styles = {u.labels["style"] for u in utterances if "style" in u.labels}
    assert styles == set(cfg.styles)
    turn_on = [u for u in utterances if u.transcript and u.transcript.startswith("turn on the lights")]
    assert all(u.labels["ic_action"] == "activate" and u.labels["ic_object"] == "lights" for u in turn_on)


def test_split_rules(utterances: list, corpus: tuple[str, SynthConfig]) -> None:
    root, _ = corpus
    speakers_by = defaultdict(lambda: defaultdict(set))
    for u in utterances:
        for task, split in u.splits.items():
            assert split in ("train", "dev", "test"), (u.id, task, split)
            speakers_by[task][split].add(u.speaker)
    all_speakers = {u.speaker for u in utterances}
    # SID: the same speakers in every split: the evaluation speakers (ASV dev + test), never all of them
    evaluation = speakers_by["asv"]["dev"] | speakers_by["asv"]["test"]
    assert speakers_by["sid"]["train"] == speakers_by["sid"]["dev"] == speakers_by["sid"]["test"] == evaluation < all_speakers
    # nested roles: every dev/test speaker of every task is an evaluation speaker (upstream training stays off them)
    for task, sets in speakers_by.items():
        assert sets["dev"] | sets["test"] <= evaluation, task
    # Content tasks: speaker-disjoint splits, all three present
    for task in ("pr", "asr", "ks", "ic", "style"):
        sets = speakers_by[task]
        assert sets["train"] and sets["dev"] and sets["test"], task
        assert not (sets["train"] & sets["dev"]) and not (sets["train"] & sets["test"]) and not (sets["dev"] & sets["test"]), task
    # ASR: test sentences never read in train
    texts = defaultdict(set)
    for u in utterances:
        if "asr" in u.splits:
            texts[u.splits["asr"]].add(u.transcript)
    assert not (texts["train"] & texts["test"]) and not (texts["train"] & texts["dev"])
    # ASV: training speakers disjoint from the held-out speakers of the trial list
    asv_train, asv_test = speakers_by["asv"]["train"], speakers_by["asv"]["test"]
    assert asv_train and asv_test and not (asv_train & asv_test)
    trials = read_table(root, "asv_trials").to_pylist()
    speaker_of = {u.id: u.speaker for u in utterances}
    labels = {t["label"] for t in trials}
    assert labels == {0, 1}
    for t in trials:
        a, b = speaker_of[t["enrol"]], speaker_of[t["test"]]
        assert a in asv_test and b in asv_test and t["enrol"] != t["test"]
        assert t["label"] == int(a == b)
    assert len({(t["enrol"], t["test"]) for t in trials}) == len(trials)
    meta = read_metadata(root)
    assert meta.num_rows == len(utterances)


def test_audio_is_not_all_clean(utterances: list) -> None:
    degraded = [u for u in utterances if "noise" in u.source or "reverb" in u.source]
    assert 0 < len(degraded) < len(utterances)



def test_builds_onto_s3(s3_bucket: str) -> None:
    cfg = SynthConfig(speakers=4, read_per_speaker=3, keyword_repeats=0, unknown_per_speaker=0, commands_per_speaker=1, style_sentences_per_speaker=0)
    root = f"{s3_bucket}/corpora/synth"
    summary = build_synth_corpus(root, cfg, progress=False)
    assert summary.kept == 4 * (3 + 1 + 1) and summary.quarantined == 0
    assert verify(root) == []
    assert len(read_table(root, "asv_trials")) > 0
    assert all(tiling_problem(u.alignment, len(u.wav)) is None for u in iter_utterances(root))
