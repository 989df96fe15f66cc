"""Mergeable states of the training-free profiles (the project's Accumulator protocol, plain float64 sums).

:class:`LabelMoments`, per layer ``l`` over the items labelled with one of K classes (frames, spans or
utterance means), around a shift ``c_l`` shared by every worker (``u = x - c_l``):
``n``, ``S = sum u``, ``M = sum u u^T`` (the layer's diagonal block of the FeatureCKA state), the class
counts ``n_c`` and class sums ``sum_{i in c} u_i``, and optionally a contingency table
``N[unit, class]`` of k-means units. That is everything CCA with the one-hot reference and a
least-squares classifier need (notes/similarity-math.md, "Label references as one more layer"):

    Cxx = M - n d d^T (d = S / n),  Cxz[:, c] = sum_{i in c} u_i - n_c d,  Czz = diag(n_c) - n_c n_c^T / n.

:class:`ScoreCounts`: per layer and ridge value, the held-out items a classifier scored and got right.
Every field is a sum over items, so ``merge`` is addition and leave-one-group-out states are subtractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Blocks:
    """The centred blocks of one layer against a one-hot reference (sums over items, not divided by n)."""

    n: int
    mean: np.ndarray  # the layer's mean item (d)
    cxx: np.ndarray  # d x d
    cxz: np.ndarray  # d x K
    czz: np.ndarray  # K x K
    counts: np.ndarray  # n_c (K)


def _gram(u: np.ndarray) -> np.ndarray:
    """``u^T u`` in float64 by torch on one thread: a multi-threaded BLAS collapses when cores are shared
    (measured on a loaded 2-core machine: 4096 x 128 took 5-13 ms on one thread, 100-340 ms on two; see
    layerlab/cka/linalg.py); Ray tasks hold one CPU each anyway."""
    import torch

    from layerlab.cka.linalg import single_threaded

    t = torch.from_numpy(u)
    with single_threaded(t.device):
        return (t.T @ t).numpy()


def _class_sums(y: np.ndarray, u: np.ndarray, k: int) -> np.ndarray:
    """``sum_{i in c} u_i`` for each class c as a sparse one-hot product (O(n d), no dense n x K matrix)."""
    import scipy.sparse as sp

    onehot = sp.csr_matrix((np.ones(len(y)), (y, np.arange(len(y)))), shape=(k, len(y)))
    return np.asarray(onehot @ u)


class LabelMoments:
    """Per-layer second moments, class counts and class sums (and k-means unit x class counts) of labelled items."""

    kind = "label_moments"

    def __init__(self, dims: Sequence[int], num_classes: int, shift: Sequence[Any] | None = None, num_units: int = 0) -> None:
        self.dims = [int(d) for d in dims]
        self.num_classes = int(num_classes)
        self.num_units = int(num_units)
        if not self.dims or any(d <= 0 for d in self.dims) or self.num_classes < 1:
            raise ValueError(f"LabelMoments: need positive layer dims and classes, got {dims}, {num_classes}")
        self.shift = None if shift is None else [np.asarray(s, dtype=np.float64).reshape(-1) for s in shift]
        if self.shift is not None and [len(s) for s in self.shift] != self.dims:
            raise ValueError(f"LabelMoments: shift dims {[len(s) for s in self.shift]} differ from layer dims {self.dims}")
        k, num = self.num_classes, len(self.dims)
        self.n = np.zeros(num, dtype=np.int64)
        self.S = [np.zeros(d) for d in self.dims]
        self.M = [np.zeros((d, d)) for d in self.dims]
        self.counts = np.zeros((num, k), dtype=np.int64)
        self.class_sums = [np.zeros((k, d)) for d in self.dims]
        self.units = [np.zeros((self.num_units, k), dtype=np.int64) for _ in self.dims] if self.num_units else []

    # ------------------------------------------------------------------ update
    def update(self, layer: int, x: Any, labels: Any, units: Any = None) -> None:
        """Add items of layer ``layer``: ``x`` [n, d], class ``labels`` [n] in 0..K-1, optional k-means ``units`` [n]."""
        x = np.asarray(x)
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dims[layer] or len(y) != len(x):
            raise ValueError(f"LabelMoments.update: layer {layer} expects [n, {self.dims[layer]}] items and n labels, got {x.shape}, {y.shape}")
        if not len(y):
            return
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"LabelMoments.update: labels must lie in 0..{self.num_classes - 1}")
        if self.shift is None:
            self.shift = [np.zeros(d) for d in self.dims]
        u = np.subtract(x, self.shift[layer], dtype=np.float64)  # one pass: cast and shift
        if not np.isfinite(u).all():
            raise ValueError("LabelMoments.update: items contain NaN or Inf")
        self.n[layer] += len(u)
        self.S[layer] += u.sum(0)
        self.M[layer] += _gram(u)
        self.counts[layer] += np.bincount(y, minlength=self.num_classes)
        self.class_sums[layer] += _class_sums(y, u, self.num_classes)
        if units is not None and self.num_units:
            k = np.asarray(units, dtype=np.int64).reshape(-1)
            flat = np.bincount(k * self.num_classes + y, minlength=self.num_units * self.num_classes)
            self.units[layer] += flat.reshape(self.num_units, self.num_classes)

    # ------------------------------------------------------------------ merge / state
    def _check(self, other: "LabelMoments") -> None:
        if (other.dims, other.num_classes, other.num_units) != (self.dims, self.num_classes, self.num_units):
            raise ValueError(f"merge: incompatible label-moment states ({other.dims}, {other.num_classes} classes, {other.num_units} units "
                             f"vs {self.dims}, {self.num_classes}, {self.num_units})")

    def merge(self, other: "LabelMoments") -> "LabelMoments":
        """Add ``other``'s sums (the same shift) into this state; returns ``self``."""
        self._check(other)
        if not other.n.any():
            return self
        if not self.n.any():
            self.load_state_dict(other.state_dict())
            return self
        for a, b in zip(self.shift or [], other.shift or []):
            if not np.array_equal(a, b):
                raise ValueError("merge: label-moment states were accumulated around different shifts; give every worker the pilot's shift")
        self._add(other, 1)
        return self

    def _add(self, other: "LabelMoments", sign: int) -> None:
        self.n = self.n + sign * other.n
        self.counts = self.counts + sign * other.counts
        for i in range(len(self.dims)):
            self.S[i] = self.S[i] + sign * other.S[i]
            self.M[i] = self.M[i] + sign * other.M[i]
            self.class_sums[i] = self.class_sums[i] + sign * other.class_sums[i]
            if self.units:
                self.units[i] = self.units[i] + sign * other.units[i]

    def without(self, other: "LabelMoments") -> "LabelMoments":
        """A new state: this one minus ``other`` (a group's contribution; the leave-one-group-out state)."""
        self._check(other)
        out = LabelMoments.from_state_dict(self.state_dict())
        if other.n.any():
            out._add(other, -1)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Config and sums as plain numpy arrays (checkpointable anywhere, sent between Ray workers)."""
        return {"kind": self.kind, "dims": list(self.dims), "num_classes": self.num_classes, "num_units": self.num_units,
                "shift": None if self.shift is None else [s.copy() for s in self.shift], "n": self.n.copy(), "S": [s.copy() for s in self.S],
                "M": [m.copy() for m in self.M], "counts": self.counts.copy(), "class_sums": [c.copy() for c in self.class_sums],
                "units": [u.copy() for u in self.units]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the sums with those of ``state`` (from ``state_dict``; same layers, classes and units)."""
        if ([int(d) for d in state["dims"]], int(state["num_classes"]), int(state["num_units"])) != (self.dims, self.num_classes, self.num_units):
            raise ValueError("load_state_dict: the state has other layers, classes or units")
        self.shift = None if state["shift"] is None else [np.asarray(s, dtype=np.float64) for s in state["shift"]]
        self.n = np.asarray(state["n"], dtype=np.int64).copy()
        self.S = [np.asarray(s, dtype=np.float64).copy() for s in state["S"]]
        self.M = [np.asarray(m, dtype=np.float64).copy() for m in state["M"]]
        self.counts = np.asarray(state["counts"], dtype=np.int64).copy()
        self.class_sums = [np.asarray(c, dtype=np.float64).copy() for c in state["class_sums"]]
        self.units = [np.asarray(u, dtype=np.int64).copy() for u in state["units"]]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "LabelMoments":
        """Rebuild a state from ``state_dict`` output."""
        out = cls(state["dims"], state["num_classes"], state["shift"], state["num_units"])
        out.load_state_dict(state)
        return out

    # ------------------------------------------------------------------ compute
    def blocks(self, layer: int, minus: "LabelMoments | None" = None) -> Blocks:
        """The centred blocks of ``layer`` against the one-hot classes (classes with no items keep zero rows).

        ``minus``: a part of this state (one group's) to leave out first: the leave-one-group-out blocks of this
        layer, without copying the other layers.
        """
        n = int(self.n[layer]) - (int(minus.n[layer]) if minus is not None else 0)
        if n < 2:
            raise ValueError(f"layer {layer}: needs at least 2 labelled items, got {n}")
        s, m, sums, counts_i = self.S[layer], self.M[layer], self.class_sums[layer], self.counts[layer]
        if minus is not None:
            self._check(minus)
            s, m, sums, counts_i = s - minus.S[layer], m - minus.M[layer], sums - minus.class_sums[layer], counts_i - minus.counts[layer]
        delta = s / n
        shift = self.shift[layer] if self.shift is not None else np.zeros(self.dims[layer])
        counts = counts_i.astype(np.float64)
        cxx = m - n * np.outer(delta, delta)
        cxz = sums.T - np.outer(delta, counts)
        czz = np.diag(counts) - np.outer(counts, counts) / n
        return Blocks(n, shift + delta, 0.5 * (cxx + cxx.T), cxz, czz, np.asarray(counts_i).copy())

    def unit_table(self, layer: int, minus: "LabelMoments | None" = None) -> np.ndarray:
        """The k-means unit x class counts of ``layer`` (minus a group's, when given)."""
        if not self.units:
            raise ValueError("unit_table: this state counted no k-means units")
        return self.units[layer] - (minus.units[layer] if minus is not None else 0)

    def compute(self) -> list[Blocks]:
        """Every layer's :class:`Blocks`."""
        return [self.blocks(i) for i in range(len(self.dims))]


