"""A dataset's source tree on any fsspec URL: sorted lazy walks, byte and line reads.

Importers see relative POSIX paths only (``"wav/id10001/abc/00001.wav"``); this class maps them to
the filesystem, so a local folder and an ``s3://`` prefix are handled by the same recipe code.
"""

from __future__ import annotations

import csv
import io
import posixpath
from typing import Iterator

from layerlab import storage


class SourceTree:
    """Read-only view of a directory tree at ``url`` (local path or any fsspec URL)."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/") or str(url)
        self.fs, self._root = storage.url_to_fs(self.url)
        self._root = self._root.rstrip("/")

    def _abs(self, rel: str) -> str:
        return f"{self._root}/{rel}" if rel else self._root

    def _rel(self, path: str) -> str:
        path = path.rstrip("/")
        prefix = self._root.lstrip("/") + "/"
        bare = path.lstrip("/")
        if bare == self._root.lstrip("/"):
            return ""
        if not bare.startswith(prefix):
            raise ValueError(f"{path} is not under {self._root}")
        return bare[len(prefix):]

    def display(self, rel: str) -> str:
        """A URL for messages (the tree URL joined with ``rel``)."""
        return storage.join(self.url, rel) if rel else self.url

    def sub(self, rel: str) -> "SourceTree":
        """The tree rooted at the sub-directory ``rel``."""
        return SourceTree(storage.join(self.url, rel))

    @property
    def name(self) -> str:
        """The last component of the root path (e.g. ``test-other``)."""
        return posixpath.basename(self._root)

    def is_dir(self, rel: str = "") -> bool:
        return bool(storage.with_retries(lambda: self.fs.isdir(self._abs(rel)), what=f"isdir {self.display(rel)}"))

    def exists(self, rel: str) -> bool:
        return bool(storage.with_retries(lambda: self.fs.exists(self._abs(rel)), what=f"exists {self.display(rel)}"))

    def listdir(self, rel: str = "") -> tuple[list[str], list[str]]:
        """Names of the sub-directories and of the files directly under ``rel``, each sorted.

        Anything that is not a directory (broken links, sockets...) counts as a file, so the
        importer sees it and reports it rather than skipping it silently.
        """
        entries = storage.with_retries(lambda: self.fs.ls(self._abs(rel), detail=True), what=f"list {self.display(rel)}")
        dirs, files = [], []
        for e in entries:
            name = posixpath.basename(str(e["name"]).rstrip("/"))
            if not name or self._rel(str(e["name"])) == rel:
                continue  # some object stores list the directory itself
            (dirs if e.get("type") == "directory" else files).append(name)
        return sorted(set(dirs)), sorted(set(files))

    def walk(self, rel: str = "") -> Iterator[tuple[str, list[str], list[str]]]:
        """Yield ``(dir, subdirs, files)`` top-down in sorted order, one listing at a time.

        Like ``os.walk``: removing names from ``subdirs`` prunes the walk. Memory holds only the
        listings on the current path, never the whole tree.
        """
        dirs, files = self.listdir(rel)
        yield rel, dirs, files
        for d in list(dirs):
            yield from self.walk(posixpath.join(rel, d) if rel else d)

    def walk_files(self, rel: str = "") -> Iterator[str]:
        """Every file under ``rel`` as a path relative to the tree root, in sorted order."""
        for d, _, files in self.walk(rel):
            for f in files:
                yield posixpath.join(d, f) if d else f

    def read_bytes(self, rel: str) -> bytes:
        """The whole file; raises OSError (FileNotFoundError when missing) naming the URL."""
        try:
            return storage.with_retries(lambda: self.fs.cat_file(self._abs(rel)), what=f"read {self.display(rel)}")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.display(rel)}: no such file") from exc

    def iter_lines(self, rel: str) -> Iterator[tuple[int, str]]:
        """``(line_number, line)`` pairs of a UTF-8 text file, streamed, newline stripped."""
        try:
            raw = storage.with_retries(lambda: self.fs.open(self._abs(rel), "rb"), what=f"open {self.display(rel)}")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.display(rel)}: no such file") from exc
        with raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None) as text:
            for n, line in enumerate(text, start=1):
                yield n, line.rstrip("\r\n")


def iter_csv_rows(tree: SourceTree, rel: str, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line_number, row)`` of a CSV file with a header, streamed, cells stripped.

    Raises ValueError naming the file when a required column is missing.
    """
    numbers: list[int] = []

    def text() -> Iterator[str]:
        for n, line in tree.iter_lines(rel):
            numbers.append(n)
            yield line

    reader = csv.DictReader(text())
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{tree.display(rel)}: missing column(s) {missing}; header is {reader.fieldnames}")
    for row in reader:
        yield numbers[-1], {k: (v or "").strip() for k, v in row.items() if k is not None}
