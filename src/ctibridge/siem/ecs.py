"""Read ECS documents whatever their shape: dotted-flat keys, nested objects, or both, and arrays anywhere.

Kibana alert documents mix them (`kibana.alert.*` flat, `host`, `process`, `file` nested), so every lookup
tries each split of the dotted path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any


def values(document: Mapping[str, Any], path: str) -> list[Any]:
    """Every scalar found at `path`, flattening arrays; [] when absent."""
    found: list[Any] = []
    _walk(document, path, False, found)
    return found


def first(document: Mapping[str, Any], path: str) -> Any:
    """The first scalar at `path`, or None."""
    found: list[Any] = []
    _walk(document, path, False, found)
    return found[0] if found else None


def objects(document: Mapping[str, Any], path: str) -> list[Mapping[str, Any]]:
    """Every object (dict) found at `path`, flattening arrays: for lists of structures like threat entries."""
    found: list[Any] = []
    _walk(document, path, True, found)
    return found


# Appending to one list rather than chaining generators, and testing exact JSON types before the (slow,
# ABC-based) Mapping check: these run for every threat entry of every alert.
_SCALARS = frozenset({str, int, float, bool})


def _walk(node: Any, path: str, want_objects: bool, found: list[Any]) -> None:
    """Append what `path` reaches in `node`: objects when `want_objects`, else scalars."""
    if type(node) is not dict:
        if isinstance(node, list):
            for item in node:
                _walk(item, path, want_objects, found)
            return
        if not isinstance(node, Mapping):
            return
    if path in node:
        _leaves(node[path], want_objects, found)
    dot = path.find(".")
    while dot >= 0:
        head = path[:dot]
        if head in node:
            _walk(node[head], path[dot + 1 :], want_objects, found)
        dot = path.find(".", dot + 1)


def _leaves(value: Any, want_objects: bool, found: list[Any]) -> None:
    kind = type(value)
    if kind in _SCALARS:
        if not want_objects:
            found.append(value)
    elif kind is list:  # arrays of objects or of scalars, the usual ones, without a call per item
        for item in value:
            item_kind = type(item)
            if item_kind is dict:
                if want_objects:
                    found.append(item)
            elif item_kind in _SCALARS:
                if not want_objects:
                    found.append(item)
            else:
                _leaves(item, want_objects, found)
    elif isinstance(value, list):
        for item in value:
            _leaves(item, want_objects, found)
    elif value is None:
        return
    elif kind is dict or isinstance(value, Mapping):
        if want_objects:
            found.append(value)
    elif not want_objects:
        found.append(value)


class FieldSet:
    """The dotted paths a mapping reads, prepared for `EcsDocument(only=...)`.

    Alert documents carry hundreds of fields and a mapping reads a few dozen; indexing only those paths
    (and descending only into objects on the way to them) is most of the cost of reading a document.
    `keys` holds, for each object on the way (by its path, `""` for the document itself), the keys worth
    reading in it and the path each leads to: the others are skipped by a C-level filter rather than a
    Python loop, and the paths are built once here rather than once per document.
    """

    __slots__ = ("keys", "paths")

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = frozenset(paths)
        prefixes = {path[:dot] for path in self.paths for dot in _dots(path)}
        walk = self.paths | prefixes  # every path and every object on the way to one
        self.keys: dict[str, dict[str, str]] = {parent: {} for parent in ("", *walk)}
        for path in walk:
            self.keys[""][path] = path
            for dot in _dots(path):
                self.keys[path[:dot]][path[dot + 1 :]] = path


def _dots(path: str) -> Iterator[int]:
    dot = path.find(".")
    while dot >= 0:
        yield dot
        dot = path.find(".", dot + 1)


class EcsDocument:
    """A document indexed once by dotted path, so the dozens of lookups a mapping makes are dict hits.

    Arrays of objects contribute to the same paths (`threat.enrichments.matched.atomic` lists every
    enrichment's value), as in Elasticsearch's own field model. With `only`, just those paths are indexed.
    `strict` makes reading any other path a KeyError: the tests map every fixture strictly, so a path
    missing from a field set fails there instead of silently reading as absent, while production lookups
    stay plain dict reads (`first` is the index's own `get`, tens of calls per alert).
    """

    __slots__ = ("_first", "_more", "_only", "_skip", "first", "source")

    first: Callable[[str], Any]  # the first value at a path, or None

    def __init__(
        self,
        source: Mapping[str, Any],
        skip: frozenset[str] = frozenset(),
        *,
        only: FieldSet | None = None,
        strict: bool = False,
    ) -> None:
        self.source = source
        self._skip = skip
        self._only = only.paths if only is not None and strict else None
        # Each path's first value, and the values after it for the few paths with several: most paths
        # have one, and storing it bare spares a list per value. No stored value is None.
        self._first: dict[str, Any] = {}
        self._more: dict[str, list[Any]] = {}
        self.first = self._first.get if self._only is None else self._checked_first
        if only is None:
            self._add(source, "")
        else:
            self._add_only(source, only.keys[""], only.keys)

    def _store(self, path: str, value: Any) -> None:
        if path in self._first:
            self._more.setdefault(path, []).append(value)
        else:
            self._first[path] = value

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
            self._store(prefix, node)

    def _add_only(
        self, node: Mapping[str, Any], wanted: dict[str, str], keys: dict[str, dict[str, str]]
    ) -> None:
        # Same result as _add restricted to the field set: `wanted` maps the keys of this object that are
        # on the way to a wanted path to that path. A path's first scalar, the common case, is stored
        # inline rather than through a call.
        first = self._first
        for key in filter(wanted.__contains__, node):
            value = node[key]
            kind = type(value)
            if kind in _SCALARS:
                path = wanted[key]
                if path in first:
                    self._store(path, value)
                else:
                    first[path] = value
            elif kind is dict:  # a nested object, without the detour through _add_value
                self._add_only(value, keys[wanted[key]], keys)
            elif value is not None:
                self._add_value(value, wanted[key], keys)

    def _add_value(self, value: Any, path: str, keys: dict[str, dict[str, str]]) -> None:
        kind = type(value)
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            self._add_only(value, keys[path], keys)
        elif kind is list:
            for item in value:
                if type(item) in _SCALARS:
                    self._store(path, item)
                else:
                    self._add_value(item, path, keys)
        elif value is not None:
            self._store(path, value)

    def _unknown(self, path: str) -> KeyError:
        return KeyError(f"{path!r} is not in this document's field set")

    def _checked_first(self, path: str) -> Any:
        found = self._first.get(path)
        if found is not None:
            return found
        if self._only is not None and path not in self._only:
            raise self._unknown(path)
        return None

    def values(self, path: str) -> list[Any]:
        found = self._first.get(path)
        if found is not None:
            more = self._more.get(path)
            return [found, *more] if more else [found]
        if self._only is not None and path not in self._only:
            raise self._unknown(path)
        return []

    def present(self, paths: tuple[str, ...]) -> list[str]:
        """Those of `paths` that have values, in order: one call where most of a long list is absent."""
        if self._only is not None and not self._only.issuperset(paths):
            raise self._unknown(", ".join(sorted(set(paths) - self._only)))
        first = self._first
        return [path for path in paths if path in first]

    def has_any(self, paths: frozenset[str]) -> bool:
        """Whether any of `paths` has a value: one test lets a mapping skip an absent object (`dll.*`)."""
        if self._only is not None and not paths <= self._only:
            raise self._unknown(", ".join(sorted(paths - self._only)))
        return not self._first.keys().isdisjoint(paths)

    def objects(self, path: str) -> list[Mapping[str, Any]]:
        return objects(self.source, path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.source.get(key, default)
