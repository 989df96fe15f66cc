"""Tiny random checkpoints in every real format the zoo loads, so each adapter's loading path runs offline.

Used by the model tests, the extraction tests and the offline demo. Also offers realistic-size
configs (WavLM Base, ECAPA c1024) for speed benchmarks with random weights. Every builder is
deterministic given ``seed``, writes through the format writers in ``layerlab.models.formats`` (so
each file carries its ``format`` field, exactly as trained checkpoints do) and returns the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# conv stack with the real 320x stride (5*2*2*2*2*2*2) but narrow channels
TINY_CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"
BASE_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"

TINY_ECAPA: dict[str, Any] = {
    "n_mels": 80,
    "channels": [32, 32, 32, 32, 96],
    "kernel_sizes": [5, 3, 3, 3, 1],
    "dilations": [1, 2, 3, 4, 1],
    "attention_channels": 16,
    "res2net_scale": 4,
    "se_channels": 16,
    "lin_neurons": 24,
}
ECAPA_C1024: dict[str, Any] = {"n_mels": 80, "channels": [1024, 1024, 1024, 1024, 3072], "lin_neurons": 192}


def _randomize_norm_stats(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorm layers non-trivial running statistics (a fresh model has mean 0 / var 1)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))


def wavlm_cfg(size: str = "tiny", extractor_mode: str = "default", normalize: bool = False) -> dict[str, Any]:
    """s3prl WavLMConfig dict: ``tiny`` (2 layers x 32), ``base`` (WavLM Base: 12 x 768) or ``large`` (WavLM Large: 24 x 1024).

    ``large`` is s3prl's wavlm_large shape; its checkpoint uses ``extractor_mode="layer_norm"`` and a normalised waveform.
    """
    common = dict(
        extractor_mode=extractor_mode, normalize=normalize, relative_position_embedding=True, gru_rel_pos=True,
        encoder_layerdrop=0.0, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, conv_bias=False,
        layer_norm_first=extractor_mode == "layer_norm",
    )
    if size == "tiny":
        return dict(common, encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                    encoder_attention_heads=2, conv_feature_layers=TINY_CONV, conv_pos=16, conv_pos_groups=4,
                    num_buckets=32, max_distance=64)
    if size == "base":
        return dict(common, encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
                    encoder_attention_heads=12, conv_feature_layers=BASE_CONV, conv_pos=128, conv_pos_groups=16,
                    num_buckets=320, max_distance=800)
    if size == "large":
        return dict(common, encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096,
                    encoder_attention_heads=16, conv_feature_layers=BASE_CONV, conv_pos=128, conv_pos_groups=16,
                    num_buckets=320, max_distance=800)
    raise ValueError(f"unknown size {size!r} (tiny, base or large)")


def build_s3prl_wavlm(path: str | Path, seed: int = 0, size: str = "tiny", extractor_mode: str = "default",
                      normalize: bool = False) -> Path:
    """Write an s3prl WavLM checkpoint ``{"cfg": dict, "model": state_dict}`` with random weights."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    from layerlab.models.formats import s3prl_wavlm

    torch.manual_seed(seed)
    cfg = wavlm_cfg(size, extractor_mode, normalize)
    model = WavLM(WavLMConfig(cfg))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s3prl_wavlm.write(str(path), cfg, model.state_dict())
    return path


def hubert_cfgs(size: str = "tiny", extractor_mode: str = "default", normalize: bool = False) -> tuple[dict, dict]:
    """(task_cfg, model_cfg) dicts of s3prl's converted HuBERT format."""
    task_cfg = {"label_rate": 50.0, "sample_rate": 16000, "normalize": normalize}
    model_cfg: dict[str, Any] = dict(
        label_rate=50.0, extractor_mode=extractor_mode, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, encoder_layerdrop=0.0, layer_norm_first=extractor_mode == "layer_norm",
    )
    if size == "tiny":
        model_cfg.update(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                         final_dim=16, conv_feature_layers=TINY_CONV, conv_pos=16, conv_pos_groups=4)
    elif size == "base":
        model_cfg.update(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
                         encoder_attention_heads=12, final_dim=256, conv_feature_layers=BASE_CONV, conv_pos=128,
                         conv_pos_groups=16)
    elif size == "large":  # hubert_large_ll60k's shape
        model_cfg.update(encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096,
                         encoder_attention_heads=16, final_dim=768, conv_feature_layers=BASE_CONV, conv_pos=128,
                         conv_pos_groups=16)
    else:
        raise ValueError(f"unknown size {size!r} (tiny, base or large)")
    return task_cfg, model_cfg


