"""Small tensor helpers shared by the CKA accumulators: input conversion (device choice: layerlab.runtime).

Accumulators accept numpy arrays or torch tensors; everything is converted here so the estimator
modules only ever see torch tensors on the accumulator's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerlab.runtime import pick_device

__all__ = ["as_tensor", "pick_device", "to_numpy"]


def as_tensor(x: Any, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A torch view/copy of ``x`` (numpy array, tensor or nested list) on ``device`` with ``dtype``."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        arr = np.ascontiguousarray(x)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    else:
        t = torch.as_tensor(np.asarray(x))
    if dtype is not None or device is not None:
        t = t.to(device=device if device is not None else t.device, dtype=dtype if dtype is not None else t.dtype)
    return t


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor (for state dicts and results)."""
    return t.detach().to("cpu", torch.float64).numpy().copy()
