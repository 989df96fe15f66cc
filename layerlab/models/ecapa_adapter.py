"""ECAPA-TDNN speaker models (speechbrain's ECAPA_TDNN class), from a speechbrain bundle or our own ckpt.

``speechbrain:DIR_OR_URL`` loads a pretrained bundle (hyperparams.yaml + embedding_model.ckpt)
offline. Its ``hyperparams.yaml`` is HyperPyYAML, which imports and calls whatever the file names
(``!new:``, ``!apply:``), so it is evaluated only with the user's consent (``trust_remote_code``);
:func:`check_bundle_text` checks a bundle without running anything (dry runs, preflight). ``ckpt:URL`` with a ``layerlab-ecapa-v1`` checkpoint (see ``models/formats/ecapa.py``)
builds the same model.
Front end exactly as EncoderClassifier.encode_batch: Fbank, sentence mean normalisation with relative
lengths. Layers: block0..block3, mfa (100 Hz), asp (pooled statistics), embedding (utterance-level).
"""

from __future__ import annotations

from typing import Any

import torch

from layerlab.models.base import LayeredModel, LayerInfo, frames_centered
from layerlab.models.errors import CheckpointError, RemoteCodeRefused
from layerlab.models.fetch import fetch_dir, load_torch_file

SAMPLE_RATE = 16000
HOP = 160
#: ECAPA_TDNN keyword arguments a layerlab checkpoint may set (input_size comes from n_mels)
ECAPA_KWARGS = (
    "lin_neurons", "channels", "kernel_sizes", "dilations", "attention_channels",
    "res2net_scale", "se_channels", "global_context", "groups", "dropout",
)
BUNDLE_REQUIRED = ("hyperparams.yaml", "embedding_model.ckpt")
BUNDLE_OPTIONAL = ("mean_var_norm_emb.ckpt", "classifier.ckpt", "label_encoder.txt", "label_encoder.ckpt")
#: top-level keys of hyperparams.yaml the adapter reads, and the class embedding_model must be
BUNDLE_KEYS = ("compute_features", "mean_var_norm", "embedding_model")
ECAPA_TAG = "!new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
CONSENT = ("pass --trust-remote-code (layerlab extract, layerlab models describe) or set trust_remote_code: true in the study "
           "config, only for a bundle you trust")


class ECAPAModel(LayeredModel):
    """speechbrain front end + ECAPA_TDNN, run block by block so every block's output is a layer."""

    # Conv1d "same" padding is reflect padding at the *batch* end and sentence normalisation rounds
    # relative lengths, so the last frames of a padded utterance (and its embedding, slightly) change.
    padding_invariant = False
    min_samples = 800

    def __init__(
        self,
        compute_features: torch.nn.Module,
        mean_var_norm: torch.nn.Module,
        embedding_model: torch.nn.Module,
        spec: str,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.sample_rate = SAMPLE_RATE
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm
        self.embedding_model = embedding_model
        em = embedding_model
        rate = SAMPLE_RATE / HOP
        self.layers = [LayerInfo(f"block{i}", int(em.channels[i]), rate) for i in range(len(em.blocks))]
        self.layers.append(LayerInfo("mfa", int(em.channels[-1]), rate))
        self.layers.append(LayerInfo("asp", 2 * int(em.channels[-1]), None))
        self.layers.append(LayerInfo("embedding", int(em.fc.conv.out_channels), None))
        self._finish_init(device)

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor):
        from speechbrain.lobes.models.ECAPA_TDNN import TDNNBlock

        rel = lengths.to(torch.float32) / wavs.shape[1]  # speechbrain's relative lengths
        feats = self.compute_features(wavs)
        feats = self.mean_var_norm(feats, rel)
        em = self.embedding_model
        x = feats.transpose(1, 2)
        blocks = []
        for block in em.blocks:
            x = block(x) if isinstance(block, TDNNBlock) else block(x, lengths=rel)
            blocks.append(x)
        mfa = em.mfa(torch.cat(blocks[1:], dim=1))
        asp = em.asp(mfa, lengths=rel)
        emb = em.fc(em.asp_bn(asp))
        n = frames_centered(lengths, HOP)
        ones = torch.ones_like(n)
        hidden = [b.transpose(1, 2) for b in blocks] + [mfa.transpose(1, 2), asp.transpose(1, 2), emb.transpose(1, 2)]
        return hidden, [n] * (len(blocks) + 1) + [ones, ones]


