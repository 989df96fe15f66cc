"""Extract one audio shard with every model of a group (no Ray): decode once, same batches to each model.

Each member writes its own cache shard exactly as a single-model extraction would (its tiers and
its own CKA side-outputs) under ``<out>/<member>/``. For every pair (A, B) of members, in group
order, one joint FeatureCKA state (A x A, B x B, A x B blocks, frame rates aligned as
``cka/align.py`` does) is published in A's cache as side-output ``joint-<B>``. All members run the
same batch plan (``unbatched`` under ``auto`` when any member is padding-sensitive), so the joint
state sees exactly the utterances every cache keeps: an utterance that fails in any model is
quarantined in every member's cache, naming the model.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from layerlab import artifacts, storage
from layerlab.batching import plan_batches
from layerlab.cache import format as cf
from layerlab.cache.writer import UtteranceFeatures
from layerlab.extract.config import ExtractConfig
from layerlab.extract.joint_cka import JointMember, check_sample_rates, joint_name, member, new_joint_accumulator, pair_layers, update_joint
from layerlab.extract.prefetch import prefetch
from layerlab.extract.shard_worker import Item, ShardExtractor, ShardOutcome, _free_device_memory, new_accumulator, side_output_values, tier_writers
from layerlab.models.base import LayeredModel, LayerOutput

log = logging.getLogger(__name__)

Pair = tuple[str, str]


class MemberError(RuntimeError):
    """A model of the group failed on a batch (the message names the model)."""


@dataclass
class JointOutcome:
    """One shard of a group: each member's outcome plus the joint states' time and memory."""

    members: dict[str, ShardOutcome]
    wall_seconds: float = 0.0
    joint_seconds: float = 0.0
    joint_state_bytes: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)  # the actor's node, pid and CPU/wall since it was created (layerlab.usage)


def state_nbytes(acc: Any) -> int:
    """Bytes held by an accumulator's tensors (what a joint state costs in actor memory)."""
    return int(sum(t.numel() * t.element_size() for t in vars(acc).values() if isinstance(t, torch.Tensor))
               + sum(t.numel() * t.element_size() for v in vars(acc).values() if isinstance(v, list) for t in v if isinstance(t, torch.Tensor)))