def build_s3prl_hubert(path: str | Path, seed: int = 0, size: str = "tiny", extractor_mode: str = "default",
                       normalize: bool = False) -> Path:
    """Write an s3prl *converted* HuBERT checkpoint (task_cfg, model_cfg, model_weight, dictionaries_symbols)."""
    from s3prl.upstream.hubert.hubert_model import (
        HubertConfig,
        HubertModel,
        HubertPretrainingConfig,
    )
    from s3prl.upstream.utils import merge_with_parent

    from layerlab.models.formats import s3prl_hubert

    torch.manual_seed(seed)
    task_cfg, model_cfg = hubert_cfgs(size, extractor_mode, normalize)
    symbols = [[f"c{i}" for i in range(8)]]
    model = HubertModel(merge_with_parent(HubertConfig, model_cfg), merge_with_parent(HubertPretrainingConfig, task_cfg), symbols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s3prl_hubert.write(str(path), task_cfg, model_cfg, model.state_dict(), symbols)
    return path


def build_hf_wavlm(directory: str | Path, seed: int = 0, feat_extract_norm: str = "group",
                   return_attention_mask: bool | None = None, do_normalize: bool = True) -> Path:
    """Write a transformers WavLM folder (config.json, weights, preprocessor_config.json)."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(seed)
    config = WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm=feat_extract_norm,
        num_buckets=32, max_bucket_distance=64, do_stable_layer_norm=feat_extract_norm == "layer",
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0,
    )
    from layerlab.models.formats import hf_dir

    model = WavLMModel(config)
    if return_attention_mask is None:
        return_attention_mask = feat_extract_norm == "layer"
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=do_normalize,
                                         return_attention_mask=return_attention_mask)
    return Path(hf_dir.write(directory, model, extractor))


def ecapa_state_dict(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ECAPA_TDNN weights (with non-trivial BatchNorm statistics) for a layerlab-ecapa-v1 config."""
    from layerlab.models.ecapa_adapter import build_ecapa

    torch.manual_seed(seed)
    _, _, model = build_ecapa(config)
    _randomize_norm_stats(model, torch.Generator().manual_seed(seed + 1))
    return model.state_dict()


def build_layerlab_ecapa(path: str, seed: int = 0, config: dict[str, Any] | None = None) -> str:
    """Write a ``layerlab-ecapa-v1`` checkpoint (path or fsspec URL) with random weights."""
    from layerlab.models.formats import ecapa

    config = dict(config or TINY_ECAPA)
    return ecapa.write(str(path), config, ecapa_state_dict(config, seed))


SPEECHBRAIN_YAML = """\
# tiny ECAPA-TDNN bundle in speechbrain's pretrained-model layout (random weights, for tests)
pretrained_path: speechbrain/tiny-ecapa
n_mels: {n_mels}
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {channels}
    kernel_sizes: {kernel_sizes}
    dilations: {dilations}
    attention_channels: {attention_channels}
    res2net_scale: {res2net_scale}
    se_channels: {se_channels}
    lin_neurons: {lin_neurons}
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def build_speechbrain_ecapa(directory: str | Path, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """Write a speechbrain ECAPA bundle folder: hyperparams.yaml + embedding_model.ckpt (small channels)."""
    config = dict(TINY_ECAPA, **(config or {}))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hyperparams.yaml").write_text(SPEECHBRAIN_YAML.format(**config))
    torch.save(ecapa_state_dict(config, seed), directory / "embedding_model.ckpt")
    return directory


def build_all(root: str | Path, seed: int = 0) -> dict[str, str]:
    """Build one tiny checkpoint per format under ``root``; returns {name: model spec}."""
    root = Path(root)
    return {
        "s3prl_wavlm": f"s3prl:wavlm_local:{build_s3prl_wavlm(root / 's3prl_wavlm.pt', seed)}",
        "s3prl_hubert": f"s3prl:hubert_local:{build_s3prl_hubert(root / 's3prl_hubert.pt', seed)}",
        "hf_wavlm": f"hf:{build_hf_wavlm(root / 'hf_wavlm', seed)}",
        "speechbrain_ecapa": f"speechbrain:{build_speechbrain_ecapa(root / 'sb_ecapa', seed)}",
        "layerlab_ecapa": f"ckpt:{build_layerlab_ecapa(str(root / 'ecapa.pt'), seed)}",
    }