def _load_state(model: torch.nn.Module, state: Any, where: str) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{where}: expected a state_dict (name -> tensor)")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{where}: weights do not fit the ECAPA_TDNN config (missing {list(result.missing_keys)[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]})"
        )


def _copy_weights_strictly(model: torch.nn.Module, state: dict, where: str) -> None:
    try:
        _load_state(model, state, where)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{where}: weights do not fit the ECAPA_TDNN config ({str(exc).splitlines()[0]} ...)") from exc


# ---- speechbrain bundles ----------------------------------------------------------------
def check_bundle_text(yaml_text: str, arg: str) -> dict[str, str]:
    """The top-level keys of a bundle's hyperparams.yaml with their tags, read as text (composed, never constructed:
    nothing is imported or called); a CheckpointError names what is missing or malformed."""
    import yaml

    try:
        node = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"speechbrain bundle {arg}: hyperparams.yaml is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(node, yaml.MappingNode):
        raise CheckpointError(f"speechbrain bundle {arg}: hyperparams.yaml is not a mapping of settings")
    tags = {str(k.value): str(v.tag) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    missing = [k for k in BUNDLE_KEYS if k not in tags]
    if missing:
        raise CheckpointError(f"speechbrain bundle {arg}: hyperparams.yaml lacks {', '.join(missing)}")
    if tags["embedding_model"] != ECAPA_TAG:
        raise CheckpointError(f"speechbrain bundle {arg}: embedding_model is {tags['embedding_model']}, not {ECAPA_TAG}")
    return tags


def load_speechbrain(arg: str, spec: str, device: str | torch.device | None = None, trust_remote_code: bool = False) -> ECAPAModel:
    """Load a speechbrain ECAPA bundle folder (local path or fsspec URL) without network access.

    The bundle's hyperparams.yaml runs as HyperPyYAML (code) only with ``trust_remote_code``; without it a
    RemoteCodeRefused error says so (after the text check, so a broken bundle is named as such first).
    """
    folder = fetch_dir(arg, BUNDLE_REQUIRED, BUNDLE_OPTIONAL, what="speechbrain bundle")
    yaml_text = (folder / "hyperparams.yaml").read_text()
    check_bundle_text(yaml_text, arg)
    if not trust_remote_code:
        raise RemoteCodeRefused(f"speechbrain bundle {arg}: hyperparams.yaml is HyperPyYAML, which imports and runs what it names "
                                f"while loading; {CONSENT}")
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    overrides = {"pretrained_path": str(folder)} if "pretrained_path" in yaml_text else {}
    try:
        hparams = load_hyperpyyaml(yaml_text, overrides=overrides)
    except Exception as exc:
        raise CheckpointError(f"speechbrain bundle {arg}: hyperparams.yaml cannot be loaded ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in ("compute_features", "mean_var_norm", "embedding_model") if k not in hparams]
    if missing:
        raise CheckpointError(f"speechbrain bundle {arg}: hyperparams.yaml lacks {', '.join(missing)}")
    if not isinstance(hparams["embedding_model"], ECAPA_TDNN):
        raise CheckpointError(
            f"speechbrain bundle {arg}: embedding_model is {type(hparams['embedding_model']).__name__}, "
            "not speechbrain's ECAPA_TDNN"
        )
    state = load_torch_file(folder / "embedding_model.ckpt", f"speechbrain bundle {arg}: embedding_model.ckpt")
    _copy_weights_strictly(hparams["embedding_model"], state, f"speechbrain bundle {arg}: embedding_model.ckpt")
    return ECAPAModel(hparams["compute_features"], hparams["mean_var_norm"], hparams["embedding_model"], spec, device)


# ---- layerlab checkpoints ---------------------------------------------------------------
def build_ecapa(config: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(Fbank, sentence InputNormalization, ECAPA_TDNN) for a layerlab-ecapa-v1 config."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    unknown = sorted(set(config) - set(ECAPA_KWARGS) - {"n_mels"})
    if unknown:
        raise CheckpointError(f"layerlab-ecapa-v1 config has unknown keys {unknown}; allowed: n_mels, {', '.join(ECAPA_KWARGS)}")
    n_mels = int(config.get("n_mels", 80))
    kwargs = {k: v for k, v in config.items() if k in ECAPA_KWARGS}
    return (
        Fbank(n_mels=n_mels),
        InputNormalization(norm_type="sentence", std_norm=False),
        ECAPA_TDNN(input_size=n_mels, **kwargs),
    )


# The layerlab-ecapa-v1 checkpoint format (read, write, ckpt: loading) lives in models/formats/ecapa.py.
