"""Speech Commands v0.01: ``<word>/<hash>_nohash_<n>.wav`` with SUPERB's 12-class KS mapping.

Splits: files in ``validation_list.txt`` are ``dev``, in ``testing_list.txt`` ``test``, the rest
``train``. Labels: ``ks`` is the word for the ten command words, ``_unknown_`` for every other
word, ``_silence_`` for 1 s crops of ``_background_noise_/*.wav``; ``word`` keeps the original.
Speaker = the hash prefix. Silence crops are deterministic: consecutive non-overlapping 1 s
windows of each noise file; crop ``k`` goes to ``dev`` when ``k % 10 == 8``, ``test`` when
``k % 10 == 9``, else ``train``. (SUPERB tests on the separate v0.01 test-set archive; this
importer follows the lists inside the main archive.)
"""

from __future__ import annotations

import posixpath
import re

import numpy as np

from layerlab.data.audio import BadAudio, decode
from layerlab.data.importers.context import ImportContext
from layerlab.data.records import AudioRecord

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
NOISE_DIR = "_background_noise_"
LISTS = {"validation_list.txt": "dev", "testing_list.txt": "test"}
ROOT_FILES = {*LISTS, "README.md", "LICENSE", "README.txt"}
FILE_RE = re.compile(r"^([0-9a-f]{8})_nohash_(\d+)\.wav$")


def ks_label(word: str) -> str:
    """SUPERB's 12-class mapping of a Speech Commands word (``_unknown_`` outside the ten)."""
    return word if word in COMMANDS else UNKNOWN


def silence_split(index: int) -> str:
    """Deterministic 80/10/10 split of the silence crops by crop index."""
    return {8: "dev", 9: "test"}.get(index % 10, "train")


def build(ctx: ImportContext, silence: bool = True, silence_seconds: float = 1.0) -> None:
    """Stream the word folders, then the silence crops, into the writer."""
    tree = ctx.tree
    dirs, files = tree.listdir()
    ctx.check_root(files, ROOT_FILES, "Speech Commands")
    listed: dict[str, tuple[str, str]] = {}  # "word/file.wav" -> (split, list name)
    for name, split in LISTS.items():
        if name not in files:
            ctx.count(f"{name} absent")
            continue
        for _, line in tree.iter_lines(name):
            if line.strip():
                listed[line.strip()] = (split, name)
    for word in dirs:
        if word == NOISE_DIR:
            continue
        for rel in tree.walk_files(word):
            if rel.count("/") != 1:
                ctx.unexpected(rel, "nested too deep (expected <word>/<hash>_nohash_<n>.wav)")
                continue
            m = FILE_RE.match(posixpath.basename(rel))
            if not m:
                ctx.unexpected(rel, "not a <hash>_nohash_<n>.wav file")
                continue
            split = listed.pop(rel, ("train", ""))[0]
            label = ks_label(word)
            if ctx.add_file(
                f"{word}_{m.group(1)}_nohash_{m.group(2)}",
                rel,
                speaker=m.group(1),
                labels={"ks": label, "word": word},
                splits={"ks": split},
            ):
                ctx.count(f"kept ks={label}")
    for rel, (_, name) in sorted(listed.items()):
        word, _, base = rel.partition("/")
        ctx.missing(f"{word}_{posixpath.splitext(base)[0]}", rel, name)
    if NOISE_DIR in dirs:
        _import_silence(ctx, silence, silence_seconds)
    ctx.publish_extra(
        ks_classes=[*COMMANDS, UNKNOWN, SILENCE],
        split_convention="ks: validation_list.txt = dev, testing_list.txt = test, rest train; silence crop k: k%10==8 dev, 9 test",
    )


def _import_silence(ctx: ImportContext, enabled: bool, seconds: float) -> None:
    """Cut each background-noise file into ``seconds``-long crops labelled ``_silence_``."""
    for rel in ctx.tree.walk_files(NOISE_DIR):
        name = posixpath.basename(rel)
        if rel.count("/") != 1 or not name.endswith(".wav"):
            if name not in ("README.md", "README.txt"):
                ctx.unexpected(rel, "not a background-noise .wav file")
            continue
        if not enabled:
            ctx.count("background-noise files not cropped (silence=False)")
            continue
        stem = posixpath.splitext(name)[0]
        try:
            wav, sr = decode(ctx.tree.read_bytes(rel))
        except OSError as exc:
            ctx.reject(f"{SILENCE}_{stem}", rel, f"unreadable file: {exc}")
            continue
        except BadAudio as exc:
            ctx.reject(f"{SILENCE}_{stem}", rel, str(exc))
            continue
        step = int(round(seconds * sr))
        crops = wav.shape[0] // step if step else 0
        if crops == 0:
            ctx.reject(f"{SILENCE}_{stem}", rel, f"too short for a {seconds:g} s silence crop: {wav.shape[0] / sr:.3f} s")
            continue
        for k in range(crops):
            record = AudioRecord(
                id=f"{SILENCE}_{stem}_{k:03d}",
                audio=np.ascontiguousarray(wav[k * step:(k + 1) * step]),
                sample_rate=sr,
                speaker=SILENCE,
                source=f"{rel}#{k * step}-{(k + 1) * step}",
                labels={"ks": SILENCE, "word": SILENCE},
                splits={"ks": silence_split(k)},
            )
            if ctx.add_record(record):
                ctx.count(f"kept ks={SILENCE}")
