"""Accumulator states to bytes and back (npz, no pickle), and rebuilding an accumulator from its state."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np


def _split(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        return {str(k): _split(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _join(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, arrays) for v in obj]
    return obj


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """Serialise a state dict (numbers, strings, lists, dicts, numpy arrays) to npz bytes."""
    arrays: dict[str, np.ndarray] = {}
    skeleton = _split(state, arrays)
    buf = io.BytesIO()
    np.savez(buf, __skeleton__=np.array(json.dumps(skeleton)), **arrays)
    return buf.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`state_to_bytes`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "__skeleton__"}
        skeleton = json.loads(str(npz["__skeleton__"]))
    return _join(skeleton, arrays)


def accumulator_from_state(state: dict[str, Any], device: str | None = None) -> Any:
    """Rebuild the CKA accumulator (feature or minibatch) that produced ``state``."""
    from layerlab.cka.feature_stats import FeatureCKA
    from layerlab.cka.minibatch import MinibatchCKA

    kinds = {FeatureCKA.kind: FeatureCKA, MinibatchCKA.kind: MinibatchCKA}
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in kinds:
        raise ValueError(f"state: unknown accumulator kind {kind!r} (expected one of {sorted(kinds)})")
    return kinds[kind].from_state_dict(state, device=device)
