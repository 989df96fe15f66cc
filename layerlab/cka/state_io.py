"""Rebuilding a CKA accumulator from its state (the bytes format lives in :mod:`layerlab.accumulator`)."""

from __future__ import annotations

from typing import Any

from layerlab.accumulator import state_from_bytes, state_to_bytes

__all__ = ["accumulator_from_state", "state_from_bytes", "state_to_bytes"]


def accumulator_from_state(state: dict[str, Any], device: str | None = None, estimator: str | None = None) -> Any:
    """Rebuild the CKA accumulator (feature or minibatch) that produced ``state`` (``estimator``: biased/debiased for feature states)."""
    from layerlab.cka.feature_stats import FeatureCKA
    from layerlab.cka.minibatch import MinibatchCKA

    kinds = {FeatureCKA.kind: FeatureCKA, MinibatchCKA.kind: MinibatchCKA}
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in kinds:
        raise ValueError(f"state: unknown accumulator kind {kind!r} (expected one of {sorted(kinds)})")
    if kind == FeatureCKA.kind:
        return FeatureCKA.from_state_dict(state, device=device, estimator=None if estimator in (None, "minibatch") else estimator)
    return kinds[kind].from_state_dict(state, device=device)
