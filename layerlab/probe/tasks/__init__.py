"""Probe tasks, one module each (KS, IC, SID, style/ER, PR, frame-wise PR, ASR, ASV, ASV cosine): a registry by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layerlab.probe.tasks.base import TaskDef

#: task name -> (module, attribute)
_TASKS = {
    "ks": ("ks", "TASK"), "ic": ("ic", "TASK"), "sid": ("sid", "TASK"), "style": ("style", "TASK"), "er": ("style", "ER_TASK"),
    "pr": ("pr", "TASK"), "pr-frame": ("pr_frame", "TASK"), "asr": ("asr", "TASK"), "asv": ("asv", "TASK"), "asv-cosine": ("asv_cosine", "TASK"),
}


def task_names() -> list[str]:
    """Every task a probe can run."""
    return sorted(_TASKS)


def get_task(name: str) -> TaskDef:
    """The declaration of task ``name``; ValueError listing the known tasks otherwise."""
    if name not in _TASKS:
        raise ValueError(f"unknown probe task {name!r}; tasks: {', '.join(task_names())}")
    module, attr = _TASKS[name]
    return getattr(importlib.import_module(f"layerlab.probe.tasks.{module}"), attr)
