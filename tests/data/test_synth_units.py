"""Units of the synthetic corpus: espeak binding, fork isolation, alignment tiling, augmentation, config."""

from __future__ import annotations

import os

import numpy as np
import pytest

from layerlab.data.records import PhoneSpan
from layerlab.data.synth import SynthConfig, alignment, augment
from layerlab.data.synth.config import NoiseConfig, ReverbConfig
from layerlab.data.synth.espeak import EspeakEngine, PhonemeEvent, VoiceSettings
from layerlab.data.synth.isolation import ForkedCallError, call_in_fork
from layerlab.data.synth.render import render, speech_with_alignment
from layerlab.data.synth.tasks import UtterancePlan
from layerlab.data.synth.voices import make_speakers


def _speak(text: str, voice: str, seed: int):
    return EspeakEngine().synthesize(text, VoiceSettings(voice), seed)


def test_espeak_events_give_phone_onsets_in_order() -> None:
    syn = call_in_fork(_speak, "Turn on the lights.", "en-us+m3", 1)
    assert syn.sample_rate == 22050 and syn.samples.dtype == np.int16
    assert 0.5 < syn.samples.shape[0] / syn.sample_rate < 3.0
    onsets = [e.sample for e in syn.phonemes]
    assert onsets == sorted(onsets) and onsets[-1] <= syn.samples.shape[0]
    names = [alignment.normalise_phone(e.phoneme) for e in syn.phonemes]
    assert [n for n in names if n != alignment.SILENCE][:3] == ["t", "3:", "n"]


def test_fresh_fork_gives_identical_audio_whatever_was_spoken_before() -> None:
    first = call_in_fork(_speak, "Hello there my friend.", "en-us+victor", 5)  # a breathy (noisy) variant

    def after_other(seed: int):
        eng = EspeakEngine()
        eng.synthesize("Something else entirely, with a comma.", VoiceSettings("en+f5", rate=300), 9)
        return eng.synthesize("Hello there my friend.", VoiceSettings("en-us+victor"), seed)

    again = call_in_fork(_speak, "Hello there my friend.", "en-us+victor", 5)
    assert np.array_equal(first.samples, again.samples)
    polluted = call_in_fork(after_other, 5)  # same call after other speech in one process: hidden state leaks
    assert not np.array_equal(first.samples, polluted.samples)
    other_seed = call_in_fork(_speak, "Hello there my friend.", "en-us+victor", 6)
    assert not np.array_equal(first.samples, other_seed.samples)


def test_unknown_voice_and_child_failures_are_reported() -> None:
    with pytest.raises(ForkedCallError, match="variant 'nosuchvoice' not found"):
        call_in_fork(_speak, "hello", "en-us+nosuchvoice", 0)
    with pytest.raises(ForkedCallError, match="espeak_SetVoiceByName\\('xx-nolang'\\).*not found"):
        call_in_fork(_speak, "hello", "xx-nolang", 0)
    with pytest.raises(ForkedCallError, match="empty text"):
        call_in_fork(_speak, "   ", "en-us", 0)

    def die() -> None:
        os._exit(3)

    with pytest.raises(ForkedCallError, match="died without a result"):
        call_in_fork(die)


def test_spans_from_events_tile_and_skip_linking_marks() -> None:
    events = [PhonemeEvent("h", 100), PhonemeEvent("'E", 300), PhonemeEvent(";", 350), PhonemeEvent("l", 500),
              PhonemeEvent("_:", 800), PhonemeEvent("_", 1000)]  # fmt: skip
    spans = alignment.spans_from_events(events, 1000)
    assert [(s.phone, s.start, s.end) for s in spans] == [("sil", 0, 100), ("h", 100, 300), ("E", 300, 500), ("l", 500, 800), ("sil", 800, 1000)]
    assert alignment.phone_sequence(spans) == "h E l"


