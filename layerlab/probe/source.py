"""What a probe sees of an activation cache: layers, joined source rows, pooled matrices, streamed frames, side tables.

:func:`open_source` reads a cache only through ``layerlab.cache.open_cache`` (the one reader).
:class:`MemorySource` holds the same things in memory (for small experiments and algorithm tests).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd


class ProbeInputError(ValueError):
    """Input a probe cannot use; the message names the cache, the task and what is missing."""


def input_error(cache: str, task: str, what: str) -> ProbeInputError:
    """``<cache>: task <task>: <what>`` as a :class:`ProbeInputError`."""
    return ProbeInputError(f"{cache}: task {task!r}: {what}")


@dataclass(frozen=True)
class Layer:
    """A cached layer as probes need it: name, width, frame rate (None: utterance level), hop, frame convention."""

    name: str
    dim: int
    frame_rate_hz: float | None
    hop_samples: int | None = None
    frame_convention: str = ""
    window_samples: int | None = None

    @property
    def utterance_level(self) -> bool:
        """True for one vector per utterance (embeddings, pooled statistics)."""
        return self.frame_rate_hz is None


@dataclass
class PooledArrays:
    """Per-utterance per-layer means (and stds) of the rows in ``ids`` order, float32."""

    ids: list[str]
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray] = field(default_factory=dict)


class ProbeSource(Protocol):
    """The interface every probe task reads (a cache or memory)."""

    url: str
    model: str
    layers: list[Layer]
    tiers: set[str]
    rows: pd.DataFrame  # index id; speaker, num_samples, labels, splits, transcript, alignment
    tasks: dict[str, Any]

    def pooled(self) -> PooledArrays:
        """All layers' pooled means (and stds) in one pass."""

    def iter_frames(self, layers: Sequence[str], ids: set[str] | None = None) -> Iterator[tuple[str, list[np.ndarray]]]:
        """(id, per-layer ``[T_l, D_l]`` frames) for the utterances in ``ids`` (all when None), in storage order."""

    def table(self, name: str) -> pd.DataFrame:
        """A side table of the source dataset (e.g. ``asv_trials``)."""


def shuffled(items: Iterable[Any], buffer: int, seed: int) -> Iterator[Any]:
    """Bounded-memory shuffle: hold ``buffer`` items, emit a random one as each new item arrives."""
    rng = random.Random(seed)
    held: list[Any] = []
    for item in items:
        if len(held) < buffer:
            held.append(item)
            continue
        k = rng.randrange(buffer)
        held[k], item = item, held[k]
        yield item
    rng.shuffle(held)
    yield from held


def check_finite(source: ProbeSource, task: str, uid: str, layer: str, x: np.ndarray) -> None:
    """Refuse NaN/Inf activations with a message naming the cache, task, utterance and layer."""
    if not np.isfinite(x).all():
        raise input_error(source.url, task, f"non-finite activations (NaN/Inf) in layer {layer!r} of utterance {uid!r}")


@dataclass
class MemorySource:
    """A probe source held in memory: rows, per-utterance frames per layer, optional side tables."""

    url: str
    model: str
    layers: list[Layer]
    rows: pd.DataFrame
    frames: dict[str, list[np.ndarray]] | None = None  # id -> per-layer frames (None: pooled tier only)
    pooled_arrays: PooledArrays | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)

    @property
    def tiers(self) -> set[str]:
        """Tiers available: pooled always, frames when frames were given."""
        return {"pooled"} | ({"frames"} if self.frames is not None else set())

    def pooled(self) -> PooledArrays:
        """Given pooled arrays, else the float32 mean/std of the frames in row order."""
        if self.pooled_arrays is not None:
            return self.pooled_arrays
        assert self.frames is not None, "MemorySource needs frames or pooled arrays"
        ids = list(self.rows.index)
        mean = {l.name: np.stack([self.frames[u][i].astype(np.float32).mean(0) for u in ids]) for i, l in enumerate(self.layers)}
        std = {l.name: np.stack([self.frames[u][i].astype(np.float32).std(0) for u in ids]) for i, l in enumerate(self.layers)}
        return PooledArrays(ids, mean, std)

    def iter_frames(self, layers: Sequence[str], ids: set[str] | None = None) -> Iterator[tuple[str, list[np.ndarray]]]:
        """Frames of the requested layers in row order."""
        if self.frames is None:
            raise FileNotFoundError(f"{self.url}: no frames tier")
        pos = [self.layer_names.index(n) for n in layers]
        for uid in self.rows.index:
            if ids is None or uid in ids:
                yield uid, [self.frames[uid][p] for p in pos]

    def table(self, name: str) -> pd.DataFrame:
        """A side table by name."""
        if name not in self.tables:
            raise FileNotFoundError(f"{self.url}: no side table {name!r}")
        return self.tables[name]

    @property
    def layer_names(self) -> list[str]:
        """Layer names in cache order."""
        return [l.name for l in self.layers]


