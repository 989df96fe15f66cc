"""Minibatch CKA of Nguyen et al. 2021: unbiased HSIC_1 per batch of shuffled frames, summed.

Per batch of m frames, every layer is centred (HSIC_1 is exactly shift-invariant; centring avoids
the cancellation that makes float Gram code return NaN), its linear Gram matrix is U-centred and
flattened, and all layer pairs come from ONE GEMM of the stacked flattened matrices.

Batch weighting: each batch's HSIC_1 is divided by ``m(m-3)`` so every batch (including a shorter
final one) is an unbiased estimate with weight 1; CKA = sum_xy / sqrt(sum_xx * sum_yy).
Frames pass through a seeded shuffle buffer so a batch mixes many utterances (batches made of one
utterance measure within-utterance similarity only). Batches below 4 frames are rejected/dropped.

Per-shard states (the extraction side-output) shuffle within a shard only, and that is *not*
equivalent in general. A batch drawn from shard ``s`` has expectation ``HSIC(P_s)``, the HSIC of
that shard's frame distribution, so the merged estimate is ``sum_s w_s HSIC_xy(P_s) /
sqrt(sum_s w_s HSIC_xx(P_s) * sum_s w_s HSIC_yy(P_s))`` with ``w_s`` the shard's share of
batches: pooled *within-shard* CKA. It equals corpus-level minibatch CKA in expectation exactly
when every ``P_s`` equals the corpus distribution, i.e. when utterances were assigned to shards at
random. Corpus builds keep source order (LibriSpeech by speaker), so the between-shard part of the
covariance (speaker, channel, domain) would be missing; ``layerlab cka`` says so in its notes, and
a feature side-output (exact, order-free, mergeable across shards) is the default for that reason.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from layerlab.cka.align import flatten_frames
from layerlab.cka.tensors import pick_device, to_numpy

MIN_BATCH = 4


def u_centred_grams(layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Flattened U-centred linear Gram matrices of one batch, ``(L, m*m)`` (features centred first)."""
    m = layers[0].shape[0]
    if m < MIN_BATCH:
        raise ValueError(f"minibatch: a batch needs at least {MIN_BATCH} frames for HSIC_1, got {m}")
    out = []
    for x in layers:
        xc = x - x.mean(dim=0, keepdim=True)
        k = xc @ xc.T
        k.fill_diagonal_(0.0)
        rows = k.sum(dim=1)
        total = rows.sum()
        k -= rows[:, None] / (m - 2)
        k -= rows[None, :] / (m - 2)
        k += total / ((m - 1) * (m - 2))
        k.fill_diagonal_(0.0)
        out.append(k.reshape(-1))
    return torch.stack(out)


