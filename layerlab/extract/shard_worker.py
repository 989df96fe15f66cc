"""Extract one audio shard into the cache (no Ray): stream, decode, bucket, run the model, write tiers.

An utterance whose batch fails in the model is rerun alone; if it fails again it is quarantined
with the reason (stage ``model``). Undecodable rows are quarantined too (stage ``decode``). Files
are written to local temporaries and published only when the whole shard succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from layerlab.data.audio import decode_flac, resample
from layerlab.data.shards import iter_shard_batches
from layerlab import artifacts, storage
from layerlab.accumulator import state_to_bytes
from layerlab.cache import format as cf
from layerlab.cache.writer import TierWriter, UtteranceFeatures
from layerlab.batching import plan_batches
from layerlab.extract.config import CKASideOutput, ExtractConfig
from layerlab.extract.features import split_features
from layerlab.extract.prefetch import prefetch
from layerlab.models.base import LayeredModel, LayerOutput
from layerlab.models.batching import pad_batch

log = logging.getLogger(__name__)

READ_COLUMNS = ["id", "audio", "sample_rate", "num_samples", "speaker", "source", "labels", "splits"]


@dataclass
class Item:
    """A decoded utterance waiting for the model."""

    row: dict[str, Any]
    wav: np.ndarray


@dataclass
class ShardOutcome:
    """What one shard task returns to the driver."""

    record: cf.ShardRecord
    utterances: int = 0
    audio_seconds: float = 0.0
    model_seconds: float = 0.0
    retried_alone: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)  # the actor's node, pid and CPU/wall since it was created (layerlab.usage)


def describe_model(m: LayeredModel, mode: str) -> dict[str, Any]:
    """Static model facts recorded in the cache metadata (layers, dims, rates, geometry) plus the resolved mode."""
    return {
        "layer_names": m.layer_names, "dims": m.dims, "frame_rates_hz": m.frame_rates, "sample_rate": m.sample_rate,
        "num_parameters": m.num_parameters, "padding_invariant": bool(m.padding_invariant), "mode": mode,
        "device": str(m.device), "layers": m.layer_geometry(),
    }


def cka_layer_indices(side: CKASideOutput, model: LayeredModel) -> list[int]:
    """Indices of the side-output's layers (default: every frame-level layer)."""
    if side.layers is None:
        return [i for i, utt in enumerate(model.utterance_level) if not utt]
    missing = [n for n in side.layers if n not in model.layer_names]
    if missing:
        raise ValueError(f"cka {side.name!r}: unknown layers {missing}; the model has {model.layer_names}")
    idx = [model.layer_names.index(n) for n in side.layers]
    if any(model.utterance_level[i] for i in idx):
        raise ValueError(f"cka {side.name!r}: utterance-level layers cannot enter frame-level CKA")
    return idx


class DirectWriters:
    """Tier writers called on the model's thread (``write_behind: false``); the same interface as WriteBehind."""

    def __init__(self, writers: list[TierWriter]) -> None:
        self.writers = writers

    def add(self, row: dict[str, Any], feats: UtteranceFeatures) -> None:
        """Buffer one utterance in every tier."""
        for w in self.writers:
            w.add(row, feats)

    def finish(self) -> dict[str, artifacts.FileEntry]:
        """Publish every tier file; ``{tier: entry}``."""
        return {w.tier: w.finish() for w in self.writers}

    def abort(self) -> None:
        """Drop every unpublished file."""
        for w in self.writers:
            w.abort()


def tier_writers(config: ExtractConfig, out_url: str, source_name: str, layer_names: list[str],
                 rates: list[float | None] | None = None) -> Any:
    """One shard's tier writers (frames only for ``config.frames_select``), behind a background thread unless ``write_behind`` is off."""
    from layerlab.extract.write_behind import WriteBehind

    row_group = int(config.row_group_mb * 2**20)
    writers = [TierWriter(tier, out_url, cf.tier_file(tier, source_name), layer_names, config.compression, row_group,
                          select=config.frames_select, rates=rates) for tier in config.tiers]
    return WriteBehind(writers, 2 * row_group) if config.write_behind else DirectWriters(writers)


def _rates(model: LayeredModel, idx: list[int]) -> list[float] | None:
    rates = [float(model.frame_rates[i]) for i in idx]  # type: ignore[arg-type]
    return rates if len(set(rates)) > 1 else None


