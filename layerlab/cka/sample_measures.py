"""Measures that need the items themselves: RBF-kernel CKA and mutual k-nearest-neighbour alignment, on a sample.

The sample is seeded and speaker-balanced: ``size`` items (aligned frames, or utterance means) are
shared out over speakers as evenly as their item counts allow (water-filling), and each speaker's
share is drawn uniformly from its items with one seeded generator (speakers in sorted order), so
the same cache, size and seed give the same sample on any cluster. The plan is made from the
cache's index (ids, speakers, frame counts) before the pass; the pass keeps the chosen items.

* ``rbf_cka`` (Kornblith et al. 2019): ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))`` with
  ``sigma^2 = threshold^2 * median`` of the squared distances (all m^2 entries, the diagonal
  included, as their demo) or a given sigma; biased HSIC (``H K H``) or debiased (U-centred, Song et al.).
* ``mutual_knn`` (Huh et al. 2024): the k nearest neighbours of each item by cosine similarity
  (self excluded) in each layer; score = mean over items of ``|N_a(i) & N_b(i)| / k``.

Both run on the accumulator's device (a GPU when present) in float64 and keep one m x m matrix per
layer (``8 m^2`` bytes each). Intervals: leave-one-group-out on the sample's items (the bandwidth
fixed at the full sample's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from layerlab.cka.measure_registry import MeasureOptions
from layerlab.cka.tensors import pick_device

#: the largest m x m matrices (all layers, bytes) the sample measures hold at once
MAX_GRAM_BYTES = 8 * 2**30


@dataclass
class SamplePlan:
    """Which items enter the sample: ``chosen[uid]`` = sorted item indices (aligned frame indices; [0] at utterance level)."""

    size: int
    seed: int
    available: int
    speakers: int
    chosen: dict[str, np.ndarray]
    unit: str = "frames"
    notes: list[str] = field(default_factory=list)


def plan_sample(index: Sequence[tuple[str, str, int]], size: int, seed: int, unit: str = "frames") -> SamplePlan:
    """A seeded, speaker-balanced choice of ``size`` items from ``index`` = (utterance id, speaker, items) rows.

    Raises one line when the data holds fewer than ``size`` items.
    """
    by_speaker: dict[str, list[tuple[str, int]]] = {}
    for uid, speaker, count in index:
        if count > 0:
            by_speaker.setdefault(str(speaker), []).append((str(uid), int(count)))
    total = sum(c for rows in by_speaker.values() for _, c in rows)
    if size > total:
        raise ValueError(f"--sample-size {size}: larger than the data ({total} {unit} in {len(by_speaker)} speakers)")
    speakers = sorted(by_speaker)
    counts = {s: sum(c for _, c in by_speaker[s]) for s in speakers}
    quota = dict.fromkeys(speakers, 0)
    left, open_ = size, sorted(speakers, key=lambda s: (counts[s], s))
    while left > 0 and open_:  # water-filling: an even share, capped by what a speaker has
        share = max(left // len(open_), 1)
        nxt = []
        for s in open_:
            take = min(share, counts[s] - quota[s], left)
            quota[s] += take
            left -= take
            if quota[s] < counts[s]:
                nxt.append(s)
            if left == 0:
                break
        open_ = nxt
    rng = np.random.default_rng(seed)
    chosen: dict[str, np.ndarray] = {}
    for s in speakers:
        rows = sorted(by_speaker[s])
        offsets = np.cumsum([0] + [c for _, c in rows])
        picks = np.sort(rng.choice(offsets[-1], size=quota[s], replace=False)) if quota[s] else np.zeros(0, dtype=np.int64)
        which = np.searchsorted(offsets, picks, side="right") - 1
        for k in np.unique(which):
            uid = rows[k][0]
            chosen[uid] = (picks[which == k] - offsets[k]).astype(np.int64)
    notes = []
    if speakers == [""]:
        notes.append("the items carry no speaker: the sample is uniform, not speaker-balanced")
    return SamplePlan(size, seed, total, len(speakers), chosen, unit, notes)


@dataclass
class Sample:
    """The sampled items: per layer an ``(m, d_l)`` matrix (A's layers, then B's), and each item's origin."""

    layers: list[np.ndarray]
    ids: list[str]
    items: list[int]  # aligned frame index (0 at utterance level)
    speakers: list[str]
    groups: list[str]  # the jackknife group of each item
    plan: SamplePlan | None = None


