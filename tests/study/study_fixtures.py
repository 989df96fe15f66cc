"""Study test helpers: tiny study configs on a synthetic corpus (seconds to build, real espeak-ng speech)."""

from __future__ import annotations

from typing import Any

TINY_SYNTH = {"speakers": 4, "read_per_speaker": 3, "keyword_repeats": 0, "unknown_per_speaker": 0, "silence_per_speaker": 0,
              "commands_per_speaker": 1, "style_sentences_per_speaker": 0, "workers": 1}


def tiny_study(**overrides: Any) -> dict[str, Any]:
    """A study document: tiny synthetic corpus, FBANK and MFCC, utterance-level CKA with a small bootstrap."""
    doc: dict[str, Any] = {
        "name": "tiny",
        "datasets": {"synth": {"synth": dict(TINY_SYNTH)}},
        "models": {"fbank": {"spec": "fbank", "label": "FBANK"}, "mfcc": {"spec": "mfcc", "label": "MFCC"}},
        "extract": {"concurrency": [1, 1], "batch_seconds": 20},
        "probe": None,
        "cka": {"within": {"levels": ["utterance"], "bootstrap": 10}, "across": {"levels": ["utterance"], "bootstrap": 10}},
        "report": {"title": "tiny study"},
    }
    doc.update(overrides)
    return doc
