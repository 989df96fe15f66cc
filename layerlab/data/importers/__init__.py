"""Dataset importers: turn a dataset's own directory layout into audio shards.

One module per dataset (like lhotse's recipes), each with ``build(ctx, **options)`` streaming
the tree's files into a ``ShardWriter``. ``import_dataset`` picks the module lazily, so a recipe's
imports cost nothing until it is used.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any, Callable

from layerlab import storage
from layerlab.data.audio import AudioLimits
from layerlab.data.shards import BuildSummary

#: kind -> (module under layerlab.data.importers, one-line description)
KINDS: dict[str, tuple[str, str]] = {
    "librispeech": ("librispeech", "LibriSpeech subsets or a flat <speaker>/<utt>.flac excerpt; transcripts when present"),
    "voxceleb1": ("voxceleb1", "VoxCeleb1 wav/ tree, iden_split.txt (SID splits) and veri_test*.txt/list_test_*.txt (ASV trials)"),
    "speechcommands": ("speechcommands", "Speech Commands v0.01 with SUPERB's 12-class KS mapping and 1 s _silence_ crops"),
    "fluent": ("fluent", "Fluent Speech Commands (data/*_data.csv, wavs/speakers/...): IC action/object/location"),
    "iemocap": ("iemocap", "IEMOCAP sentences/wav + EmoEvaluation: SUPERB 4-class ER, sessions as folds"),
    "folder": ("folder", "any folder of audio files; speaker = parent directory name"),
    "csv": ("csv_manifest", "a CSV manifest: path (relative to the CSV) [, id, speaker, transcript, split, <label columns>]"),
}

#: Options every kind accepts (they configure the shard writer, not the recipe).
COMMON_OPTIONS = ("name", "max_shard_bytes", "max_seconds")


def recipe_module(kind: str) -> ModuleType:
    """Import the recipe module for ``kind``; ValueError listing the kinds for an unknown one."""
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return importlib.import_module(f"{__name__}.{KINDS[kind][0]}")


def recipe_options(kind: str) -> dict[str, inspect.Parameter]:
    """The keyword options the recipe's ``build`` accepts, with their defaults."""
    build: Callable[..., Any] = recipe_module(kind).build
    params = list(inspect.signature(build).parameters.values())[1:]  # drop ctx
    return {p.name: p for p in params}


def import_dataset(
    kind: str,
    src: str,
    out_url: str,
    *,
    name: str | None = None,
    max_shard_bytes: int = 128 * 1024 * 1024,
    max_seconds: float = AudioLimits().max_seconds,
    overwrite: bool = False,
    **options: Any,
) -> BuildSummary:
    """Import the dataset at ``src`` (path or fsspec URL) as audio shards at ``out_url``.

    ``options`` go to the recipe (see each module's ``build``); unusable inputs are quarantined
    with their reason and counted in the returned summary.
    """
    from layerlab.data.importers.context import ImportContext
    from layerlab.data.importers.tree import SourceTree
    from layerlab.data.shards import ShardWriter

    module = recipe_module(kind)
    allowed = recipe_options(kind)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{kind} importer: unknown option(s) {unknown}; it accepts {sorted(allowed) or 'none'} plus {list(COMMON_OPTIONS)}")
    if not storage.exists(src):
        raise FileNotFoundError(f"{src}: source not found")
    from layerlab.data.shards import existing_summary, prepare_output

    build = {"by": f"import {kind}", "source": storage.canonical_url(src), "name": name or kind, "max_shard_bytes": int(max_shard_bytes),
             "max_seconds": float(max_seconds), "options": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())}}
    if prepare_output(out_url, build, overwrite):
        return existing_summary(out_url)
    writer = ShardWriter(
        out_url,
        dataset=name or kind,
        max_shard_bytes=max_shard_bytes,
        limits=AudioLimits(max_seconds=max_seconds),
        extra={"importer": kind, "source": str(src), "build": build},
    )
    with writer:
        ctx = ImportContext(SourceTree(src), writer)
        module.build(ctx, **options)
        writer.extra["import_counts"] = dict(sorted(ctx.counts.items()))
    return writer.summary()


__all__ = ["KINDS", "COMMON_OPTIONS", "import_dataset", "recipe_module", "recipe_options"]
