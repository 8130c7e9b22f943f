"""A bounded store of prompt caches, so the multiplier slider reuses prompt states across reruns."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class PromptCache(Protocol):
    """What the store needs of ``steering.engine.fast.PromptCache``: its size."""

    def nbytes(self) -> int: ...


class CacheStore:
    """Bounded LRU of PromptCaches by bytes, so the slider can reuse prompt states."""

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, PromptCache] = OrderedDict()

    def get(self, key: str) -> PromptCache | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, cache: PromptCache) -> None:
        self._items[key] = cache
        self._items.move_to_end(key)
        while self.nbytes() > self.max_bytes and len(self._items) > 1:
            self._items.popitem(last=False)

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self._items.values())

    def __len__(self) -> int:
        return len(self._items)
