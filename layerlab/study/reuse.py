"""What a finished stage leaves in its done-marker, and the check that decides whether a rerun may reuse it.

Markers are relocatable: every path under ``--out`` in a stage's result is stored as ``{out}/<relative>``
and resolved against the ``--out`` of the run that reads it, so a study copied or moved (also between a
local disk and ``s3://``) reuses its stages where they now are. A marker lists the files its stage wrote
under its output folder (``artifacts.FileEntry``: name relative to that folder, size, SHA-256; shards a
manifest lists keep the manifest's checksum). Reuse checks sizes always (one listing per stage) and
checksums with ``--verify``; a damaged stage is recomputed, and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layerlab import artifacts, storage

#: the placeholder of the study root inside stored results
OUT_TOKEN = "{out}"
#: resumable working state inside a stage's folder, not results (Ray Train and Tune checkpoints)
INTERNAL_DIRS = {"train": ("ray",), "probe": ("tune",)}


def relocatable(obj: Any, out: str) -> Any:
    """``obj`` with every occurrence of the study root ``out`` in its strings replaced by :data:`OUT_TOKEN`."""
    root = out.rstrip("/")
    if isinstance(obj, str):
        if obj == root:
            return OUT_TOKEN
        return obj.replace(root + "/", OUT_TOKEN + "/")
    if isinstance(obj, dict):
        return {k: relocatable(v, out) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relocatable(v, out) for v in obj]
    return obj


def resolve(obj: Any, out: str) -> Any:
    """Undo :func:`relocatable` for the study root ``out`` of this run."""
    root = out.rstrip("/")
    if isinstance(obj, str):
        return obj.replace(OUT_TOKEN, root) if OUT_TOKEN in obj else obj
    if isinstance(obj, dict):
        return {k: resolve(v, out) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve(v, out) for v in obj]
    return obj


def inside(url: str, out: str) -> bool:
    """Whether ``url`` lies in the study root ``out`` (both canonical URLs)."""
    return url.rstrip("/").startswith(out.rstrip("/") + "/")


def produced_files(kind: str, stage_out: str) -> list[dict[str, Any]]:
    """File entries of everything a stage wrote under its folder (its resumable working state left out)."""
    return [e.model_dump() for e in artifacts.folder_entries(stage_out, exclude=INTERNAL_DIRS.get(kind, ()))]


def stage_files(stage: Any, out: str) -> list[dict[str, Any]] | None:
    """The file entries a finished stage's done-marker records (None for an output outside ``out``, e.g. a user's dataset)."""
    return produced_files(stage.kind, stage.out) if inside(stage.out, out) else None


@dataclass
class Reuse:
    """A stage's done-marker when its fingerprint matches; ``damage`` says why its outputs cannot be reused as they are."""

    done: dict[str, Any]
    damage: str | None = None

    @property
    def ok(self) -> bool:
        return self.damage is None


def check_outputs(done: dict[str, Any], stage_out: str, checksums: bool = False) -> str | None:
    """Why a finished stage's recorded files are not intact (first problem and a count), or None.

    Markers of earlier versions list no files: their output folder must at least exist.
    """
    if done.get("status") != "done":
        return None
    files = done.get("files")
    if files is None:
        return None if storage.exists(stage_out) else f"{stage_out}: missing"
    problems = artifacts.check_folder(stage_out, [artifacts.FileEntry.model_validate(f) for f in files], checksums)
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def shard_damage_only(done: dict[str, Any], stage_out: str, checksums: bool = False) -> bool:
    """Whether every damaged file of an extraction is a shard its cache manifest lists (extraction redoes just those)."""
    files = [artifacts.FileEntry.model_validate(f) for f in done.get("files") or []]
    listed = artifacts.listed_entries(stage_out)
    bad = [p.split(": ", 1)[0] for p in artifacts.check_folder(stage_out, files, checksums)]
    return bool(listed) and all(url[len(stage_out.rstrip("/")) + 1:] in listed for url in bad)


__all__ = ["INTERNAL_DIRS", "OUT_TOKEN", "Reuse", "check_outputs", "inside", "produced_files", "relocatable", "resolve", "shard_damage_only"]
