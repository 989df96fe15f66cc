"""Frames probes on a cache whose frames tier holds a selection: train/dev restricted to it, test must be complete."""

from __future__ import annotations

import pytest

from memory_data import planted_source

from layerlab.data.selection import FramesSelection
from layerlab.probe import ProbeConfig, frames_needed
from layerlab.probe.source import ProbeInputError
from layerlab.probe.tasks import get_task

PR = get_task("pr")


def test_frames_needed_is_the_probes_own_split_with_its_samples() -> None:
    source = planted_source()
    needed = frames_needed(source, "pr", ProbeConfig(max_train_utterances=7, max_dev_utterances=3))
    bound = PR.bind(source, PR, ProbeConfig(max_train_utterances=7, max_dev_utterances=3), ["l0", "l2"])
    assert needed == bound.splits.ids and len(needed["train"]) == 7 and len(needed["dev"]) == 3
    assert frames_needed(source, "sid", ProbeConfig()) is None  # a pooled task reads no frames


def test_a_partial_frames_tier_restricts_train_and_dev_and_needs_the_whole_test_split() -> None:
    source = planted_source()
    full = frames_needed(source, "pr", ProbeConfig())
    held = FramesSelection()
    held.add(full["train"][:9])
    held.add(full["dev"][:4])
    held.add(full["test"])
    source.frames_selection = lambda: held  # type: ignore[attr-defined]
    bound = PR.bind(source, PR, ProbeConfig(), ["l0", "l2"])
    assert bound.splits.ids["train"] == full["train"][:9] and bound.splits.ids["dev"] == full["dev"][:4]
    assert bound.splits.ids["test"] == full["test"]
    assert any("frames selection holds" in n for n in bound.splits.notes)
    held.ids.pop(full["test"][0])
    with pytest.raises(ProbeInputError, match=f"holds {len(full['test']) - 1} of the {len(full['test'])} test utterances"):
        PR.bind(source, PR, ProbeConfig(), ["l0", "l2"])
