"""The text lists shipped with the package: read sentences, spoken commands, non-keyword words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_PACKAGE = "layerlab.data.synth"


@dataclass(frozen=True)
class Command:
    """One spoken command with its intent slots (``none`` = slot empty)."""

    action: str
    object: str
    location: str
    phrase: str


def _lines(name: str) -> list[str]:
    """Non-empty, non-comment lines of ``text/<name>``."""
    text = resources.files(_PACKAGE).joinpath("text", name).read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@lru_cache(maxsize=None)
def sentences() -> tuple[str, ...]:
    """Read sentences (ASR / PR / SID / ASV / style), in file order."""
    return tuple(_lines("sentences.txt"))


@lru_cache(maxsize=None)
def commands() -> tuple[Command, ...]:
    """Intent-classification commands, in file order."""
    out = []
    for n, line in enumerate(_lines("commands.txt"), 1):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"{_PACKAGE}/text/commands.txt: line {n} {line!r} is not action|object|location|phrase")
        out.append(Command(*parts))
    return tuple(out)


@lru_cache(maxsize=None)
def unknown_words() -> tuple[str, ...]:
    """Words for the keyword-spotting ``_unknown_`` class."""
    return tuple(_lines("unknown_words.txt"))


def transcript_of(text: str) -> str:
    """ASR reference text: lower case, letters, apostrophes and single spaces only."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]+", " ", text.lower())).strip()
