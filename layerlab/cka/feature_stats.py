"""Full-data linear CKA (biased and debiased) of all layer pairs from streamed float64 sums.

State per the design: ``n``, ``S = sum u``, ``M = sum u u^T`` with ``u = z - shift`` (``z`` = all
layers concatenated, ``shift`` shared by every worker that will be merged), plus the per-frame
squared-norm sums ``rho``, ``R``, ``V`` that make the debiased estimator streamable. Every field
is a plain sum over frames, so ``merge`` is addition. Three layouts:

* ``within`` (one model): block rows ``M[a] += U_a^T U[:, a:]`` (half a full GEMM), stored packed:
  block row ``a`` is ``d_a x (D - o_a)``, so the lower block triangle is never allocated;
* ``cross`` (two models): only the cross block ``U_A^T U_B`` and per-layer diagonal blocks;
* ``joint`` (two models): the within layout over the concatenation (within + cross maps).

Memory (float64, ``D`` = summed layer dims, ``o_a`` = offset of layer ``a``, ``L`` layers):
``within``/``joint``: ``8 * (sum_a d_a (D - o_a) + L^2 + L + (L + 1) D)`` bytes, i.e. about
``4 D^2 + 4 sum_a d_a^2`` (WavLM Large, 25 x 1024: 2.73 GB instead of a full 5.24 GB square);
``cross``: ``8 * (D_A D_B + sum_a d_a^2 + L^2 + L + (L + 1) D)``. :func:`state_bytes` gives the exact figure.

``fast_matmul=True`` runs the GEMMs in float32 (TF32 on CUDA) on the already-shifted data and
still accumulates in float64; ``FAST_MATMUL_ABS_ERROR`` is the documented, tested error bound.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from layerlab.cka.align import flatten_frames
from layerlab.cka.debiased import debiased_hsic, norm_product_sum, norm_sum
from layerlab.cka.tensors import as_tensor, pick_device, to_numpy

MODES = ("within", "cross", "joint")
ESTIMATORS = ("biased", "debiased")
# Max |CKA error| of fast (float32/TF32) GEMMs on shifted data vs float64, for unit-scale features
# with offsets up to ~1e3 (tests/cka/test_fast_matmul.py checks it on CPU float32).
FAST_MATMUL_ABS_ERROR = 1e-4


@contextlib.contextmanager
def _matmul_precision(fast: bool) -> Iterator[None]:
    """Allow TF32 for float32 GEMMs inside the block when ``fast`` (restores the previous setting)."""
    if not fast:
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class FeatureCKA:
    """Streaming full-data linear CKA; ``compute("biased")`` or ``compute("debiased")`` -> matrix."""

    kind = "feature_cka"

    def __init__(
        self,
        dims_a: Sequence[int],
        dims_b: Sequence[int] | None = None,
        mode: str | None = None,
        shift: Any = None,
        device: str | torch.device | None = None,
        fast_matmul: bool = False,
        frame_rates_hz: Sequence[float] | None = None,
        estimator: str = "biased",
    ) -> None:
        self.dims_a = [int(d) for d in dims_a]
        self.estimator = self._check_estimator(estimator)
        self.dims_b = None if dims_b is None else [int(d) for d in dims_b]
        if not self.dims_a or any(d <= 0 for d in self.dims_a + (self.dims_b or [])):
            raise ValueError(f"dims_a/dims_b: need at least one layer and positive dims, got {dims_a}, {dims_b}")
        self.mode = mode or ("within" if dims_b is None else "cross")
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
        if (self.mode == "within") != (self.dims_b is None):
            raise ValueError(f"mode: {self.mode!r} needs {'no' if self.mode == 'within' else 'a second'} layer list (dims_b)")
        self.device = pick_device(device)
        self.fast_matmul = bool(fast_matmul)
        self.frame_rates_hz = None if frame_rates_hz is None else [float(r) for r in frame_rates_hz]
        self.dims = self.dims_a + (self.dims_b or [])
        self.offsets = [0] + list(np.cumsum(self.dims))
        self.num_a = len(self.dims_a)
        self.shift: torch.Tensor | None = None
        if shift is not None:
            self.shift = self._vector(shift, "shift")
        self._reset_sums()

    # ------------------------------------------------------------------ state
    def _reset_sums(self) -> None:
        dev, f64 = self.device, torch.float64
        width, num = self.offsets[-1], len(self.dims)
        self.n = 0
        self.S = torch.zeros(width, dtype=f64, device=dev)
        self.rho = torch.zeros(num, dtype=f64, device=dev)
        self.R = torch.zeros(num, num, dtype=f64, device=dev)
        self.V = torch.zeros(num, width, dtype=f64, device=dev)
        self.M: Any
        if self.mode == "cross":
            d1 = self.offsets[self.num_a]
            self.M = torch.zeros(d1, width - d1, dtype=f64, device=dev)
            self.G = [torch.zeros(d, d, dtype=f64, device=dev) for d in self.dims]
        else:  # packed upper block triangle: block row a holds M[a, a:]
            self.M = [torch.zeros(d, width - self.offsets[a], dtype=f64, device=dev) for a, d in enumerate(self.dims)]
            self.G = []

    def _vector(self, value: Any, name: str) -> torch.Tensor:
        if isinstance(value, (list, tuple)) and len(value) == len(self.dims) and not np.isscalar(value[0]):
            value = torch.cat([as_tensor(v).reshape(-1).to(torch.float64) for v in value])
        vec = as_tensor(value, self.device, torch.float64).reshape(-1)
        if vec.numel() != self.offsets[-1]:
            raise ValueError(f"{name}: expected {self.offsets[-1]} values (all layers concatenated), got {vec.numel()}")
        return vec

    def _block_slices(self, a: int) -> slice:
        return slice(self.offsets[a], self.offsets[a + 1])

    def _config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dims_a": self.dims_a,
            "dims_b": self.dims_b,
            "mode": self.mode,
            "fast_matmul": self.fast_matmul,
            "frame_rates_hz": self.frame_rates_hz,
            "estimator": self.estimator,
        }

    def state_dict(self) -> dict[str, Any]:
        """Config plus all sums as float64 numpy arrays (checkpointable anywhere)."""
        state = self._config()
        state.update(
            n=int(self.n),
            shift=None if self.shift is None else to_numpy(self.shift),
            S=to_numpy(self.S),
            rho=to_numpy(self.rho),
            R=to_numpy(self.R),
            V=to_numpy(self.V),
            M=to_numpy(self.M) if self.mode == "cross" else [to_numpy(m) for m in self.M],
            G=[to_numpy(g) for g in self.G],
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace config-compatible sums with those of ``state`` (from ``state_dict``)."""
        self._check_compatible(state, "state")
        dev, f64 = self.device, torch.float64
        self.n = int(state["n"])
        self.shift = None if state["shift"] is None else as_tensor(state["shift"], dev, f64)
        self.S, self.rho, self.R, self.V = (as_tensor(state[k], dev, f64).clone() for k in ("S", "rho", "R", "V"))
        self.M = as_tensor(state["M"], dev, f64).clone() if self.mode == "cross" else self._block_rows(state["M"])
        self.G = [as_tensor(g, dev, f64).clone() for g in state["G"]]

    def _block_rows(self, m: Any) -> list[torch.Tensor]:
        """Packed block rows from a state's ``M``: a list of block rows, or a full square (states written before packing)."""
        if isinstance(m, (list, tuple)):
            return [as_tensor(r, self.device, torch.float64).clone() for r in m]
        full = as_tensor(m, self.device, torch.float64)
        return [full[self._block_slices(a), self.offsets[a]:].clone() for a in range(len(self.dims))]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | torch.device | None = None, estimator: str | None = None) -> "FeatureCKA":
        """Rebuild an accumulator (config and sums) from ``state_dict`` output; ``estimator`` overrides the recorded one."""
        acc = cls(state["dims_a"], state["dims_b"], state["mode"], device=device, fast_matmul=state["fast_matmul"], frame_rates_hz=state["frame_rates_hz"],
                  estimator=estimator or state.get("estimator", "biased"))
        acc.load_state_dict(state)
        return acc

    def _check_compatible(self, state: dict[str, Any], what: str) -> None:
        mine = self._config()
        for key in ("kind", "dims_a", "dims_b", "mode"):
            theirs = state.get(key)
            if theirs is not None and key != "kind":
                theirs = [int(d) for d in theirs] if key.startswith("dims") else theirs
            if theirs != mine[key]:
                raise ValueError(f"{what}: incompatible CKA state, {key}={state.get(key)!r} but this accumulator has {mine[key]!r}")

    # ------------------------------------------------------------------ update
    def update(self, layers: Sequence[Any], lengths: Any = None, frame_mask: Any = None) -> None:
        """Add a batch: per-layer ``[B, T_l, D_l]`` with ``lengths`` or flat ``(n, d_l)`` frames.

        In ``cross``/``joint`` mode ``layers`` is model A's layers followed by model B's.
        """
        if len(layers) != len(self.dims):
            raise ValueError(f"layers: expected {len(self.dims)} layers ({self.num_a} + {len(self.dims) - self.num_a}), got {len(layers)}")
        frames = flatten_frames(layers, lengths, self.frame_rates_hz, frame_mask)
        for i, (f, d) in enumerate(zip(frames, self.dims)):
            if f.shape[1] != d:
                raise ValueError(f"layers: layer {i} has dim {f.shape[1]}, accumulator expects {d}")
        if frames[0].shape[0] == 0:
            return
        u = torch.cat([f.to(self.device, torch.float64) for f in frames], dim=1)
        if not torch.isfinite(u).all():
            raise ValueError("layers: batch contains NaN or Inf values")
        if self.shift is None:
            self.shift = u.mean(dim=0)
        u.sub_(self.shift)
        self._accumulate(u)

    def _accumulate(self, u: torch.Tensor) -> None:
        self.n += u.shape[0]
        self.S += u.sum(dim=0)
        r = torch.stack([u[:, self._block_slices(a)].square().sum(dim=1) for a in range(len(self.dims))], dim=1)
        self.rho += r.sum(dim=0)
        self.R.addmm_(r.T, r)
        self.V.addmm_(r.T, u)
        g = u.float() if self.fast_matmul else u
        with _matmul_precision(self.fast_matmul):
            if self.mode == "cross":
                d1 = self.offsets[self.num_a]
                self._add_product(self.M, g[:, :d1], g[:, d1:])
                for a, block in enumerate(self.G):
                    ua = g[:, self._block_slices(a)]
                    self._add_product(block, ua, ua)
            else:
                for a in range(len(self.dims)):
                    lo = self.offsets[a]
                    self._add_product(self.M[a], g[:, lo : self.offsets[a + 1]], g[:, lo:])

    @staticmethod
    def _add_product(target: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> None:
        if left.dtype == torch.float64:
            target.addmm_(left.T, right)
        else:
            target += (left.T @ right).to(torch.float64)

    # ------------------------------------------------------------------ merge
    def merge(self, other: "FeatureCKA") -> "FeatureCKA":
        """Add ``other``'s sums into this state (both must use the same shift); returns ``self``."""
        self._check_compatible(other._config(), "merge")
        if other.n == 0:
            return self
        if self.n == 0:
            self.load_state_dict(other.state_dict())
            return self
        if not torch.equal(self.shift, other.shift.to(self.device)):
            raise ValueError(
                "merge: the two states were accumulated around different shifts; give every worker the same "
                "shift= (e.g. layerlab.cka.pilot_shift of a pilot batch)"
            )
        self.n += other.n
        for name in ("S", "rho", "R", "V"):
            getattr(self, name).add_(getattr(other, name).to(self.device))
        if self.mode == "cross":
            self.M.add_(other.M.to(self.device))
        else:
            for mine, theirs in zip(self.M, other.M):
                mine.add_(theirs.to(self.device))
        for mine, theirs in zip(self.G, other.G):
            mine.add_(theirs.to(self.device))
        return self

    def state_bytes(self) -> int:
        """Bytes of the float64 sums this accumulator holds (see the module's memory formula)."""
        tensors = [self.S, self.rho, self.R, self.V, *self.G] + ([self.M] if self.mode == "cross" else list(self.M))
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def select(self, layers: Sequence[int], num_a: int) -> "FeatureCKA":
        """A new ``joint`` accumulator over the given layers (any order, A's first ``num_a``): only those blocks are kept.

        Reads a pair, or a sub-selection of layers, out of a joint state (``within``/``joint`` only).
        """
        if self.mode == "cross":
            raise ValueError("select: a cross state has no within blocks; select from a within or joint state")
        layers = [int(i) for i in layers]
        if not layers or not 0 < num_a <= len(layers) or any(not 0 <= i < len(self.dims) for i in layers):
            raise ValueError(f"select: need layer indices in 0..{len(self.dims) - 1} and 0 < num_a <= {len(layers)}, got {layers}, {num_a}")
        dims = [self.dims[i] for i in layers]
        rates = None if self.frame_rates_hz is None else [self.frame_rates_hz[i] for i in layers]
        dims_b = dims[num_a:] or None
        out = FeatureCKA(dims[:num_a], dims_b, "joint" if dims_b else "within", device=self.device, fast_matmul=self.fast_matmul,
                         frame_rates_hz=rates, estimator=self.estimator)
        cols = torch.cat([torch.arange(self.offsets[i], self.offsets[i + 1], device=self.device) for i in layers])
        out.n = self.n
        out.shift = None if self.shift is None else self.shift[cols].clone()
        out.S = self.S[cols].clone()
        idx = torch.tensor(layers, device=self.device)
        out.rho = self.rho[idx].clone()
        out.R = self.R[idx][:, idx].clone()
        out.V = self.V[idx][:, cols].clone()
        for p, a in enumerate(layers):
            parts = []
            for b in layers[p:]:
                parts.append(self._m_block(a, b) if a <= b else self._m_block(b, a).T)
            out.M[p] = torch.cat(parts, dim=1).clone()
        return out

    # ------------------------------------------------------------------ compute
    def _pairs(self) -> list[tuple[int, int]]:
        num = len(self.dims)
        if self.mode == "cross":
            cross = [(a, b) for a in range(self.num_a) for b in range(self.num_a, num)]
            return cross + [(a, a) for a in range(num)]
        return [(a, b) for a in range(num) for b in range(a, num)]

    def _m_block(self, a: int, b: int) -> torch.Tensor:
        if self.mode == "cross":
            if a == b:
                return self.G[a]
            d1 = self.offsets[self.num_a]
            return self.M[self._block_slices(a), self.offsets[b] - d1 : self.offsets[b + 1] - d1]
        lo = self.offsets[a]
        return self.M[a][:, self.offsets[b] - lo : self.offsets[b + 1] - lo]

    def centred_block(self, a: int, b: int) -> torch.Tensor:
        """``C_ab = sum_i (x_ai - mean_a)(x_bi - mean_b)^T`` (float64, on the accumulator's device) for a stored pair.

        Stored pairs: every (a, b) in ``within``/``joint`` mode; in ``cross`` mode the A x B pairs and (a, a).
        The similarity measures beyond CKA (:mod:`layerlab.cka.moment_measures`) read every block they need here.
        """
        num = len(self.dims)
        if not (0 <= a < num and 0 <= b < num):
            raise ValueError(f"centred_block: layer indices must lie in 0..{num - 1}, got ({a}, {b})")
        if self.n < 1:
            raise ValueError("centred_block: the state holds no frames")
        if self.mode == "cross" and a != b and (a < self.num_a) == (b < self.num_a):
            raise ValueError(f"centred_block: a cross state holds no block ({a}, {b}) within one model")
        if a > b:  # only the upper block triangle (and, cross, A x B) is stored
            return self.centred_block(b, a).T
        delta = self.S / self.n
        return self._m_block(a, b) - self.n * torch.outer(delta[self._block_slices(a)], delta[self._block_slices(b)])

    def hsic_terms(self, estimator: str = "biased") -> dict[tuple[int, int], float]:
        """Unnormalised HSIC for every stored layer pair ``(a, b)``, a <= b (factors that cancel dropped)."""
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator: must be one of {ESTIMATORS}, got {estimator!r}")
        if self.n < 2:
            raise ValueError(f"compute: need at least 2 frames, got {self.n}")
        n = self.n
        delta = self.S / n
        deltas = [delta[self._block_slices(a)] for a in range(len(self.dims))]
        norms = [norm_sum(self.rho[a], deltas[a], n) for a in range(len(self.dims))]
        out: dict[tuple[int, int], float] = {}
        for a, b in self._pairs():
            m_ab = self._m_block(a, b)
            c_ab = m_ab - n * torch.outer(deltas[a], deltas[b])
            t_ab = c_ab.square().sum()
            if estimator == "debiased":
                p_ab = norm_product_sum(
                    n, self.R[a, b], self.rho[a], self.rho[b],
                    self.V[a, self._block_slices(b)], self.V[b, self._block_slices(a)],
                    deltas[a], deltas[b], m_ab,
                )
                t_ab = debiased_hsic(t_ab, p_ab, norms[a], norms[b], n)
            out[(a, b)] = float(t_ab)
        return out

    @staticmethod
    def _check_estimator(estimator: str) -> str:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator: must be one of {ESTIMATORS}, got {estimator!r}")
        return estimator

    def using(self, estimator: str) -> "FeatureCKA":
        """Choose the estimator ``compute()`` uses (biased or debiased); returns ``self``."""
        self.estimator = self._check_estimator(estimator)
        return self

    def compute(self) -> np.ndarray:
        """The CKA matrix with the chosen estimator: ``within``/``joint`` L x L over all layers, ``cross`` L_A x L_B."""
        terms = self.hsic_terms(self.estimator)
        num = len(self.dims)
        rows = range(self.num_a) if self.mode == "cross" else range(num)
        cols = range(self.num_a, num) if self.mode == "cross" else range(num)
        self_terms = {a: terms[(a, a)] for a in range(num)}
        bad = [a for a, v in self_terms.items() if not v > 0]
        if bad:
            warnings.warn(f"CKA: layers {bad} have zero (or, debiased, non-positive) self-similarity; their rows are NaN", RuntimeWarning, stacklevel=2)
        out = np.empty((len(rows), len(cols)))
        for i, a in enumerate(rows):
            for j, b in enumerate(cols):
                hab = terms[(min(a, b), max(a, b))]
                denom = self_terms[a] * self_terms[b]
                out[i, j] = hab / math.sqrt(denom) if self_terms[a] > 0 and self_terms[b] > 0 else float("nan")
        return out


def pilot_shift(layers: Sequence[Any], lengths: Any = None, frame_rates_hz: Sequence[float] | None = None) -> np.ndarray:
    """Mean of a pilot batch over all layers concatenated: the shared shift to give every worker."""
    frames = flatten_frames(layers, lengths, frame_rates_hz)
    if frames[0].shape[0] == 0:
        raise ValueError("pilot_shift: the pilot batch has no valid frames")
    return torch.cat([f.to(torch.float64) for f in frames], dim=1).mean(dim=0).cpu().numpy()
