"""Joint extraction groups: which models of a dataset run in one actor so that their pairs' frame-level CKA
comes from per-shard joint side-output states (no frames tier, no CKA read) instead of the frames tier.

A group must fit one actor's memory: its models' weights, a batch of activations, and its CKA states
(each member's own within-model state and one joint state per compared pair inside the group, exact
sizes from ``FeatureCKA.state_bytes``), held for the shards an actor has in flight plus the one it
publishes. Groups are packed greedily in config order, a model joining the group where it covers the
most pairs; a pair split over two groups (or a model whose geometry is unknown offline, e.g. trained in
the study) reads the frames tier with the distributed per-shard reduction instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

#: fixed cost of one actor process (interpreter, torch, Ray worker)
PROCESS_BYTES = 800 * 2**20
#: activations held per frame and layer dim during a batch, in bytes: float32 outputs, their float64 copy for
#: the CKA update and the model's own intermediate tensors (feed-forward and attention), a rough multiple
ACTIVATION_BYTES_PER_DIM = 4 + 8 + 16


def feature_state_bytes(dims_a: list[int], dims_b: list[int] | None = None) -> int:
    """Bytes of a FeatureCKA state (within layout, or joint over A then B), exactly as the accumulator allocates."""
    from layerlab.cka import FeatureCKA

    acc = FeatureCKA(dims_a, dims_b or None, mode="joint" if dims_b else "within", device="meta")
    return int(acc.state_bytes())


@dataclass
class MemberInfo:
    """What grouping knows of one model: frame-level CKA layer dims and rates, parameters, whether it keeps a within state."""

    name: str
    dims: list[int]
    rates: list[float]
    num_parameters: int
    within_state: bool
    key: str  # extraction settings that must agree inside a group (batching, device, actors)


@dataclass
class JointGroup:
    """Models extracted together and the compared pairs whose frame-level CKA their joint states give."""

    members: list[str]
    pairs: list[tuple[str, str]] = field(default_factory=list)
    memory_bytes: int = 0


def actor_memory_bytes(members: list[MemberInfo], pairs: list[tuple[str, str]], batch_seconds: float, in_flight: int) -> int:
    """Estimated peak memory of a group actor (see the module doc)."""
    by = {m.name: m for m in members}
    states = sum(feature_state_bytes(m.dims) for m in members if m.within_state)
    states += sum(feature_state_bytes(by[a].dims, by[b].dims) for a, b in pairs)
    weights = 4 * sum(m.num_parameters for m in members)
    frames = batch_seconds * sum(sum(r * d for r, d in zip(m.rates, m.dims)) for m in members)
    return int(PROCESS_BYTES + weights + (in_flight + 1) * states + ACTIVATION_BYTES_PER_DIM * frames)


def choose_groups(infos: list[MemberInfo], pairs: list[tuple[str, str]], budget_bytes: float, batch_seconds: float, in_flight: int,
                  memory: Callable[..., int] = actor_memory_bytes) -> list[JointGroup]:
    """Greedy groups of at least two models covering as many of ``pairs`` as fit ``budget_bytes`` per actor."""
    by = {m.name: m for m in infos}
    wanted = [(a, b) for a, b in pairs if a in by and b in by]
    groups: list[JointGroup] = []
    for m in infos:
        best: tuple[int, JointGroup, list[tuple[str, str]], int] | None = None
        for g in groups:
            if by[g.members[0]].key != m.key:
                continue
            new = [p for p in wanted if m.name in p and (p[0] if p[1] == m.name else p[1]) in g.members]
            if not new:
                continue
            size = memory([by[n] for n in g.members + [m.name]], g.pairs + new, batch_seconds, in_flight)
            if size <= budget_bytes and (best is None or len(new) > best[0]):
                best = (len(new), g, new, size)
        if best is not None:
            _, g, new, size = best
            g.members.append(m.name)
            g.pairs += new
            g.memory_bytes = size
        else:
            groups.append(JointGroup([m.name], [], memory([m], [], batch_seconds, in_flight)))
    return [g for g in groups if len(g.members) > 1]


def group_id(dataset: str, members: list[str]) -> str:
    """The stage id of a joint extraction group."""
    return f"extract/{dataset}/joint/{'+'.join(members)}"


def settings_key(params: dict[str, Any]) -> str:
    """The extraction settings that must agree inside a group (all but tier, CKA side-outputs and progress)."""
    from layerlab.study.fingerprint import stable_json

    return stable_json({k: v for k, v in params.items() if k not in ("tier", "cka", "progress")})
