"""ctypes binding to libespeak-ng (from the ``espeakng-loader`` wheel): offline TTS with phoneme events.

The library is a process-global singleton with hidden state that carries over between calls (pitch
flutter, wave phase), so the same text can render slightly differently depending on what was spoken
before. Callers that need determinism synthesise each utterance in a fresh fork (see ``isolation``).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# speak_lib.h constants
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE, PARAM_WORDGAP = 1, 2, 3, 4, 7
EE_OK = 0
_ERRORS = {-1: "internal error", 1: "buffer full", 2: "not found"}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (type, ids, text/audio positions, sample index, user data, id)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms since the start of this synthesis
        ("sample", ctypes.c_int),  # sample index since the start of this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(RuntimeError):
    """libespeak-ng refused a call; the message names the call and its argument."""


@dataclass(frozen=True)
class VoiceSettings:
    """How one utterance is spoken: espeak voice name (``lang+variant``) and prosody parameters."""

    voice: str  # e.g. "en-us+m3"
    rate: int = 175  # words per minute (80..450)
    pitch: int = 50  # base pitch (0..100)
    range: int = 50  # pitch range (0..100; 0 = monotone)
    volume: int = 100  # amplitude (0..200)
    wordgap: int = 0  # extra pause between words, units of 10 ms


@dataclass(frozen=True)
class PhonemeEvent:
    """A phoneme starts at ``sample`` (at the engine's sample rate); names are espeak mnemonics."""

    phoneme: str
    sample: int


@dataclass(frozen=True)
class Synthesis:
    """Raw engine output: int16 samples at ``sample_rate`` and the phoneme onsets in order."""

    samples: np.ndarray
    sample_rate: int
    phonemes: list[PhonemeEvent]


def library_paths() -> tuple[str, str]:
    """(shared library path, espeak-ng-data directory) shipped in the ``espeakng-loader`` wheel."""
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise EspeakError("the synthetic corpus needs the 'espeakng-loader' package (pip install espeakng-loader)") from exc
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class EspeakEngine:
    """libespeak-ng initialised for synchronous synthesis with phoneme events (one per process)."""

    def __init__(self) -> None:
        lib_path, data_path = library_paths()
        self.data_path = data_path
        try:
            self._lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EspeakError(f"cannot load libespeak-ng from {lib_path}: {exc}") from exc
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        if not hasattr(lib, "espeak_ng_SetRandSeed"):
            raise EspeakError(f"{lib_path} lacks espeak_ng_SetRandSeed (libespeak-ng >= 1.52 needed for reproducible audio)")
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        # espeak_Initialize wants the directory that *contains* espeak-ng-data.
        root = str(Path(data_path).parent).encode()
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, root, INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data in {data_path}")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[PhonemeEvent] = []
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._libc = ctypes.CDLL(None)

    @property
    def version(self) -> str:
        """The library's version string (e.g. ``1.52.0``)."""
        return self._lib.espeak_Info(None).decode()

    def _on_audio(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events and events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append(PhonemeEvent(name, int(ev.sample)))
            i += 1
        return 0  # 0 = continue synthesis

    def _check(self, code: int, what: str) -> None:
        if code != EE_OK:
            raise EspeakError(f"{what} failed: {_ERRORS.get(code, f'error {code}')}")

    def _check_variant(self, voice: str) -> None:
        """espeak silently ignores an unknown ``+variant``; refuse it instead."""
        if "+" in voice:
            variant = voice.split("+", 1)[1]
            if not (Path(self.data_path) / "voices" / "!v" / variant).is_file():
                raise EspeakError(f"voice {voice!r}: variant {variant!r} not found in {self.data_path}/voices/!v")

    def synthesize(self, text: str, settings: VoiceSettings, seed: int = 0) -> Synthesis:
        """Speak ``text`` with ``settings``; returns the samples and the phoneme onsets.

        ``seed`` seeds espeak's noise sources (breathy voices): espeak seeds them from the clock
        at start-up, so without it the same call differs from run to run.
        """
        if not text.strip():
            raise EspeakError("cannot synthesise empty text")
        self._check_variant(settings.voice)
        with self._lock:
            self._check(self._lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF), "espeak_ng_SetRandSeed")
            self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))  # libc rand(), used by older code paths
            self._check(self._lib.espeak_SetVoiceByName(settings.voice.encode()), f"espeak_SetVoiceByName({settings.voice!r}) in {self.data_path}")
            for param, value, name in (
                (PARAM_RATE, settings.rate, "rate"),
                (PARAM_VOLUME, settings.volume, "volume"),
                (PARAM_PITCH, settings.pitch, "pitch"),
                (PARAM_RANGE, settings.range, "range"),
                (PARAM_WORDGAP, settings.wordgap, "wordgap"),
            ):
                self._check(self._lib.espeak_SetParameter(param, int(value), 0), f"espeak_SetParameter({name}={value})")
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            self._check(self._lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None), f"espeak_Synth({text[:40]!r})")
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
            return Synthesis(samples.astype(np.int16, copy=False), self.sample_rate, list(self._events))


_ENGINE: EspeakEngine | None = None


def engine() -> EspeakEngine:
    """This process's engine, initialised on first use."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = EspeakEngine()
    return _ENGINE