class CacheSource:
    """A probe source backed by the one cache reader (``layerlab.cache.open_cache``)."""

    def __init__(self, url: str, *, verify: bool = True) -> None:
        from layerlab.cache import open_cache

        self.reader: Any = open_cache(url, verify=verify)
        self.url = str(self.reader.url)
        meta = self.reader.metadata
        self.model = str(getattr(meta, "model_spec", "") or getattr(meta, "model", ""))
        self.layers = [_layer_of(m) for m in self.reader.layers]
        self.tiers = set(getattr(meta, "tiers", ["pooled"]))
        self.tasks = dict(self.reader.tasks)
        self._rows: pd.DataFrame | None = None
        self._pooled: PooledArrays | None = None
        self._selection: Any = self.reader.frames_selection() if "frames" in self.tiers else None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for Tune trials: rows and pooled matrices travel (zero-copy from the object store), the reader reopens."""
        _ = self.rows  # materialise once in the driver
        if "pooled" in self.tiers:
            self.pooled()
        state = dict(self.__dict__)
        state["reader"] = None
        state.pop("_held_frames", None)  # frames held by this process stay here
        return state

    def _open(self) -> Any:
        if self.reader is None:
            from layerlab.cache import open_cache

            self.reader = open_cache(self.url, verify=False)  # the driver verified the files when it opened the cache
        return self.reader

    @property
    def rows(self) -> pd.DataFrame:
        """Source rows joined by id (read once)."""
        if self._rows is None:
            self._rows = self._open().source_rows()
        return self._rows

    def pooled(self) -> PooledArrays:
        """All layers' means and stds, one pass over the pooled shards (kept)."""
        if self._pooled is None:
            p = self._open().read_pooled(stats=("mean", "std"))
            self._pooled = PooledArrays(list(p.ids), dict(p.mean), dict(getattr(p, "std", None) or {}))
        return self._pooled

    def iter_frames(self, layers: Sequence[str], ids: set[str] | None = None) -> Iterator[tuple[str, list[np.ndarray]]]:
        """Stream frames of ``layers`` for ``ids`` (storage order; shuffling is the caller's)."""
        for row in self._open().iter_frames(list(layers)):
            if ids is None or row.id in ids:
                yield row.id, [row.frames[n] for n in layers]

    def frames_selection(self) -> Any:
        """The utterances a partial frames tier holds (a FramesSelection), or None when it holds every utterance."""
        return self._selection

    def table(self, name: str) -> pd.DataFrame:
        """A side table of the source dataset as a DataFrame."""
        return self._open().table(name).to_pandas()

    @property
    def layer_names(self) -> list[str]:
        """Layer names in cache order."""
        return [l.name for l in self.layers]


def _layer_of(meta: Any) -> Layer:
    rate = getattr(meta, "frame_rate_hz", None)
    if getattr(meta, "level", "frame") == "utterance":
        rate = None
    return Layer(str(meta.name), int(meta.dim), None if rate is None else float(rate), getattr(meta, "hop_samples", None),
                 str(getattr(meta, "frame_convention", "") or ""), getattr(meta, "window_samples", None))


def open_source(cache: str, *, verify: bool = True) -> CacheSource:
    """Open an activation cache for probing."""
    return CacheSource(cache, verify=verify)
