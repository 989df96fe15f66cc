"""Training-free per-layer profiles: what each layer encodes against label references, in one pass of mergeable states.

Per layer and reference (frame phones, phone spans, utterance speaker, keyword, intent, style): CCA
with the one-hot reference, a closed-form ridge classifier's held-out accuracy, and MI/purity of
k-means units with the phones, with leave-one-speaker-out intervals. Entry points:
:class:`ProfileJob`, :func:`run_profile` (one process) and
:func:`layerlab.profile.distributed.run_profile_on_ray` (one Ray task per shard and pass).
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

_EXPORTS = {
    "ProfileJob": "layerlab.profile.pipeline",
    "NothingToProfile": "layerlab.profile.pipeline",
    "run_profile": "layerlab.profile.pipeline",
    "REFERENCES": "layerlab.profile.references",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
