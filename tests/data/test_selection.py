"""Seeded, speaker-balanced samples (probes, CKA, convergence half), fixed crops and the frames selection."""

from __future__ import annotations

from collections import Counter

import pytest

from layerlab.data.selection import (
    FramesSelection, SampleError, cka_sample, fixed_crop, half_sample, speaker_balanced_sample, speaker_folds, split_members,
)

IDS = [f"u{i:03d}" for i in range(60)]
SPEAKERS = [f"s{i % 5}" if i < 50 else "s5" for i in range(60)]  # s0..s4: 10 each, s5: 10


def test_sample_is_seeded_speaker_balanced_and_nested() -> None:
    a = speaker_balanced_sample(IDS, SPEAKERS, 12, seed=0)
    assert a == speaker_balanced_sample(IDS, SPEAKERS, 12, seed=0) and a != speaker_balanced_sample(IDS, SPEAKERS, 12, seed=1)
    per = Counter(SPEAKERS[IDS.index(u)] for u in a)
    assert sorted(per.values()) == [2] * 6  # 12 over 6 speakers
    assert set(speaker_balanced_sample(IDS, SPEAKERS, 7, seed=0)) <= set(a)  # a smaller draw is inside a larger one
    assert a == sorted(a, key=IDS.index)  # input order kept


def test_cka_sample_refuses_more_than_the_split_and_fewer_than_two_speakers() -> None:
    assert len(cka_sample(IDS, SPEAKERS, 30, 0)) == 30 and cka_sample(IDS, SPEAKERS, None, 0) == IDS
    with pytest.raises(SampleError, match="max_utterances 61 exceeds the 60 utterances of the split"):
        cka_sample(IDS, SPEAKERS, 61, 0)
    with pytest.raises(SampleError, match="holds 1 speaker"):
        cka_sample(IDS[50:], SPEAKERS[50:], 5, 0)


def test_half_sample_is_a_balanced_half_of_the_sample() -> None:
    sample = cka_sample(IDS, SPEAKERS, 24, 3)
    spk = [SPEAKERS[IDS.index(u)] for u in sample]
    half = half_sample(sample, spk, 3)
    assert len(half) == 12 and set(half) < set(sample)
    assert sorted(Counter(SPEAKERS[IDS.index(u)] for u in half).values()) == [2] * 6


def test_split_members_picks_the_split_of_the_named_or_first_task() -> None:
    rows = [{"id": "a", "speaker": "x", "splits": {"pr": "test", "sid": "train"}}, {"id": "b", "speaker": "y", "splits": [("pr", "dev")]},
            {"id": "c", "speaker": "y", "splits": {"sid": "test"}}]
    assert split_members(rows, "test", "pr")[:2] == (["a"], ["x"])
    assert split_members(rows, "test", None)[2] == "split 'test' of task 'pr'"  # first task (sorted) that has the split
    assert split_members(rows, None, None)[0] == ["a", "b", "c"]
    with pytest.raises(SampleError, match="no utterance is in split 'eval'"):
        split_members(rows, "eval", None)


def test_fixed_crops_are_deterministic_and_inside_the_utterance() -> None:
    assert fixed_crop("u1", 5.0, 8.0, 0) is None
    start, length = fixed_crop("u1", 20.0, 8.0, 0)  # type: ignore[misc]
    assert length == 8.0 and 0 <= start <= 12.0 and fixed_crop("u1", 20.0, 8.0, 0) == (start, length)
    assert fixed_crop("u2", 20.0, 8.0, 0) != (start, length)


def test_speaker_folds_deal_whole_speakers_evenly() -> None:
    folds = speaker_folds(SPEAKERS, 4, seed=0)
    assert set(folds) == set(SPEAKERS) and sorted(Counter(folds.values()).values()) == [1, 1, 2, 2]


def test_frames_selection_union_keeps_whole_over_crops_and_digests_stably() -> None:
    sel = FramesSelection()
    sel.add(["a", "b"], {"a": (1.0, 2.0), "b": (0.0, 2.0)}, "train crops")
    sel.add(["b", "c"], purpose="test")  # b asked whole: stays whole
    sel.add(["a"], {"a": (2.5, 2.0)})  # two crops of a: the span covering both
    assert sel.ids == {"a": (1.0, 3.5), "b": None, "c": None} and sel.cropped == 1
    again = FramesSelection.from_json(sel.to_json())
    assert again.ids == sel.ids and again.digest() == sel.digest() and again.purposes == ["train crops", "test"]
