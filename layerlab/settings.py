"""Settings records: what a command ran with, fingerprinted, so a rerun into the same ``--out`` resumes only
work made with the same settings.

Every command that resumes into an existing output (``probe``, ``train``, ``cka``; ``extract`` through its
cache metadata; ``study`` per stage) records its effective settings as plain JSON with their fingerprint.
A rerun compares: the same fingerprint resumes; a different one stops with one line naming the differing
keys (``--overwrite`` starts afresh). One canonical JSON and one hash serve every fingerprint in layerlab
(study stages use them too, ``layerlab.study.fingerprint``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from layerlab import storage

#: how many differing keys an error line names before "and N more"
SHOWN_KEYS = 6


class SettingsMismatch(ValueError):
    """An output folder holds work made with other settings (the message names the differing keys)."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys


def stable_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace) of plain data; paths and tuples become strings/lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_of(*parts: Any) -> str:
    """A 16-hex-digit digest of plain data (enough to tell configurations apart)."""
    return hashlib.sha256(stable_json(list(parts)).encode()).hexdigest()[:16]


def plain(obj: Any) -> Any:
    """``obj`` as the JSON it is recorded as (tuples become lists, pydantic models their dump), so records compare equal."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return json.loads(stable_json(obj))


def fingerprint(settings: dict[str, Any]) -> str:
    """The fingerprint of a settings mapping (key order and tuple/list spelling do not matter)."""
    return hash_of(plain(settings))


def diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted key paths whose values differ between two settings documents (mappings recursed, other values whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out += diff_keys(old[key], new[key], path)
        return out
    return [] if plain(old) == plain(new) else [prefix or "(settings)"]


def describe_keys(keys: list[str]) -> str:
    """``a.b, c`` (at most :data:`SHOWN_KEYS`, then ``and N more``)."""
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def record(settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A settings record: the effective settings, their fingerprint, when it was written, plus ``extra`` fields."""
    doc = plain(settings)
    return {**extra, "settings": doc, "fingerprint": fingerprint(doc),
            "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def recorded_settings(url: str) -> dict[str, Any] | None:
    """The settings of the record at ``url`` (None when there is none)."""
    try:
        doc = storage.read_json(url)
    except FileNotFoundError:
        return None
    return doc.get("settings") if isinstance(doc, dict) and isinstance(doc.get("settings"), dict) else None


def compare(record_url: str, settings: dict[str, Any], what: str, *, legacy: dict[str, Any] | None = None) -> list[str]:
    """Keys in which ``settings`` differ from the record at ``record_url`` (empty: same, or no record yet).

    ``legacy``: the settings an older record implies when it has no ``settings`` entry (only their common
    keys are compared). Raises nothing; :func:`check` turns a difference into :class:`SettingsMismatch`.
    """
    old = recorded_settings(record_url)
    new = plain(settings)
    if old is None:
        if not legacy:
            return []
        old = plain(legacy)
        new = {k: v for k, v in new.items() if k in old}
        old = {k: v for k, v in old.items() if k in new}
    return diff_keys(old, new)


def check(out: str, record_url: str, settings: dict[str, Any], what: str, *, legacy: dict[str, Any] | None = None,
          resumable: tuple[str, ...] = (), advice: str = "use another --out, or --overwrite to start afresh") -> list[str]:
    """Stop with one line when ``out`` holds ``what`` made with other settings than ``settings``.

    ``resumable``: dotted keys a rerun may change and still resume (e.g. a training's ``config.epochs``:
    more epochs continue the run); those that differ are returned, so the caller can record them.
    """
    keys = compare(record_url, settings, what, legacy=legacy)
    blocking = [k for k in keys if not any(k == r or k.startswith(r + ".") for r in resumable)]
    if blocking:
        raise SettingsMismatch(f"the output folder holds {what} made with other settings (differing: {describe_keys(blocking)}); {advice} ({out})",
                               blocking)
    return keys


def update_record(record_url: str, settings: dict[str, Any], changed: list[str], **extra: Any) -> None:
    """Rewrite a record with ``settings`` after a resume that changed the ``changed`` keys (kept in its ``resumed`` history)."""
    try:
        old = storage.read_json(record_url)
    except FileNotFoundError:
        old = {}
    history = list(old.get("resumed", [])) if isinstance(old, dict) else []
    history.append({"changed": changed, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    storage.write_json(record_url, {**record(settings, **extra), "resumed": history})


def clear_output(out: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove everything directly under ``out`` except the names in ``keep`` and dot-files (a writer's lease); returns what went.

    ``--overwrite``'s "start afresh": only the folder's own entries are removed, never ``out`` itself or anything beside it.
    """
    fs, path = storage.url_to_fs(out)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    root = path.rstrip("/")
    removed = []
    for entry in entries:
        name = str(entry).rstrip("/").rsplit("/", 1)[-1]
        if not name or name in keep or name.startswith(".") or not str(entry).startswith(root + "/"):
            continue
        storage.remove(storage.join(out, name), recursive=True, within=out)
        removed.append(name)
    return removed


__all__ = ["SettingsMismatch", "check", "clear_output", "compare", "describe_keys", "diff_keys", "fingerprint", "hash_of", "plain",
           "record", "recorded_settings", "stable_json", "update_record"]
