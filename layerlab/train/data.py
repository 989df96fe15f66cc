"""Training audio: which utterances train, streamed from the shards (any fsspec URL) as random crops.

Selection reads only the small metadata columns. Training speakers are all speakers of the corpus
except the *evaluation speakers*: by default every speaker with an utterance in some task's dev or
test split, plus every speaker of ``tables/asv_trials`` (so no probe's dev/test speaker is ever seen
in upstream training, as in SUPERB); a study passes its own list (``exclude_speakers``: the probed
tasks' dev/test speakers), to which the held-out ASV speakers are always added so the per-epoch EER
is measured on speakers the model never saw. The stream reads row groups in a
fresh random order every pass (each DDP rank its own share), keeps compressed rows in a shuffle
buffer, and decodes an utterance only when a crop is drawn from it: memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from layerlab import storage
from layerlab.data.audio import decode_flac
from layerlab.data.manifest import read_manifest

SAMPLE_RATE = 16000


@dataclass
class TrainingSet:
    """The utterances a recipe trains on (ids, speakers, lengths) and the counts behind the choice."""

    data: str
    ids: list[str]
    speakers: list[str]
    num_samples: np.ndarray
    held_out_speakers: list[str]  # the ASV held-out speakers (per-epoch evaluation), a subset of the excluded ones
    units: list[tuple[str, int]]  # (shard URL, row group) holding at least one training utterance
    skipped_short: int = 0
    padded_short: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # reason -> sorted speakers kept out of training

    @property
    def speaker_classes(self) -> list[str]:
        """Sorted distinct training speakers (class index order of the supervised recipe)."""
        return sorted(set(self.speakers))

    @property
    def excluded_speakers(self) -> list[str]:
        """Sorted speakers kept out of training for any reason."""
        return sorted({s for group in self.excluded.values() for s in group})

    def speaker_record(self) -> dict[str, object]:
        """``training_speakers`` and ``excluded_speakers`` (reason -> speakers) for the run's summary.json."""
        return {"training_speakers": self.speaker_classes, "excluded_speakers": {k: list(v) for k, v in self.excluded.items()}}


ExcludeSpec = list[str] | dict[str, list[str]] | None


def held_out_speakers(data: str, meta: object) -> list[str]:
    """Speakers kept out of training: ASV test split, plus every speaker in the trial table."""
    held = {spk for spk, splits in zip(meta.column("speaker").to_pylist(), meta.column("splits").to_pylist())
            if dict(splits or []).get("asv") == "test"}
    m = read_manifest(data)
    if "asv_trials" in m.tables:
        from layerlab.data.shards import read_table

        trials = read_table(data, "asv_trials")
        in_trials = set(trials.column("enrol").to_pylist()) | set(trials.column("test").to_pylist())
        by_id = dict(zip(meta.column("id").to_pylist(), meta.column("speaker").to_pylist()))
        held |= {by_id[i] for i in in_trials if i in by_id}
    return sorted(held)


def evaluation_speakers(meta: object) -> dict[str, list[str]]:
    """Per split key (``"<key> dev/test"``), the sorted speakers with an utterance in that task's dev or test split."""
    out: dict[str, set[str]] = {}
    for spk, splits in zip(meta.column("speaker").to_pylist(), meta.column("splits").to_pylist()):
        for key, value in (splits or []):
            if value in ("dev", "test"):
                out.setdefault(f"{key} dev/test", set()).add(spk or "")
    return {k: sorted(v) for k, v in sorted(out.items())}


def excluded_groups(data: str, meta: object, exclude: ExcludeSpec) -> dict[str, list[str]]:
    """Reason -> speakers kept out of training: the given list (or the corpus's dev/test speakers) plus the ASV held-out ones."""
    if exclude is None:
        groups = evaluation_speakers(meta)
    elif isinstance(exclude, dict):
        groups = {str(k): sorted(map(str, v)) for k, v in exclude.items()}
    else:
        groups = {"exclude_speakers (config)": sorted(map(str, exclude))}
    held = held_out_speakers(data, meta)
    if held:
        groups["ASV held-out (per-epoch evaluation)"] = held
    return {k: v for k, v in groups.items() if v}


def select_training(data: str, crop_seconds: float, *, min_seconds: float, short_audio: str,
                    exclude_held_out: bool = True, exclude: ExcludeSpec = None) -> TrainingSet:
    """Pick training utterances: drop evaluation speakers (``exclude``, default: every dev/test speaker of
    the corpus) and audio below ``min_seconds``; count short ones."""
    from layerlab.data.shards import read_metadata

    meta = read_metadata(data, columns=("id", "speaker", "num_samples", "splits"))
    if meta.num_rows == 0:
        raise ValueError(f"{data}: the corpus has no utterances")
    held = held_out_speakers(data, meta) if exclude_held_out else []
    groups = excluded_groups(data, meta, exclude) if exclude_held_out else {}
    held_set = {s for group in groups.values() for s in group}
    corpus_speakers = set(meta.column("speaker").to_pylist())
    if exclude_held_out and corpus_speakers and corpus_speakers <= held_set:
        shown = "; ".join(f"{k}: {len(v)}" for k, v in groups.items())
        raise ValueError(f"{data}: all {len(corpus_speakers)} speakers are evaluation speakers ({shown}), so upstream training would "
                         f"see a probe's dev/test speaker; give exclude_speakers (a list, may be empty) to choose")
    ids, speakers, lengths = [], [], []
    skipped = padded = 0
    crop = int(crop_seconds * SAMPLE_RATE)
    for uid, spk, n in zip(meta.column("id").to_pylist(), meta.column("speaker").to_pylist(), meta.column("num_samples").to_pylist()):
        if spk in held_set:
            continue
        if n < int(min_seconds * SAMPLE_RATE) or (n < crop and short_audio == "skip"):
            skipped += 1
            continue
        padded += int(n < crop)
        ids.append(uid)
        speakers.append(spk or "")
        lengths.append(int(n))
    wanted = set(ids)
    units = [u for u in _row_group_units(data) if wanted & u[2]]
    ts = TrainingSet(data, ids, speakers, np.asarray(lengths, dtype=np.int64), held,
                     [(url, rg) for url, rg, _ in units], skipped, padded, excluded=groups)
    ts.counts = {"corpus_utterances": meta.num_rows, "held_out_speakers": len(held), "training_utterances": len(ids),
                 "skipped_short": skipped, "padded_short": padded, "training_speakers": len(set(speakers)),
                 "excluded_speakers": len(held_set & corpus_speakers)}
    return ts