class MinibatchCKA:
    """Streaming minibatch CKA over shuffled frames; ``compute()`` -> matrix (L x L or L_A x L_B)."""

    kind = "minibatch_cka"

    def __init__(
        self,
        dims_a: Sequence[int],
        dims_b: Sequence[int] | None = None,
        batch_size: int = 1024,
        buffer_batches: int = 8,
        seed: int = 0,
        device: str | torch.device | None = None,
        frame_rates_hz: Sequence[float] | None = None,
    ) -> None:
        if batch_size < MIN_BATCH:
            raise ValueError(f"batch_size: must be >= {MIN_BATCH} for unbiased HSIC, got {batch_size}")
        if buffer_batches < 1:
            raise ValueError(f"buffer_batches: must be >= 1, got {buffer_batches}")
        self.dims_a = [int(d) for d in dims_a]
        self.dims_b = None if dims_b is None else [int(d) for d in dims_b]
        self.dims = self.dims_a + (self.dims_b or [])
        self.num_a = len(self.dims_a)
        self.batch_size = int(batch_size)
        self.buffer_frames = int(buffer_batches) * self.batch_size
        self.seed = int(seed)
        self.device = pick_device(device)
        self.frame_rates_hz = None if frame_rates_hz is None else [float(r) for r in frame_rates_hz]
        self.rng = np.random.default_rng(seed)
        num_b = len(self.dims) - self.num_a if self.dims_b is not None else self.num_a
        self.h_xy = torch.zeros(self.num_a, num_b, dtype=torch.float64, device=self.device)
        self.h_xx = torch.zeros(self.num_a, dtype=torch.float64, device=self.device)
        self.h_yy = torch.zeros(num_b, dtype=torch.float64, device=self.device)
        self.num_batches = 0
        self.dropped_frames = 0
        self.pool: list[torch.Tensor] = [torch.zeros(0, d, dtype=torch.float32) for d in self.dims]

    # ------------------------------------------------------------------ update
    def update(self, layers: Sequence[Any], lengths: Any = None, frame_mask: Any = None) -> None:
        """Queue a batch of frames (padded ``[B,T,D]`` + lengths, or flat ``(n, d)``) into the shuffle buffer."""
        if len(layers) != len(self.dims):
            raise ValueError(f"layers: expected {len(self.dims)} layers, got {len(layers)}")
        frames = flatten_frames(layers, lengths, self.frame_rates_hz, frame_mask)
        for i, (f, d) in enumerate(zip(frames, self.dims)):
            if f.shape[1] != d:
                raise ValueError(f"layers: layer {i} has dim {f.shape[1]}, accumulator expects {d}")
        self.pool = [torch.cat([p, f.detach().to("cpu", torch.float32)]) for p, f in zip(self.pool, frames)]
        if self.pool[0].shape[0] >= self.buffer_frames:
            self._drain(keep=self.buffer_frames // 2)

    def update_batch(self, layers: Sequence[Any]) -> None:
        """Add exactly one minibatch (flat ``(m, d_l)`` frames, m >= 4), bypassing the shuffle buffer."""
        frames = [torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x for x in layers]
        self._process([f.to(self.device, torch.float64) for f in frames])

    def _drain(self, keep: int) -> None:
        total = self.pool[0].shape[0]
        order = torch.from_numpy(self.rng.permutation(total))
        self.pool = [p[order] for p in self.pool]
        num = (total - keep) // self.batch_size
        for i in range(num):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            self._process([p[sl].to(self.device, torch.float64) for p in self.pool])
        self.pool = [p[num * self.batch_size :] for p in self.pool]

    def flush(self) -> None:
        """Process everything buffered: full batches, then a final shorter batch if it has >= 4 frames."""
        if self.pool[0].shape[0] == 0:
            return
        self._drain(keep=0)
        rest = self.pool[0].shape[0]
        if rest >= MIN_BATCH:
            self._process([p.to(self.device, torch.float64) for p in self.pool])
        else:
            self.dropped_frames += rest
        self.pool = [p[:0] for p in self.pool]

    def _process(self, frames: list[torch.Tensor]) -> None:
        m = frames[0].shape[0]
        grams = u_centred_grams(frames)
        scale = 1.0 / (m * (m - 3))
        if self.dims_b is None:
            a = b = grams
        else:
            a, b = grams[: self.num_a], grams[self.num_a :]
        self.h_xy.addmm_(a, b.T, alpha=scale)
        self.h_xx.add_(a.square().sum(dim=1), alpha=scale)
        self.h_yy.add_(b.square().sum(dim=1), alpha=scale)
        self.num_batches += 1

    # ------------------------------------------------------------------ merge / state
    def merge(self, other: "MinibatchCKA") -> "MinibatchCKA":
        """Add ``other``'s per-batch sums and pool its unprocessed frames; returns ``self``."""
        if other.dims_a != self.dims_a or other.dims_b != self.dims_b:
            raise ValueError(f"merge: incompatible minibatch states ({other.dims_a}/{other.dims_b} vs {self.dims_a}/{self.dims_b})")
        self.h_xy += other.h_xy.to(self.device)
        self.h_xx += other.h_xx.to(self.device)
        self.h_yy += other.h_yy.to(self.device)
        self.num_batches += other.num_batches
        self.dropped_frames += other.dropped_frames
        self.pool = [torch.cat([p, q]) for p, q in zip(self.pool, other.pool)]
        if self.pool[0].shape[0] >= self.buffer_frames:
            self._drain(keep=self.buffer_frames // 2)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Config, sums, buffered frames and RNG state (plain Python / numpy)."""
        return {
            "kind": self.kind,
            "dims_a": self.dims_a,
            "dims_b": self.dims_b,
            "batch_size": self.batch_size,
            "buffer_batches": self.buffer_frames // self.batch_size,
            "seed": self.seed,
            "frame_rates_hz": self.frame_rates_hz,
            "h_xy": to_numpy(self.h_xy),
            "h_xx": to_numpy(self.h_xx),
            "h_yy": to_numpy(self.h_yy),
            "num_batches": self.num_batches,
            "dropped_frames": self.dropped_frames,
            "pool": [p.numpy().copy() for p in self.pool],
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this state with ``state`` (from ``state_dict``)."""
        dims_b = None if state["dims_b"] is None else [int(d) for d in state["dims_b"]]
        if state.get("kind") != self.kind or [int(d) for d in state["dims_a"]] != self.dims_a or dims_b != self.dims_b:
            raise ValueError("state: incompatible minibatch CKA state")
        dev = self.device
        self.h_xy = torch.as_tensor(np.asarray(state["h_xy"]), dtype=torch.float64).to(dev)
        self.h_xx = torch.as_tensor(np.asarray(state["h_xx"]), dtype=torch.float64).to(dev)
        self.h_yy = torch.as_tensor(np.asarray(state["h_yy"]), dtype=torch.float64).to(dev)
        self.num_batches = int(state["num_batches"])
        self.dropped_frames = int(state["dropped_frames"])
        self.pool = [torch.as_tensor(np.asarray(p, dtype=np.float32)).reshape(-1, d) for p, d in zip(state["pool"], self.dims)]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | torch.device | None = None) -> "MinibatchCKA":
        """Rebuild an accumulator from ``state_dict`` output."""
        acc = cls(state["dims_a"], state["dims_b"], state["batch_size"], state["buffer_batches"], state["seed"], device, state["frame_rates_hz"])
        acc.load_state_dict(state)
        return acc

    def compute(self) -> np.ndarray:
        """Flush the buffer, then ``h_xy / sqrt(h_xx h_yy)`` (NaN where a self-term is not positive)."""
        self.flush()
        if self.num_batches == 0:
            raise ValueError(f"compute: no minibatch of >= {MIN_BATCH} frames was processed")
        xx = to_numpy(self.h_xx)
        yy = to_numpy(self.h_yy)
        if (xx <= 0).any() or (yy <= 0).any():
            warnings.warn("minibatch CKA: non-positive self-HSIC for some layers; their entries are NaN", RuntimeWarning, stacklevel=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = np.sqrt(np.where(xx > 0, xx, math.nan)[:, None] * np.where(yy > 0, yy, math.nan)[None, :])
            return to_numpy(self.h_xy) / denom