def new_accumulator(side: CKASideOutput, model: LayeredModel, shift: np.ndarray | None, seed_salt: str) -> Any:
    """A fresh per-shard CKA accumulator for one side-output."""
    from layerlab.cka import FeatureCKA, MinibatchCKA

    idx = cka_layer_indices(side, model)
    dims = [model.dims[i] for i in idx]
    if side.estimator == "feature":
        return FeatureCKA(dims, shift=shift, device=model.device, frame_rates_hz=_rates(model, idx))
    seed = (side.seed * 1_000_003 + zlib.crc32(seed_salt.encode())) % (2**31)
    return MinibatchCKA(dims, batch_size=side.minibatch_size, seed=seed, device=model.device, frame_rates_hz=_rates(model, idx))


class ShardExtractor:
    """Turns audio shards into cache shards with one loaded model (reused across shards)."""

    def __init__(self, model: LayeredModel, config: ExtractConfig, mode: str) -> None:
        self.model = model
        self.config = config
        self.mode = mode
        self.keep_frames = "frames" in config.tiers
        self.max_samples = int(config.batch_seconds * model.sample_rate)
        self.window_samples = int(config.bucket_window_seconds * model.sample_rate)
        self.cka_idx = {c.name: cka_layer_indices(c, model) for c in config.cka}
        self.timers: dict[str, float] = {}  # seconds on the model's thread per step, reset per shard (profiling)
        # one shard at a time runs the model; a second shard task decodes ahead, or a finished one publishes, meanwhile
        self.model_lock = threading.Lock()

    # ---------------------------------------------------------------- input
    def _items(self, source_url: str, quarantine: list[cf.QuarantineRow]) -> Iterator[Item]:
        """Decoded utterances of a shard, streamed row group by row group."""
        for batch in iter_shard_batches(source_url, columns=READ_COLUMNS, batch_rows=16):
            for row in batch.to_pylist():
                audio = row.pop("audio")
                row["labels"] = dict(row.get("labels") or [])
                row["splits"] = dict(row.get("splits") or [])
                try:
                    wav = decode_flac(audio)
                    if int(row["sample_rate"]) != self.model.sample_rate:
                        wav = resample(wav, int(row["sample_rate"]), self.model.sample_rate)
                except Exception as exc:  # noqa: BLE001 - any decode failure is quarantined with its reason
                    quarantine.append(cf.QuarantineRow(id=row["id"], source=row.get("source") or "", reason=f"decode: {exc}", stage="decode"))
                    continue
                yield Item(row=row, wav=np.ascontiguousarray(wav, dtype=np.float32))

    def _windows(self, items: Iterator[Item]) -> Iterator[list[Item]]:
        """Groups of utterances totalling about ``bucket_window_seconds`` (the bucketing horizon)."""
        window: list[Item] = []
        samples = 0
        for item in items:
            window.append(item)
            samples += item.wav.shape[0]
            if samples >= self.window_samples:
                yield window
                window, samples = [], 0
        if window:
            yield window

    # ---------------------------------------------------------------- model
    def infer(self, items: list[Item]) -> LayerOutput:
        """One model call on a padded batch (nothing is checked or updated yet)."""
        wavs, lengths = pad_batch([it.wav for it in items])
        if self.model.device.type == "cuda":
            wavs = wavs.pin_memory()
        out: LayerOutput = self.model(wavs, lengths)
        return out

    def features(self, out: LayerOutput) -> list[UtteranceFeatures]:
        """Per-utterance features of a batch; raises FloatingPointError on non-finite activations (no state touched)."""
        t0 = time.perf_counter()
        feats = split_features(out, self.keep_frames)
        self.timers["features_seconds"] = self.timers.get("features_seconds", 0.0) + time.perf_counter() - t0
        return feats

    def update(self, out: LayerOutput, accs: dict[str, Any]) -> None:
        """Add a checked batch to the shard's CKA states."""
        t0 = time.perf_counter()
        for cname, acc in accs.items():
            idx = self.cka_idx[cname]
            acc.update(side_output_values([out.hidden[i] for i in idx], self.config), [out.lengths[i] for i in idx])
        self.timers["cka_seconds"] = self.timers.get("cka_seconds", 0.0) + time.perf_counter() - t0

    def consume(self, out: LayerOutput, accs: dict[str, Any]) -> list[UtteranceFeatures]:
        """Check a batch and take its features, then update the CKA states (only a batch that passed the check counts)."""
        feats = self.features(out)
        self.update(out, accs)
        return feats

    def _forward(self, items: list[Item], accs: dict[str, Any]) -> list[UtteranceFeatures]:
        """One model call; checks activations, updates CKA states, returns per-utterance features."""
        return self.consume(self.infer(items), accs)

    def _run(self, items: list[Item], accs: dict[str, Any], stats: ShardOutcome) -> list[tuple[Item, UtteranceFeatures | BaseException]]:
        """Run a batch; on failure rerun each utterance alone and return its error if it fails again."""
        t0 = time.perf_counter()
        try:
            feats = self._forward(items, accs)
            return list(zip(items, feats))
        except Exception as exc:  # noqa: BLE001 - classified per utterance below
            _free_device_memory(exc)
            if len(items) == 1:
                return [(items[0], exc)]
            log.warning("batch of %d failed (%s); rerunning its utterances alone", len(items), exc)
        finally:
            stats.model_seconds += time.perf_counter() - t0
        results: list[tuple[Item, UtteranceFeatures | BaseException]] = []
        for it in items:
            stats.retried_alone += 1
            t1 = time.perf_counter()
            try:
                results.append((it, self._forward([it], accs)[0]))
            except Exception as exc:  # noqa: BLE001
                _free_device_memory(exc)
                results.append((it, exc))
            finally:
                stats.model_seconds += time.perf_counter() - t1
        return results

    # ---------------------------------------------------------------- shard
    def run(self, source_url: str, source_name: str, source_sha256: str, out_url: str, shifts: dict[str, np.ndarray | None]) -> ShardOutcome:
        """Extract one shard and publish its tier files and CKA states; returns the shard's record."""
        t_start = time.perf_counter()
        if self.config.verify and storage.sha256_url(source_url) != source_sha256:
            raise artifacts.IntegrityError(f"{source_url}: checksum mismatch (SHA-256 differs from the dataset manifest): the audio shard changed or is corrupted; run `layerlab corpus verify`")
        quarantine: list[cf.QuarantineRow] = []
        outcome = ShardOutcome(record=cf.ShardRecord(source=source_name, source_sha256=source_sha256, kept=0, audio_seconds=0.0))
        accs = {c.name: new_accumulator(c, self.model, shifts.get(c.name), source_name) for c in self.config.cka}
        kept_ids: list[str] = []  # the utterances inside the CKA states (recorded with them: duplicates are caught on read)
        writers = tier_writers(self.config, out_url, source_name, self.model.layer_names, self.model.frame_rates)
        outcome.stats["t_start"] = time.time()
        decoded = prefetch(self._items(source_url, quarantine), depth=64)  # starts decoding now, before the model is free
        try:
            with self.model_lock:
                t_loop = time.perf_counter()
                self.timers = {}
                self._model_loop(decoded, accs, writers, quarantine, outcome, kept_ids)
                outcome.stats.update(self.timers)
                outcome.stats["model_loop_seconds"] = time.perf_counter() - t_loop
            t_finish = time.perf_counter()
            files = writers.finish()
            outcome.stats["finish_seconds"] = time.perf_counter() - t_finish
        except BaseException:
            decoded.close()
            writers.abort()
            raise
        outcome.stats["writer_wait_seconds"] = getattr(writers, "wait_seconds", 0.0)
        outcome.stats["writer_thread_cpu_seconds"] = getattr(writers, "thread_cpu_seconds", 0.0)
        record = outcome.record
        record.files = files
        record.cka = {name: self._publish_cka(out_url, name, source_name, acc, kept_ids) for name, acc in accs.items()}
        record.kept = outcome.utterances
        record.audio_seconds = round(outcome.audio_seconds, 6)
        record.quarantined = quarantine
        record.wall_seconds = round(time.perf_counter() - t_start, 3)
        outcome.stats["t_end"] = time.time()
        return outcome

    def _model_loop(self, decoded: Iterator[Item], accs: dict[str, Any], writers: Any, quarantine: list[cf.QuarantineRow], outcome: ShardOutcome,
                    kept_ids: list[str]) -> None:
        """Bucket the decoded utterances, run the model batch by batch and hand each result to the writers."""
        for window in self._windows(decoded):
            batches = plan_batches([it.wav.shape[0] for it in window], self.mode, self.config.max_batch_size, self.max_samples)
            for batch in batches:
                for item, result in self._run([window[i] for i in batch], accs, outcome):
                    if isinstance(result, BaseException):
                        reason = f"{type(result).__name__}: {result}"
                        log.warning("quarantined %s in the model: %s", item.row["id"], reason)
                        quarantine.append(cf.QuarantineRow(id=item.row["id"], source=item.row.get("source") or "", reason=reason, stage="model"))
                        continue
                    t_write = time.perf_counter()
                    writers.add(item.row, result)
                    self.timers["write_seconds"] = self.timers.get("write_seconds", 0.0) + time.perf_counter() - t_write
                    kept_ids.append(str(item.row["id"]))
                    outcome.utterances += 1
                    outcome.audio_seconds += item.wav.shape[0] / self.model.sample_rate

    def _publish_cka(self, out_url: str, name: str, source_name: str, acc: Any, ids: list[str]) -> artifacts.FileEntry:
        """Write one shard's CKA state (minibatch buffers flushed so states stay small), tagged with its shard and utterance ids."""
        from layerlab.cache.reader import STATE_IDS_KEY, STATE_SHARD_KEY

        if hasattr(acc, "flush"):
            acc.flush()
        rows = int(getattr(acc, "n", getattr(acc, "num_batches", 0)))
        state = {**acc.state_dict(), STATE_SHARD_KEY: source_name, STATE_IDS_KEY: list(ids)}
        return artifacts.publish_bytes(out_url, cf.cka_file(name, source_name), state_to_bytes(state), rows)

    # ---------------------------------------------------------------- pilot
    def pilot_items(self, source_urls: list[str], want: int) -> list[Item]:
        """About ``want`` usable utterances spread over ``source_urls`` (the first few of each shard)."""
        per_shard = max(1, -(-want // max(1, len(source_urls))))
        items: list[Item] = []
        for url in source_urls:
            taken = 0
            for item in self._items(url, []):
                if item.wav.shape[0] >= self.model.min_samples:
                    items.append(item)
                    taken += 1
                if taken >= per_shard:
                    break
            if len(items) >= want:
                break
        if not items:
            raise ValueError(f"{source_urls[0] if source_urls else 'pilot'}: no usable utterance for the CKA pilot shift")
        return items[:want]

    def pilot_shifts(self, source_urls: list[str]) -> dict[str, np.ndarray]:
        """Shared FeatureCKA shifts: the mean frame of pilot utterances drawn from ``source_urls``, per feature side-output.

        The shift only conditions the float64 sums (CKA does not depend on it); a sample across
        shards keeps it near the corpus mean when shards differ (e.g. sorted by speaker or domain).
        """
        sides = [c for c in self.config.cka if c.estimator == "feature"]
        if not sides:
            return {}
        with self.model_lock:
            return self.shifts_from(self.pilot_items(source_urls, max(c.pilot_utterances for c in sides)))

    def shifts_from(self, items: list[Item]) -> dict[str, np.ndarray]:
        """Per feature side-output, the mean frame of ``items`` over its layers (rates aligned)."""
        from layerlab.cka import pilot_shift
        from layerlab.cka.align import flatten_frames

        sides = [c for c in self.config.cka if c.estimator == "feature"]
        shifts = {}
        for c in sides:
            idx = self.cka_idx[c.name]
            per_layer: list[list[torch.Tensor]] = [[] for _ in idx]
            for it in items[: c.pilot_utterances]:
                out = self.model(*pad_batch([it.wav]))
                hidden = side_output_values([out.hidden[i] for i in idx], self.config)
                frames = flatten_frames(hidden, [out.lengths[i] for i in idx], _rates(self.model, idx))
                for k, f in enumerate(frames):
                    per_layer[k].append(f)
            shifts[c.name] = pilot_shift([torch.cat(p) for p in per_layer])
        return shifts


def side_output_values(hidden: list[torch.Tensor], config: ExtractConfig) -> list[torch.Tensor]:
    """What CKA side-outputs see: the float32 activations, or (``side_output_dtype: float16``) the frames tier's fp16 values."""
    if config.side_output_dtype == "float16":
        return [h.to(torch.float16).to(h.dtype) for h in hidden]
    return hidden


def _free_device_memory(exc: BaseException) -> None:
    """After a CUDA out-of-memory error, release cached blocks so the rerun alone can fit."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()
