"""Joint extraction groups: which models of a dataset run in one actor so that their pairs' frame-level CKA
comes from per-shard joint side-output states (no frames tier, no CKA read) instead of the frames tier.

A group must fit one actor: its models' weights and batches and its CKA states (each member's own
within-model state and one joint state per compared pair inside the group), by the cost model's memory
estimate (``cost.actor_memory``, states from ``state_bytes_for``). Groups are packed greedily in config
order, a model joining the group where it covers the most pairs; a pair split over two groups (or a model
whose architecture is unknown offline) reads the frames tier with the distributed per-shard reduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class MemberInfo:
    """What grouping knows of one model: its architecture, extraction settings, CKA layers and whether it keeps a within state."""

    name: str
    arch: Any  # cost_facts.Architecture
    config: dict[str, Any]
    layers: list[str] | None
    within_state: bool
    key: str  # extraction settings that must agree inside a group (batching, device, actors)


@dataclass
class JointGroup:
    """Models extracted together and the compared pairs whose frame-level CKA their joint states give."""

    members: list[str]
    pairs: list[tuple[str, str]] = field(default_factory=list)
    memory_bytes: float = 0.0


def actor_memory_bytes(members: list[MemberInfo], pairs: list[tuple[str, str]]) -> float:
    """Estimated peak memory of a group actor (the cost model's host plus device memory, the weights counted once)."""
    from layerlab.cka.feature_stats import state_bytes_for
    from layerlab.study.cost import actor_memory, joint_dims

    dims = {m.name: joint_dims(m.arch, m.layers) for m in members}
    states = sum(state_bytes_for(dims[m.name]) for m in members if m.within_state and dims[m.name])
    states += sum(state_bytes_for(dims[a], dims[b], "joint") for a, b in pairs)
    host, device = actor_memory([(m.arch, m.config) for m in members], states)
    return host + device - 4.0 * sum(m.arch.params for m in members)


def choose_groups(infos: list[MemberInfo], pairs: list[tuple[str, str]], budget_bytes: float,
                  memory: Callable[[list[MemberInfo], list[tuple[str, str]]], float] = actor_memory_bytes) -> list[JointGroup]:
    """Greedy groups of at least two models covering as many of ``pairs`` as fit ``budget_bytes`` per actor."""
    by = {m.name: m for m in infos}
    wanted = [(a, b) for a, b in pairs if a in by and b in by]
    groups: list[JointGroup] = []
    for m in infos:
        best: tuple[int, JointGroup, list[tuple[str, str]], float] | None = None
        for g in groups:
            if by[g.members[0]].key != m.key:
                continue
            new = [p for p in wanted if m.name in p and (p[0] if p[1] == m.name else p[1]) in g.members]
            if not new:
                continue
            size = memory([by[n] for n in g.members + [m.name]], g.pairs + new)
            if size <= budget_bytes and (best is None or len(new) > best[0]):
                best = (len(new), g, new, size)
        if best is not None:
            _, g, new, size = best
            g.members.append(m.name)
            g.pairs += new
            g.memory_bytes = size
        else:
            groups.append(JointGroup([m.name], [], memory([m], [])))
    return [g for g in groups if len(g.members) > 1]


def group_id(dataset: str, members: list[str]) -> str:
    """The stage id of a joint extraction group."""
    return f"extract/{dataset}/joint/{'+'.join(members)}"


def settings_key(params: dict[str, Any]) -> str:
    """The extraction settings that must agree inside a group (all but tier, CKA side-outputs and progress)."""
    from layerlab.study.fingerprint import stable_json

    return stable_json({k: v for k, v in params.items() if k not in ("tier", "cka", "progress")})
