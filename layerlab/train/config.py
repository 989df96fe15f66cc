"""Typed training configs (one per recipe), loaded from YAML in one place; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RecipeName = Literal["supervised", "dino", "hubert"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RayConfig(_Strict):
    """Ray Train scaling: CPU workers locally, DDP over GPU workers on a cluster."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL); False = CPU workers (gloo)")
    cpus_per_worker: float = Field(2.0, gt=0, description="CPUs reserved per worker; also its torch thread count")


class AugmentConfig(_Strict):
    """Additive noise and reverberation applied to each training crop independently."""

    prob: float = Field(0.6, ge=0, le=1, description="probability that a crop is augmented at all")
    noise_dir: str | None = Field(None, description="folder (any URL) of MUSAN-style noise files; None = coloured noise")
    rir_dir: str | None = Field(None, description="folder (any URL) of room impulse responses; None = synthetic RIRs")
    snr_db: tuple[float, float] = (0.0, 15.0)
    reverb_prob: float = Field(0.5, ge=0, le=1, description="of augmented crops, the share reverberated (rest get noise)")
    rt60_s: tuple[float, float] = (0.2, 0.8)
    colours: list[Literal["white", "pink", "brown"]] = Field(default_factory=lambda: ["white", "pink", "brown"])


class EcapaConfig(_Strict):
    """speechbrain ECAPA_TDNN kwargs (the layerlab-ecapa-v1 checkpoint config)."""

    n_mels: int = 80
    channels: list[int] = Field(default_factory=lambda: [512, 512, 512, 512, 1536])
    kernel_sizes: list[int] = Field(default_factory=lambda: [5, 3, 3, 3, 1])
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 1])
    attention_channels: int = 128
    res2net_scale: int = 8
    se_channels: int = 128
    lin_neurons: int = 192

    def kwargs(self) -> dict:
        """The checkpoint config dict."""
        return self.model_dump()


class TrainConfig(_Strict):
    """What every recipe shares: schedule, data, checkpoints, evaluation, Ray scaling."""

    epochs: int = Field(10, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="None = one pass over the training utterances")
    batch_size: int = Field(32, ge=2, description="utterances per step per worker")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(2e-6, ge=0)
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine decay ends at lr * this")
    grad_clip: float | None = Field(5.0, gt=0)
    seed: int = 0
    checkpoint_every_steps: int | None = Field(None, ge=1, description="extra checkpoints inside an epoch")
    keep_checkpoints: int = Field(2, ge=1)
    short_audio: Literal["pad", "skip"] = Field("pad", description="utterances shorter than a crop: pad with zeros (counted) or skip (counted)")
    min_seconds: float = Field(0.5, gt=0, description="utterances shorter than this are always skipped (counted)")
    eval_max_utterances: int | None = Field(None, ge=2, description="cap on utterances embedded for the per-epoch evaluation")
    exclude_speakers: list[str] | dict[str, list[str]] | None = Field(
        None, description="speakers kept out of training (a list, or reason -> list); None = every speaker in some task's dev/test "
                          "split of the corpus. The held-out ASV speakers are always excluded. A study sets it to its probes' dev/test speakers")
    ray: RayConfig = Field(default_factory=RayConfig)


class SupervisedConfig(TrainConfig):
    """Supervised ECAPA-TDNN with AAM-softmax (speechbrain's VoxCeleb recipe)."""

    recipe: Literal["supervised"] = "supervised"
    model: EcapaConfig = Field(default_factory=EcapaConfig)
    crop_seconds: tuple[float, float] = Field((2.0, 3.0), description="random crop length range (s), one per batch")
    margin: float = Field(0.2, ge=0, description="AAM additive angular margin")
    margin_warmup: tuple[float, float] = Field((0.0, 0.0), description="margin ramps 0 -> margin between these fractions of training (wespeaker's margin scheduler); (0, 0) = fixed")
    scale: float = Field(30.0, gt=0, description="AAM logit scale")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class DinoHeadConfig(_Strict):
    """DINO projection head: MLP (hidden, BN, GELU) -> bottleneck -> L2 -> weight-normed out layer."""

    layers: int = Field(3, ge=1)
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    out_dim: int = 65536
    use_bn: bool = True


