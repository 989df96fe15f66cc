"""``hf:ID_OR_DIR``: transformers WavLM / HuBERT / wav2vec2 models with ``output_hidden_states``.

Layers hidden_0..hidden_L as transformers returns them. Input handling follows the model's
feature extractor config (preprocessor_config.json): ``do_normalize`` (zero mean, unit variance
over each utterance's valid samples) and ``return_attention_mask`` (an attention mask is passed
only where the config asks for one; group-norm base models are meant to see zero padding instead).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from layerlab.models.base import LayerInfo, LayeredModel, length_mask
from layerlab.models.errors import CheckpointError
from layerlab.models.fetch import fetch_dir

SUPPORTED_TYPES = ("wavlm", "hubert", "wav2vec2", "wav2vec2-conformer", "data2vec-audio", "unispeech-sat", "unispeech")
HF_OPTIONAL = ("model.safetensors", "pytorch_model.bin", "preprocessor_config.json")
NORM_EPS = 1e-7  # as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


class HFSpeechModel(LayeredModel):
    """A transformers speech encoder; frame rate 16 kHz / product of its conv strides."""

    min_samples = 400

    def __init__(self, model: torch.nn.Module, do_normalize: bool, use_attention_mask: bool, spec: str, device=None):
        super().__init__()
        self.spec = spec
        self.model = model
        cfg = model.config
        self.sample_rate = 16000
        self.do_normalize = bool(do_normalize)
        self.use_attention_mask = bool(use_attention_mask)
        stride, field = 1, 1
        for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
            field += (int(k) - 1) * stride  # receptive field of the conv stack
            stride *= int(s)
        self.stride = stride
        self.frame_convention = "window"  # (len - receptive field) // stride + 1
        self.window_samples = field
        # Group norm over the padded time axis changes every frame; layer-norm models that get an
        # attention mask zero the padded frames before the positional conv and mask attention.
        self.padding_invariant = self.use_attention_mask and getattr(cfg, "feat_extract_norm", "group") == "layer"
        self.layers = [
            LayerInfo(f"hidden_{i}", int(cfg.hidden_size), self.sample_rate / stride)
            for i in range(int(cfg.num_hidden_layers) + 1)
        ]
        self._finish_init(device)

    def _normalize(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths, wavs.shape[1]).to(wavs.dtype)
        n = lengths.to(wavs.dtype)[:, None]
        mean = (wavs * mask).sum(1, keepdim=True) / n
        var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / n
        return (wavs - mean) / torch.sqrt(var + NORM_EPS) * mask

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor):
        wavs = wavs[:, : int(lengths.max())]
        if self.do_normalize:
            wavs = self._normalize(wavs, lengths)
        else:
            wavs = wavs * length_mask(lengths, wavs.shape[1]).to(wavs.dtype)
        mask = length_mask(lengths, wavs.shape[1]).long() if self.use_attention_mask else None
        out = self.model(wavs, attention_mask=mask, output_hidden_states=True, return_dict=True)
        n = self.model._get_feat_extract_output_lengths(lengths).to(torch.long)
        hidden = list(out.hidden_states)
        return hidden, [n] * len(hidden)


def _preprocessor_settings(source: str, config) -> tuple[bool, bool]:
    """(do_normalize, return_attention_mask) from preprocessor_config.json, else the model-type defaults."""
    default = (True, getattr(config, "feat_extract_norm", "group") == "layer")
    path = Path(source) / "preprocessor_config.json"
    if path.is_file():
        try:
            pre = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"hf model {source}: preprocessor_config.json is not valid JSON ({exc})") from exc
        return bool(pre.get("do_normalize", default[0])), bool(pre.get("return_attention_mask", default[1]))
    try:
        from transformers import AutoFeatureExtractor

        fe = AutoFeatureExtractor.from_pretrained(source)
        return bool(getattr(fe, "do_normalize", default[0])), bool(getattr(fe, "return_attention_mask", default[1]))
    except Exception:
        return default


def resolve_hf(arg: str) -> tuple[str, object]:
    """(local source, transformers config) of ``hf:ARG``: the folder is checked and the config read, no weights."""
    from transformers import AutoConfig

    source = arg
    if "://" in arg:
        source = str(fetch_dir(arg, ("config.json",), HF_OPTIONAL, what="hf model folder"))
    elif arg.startswith(("/", ".", "~")) or Path(arg).exists():
        path = Path(arg).expanduser()
        if not path.is_dir():
            raise CheckpointError(f"hf model {arg}: {'not a directory' if path.exists() else 'does not exist'}")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"hf model {arg}: config.json is missing (not a transformers model folder)")
        source = str(path)
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:
        hint = "" if source != arg or "://" in arg else (
            "; a hub id needs network or the hub cache: offline, pre-stage the transformers folder and use "
            "hf:/path/to/folder (README: Pretrained weights offline)"
        )
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"hf model {arg}: cannot load its config ({type(exc).__name__}: {first}){hint}") from exc
    if config.model_type not in SUPPORTED_TYPES:
        raise CheckpointError(
            f"hf model {arg}: model_type {config.model_type!r} is not a supported speech encoder ({', '.join(SUPPORTED_TYPES)})"
        )
    return source, config


def load_hf(arg: str, spec: str, device: str | torch.device | None = None) -> HFSpeechModel:
    """Load a transformers speech encoder from a local folder, a hub id (cache only offline) or a URL folder."""
    from transformers import AutoModel

    source, config = resolve_hf(arg)
    try:
        model = AutoModel.from_pretrained(source, config=config)
    except Exception as exc:
        raise CheckpointError(f"hf model {arg}: cannot load its weights ({type(exc).__name__}: {exc})") from exc
    do_normalize, attn = _preprocessor_settings(source, config)
    return HFSpeechModel(model, do_normalize, attn, spec, device)