@pytest.mark.parametrize("seed", range(20))
def test_rescaled_spans_still_tile_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    old = int(rng.integers(500, 60_000))
    cuts = np.unique(rng.integers(1, old, size=int(rng.integers(1, 60))))
    bounds = [0, *cuts.tolist(), old]
    spans = [PhoneSpan(f"p{i}", a, b) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    new = max(len(spans), int(round(old * 16000 / 22050)))
    out = alignment.rescale_spans(spans, new)
    assert alignment.tiling_problem(out, new) is None
    assert [s.phone for s in out] == [s.phone for s in spans]
    for s_old, s_new in zip(spans, out):  # boundaries move by at most the rounding (plus nudges)
        assert abs(s_new.start - s_old.start * new / old) <= len(spans)


def test_tiling_problem_names_the_defect() -> None:
    ok = [PhoneSpan("sil", 0, 5), PhoneSpan("a", 5, 9)]
    assert alignment.tiling_problem(ok, 9) is None
    assert "not at num_samples" in alignment.tiling_problem(ok, 10)
    assert "gap or overlap" in alignment.tiling_problem([PhoneSpan("a", 0, 4), PhoneSpan("b", 5, 9)], 9)
    assert "non-positive" in alignment.tiling_problem([PhoneSpan("a", 0, 0), PhoneSpan("b", 0, 9)], 9)
    assert "starts at 3" in alignment.tiling_problem([PhoneSpan("a", 3, 9)], 9)
    padded = alignment.pad_spans(ok, 4, 6)
    assert alignment.tiling_problem(padded, 19) is None and padded[0] == PhoneSpan("sil", 0, 9)


def test_noise_hits_the_requested_snr_and_reverb_keeps_length() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    clean = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for colour in ("white", "pink", "brown"):
        noisy = augment.add_noise(clean, 10.0, colour, rng)
        snr = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
        assert abs(snr - 10.0) < 0.2, colour
    ir = augment.synthetic_impulse_response(16_000, 0.4, rng)
    wet = augment.reverberate(clean, ir)
    assert wet.shape == clean.shape and not np.allclose(wet, clean)
    with pytest.raises(ValueError, match="unknown noise colour"):
        augment.coloured_noise(100, "purple", rng)


def test_render_noise_changes_audio_not_alignment() -> None:
    spk = make_speakers(1, 0)[0]
    plan = UtterancePlan(0, "spk000-read-000", spk.id, "read", "The cat slept on the roof.", spk.settings(), {"sid": spk.id}, {}, "x", 0.0, True)
    noisy = render(plan, NoiseConfig(prob=1.0, snr_db=(5.0, 5.0)), ReverbConfig(prob=1.0))
    clean = render(plan, NoiseConfig(prob=0.0), ReverbConfig(prob=0.0))
    assert noisy.error is None and clean.error is None
    assert noisy.alignment == clean.alignment and noisy.labels["pr"] == clean.labels["pr"]
    assert "noise" in noisy.source and "reverb" in noisy.source and clean.source.endswith("clean")
    assert noisy.wav.shape == clean.wav.shape
    corr = np.corrcoef(noisy.wav, clean.wav)[0, 1]
    assert corr < 0.95
    again = render(plan, NoiseConfig(prob=1.0, snr_db=(5.0, 5.0)), ReverbConfig(prob=1.0))
    assert np.array_equal(again.wav, noisy.wav)


def test_render_failure_becomes_a_quarantine_reason() -> None:
    spk = make_speakers(1, 0)[0]
    bad = spk.settings().__class__(voice="en-us+nosuchvoice")
    plan = UtterancePlan(0, "x-read-000", spk.id, "read", "hello", bad)
    out = render(plan, NoiseConfig(), ReverbConfig())
    assert out.wav is None and out.error.startswith("synthesis failed:") and "nosuchvoice" in out.error


def test_speech_alignment_matches_16k_length() -> None:
    wav, spans = speech_with_alignment("Stop.", make_speakers(1, 3)[0].settings(), 0)
    assert alignment.tiling_problem(spans, wav.shape[0]) is None
    phones = [s.phone for s in spans if s.phone != "sil"]
    assert len(phones) == 4 and phones[0] == "s" and phones[-1] == "p", phones


def test_speakers_are_distinct_and_prefix_stable() -> None:
    many = make_speakers(200, 0)
    keys = {(s.voice, s.pitch, s.range, s.rate) for s in many}
    assert len(keys) == 200
    assert make_speakers(10, 0) == many[:10]
    assert make_speakers(10, 1) != many[:10]


def test_config_rejects_bad_values_with_the_field_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="speakers"):
        SynthConfig(speakers=2)
    with pytest.raises(ValueError, match="unknown style"):
        SynthConfig(styles=["neutral", "angry"])
    with pytest.raises(ValueError, match="snr_db"):
        NoiseConfig(snr_db=(30.0, 5.0))
    path = tmp_path / "c.yaml"
    path.write_text("synth:\n  speakers: 40\n  typo_field: 1\n")
    with pytest.raises(ValueError, match=f"{path}: synth.typo_field: unknown key"):  # one line: file, key, reason
        SynthConfig.from_yaml(str(path))
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        SynthConfig.from_yaml(str(path))
    path.write_text("speakers: 40\nseed: 7\n")
    assert SynthConfig.from_yaml(str(path)).seed == 7
    with pytest.raises(ValueError, match="exceeds the smallest sentence pool"):
        from layerlab.data.synth.tasks import assign_roles, plan_corpus

        cfg = SynthConfig(speakers=4, read_per_speaker=40)
        spk = make_speakers(4, 0)
        plan_corpus(spk, assign_roles(spk, cfg), cfg)
