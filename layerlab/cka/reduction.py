"""Combine partial CKA states from many shards: idempotent per shard id, tree merge, checkpoint/resume.

Plain Python (no Ray) so the logic is testable on its own; ``reducer.py`` hosts it in a Ray actor.
A checkpoint holds the merged state and the ids of the shards inside it; after a restart the
reducer resumes from it, and senders re-send any shard not yet listed in ``committed_shards()``
(re-sending is always safe: a shard id already counted is ignored).
"""

from __future__ import annotations

import logging
from typing import Any

from layerlab.accumulator import merge_all
from layerlab.cache.reader import IdLedger
from layerlab.cka.state_io import accumulator_from_state, state_from_bytes, state_to_bytes

log = logging.getLogger(__name__)


def _read_checkpoint(url: str) -> dict[str, Any] | None:
    from layerlab import storage

    if not storage.exists(url):
        return None
    return state_from_bytes(storage.read_bytes(url))


def _write_checkpoint(url: str, doc: dict[str, Any]) -> None:
    from layerlab import storage

    storage.atomic_write_bytes(url, state_to_bytes(doc))


class CKAReduction:
    """Merges shard states; ``add`` returns False for a shard id already counted."""

    def __init__(self, checkpoint_url: str | None = None, checkpoint_every: int = 8, fanout: int = 16, device: str | None = "cpu") -> None:
        if checkpoint_every < 1 or fanout < 2:
            raise ValueError(f"checkpoint_every must be >= 1 and fanout >= 2, got {checkpoint_every}, {fanout}")
        self.checkpoint_url = checkpoint_url
        self.checkpoint_every = checkpoint_every
        self.fanout = fanout
        self.device = device
        self.total: Any = None
        self.pending: list[Any] = []
        self.seen: set[str] = set()
        self.ids = IdLedger("CKA reducer")  # utterance ids of the shards added with ids (checkpointed with them)
        self.committed: set[str] = set()
        self.since_checkpoint = 0
        self.resumed = False
        if checkpoint_url:
            doc = _read_checkpoint(checkpoint_url)
            if doc is not None:
                self.total = None if doc["state"] is None else accumulator_from_state(doc["state"], device)
                self.seen = set(doc["shards"])
                for shard, ids in sorted((doc.get("ids") or {}).items()):
                    self.ids.add(ids, shard)
                self.committed = set(self.seen)
                self.resumed = True
                log.info("CKA reducer resumed from %s with %d shards", checkpoint_url, len(self.seen))

    def add(self, shard_id: str, state: dict[str, Any], ids: list[str] | None = None) -> bool:
        """Queue one shard's state; ignored (False) if ``shard_id`` was already counted.

        ``ids``: the utterances inside the state; one already inside another shard's state is an IntegrityError.
        """
        shard_id = str(shard_id)
        if shard_id in self.seen:
            return False
        acc = accumulator_from_state(state, self.device)
        if ids is not None:
            self.ids.add(ids, shard_id)
        first = self.total if self.total is not None else (self.pending[0] if self.pending else None)
        if first is not None and (type(first) is not type(acc) or first.dims_a != acc.dims_a or first.dims_b != acc.dims_b):
            raise ValueError(f"shard {shard_id}: its CKA state ({type(acc).__name__}, dims {acc.dims_a}/{acc.dims_b}) does not match the reducer's")
        self.pending.append(acc)
        self.seen.add(shard_id)
        self.since_checkpoint += 1
        if len(self.pending) >= self.fanout:
            self._fold()
        if self.checkpoint_url and self.since_checkpoint >= self.checkpoint_every:
            self.checkpoint()
        return True

    def _fold(self) -> None:
        if not self.pending:
            return
        merged = merge_all(self.pending)
        self.total = merged if self.total is None else self.total.merge(merged)
        self.pending = []

    def checkpoint(self) -> list[str]:
        """Fold pending states and write the checkpoint; returns the committed shard ids."""
        self._fold()
        if self.checkpoint_url:
            by_shard: dict[str, list[str]] = {}
            for uid, shard in self.ids.seen.items():
                by_shard.setdefault(shard, []).append(uid)
            doc = {"shards": sorted(self.seen), "state": None if self.total is None else self.total.state_dict(), "ids": by_shard}
            _write_checkpoint(self.checkpoint_url, doc)
        self.committed = set(self.seen)
        self.since_checkpoint = 0
        return sorted(self.committed)

    def committed_shards(self) -> list[str]:
        """Shard ids that a restart would not lose (all of them when there is no checkpoint URL)."""
        return sorted(self.committed if self.checkpoint_url else self.seen)

    def state_dict(self) -> dict[str, Any] | None:
        """The merged state of every shard added so far (None before the first)."""
        self._fold()
        return None if self.total is None else self.total.state_dict()

    def result(self, estimator: str = "biased") -> Any:
        """The CKA matrix of all shards so far (computed on a copy; the state is left untouched)."""
        state = self.state_dict()
        if state is None:
            raise ValueError("result: no shard has been added")
        return accumulator_from_state(state, self.device, estimator).compute()