class SampleCollector:
    """Keeps the planned items as utterances stream past (any order, any worker); :meth:`sample` assembles them in order."""

    def __init__(self, plan: SamplePlan) -> None:
        self.plan = plan
        self.parts: list[tuple[str, str, str, np.ndarray, list[np.ndarray]]] = []

    def offer(self, uid: str, speaker: str | None, group: str, aligned: Sequence[np.ndarray]) -> None:
        """``aligned``: the utterance's per-layer ``(T, d)`` aligned frames (``(1, d)`` means at utterance level)."""
        picks = self.plan.chosen.get(uid)
        if picks is None or not len(picks):
            return
        t = min(len(x) for x in aligned)
        picks = picks[picks < t]
        self.parts.append((uid, str(speaker or ""), group, picks, [np.asarray(x, dtype=np.float32)[picks] for x in aligned]))

    def extend(self, parts: Sequence[Any]) -> None:
        self.parts.extend(parts)

    def sample(self) -> Sample:
        parts = sorted(self.parts, key=lambda p: p[0])
        if not parts:
            raise ValueError("sample: none of the planned items was read")
        got = sum(len(p[3]) for p in parts)
        if got != self.plan.size:
            raise ValueError(f"sample: planned {self.plan.size} items but read {got} (the cache changed between planning and reading?)")
        ids, items, speakers, groups = [], [], [], []
        for uid, spk, grp, picks, _ in parts:
            ids += [uid] * len(picks)
            items += [int(t) for t in picks]
            speakers += [spk] * len(picks)
            groups += [grp] * len(picks)
        layers = [np.concatenate([p[4][k] for p in parts]) for k in range(len(parts[0][4]))]
        return Sample(layers, ids, items, speakers, groups, self.plan)