class ScoreCounts:
    """Held-out items scored and scored right, per layer and ridge value (a classifier's accuracy, mergeable)."""

    kind = "score_counts"

    def __init__(self, num_layers: int, num_ridges: int) -> None:
        self.correct = np.zeros((int(num_layers), int(num_ridges)), dtype=np.int64)
        self.total = np.zeros(int(num_layers), dtype=np.int64)

    def update(self, layer: int, correct: Any, total: int) -> None:
        """Add ``total`` scored items of ``layer`` of which ``correct[r]`` were right under ridge value r."""
        self.correct[layer] += np.asarray(correct, dtype=np.int64)
        self.total[layer] += int(total)

    def merge(self, other: "ScoreCounts") -> "ScoreCounts":
        if other.correct.shape != self.correct.shape:
            raise ValueError(f"merge: score counts of shape {other.correct.shape} vs {self.correct.shape}")
        self.correct = self.correct + other.correct
        self.total = self.total + other.total
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "correct": self.correct.copy(), "total": self.total.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.correct = np.asarray(state["correct"], dtype=np.int64).copy()
        self.total = np.asarray(state["total"], dtype=np.int64).copy()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "ScoreCounts":
        out = cls(*np.asarray(state["correct"]).shape)
        out.load_state_dict(state)
        return out

    def compute(self) -> np.ndarray:
        """Accuracy [layers, ridges] (NaN for a layer with nothing scored)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.total[:, None] > 0, self.correct / np.maximum(self.total[:, None], 1), np.nan)
