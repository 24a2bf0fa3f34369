"""Bounded caches for values that recur across the records of one run (times, hosts, files, ids).

A cache is a plain dict, so a hit is the dict's own `get` (an exact dict keeps the interpreter's fast
paths; a subclass measurably loses them). `keep` stores through the bound: the cache is emptied when
full rather than kept in LRU order, since LRU upkeep costs on every hit while the few hot entries are
rebuilt cheaply after a clear.
"""

from __future__ import annotations

from typing import TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


def keep(cache: dict[_K, _V], key: _K, value: _V, limit: int) -> _V:
    """Store `value` under `key` in `cache`, emptying it first when it holds `limit` entries; return it."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
