"""``random:SPEC`` / ``random:seed=N:SPEC``: the random-initialisation control of a model spec.

Same architecture, seeded random weights (issue 20, item 6): the inner spec is built as usual (for
checkpoints that is the checkpoint's own config; its weights are then discarded), and every parameter
is re-initialised under ``seed`` with the model's own initialiser, in module order:

1. each module's ``reset_parameters`` (Linear, Conv, LSTM, norms; BatchNorm running statistics too);
2. the family's own initialiser on top: s3prl WavLM encoders ``init_bert_params`` (as its
   constructor applies it; s3prl's HuBERT encoder has none), transformers models ``_init_weights``;
3. parameters no ``reset_parameters`` owns: weight-normed convolutions (g, v) drawn as fairseq's
   positional conv, WavLM's gate constants set to ones, other raw ``nn.Parameter`` (mask embeddings)
   ``uniform_(0, 1)`` as fairseq draws ``mask_emb``; their names are in ``model.reinit_fallback``.

So a control's layers have the same names and dims as its model's, different values, and the same
values for the same seed. ``fbank``/``mfcc`` and ``planted`` have no learned weights: a control of them
is an error, as is a control of a control.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from layerlab.models.base import LayeredModel
from layerlab.models.errors import UnknownModelSpec

#: spec prefixes without learned weights (nothing to re-initialise)
NO_WEIGHTS = ("fbank", "mfcc", "planted", "random")


def random_spec(spec: str, seed: int = 0) -> str:
    """The control spec of ``spec`` (``random:seed=N:SPEC``)."""
    return f"random:seed={int(seed)}:{spec.strip()}"


def parse_random(arg: str, spec: str) -> tuple[int, str]:
    """(seed, inner spec) of ``random:[seed=N:]SPEC``; one-line UnknownModelSpec for bad options or a weightless model."""
    from layerlab.models.registry import parse_spec

    seed, inner = 0, arg.strip()
    if inner.startswith("seed="):
        value, _, inner = inner[len("seed="):].partition(":")
        try:
            seed = int(value)
        except ValueError:
            raise UnknownModelSpec(f"model spec {spec!r}: seed must be an integer (random:seed=N:SPEC), got {value!r}") from None
        if seed < 0:
            raise UnknownModelSpec(f"model spec {spec!r}: seed must be >= 0, got {seed}")
    elif "=" in inner.split(":", 1)[0]:
        raise UnknownModelSpec(f"model spec {spec!r}: random takes only seed=N (random:seed=N:SPEC), got {inner.split(':', 1)[0]!r}")
    if not inner:
        raise UnknownModelSpec(f"model spec {spec!r}: random needs the model spec to control, e.g. random:seed=0:s3prl:hubert_local:/m.pt")
    prefix, _ = parse_spec(inner)
    if prefix in NO_WEIGHTS:
        raise UnknownModelSpec(f"model spec {spec!r}: {prefix!r} has no learned weights to re-initialise; a random-init control "
                               "needs a model with weights (s3prl, hf, speechbrain, ckpt, ge2e)")
    return seed, inner


def _family_init(model: torch.nn.Module) -> None:
    """Apply the model family's own initialiser where the constructor applies one beyond ``reset_parameters``."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and type(backbone).__module__.startswith("s3prl.upstream.wavlm"):
        from s3prl.upstream.wavlm.modules import init_bert_params

        backbone.encoder.apply(init_bert_params)  # as WavLM's TransformerEncoder constructor does
    hf = getattr(model, "model", None)
    if hf is not None and hasattr(hf, "_init_weights"):
        hf.apply(hf._init_weights)


#: raw parameters the families initialise to ones (WavLM's gated relative-position terms); other raw ones: uniform_
ONES_PARAMS = ("grep_a", "gru_rel_pos_const")


def _owners(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Full parameter name -> the module that registers it directly."""
    return {f"{mname}.{pname}" if mname else pname: module
            for mname, module in model.named_modules() for pname, _ in module.named_parameters(recurse=False)}


def _redraw_weight_norm(g: torch.Tensor, v: torch.Tensor) -> None:
    """Weight-normed conv (fairseq's positional conv): v ~ N(0, 4 / (kernel * channels)), g = ||v|| over the normed dims."""
    v.normal_(0.0, math.sqrt(4.0 / (v.shape[-1] * v.shape[0])))
    dims = [d for d in range(v.dim()) if g.dim() == v.dim() and g.shape[d] == 1]
    g.copy_(torch.linalg.vector_norm(v, dim=dims, keepdim=True) if dims else v.norm())


def reinitialize(model: LayeredModel, seed: int) -> list[str]:
    """Re-draw every parameter (and BatchNorm statistic) of ``model`` under ``seed``; returns the fallback-drawn names."""
    owners = _owners(model)
    params = dict(model.named_parameters())
    fallback: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        with torch.no_grad():
            for module in model.modules():
                if module is not model and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            _family_init(model)
            for name, p in params.items():
                owner = owners[name]
                leaf = name.rsplit(".", 1)[-1]
                if leaf in ("weight_g", "original0"):  # weight norm: g and v drawn together
                    v = params[name[: -len(leaf)] + ("weight_v" if leaf == "weight_g" else "original1")]
                    _redraw_weight_norm(p, v)
                    fallback += [name, name[: -len(leaf)] + ("weight_v" if leaf == "weight_g" else "original1")]
                elif leaf in ("weight_v", "original1"):
                    continue
                elif not hasattr(owner, "reset_parameters") or owner is model:
                    p.fill_(1.0) if leaf in ONES_PARAMS else p.uniform_()
                    fallback.append(name)
    return fallback


def load_random(arg: str, spec: str, device: str | torch.device | None = None, trust_remote_code: bool = False) -> LayeredModel:
    """Build the inner spec's model, then replace its weights by seeded random ones (see the module doc)."""
    from layerlab.models.base import resolve_device
    from layerlab.models.registry import load

    seed, inner = parse_random(arg, spec)
    model = load(inner, device="cpu", trust_remote_code=trust_remote_code)  # initialise on the CPU: the same seed gives the same weights on any device
    fallback = reinitialize(model, seed)
    model.spec = spec
    info: dict[str, Any] = {"control_of_spec": inner, "seed": seed, "fallback": fallback}
    model.random_init = info
    model.reinit_fallback = fallback
    model._finish_init(resolve_device(device))
    return model
