"""Typed configuration of an extraction run (no Ray, no torch: cheap to import and validate)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tier = Literal["pooled", "frames", "both"]
Mode = Literal["auto", "bucketed", "padded", "unbatched"]


class CKASideOutput(BaseModel):
    """One CKA partial state per shard for a layer selection, so a comparison never needs the frames tier."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("all", pattern=r"^[A-Za-z0-9_.-]+$", description="folder name under <cache>/cka/")
    layers: list[str] | None = Field(None, description="layer names; None = every frame-level layer")
    estimator: Literal["feature", "minibatch"] = "feature"
    minibatch_size: int = Field(1024, ge=4)
    pilot_utterances: int = Field(8, ge=1, description="pilot utterances, drawn across shards, whose mean frame is the shared shift")
    seed: int = 0


class ExtractConfig(BaseModel):
    """Everything that shapes an extraction run besides the model spec and the two URLs."""

    model_config = ConfigDict(extra="forbid")

    tier: Tier = "pooled"
    concurrency: tuple[int, int] = Field((1, 1), description="(min, max) model actors")
    batch_seconds: float = Field(40.0, gt=0, description="max padded audio seconds per model call")
    bucket_window_seconds: float = Field(600.0, gt=0, description="audio decoded ahead and bucketed together")
    max_batch_size: int = Field(64, ge=1)
    mode: Mode = "auto"
    device: Literal["auto", "cuda", "cpu"] | None = Field(
        None, description="where actors run: cuda (request GPUs), cpu, or auto/None (GPU when the cluster has or can get GPUs)")
    num_gpus_per_actor: float = Field(1.0, ge=0, description="GPUs each actor requests when actors run on GPUs")
    num_cpus_per_actor: float | None = Field(None, gt=0, description="None = 1 with GPUs, else CPUs / max actors")
    placement_timeout_s: float = Field(
        600.0, gt=0, description="stop with an error when no actor could be placed for this long (the demand is never met)")
    task_retries: int = Field(4, ge=0, description="re-runs of a shard whose actor died")
    tasks_per_actor: int = Field(2, ge=1, le=4, description="shards in flight per actor: while one runs the model, the next "
                                 "decodes ahead and the last publishes its files (1 = strictly one shard at a time)")
    row_group_mb: float = Field(32.0, gt=0)
    write_behind: bool = Field(True, description="encode and write tier files in a background thread (at most two row groups queued)")
    compression: Literal["zstd", "lz4", "snappy", "none"] = "zstd"
    cka: list[CKASideOutput] = Field(default_factory=list)
    frames_select: dict[str, tuple[float, float] | None] | None = Field(
        None, description="frames tier only for these utterance ids, each whole (null) or a crop [start_s, seconds] "
        "(layerlab.data.selection.FramesSelection; a study sets it from the probes' and CKA's needs); None: every utterance")
    side_output_dtype: Literal["float32", "float16"] = Field(
        "float32", description="values CKA side-outputs see: float32 activations, or float16 as the frames tier stores them "
        "(then a side-output equals CKA computed from the frames tier up to float64 rounding)")
    pilot_shards: int = Field(8, ge=1, description="source shards (a seeded sample) the pilot utterances for the shared shift are drawn from")
    max_shards: int | None = Field(None, ge=0, description="stop after this many new shards (partial runs)")
    overwrite: bool = Field(False, description="discard an existing cache at the output URL")
    env_vars: dict[str, str] = Field(default_factory=dict, description="extra env vars for the actors")
    progress: bool = True
    verify: bool = Field(True, description="check size and SHA-256 of source shards and of finished cache shards on resume")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: object) -> object:
        if isinstance(value, int):
            return (value, value)
        if isinstance(value, str):
            parts = [int(p) for p in value.replace(",", " ").split()]
            return (parts[0], parts[-1])
        return value

    @model_validator(mode="after")
    def _check(self) -> "ExtractConfig":
        lo, hi = self.concurrency
        if lo < 1 or hi < lo:
            raise ValueError(f"concurrency: need 1 <= min <= max, got {self.concurrency}")
        names = [c.name for c in self.cka]
        if len(set(names)) != len(names):
            raise ValueError(f"cka: side-output names must be unique, got {names}")
        return self

    @property
    def tiers(self) -> list[str]:
        """The tiers written, in canonical order."""
        return ["pooled", "frames"] if self.tier == "both" else [self.tier]


def resolve_mode(mode: str, padding_invariant: bool) -> str:
    """``auto`` -> ``bucketed`` for padding-invariant models, ``unbatched`` for padding-sensitive ones."""
    if mode == "auto":
        return "bucketed" if padding_invariant else "unbatched"
    return mode
