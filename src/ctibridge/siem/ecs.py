"""Read ECS documents whatever their shape: dotted-flat keys, nested objects, or both, and arrays anywhere.

Kibana alert documents mix them (`kibana.alert.*` flat, `host`, `process`, `file` nested), so every lookup
tries each split of the dotted path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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


class FieldSet:
    """The dotted paths a mapping reads, prepared for `EcsDocument(only=...)`.

    Alert documents carry hundreds of fields and a mapping reads a few dozen; indexing only those paths
    (and descending only into objects on the way to them) is most of the cost of reading a document.
    """

    __slots__ = ("paths", "walk")

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = frozenset(paths)
        prefixes = {path[:dot] for path in self.paths for dot in _dots(path)}
        self.walk = frozenset(self.paths | prefixes)


def _dots(path: str) -> Iterator[int]:
    dot = path.find(".")
    while dot >= 0:
        yield dot
        dot = path.find(".", dot + 1)


class EcsDocument:
    """A document indexed once by dotted path, so the dozens of lookups a mapping makes are dict hits.

    Arrays of objects contribute to the same paths (`threat.enrichments.matched.atomic` lists every
    enrichment's value), as in Elasticsearch's own field model. With `only`, just those paths are indexed
    and reading any other path is a programming error (KeyError), so a path missing from the field set
    cannot silently read as absent.
    """

    __slots__ = ("_index", "_only", "_skip", "source")

    def __init__(
        self, source: Mapping[str, Any], skip: frozenset[str] = frozenset(), *, only: FieldSet | None = None
    ) -> None:
        self.source = source
        self._skip = skip
        self._only = only.paths if only is not None else None
        self._index: dict[str, list[Any]] = {}
        if only is None:
            self._add(source, "")
        else:
            self._add_only(source, "", only.walk)

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

    def _add_only(self, node: Mapping[str, Any], prefix: str, walk: frozenset[str]) -> None:
        # Same result as _add restricted to `walk`; scalars and lists of scalars, which are most values,
        # are stored inline rather than through a call each.
        index = self._index
        for key, value in node.items():
            path = prefix + key
            if path not in walk or value is None:
                continue
            kind = type(value)
            if kind is str or kind is int or kind is float or kind is bool:
                bucket = index.get(path)
                if bucket is None:
                    index[path] = [value]
                else:
                    bucket.append(value)
            else:
                self._add_value(value, path, walk)

    def _add_value(self, value: Any, path: str, walk: frozenset[str]) -> None:
        kind = type(value)
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            self._add_only(value, f"{path}." if path else "", walk)
        elif kind is list:
            for item in value:
                self._add_value(item, path, walk)
        elif value is not None:
            bucket = self._index.get(path)
            if bucket is None:
                self._index[path] = [value]
            else:
                bucket.append(value)

    def _unknown(self, path: str) -> KeyError:
        return KeyError(f"{path!r} is not in this document's field set")

    def first(self, path: str) -> Any:
        found = self._index.get(path)
        if found:
            return found[0]
        if self._only is not None and path not in self._only:
            raise self._unknown(path)
        return None

    def values(self, path: str) -> list[Any]:
        found = self._index.get(path)
        if found:
            return found
        if self._only is not None and path not in self._only:
            raise self._unknown(path)
        return []

    def objects(self, path: str) -> list[Mapping[str, Any]]:
        return objects(self.source, path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.source.get(key, default)
