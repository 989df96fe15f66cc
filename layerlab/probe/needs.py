"""What a frames probe will read, known before extraction: its split ids (and, for ASV, the fixed training crops).

The study resolves a frames task's splits on the dataset's rows exactly as the probe will on the cache
(the task's own ``split_rows`` and :func:`~layerlab.probe.tasks.base.resolve_splits`, samples included), so
the extraction writes frames only for those utterances; the probe then reads a cache whose frames tier
holds that selection (train and dev as sampled, the test split complete).
"""

from __future__ import annotations

from typing import Any

from layerlab.probe.config import ProbeConfig
from layerlab.probe.source import ProbeSource
from layerlab.probe.tasks import get_task
from layerlab.probe.tasks.base import find_spec, resolve_splits

#: tasks that train on random crops of whole utterances (their training data can be stored as fixed crops)
CROPPED_TRAINING = {"asv": "asv.crop_seconds"}


def frames_needed(source: ProbeSource, task: str, cfg: ProbeConfig) -> dict[str, list[str]] | None:
    """Per split (train, dev, test), the ids a frames task reads from ``source``; None for a pooled task."""
    tdef = get_task(task)
    if tdef.split_rows is None:
        return None
    spec = find_spec(source, tdef)
    rows, split_cfg = tdef.split_rows(source, tdef, spec, cfg)
    return resolve_splits(source, tdef.name, spec, rows, split_cfg, strata=None, speaker_disjoint=True).ids


def crop_seconds(task: str, cfg: ProbeConfig) -> float | None:
    """Seconds of the random training crop a task reads (ASV: ``asv.crop_seconds``, SUPERB's 8 s); None: whole utterances."""
    return float(cfg.asv.crop_seconds) if task in CROPPED_TRAINING else None


def rows_source(url: str, rows: Any, tasks: dict[str, Any], tables: dict[str, Any] | None = None) -> ProbeSource:
    """A probe source over a dataset's rows only (no activations): what :func:`frames_needed` needs before extraction."""
    from layerlab.probe.source import MemorySource

    return MemorySource(url, "", [], rows, None, None, dict(tables or {}), dict(tasks))