# ------------------------------------------------------------------------------------------------ the measures
def _median(values: torch.Tensor) -> torch.Tensor:
    """The median as NumPy defines it (the mean of the two middle values for an even count)."""
    flat = values.reshape(-1)
    n = flat.numel()
    lo = torch.kthvalue(flat, (n + 1) // 2).values
    hi = torch.kthvalue(flat, n // 2 + 1).values if n % 2 == 0 else lo
    return 0.5 * (lo + hi)


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the rows (centred first: distances do not move, rounding does)."""
    x = x - x.mean(dim=0)
    sq = x.square().sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_(min=0.0)
    d.fill_diagonal_(0.0)
    return d


def rbf_gram(x: torch.Tensor, sigma: float | None = None, threshold: float = 1.0) -> tuple[torch.Tensor, float]:
    """``(K, sigma)``: the RBF Gram matrix and the bandwidth used (``threshold`` x sqrt(median squared distance) when None)."""
    d = squared_distances(x)
    if sigma is None:
        s2 = float(threshold**2 * _median(d))
        if not s2 > 0:
            return torch.ones_like(d), 0.0  # all items equal: a constant kernel (CKA undefined, noted by the caller)
    else:
        s2 = float(sigma) ** 2
    return torch.exp(-d / (2.0 * s2)), float(np.sqrt(s2))


def _centred(k: torch.Tensor, debiased: bool) -> torch.Tensor:
    if not debiased:
        return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()
    n = k.shape[0]
    k = k.clone()
    k.fill_diagonal_(0.0)
    rows = k.sum(dim=1)
    u = k - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + k.sum() / ((n - 1) * (n - 2))
    u.fill_diagonal_(0.0)
    return u


def _cka_from_grams(grams: Sequence[torch.Tensor], rows: Sequence[int], cols: Sequence[int], debiased: bool) -> np.ndarray:
    flat = torch.stack([_centred(g, debiased).reshape(-1) for g in grams])
    prod = flat @ flat.T
    diag = torch.diagonal(prod)
    out = np.full((len(rows), len(cols)), np.nan)
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            den = float(diag[a] * diag[b])
            if den > 0:
                out[i, j] = float(prod[a, b]) / np.sqrt(den)
    return out


def knn_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's ``k`` nearest rows by cosine similarity (the row itself excluded)."""
    norms = x.norm(dim=1, keepdim=True)
    xn = x / torch.where(norms > 0, norms, torch.ones_like(norms))
    sim = xn @ xn.T
    sim.fill_diagonal_(-float("inf"))
    return torch.topk(sim, k, dim=1).indices


def _knn_overlap(ia: torch.Tensor, ib: torch.Tensor) -> float:
    k = ia.shape[1]
    hits = (ia[:, :, None] == ib[:, None, :]).any(dim=2).sum(dim=1)
    return float(hits.double().mean() / k)


def rbf_cka_matrix(layers: Sequence[Any], *, sigma: float | None = None, threshold: float = 1.0, debiased: bool = False,
                   device: str | None = None) -> tuple[np.ndarray, list[float]]:
    """RBF CKA between every pair of ``layers`` (each ``(m, d)``, rows = the same items): ``(matrix, sigma per layer)``."""
    dev = pick_device(device)
    grams, sigmas = [], []
    for x in layers:
        g, s = rbf_gram(torch.as_tensor(np.asarray(x), dtype=torch.float64, device=dev), sigma, threshold)
        grams.append(g)
        sigmas.append(s)
    idx = list(range(len(layers)))
    return _cka_from_grams(grams, idx, idx, debiased), sigmas


def mutual_knn_matrix(layers: Sequence[Any], k: int, *, device: str | None = None) -> np.ndarray:
    """Mutual k-NN alignment between every pair of ``layers`` (each ``(m, d)``, rows = the same items)."""
    m = int(np.asarray(layers[0]).shape[0])
    if not 1 <= k < m:
        raise ValueError(f"--knn-k {k}: must be at least 1 and below the number of items in the sample ({m})")
    dev = pick_device(device)
    nn = [knn_indices(torch.as_tensor(np.asarray(x), dtype=torch.float64, device=dev), k) for x in layers]
    out = np.ones((len(layers), len(layers)))
    for a in range(len(layers)):
        for b in range(a + 1, len(layers)):
            out[a, b] = out[b, a] = _knn_overlap(nn[a], nn[b])
    return out


def check_sample_options(options: MeasureOptions, names: Sequence[str], num_layers: int) -> None:
    """One-line errors before any work: k below the sample size, the m x m matrices within memory."""
    m = options.sample_size
    if "mutual_knn" in names and not options.knn_k < m:
        raise ValueError(f"--knn-k {options.knn_k}: must be below the sample size ({m} items)")
    if "rbf_cka" in names and options.rbf_hsic == "debiased" and m < 4:
        raise ValueError(f"--sample-size {m}: debiased HSIC needs at least 4 items")
    need = 8 * m * m * num_layers * (2 if "rbf_cka" in names else 1)
    if need > MAX_GRAM_BYTES:
        raise ValueError(f"--sample-size {m}: the sample measures would hold {need / 2**30:.1f} GiB of m x m matrices "
                         f"({num_layers} layers); at most {MAX_GRAM_BYTES / 2**30:.0f} GiB: use a smaller sample")


def sample_matrices(sample: Sample, names: Sequence[str], options: MeasureOptions, *, intervals: bool = False,
                    device: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:class:`~layerlab.cka.measure_run.MeasureResult` of each sample measure (all layers x all layers)."""
    from layerlab.cka.measure_run import MeasureResult, _interval

    m = len(sample.ids)
    plan = sample.plan
    base = {"sample_size": m, "sample_seed": plan.seed if plan else options.sample_seed, "sample_unit": plan.unit if plan else "items",
            "sample_speakers": len(set(sample.speakers)), "items_available": plan.available if plan else m,
            "sampling": "speaker-balanced (water-filling), uniform within speaker"}
    groups = sorted(set(sample.groups))
    masks = [np.asarray(sample.groups) != g for g in groups] if intervals else []
    if intervals and len(groups) < 2:
        raise ValueError(f"sample: a confidence interval needs items of at least 2 groups, the sample has {len(groups)}")
    out: dict[str, Any] = {}
    num = len(sample.layers)
    for name in names:
        if progress:
            progress(f"{name}: {m} sampled items, {num} layers" + (f", {len(groups)} leave-one-group-out replicates" if intervals else ""))
        if name == "rbf_cka":
            debiased = options.rbf_hsic == "debiased"
            values, sigmas = rbf_cka_matrix(sample.layers, sigma=options.rbf_sigma, threshold=options.rbf_threshold, debiased=debiased, device=device)
            info = {**base, "hsic": options.rbf_hsic, "sigma": sigmas,
                    "bandwidth": f"given sigma {options.rbf_sigma}" if options.rbf_sigma else f"{options.rbf_threshold} x sqrt(median squared distance)"}
            reps = [_rbf_fixed(sample.layers, sigmas, k, debiased, device) for k in masks]
        else:
            values = mutual_knn_matrix(sample.layers, options.knn_k, device=device)
            info = {**base, "k": options.knn_k, "similarity": "cosine of the raw vectors (Huh et al.)"}
            reps = [mutual_knn_matrix([np.asarray(x)[k] for x in sample.layers], options.knn_k, device=device) for k in masks]
        notes = np.full(values.shape, "", dtype=object)
        bad = ~np.isfinite(values)
        notes[bad] = "constant layer in the sample (all items alike): no similarity is defined"
        res = MeasureResult(name, values, notes, info)
        if intervals:
            res.replicates, res.groups = np.stack(reps), groups
            res.ci = _interval(name, values, res.replicates, "biased")
        out[name] = res
    return out


def _rbf_fixed(layers: Sequence[Any], sigmas: Sequence[float], keep: np.ndarray, debiased: bool, device: str | None) -> np.ndarray:
    """RBF CKA on the kept items with each layer's bandwidth fixed at the full sample's."""
    dev = pick_device(device)
    grams = []
    for x, s in zip(layers, sigmas):
        t = torch.as_tensor(np.asarray(x)[keep], dtype=torch.float64, device=dev)
        grams.append(rbf_gram(t, s)[0] if s > 0 else torch.ones(t.shape[0], t.shape[0], dtype=torch.float64, device=dev))
    idx = list(range(len(layers)))
    return _cka_from_grams(grams, idx, idx, debiased)
