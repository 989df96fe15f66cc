"""The corpus plan: which speaker says what, with task labels and SUPERB-style splits.

Split rules (as SUPERB has them): SID splits each speaker's read utterances (same speakers in
train/dev/test); ASV trains on some speakers and tests on held-out ones (disjoint); PR, ASR, KS,
IC and style split by speaker (disjoint), read sentences also by text (test texts unseen).

The roles are nested so that a model trained on the corpus can stay off every probe's dev and test
speakers: the *evaluation speakers* are the ASV held-out (test) speakers plus the ASV dev speakers;
the content test speakers are among the ASV test speakers, the content dev speakers are the ASV dev
speakers, and SID splits only the evaluation speakers' utterances (the other speakers' read
utterances carry the SID label but no SID split). Every other speaker (the *upstream speakers*) may
train an upstream model; SUPERB's upstream models never saw a probe's dev/test speaker either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from layerlab.data.synth import texts
from layerlab.data.synth.config import STYLES, SynthConfig
from layerlab.data.synth.espeak import VoiceSettings
from layerlab.data.synth.voices import Speaker

if TYPE_CHECKING:  # pyarrow stays out of the generator processes (smaller, faster forks)
    import pyarrow as pa

KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE_LABEL = "_unknown_", "_silence_"
KS_LABELS: tuple[str, ...] = (*KEYWORDS, UNKNOWN, SILENCE_LABEL)
SPLITS = ("train", "dev", "test")
#: Fraction of the sentence list reserved for dev / test readers (so test texts are unseen in train).
SENTENCE_POOL_FRACTIONS = {"dev": 0.15, "test": 0.15}


@dataclass(frozen=True)
class UtterancePlan:
    """Everything a worker needs to render one utterance, and the labels it will carry."""

    index: int
    id: str
    speaker: str
    family: str  # read | keyword | silence | command | style
    text: str  # "" for noise-only clips
    settings: VoiceSettings | None  # None for noise-only clips
    labels: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    transcript: str | None = None
    pad_to_seconds: float = 0.0  # keyword clips are padded with silence to this length
    with_phone_label: bool = False  # add labels["pr"] from the alignment

    @property
    def seed(self) -> int:
        """Per-utterance seed (independent of corpus size and order)."""
        return int.from_bytes(hashlib.sha256(self.id.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SpeakerRoles:
    """Speaker-level split assignments."""

    content: dict[str, str]  # speaker -> train/dev/test for the speaker-disjoint tasks
    asv: dict[str, str]  # speaker -> train (ASV training), dev (ASV dev trials) or test (held out, trial list)

    @property
    def evaluation(self) -> list[str]:
        """Sorted speakers that appear in some task's dev or test split (never used to train an upstream model)."""
        return sorted(s for s, role in self.asv.items() if role != "train")

    @property
    def upstream(self) -> list[str]:
        """Sorted speakers that appear in no dev or test split (free for upstream training)."""
        return sorted(s for s, role in self.asv.items() if role == "train")


