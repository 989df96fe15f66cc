"""Typed probe configuration: training defaults (SUPERB heads, shortened schedules), search space, Tune resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# (max_epochs, patience) when not configured: an epoch of a pooled probe is a few milliseconds of in-memory
# matrices, one of a frames probe is a pass over the frames tier
TIER_EPOCHS = {"pooled": (300, 30), "frames": (60, 10)}


class SearchSpace(BaseModel):
    """What a sweep samples: learning rate log-uniform (as SUPERB searched it), weight decay and head width choices."""

    model_config = ConfigDict(extra="forbid")
    lr: tuple[float, float] = Field((1e-4, 3e-2), description="log-uniform learning-rate range")
    weight_decay: list[float] = Field(default_factory=lambda: [0.0, 1e-4], min_length=1)
    hidden: list[int] = Field(default_factory=lambda: [256], min_length=1, description="head width choices")

    @model_validator(mode="after")
    def _ordered(self) -> SearchSpace:
        if not 0 < self.lr[0] <= self.lr[1]:
            raise ValueError(f"search.lr must be (low, high) with 0 < low <= high, got {self.lr}")
        return self


class ASVConfig(BaseModel):
    """x-vector head and AM-softmax settings (SUPERB: 512/512/1500/512, s=30, m=0.4), minDCF prior."""

    model_config = ConfigDict(extra="forbid")
    proj: int = Field(512, ge=1)
    tdnn: int = Field(512, ge=1)
    agg: int = Field(1500, ge=1)
    embed: int = Field(512, ge=1)
    scale: float = Field(30.0, gt=0)
    margin: float = Field(0.4, ge=0)
    p_target: float = Field(0.01, gt=0, lt=1)
    dev_speaker_fraction: float = Field(0.2, gt=0, lt=1, description="training speakers held out for dev trials")
    crop_seconds: float = Field(8.0, gt=0, description="random training crop in seconds (SUPERB: 8 s); frames follow the "
                                                        "layers' common timeline (8 s = 800 frames at 100 Hz, 400 at 50 Hz)")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "crop_frames" in data:
            raise ValueError("asv.crop_frames was removed: use asv.crop_seconds (a crop in frames meant a different duration "
                             "at each frame rate)")
        return data


class ASRConfig(BaseModel):
    """ASR head sizes (SUPERB ``downstream/asr``: projector 1024, 2 BLSTM layers of 1024 per direction, dropout 0.2)."""

    model_config = ConfigDict(extra="forbid")
    project: int = Field(1024, ge=1, description="width of the linear projector before the BLSTM")
    hidden: int = Field(1024, ge=1, description="LSTM units per direction")
    layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class ProbeConfig(BaseModel):
    """Everything a probe run can change; ``layerlab probe --config x.yaml`` loads it (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-3, gt=0, description="learning rate when not swept (Adam)")
    weight_decay: float = Field(0.0, ge=0)
    hidden: int = Field(256, ge=1, description="projector width of the SUPERB heads")
    batch_size: int = Field(32, ge=1)
    max_epochs: int | None = Field(None, ge=1, description="epoch cap; None: the task's own (pooled utterance probes "
                                                             "300, frame probes 60)")
    patience: int | None = Field(None, ge=1, description="epochs without dev improvement before early stopping; None: the task's own "
                                                         "(pooled 30, frames 10)")
    lr_schedule: Literal["plateau", "constant"] = Field("plateau", description="plateau: halve the learning rate after "
                                                                              "patience/2 epochs without dev improvement (to min_lr_factor)")
    min_lr_factor: float = Field(0.01, gt=0, le=1, description="the plateau schedule never goes below lr * this")
    loss_tie_min_delta: float = Field(1e-3, ge=0, description="an epoch whose mean dev loss is this much (nats per utterance) "
                                                              "below the lowest so far resets patience; on a tied dev metric it also "
                                                              "becomes the best state")
    layer_weights_lr_factor: float = Field(10.0, gt=0, description="learning rate multiplier of the weighted sum's softmax logits "
                                                                  "(scale-free O(1) parameters; s3prl: 1)")
    pooled_lr_factor: float = Field(1.0, gt=0, description="learning rate multiplier for probes trained on the pooled tier")
    grad_clip: float = Field(1.0, gt=0)
    normalize: Literal["auto", "scale", "layer_norm", "none"] = Field(
        "auto", description="per-layer normalisation before the weighted sum: auto (layer_norm for the frame-by-frame "
                            "heads: PR, ASR; scale for pooled utterance probes and ASV's statistics pooling), scale (divide by the layer's RMS over "
                            "the training split; keeps the pooled tier exact), layer_norm (per frame; forces the frames tier), "
                            "none (SUPERB's default); true/false are read as layer_norm/none")
    tier: Literal["auto", "pooled", "frames"] = Field("auto", description="auto: pooled for utterance heads")
    shuffle_buffer: int = Field(64, ge=1, description="utterances held in the frames shuffle buffer")
    frames_memory_mb: float = Field(1024, ge=0, description="keep a split's decoded frames in each trial's memory across epochs "
                                                           "when they fit in this many MiB (0: decode the frames tier every epoch)")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    split_seed: int = Field(0, ge=0, description="seed of derived splits (recorded in the results)")
    derived_dev_fraction: float = Field(0.15, gt=0, lt=0.5)
    derived_test_fraction: float = Field(0.2, gt=0, lt=0.5)
    ignore_dataset_split: bool = Field(False, description="derive a seeded split even when the dataset gives one (recorded)")
    drop_unseen_labels: bool = Field(False, description="drop (and count) dev/test utterances whose label never occurs in train "
                                                        "instead of refusing the task")
    derived_split: Literal["auto", "speaker", "stratified"] = Field(
        "auto", description="how a derived split assigns utterances: speaker (whole speakers per split, no speaker in two), "
                            "stratified (each label's utterances spread over the splits; speakers mixed), auto (speaker for "
                            "PR/ASR/ASV, stratified for utterance classification)")
    test_fold: str | None = Field(None, description="run only this fold as test when a task's splits are folds; default: every "
                                                    "fold in turn, reporting each and their mean (leave-one-session-out ER)")
    max_train_utterances: int | None = Field(None, ge=1, description="train on at most this many utterances of the train split "
                                             "(seeded, speaker-balanced; recorded in the split notes): a cheaper probe on a laptop")
    max_dev_utterances: int | None = Field(None, ge=1, description="evaluate dev on at most this many utterances of the dev split "
                                           "(seeded, speaker-balanced): early stopping and trial selection at a bounded cost")
    eval_speakers: list[str] | None = Field(None, description="speakers allowed in dev/test (a study's evaluation speakers, never "
                                            "seen by its upstream training): derived dev/test draw from them only, given dev/test "
                                            "utterances of other speakers are dropped (counted); None = any speaker")
    intervals: bool = Field(True, description="confidence intervals (leave-one-speaker-out jackknife) on metrics")
    ci_level: float = Field(0.95, gt=0, lt=1)
    asv: ASVConfig = Field(default_factory=ASVConfig)
    asr: ASRConfig = Field(default_factory=ASRConfig)
    search: SearchSpace = Field(default_factory=SearchSpace)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.25, ge=0, le=1, description="used only when the cluster has GPUs")
    max_concurrent_trials: int | None = Field(None, ge=1)
    asha_grace_period: int = Field(3, ge=1, description="epochs before ASHA may stop a trial")
    asha_reduction_factor: int = Field(2, ge=2)
    report_interval_s: float = Field(2.0, ge=0, description="least seconds between a trial's Tune reports (the last epoch always reports)")

    @field_validator("normalize", mode="before")
    @classmethod
    def _old_booleans(cls, value: object) -> object:
        return {True: "layer_norm", False: "none"}.get(value, value) if isinstance(value, bool) else value

    def for_tier(self, reads_frames: bool) -> ProbeConfig:
        """This config with ``normalize: auto`` resolved: layer_norm for a frame-by-frame head, scale otherwise (pooled heads).

        Measured on the demo's GE2E cache (PR weighted sum, test PER): layer_norm 57.3 %, scale 86.5 %, none 88.2 %; the
        best single layer reaches about 55 %. Per-frame layer norm costs nothing extra where frames are read anyway, and
        a per-layer scalar keeps the pooled shortcut exact where they are not.
        """
        if self.normalize != "auto":
            return self
        return self.model_copy(update={"normalize": "layer_norm" if reads_frames else "scale"})

    def epochs_for(self, tier: str) -> tuple[int, int]:
        """(max_epochs, patience) of a probe trained on ``tier``: the configured values, else the tier's defaults."""
        default = TIER_EPOCHS.get(tier, TIER_EPOCHS["frames"])
        max_epochs = self.max_epochs or default[0]
        return max_epochs, min(self.patience or default[1], max_epochs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ProbeConfig:
        """Load a YAML file of the fields above through the project's one config loader (errors name the file)."""
        from layerlab.config import load_config

        return load_config(cls, str(path))
