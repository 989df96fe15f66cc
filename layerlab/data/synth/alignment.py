"""Frame-level phone alignments from espeak phoneme onsets, kept as exact tilings of the utterance.

Every alignment covers ``[0, num_samples)`` with consecutive spans of positive length (each end is
the next start); leading/trailing audio and pauses are the phone ``sil``.
"""

from __future__ import annotations

from typing import Sequence

from layerlab.data.records import PhoneSpan
from layerlab.data.alignment import rescale_spans as rescale_alignment
from layerlab.data.synth.espeak import PhonemeEvent

SILENCE = "sil"
_STRESS_MARKS = "',"
#: espeak's linking segment between vowels (``;``) is not a phone: it joins the preceding one.
_LINKING = {";"}


def normalise_phone(name: str) -> str:
    """Phone label of an espeak mnemonic: stress marks dropped, pauses (``_``, ``_:``...) -> ``sil``."""
    name = name.strip()
    if not name or name.startswith("_"):
        return SILENCE
    stripped = name.lstrip(_STRESS_MARKS)
    return stripped or SILENCE


def spans_from_events(events: Sequence[PhonemeEvent], num_samples: int) -> list[PhoneSpan]:
    """Tile ``[0, num_samples)`` with phones starting at the event onsets (``sil`` before the first)."""
    if num_samples <= 0:
        raise ValueError(f"cannot align an empty waveform ({num_samples} samples)")
    bounds: list[tuple[str, int]] = [(SILENCE, 0)]
    for ev in events:
        if ev.phoneme.strip() in _LINKING:
            continue
        start = min(max(int(ev.sample), bounds[-1][1]), num_samples)  # onsets never go backwards
        bounds.append((normalise_phone(ev.phoneme), start))
    spans = []
    for i, (phone, start) in enumerate(bounds):
        end = bounds[i + 1][1] if i + 1 < len(bounds) else num_samples
        spans.append(PhoneSpan(phone, start, end))
    return merge_silences([s for s in spans if s.end > s.start])


def merge_silences(spans: Sequence[PhoneSpan]) -> list[PhoneSpan]:
    """Join consecutive ``sil`` spans into one."""
    out: list[PhoneSpan] = []
    for s in spans:
        if out and s.phone == SILENCE and out[-1].phone == SILENCE:
            out[-1] = PhoneSpan(SILENCE, out[-1].start, s.end)
        else:
            out.append(s)
    return out


def rescale_spans(spans: Sequence[PhoneSpan], new_length: int) -> list[PhoneSpan]:
    """Map a tiling of ``[0, old)`` onto ``[0, new_length)`` (resampling), still an exact tiling."""
    if not spans:
        raise ValueError("cannot rescale an empty alignment")
    return rescale_alignment(spans, spans[-1].end, new_length)


def pad_spans(spans: Sequence[PhoneSpan], before: int, after: int) -> list[PhoneSpan]:
    """Shift an alignment by ``before`` samples of added silence and extend it by ``after``."""
    out = [PhoneSpan(s.phone, s.start + before, s.end + before) for s in spans]
    if before > 0:
        out.insert(0, PhoneSpan(SILENCE, 0, before))
    if after > 0:
        end = out[-1].end
        out.append(PhoneSpan(SILENCE, end, end + after))
    return merge_silences(out)


def tiling_problem(spans: Sequence[PhoneSpan] | None, num_samples: int) -> str | None:
    """Why ``spans`` is not an exact tiling of ``[0, num_samples)``, or None when it is."""
    if not spans:
        return "alignment is empty"
    if spans[0].start != 0:
        return f"alignment starts at {spans[0].start}, not 0"
    if spans[-1].end != num_samples:
        return f"alignment ends at {spans[-1].end}, not at num_samples={num_samples}"
    for i, s in enumerate(spans):
        if s.end <= s.start:
            return f"span {i} ({s.phone!r}) has non-positive length [{s.start}, {s.end})"
        if i + 1 < len(spans) and spans[i + 1].start != s.end:
            return f"gap or overlap between span {i} (ends {s.end}) and span {i + 1} (starts {spans[i + 1].start})"
        if not s.phone or " " in s.phone:
            return f"span {i} has an invalid phone label {s.phone!r}"
    return None


def phone_sequence(spans: Sequence[PhoneSpan]) -> str:
    """The PR label: the utterance's phones in order, space-separated, without ``sil``."""
    return " ".join(s.phone for s in spans if s.phone != SILENCE)