def _count(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


def assign_roles(speakers: list[Speaker], config: SynthConfig) -> SpeakerRoles:
    """Seeded nested speaker partitions: ASV test ⊇ content test, ASV dev = content dev, the rest train.

    ``asv_heldout_fraction`` of the speakers are ASV test speakers (the trial list) and
    ``content_dev_fraction`` are dev speakers of every speaker-disjoint task (ASV included); the content
    test speakers are drawn among the ASV test speakers. At least one speaker stays free for upstream training.
    """
    ids = [s.id for s in speakers]
    n = len(ids)
    rng = np.random.default_rng([config.seed, 0xC0DE])
    order = [ids[i] for i in rng.permutation(n)]
    n_held = min(max(2, int(round(n * config.asv_heldout_fraction))), n - 2)
    n_dev = min(_count(n, config.content_dev_fraction), n - n_held - 1)
    n_test = min(_count(n, config.content_test_fraction), n_held)
    if n_dev < 1:
        raise ValueError(f"{n} speakers cannot hold {n_held} ASV test speakers, a dev speaker and a training speaker")
    asv = {s: "test" for s in order[:n_held]}
    asv.update({s: "dev" for s in order[n_held : n_held + n_dev]})
    asv.update({s: "train" for s in order[n_held + n_dev :]})
    content = {s: "test" for s in order[:n_test]}
    content.update({s: "train" for s in order[n_test:n_held]})
    content.update({s: "dev" for s in order[n_held : n_held + n_dev]})
    content.update({s: "train" for s in order[n_held + n_dev :]})
    return SpeakerRoles(content, asv)


def sentence_pools(seed: int) -> dict[str, list[str]]:
    """The shipped sentences split into train/dev/test pools (seeded, disjoint)."""
    sents = list(texts.sentences())
    rng = np.random.default_rng([seed, 0x7E47])
    order = [sents[i] for i in rng.permutation(len(sents))]
    n_test = _count(len(sents), SENTENCE_POOL_FRACTIONS["test"])
    n_dev = _count(len(sents), SENTENCE_POOL_FRACTIONS["dev"])
    return {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}


def _sid_splits(count: int, config: SynthConfig, rng: np.random.Generator) -> list[str]:
    """Per-speaker SID split of ``count`` read utterances (each split gets at least one)."""
    n_test, n_dev = _count(count, config.sid_test_fraction), _count(count, config.sid_dev_fraction)
    labels = ["test"] * n_test + ["dev"] * n_dev + ["train"] * (count - n_test - n_dev)
    return [labels[i] for i in rng.permutation(count)]


def plan_corpus(speakers: list[Speaker], roles: SpeakerRoles, config: SynthConfig) -> list[UtterancePlan]:
    """Every utterance of the corpus in write order (speaker-major, then task family)."""
    pools = sentence_pools(config.seed)
    smallest = min(len(p) for p in pools.values())
    need = config.read_per_speaker + config.style_sentences_per_speaker
    if need > smallest:
        raise ValueError(f"read_per_speaker + style_sentences_per_speaker = {need} exceeds the smallest sentence pool ({smallest} sentences)")
    commands = texts.commands()
    unknown = texts.unknown_words()
    rank_in_split: dict[str, int] = {}
    plans: list[UtterancePlan] = []

    def add(**kw: object) -> None:
        plans.append(UtterancePlan(index=len(plans), **kw))  # type: ignore[arg-type]

    for spk_index, spk in enumerate(speakers):
        content = roles.content[spk.id]
        rank = rank_in_split.get(content, 0)
        rank_in_split[content] = rank + 1
        rng = np.random.default_rng([config.seed, 0x5E7, spk_index])
        pool = pools[content]
        start = (rank * need) % len(pool)  # rotate through the pool so all sentences get read
        chosen = [pool[(start + k) % len(pool)] for k in range(need)]
        sid = _sid_splits(config.read_per_speaker, config, rng)
        evaluation = roles.asv[spk.id] != "train"  # SID is probed on the evaluation speakers only
        for k, sentence in enumerate(chosen[: config.read_per_speaker]):
            add(
                id=f"{spk.id}-read-{k:03d}", speaker=spk.id, family="read", text=sentence, settings=spk.settings(),
                labels={"sid": spk.id},
                splits={**({"sid": sid[k]} if evaluation else {}), "asv": roles.asv[spk.id], "asr": content, "pr": content},
                transcript=texts.transcript_of(sentence), with_phone_label=True,
            )  # fmt: skip
        words = [w for w in KEYWORDS for _ in range(config.keyword_repeats)]
        words += [str(rng.choice(unknown)) for _ in range(config.unknown_per_speaker)]
        for k, word in enumerate(words):
            label = word if word in KEYWORDS else UNKNOWN
            add(
                id=f"{spk.id}-kws-{k:03d}", speaker=spk.id, family="keyword", text=word, settings=spk.settings(),
                labels={"ks": label}, splits={"ks": content}, transcript=word, pad_to_seconds=config.keyword_clip_seconds,
            )  # fmt: skip
        for k in range(config.silence_per_speaker):
            add(
                id=f"{spk.id}-sil-{k:03d}", speaker=spk.id, family="silence", text="", settings=None,
                labels={"ks": SILENCE_LABEL}, splits={"ks": content}, transcript=None, pad_to_seconds=config.keyword_clip_seconds,
            )  # fmt: skip
        for k in range(config.commands_per_speaker):
            cmd = commands[(spk_index * config.commands_per_speaker + k) % len(commands)]
            add(
                id=f"{spk.id}-cmd-{k:03d}", speaker=spk.id, family="command", text=cmd.phrase, settings=spk.settings(),
                labels={"ic_action": cmd.action, "ic_object": cmd.object, "ic_location": cmd.location},
                splits={"ic": content}, transcript=texts.transcript_of(cmd.phrase),
            )  # fmt: skip
        for k, sentence in enumerate(chosen[config.read_per_speaker :]):
            for style in config.styles:
                rate_scale, range_override, pitch_shift = STYLES[style]
                add(
                    id=f"{spk.id}-sty-{k:03d}-{style}", speaker=spk.id, family="style", text=sentence,
                    settings=spk.settings(rate_scale, range_override, pitch_shift),
                    labels={"style": style}, splits={"style": content}, transcript=texts.transcript_of(sentence),
                )  # fmt: skip
    return plans


def asv_trials(read_ids_by_speaker: dict[str, list[str]], roles: SpeakerRoles, config: SynthConfig) -> "pa.Table":
    """Trial list on held-out speakers: every same-speaker pair, plus sampled different-speaker pairs."""
    import pyarrow as pa

    held = sorted(s for s, role in roles.asv.items() if role == "test" and read_ids_by_speaker.get(s))
    targets: list[tuple[str, str, int]] = []
    for spk in held:
        ids = read_ids_by_speaker[spk]
        targets += [(ids[i], ids[j], 1) for i in range(len(ids)) for j in range(i + 1, len(ids))]
    rng = np.random.default_rng([config.seed, 0xA5F])
    n_non = int(round(len(targets) * config.asv_nontarget_per_target))
    nontargets: set[tuple[str, str, int]] = set()
    pool = [(spk, u) for spk in held for u in read_ids_by_speaker[spk]]
    max_non = sum(len(read_ids_by_speaker[a]) * len(read_ids_by_speaker[b]) for i, a in enumerate(held) for b in held[i + 1 :])
    n_non = min(n_non, max_non)
    while len(nontargets) < n_non:
        i, j = rng.integers(len(pool), size=2)
        (sa, ua), (sb, ub) = pool[i], pool[j]
        if sa != sb:
            nontargets.add((min(ua, ub), max(ua, ub), 0))
    trials = targets + sorted(nontargets)
    order = rng.permutation(len(trials))
    rows = [trials[i] for i in order]
    return pa.table(
        {
            "enrol": pa.array([r[0] for r in rows], pa.string()),
            "test": pa.array([r[1] for r in rows], pa.string()),
            "label": pa.array([r[2] for r in rows], pa.int8()),
        }
    )


def task_description(config: SynthConfig, roles: SpeakerRoles) -> dict[str, object]:
    """Label sets and split rules per task, for the manifest's ``extra``."""
    commands = texts.commands()

    def speakers_in(mapping: dict[str, str], split: str) -> list[str]:
        return sorted(s for s, v in mapping.items() if v == split)

    content = {sp: speakers_in(roles.content, sp) for sp in SPLITS}
    disjoint = "speaker-disjoint train/dev/test (content partition)"
    return {
        "sid": {"label_key": "sid", "labels": "speaker id", "split_key": "sid",
                "rule": "the evaluation speakers only, the same in train/dev/test; each one's read utterances split"},
        "asv": {"split_key": "asv", "rule": "ASV train speakers (split 'train') are disjoint from the dev speakers (split 'dev') and the held-out speakers (split 'test'); trials in table asv_trials (label 1 = same speaker)",
                "train_speakers": speakers_in(roles.asv, "train"), "dev_speakers": speakers_in(roles.asv, "dev"),
                "test_speakers": speakers_in(roles.asv, "test")},
        "pr": {"label_key": "pr", "labels": "espeak-ng phoneme mnemonics, stress marks removed, space-separated, no 'sil'", "split_key": "pr", "rule": disjoint + "; dev/test sentences unseen in train"},
        "asr": {"label_key": "transcript", "split_key": "asr", "rule": disjoint + "; dev/test sentences unseen in train"},
        "ks": {"label_key": "ks", "labels": list(KS_LABELS), "split_key": "ks", "rule": disjoint + f"; clips padded to {config.keyword_clip_seconds:g} s; _silence_ = noise only"},
        "ic": {"label_keys": ["ic_action", "ic_object", "ic_location"], "split_key": "ic", "rule": disjoint,
               "ic_action": sorted({c.action for c in commands}), "ic_object": sorted({c.object for c in commands}), "ic_location": sorted({c.location for c in commands})},
        "style": {"label_key": "style", "labels": list(config.styles), "split_key": "style", "rule": disjoint,
                  "note": "speaking style rendered by espeak rate / pitch-range settings: a stand-in for SUPERB ER, not emotion"},
        "content_speakers": content,
        "evaluation_speakers": roles.evaluation,
        "upstream_speakers": roles.upstream,
    }  # fmt: skip