class JointShardExtractor:
    """Turns audio shards into one cache shard per member plus joint CKA states, with every model loaded once."""

    def __init__(self, models: dict[str, LayeredModel], config: ExtractConfig, mode: str, configs: dict[str, ExtractConfig] | None = None,
                 pairs: list[Pair] | None = None, layers: dict[str, list[str]] | None = None) -> None:
        check_sample_rates({n: m.sample_rate for n, m in models.items()})
        self.config = config
        self.configs = {n: (configs or {}).get(n, config) for n in models}  # per member: its tiers and own side-outputs
        self.mode = mode
        self.workers = {n: ShardExtractor(m, self.configs[n], mode) for n, m in models.items()}
        self.first = next(iter(self.workers.values()))
        self.members: dict[str, JointMember] = {n: member(n, m, (layers or {}).get(n)) for n, m in models.items()}
        names = list(models)
        self.pairs: list[Pair] = list(pairs) if pairs is not None else [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        self.float16 = config.side_output_dtype == "float16"
        self.model_lock = threading.Lock()  # one shard at a time runs the models (see ShardExtractor)

    # ---------------------------------------------------------------- model
    def _step(self, items: list[Item], accs: dict[str, dict[str, Any]], joint: dict[Pair, Any], outcome: JointOutcome) -> list[dict[str, UtteranceFeatures]]:
        """Every model on one batch; states are updated only after every model succeeded."""
        outs: dict[str, LayerOutput] = {}
        feats: dict[str, list[UtteranceFeatures]] = {}
        for name, worker in self.workers.items():
            t0 = time.perf_counter()
            try:
                outs[name] = worker.infer(items)
                feats[name] = worker.features(outs[name])  # the non-finite check, before any state is updated
            except Exception as exc:  # noqa: BLE001 - re-raised naming the model
                raise MemberError(f"{name}: {type(exc).__name__}: {exc}") from exc
            finally:
                outcome.members[name].model_seconds += time.perf_counter() - t0
        for name, worker in self.workers.items():
            worker.update(outs[name], accs[name])
        t0 = time.perf_counter()
        for (a, b), acc in joint.items():
            update_joint(acc, self.members[a], outs[a], self.members[b], outs[b], float16=self.float16)
        outcome.joint_seconds += time.perf_counter() - t0
        return [{name: feats[name][k] for name in self.workers} for k in range(len(items))]

    def _run(self, items: list[Item], accs: dict[str, dict[str, Any]], joint: dict[Pair, Any], outcome: JointOutcome) -> list[tuple[Item, Any]]:
        """Run a batch on every model; on failure rerun each utterance alone and return its error if it fails again."""
        try:
            return list(zip(items, self._step(items, accs, joint, outcome)))
        except Exception as exc:  # noqa: BLE001 - classified per utterance below
            _free_device_memory(exc.__cause__ or exc)
            if len(items) == 1:
                return [(items[0], exc)]
            log.warning("batch of %d failed (%s); rerunning its utterances alone", len(items), exc)
        results: list[tuple[Item, Any]] = []
        for it in items:
            for o in outcome.members.values():
                o.retried_alone += 1
            try:
                results.append((it, self._step([it], accs, joint, outcome)[0]))
            except Exception as exc:  # noqa: BLE001
                _free_device_memory(exc.__cause__ or exc)
                results.append((it, exc))
        return results

    # ---------------------------------------------------------------- shard
    def run(self, source_url: str, source_name: str, source_sha256: str, out_url: str | dict[str, str], shifts: dict[str, dict[str, Any]]) -> JointOutcome:
        """Extract one shard into every member's cache (``out_url/<member>``, or the given URL per member); publish the joint states."""
        t_start = time.perf_counter()
        if self.config.verify and storage.sha256_url(source_url) != source_sha256:
            raise artifacts.IntegrityError(f"{source_url}: checksum mismatch (SHA-256 differs from the dataset manifest): the audio shard changed or is corrupted; run `layerlab corpus verify`")
        urls = dict(out_url) if isinstance(out_url, dict) else {n: storage.join(out_url, n) for n in self.workers}
        quarantine: list[cf.QuarantineRow] = []
        outcome = JointOutcome(members={
            n: ShardOutcome(record=cf.ShardRecord(source=source_name, source_sha256=source_sha256, kept=0, audio_seconds=0.0)) for n in self.workers})
        accs = {n: {c.name: new_accumulator(c, w.model, shifts.get(n, {}).get(c.name), source_name) for c in self.configs[n].cka}
                for n, w in self.workers.items()}
        joint = {(a, b): new_joint_accumulator(self.members[a], self.members[b], shift=shifts.get(a, {}).get(joint_name(b)),
                                               device=self.first.model.device) for a, b in self.pairs}
        writers = {n: tier_writers(self.configs[n], urls[n], source_name, w.model.layer_names, w.model.frame_rates) for n, w in self.workers.items()}
        kept_ids: list[str] = []  # the utterances in every member's states (recorded with them: duplicates are caught on read)
        outcome.stats["t_start"] = time.time()
        decoded = prefetch(self.first._items(source_url, quarantine), depth=64)  # decodes ahead while the models are busy
        try:
            with self.model_lock:
                t_loop = time.perf_counter()
                self._model_loop(decoded, accs, joint, writers, quarantine, outcome, kept_ids)
                outcome.stats["model_loop_seconds"] = time.perf_counter() - t_loop
            files = {n: w.finish() for n, w in writers.items()}
        except BaseException:
            decoded.close()
            for w in writers.values():
                w.abort()
            raise
        outcome.joint_state_bytes = sum(state_nbytes(acc) for acc in joint.values())
        for n, o in outcome.members.items():
            rec = o.record
            rec.files = files[n]
            rec.cka = {name: self.workers[n]._publish_cka(urls[n], name, source_name, acc, kept_ids) for name, acc in accs[n].items()}
            for (a, b), acc in joint.items():
                if a == n:
                    rec.cka[joint_name(b)] = self.workers[n]._publish_cka(urls[n], joint_name(b), source_name, acc, kept_ids)
            rec.kept = o.utterances
            rec.audio_seconds = round(o.audio_seconds, 6)
            rec.quarantined = list(quarantine)
        outcome.wall_seconds = round(time.perf_counter() - t_start, 3)
        for o in outcome.members.values():
            o.record.wall_seconds = outcome.wall_seconds
        outcome.stats["t_end"] = time.time()
        return outcome

    def _model_loop(self, decoded: Any, accs: dict[str, dict[str, Any]], joint: dict[Pair, Any], writers: dict[str, Any],
                    quarantine: list[cf.QuarantineRow], outcome: JointOutcome, kept_ids: list[str]) -> None:
        """Bucket once for the group, run every model on each batch, hand each member's result to its writers."""
        sr = self.first.model.sample_rate
        for window in self.first._windows(decoded):
            for batch in plan_batches([it.wav.shape[0] for it in window], self.mode, self.config.max_batch_size, self.first.max_samples):
                for item, result in self._run([window[i] for i in batch], accs, joint, outcome):
                    if isinstance(result, BaseException):
                        reason = str(result) if isinstance(result, MemberError) else f"{type(result).__name__}: {result}"
                        log.warning("quarantined %s in the model: %s", item.row["id"], reason)
                        quarantine.append(cf.QuarantineRow(id=item.row["id"], source=item.row.get("source") or "", reason=reason, stage="model"))
                        continue
                    kept_ids.append(str(item.row["id"]))
                    for n, feats in result.items():
                        writers[n].add(item.row, feats)
                        outcome.members[n].utterances += 1
                        outcome.members[n].audio_seconds += item.wav.shape[0] / sr

    # ---------------------------------------------------------------- pilot
    def pilot_shifts(self, source_urls: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """Shared shifts per member (its own feature side-outputs and its ``joint-<B>`` states), from one pilot sample."""
        want = max([c.pilot_utterances for cfg in self.configs.values() for c in cfg.cka if c.estimator == "feature"] or [8])
        with self.model_lock:
            return self._pilot_shifts(self.first.pilot_items(source_urls, want))

    def _pilot_shifts(self, items: list[Item]) -> dict[str, dict[str, np.ndarray]]:
        """Per member its own shifts, and per pair the mean of the pilot frames over A's then B's aligned layers."""
        from layerlab.cka import pilot_shift
        from layerlab.cka.align import flatten_frames

        shifts: dict[str, dict[str, np.ndarray]] = {n: w.shifts_from(items) for n, w in self.workers.items()}
        outs = {n: [w.model(*_one(it)) for it in items] for n, w in self.workers.items()}
        for a, b in self.pairs:
            ma, mb = self.members[a], self.members[b]
            parts: list[list[torch.Tensor]] = [[] for _ in range(len(ma.dims) + len(mb.dims))]
            for oa, ob in zip(outs[a], outs[b]):
                hidden, lengths = pair_layers(ma, oa, mb, ob)
                hidden = side_output_values(hidden, self.config)
                for k, f in enumerate(flatten_frames(hidden, lengths, ma.frame_rates_hz + mb.frame_rates_hz)):
                    parts[k].append(f)
            shifts[a][joint_name(b)] = pilot_shift([torch.cat(p) for p in parts])
        return shifts


def _one(item: Item) -> tuple[torch.Tensor, torch.Tensor]:
    from layerlab.models.batching import pad_batch

    return pad_batch([item.wav])
