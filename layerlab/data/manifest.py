"""The ``manifest.json`` of an audio-shard dataset: shards with row counts and checksums, counts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from layerlab import storage
from layerlab.artifacts import MANIFEST_NAME, QUARANTINE_NAME, FileEntry, ManifestBase
from layerlab.data.tasks import TaskSpec, tasks_from_extra

__all__ = ["AudioManifest", "FileEntry", "MANIFEST_NAME", "QUARANTINE_NAME", "read_manifest", "write_manifest"]


class AudioManifest(ManifestBase):
    """Everything a reader needs to stream a dataset and check its integrity."""

    format: Literal["layerlab-audio-shards"] = "layerlab-audio-shards"
    version: int = 1
    dataset: str
    sample_rate: int = 16_000
    shards: list[FileEntry] = Field(default_factory=list)
    kept: int = 0
    quarantined: int = 0
    audio_seconds: float = 0.0
    quarantine: FileEntry | None = None
    tables: dict[str, FileEntry] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, TaskSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _derive_tasks(cls, data: Any) -> Any:
        """Manifests written before the task contract: derive the tasks from what ``extra`` records."""
        if isinstance(data, dict) and "tasks" not in data:
            data = {**data, "tasks": tasks_from_extra(data.get("extra") or {})}
        return data

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600.0

    def checksum(self) -> str:
        """A digest of the shard checksums: identifies this exact dataset content."""
        import hashlib

        h = hashlib.sha256()
        for s in self.shards:
            h.update(f"{s.name}:{s.sha256}\n".encode())
        return h.hexdigest()


def read_manifest(root: str) -> AudioManifest:
    """Load and validate ``<root>/manifest.json``; errors name the dataset URL."""
    url = storage.join(root, MANIFEST_NAME)
    if not storage.exists(url):
        raise FileNotFoundError(f"{root}: not an audio-shard dataset (no {MANIFEST_NAME}); build one with `layerlab corpus synth` or `layerlab corpus import`")
    try:
        return AudioManifest.model_validate(storage.read_json(url))
    except ValueError as exc:
        raise ValueError(f"{url}: invalid manifest: {exc}") from exc


def write_manifest(root: str, manifest: AudioManifest) -> None:
    """Atomically publish the manifest (written last: its presence marks a complete dataset)."""
    storage.write_json(storage.join(root, MANIFEST_NAME), manifest.model_dump(mode="json"))
