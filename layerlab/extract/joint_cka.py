"""Cross-model CKA without a frames tier: one accumulator fed by every model of a group on the same batch.

The joint state is a :class:`~layerlab.cka.FeatureCKA` in ``joint`` layout over model A's selected
layers followed by model B's (the layout ``layerlab cka --a A --b B`` builds from two frames tiers),
so its matrix holds the A x A, B x B and A x B blocks. Frame rates are aligned exactly as
``cka/align.py`` does: faster layers are average-pooled to the slowest rate and each utterance is
truncated to the shortest valid length over both models. Memory per pair (packed upper block
triangle, see ``cka/feature_stats.py``): ``8 * sum_a d_a (D - o_a)`` bytes, about ``4 D^2`` with
``D = D_A + D_B`` summed layer dims, plus ``O(L D)`` for the moment terms. A group of ``k`` models
keeps ``k(k-1)/2`` pair states, each with its own alignment, so every pair equals the two-cache
frames-tier computation exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from layerlab.models.base import LayerOutput


@dataclass(frozen=True)
class GroupSpec:
    """A joint group as its actor builds it: specs, per-member extraction settings, compared pairs, CKA layers.

    ``configs`` (ExtractConfig JSON per member) may differ only in tier and side-outputs; ``pairs`` default to
    every pair in group order; ``layers`` names each member's joint CKA layers (default: its frame-level ones).
    """

    specs: dict[str, str]
    configs: dict[str, str] | None = None
    pairs: list[tuple[str, str]] | None = None
    layers: dict[str, list[str]] | None = None

    def all_pairs(self) -> list[tuple[str, str]]:
        """The pairs that get a joint state, each as (earlier member, later member)."""
        names = list(self.specs)
        if self.pairs is None:
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        return [(a, b) if names.index(a) < names.index(b) else (b, a) for a, b in self.pairs]


@dataclass(frozen=True)
class JointMember:
    """One model of a joint group: which of its layers enter CKA, their dims and frame rates."""

    name: str
    indices: list[int]
    dims: list[int]
    frame_rates_hz: list[float]


def member(name: str, model: Any, layers: Sequence[str] | None = None) -> JointMember:
    """The frame-level layers of ``model`` (all, or ``layers`` by name) as a joint-group member."""
    if layers is None:
        idx = [i for i, utt in enumerate(model.utterance_level) if not utt]
    else:
        missing = [n for n in layers if n not in model.layer_names]
        if missing:
            raise ValueError(f"joint cka: {name} has no layers {missing}; it has {model.layer_names}")
        idx = [model.layer_names.index(n) for n in layers]
        if any(model.utterance_level[i] for i in idx):
            raise ValueError(f"joint cka: {name}: utterance-level layers cannot enter frame-level CKA")
    return JointMember(name, idx, [int(model.dims[i]) for i in idx], [float(model.frame_rates[i]) for i in idx])


def pair_layers(a: JointMember, out_a: LayerOutput, b: JointMember, out_b: LayerOutput) -> tuple[list[Any], list[Any]]:
    """(hidden, lengths) of A's then B's joint layers."""
    return ([out_a.hidden[i] for i in a.indices] + [out_b.hidden[i] for i in b.indices],
            [out_a.lengths[i] for i in a.indices] + [out_b.lengths[i] for i in b.indices])


def check_sample_rates(rates: dict[str, int]) -> int:
    """The group's one sample rate; models needing different rates are refused with the rates named."""
    if len(set(rates.values())) > 1:
        raise ValueError(f"joint extraction: models need different sample rates {rates}; extract them separately")
    return next(iter(rates.values()))


def new_joint_accumulator(a: JointMember, b: JointMember, shift: Any = None, device: Any = "cpu") -> Any:
    """An empty joint FeatureCKA over A's then B's layers (A x A, B x B and A x B blocks)."""
    from layerlab.cka import FeatureCKA

    return FeatureCKA(a.dims, b.dims, mode="joint", shift=shift, device=device, frame_rates_hz=a.frame_rates_hz + b.frame_rates_hz)


def joint_name(other: str) -> str:
    """Side-output name, in model A's cache, of the joint state with group member ``other``."""
    return f"joint-{other}"


def _explicit_name(spec: str) -> str | None:
    """The NAME of a ``NAME=SPEC`` entry (text before the first ``=`` when it holds no ``:``), else None."""
    name, sep, _ = spec.partition("=")
    return name if sep and ":" not in name else None


def member_names(specs: Sequence[str]) -> list[str]:
    """Cache folder names for a group's model specs: ``NAME=SPEC`` names one; else the spec's last part (``wavlm.pt`` -> ``wavlm``).

    A given NAME must be a safe folder name (no ``.``, ``..``, separators or control characters): each
    member's cache is written to ``--out/<name>/``.
    """
    from layerlab.storage import check_name

    names = []
    for spec in specs:
        name = _explicit_name(spec)
        if name is not None:
            names.append(check_name(name, f"--model {spec!r}: NAME"))
            continue
        name = spec.rstrip("/").split(":")[-1].rsplit("/", 1)[-1].split(".")[0] or "model"
        names.append("".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"--model: two models of the group would share the cache folder {dup[0]!r}; name them NAME=SPEC")
    return names


def member_spec(spec: str) -> str:
    """The model spec of a ``NAME=SPEC`` (or plain) group entry."""
    return spec.partition("=")[2] if _explicit_name(spec) is not None else spec


def update_joint(acc: Any, a: JointMember, out_a: LayerOutput, b: JointMember, out_b: LayerOutput, float16: bool = False) -> None:
    """Add one batch that both models ran on (same utterances, same order); ``float16``: the frames tier's values."""
    layers, lengths = pair_layers(a, out_a, b, out_b)
    if float16:
        layers = [h.to(torch.float16).to(h.dtype) for h in layers]
    if len({h.shape[0] for h in layers}) != 1:
        raise ValueError(f"joint cka: {a.name} and {b.name} outputs have different batch sizes")
    acc.update(layers, lengths)
