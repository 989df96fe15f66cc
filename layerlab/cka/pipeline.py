"""CKA of activation caches end to end (no Ray): read shards, accumulate per group, merge, write outputs.

Outputs under ``out``: ``cka_<estimator>_<level>[_<pair>].parquet`` (tidy tables with layer names and,
with bootstrap, ``ci_low``/``ci_high``), ``cka_<estimator>_<level>.png`` (heat maps sharing one colour
scale) and ``summary.json``. With two caches the joint layout gives A x A, B x B and A x B at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from layerlab.accumulator import merge_all
from layerlab.cache.reader import IdLedger
from layerlab.cka.measure_registry import MEASURES, MeasureOptions, moment_names, parse_measures, sample_names
from layerlab.cka.cache_input import (
    CacheInfo, Utterance, frame_level_only, read_cache_info, read_utterances, shard_names, side_output_estimator, side_output_info,
    tier_for,
)

GROUPINGS = ("shard", "speaker", "utterance")


@dataclass
class CKAJob:
    """Everything that defines one CKA computation over one or two caches."""

    a_url: str
    b_url: str | None = None
    estimator: str = "biased"
    level: str = "frame"
    batch_size: int = 1024
    seed: int = 0
    group_by: str = "shard"
    device: str | None = None
    fast_matmul: bool = False
    side_output: str | None = None  # read the extraction's per-shard CKA states of this name instead of a tier
    layers_a: str | list[str] | None = None  # layer names or ranges of A (None: all; utterance-level dropped at frame level)
    layers_b: str | list[str] | None = None
    verify: bool = True
    allow_partial: bool = False
    bootstrap: int = 0  # resampling replicates requested (checked here, before any work)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # per shard: utterances, frames dropped by alignment
    joint: JointSideOutput | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list, repr=False)  # caveats written to summary.json and printed  # set when --from-side-output reads a joint extraction's A x B states
    info_a: CacheInfo | None = field(default=None, repr=False)
    info_b: CacheInfo | None = field(default=None, repr=False)
    measures: str | list[str] | None = None  # names (registry); None: linear CKA only
    options: MeasureOptions = field(default_factory=MeasureOptions)
    sample: Any = field(default=None, repr=False)  # the speaker-balanced sample of items (sample measures), once collected
    collector: Any = field(default=None, repr=False)  # what keeps the planned items during the pass (plan_sample)

    def __post_init__(self) -> None:
        self.measures = parse_measures(self.measures)
        beyond = [m for m in moment_names(self.measures) if m != "linear_cka"]
        if beyond and self.estimator == "minibatch":
            raise ValueError(f"--measure {beyond[0]}: needs the full second moments; use --estimator biased or debiased (minibatch keeps only HSIC sums)")
        if self.group_by not in GROUPINGS:
            raise ValueError(f"--group-by: must be one of {', '.join(GROUPINGS)}, got {self.group_by!r}")
        if self.estimator not in ("biased", "debiased", "minibatch"):
            raise ValueError(f"--estimator: must be biased, debiased or minibatch, got {self.estimator!r}")
        if self.level not in ("frame", "utterance"):
            raise ValueError(f"--level: must be frame or utterance, got {self.level!r}")
        if self.batch_size < 4:
            raise ValueError(f"--batch-size: must be >= 4 frames, got {self.batch_size}")
        if self.bootstrap < 0:
            raise ValueError(f"--bootstrap: must be >= 0, got {self.bootstrap}")
        if self.bootstrap and self.estimator == "minibatch":
            raise ValueError("--bootstrap: confidence intervals need --estimator biased or debiased (minibatch groups would batch within one group)")
        opts = {"verify": self.verify, "allow_partial": self.allow_partial}
        self.info_a = self.info_a or read_cache_info(self.a_url, layers=self.layers_a, **opts)
        if self.b_url:
            self.info_b = self.info_b or read_cache_info(self.b_url, layers=self.layers_b, **opts)
        if self.side_output:
            self._check_side_output()
        else:
            for info in self.infos:
                tier_for(info, self.level)  # fail now, with the reason, when the level's tier was not extracted
        if self.level == "frame" and not self.side_output:
            self.info_a = frame_level_only(self.info_a)
            self.info_b = frame_level_only(self.info_b) if self.info_b else None
        wanted = sample_names(self.measures)
        if wanted:
            from layerlab.cka.sample_measures import check_sample_options

            check_sample_options(self.options, wanted, sum(len(info.layer_names) for info in self.infos))
            for info in self.infos:
                tier_for(info, self.level)  # the sample reads items: a side-output state holds none

    def _check_side_output(self) -> None:
        """Side-output states are frame-level, per shard, of one cache (or a joint pair), with a fixed accumulator kind."""
        if self.level != "frame":
            raise ValueError("--from-side-output: side-outputs are frame-level CKA; use --level frame")
        if self.group_by != "shard":
            raise ValueError("--from-side-output: states are per shard, so the bootstrap unit must be --group-by shard")
        if self.b_url:
            if self.estimator == "minibatch":
                raise ValueError("--from-side-output: joint states are feature states; use --estimator biased or debiased")
            self.info_a, self.info_b = frame_level_only(self.info_a), frame_level_only(self.info_b)
            self.joint = find_joint(self.info_a, self.info_b, str(self.side_output))
            return
        narrowed = side_output_info(self.info_a, str(self.side_output))  # raises, naming the recorded side-outputs
        kind = side_output_estimator(narrowed, str(self.side_output))
        if (kind == "minibatch") != (self.estimator == "minibatch"):
            allowed = "minibatch" if kind == "minibatch" else "biased or debiased"
            raise ValueError(f"{self.a_url}: side-output {self.side_output!r} holds {kind} states; use --estimator {allowed}")
        self.info_a = narrowed

    @property
    def infos(self) -> list[CacheInfo]:
        return [self.info_a] + ([self.info_b] if self.info_b else [])

    @property
    def dropped(self) -> dict[str, list[str]]:
        """Utterance-level layers left out at frame level, per cache URL."""
        return {info.url: info.dropped for info in self.infos if info.dropped}

    def shard_pairs(self) -> list[tuple[str, list[str]]]:
        """(shard name, [the name for A, for B]) for every shard present in all caches."""
        per_cache = [shard_names(info, self.level) for info in self.infos]
        names = sorted(per_cache[0])
        if len(per_cache) == 2:
            missing = sorted(set(names) ^ set(per_cache[1]))
            if missing and not self.allow_partial:
                raise ValueError(f"caches {self.a_url} and {self.b_url} do not hold the same shards (e.g. {missing[0]}); "
                                 "extract both from the same dataset, or pass --allow-partial to use the shards they share")
            names = [n for n in names if n in set(per_cache[1])]
        return [(n, [n for _ in per_cache]) for n in names]

    def layers_of(self, shards: list[str]) -> Iterator[tuple[str, str | None, list[np.ndarray]]]:
        """(id, speaker, layers of A then B) for the utterances of one shard present in every cache."""
        return _joined_utterances(shards, self.infos, self.level, self.allow_partial)

    def new_accumulator(self, shift: Any = None) -> Any:
        """An empty accumulator over all layers (A, or A then B in the joint layout)."""
        from layerlab.cka.feature_stats import FeatureCKA
        from layerlab.cka.minibatch import MinibatchCKA

        dims = [d for info in self.infos for d in info.dims]
        rates = [r for info in self.infos for r in info.frame_rates_hz] if self.level == "frame" else None
        if self.estimator == "minibatch":
            return MinibatchCKA(dims, batch_size=self.batch_size, seed=self.seed, device=self.device, frame_rates_hz=rates)
        dims_b = self.info_b.dims if self.info_b else None
        return FeatureCKA(self.info_a.dims, dims_b, mode="joint" if dims_b else "within", shift=shift, device=self.device, fast_matmul=self.fast_matmul, frame_rates_hz=rates,
                          estimator=self.estimator)


def _joined_utterances(shards: list[str], infos: list[CacheInfo], level: str, allow_partial: bool = False) -> Iterator[tuple[str, str | None, list[np.ndarray]]]:
    """Stream one shard (A, or A and B joined by id); utterances missing from one cache are an error unless ``allow_partial``."""
    streams = [read_utterances(s, info, level) for s, info in zip(shards, infos)]
    if len(streams) == 1:
        for u in streams[0]:
            yield u.id, u.speaker, u.layers
        return
    # both caches mirror one audio shard but may order it differently (other batching mode): read them
    # in lock-step and hold back only the utterances that arrived before their partner
    pending: list[dict[str, Utterance]] = [{}, {}]
    for pair in itertools.zip_longest(*streams):
        for side, u in enumerate(pair):
            if u is None:
                continue
            partner = pending[1 - side].pop(u.id, None)
            if partner is None:
                pending[side][u.id] = u
                continue
            a, b = (u, partner) if side == 0 else (partner, u)
            yield a.id, a.speaker if a.speaker is not None else b.speaker, a.layers + b.layers
    unmatched = [(infos[side].url, uid) for side in (0, 1) for uid in pending[side]]
    if unmatched and not allow_partial:
        url, uid = unmatched[0]
        raise ValueError(f"shard {shards[0]}: {len(unmatched)} utterances are in only one cache (e.g. {uid!r} only in {url}); "
                         "the caches only partly overlap: pass --allow-partial to compare the shared utterances")


def _group_key(job: CKAJob, shard_key: str, uid: str, speaker: str | None, where: str) -> str:
    """The bootstrap group of one utterance (its shard, speaker or itself)."""
    if job.group_by == "speaker":
        if speaker is None:
            raise ValueError(f"{where}: no speaker column (frames tier written before speakers were stored); re-extract, or use --level utterance or --group-by shard")
        return speaker or "unknown"
    return shard_key if job.group_by == "shard" else uid


def merge_groups(keyed: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Merge (group key, accumulator) pairs from many shards into one accumulator per key (e.g. a speaker across shards)."""
    by_key: dict[str, list[Any]] = {}
    for key, acc in keyed:
        by_key.setdefault(key, []).append(acc)
    return {key: merge_all(accs) for key, accs in sorted(by_key.items())}


