"""``load(spec)``: pick the adapter from the spec's prefix and import only that adapter.

Spec grammar: ``s3prl:NAME`` | ``s3prl:wavlm_local:URL`` | ``s3prl:hubert_local:URL`` |
``hf:ID_OR_DIR`` | ``speechbrain:DIR_OR_URL`` | ``ckpt:URL`` | ``ge2e`` | ``fbank`` | ``mfcc`` |
``planted[:seed=N,order=a+b+c+d]`` (the known-answer model, ``models/planted.py``) |
``random:[seed=N:]SPEC`` (the random-initialisation control of SPEC: same architecture, seeded random
weights, ``models/random_init.py``; an error for fbank/mfcc/planted, which have no learned weights).
"""

from __future__ import annotations

import contextlib
import importlib
import random
from typing import Iterator

import numpy as np
import torch

from layerlab.models.base import LayeredModel
from layerlab.models.errors import UnknownModelSpec

#: prefix -> "module:function(argument, spec, device)" building the model; imported on first use
ADAPTERS: dict[str, str] = {
    "s3prl": "layerlab.models.s3prl_adapter:load_s3prl",
    "hf": "layerlab.models.hf_adapter:load_hf",
    "speechbrain": "layerlab.models.ecapa_adapter:load_speechbrain",
    "ckpt": "layerlab.models.formats.dispatch:load_ckpt",
    "ge2e": "layerlab.models.ge2e_adapter:load_ge2e",
    "fbank": "layerlab.models.baseline_features:load_fbank",
    "mfcc": "layerlab.models.baseline_features:load_mfcc",
    "planted": "layerlab.models.planted:load_planted",
    "random": "layerlab.models.random_init:load_random",
}
#: prefixes whose loading can run code from the model's files (or wraps a spec that can): they take ``trust_remote_code``
REMOTE_CODE = {"speechbrain", "random"}
#: prefixes that take no argument
BARE = {"ge2e", "fbank", "mfcc"}
#: prefixes whose argument (options) may be left out
OPTIONAL_ARG = {"planted"}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``spec`` into (prefix, argument); raise UnknownModelSpec for anything malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownModelSpec(f"model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    prefix, sep, arg = spec.partition(":")
    if prefix not in ADAPTERS:
        raise UnknownModelSpec(
            f"unknown model spec {spec!r}: prefix {prefix!r} is not one of {', '.join(sorted(ADAPTERS))} "
            "(e.g. s3prl:wavlm_base_plus, hf:/path/to/dir, speechbrain:/path/to/bundle, ckpt:s3://b/m.pt, ge2e, planted, "
            "random:seed=0:SPEC)"
        )
    if prefix in BARE and arg:
        raise UnknownModelSpec(f"model spec {spec!r}: {prefix!r} takes no argument")
    if prefix not in BARE | OPTIONAL_ARG and not arg:
        raise UnknownModelSpec(f"model spec {spec!r}: {prefix!r} needs an argument, e.g. {prefix}:NAME_OR_PATH")
    if prefix == "planted":
        from layerlab.models.planted import parse_planted

        parse_planted(arg, spec)
    elif prefix == "random":
        from layerlab.models.random_init import parse_random

        parse_random(arg, spec)
    return prefix, arg


def needs_remote_code(spec: str) -> bool:
    """Whether loading ``spec`` evaluates code from the model's own files (a speechbrain bundle, or a control of one)."""
    prefix, arg = parse_spec(spec)
    if prefix == "random":
        from layerlab.models.random_init import parse_random

        return needs_remote_code(parse_random(arg, spec)[1])
    return prefix in REMOTE_CODE


def check_spec(spec: str, *, loadable: bool = True, trust_remote_code: bool = False) -> tuple[str, str]:
    """Fail fast, on the driver, for a spec that cannot load: malformed, naming a file/folder that does not
    exist, or (``loadable``) failing ``preflight.check_loadable`` (format, keys, hub cache; tiny models built;
    a bundle whose config runs code is built only with ``trust_remote_code``, otherwise checked as text)."""
    from layerlab import storage

    prefix, arg = parse_spec(spec)
    if prefix == "random":  # the control loads what its inner spec loads
        from layerlab.models.random_init import parse_random

        check_spec(parse_random(arg, spec)[1], loadable=loadable, trust_remote_code=trust_remote_code)
        return prefix, arg
    path = arg.split(":", 1)[1] if prefix == "s3prl" and ":" in arg else arg
    is_path = prefix in ("speechbrain", "ckpt") or (prefix == "s3prl" and ":" in arg) or (prefix == "hf" and (path.startswith((".", "/", "~")) or "://" in path))
    if is_path and not storage.exists(path):
        raise UnknownModelSpec(f"model file or folder of spec {spec!r} not found ({path})")
    if loadable:
        from layerlab.models.preflight import check_loadable

        check_loadable(spec, trust_remote_code=trust_remote_code)
    return prefix, arg


def load(spec: str, device: str | torch.device | None = None, *, trust_remote_code: bool = False) -> LayeredModel:
    """Build the frozen, eval-mode LayeredModel for ``spec`` on ``device`` (default: cuda if available).

    ``trust_remote_code``: the user's consent to load bundles whose config runs code (``speechbrain:``
    bundles: HyperPyYAML); without it those are refused with a one-line error naming the flag.
    """
    prefix, arg = parse_spec(spec)
    module_name, func_name = ADAPTERS[prefix].split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    consent = {"trust_remote_code": trust_remote_code} if prefix in REMOTE_CODE else {}
    with preserved_rng_state():
        return builder(arg, spec=spec.strip(), device=device, **consent)


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Leave torch (CPU), numpy and ``random`` RNG streams as they were: building a model (random init
    before weights are loaded) must not shift a caller's seeded experiment."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
