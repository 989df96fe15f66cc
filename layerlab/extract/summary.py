"""The final summary of an extraction run (printed by the CLI and the job script)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExtractSummary(BaseModel):
    """Counts, sizes and speeds of one run; ``ok`` is False when a shard failed."""

    out_url: str
    model_spec: str
    mode: str
    tiers: list[str]
    shards_total: int
    shards_written: int
    shards_skipped: int
    shards_failed: dict[str, str] = Field(default_factory=dict)
    complete: bool
    utterances: int = Field(0, description="utterances written by this run")
    audio_seconds: float = Field(0.0, description="audio written by this run")
    cache_utterances: int = 0
    quarantined_source: int = 0
    quarantined_model: int = 0
    retried_alone: int = 0
    tier_bytes: dict[str, int] = Field(default_factory=dict)
    actors_started: int = 0
    wall_seconds: float = 0.0
    model_seconds: float = 0.0
    shard_seconds: float = Field(0.0, description="actor busy time: per actor, the union of its shard tasks' intervals, summed")
    actor_peak_rss_mb: float = 0.0
    actor_cpu_seconds: float = Field(0.0, description="CPU seconds of the actor processes (all threads) from their first task's start to their last task's end")
    step_seconds: dict[str, float] = Field(default_factory=dict, description="per-step seconds of the shard tasks, summed over shards "
                                           "(model_loop, features, cka, write, finish, writer_wait, writer_thread_cpu): where actor time goes")
    cka_results: dict[str, list[list[float]]] = Field(default_factory=dict)
    written_shards: list[str] = Field(default_factory=list)
    actor_rule: str = Field("", description="why actors got GPUs or not (--device and the autoscaler)")
    actor_resources: dict[str, float] = Field(default_factory=dict, description="Ray resources of one actor")
    actors_by_node: dict[str, dict[str, int]] = Field(default_factory=dict, description="node IP -> {gpu|cpu: actors that ran}")
    actor_events: list[dict] = Field(default_factory=list, description="requested/up/released over time (seconds)")
    actor_usage: list[dict] = Field(default_factory=list, description="per actor process: node, CPU s and wall s since it was "
                                    "created (model loading included), GPU s held, peak RSS (layerlab.usage units)")

    @property
    def ok(self) -> bool:
        """No shard failed."""
        return not self.shards_failed

    def render(self) -> str:
        """Human-readable multi-line summary."""
        rate = self.utterances / self.wall_seconds if self.wall_seconds > 0 else 0.0
        hours = self.audio_seconds / 3600
        lines = [
            f"cache: {self.out_url}  ({'complete' if self.complete else 'INCOMPLETE'})",
            f"model: {self.model_spec}  mode: {self.mode}  tiers: {', '.join(self.tiers)}",
            f"shards: {self.shards_written} written, {self.shards_skipped} already done, {len(self.shards_failed)} failed, of {self.shards_total}",
            f"this run: {self.utterances} utterances, {hours:.4f} h audio in {self.wall_seconds:.1f} s "
            f"({rate:.1f} utt/s, {hours / max(self.wall_seconds, 1e-9):.5f} audio-h/s) on {self.actors_started} actor(s)",
            f"cache: {self.cache_utterances} utterances; quarantined: {self.quarantined_source} at source, {self.quarantined_model} in the model"
            + (f" ({self.retried_alone} utterances rerun alone)" if self.retried_alone else ""),
        ]
        if self.actor_rule:
            lines.append(f"actors: {self.actor_resources} each, because {self.actor_rule}")
        for node, kinds in self.actors_by_node.items():
            lines.append(f"  node {node}: " + ", ".join(f"{n} {k.upper()} actor(s)" for k, n in sorted(kinds.items())))
        if self.shard_seconds > 0:
            steps = ", ".join(f"{k} {v:.1f}" for k, v in self.step_seconds.items() if k in ("model_loop", "features", "cka", "write", "finish", "writer_thread_cpu"))
            lines.append(f"actor busy {self.shard_seconds:.1f} s, of which model calls with their checks, pooling and CKA {self.model_seconds:.1f} s; per step (s): {steps}")
        for tier, size in self.tier_bytes.items():
            lines.append(f"{tier} tier: {size / 1e6:.2f} MB")
        for name, reason in self.shards_failed.items():
            lines.append(f"FAILED {name}: {reason}")
        for name in self.cka_results:
            lines.append(f"cka side-output {name!r}: merged matrix in cka/{name}/merged.npz")
        return "\n".join(lines)


def cpu_seconds(spans: list[tuple[float, float, float]]) -> float:
    """Per actor (first field: its pid), its process CPU from the earliest task start to the latest task end, summed."""
    total = 0.0
    for pid in {s[0] for s in spans}:
        mine = [s for s in spans if s[0] == pid]
        total += max(s[2] for s in mine) - min(s[1] for s in mine)
    return total


def busy_seconds(intervals: list[tuple[float, float, float]]) -> float:
    """Per actor (first field: its pid), the length of the union of ``(start, end)`` intervals, summed over actors."""
    total = 0.0
    for pid in {i[0] for i in intervals}:
        end = float("-inf")
        for _, a, b in sorted(i for i in intervals if i[0] == pid):
            total += max(0.0, b - max(a, end))
            end = max(end, b)
    return total


class ShardCost(BaseModel):
    """Time and memory of one shard of a joint extraction (what sizing a cluster run needs)."""

    shard: str
    wall_seconds: float
    model_seconds: dict[str, float]
    joint_seconds: float
    joint_state_mb: float
    actor_peak_rss_mb: float


class JointSummary(BaseModel):
    """A joint extraction: one summary per member cache, the joint states written, per-shard cost."""

    out_url: str
    members: dict[str, ExtractSummary]
    joint: list[str] = Field(default_factory=list, description="joint side-outputs written, as '<A cache>/cka/joint-<B>'")
    shards: list[ShardCost] = Field(default_factory=list)
    wall_seconds: float = 0.0
    actor_usage: list[dict] = Field(default_factory=list, description="per group actor process: layerlab.usage units")

    @property
    def ok(self) -> bool:
        """No shard failed."""
        return all(s.ok for s in self.members.values())

    def render(self) -> str:
        """Every member's summary, the joint states, and per-shard time and memory."""
        lines = [f"joint extraction: {self.out_url}  ({len(self.members)} models, one actor each group, {self.wall_seconds:.1f} s)"]
        for name, s in self.members.items():
            lines += [f"--- {name}"] + ["  " + ln for ln in s.render().splitlines()]
        lines += [f"joint CKA state: {j}" for j in self.joint]
        if self.shards:
            lines.append("per shard: wall s | model s per member | joint-CKA s | joint state MB | actor peak RSS MB")
            for c in self.shards:
                models = ", ".join(f"{n} {t:.2f}" for n, t in c.model_seconds.items())
                lines.append(f"  {c.shard}: {c.wall_seconds:.2f} | {models} | {c.joint_seconds:.2f} | {c.joint_state_mb:.2f} | {c.actor_peak_rss_mb:.0f}")
        return "\n".join(lines)
