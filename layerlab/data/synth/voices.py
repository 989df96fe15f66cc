"""Synthetic speakers: distinct (accent, voice variant, pitch, pitch range, rate) combinations."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from layerlab.data.synth.espeak import VoiceSettings

#: English accents of espeak-ng used as a speaker attribute (American, British).
ACCENTS: tuple[str, ...] = ("en-us", "en")

#: Voice variants shipped in espeak-ng-data/voices/!v that sound like human talkers (robots,
#: whisper and other effects left out). Each changes formants, breathiness and base pitch.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Andy", "Annie", "Denis", "Gene", "Lee", "Michael", "adam", "anika",
    "aunty", "belinda", "benjamin", "david", "ed", "edward", "grandma", "grandpa", "ian", "john",
    "linda", "max", "norbert", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)  # fmt: skip

PITCH_RANGE = (25, 75)  # espeak base pitch parameter, 0..100
INTONATION_RANGE = (30, 75)  # espeak pitch-range parameter
RATE_RANGE = (145, 205)  # words per minute


@dataclass(frozen=True)
class Speaker:
    """One synthetic talker: a voice and its habitual prosody."""

    id: str
    accent: str
    variant: str
    pitch: int
    range: int
    rate: int

    @property
    def voice(self) -> str:
        """The espeak voice name, ``accent+variant``."""
        return f"{self.accent}+{self.variant}"

    def settings(self, rate_scale: float = 1.0, range_override: int | None = None, pitch_shift: int = 0) -> VoiceSettings:
        """Voice settings for one utterance, optionally altered for a speaking style."""
        return VoiceSettings(
            voice=self.voice,
            rate=int(round(self.rate * rate_scale)),
            pitch=int(np.clip(self.pitch + pitch_shift, 0, 100)),
            range=self.range if range_override is None else int(range_override),
        )

    def describe(self) -> dict[str, object]:
        """Plain-dict form for the manifest."""
        return asdict(self)


def make_speakers(count: int, seed: int) -> list[Speaker]:
    """``count`` distinct speakers, deterministic for ``seed``; speaker i does not depend on ``count``."""
    if count < 1:
        raise ValueError(f"speakers must be >= 1, got {count}")
    rng = np.random.default_rng([seed, 0x5BEA4E])
    variants = [VARIANTS[i] for i in rng.permutation(len(VARIANTS))]
    speakers: list[Speaker] = []
    seen: set[tuple[str, int, int, int]] = set()
    for i in range(count):
        variant = variants[i % len(variants)]
        accent = ACCENTS[(i + i // len(variants)) % len(ACCENTS)]
        while True:
            pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
            rng_range = int(rng.integers(INTONATION_RANGE[0], INTONATION_RANGE[1] + 1))
            rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
            key = (f"{accent}+{variant}", pitch, rng_range, rate)
            if key not in seen:
                seen.add(key)
                break
        speakers.append(Speaker(f"spk{i:03d}", accent, variant, pitch, rng_range, rate))
    return speakers
