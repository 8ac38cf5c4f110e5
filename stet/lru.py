"""One least-recently-used cache within a budget, for what an immutable file always answers
the same way: ``stet serve``'s whole answers (:class:`stet.serve.ResponseCache`) and the
plugin's rendered document pages (``stet.datasette_plugin.views``).

A page is kept by one of them only: the response cache marks each request whose answer it
keeps (:data:`KEPT_BY_RESPONSE_CACHE` in the ASGI scope), and the plugin then keeps nothing
of it itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable

#: Set in an ASGI request's scope when :class:`stet.serve.ResponseCache` keeps its answer.
KEPT_BY_RESPONSE_CACHE = "stet.kept_by_response_cache"


class LRU:
    """Values with their sizes, least recently used out first once ``budget`` is passed; a
    value over a quarter of the budget is not kept."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def fits(self, size: int) -> bool:
        """Whether a value of ``size`` may be kept."""
        return size <= self.budget // 4

    def get(self, key: Hashable) -> Any | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.entries.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        if not self.fits(size):
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= old[1]
        self.entries[key] = (value, size)
        self.size += size
        while self.size > self.budget:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.size -= dropped
