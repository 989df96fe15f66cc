"""The one protocol for a mergeable statistic (CKA states, pooled means, metric counts).

Every statistic that is computed on many workers and combined later implements it. ``merge``
must be associative and commutative (up to float rounding) so a reducer may combine partial
states in any order or as a tree; ``state_dict`` must hold only plain Python numbers, strings,
lists, dicts, numpy arrays or torch tensors so it can be checkpointed to any storage URL.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, TypeVar, runtime_checkable

A = TypeVar("A", bound="Accumulator")


@runtime_checkable
class Accumulator(Protocol):
    """A streaming statistic: ``update`` with data, ``merge`` partial states, ``compute`` the result."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add one batch of observations to the state."""

    def merge(self: A, other: A) -> A:
        """Fold ``other`` into ``self`` in place and return ``self``."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the state (see ``load_state_dict``)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with one produced by ``state_dict``."""

    def compute(self) -> Any:
        """The statistic's value for all data seen so far."""


def merge_all(parts: Iterable[A]) -> A:
    """Merge many partial states pairwise as a balanced tree (bounded rounding growth).

    The first element is used as the root and is modified in place.
    """
    level = list(parts)
    if not level:
        raise ValueError("merge_all needs at least one partial state")
    while len(level) > 1:
        nxt = [level[i].merge(level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
