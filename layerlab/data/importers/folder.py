"""Any folder of audio files: every audio file becomes an utterance, other files are reported.

Id = the path below the root without extension, ``/`` replaced by ``-``. Speaker = the parent
folder's name (``speaker_from="parent"``), the top-level folder's name (``"top"``), or none
(``"none"``); files directly in the root get speaker ``""`` unless ``speaker_from="none"``.
"""

from __future__ import annotations

import posixpath

from layerlab.data.importers.context import ImportContext

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf", ".rf64"})
SPEAKER_MODES = ("parent", "top", "none")


def path_id(rel: str) -> str:
    """A stable utterance id from a relative path: ``spk1/a/b.wav`` -> ``spk1-a-b``."""
    return posixpath.splitext(rel)[0].replace("/", "-")


def speaker_of(rel: str, mode: str) -> str:
    """The speaker for ``rel`` under ``mode`` (see the module docstring)."""
    parts = rel.split("/")
    if mode == "none" or len(parts) == 1:
        return ""
    return parts[-2] if mode == "parent" else parts[0]


def build(ctx: ImportContext, speaker_from: str = "parent") -> None:
    """Stream every audio file under the root into the writer."""
    if speaker_from not in SPEAKER_MODES:
        raise ValueError(f"speaker_from must be one of {SPEAKER_MODES}, got {speaker_from!r}")
    for rel in ctx.tree.walk_files():
        if posixpath.splitext(rel)[1].lower() not in AUDIO_EXTENSIONS:
            ctx.unexpected(rel, f"not an audio file (extension not in {sorted(AUDIO_EXTENSIONS)})")
            continue
        if ctx.add_file(path_id(rel), rel, speaker=speaker_of(rel, speaker_from)):
            ctx.count("kept")
