"""What every recipe shares: read a file into the writer, and report what cannot be used.

Quarantine reasons are ``"<category>: <detail>"`` so the build summary counts them by category:
``unexpected file``, ``missing file``, ``unreadable file`` plus the writer's own audio reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from layerlab.data.importers.tree import SourceTree
from layerlab.data.records import AudioRecord
from layerlab.data.shards import ShardWriter


@dataclass
class ImportContext:
    """A source tree, the shard writer it feeds, and counters that end up in the manifest."""

    tree: SourceTree
    writer: ShardWriter
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        """Increment a named counter (published under ``extra["import_counts"]``)."""
        self.counts[key] = self.counts.get(key, 0) + n

    def add_file(
        self,
        id: str,
        rel: str,
        *,
        speaker: str,
        labels: dict[str, str] | None = None,
        splits: dict[str, str] | None = None,
        transcript: str | None = None,
        missing_reason: str | None = None,
        tree: SourceTree | None = None,
    ) -> bool:
        """Read ``rel`` and hand it to the writer; quarantine it when it cannot be read.

        ``missing_reason`` is the reason used when the file does not exist (e.g. it was listed in
        a split file); otherwise a missing or unreadable file is ``unreadable file: ...``.
        ``tree`` reads from another tree than the context's (the source then is its full URL).
        """
        if tree is not None and tree is not self.tree:
            source = tree.display(rel)
        else:
            source, tree = rel, self.tree
        try:
            data = tree.read_bytes(rel)
        except FileNotFoundError as exc:
            self.writer.quarantine(id, source, missing_reason or f"unreadable file: {exc}")
            return False
        except OSError as exc:
            self.writer.quarantine(id, source, f"unreadable file: {type(exc).__name__}: {exc}")
            return False
        record = AudioRecord(
            id=id,
            audio=data,
            speaker=speaker,
            source=source,
            labels=dict(labels or {}),
            splits=dict(splits or {}),
            transcript=transcript,
        )
        return self.writer.add(record)

    def add_record(self, record: AudioRecord) -> bool:
        """Hand an already-built record (e.g. a crop of a longer file) to the writer."""
        return self.writer.add(record)

    def unexpected(self, rel: str, why: str) -> None:
        """Report a file that does not fit the dataset's layout (never skipped silently)."""
        self.writer.quarantine("", rel, f"unexpected file: {why}")

    def check_root(self, files: Iterable[str], allowed_files: set[str], layout: str,
                   dirs: Iterable[str] = (), allowed_dirs: set[str] | None = None) -> None:
        """Report root files (and, with ``allowed_dirs``, every file of root folders) outside the layout."""
        for f in files:
            if f not in allowed_files:
                self.unexpected(f, f"not part of the {layout} layout")
        if allowed_dirs is None:
            return
        for d in dirs:
            if d not in allowed_dirs:
                for f in self.tree.walk_files(d):
                    self.unexpected(f, f"folder {d!r} is not part of the {layout} layout")

    def missing(self, id: str, rel: str, listed_in: str) -> None:
        """Report a file that a list or label file names but the tree does not contain."""
        self.writer.quarantine(id, rel, f"missing file: listed in {listed_in} but not found")

    def reject(self, id: str, rel: str, reason: str, stage: str = "ingest") -> None:
        """Quarantine an input for a recipe-specific reason (e.g. a label outside the task's classes)."""
        self.writer.quarantine(id, rel, reason, stage=stage)

    def publish_extra(self, **items: Any) -> None:
        """Add recipe metadata (label maps, split conventions, counts) to the manifest's ``extra``."""
        self.writer.extra.update(items)
