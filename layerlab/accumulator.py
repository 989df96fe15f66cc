"""The one protocol for a mergeable statistic (CKA states, pooled means, metric counts).

Every statistic that is computed on many workers and combined later implements it. ``merge``
must be associative and commutative (up to float rounding) so a reducer may combine partial
states in any order or as a tree; ``state_dict`` must hold only plain Python numbers, strings,
lists, dicts, numpy arrays or torch tensors so it can be checkpointed to any storage URL.
"""

from __future__ import annotations

import io
import json
from typing import Any, Iterable, Protocol, TypeVar, runtime_checkable

import numpy as np

A = TypeVar("A", bound="Accumulator")


@runtime_checkable
class Accumulator(Protocol):
    """A streaming statistic: ``update`` with data, ``merge`` partial states, ``compute`` the result."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add one batch of observations to the state."""

    def merge(self: A, other: A) -> A:
        """Fold ``other`` into ``self`` in place and return ``self``."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the state (see ``load_state_dict``)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with one produced by ``state_dict``."""

    def compute(self) -> Any:
        """The statistic's value for all data seen so far."""


def merge_all(parts: Iterable[A]) -> A:
    """Merge many partial states pairwise as a balanced tree (bounded rounding growth).

    The first element is used as the root and is modified in place.
    """
    level = list(parts)
    if not level:
        raise ValueError("merge_all needs at least one partial state")
    while len(level) > 1:
        nxt = [level[i].merge(level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


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
