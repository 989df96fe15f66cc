"""Training-free per-layer profiles of one activation cache, end to end (no Ray here; see :mod:`layerlab.profile.distributed`).

``prepare`` opens the cache, joins the dataset's labels and binds the references (skipping, with the
reason, those the dataset cannot serve); ``make_pilot`` draws a seeded, speaker-capped pilot sample
for the shared shifts and the k-means codebooks; the two passes of :mod:`layerlab.profile.passes` run
per shard; ``finish`` merges the per-group states and writes the tables, the figure and
``summary.json``. :func:`run_profile` runs it all in this process.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from layerlab.profile.references import BoundReference, bind_reference, parse_references

#: the relative ridge grid of the held-out classifier (lambda = eps * tr(Cxx) / d), chosen on dev
DEFAULT_RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


class NothingToProfile(ValueError):
    """Every requested reference was skipped (the dataset or cache cannot serve any of them)."""


@dataclass
class ProfileJob:
    """Everything that defines one profile computation over one cache."""

    cache_url: str
    references: str | list[str] | None = None  # names (phone, phone_span, word_span, speaker, keyword, intent, style) or all
    clusters: int = 100  # k of the k-means units for MI with phones (0: no MI)
    pilot_frames: int = 20000  # frames per layer in the pilot sample (shifts, codebooks)
    pilot_shards: int = 8  # the pilot reads at most this many shards, spread over the cache
    kmeans_iters: int = 20
    ridges: tuple[float, ...] = DEFAULT_RIDGES
    cca_ridge: float = 1e-6
    seed: int = 0
    intervals: bool = True  # leave-one-speaker-out jackknife intervals (needs per-speaker states)
    layers: str | list[str] | None = None
    verify: bool = True
    allow_partial: bool = False
    batch_rows: int = 4096
    held_mb: float = 1024.0  # in one process, dev/test items up to this size stay in memory for pass 2 (0: always read again)

    def __post_init__(self) -> None:
        self.references = parse_references(self.references)
        if self.clusters < 0:
            raise ValueError(f"--clusters: must be >= 0 (0: no MI), got {self.clusters}")
        if self.pilot_frames < 1 or self.pilot_shards < 1 or self.kmeans_iters < 1:
            raise ValueError("--pilot-frames, pilot_shards and kmeans_iters must be >= 1")
        self.ridges = tuple(float(r) for r in self.ridges)
        if not self.ridges or any(not r > 0 for r in self.ridges):
            raise ValueError(f"--ridges: need positive values, got {list(self.ridges)}")
        if not self.cca_ridge >= 0:
            raise ValueError(f"cca_ridge: must be >= 0, got {self.cca_ridge}")


@dataclass
class Prepared:
    """The opened cache, the bound references and what was skipped (sent to every worker)."""

    job: ProfileJob
    info: Any  # CacheInfo over the chosen layers (utterance-level references)
    frame_info: Any  # CacheInfo over the chosen frame-level layers (None without frame or span references)
    refs: list[BoundReference]
    skipped: list[dict[str, str]]
    speakers: dict[str, str]
    alignments: dict[str, Any] = field(default_factory=dict)  # id -> (class indices, starts, ends) of the phone spans

    def speaker_of(self, utt: Any) -> str:
        return self.speakers.get(utt.id) or utt.speaker or ""

    def shards(self) -> list[str]:
        """Shard names read by the passes (the frames tier's when frame references are present, else the utterance tier's)."""
        from layerlab.cka.cache_input import shard_names

        return shard_names(self.frame_info, "frame") if self.frame_info is not None else shard_names(self.info, "utterance")

    def layers_of(self, ref: BoundReference) -> list[str]:
        return list(self.info.layer_names if ref.level == "utterance" else self.frame_info.layer_names)


@dataclass
class Pilot:
    """Shared shifts (frame and utterance level) and the k-means codebooks of the frame-level layers."""

    frame_shift: list[np.ndarray] | None
    utterance_shift: list[np.ndarray] | None
    codebooks: list[np.ndarray] | None
    clusters: int
    record: dict[str, Any]


def prepare(job: ProfileJob) -> Prepared:
    """Open the cache and bind every requested reference; NothingToProfile when none can be computed."""
    from layerlab.cka.cache_input import frame_level_only, read_cache_info, tier_for
    from layerlab.cache.reader import CacheError

    info = read_cache_info(job.cache_url, layers=job.layers, verify=job.verify, allow_partial=job.allow_partial)
    has_frames = "frames" in info.tiers
    rows = info.cache.source_rows()
    tasks = info.cache.tasks
    refs: list[BoundReference] = []
    skipped: list[dict[str, str]] = []
    frame_info = None
    for name in job.references or []:
        ref, reason = bind_reference(name, rows, tasks, has_frames=has_frames)
        if ref is not None and ref.level != "utterance" and frame_info is None:
            try:
                frame_info = frame_level_only(info)
            except CacheError:
                ref, reason = None, f"{name}: every selected layer is utterance-level (no frames to label)"
        if ref is None:
            skipped.append({"reference": name, "reason": str(reason)})
        else:
            refs.append(ref)
    if any(r.level == "utterance" for r in refs):
        tier_for(info, "utterance")
    if not refs:
        raise NothingToProfile(f"{job.cache_url}: no reference can be profiled on this cache: " + "; ".join(s["reason"] for s in skipped))
    speakers = {str(k): str(v or "") for k, v in rows["speaker"].items()}
    aligned = next((r for r in refs if r.level != "utterance"), None)
    return Prepared(job, info, frame_info, refs, skipped, speakers, dict(aligned.labels) if aligned is not None else {})


def _picked_shards(names: list[str], count: int) -> list[str]:
    """Up to ``count`` shard names spread evenly over the sorted list."""
    if not names:
        return []
    return [names[i] for i in sorted({round(k * (len(names) - 1) / max(1, count - 1)) for k in range(min(count, len(names)))})]


def make_pilot(prep: Prepared) -> Pilot:
    """A seeded pilot sample from up to ``pilot_shards`` shards, each speaker capped at an equal share: shifts and codebooks.

    The shift only keeps the float64 sums well conditioned (any value near the mean does); the k-means
    codebook of each frame-level layer is fitted on up to ``pilot_frames`` of its pilot frames, drawn
    without replacement with the job's seed. ``clusters >= `` the pilot's frames of a layer is an error.
    """
    from layerlab.cka.cache_input import read_utterances

    job = prep.job
    rng = np.random.default_rng(job.seed)
    record: dict[str, Any] = {"seed": job.seed}
    frame_shift = codebooks = utt_shift = None
    shards = _picked_shards(prep.shards(), job.pilot_shards)
    record["shards"] = shards
    n_speakers = max(1, len(set(prep.speakers.values())))
    if prep.frame_info is not None:
        want = 2 * job.pilot_frames
        cap = max(1, math.ceil(want / n_speakers))
        per_layer: list[list[np.ndarray]] = [[] for _ in prep.frame_info.layer_names]
        taken: dict[str, int] = {}
        total, utts = 0, 0
        for shard in shards:
            for utt in read_utterances(shard, prep.frame_info, "frame"):
                spk = prep.speaker_of(utt)
                if taken.get(spk, 0) >= cap or utt.id not in prep.alignments:
                    continue
                for i, x in enumerate(utt.layers):
                    per_layer[i].append(np.asarray(x, dtype=np.float32))
                taken[spk] = taken.get(spk, 0) + len(utt.layers[0])
                total += len(utt.layers[0])
                utts += 1
                if total >= want:
                    break
            if total >= want:
                break
        samples = []
        for name, parts in zip(prep.frame_info.layer_names, per_layer):
            frames = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
            if len(frames) > job.pilot_frames:
                frames = frames[np.sort(rng.choice(len(frames), job.pilot_frames, replace=False))]
            if not len(frames):
                raise ValueError(f"{prep.info.url}: the pilot found no aligned frames of layer {name} in shards {', '.join(shards)}")
            samples.append(frames)
        frame_shift = [s.astype(np.float64).mean(0) for s in samples]
        record.update(frame_utterances=utts, frame_speakers=len(taken), frames={n: len(s) for n, s in zip(prep.frame_info.layer_names, samples)})
        if job.clusters and any(r.level == "frame" for r in prep.refs):
            import torch

            from layerlab.kmeans import kmeans

            from layerlab.cka.linalg import single_threaded

            codebooks = []
            for name, s in zip(prep.frame_info.layer_names, samples):
                if job.clusters >= len(s):
                    raise ValueError(f"--clusters {job.clusters}: k must be below the number of frames, but the pilot sample holds only "
                                     f"{len(s)} frames of layer {name} ({prep.info.url}); lower --clusters or raise --pilot-frames")
                with single_threaded(torch.device("cpu")):  # shared cores make thread pools collapse (layerlab/cka/linalg.py)
                    codebooks.append(kmeans(torch.from_numpy(s), job.clusters, job.kmeans_iters, job.seed).numpy())
            record.update(clusters=job.clusters, kmeans_iters=job.kmeans_iters)
    if any(r.level == "utterance" for r in prep.refs):
        means: list[list[np.ndarray]] = [[] for _ in prep.info.layer_names]
        for shard in shards:
            for k, utt in enumerate(read_utterances(shard, prep.info, "utterance")):
                for i, x in enumerate(utt.layers):
                    means[i].append(np.asarray(x, np.float64).reshape(-1))
                if k >= 255:
                    break
        utt_shift = [np.mean(m, axis=0) for m in means]
        record["utterances"] = len(means[0])
    return Pilot(frame_shift, utt_shift, codebooks, job.clusters if codebooks else 0, record)


def run_profile(job: ProfileJob, out_url: str, progress: Callable[[str], None] | None = None, model: str | None = None) -> dict[str, Any]:
    """Both passes in this process, shard by shard, then :func:`layerlab.profile.results.finish`."""
    from layerlab.profile.passes import HeldOut, held_scores, shard_moments, shard_scores
    from layerlab.profile.results import fit_classifiers, finish

    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    prep = prepare(job)
    pilot = make_pilot(prep)
    timing = {"pilot_s": time.perf_counter() - t0}
    shards = prep.shards()
    parts, counts = [], {}
    ledger = _ledger(prep)
    held = HeldOut(int(job.held_mb * 2**20))
    for shard in shards:
        say(f"pass 1: shard {shard}")
        states, ids, c = shard_moments(prep, pilot, shard, held)
        ledger.add(ids, shard)
        parts.append(states)
        counts[shard] = c
    timing["pass1_s"] = time.perf_counter() - t0 - timing["pilot_s"]
    groups = merge_parts(parts)
    classifiers, fit_notes = fit_classifiers(prep, groups)
    t1 = time.perf_counter()
    scores: dict[str, Any] = {}
    if classifiers and held.complete:  # the dev/test items fit in memory: pass 2 scores them without reading the shards again
        say(f"pass 2: {held.nbytes / 2**20:.0f} MiB of dev/test items kept in memory")
        scores = held_scores(classifiers, held)
    elif classifiers:
        scores = merge_scores([shard_scores(prep, classifiers, shard) for shard in shards])
    timing["pass2_s"] = time.perf_counter() - t1
    return finish(prep, pilot, groups, classifiers, scores, out_url, counts, fit_notes, timing, model=model, progress=say)


def _ledger(prep: Prepared) -> Any:
    from layerlab.cache.reader import IdLedger

    return IdLedger(prep.info.url)


def merge_parts(parts: Iterable[dict[str, dict[Any, dict[str, Any]]]]) -> dict[str, dict[Any, Any]]:
    """Per reference, one :class:`LabelMoments` per group over every shard's states (a speaker in several shards adds up)."""
    from layerlab.profile.state import LabelMoments

    out: dict[str, dict[Any, Any]] = {}
    for part in parts:
        for name, groups in part.items():
            slot = out.setdefault(name, {})
            for key, state in groups.items():
                acc = LabelMoments.from_state_dict(state)
                slot[key] = slot[key].merge(acc) if key in slot else acc
    return out


def merge_scores(parts: Iterable[dict[str, dict[Any, dict[str, Any]]]]) -> dict[str, dict[Any, dict[str, np.ndarray]]]:
    """Per reference and group, the summed score counts (correct, total, unseen) of every shard."""
    out: dict[str, dict[Any, dict[str, np.ndarray]]] = {}
    for part in parts:
        for name, groups in part.items():
            slot = out.setdefault(name, {})
            for key, state in groups.items():
                if key in slot:
                    for f in ("correct", "total", "unseen"):
                        slot[key][f] = slot[key][f] + np.asarray(state[f])
                else:
                    slot[key] = {f: np.asarray(state[f]).copy() for f in ("correct", "total", "unseen")}
    return out