def _row_group_units(data: str) -> list[tuple[str, int, set[str]]]:
    """(shard URL, row-group index, ids in it) for every row group of the corpus (footers + id column only)."""
    from layerlab.data.shards import shard_urls

    out = []
    for url in shard_urls(data):
        with storage.open_input(url) as f:
            pf = pq.ParquetFile(f)
            for rg in range(pf.num_row_groups):
                ids = set(pf.read_row_group(rg, columns=["id"]).column("id").to_pylist())
                out.append((url, rg, ids))
    return out


@dataclass
class Clip:
    """One decoded training utterance."""

    id: str
    speaker: str
    wav: np.ndarray


def stream_utterances(ts: TrainingSet, *, seed: int, rank: int = 0, world: int = 1,
                      buffer_size: int = 1024) -> Iterator[Clip]:
    """Endless shuffled stream of this rank's training utterances (row groups re-ordered every pass)."""
    wanted = set(ts.ids)
    rng = np.random.default_rng([seed, rank])
    cap = max(2, min(buffer_size, len(ts.ids) // world))  # a small set must still flow
    buffer: list[tuple[str, str, bytes]] = []
    passes = 0
    while True:
        order = np.random.default_rng([seed, passes]).permutation(len(ts.units))  # same on every rank
        mine = [ts.units[i] for i in order[rank::world]] or [ts.units[i] for i in order]
        for url, rg in mine:
            with storage.open_input(url) as f:
                table = pq.ParquetFile(f).read_row_group(rg, columns=["id", "speaker", "audio"])
            for uid, spk, audio in zip(table.column("id").to_pylist(), table.column("speaker").to_pylist(), table.column("audio").to_pylist()):
                if uid not in wanted:
                    continue
                buffer.append((uid, spk or "", audio))
                if len(buffer) >= cap:
                    yield _pop(buffer, rng)
        passes += 1
        while len(buffer) > cap // 2:
            yield _pop(buffer, rng)


def _pop(buffer: list[tuple[str, str, bytes]], rng: np.random.Generator) -> Clip:
    i = int(rng.integers(len(buffer)))
    buffer[i], buffer[-1] = buffer[-1], buffer[i]
    uid, spk, audio = buffer.pop()
    return Clip(uid, spk, decode_flac(audio))


def random_crop(wav: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A ``length``-sample window at a random offset; shorter audio is zero-padded at a random offset."""
    n = wav.shape[0]
    if n >= length:
        start = int(rng.integers(0, n - length + 1))
        return wav[start:start + length].astype(np.float32, copy=True)
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - n + 1))
    out[start:start + n] = wav
    return out


def disjoint_starts(n: int, lengths: list[int], rng: np.random.Generator) -> list[int] | None:
    """Start samples for windows of ``lengths`` that do not overlap inside ``n`` samples, in random
    order with random gaps; None when they do not fit."""
    free = n - sum(lengths)
    if free < 0:
        return None
    order = rng.permutation(len(lengths))
    cuts = np.sort(rng.integers(0, free + 1, size=len(lengths)))  # gap before each window (cumulative)
    starts = [0] * len(lengths)
    pos = 0
    for rank, i in enumerate(order):
        starts[i] = int(pos + cuts[rank])
        pos += lengths[i]
    return starts


def crop_length(seconds: tuple[float, float] | float, rng: np.random.Generator) -> int:
    """Samples for a crop drawn uniformly in ``seconds`` (a (low, high) range or a fixed value)."""
    if isinstance(seconds, (int, float)):
        return int(seconds * SAMPLE_RATE)
    lo, hi = seconds
    return int(rng.uniform(lo, hi) * SAMPLE_RATE)


def load_utterances(data: str, ids: list[str]) -> dict[str, np.ndarray]:
    """Decode the given utterances (evaluation sets: small) in one streamed pass over the shards."""
    from layerlab.data.shards import iter_batches

    wanted = set(ids)
    out: dict[str, np.ndarray] = {}
    for batch in iter_batches(data, columns=["id", "audio"], batch_rows=64):
        for uid, audio in zip(batch.column("id").to_pylist(), batch.column("audio").to_pylist()):
            if uid in wanted:
                out[uid] = decode_flac(audio)
    missing = wanted - set(out)
    if missing:
        raise ValueError(f"{data}: {len(missing)} evaluation utterances are not in the shards (e.g. {sorted(missing)[:3]})")
    return out
