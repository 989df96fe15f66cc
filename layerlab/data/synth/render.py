"""Render one planned utterance in a generator process: speak, resample, align, degrade.

Runs in worker processes: each worker initialises libespeak-ng once and speaks every utterance in
a fresh fork of itself (``isolation.call_in_fork``), so the audio does not depend on which worker
rendered what before. Failures come back as a reason string for the quarantine, never as a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerlab.data.audio import TARGET_SAMPLE_RATE, resample
from layerlab.data.records import PhoneSpan
from layerlab.data.synth import alignment
from layerlab.data.synth.augment import degrade, noise_clip
from layerlab.data.synth.config import NoiseConfig, ReverbConfig
from layerlab.data.synth.espeak import Synthesis, VoiceSettings, engine
from layerlab.data.synth.isolation import call_in_fork
from layerlab.data.synth.tasks import UtterancePlan


@dataclass
class RenderedUtterance:
    """A worker's result: 16 kHz audio with its exact alignment, or the reason it failed."""

    index: int
    id: str
    wav: np.ndarray | None
    alignment: list[PhoneSpan] | None
    labels: dict[str, str]
    source: str
    error: str | None = None


def init_worker() -> None:
    """Pool initialiser: load and initialise libespeak-ng (never speak here: forks must start clean)."""
    engine()


def _speak(text: str, settings: VoiceSettings, seed: int) -> Synthesis:
    """Runs inside the fork."""
    return engine().synthesize(text, settings, seed)


def speech_with_alignment(text: str, settings: VoiceSettings, seed: int) -> tuple[np.ndarray, list[PhoneSpan]]:
    """Speak ``text`` and return 16 kHz float32 audio and its phone alignment (an exact tiling)."""
    syn = call_in_fork(_speak, text, settings, seed)
    if syn.samples.size == 0:
        raise ValueError(f"espeak produced no audio for {text!r} with voice {settings.voice}")
    spans = alignment.spans_from_events(syn.phonemes, int(syn.samples.shape[0]))
    wav = resample(syn.samples.astype(np.float32) / 32768.0, syn.sample_rate, TARGET_SAMPLE_RATE)
    return wav, alignment.rescale_spans(spans, int(wav.shape[0]))


def _pad(wav: np.ndarray, spans: list[PhoneSpan], seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, list[PhoneSpan]]:
    """Pad with silence to ``seconds`` (random split before/after); longer clips are left as they are."""
    missing = int(round(seconds * TARGET_SAMPLE_RATE)) - wav.shape[0]
    if missing <= 0:
        return wav, spans
    before = int(rng.integers(0, missing + 1))
    after = missing - before
    return np.pad(wav, (before, after)), alignment.pad_spans(spans, before, after)


def render(plan: UtterancePlan, noise: NoiseConfig, reverb: ReverbConfig) -> RenderedUtterance:
    """Produce the audio, alignment and alignment-derived labels of one utterance."""
    rng = np.random.default_rng(plan.seed)
    try:
        if plan.settings is None:  # noise-only clip
            n = int(round(plan.pad_to_seconds * TARGET_SAMPLE_RATE))
            wav, what = noise_clip(n, noise, rng)
            spans = [PhoneSpan(alignment.SILENCE, 0, n)]
            source = f"synth:{what}"
        else:
            wav, spans = speech_with_alignment(plan.text, plan.settings, plan.seed & 0xFFFFFFFF)
            if plan.pad_to_seconds > 0:
                wav, spans = _pad(wav, spans, plan.pad_to_seconds, rng)
            wav, what = degrade(wav, TARGET_SAMPLE_RATE, noise, reverb, rng)
            s = plan.settings
            source = f"synth:espeak-ng {s.voice} rate={s.rate} pitch={s.pitch} range={s.range}; {what}"
        problem = alignment.tiling_problem(spans, int(wav.shape[0]))
        if problem:
            raise ValueError(f"alignment check failed: {problem}")
        labels = dict(plan.labels)
        if plan.with_phone_label:
            labels["pr"] = alignment.phone_sequence(spans)
            if not labels["pr"]:
                raise ValueError("alignment has no phones (only silence)")
        return RenderedUtterance(plan.index, plan.id, wav.astype(np.float32, copy=False), spans, labels, source)
    except Exception as exc:  # noqa: BLE001 - reported to the quarantine with its reason
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return RenderedUtterance(plan.index, plan.id, None, None, dict(plan.labels), f"synth:{plan.family}", f"synthesis failed: {reason}")
