"""Held-out linear predictivity (ridge R^2) between every ordered layer pair, from per-group states only.

The groups (shards, speakers or utterances: whatever the CKA pass kept states for) are dealt into
``F`` folds balanced by item count. For fold f the ridge map ``B = (C_xx + lambda I)^{-1} C_xy`` is
fitted on the state of all other folds (total - fold: additive sums) and evaluated on fold f around
the *training* means: with ``E`` the fold's blocks around those means,
``SSE_f = tr(E_yy) - 2 <B, E_xy> + <B B^T, E_xx>`` and ``SST_f = tr(E_yy)``, all exact from sums.
In the eigenbasis of the training ``C_xx`` every penalty of the grid costs O(p^2) once the fold's
products are formed, so lambda = eps * tr(C_xx) / p is chosen per pair by the pooled CV score
``1 - sum SSE / sum SST``, which is the value reported (the choice and the report use the same folds;
a grid of a few values adds little optimism). Intervals: the jackknife over groups of the per-group
held-out errors with the fitted maps fixed (``1 - (SSE - SSE_g) / (SST - SST_g)``): it covers the
evaluation sample's variability, not the refit's.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from layerlab.cka import measures as ms
from layerlab.cka.measure_registry import MeasureOptions
from layerlab.cka.moment_measures import MeasureMatrix, _as_accumulator, _Blocks, layout


def assign_folds(sizes: Sequence[int], folds: int) -> list[int]:
    """Fold of each group: largest groups first, each into the fold holding the fewest items so far (deterministic)."""
    load = [0] * folds
    out = [0] * len(sizes)
    for g in sorted(range(len(sizes)), key=lambda k: (-int(sizes[k]), k)):
        f = min(range(folds), key=lambda k: (load[k], k))
        out[g] = f
        load[f] += int(sizes[g])
    return out


def _sum_states(accs: Sequence[Any]) -> Any:
    from layerlab.cka.intervals import weighted_state
    from layerlab.cka.state_io import accumulator_from_state

    states = [a.state_dict() for a in accs]
    return accumulator_from_state(weighted_state(states, np.ones(len(states))))


def _minus(total: Any, part: Any) -> Any:
    from layerlab.cka.intervals import without
    from layerlab.cka.state_io import accumulator_from_state

    return accumulator_from_state(without(total.state_dict(), part.state_dict()))


def _means(acc: Any) -> torch.Tensor:
    return acc.S.to(torch.float64) / acc.n


def ridge_r2_matrix(total: Any, groups: Sequence[Any], options: MeasureOptions | None = None,
                    names: Sequence[str] | None = None) -> tuple[MeasureMatrix, np.ndarray | None]:
    """``(matrix, replicates)``: held-out R^2 of predicting column layer j from row layer i; replicates ``[G, rows, cols]``.

    ``total``: the merged state (FeatureCKA or its dict); ``groups``: one state per group, summing to ``total``.
    With fewer than 2 groups there is nothing to hold out: NaN entries with that note, no replicates.
    """
    opts = options or MeasureOptions()
    acc = _as_accumulator(total)
    accs = [_as_accumulator(g) for g in groups]
    accs = [g for g in accs if g.n > 0]
    rows, cols = layout(acc)
    shape = (len(rows), len(cols))
    values, notes = np.full(shape, np.nan), np.full(shape, "", dtype=object)
    eps_chosen = np.full(shape, np.nan)
    num_folds = min(opts.ridge_folds, len(accs))
    info: dict[str, Any] = {"ridge_grid": list(opts.ridge_grid), "folds": num_folds, "groups": len(accs),
                            "penalty_rule": "lambda = eps * tr(C_train) / d of the predicting layer, eps chosen per pair by CV",
                            "direction": "row layer predicts column layer"}
    if num_folds < 2:
        notes[:] = f"ridge_r2 needs at least 2 groups to hold data out, the state has {len(accs)}"
        return MeasureMatrix("ridge_r2", values, notes, info), None
    fold_of = assign_folds([g.n for g in accs], num_folds)
    fold_states = [_sum_states([g for g, f in zip(accs, fold_of) if f == k]) for k in range(num_folds)]
    whole = _Blocks(acc)
    slices = [slice(acc.offsets[i], acc.offsets[i + 1]) for i in range(len(acc.dims))]
    pairs = [(i, a, j, b) for i, a in enumerate(rows) for j, b in enumerate(cols)]
    const = {a for a in set(rows) | set(cols) if whole.spectrum(a).rank == 0}
    live = [p for p, (_, a, _, b) in enumerate(pairs) if a not in const and b not in const]
    grid = np.asarray(opts.ridge_grid, dtype=np.float64)
    sse = np.zeros((len(pairs), len(grid)))
    sst = np.zeros(len(pairs))
    spectra: list[dict[int, ms.Spectrum]] = []  # the training spectra of each fold (kept; the training states are not)
    for k in range(num_folds):
        train = _minus(acc, fold_states[k])
        tb, eb = _Blocks(train), _Blocks(fold_states[k])
        nf = fold_states[k].n
        dd = _means(fold_states[k]) - _means(train)  # fold mean minus training mean (shift coordinates)
        rotated: dict[int, torch.Tensor] = {}
        for p in live:
            _, a, _, b = pairs[p]
            s = tb.spectrum(a)
            if a not in rotated:
                rotated[a] = s.vectors.T @ (eb.block(a, a) + nf * torch.outer(dd[slices[a]], dd[slices[a]])) @ s.vectors
            g_ = s.vectors.T @ tb.block(a, b)
            h = s.vectors.T @ (eb.block(a, b) + nf * torch.outer(dd[slices[a]], dd[slices[b]]))
            g1 = (g_ * h).sum(dim=1)
            q = rotated[a] * (g_ @ g_.T)
            tr_e = float(torch.trace(eb.block(b, b)) + nf * dd[slices[b]] @ dd[slices[b]])
            lam = torch.as_tensor(grid * s.trace / s.dim, device=s.values.device)
            d = torch.where(s.kept()[None, :], 1.0 / (s.values[None, :] + lam[:, None]), torch.zeros((), dtype=torch.float64, device=lam.device))
            sse[p] += (tr_e - 2.0 * (d @ g1) + ((d @ q) * d).sum(dim=1)).cpu().numpy()  # every penalty of the grid at once
            sst[p] += tr_e
        spectra.append({a: tb.spectrum(a) for a in rotated})
    # choose eps per pair (ties: the larger penalty), then each group's held-out error at that eps
    best = np.zeros(len(pairs), dtype=int)
    for p, (i, a, j, b) in enumerate(pairs):
        if p not in live:
            label = ", ".join(names[x] if names else f"layer {x}" for x in dict.fromkeys((a, b)) if x in const)
            notes[i, j] = f"{label}: constant (zero variance), no predictivity is defined"
            continue
        r2 = 1.0 - sse[p] / sst[p] if sst[p] > 0 else np.full(len(grid), np.nan)
        best[p] = len(grid) - 1 - int(np.nanargmax(r2[::-1])) if np.isfinite(r2).any() else len(grid) - 1
        eps_chosen[i, j] = grid[best[p]]
    sse_g = np.zeros((len(accs), len(pairs)))
    sst_g = np.zeros((len(accs), len(pairs)))
    group_blocks = [_Blocks(g) for g in accs]
    for k in range(num_folds):
        train = _minus(acc, fold_states[k])
        tb, m = _Blocks(train), _means(train)
        members = [(gi, gb, _means(gb.acc) - m) for gi, (gb, f) in enumerate(zip(group_blocks, fold_of)) if f == k]
        for p in live:
            _, a, _, b = pairs[p]
            s = spectra[k][a]
            d = torch.where(s.kept(), 1.0 / (s.values + grid[best[p]] * s.trace / s.dim), torch.zeros_like(s.values))
            bmap = s.vectors @ (d[:, None] * (s.vectors.T @ tb.block(a, b)))
            pmap = bmap @ bmap.T
            for gi, gb, ddg in members:
                xa, xb, ng = ddg[slices[a]], ddg[slices[b]], gb.n
                sst_gp = float(torch.trace(gb.block(b, b)) + ng * xb @ xb)
                cross = float((bmap * gb.block(a, b)).sum() + ng * xa @ bmap @ xb)
                quad = float((pmap * gb.block(a, a)).sum() + ng * xa @ pmap @ xa)
                sse_g[gi, p] = sst_gp - 2.0 * cross + quad
                sst_g[gi, p] = sst_gp
    tot_sse, tot_sst = sse_g.sum(axis=0), sst_g.sum(axis=0)
    reps = np.full((len(accs),) + shape, np.nan)
    for p in live:
        i, _, j, _ = pairs[p]
        if not tot_sst[p] > 0:
            continue
        values[i, j] = 1.0 - tot_sse[p] / tot_sst[p]
        left = tot_sst[p] - sst_g[:, p]
        with np.errstate(divide="ignore", invalid="ignore"):
            reps[:, i, j] = np.where(left > 0, 1.0 - (tot_sse[p] - sse_g[:, p]) / left, np.nan)
    info["eps_chosen"] = eps_chosen.tolist()
    return MeasureMatrix("ridge_r2", values, notes, info), reps
