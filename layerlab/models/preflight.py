"""Driver-side "can this spec load?" check, run before Ray starts: cheap for big models, a full load for tiny ones.

Per prefix:

* ``ge2e`` / ``fbank`` / ``mfcc``: built in and small, so they are built once (catches a broken install).
* ``ckpt:URL`` / ``s3prl:{wavlm,hubert}_local:URL`` / ``speechbrain:DIR``: the file (remote ones are
  fetched into the model cache, which later loads on this node reuse) is opened with
  ``torch.load(mmap=True, weights_only=True)`` and its format and keys are validated; checkpoints up to
  ``FULL_LOAD_BYTES`` are loaded in full (config/weight mismatches show up here, not in an actor).
  A speechbrain bundle's hyperparams.yaml (HyperPyYAML: it runs code) is only read as text here, and
  built in full only with ``trust_remote_code`` (never in a study's dry run).
* ``hf:DIR`` / ``hf:ID``: the folder and ``config.json`` (or the hub cache) are read, the model type
  checked; small local folders load in full.
* ``s3prl:NAME``: the name must exist and its checkpoint be in s3prl's download cache or reachable;
  offline with nothing cached fails with the same one-line message as the actor would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from layerlab.models.errors import CheckpointError

#: checkpoints (file or folder) up to this size are fully built on the driver as the check
FULL_LOAD_BYTES = 64 * 2**20
#: environment variables that declare the machine offline (no download attempt is made)
OFFLINE_ENV = ("HF_HUB_OFFLINE", "LAYERLAB_OFFLINE")
PROBE_TIMEOUT_S = 5.0


def check_loadable(spec: str, *, trust_remote_code: bool = False, text_only: bool = False) -> None:
    """Raise a one-line ModelError (naming the spec or file) when ``spec`` cannot load; return quietly when it can.

    Nothing that runs code from the model's files is evaluated without ``trust_remote_code``: a speechbrain
    bundle is checked as text and then refused (RemoteCodeRefused names the consent flag). ``text_only``
    (a study's plan and dry run): check such bundles as text and stop there, consent or not.
    """
    from layerlab.models.registry import parse_spec

    prefix, arg = parse_spec(spec)
    if prefix == "random":  # the control loads its inner spec's architecture
        from layerlab.models.random_init import parse_random

        check_loadable(parse_random(arg, spec)[1], trust_remote_code=trust_remote_code, text_only=text_only)
    elif prefix in ("ge2e", "fbank", "mfcc", "planted"):
        _full_load(spec)
    elif prefix == "ckpt":
        _check_ckpt(spec, arg)
    elif prefix == "s3prl":
        _check_s3prl(spec, arg)
    elif prefix == "hf":
        _check_hf(spec, arg)
    elif prefix == "speechbrain":
        _check_speechbrain(spec, arg, trust_remote_code, text_only)


def _full_load(spec: str, trust_remote_code: bool = False) -> None:
    from layerlab.models.registry import load

    load(spec, device="cpu", trust_remote_code=trust_remote_code)


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def open_checkpoint(path: Path, what: str) -> Any:
    """``torch.load`` memory-mapped (nothing read but the pickle) where the file allows it, else in full."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # legacy (non-zip) files cannot be mapped: read them normally below
            raise CheckpointError(f"{what} {path}: not a readable torch checkpoint ({str(exc).splitlines()[0]})") from exc
    except Exception as exc:
        raise CheckpointError(f"{what} {path}: not a readable torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    from layerlab.models.fetch import load_torch_file

    return load_torch_file(path, what)


def _check_ckpt(spec: str, url: str) -> None:
    from layerlab.models.fetch import fetch_file
    from layerlab.models.formats import detect_format
    from layerlab.models.formats import hf_dir

    if hf_dir.is_hf_dir(url):
        _check_hf(spec, url)
        return
    path = fetch_file(url, what="layerlab checkpoint")
    ckpt = open_checkpoint(path, "layerlab checkpoint")
    fmt = detect_format(ckpt, url)
    _check_format_keys(fmt, ckpt, url)
    if size_of(path) <= FULL_LOAD_BYTES:
        _full_load(spec)


def _check_format_keys(fmt: str, ckpt: Any, url: str) -> None:
    """The keys (and for ECAPA the config) each checkpoint format needs, without building the model."""
    from layerlab.models.formats import ecapa
    from layerlab.models.s3prl_adapter import HUBERT_KEYS, WAVLM_KEYS, check_keys

    if fmt == "layerlab-ecapa-v1":
        ecapa.parse(ckpt, url)
    elif fmt == "s3prl-hubert":
        check_keys(ckpt, HUBERT_KEYS, url, "HuBERT (converted)")
    elif fmt == "s3prl-wavlm":
        check_keys(ckpt, WAVLM_KEYS, url, "WavLM")


def _check_s3prl(spec: str, arg: str) -> None:
    from layerlab.models.errors import UnknownModelSpec
    from layerlab.models.fetch import fetch_file

    name, _, url = arg.partition(":")
    if name in ("wavlm_local", "hubert_local"):
        if not url:
            raise UnknownModelSpec(f"model spec {spec!r}: {name} needs a checkpoint URL, e.g. s3prl:{name}:/path/ckpt.pt")
        family = name.split("_")[0]
        path = fetch_file(url, what=f"s3prl {family} checkpoint")
        ckpt = open_checkpoint(path, f"s3prl {family} checkpoint")
        _check_format_keys("s3prl-wavlm" if family == "wavlm" else "s3prl-hubert", ckpt, url)
        if size_of(path) <= FULL_LOAD_BYTES:
            _full_load(spec)
        return
    if url:
        raise UnknownModelSpec(f"model spec {spec!r}: only wavlm_local and hubert_local take a URL")
    _check_s3prl_hub(spec, name)


def _check_s3prl_hub(spec: str, name: str) -> None:
    """The hub name exists, and its checkpoint is in s3prl's download cache or can be downloaded from here."""
    from layerlab.models.s3prl_adapter import HUB_URLS, hub_entry, hub_fetch_error

    family, _ = hub_entry(name, spec)
    url = HUB_URLS.get(name)
    if url is None:
        return  # a hub name outside our table: s3prl resolves it in the actor
    from s3prl.util.download import urls_to_filepaths

    if Path(urls_to_filepaths(url, download=False)).is_file():
        return
    offline = next((k for k in OFFLINE_ENV if os.environ.get(k, "").strip().lower() in ("1", "true", "yes")), None)
    if offline:
        raise hub_fetch_error(spec, name, family, f"not in s3prl's download cache and {offline}=1")
    reason = url_unreachable(url)
    if reason:
        raise hub_fetch_error(spec, name, family, f"not in s3prl's download cache and {url} is unreachable: {reason}")


def url_unreachable(url: str) -> str | None:
    """Why an HTTP(S) URL cannot be reached from here (None when a HEAD request succeeds)."""
    import requests

    try:
        response = requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=True)
    except requests.RequestException as exc:
        return type(exc).__name__
    return None if response.status_code < 400 else f"HTTP {response.status_code}"


def _check_hf(spec: str, arg: str) -> None:
    from layerlab.models.hf_adapter import resolve_hf

    source, _ = resolve_hf(arg)
    folder = Path(source)
    if folder.is_dir():
        weights = [n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
        if not weights and not any(folder.glob("model-*.safetensors")):
            raise CheckpointError(f"hf model {arg}: no weights file (model.safetensors or pytorch_model.bin) in {folder}")
        if size_of(folder) <= FULL_LOAD_BYTES:
            _full_load(spec)


def _check_speechbrain(spec: str, arg: str, trust_remote_code: bool = False, text_only: bool = False) -> None:
    """File presence, hyperparams.yaml's keys (as text) and the weights (tensors only); a full build only with consent."""
    import torch

    from layerlab.models.ecapa_adapter import BUNDLE_OPTIONAL, BUNDLE_REQUIRED, CONSENT, check_bundle_text
    from layerlab.models.errors import RemoteCodeRefused
    from layerlab.models.fetch import fetch_dir

    folder = fetch_dir(arg, BUNDLE_REQUIRED, BUNDLE_OPTIONAL, what="speechbrain bundle")
    check_bundle_text((folder / "hyperparams.yaml").read_text(), arg)
    state = open_checkpoint(folder / "embedding_model.ckpt", f"speechbrain bundle {arg}: embedding_model.ckpt")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"speechbrain bundle {arg}: embedding_model.ckpt is not a state_dict (name -> tensor)")
    if text_only:
        return
    if not trust_remote_code:
        raise RemoteCodeRefused(f"speechbrain bundle {arg}: hyperparams.yaml is HyperPyYAML, which imports and runs what it names "
                                f"while loading; {CONSENT}")
    if size_of(folder) <= FULL_LOAD_BYTES:
        _full_load(spec, trust_remote_code=True)
