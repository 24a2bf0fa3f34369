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
