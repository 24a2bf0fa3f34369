"""Read ECS documents whatever their shape: dotted-flat keys, nested objects, or both, and arrays anywhere.

Kibana alert documents mix them (`kibana.alert.*` flat, `host`, `process`, `file` nested), so every lookup
tries each split of the dotted path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def values(document: Mapping[str, Any], path: str) -> list[Any]:
    """Every scalar found at `path`, flattening arrays; [] when absent."""
    return list(_walk(document, path))


def first(document: Mapping[str, Any], path: str) -> Any:
    """The first scalar at `path`, or None."""
    return next(_walk(document, path), None)


def objects(document: Mapping[str, Any], path: str) -> list[Mapping[str, Any]]:
    """Every object (dict) found at `path`, flattening arrays: for lists of structures like threat entries."""
    return [item for item in _walk(document, path, keep_objects=True) if isinstance(item, Mapping)]


def _walk(node: Any, path: str, *, keep_objects: bool = False) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path, keep_objects=keep_objects)
        return
    if not isinstance(node, Mapping):
        return
    if path in node:
        yield from _leaves(node[path], keep_objects)
    start = 0
    while True:
        dot = path.find(".", start)
        if dot < 0:
            return
        head = path[:dot]
        if head in node:
            yield from _walk(node[head], path[dot + 1 :], keep_objects=keep_objects)
        start = dot + 1


def _leaves(value: Any, keep_objects: bool) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item, keep_objects)
    elif value is None:
        return
    elif isinstance(value, Mapping):
        if keep_objects:
            yield value
    else:
        yield value


class EcsDocument:
    """A document indexed once by dotted path, so the dozens of lookups a mapping makes are dict hits.

    Arrays of objects contribute to the same paths (`threat.enrichments.matched.atomic` lists every
    enrichment's value), as in Elasticsearch's own field model.
    """

    __slots__ = ("_index", "_skip", "source")

    def __init__(self, source: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> None:
        self.source = source
        self._skip = skip
        self._index: dict[str, list[Any]] = {}
        self._add(source, "")

    def _add(self, node: Any, prefix: str) -> None:
        kind = type(node)
        if kind is dict or (kind is not list and isinstance(node, Mapping)):
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else key
                if path not in self._skip:
                    self._add(value, path)
        elif kind is list:
            for item in node:
                self._add(item, prefix)
        elif node is not None:
            bucket = self._index.get(prefix)
            if bucket is None:
                self._index[prefix] = [node]
            else:
                bucket.append(node)

    def first(self, path: str) -> Any:
        found = self._index.get(path)
        return found[0] if found else None

    def values(self, path: str) -> list[Any]:
        return self._index.get(path) or []

    def objects(self, path: str) -> list[Mapping[str, Any]]:
        return objects(self.source, path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.source.get(key, default)
