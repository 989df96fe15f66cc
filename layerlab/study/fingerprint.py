"""Stage fingerprints in the manner of Hugging Face ``datasets``: a stage's key is a hash of what it
does (kind, parameters, code version) and of its inputs' fingerprints or checksums, so an unchanged
stage is recognised on rerun and a changed setting invalidates exactly the stages downstream of it.
"""

from __future__ import annotations

from typing import Any

from layerlab import storage
from layerlab.settings import hash_of, stable_json

__all__ = ["hash_of", "listing_checksum", "stable_json", "stage_fingerprint", "url_checksum"]


def stage_fingerprint(kind: str, version: int, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """``hash(kind, version, params, inputs)``; ``inputs`` maps an input's name to its fingerprint/checksum."""
    return hash_of(kind, version, params, dict(sorted(inputs.items())))


def url_checksum(url: str) -> str:
    """Content checksum of a file or folder at ``url`` (a folder: its files' relative names and SHA-256)."""
    fs, path = storage.url_to_fs(url)
    if fs.isfile(path):
        return storage.sha256_url(url)[:16]
    if not fs.isdir(path):
        raise FileNotFoundError(f"{url}: no such file or folder")
    digests = []
    for f in sorted(fs.find(path)):
        rel = f[len(path.rstrip("/")) + 1 :]
        digests.append((rel, storage.sha256_url(storage.join(url, rel))))
    return hash_of(digests)


def listing_checksum(url: str) -> str:
    """A cheap checksum of a source tree: every file's relative name and size (no content read)."""
    fs, path = storage.url_to_fs(url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{url}: no such file or folder")
    if fs.isfile(path):
        return hash_of(fs.size(path))
    info = fs.find(path, detail=True)
    root = path.rstrip("/")
    return hash_of(sorted((k[len(root) + 1 :], v.get("size")) for k, v in info.items()))
