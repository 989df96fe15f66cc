"""Every second-moment similarity measure for every layer pair, from one merged FeatureCKA state.

Each layer's block is eigendecomposed once; per layer pair, the CCA family needs one SVD of the
whitened cross block (its left and right singular vectors give PWCCA in both directions), SVCCA one
SVD of the reduced block, Procrustes the singular values of the cross block. Nothing reads data:
the cost is ``O(L^2 d^3)`` once per state, not per frame. ``ridge_r2`` (held-out predictivity)
needs the per-group states as well (:func:`ridge_r2_matrix`).

Matrices follow ``FeatureCKA.compute()``: ``within``/``joint`` give all layers x all layers, ``cross``
model A's layers x model B's. Undefined entries (a constant layer) are NaN with a note; degenerate but
defined ones (rank deficiency, more dimensions than items) carry a note beside their value.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from layerlab.cka import measures as ms
from layerlab.cka.measure_registry import MeasureOptions, moment_names


@dataclass
class MeasureMatrix:
    """One measure's layer x layer matrix with a note per entry ("" where nothing is to say) and its settings."""

    name: str
    values: np.ndarray
    notes: np.ndarray  # object array of str, same shape
    info: dict[str, Any] = field(default_factory=dict)


def _as_accumulator(state: Any, estimator: str = "biased") -> Any:
    from layerlab.cka.state_io import accumulator_from_state

    if isinstance(state, dict):
        return accumulator_from_state(state, estimator=estimator)
    return state


def layout(acc: Any) -> tuple[list[int], list[int]]:
    """Row and column layer indices of the matrices a state gives (as ``FeatureCKA.compute``)."""
    num = len(acc.dims)
    if acc.mode == "cross":
        return list(range(acc.num_a)), list(range(acc.num_a, num))
    return list(range(num)), list(range(num))


class _Blocks:
    """Centred blocks and per-layer spectra of one state, each computed once."""

    def __init__(self, acc: Any) -> None:
        self.acc = acc
        self.n = int(acc.n)
        self._spectra: dict[int, ms.Spectrum] = {}
        self._diag: dict[int, torch.Tensor] = {}

    def block(self, a: int, b: int) -> torch.Tensor:
        """``C_ab`` (float64, on the state's device); diagonal blocks are kept."""
        if a == b and a in self._diag:
            return self._diag[a]
        out = self.acc.centred_block(a, b).to(torch.float64)
        if a == b:
            self._diag[a] = out
        return out

    def spectrum(self, a: int) -> ms.Spectrum:
        if a not in self._spectra:
            self._spectra[a] = ms.spectrum(self.block(a, a))
        return self._spectra[a]


def _constant_note(blocks: _Blocks, a: int, b: int, names: Sequence[str] | None) -> str:
    const = [i for i in dict.fromkeys((a, b)) if blocks.spectrum(i).rank == 0]
    if not const:
        return ""
    label = ", ".join(names[i] if names else f"layer {i}" for i in const)
    return f"{label}: constant (zero variance), no similarity is defined"


