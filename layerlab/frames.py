"""Masked statistics over the valid frames of padded batches: one implementation for every stage."""

from __future__ import annotations

from typing import Any


def valid_mask(lengths: Any, max_len: int) -> Any:
    """Boolean ``[B, max_len]`` mask (torch), True on valid positions."""
    import torch

    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean_std(hidden: Any, lengths: Any) -> tuple[Any, Any]:
    """Mean and population std (ddof=0) over the valid frames of ``hidden [B, T, D]``; each ``[B, D]`` float32."""
    import torch

    h = hidden.to(torch.float32)
    n = lengths.to(h.device).clamp(min=1)
    valid = valid_mask(n, h.shape[1]).unsqueeze(-1)
    count = n.to(h.dtype)[:, None]
    mean = h.masked_fill(~valid, 0.0).sum(dim=1) / count  # masked_fill, not * mask: NaN in padding must not leak in
    var = ((h - mean[:, None, :]).masked_fill(~valid, 0.0) ** 2).sum(dim=1) / count
    return mean, var.sqrt()


def masked_mean(hidden: Any, lengths: Any) -> Any:
    """Mean over the valid frames of ``hidden [B, T, D]`` -> ``[B, D]`` (same dtype as ``hidden``)."""
    mask = valid_mask(lengths.to(hidden.device), hidden.shape[1]).to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / lengths.to(hidden.device).clamp(min=1).to(hidden.dtype)[:, None]