class DinoConfig(TrainConfig):
    """DINO speaker SSL on ECAPA-TDNN (wespeaker / 3D-Speaker recipe); speaker labels never read."""

    recipe: Literal["dino"] = "dino"
    model: EcapaConfig = Field(default_factory=EcapaConfig)
    head: DinoHeadConfig = Field(default_factory=DinoHeadConfig)
    global_crops: int = Field(2, ge=1)
    global_seconds: tuple[float, float] = (3.0, 4.0)
    local_crops: int = Field(4, ge=0)
    local_seconds: float = 2.0
    disjoint_crops: bool = Field(False, description="place an utterance's crops on non-overlapping stretches when it is long enough (short corpora: overlapping crops let the views match on shared audio)")
    student_temp: float = 0.1
    teacher_temp: tuple[float, float] = Field((0.04, 0.07), description="warm-up start -> final teacher temperature")
    teacher_temp_warmup_ratio: float = Field(0.2, ge=0, le=1, description="share of epochs for the temperature warm-up")
    center_momentum: float = 0.9
    reg_weight: float = Field(0.0, ge=0, description="RDINO (3D-Speaker) variance/covariance regulariser on the student's global-crop embeddings (std 10, cov 1; RDINO: 0.2); 0 = plain DINO")
    teacher_momentum: float = Field(0.996, ge=0, le=1, description="EMA start; cosine schedule to 1")
    freeze_last_layer_epochs: int = Field(1, ge=0, description="the head's last layer gets no gradient in these first epochs")
    freeze_last_layer_steps: int | None = Field(None, ge=0, description="the same in optimiser steps; set, it replaces freeze_last_layer_epochs (short runs)")
    lr: float = Field(0.2, gt=0, description="base lr for batch 256 (scaled by global batch / 256)")
    weight_decay: float = 5e-5
    grad_clip: float | None = 3.0
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (the recipes' choice) or adamw (learns faster in short CPU runs)")
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig(prob=1.0))


class HubertModelConfig(_Strict):
    """s3prl HubertConfig fields (conv stride product must stay 320: 50 Hz frames)."""

    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    conv_feature_layers: str = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    final_dim: int = 256
    conv_pos: int = 128
    conv_pos_groups: int = 16
    extractor_mode: Literal["default", "layer_norm"] = "default"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.05
    dropout_input: float = 0.1
    dropout_features: float = 0.1
    feature_grad_mult: float = 0.1
    mask_prob: float = 0.8
    mask_length: int = 10
    logit_temp: float = 0.1


class HubertTrainConfig(TrainConfig):
    """HuBERT-style masked prediction of k-means cluster ids (iteration 1: MFCC; 2: a model layer)."""

    recipe: Literal["hubert"] = "hubert"
    model: HubertModelConfig = Field(default_factory=HubertModelConfig)
    crop_seconds: tuple[float, float] = Field((2.0, 4.0), description="random crop length range (s)")
    clusters: int = Field(100, ge=2, description="k-means clusters (targets)")
    kmeans_frames: int = Field(100_000, ge=100, description="frames sampled to fit k-means")
    kmeans_iters: int = Field(20, ge=1)
    targets: Literal["mfcc", "layer"] = Field("mfcc", description="iteration 1: MFCC k-means; iteration 2: k-means on a model layer")
    teacher: str | None = Field(None, description="model spec whose layer feeds k-means when targets=layer (e.g. ckpt:run1/checkpoint.pt)")
    teacher_layer: str | None = Field(None, description="layer name of the teacher (default: its middle layer)")
    lr: float = 5e-4
    weight_decay: float = 0.01
    grad_clip: float | None = 10.0
    features_pen_weight: float = 10.0
    unmasked_weight: float = Field(0.0, ge=0, description="loss weight of the unmasked frames' predictions (fairseq's pred_nomask_weight; HuBERT Base: 0)")
    eval_utterances: int = Field(64, ge=4, description="held-out utterances scored for masked-prediction accuracy")

    @model_validator(mode="after")
    def _teacher(self) -> HubertTrainConfig:
        if self.targets == "layer" and not self.teacher:
            raise ValueError("targets=layer needs a teacher model spec (iteration 2 clusters a layer of iteration 1)")
        return self


CONFIGS: dict[str, type[TrainConfig]] = {"supervised": SupervisedConfig, "dino": DinoConfig, "hubert": HubertTrainConfig}


def load_config(recipe: str, source: str | Path | BaseModel | dict | None = None) -> TrainConfig:
    """The recipe's typed config from a YAML file (any URL), a dict, a config object, or defaults."""
    if recipe not in CONFIGS:
        raise ValueError(f"unknown recipe {recipe!r} (allowed: {', '.join(CONFIGS)})")
    cls = CONFIGS[recipe]
    if source is None:
        return cls()
    if isinstance(source, BaseModel):
        if not isinstance(source, cls):
            raise ValueError(f"recipe {recipe!r} needs a {cls.__name__}, got {type(source).__name__}")
        return source
    where = "config"
    if isinstance(source, (str, Path)):
        from layerlab.config import read_yaml

        where = str(source)
        source = read_yaml(where)
    if not isinstance(source, dict):
        raise ValueError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(source).__name__}")
    found = source.get("recipe", recipe)
    if found != recipe:
        raise ValueError(f"{where}: config is for recipe {found!r}, not {recipe!r}")
    try:
        return cls.model_validate(source)
    except ValidationError as exc:  # one line: the file, the key path, what is wrong and what is allowed
        from layerlab.config import ConfigError, format_validation

        raise ConfigError(format_validation(where, exc, cls)) from None