def moment_matrices(state: Any, measures: Sequence[str], options: MeasureOptions | None = None, estimator: str = "biased",
                    names: Sequence[str] | None = None) -> dict[str, MeasureMatrix]:
    """The matrices of the second-moment measures in ``measures`` (``ridge_r2`` excluded: see :func:`ridge_r2_matrix`).

    ``state``: a FeatureCKA (or its state dict), merged over everything; ``estimator``: linear CKA's (biased or
    debiased); ``names``: layer names (state order), only used in notes.
    """
    opts = options or MeasureOptions()
    wanted = [m for m in moment_names(measures) if m != "ridge_r2"]
    acc = _as_accumulator(state, estimator)
    rows, cols = layout(acc)
    shape = (len(rows), len(cols))
    out = {m: MeasureMatrix(m, np.full(shape, np.nan), np.full(shape, "", dtype=object)) for m in wanted}
    if "linear_cka" in wanted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a constant layer's NaN row: noted below instead
            out["linear_cka"].values[:] = acc.using(estimator).compute() if hasattr(acc, "using") else acc.compute()
        out["linear_cka"].info = {"estimator": estimator}
    others = [m for m in wanted if m != "linear_cka"]
    blocks = _Blocks(acc)
    row_pos, col_pos = {a: i for i, a in enumerate(rows)}, {b: j for j, b in enumerate(cols)}
    done: set[tuple[int, int]] = set()
    for a in rows:
        for b in cols:
            if (min(a, b), max(a, b)) in done:
                continue
            done.add((min(a, b), max(a, b)))
            cells = [(row_pos[i], col_pos[j]) for i, j in dict.fromkeys(((a, b), (b, a))) if i in row_pos and j in col_pos]
            note = _constant_note(blocks, a, b, names)
            if note:  # every measure undefined (values stay NaN), linear CKA's NaN included
                for m in wanted:
                    for cell in cells:
                        out[m].notes[cell] = note
                continue
            if not others:
                continue
            values, pair_note = _pair(blocks, a, b, others, opts)
            for m, (v_ab, v_ba) in values.items():
                for (i, j), v in (((a, b), v_ab), ((b, a), v_ba)):
                    if i in row_pos and j in col_pos:
                        out[m].values[row_pos[i], col_pos[j]] = v
                        if pair_note and m in ("cca_r2", "cca_mean", "pwcca"):
                            out[m].notes[row_pos[i], col_pos[j]] = pair_note
    for m in others:
        out[m].info = _info(m, opts)
    return out


def _info(name: str, opts: MeasureOptions) -> dict[str, Any]:
    if name in ("cca_r2", "cca_mean", "pwcca"):
        return {"ridge": opts.ridge, "ridge_rule": "lambda = ridge * tr(C) / d per layer"}
    if name == "svcca":
        return {"ridge": opts.ridge, "svcca_fraction": opts.svcca_fraction}
    if name == "procrustes":
        return {"distance": "2 - 2 ||X^T Y||_* on centred, unit-Frobenius representations", "range": [0.0, 2.0]}
    return {}


def _pair(blocks: _Blocks, a: int, b: int, names: Sequence[str], opts: MeasureOptions) -> tuple[dict[str, tuple[float, float]], str]:
    """Values of the measures for (a, b) and (b, a), and the CCA note of the pair."""
    sa, sb = blocks.spectrum(a), blocks.spectrum(b)
    cab = blocks.block(a, b)
    out: dict[str, tuple[float, float]] = {}
    note = ""
    if "cca_r2" in names and not {"cca_mean", "pwcca"} & set(names):  # sum of rho^2 = ||T||_F^2: no SVD
        t = ms.whitened_cross(sa, sb, cab, opts.ridge)[0]
        v = min(float(t.square().sum()) / min(sa.dim, sb.dim), 1.0)
        out["cca_r2"] = (v, v)
        note = ms.cca_note(sa, sb, blocks.n)
    elif {"cca_r2", "cca_mean", "pwcca"} & set(names):
        res = ms._canonical(sa, sb, cab, opts.ridge, blocks.n, "pwcca" in names)[0]
        note = res.note
        if "cca_r2" in names:
            v = float(res.rho.square().mean())
            out["cca_r2"] = (v, v)
        if "cca_mean" in names:
            v = float(res.rho.mean())
            out["cca_mean"] = (v, v)
        if "pwcca" in names:
            out["pwcca"] = (ms.pwcca_from(blocks.block(a, a), res.weights_a, res.rho),
                            ms.pwcca_from(blocks.block(b, b), res.weights_b, res.rho))
    if "svcca" in names:
        v = ms.svcca_from_spectra(sa, sb, cab, fraction=opts.svcca_fraction, ridge=opts.ridge)[0]
        out["svcca"] = (v, v)
    if "procrustes" in names:
        v = ms.procrustes_from_traces(sa.trace, sb.trace, cab)
        out["procrustes"] = (v, v)
    return out, note