def shard_group_states(job: CKAJob, shards: list[str], shift: Any, ids: list[str] | None = None) -> dict[str, Any]:
    """Accumulate one shard into one accumulator per group (the shard, each speaker or each utterance).

    ``ids`` (when given) receives the id of every utterance accumulated, for the caller's duplicate check.
    """
    groups: dict[str, Any] = {}
    buffers: dict[str, list[list[np.ndarray]]] = {}
    shard_key = shards[0].rsplit("/", 1)[-1]
    names = [n for info in job.infos for n in info.layer_names]
    rates = [r for info in job.infos for r in info.frame_rates_hz] if job.level == "frame" else None
    counts: dict[str, Any] = {"n_utterances": 0, "frames_dropped": dict.fromkeys(names, 0), "group_utterances": {}}
    job.counts[shards[0]] = counts

    def flush(key: str) -> None:
        if buffers.get(key):
            acc = groups.setdefault(key, job.new_accumulator(shift))
            batch = buffers.pop(key)
            if job.level == "frame":
                lengths = [np.array([len(u[i]) for u in batch]) for i in range(len(batch[0]))]
                padded = [_pad([u[i] for u in batch]) for i in range(len(batch[0]))]
                acc.update(padded, lengths=lengths)
            else:
                acc.update([np.concatenate([u[i] for u in batch]) for i in range(len(batch[0]))])

    for uid, speaker, layers in job.layers_of(shards):
        counts["n_utterances"] += 1
        if ids is not None:
            ids.append(uid)
        if rates:
            for name, n in zip(names, alignment_drops([len(x) for x in layers], rates)):
                counts["frames_dropped"][name] += n
        key = _group_key(job, shard_key, uid, speaker, f"{job.a_url} frames tier, shard {shards[0]}")
        if job.collector is not None and uid in job.collector.plan.chosen:
            job.collector.offer(uid, speaker, key, aligned_items(layers, rates))
        counts["group_utterances"][key] = counts["group_utterances"].get(key, 0) + 1
        buffers.setdefault(key, []).append(layers)
        if sum(len(u[0]) for u in buffers[key]) >= job.batch_size:
            flush(key)
    for key in list(buffers):
        flush(key)
    return groups


