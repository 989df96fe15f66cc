"""Typed configuration of the synthetic corpus (defaults = the embedded demo corpus)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


NoiseColour = Literal["white", "pink", "brown"]

#: Speaking styles (the ER stand-in, task ``style``): name -> (rate scale, pitch range or None, pitch shift).
STYLES: dict[str, tuple[float, int | None, int]] = {
    "neutral": (1.0, None, 0),
    "fast": (1.45, None, 0),
    "slow": (0.65, None, 0),
    "monotone": (1.0, 0, 0),
    "animated": (1.0, 100, 8),
}


class NoiseConfig(BaseModel):
    """Additive coloured noise at a random SNR, applied to a fraction of the utterances."""

    model_config = ConfigDict(extra="forbid")
    prob: float = Field(0.7, ge=0.0, le=1.0, description="fraction of speech utterances that get noise")
    snr_db: tuple[float, float] = Field((5.0, 30.0), description="SNR range in dB, drawn uniformly")
    colours: list[NoiseColour] = Field(default_factory=lambda: ["white", "pink", "brown"], min_length=1)
    silence_rms: tuple[float, float] = Field((0.002, 0.03), description="RMS range of the _silence_ (noise-only) clips")

    @model_validator(mode="after")
    def _ordered(self) -> "NoiseConfig":
        if self.snr_db[0] > self.snr_db[1] or self.silence_rms[0] > self.silence_rms[1] or self.silence_rms[0] <= 0:
            raise ValueError(f"noise ranges must be (low, high) with low <= high and positive RMS: snr_db={self.snr_db}, silence_rms={self.silence_rms}")
        return self


class ReverbConfig(BaseModel):
    """Convolution with a synthetic exponentially decaying impulse response."""

    model_config = ConfigDict(extra="forbid")
    prob: float = Field(0.4, ge=0.0, le=1.0, description="fraction of speech utterances that get reverb")
    rt60_s: tuple[float, float] = Field((0.15, 0.6), description="RT60 range in seconds, drawn uniformly")

    @model_validator(mode="after")
    def _ordered(self) -> "ReverbConfig":
        if not 0 < self.rt60_s[0] <= self.rt60_s[1] <= 3.0:
            raise ValueError(f"rt60_s must be (low, high) with 0 < low <= high <= 3 s, got {self.rt60_s}")
        return self


class SynthConfig(BaseModel):
    """What to generate: speakers, utterances per speaker per task, splits, augmentation, output."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = "synth"
    speakers: int = Field(48, ge=4, le=10_000, description="distinct synthetic talkers")
    seed: int = Field(0, ge=0)
    read_per_speaker: int = Field(12, ge=3, description="read sentences per speaker (ASR, PR, SID, ASV)")
    keyword_repeats: int = Field(1, ge=0, description="times each of the 10 keywords is spoken per speaker (KS)")
    unknown_per_speaker: int = Field(2, ge=0, description="non-keyword words per speaker (KS _unknown_)")
    silence_per_speaker: int = Field(1, ge=0, description="noise-only clips per speaker (KS _silence_)")
    commands_per_speaker: int = Field(6, ge=0, description="spoken commands per speaker (IC)")
    style_sentences_per_speaker: int = Field(1, ge=0, description="sentences each speaker reads in every style")
    styles: list[str] = Field(default_factory=lambda: list(STYLES), min_length=2)
    keyword_clip_seconds: float = Field(1.0, gt=0, le=5, description="keyword clips are padded to this length")
    content_dev_fraction: float = Field(0.1, gt=0, lt=0.5, description="speakers in dev for speaker-disjoint tasks (also the ASV dev speakers)")
    content_test_fraction: float = Field(0.1, gt=0, lt=0.5, description="speakers in test for speaker-disjoint tasks (drawn among the ASV test speakers)")
    sid_dev_fraction: float = Field(0.2, gt=0, lt=0.5, description="each evaluation speaker's read utterances in SID dev")
    sid_test_fraction: float = Field(0.2, gt=0, lt=0.5, description="each evaluation speaker's read utterances in SID test")
    asv_heldout_fraction: float = Field(0.25, gt=0, lt=1, description="speakers held out for the ASV trial list (the content test speakers are among them)")
    asv_nontarget_per_target: float = Field(1.0, gt=0, description="non-target trials per target trial")
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    reverb: ReverbConfig = Field(default_factory=ReverbConfig)
    max_shard_bytes: int = Field(16 * 1024 * 1024, ge=64 * 1024)
    workers: int = Field(2, ge=1, le=256, description="generator processes")

    @model_validator(mode="after")
    def _consistent(self) -> "SynthConfig":
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown:
            raise ValueError(f"unknown style(s) {unknown}; choose from {sorted(STYLES)}")
        if len(set(self.styles)) != len(self.styles):
            raise ValueError(f"styles must be distinct, got {self.styles}")
        if self.content_dev_fraction + self.content_test_fraction >= 0.9:
            raise ValueError("content_dev_fraction + content_test_fraction must leave speakers for training")
        if self.sid_dev_fraction + self.sid_test_fraction >= 0.9:
            raise ValueError("sid_dev_fraction + sid_test_fraction must leave utterances for training")
        return self

    @classmethod
    def from_yaml(cls, url: str) -> "SynthConfig":
        """Load a config from a YAML file (any storage URL; a bare config or a ``synth:`` section); one-line errors."""
        from layerlab.config import read_yaml, validate  # imported here: generator processes never need fsspec

        data = read_yaml(url)
        return validate(cls, data.get("synth", data), url, ("synth",) if "synth" in data else ())
