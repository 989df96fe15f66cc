"""``s3prl:NAME`` and ``s3prl:{wavlm,hubert}_local:URL``: HuBERT / WavLM through s3prl's model classes.

Only the needed upstream family is imported (``s3prl.upstream.wavlm`` or ``.hubert``), never
``s3prl.hub`` (which imports every upstream). Hidden states follow S3PRLUpstream exactly:
hidden_0 = input of the first transformer layer, hidden_i = input of layer i, hidden_L = encoder
output; ``(len - 1) // 320 + 1`` frames per utterance, the last CNN frame repeated to fill.

Padding: no s3prl model is padding-invariant. GroupNorm feature extractors
(``extractor_mode="default"``: HuBERT/WavLM Base) normalise over the whole padded time axis, so
every frame of a shorter utterance changes (~0.5 abs on a tiny random model); ``layer_norm`` models
(Large) change strongly only in the last ~4-8 frames (the partially padded last CNN frame and the
positional convolution) and slightly everywhere else (~1e-4 relative: attention sees that frame).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
import torch.nn.functional as F

from layerlab.models.base import LayerInfo, LayeredModel, frames_after_stride
from layerlab.models.errors import CheckpointError, UnknownModelSpec
from layerlab.models.fetch import fetch_file, load_torch_file

SAMPLE_RATE = 16000
STRIDE = 320
MIN_SAMPLES_S3PRL = 800  # S3PRLUpstream pads batches shorter than 0.05 s with zeros
#: upstream family -> hubconf module; hub names are looked up in the family their name starts with
FAMILIES = {
    "wavlm": "s3prl.upstream.wavlm.hubconf",
    "hubert": "s3prl.upstream.hubert.hubconf",
}
HUB_NAMES = ("hubert_base", "hubert_large_ll60k", "wavlm_base", "wavlm_base_plus", "wavlm_large")
#: hub name -> the converted checkpoint s3prl downloads for it (as in s3prl's hubconf files; a test checks they agree)
HUB_URLS = {
    "hubert_base": "https://huggingface.co/s3prl/converted_ckpts/resolve/main/hubert_base_ls960.pt",
    "hubert_large_ll60k": "https://huggingface.co/s3prl/converted_ckpts/resolve/main/hubert_large_ll60k.pt",
    "wavlm_base": "https://huggingface.co/s3prl/converted_ckpts/resolve/main/wavlm_base.pt",
    "wavlm_base_plus": "https://huggingface.co/s3prl/converted_ckpts/resolve/main/wavlm_base_plus.pt",
    "wavlm_large": "https://huggingface.co/s3prl/converted_ckpts/resolve/main/wavlm_large.pt",
}
WAVLM_KEYS = ("cfg", "model")
HUBERT_KEYS = ("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols")


class S3PRLModel(LayeredModel):
    """A WavLM or HuBERT backbone from s3prl, exposing hidden_0..hidden_L as S3PRLUpstream counts them."""

    padding_invariant = False
    min_samples = 400
    frame_convention = "stride"  # (len - 1) // 320 + 1

    def __init__(self, backbone: torch.nn.Module, normalize_waveform: bool, family: str, spec: str, device=None):
        super().__init__()
        self.spec = spec
        self.family = family
        self.sample_rate = SAMPLE_RATE
        self.backbone = backbone
        self.normalize_waveform = bool(normalize_waveform)
        backbone.feature_grad_mult = 0.0
        backbone.encoder.layerdrop = 0.0
        dim = int(backbone.encoder.embedding_dim) if hasattr(backbone.encoder, "embedding_dim") else int(
            backbone.encoder.layers[0].embedding_dim
        )
        n_layers = len(backbone.encoder.layers)
        self.extractor_mode = str(getattr(backbone.feature_extractor, "mode", "unknown"))
        self.layers = [LayerInfo(f"hidden_{i}", dim, SAMPLE_RATE / STRIDE) for i in range(n_layers + 1)]
        self._finish_init(device)

    def _run_backbone(self, padded: torch.Tensor, padding_mask: torch.Tensor) -> list[torch.Tensor]:
        captured: list[torch.Tensor] = []
        handles = [
            layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].transpose(0, 1)))
            for layer in self.backbone.encoder.layers
        ]
        handles.append(self.backbone.encoder.register_forward_hook(lambda _m, _a, out: captured.append(out[0])))
        try:
            self.backbone.extract_features(padded, padding_mask=padding_mask, mask=False if self.family == "wavlm" else None)
        finally:
            for h in handles:
                h.remove()
        return captured

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor):
        model_lengths = lengths
        if int(lengths.max()) < MIN_SAMPLES_S3PRL:  # as S3PRLUpstream: treat extra zeros as signal
            extra = MIN_SAMPLES_S3PRL - int(lengths.max())
            wavs = F.pad(wavs, (0, extra))
            model_lengths = lengths + extra
        max_len = int(model_lengths.max())
        wavs = wavs[:, :max_len]
        if self.normalize_waveform:
            wavs = torch.stack(
                [F.pad(F.layer_norm(w[:n], (int(n),)), (0, max_len - int(n))) for w, n in zip(wavs, model_lengths)]
            )
        padding_mask = torch.arange(max_len, device=wavs.device)[None, :] >= model_lengths[:, None]
        hidden = self._run_backbone(wavs, padding_mask)
        # HuBERT's encoder pads its layer inputs to a multiple of 2 frames; drop such frames (as s3prl does)
        real = min(h.shape[1] for h in hidden)
        hidden = [h[:, :real] for h in hidden]
        target = (max_len - 1) // STRIDE + 1
        out_lengths = frames_after_stride(lengths, STRIDE)
        keep = int(out_lengths.max())
        matched = []
        for h in hidden:
            if h.shape[1] > target:
                h = h[:, :target]
            elif h.shape[1] < target:
                h = torch.cat([h, h[:, -1:].expand(-1, target - h.shape[1], -1)], dim=1)
            matched.append(h[:, :keep])
        return matched, [out_lengths] * len(matched)


# ---- builders ---------------------------------------------------------------------------------
def check_keys(ckpt: Any, keys: tuple[str, ...], url: str, kind: str) -> dict:
    """``ckpt`` when it is a dict holding ``keys``; else a CheckpointError naming the URL and the keys found."""
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in keys):
        found = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"s3prl {kind} checkpoint {url}: wrong format; expected keys {list(keys)}, found {found}"
        )
    return ckpt


def _load_strict(model: torch.nn.Module, state: Any, url: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"s3prl checkpoint {url}: weights do not fit its config ({str(exc).splitlines()[0]})") from exc


def build_wavlm(ckpt: dict, url: str = "<memory>") -> tuple[torch.nn.Module, bool]:
    """s3prl WavLM from a ``{"cfg", "model"}`` checkpoint dict; returns (model, normalize_waveform)."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    check_keys(ckpt, WAVLM_KEYS, url, "WavLM")
    try:
        cfg = WavLMConfig(dict(ckpt["cfg"]))
        model = WavLM(cfg)
    except Exception as exc:
        raise CheckpointError(f"s3prl WavLM checkpoint {url}: invalid cfg ({type(exc).__name__}: {exc})") from exc
    _load_strict(model, ckpt["model"], url)
    return model, bool(cfg.normalize)