def aligned_items(layers: list[np.ndarray], rates: list[float] | None) -> list[np.ndarray]:
    """One utterance's items per layer: its aligned frames (the rule CKA uses), or its ``(1, d)`` means at utterance level."""
    if not rates:
        return [np.asarray(x) for x in layers]
    from layerlab.cka.align import flatten_frames

    return [t.cpu().numpy() for t in flatten_frames([np.asarray(x)[None] for x in layers], frame_rates_hz=rates)]


def plan_sample(job: CKAJob, progress: Callable[[str], None] | None = None) -> None:
    """Plan the speaker-balanced sample of the sample measures from the caches' index; the pass then keeps its items."""
    from layerlab.cka.cache_input import utterance_index
    from layerlab.cka.sample_measures import SampleCollector, plan_sample as plan_items

    if not sample_names(job.measures):
        return
    indexes = [utterance_index(info, job.level) for info in job.infos]
    rates = [r for info in job.infos for r in info.frame_rates_hz] if job.level == "frame" else None
    factors = [int(round(r / min(rates))) for r in rates] if rates else None
    rows = []
    for uid, (speaker, counts) in sorted(indexes[0].items()):
        both = [counts] + [idx[uid][1] for idx in indexes[1:] if uid in idx]
        if len(both) != len(indexes):
            continue  # in one cache only (--allow-partial): not compared, not sampled
        flat = [c for side in both for c in side]
        items = min(c // f for c, f in zip(flat, factors)) if factors else 1
        rows.append((uid, speaker, items))
    unit = "frames" if job.level == "frame" else "utterances"
    plan = plan_items(rows, job.options.sample_size, job.options.sample_seed, unit)
    job.collector = SampleCollector(plan)
    job.notes.extend(plan.notes)
    if progress:
        progress(f"sample: {plan.size} of {plan.available} {unit} from {plan.speakers} speakers (seed {plan.seed})")


def collect_sample(job: CKAJob, progress: Callable[[str], None] | None = None) -> None:
    """A pass that only keeps the planned items (the side-output paths read no tier otherwise)."""
    if job.collector is None:
        return
    wanted = set(job.collector.plan.chosen)
    rates = [r for info in job.infos for r in info.frame_rates_hz] if job.level == "frame" else None
    for name, urls in job.shard_pairs():
        if progress:
            progress(f"sample: shard {name}")
        for uid, speaker, layers in job.layers_of(urls):
            if uid in wanted:
                job.collector.offer(uid, speaker, _group_key(job, name, uid, speaker, f"{job.a_url}, shard {name}"), aligned_items(layers, rates))


def group_sizes(counts: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Utterances per group over every shard's counts (a speaker in several shards adds up)."""
    sizes: dict[str, int] = {}
    for c in counts:
        for key, n in (c.get("group_utterances") or {}).items():
            sizes[key] = sizes.get(key, 0) + int(n)
    return sizes


#: a jackknife group needs at least this many utterances; smaller groups are merged (never left alone)
MIN_GROUP_UTTERANCES = 2


def merge_small_groups(groups: dict[str, Any], sizes: dict[str, int], unit: str,
                       min_utterances: int = MIN_GROUP_UTTERANCES) -> tuple[dict[str, Any], list[str]]:
    """Merge each group of fewer than ``min_utterances`` utterances into the smallest other group; returns (groups, notes).

    A one-utterance shard (or speaker) as its own leave-one-out group makes the jackknife treat one
    utterance as an independent cluster; merging keeps every group a cluster of several utterances.
    """
    known = {k: sizes[k] for k in groups if k in sizes}
    small = sorted((k for k, n in known.items() if n < min_utterances), key=lambda k: (known[k], k))
    if not small or len(groups) < 2:
        return groups, []
    out = dict(groups)
    size = dict(known)
    merged_into: dict[str, str] = {}
    for key in small:
        if key not in out or size.get(key, min_utterances) >= min_utterances or len(out) < 2:
            continue
        target = min((k for k in out if k != key), key=lambda k: (size.get(k, 0), k))
        out[target] = merge_all([out[target], out.pop(key)])
        size[target] = size.get(target, 0) + size.pop(key)
        merged_into[key] = target
    renamed = {}
    for key, target in merged_into.items():
        while target in merged_into:
            target = merged_into[target]
        renamed[key] = target
    note = (f"{len(renamed)} {unit} group(s) with fewer than {min_utterances} utterances merged into another group for the "
            f"jackknife ({', '.join(f'{k} -> {v}' for k, v in sorted(renamed.items())[:6])}{', ...' if len(renamed) > 6 else ''})")
    return dict(sorted(out.items())), [note]


def alignment_drops(lengths: list[int], rates: list[float]) -> list[int]:
    """Frames of each layer left out when layers are average-pooled to the slowest rate and truncated to the shortest."""
    slowest = min(rates)
    factors = [int(round(r / slowest)) for r in rates]
    common = min(n // f for n, f in zip(lengths, factors))
    return [n - common * f for n, f in zip(lengths, factors)]


def _pad(frames: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(frames), max(len(f) for f in frames), frames[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(frames):
        out[i, : len(f)] = f
    return out


def pilot_shift_for(job: CKAJob, frames: int = 4096, shards: int = 8) -> np.ndarray | None:
    """A shared shift: the mean frame of a pilot sample from up to ``shards`` shards spread over the cache (None for minibatch).

    CKA does not depend on the shift; it only keeps the float64 sums well conditioned, so it should
    be near the corpus mean, which the first utterances of one shard need not be.
    """
    from layerlab.cka.align import flatten_frames

    if job.estimator == "minibatch":
        return None
    pairs = job.shard_pairs()
    picked = [pairs[i] for i in sorted({round(k * (len(pairs) - 1) / max(1, shards - 1)) for k in range(min(shards, len(pairs)))})]
    rates = [r for info in job.infos for r in info.frame_rates_hz] if job.level == "frame" else None
    parts = []
    for _, urls in picked:
        count = 0
        for _, _, layers in job.layers_of(urls):
            aligned = flatten_frames([x[None] for x in layers], frame_rates_hz=rates) if rates else layers
            parts.append(np.concatenate([np.asarray(a, dtype=np.float64) for a in aligned], axis=1))
            count += len(parts[-1])
            if count >= frames // len(picked):
                break
    if not parts:
        raise ValueError(f"shard {pairs[0][0] if pairs else '?'}: no utterances shared by the caches")
    return np.concatenate(parts).mean(axis=0)


def _n_frames(merged: Any) -> int:
    """Frames (or utterances, at utterance level) that entered the merged statistic."""
    if hasattr(merged, "n"):
        return int(merged.n)
    return int(getattr(merged, "num_batches", 0)) * int(getattr(merged, "batch_size", 0))


def _alignment(job: CKAJob) -> dict[str, Any] | None:
    """How layers of different frame rates (or frame conventions) were lined up, and what it cost."""
    if job.level != "frame" or job.side_output:
        return None
    metas = [info.cache.layer(n) for info in job.infos for n in info.layer_names]
    rates = [m.frame_rate_hz for m in metas]
    slowest = min(r for r in rates if r)
    dropped = {name: 0 for name in (m.name for m in metas)}
    for c in job.counts.values():
        for name, n in c["frames_dropped"].items():
            dropped[name] = dropped.get(name, 0) + n
    starts = {m.name: round(1000 * float(m.frame_center(0)) / job.infos[0].cache.metadata.sample_rate, 3) for m in metas}
    doc = {
        "method": "average-pool each layer to the slowest frame rate, then truncate every utterance to its shortest layer",
        "common_rate_hz": slowest,
        "pool_factor": {m.name: int(round(m.frame_rate_hz / slowest)) for m in metas},
        "frames_dropped": dropped,
        "first_frame_centre_ms": starts,
    }
    if len(set(starts.values())) > 1:
        doc["note"] = "layers' first frames are centred at different times (frame conventions differ); frames are aligned by index"
    return doc


def finish(job: CKAJob, merged: Any, out_url: str, groups: dict[str, Any] | list[Any] | None = None, bootstrap: int = 0,
           progress: Callable[[str], None] | None = None, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Compute every requested measure from the merged state (and jackknife CIs from the groups) and write all outputs.

    ``groups``: one accumulator per group, keyed by the group's name (shard, speaker, utterance): the jackknife's
    groups, and ``ridge_r2``'s cross-validation units; ``sizes``: utterances per group (default: counted while
    reading), so groups of one utterance are merged. With intervals, each table gets ``<stem>_replicates.parquet``
    beside it (leave-one-group-out values). Linear CKA keeps its names (``cka_<estimator>_<level>``); another measure
    writes ``cka_<measure>_<level>``; ``measure_agreement_<level>.parquet`` ranks the measures against each other.
    """
    from layerlab import storage
    from layerlab.cka.measure_run import compute_measures

    notes: list[str] = list(job.notes)
    for url, names in job.dropped.items():
        notes.append(f"{url}: utterance-level layers {', '.join(names)} left out of frame-level CKA (they have no frames)")
    keyed = groups if isinstance(groups, dict) else {f"group{k:04d}": g for k, g in enumerate(groups or [])}
    group_names: list[str] = []
    if bootstrap:
        if job.group_by != "utterance":
            keyed, merge_notes = merge_small_groups(keyed, sizes if sizes is not None else group_sizes(job.counts.values()), job.group_by)
            notes += merge_notes
        if len(keyed) < 2:
            raise ValueError(f"{job.a_url}: a confidence interval needs at least 2 {job.group_by} groups, found {len(keyed)}; "
                             "use another --group-by or drop --bootstrap")
        if progress:
            progress(f"confidence intervals: leave-one-{job.group_by}-out jackknife over {len(keyed)} groups")
        group_names = list(keyed)
    infos = job.infos
    names = [info.layer_names for info in infos]
    results = compute_measures(merged, job.measures, job.options, job.estimator, groups=list(keyed.values()), intervals=bool(bootstrap),
                               names=[n for side in names for n in side], sample=job.sample, device=job.device, progress=progress)
    for res in results.values():
        notes += [n for n in (res.ci.notes if res.ci else []) if n not in notes]
    specs = [info.model_spec or info.url for info in infos]
    la = len(names[0])
    blocks = {"a_a": (slice(0, la), slice(0, la), 0, 0)}
    if len(names) == 2:
        blocks.update(b_b=(slice(la, None), slice(la, None), 1, 1), a_b=(slice(0, la), slice(la, None), 0, 1))
    n_frames = _n_frames(merged)
    used = [info.cache.usage() for info in infos]
    n_utterances = sum(c["n_utterances"] for c in job.counts.values()) if job.counts else (n_frames if job.level == "utterance" else used[0]["n_utterances"])
    shards_used = len(job.counts) if job.counts else used[0]["n_shards"]
    count_text = f"N={n_utterances} utt" + (f", {n_frames} frames" if job.level == "frame" else "")
    common = dict(level=job.level, n_frames=n_frames, n_utterances=n_utterances, fast_matmul=job.fast_matmul)
    per_measure: dict[str, Any] = {}
    for name, res in results.items():
        mine = dict(blocks)
        if len(names) == 2 and not MEASURES[name].symmetric:
            mine["b_a"] = (slice(la, None), slice(0, la), 1, 0)  # an asymmetric measure: B's layers as rows too
        per_measure[name] = _write_measure(job, res, out_url, mine, names, specs, group_names, count_text, common)
    first = per_measure.get("linear_cka") or next(iter(per_measure.values()))
    agreement = None
    if len(results) > 1:
        from layerlab.cka.agreement import write_agreement

        agreement = write_agreement(storage.join(out_url, f"measure_agreement_{job.level}.parquet"), results, blocks, names, specs, job.level)
    ci = next((r.ci for r in results.values() if r.ci is not None), None)
    summary: dict[str, Any] = {
        "tables": per_measure["linear_cka"]["tables"] if "linear_cka" in per_measure else [],
        "replicates": per_measure["linear_cka"]["replicates"] if "linear_cka" in per_measure else [],
        "group_by": job.group_by if ci is not None else None, "heatmap": first["heatmap"], "estimator": job.estimator, "level": job.level,
        "measures": per_measure, "agreement": agreement,
        "n_frames": n_frames if job.level == "frame" else None, "n_utterances": n_utterances, "n_shards": shards_used,
        "caches": used, "layers": {info.url: info.layer_names for info in infos},
        "ci": None if ci is None else {"method": ci.method, "confidence": ci.confidence, "n_groups": ci.n_groups, "group_by": job.group_by,
                                    "groups": group_names},
        "alignment": _alignment(job), "notes": notes,
    }
    storage.write_json(storage.join(out_url, "summary.json"), summary)
    return summary


def _measure_estimator(job: CKAJob, name: str) -> str:
    """What the ``estimator`` column says for a measure (linear CKA: the job's estimator)."""
    if name == "linear_cka":
        return job.estimator
    if name == "rbf_cka":
        return f"{job.options.rbf_hsic} HSIC, sample"
    return {"ridge_r2": "held-out", "mutual_knn": "sample"}.get(name, "plug-in")


def _write_measure(job: CKAJob, res: Any, out_url: str, blocks: dict[str, tuple[slice, slice, int, int]], names: list[list[str]],
                   specs: list[str], group_names: list[str], count_text: str, common: dict[str, Any]) -> dict[str, Any]:
    """Tables (and replicates) per block and one heat map of one measure; returns its entry of summary.json."""
    from layerlab import storage
    from layerlab.cka.heatmap import HeatmapPanel, colour_scale, write_heatmaps
    from layerlab.cka.tables import write_matrix, write_replicates

    spec = MEASURES[res.name]
    stem = f"cka_{job.estimator}_{job.level}" if res.name == "linear_cka" else f"cka_{res.name}_{job.level}"
    estimator = _measure_estimator(job, res.name)
    ci = res.ci
    written, written_reps, panels = [], [], []
    for tag, (rows, cols, i, j) in blocks.items():
        suffix = "" if len(blocks) == 1 else f"_{tag}"
        url = storage.join(out_url, f"{stem}{suffix}.parquet")
        write_matrix(
            url, res.values[rows, cols], names[i], names[j], model_a=specs[i], model_b=specs[j], estimator=estimator, measure=res.name,
            notes=res.notes[rows, cols], settings=res.info, **common,
            ci_low=None if ci is None else ci.low[rows, cols], ci_high=None if ci is None else ci.high[rows, cols],
            ci_method=None if ci is None else ci.method, ci_groups=None if ci is None else ci.n_groups,
            ci_group_by=None if ci is None else job.group_by,
        )
        written.append(url)
        if res.replicates is not None:
            rep_url = storage.join(out_url, f"{stem}{suffix}_replicates.parquet")
            write_replicates(rep_url, res.replicates[:, rows, cols], names[i], names[j], res.groups or group_names, group_by=job.group_by,
                             estimator=estimator, measure=res.name, level=job.level)
            written_reps.append(rep_url)
        infos = job.infos
        title = f"{infos[i].name} vs {infos[j].name}\n{spec.label if res.name != 'linear_cka' else job.estimator + ' CKA'}, {job.level} level, {count_text}"
        panels.append(HeatmapPanel(res.values[rows, cols], title, f"{infos[i].name} layer", f"{infos[j].name} layer", names_a=names[i], names_b=names[j]))
    png = storage.join(out_url, f"{stem}.png")
    vmin, vmax, cmap = colour_scale(spec.low, spec.high, spec.similarity, [p.matrix for p in panels])
    write_heatmaps(png, panels, vmin, vmax, label=spec.label, cmap=cmap)
    return {"tables": written, "replicates": written_reps, "heatmap": png, "blocks": list(blocks), "info": res.info,
            "range": [vmin, vmax], "similarity": spec.similarity, "symmetric": spec.symmetric}


def collect_groups(job: CKAJob, shift: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One accumulator per group over every shard (a speaker's utterances in several shards form one group)."""

    ledger = IdLedger(job.a_url)  # a shard copied over another counts its utterances twice: caught here, checksums or not

    def keyed() -> Iterator[tuple[str, Any]]:
        for name, urls in job.shard_pairs():
            if progress:
                progress(f"shard {name}")
            ids: list[str] = []
            states = shard_group_states(job, urls, shift, ids)
            ledger.add(ids, name)
            yield from states.items()

    return merge_groups(keyed())


def run_from_side_output(job: CKAJob, out_url: str, bootstrap: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """CKA from the extraction's per-shard side-output states (no tier is read); shards are the bootstrap groups."""
    from layerlab.cka.state_io import accumulator_from_state

    if sample_names(job.measures):
        plan_sample(job, progress)
        collect_sample(job, progress)
        job.sample = job.collector.sample()
    if job.joint is not None:
        return _run_from_joint(job, out_url, bootstrap, progress)
    states = job.info_a.cache.cka_states(str(job.side_output))
    if not states:
        raise FileNotFoundError(f"{job.info_a.url}/manifest.json: no completed shards yet (is the extraction still running?)")
    if progress:
        progress(f"side-output {job.side_output}: merging {len(states)} shard states")
    groups = {shard: accumulator_from_state(s, device=job.device) for shard, s in states.items()}
    if job.estimator == "minibatch" and len(states) > 1:
        job.notes.append(MINIBATCH_SHARD_NOTE)
    merged = merge_all([accumulator_from_state(s, device=job.device) for s in states.values()])
    merged = _with_estimator(merged, job.estimator)
    return finish(job, merged, out_url, groups, bootstrap, progress, sizes=state_sizes(states))


def state_sizes(states: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Utterances per shard of side-output states (from the ids each state carries; shards without ids are left out)."""
    from layerlab.cache.reader import STATE_IDS_KEY

    return {shard: len(s[STATE_IDS_KEY]) for shard, s in states.items() if STATE_IDS_KEY in s}


def _run_from_joint(job: CKAJob, out_url: str, bootstrap: int, progress: Callable[[str], None] | None) -> dict[str, Any]:
    """A x A, B x B and A x B from a joint extraction's per-shard states: the chosen layers' blocks, in A-then-B order."""
    from layerlab.cka.state_io import accumulator_from_state

    joint = job.joint
    assert joint is not None
    states = joint.holder.cache.cka_states(joint.name)
    if not states:
        raise FileNotFoundError(f"{joint.holder.url}/manifest.json: no completed shards with joint states yet")
    if progress:
        progress(f"joint side-output {joint.holder.name}/{joint.name}: {len(states)} shard states, {len(joint.order)} layers")
    groups = {shard: accumulator_from_state(s, device=job.device).select(joint.order, len(job.info_a.layer_names)) for shard, s in states.items()}
    merged = merge_all([accumulator_from_state(g.state_dict(), device=job.device) for g in groups.values()])
    return finish(job, _with_estimator(merged, job.estimator), out_url, groups, bootstrap, progress, sizes=state_sizes(states))


def run_cka(job: CKAJob, out_url: str, bootstrap: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Single-process CKA of the job's caches: per-shard (or finer) states, tree merge, outputs."""
    if job.side_output:
        return run_from_side_output(job, out_url, bootstrap, progress)
    shift = pilot_shift_for(job)
    plan_sample(job, progress)
    groups = collect_groups(job, shift, progress)
    if not groups:
        raise ValueError(f"{job.a_url}: no frames found in any shard")
    if job.collector is not None:
        job.sample = job.collector.sample()
    from layerlab.cka.state_io import accumulator_from_state

    merged = _with_estimator(merge_all([accumulator_from_state(g.state_dict()) for g in groups.values()]), job.estimator)
    return finish(job, merged, out_url, groups, bootstrap, progress)


#: why a minibatch side-output is pooled within-shard CKA (see layerlab.cka.minibatch)
MINIBATCH_SHARD_NOTE = (
    "minibatch side-output: each minibatch holds frames of one shard only, so this is pooled within-shard minibatch CKA; "
    "it estimates corpus-level minibatch CKA only when utterances were assigned to shards at random (between-shard "
    "differences, e.g. shards sorted by speaker, are left out); a feature side-output (--estimator biased|debiased) is exact")


@dataclass
class JointSideOutput:
    """Where a joint extraction stored the A x B states and which of its layers (state order) the job uses."""

    holder: CacheInfo  # the cache whose manifest lists the states (A's, or B's when the pair was stored the other way)
    name: str
    order: list[int]  # state layer index of each chosen A layer, then each chosen B layer


def find_joint(info_a: CacheInfo, info_b: CacheInfo, name: str) -> JointSideOutput:
    """Locate the joint side-output of A and B (in A's cache, or in B's with the roles swapped) and map the chosen layers."""
    from layerlab import storage
    from layerlab.cache import format as cf

    folder = {id(info): info.url.rstrip("/").rsplit("/", 1)[-1] for info in (info_a, info_b)}
    for holder, other, swapped in ((info_a, info_b, False), (info_b, info_a, True)):
        for rec in holder.cache.metadata.cka:
            if rec.get("joint_with") == folder[id(other)] and name in ("joint", rec.get("name")):
                if holder.cache.metadata.source.manifest_checksum != other.cache.metadata.source.manifest_checksum:
                    raise ValueError(f"--from-side-output {name}: {info_a.url} and {info_b.url} were extracted from different datasets")
                first, second = list(rec["layers"]), list(rec["layers_b"])
                mine, theirs = (second, first) if swapped else (first, second)
                offset_a, offset_b = (len(first), 0) if swapped else (0, len(first))
                for info, stored in ((info_a, mine), (info_b, theirs)):
                    missing = [n for n in info.layer_names if n not in stored]
                    if missing:
                        raise ValueError(f"--from-side-output {name}: layers {missing} of {info.url} are not in the joint state (it has {stored})")
                order = [offset_a + mine.index(n) for n in info_a.layer_names] + [offset_b + theirs.index(n) for n in info_b.layer_names]
                return JointSideOutput(holder, str(rec["name"]), order)
    recorded = [str(r.get("name")) for info in (info_a, info_b) for r in info.cache.metadata.cka if r.get("joint_with")]
    raise ValueError(f"{storage.join(info_a.url, cf.METADATA_NAME)}: no joint side-output {name!r} of {folder[id(info_a)]} and {folder[id(info_b)]} "
                     f"(joint states recorded: {', '.join(recorded) or 'none'}); extract both with one `layerlab extract --model A --model B`")


def _with_estimator(acc: Any, estimator: str) -> Any:
    """The accumulator with its estimator chosen (the protocol: ``compute()`` takes no arguments)."""
    return acc.using(estimator) if hasattr(acc, "using") and estimator != "minibatch" else acc