def build_hubert(ckpt: dict, url: str = "<memory>") -> tuple[torch.nn.Module, bool]:
    """s3prl HuBERT from a converted checkpoint (task_cfg, model_cfg, model_weight, dictionaries_symbols)."""
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    from s3prl.upstream.utils import merge_with_parent

    check_keys(ckpt, HUBERT_KEYS, url, "HuBERT (converted)")
    try:
        task_cfg = merge_with_parent(HubertPretrainingConfig, dict(ckpt["task_cfg"]))
        model_cfg = merge_with_parent(HubertConfig, dict(ckpt["model_cfg"]))
        model = HubertModel(model_cfg, task_cfg, ckpt["dictionaries_symbols"])
    except Exception as exc:
        raise CheckpointError(f"s3prl HuBERT checkpoint {url}: invalid config ({type(exc).__name__}: {exc})") from exc
    _load_strict(model, ckpt["model_weight"], url)
    return model, bool(task_cfg.normalize)


def _load_local(family: str, url: str, spec: str, device) -> S3PRLModel:
    path = fetch_file(url, what=f"s3prl {family} checkpoint")
    ckpt = load_torch_file(path, f"s3prl {family} checkpoint {url}")
    model, normalize = (build_wavlm if family == "wavlm" else build_hubert)(ckpt, url)
    return S3PRLModel(model, normalize, family, spec, device)


def hub_entry(name: str, spec: str) -> tuple[str, Any]:
    """(family, hubconf function) of an s3prl hub name; UnknownModelSpec for names s3prl does not have."""
    family = next((f for f in FAMILIES if name.startswith(f)), None)
    hubconf = importlib.import_module(FAMILIES[family]) if family else None
    entry = getattr(hubconf, name, None) if hubconf else None
    if entry is None or name.endswith(("_local", "_url", "_custom")):
        raise UnknownModelSpec(
            f"unknown s3prl model {spec!r}; supported: {', '.join('s3prl:' + n for n in HUB_NAMES)}, "
            "s3prl:wavlm_local:URL, s3prl:hubert_local:URL"
        )
    return str(family), entry


def hub_fetch_error(spec: str, name: str, family: str, reason: str) -> CheckpointError:
    """The one-line error for a hub checkpoint s3prl cannot fetch (offline) or load, with the pre-staging hint."""
    return CheckpointError(
        f"{spec}: s3prl could not fetch or load the checkpoint ({reason}); offline, pre-stage the "
        f"checkpoint file and use s3prl:{family}_local:/path/to/{name}.pt (README: Pretrained weights offline)"
    )


def _load_hub(name: str, spec: str, device) -> S3PRLModel:
    family, entry = hub_entry(name, spec)
    try:
        expert = entry()  # downloads into s3prl's cache when the machine has internet
    except Exception as exc:
        raise hub_fetch_error(spec, name, family, f"{type(exc).__name__}: {exc}") from exc
    normalize = expert.cfg.normalize if family == "wavlm" else expert.task_cfg.normalize
    return S3PRLModel(expert.model, normalize, family, spec, device)


def load_s3prl(arg: str, spec: str, device: str | torch.device | None = None) -> S3PRLModel:
    """Dispatch ``NAME`` to the hub and ``wavlm_local:URL`` / ``hubert_local:URL`` to local loading."""
    name, _, url = arg.partition(":")
    if name in ("wavlm_local", "hubert_local"):
        if not url:
            raise UnknownModelSpec(f"model spec {spec!r}: {name} needs a checkpoint URL, e.g. s3prl:{name}:/path/ckpt.pt")
        return _load_local(name.split("_")[0], url, spec, device)
    if url:
        raise UnknownModelSpec(f"model spec {spec!r}: only wavlm_local and hubert_local take a URL")
    return _load_hub(name, spec, device)
