"""Bundles in bounded chunks: each chunk carries its own author and marking so it imports on its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ctibridge.stix.ids import SCO_NAMESPACE

StixDict = dict[str, Any]
DEFAULT_CHUNK_OBJECTS = 5000


def make_bundle(objects: Sequence[StixDict]) -> StixDict:
    """A STIX bundle whose id derives from its content, so identical output files are identical."""
    digest = uuid.uuid5(SCO_NAMESPACE, "|".join(str(obj["id"]) for obj in objects))
    return {"type": "bundle", "id": f"bundle--{digest}", "objects": list(objects)}


def chunk_groups(
    groups: Iterable[Sequence[StixDict]],
    *,
    preamble: Sequence[StixDict] = (),
    max_objects: int = DEFAULT_CHUNK_OBJECTS,
) -> Iterator[list[StixDict]]:
    """Pack groups of objects (one alert's objects, one case's) into chunks of at most `max_objects`.

    A group is never split unless it alone exceeds the limit, so references inside a group resolve
    within the same bundle. Objects repeated across groups (a shared host, a technique) are sent once
    per chunk.
    """
    if max_objects <= len(preamble):
        raise ValueError("max_objects must leave room beyond the preamble")
    current: dict[str, StixDict] = {obj["id"]: obj for obj in preamble}
    base = len(current)
    for group in groups:
        fresh = [obj for obj in group if obj["id"] not in current]
        if len(current) + len(fresh) > max_objects and len(current) > base:
            yield list(current.values())
            current = {obj["id"]: obj for obj in preamble}
            fresh = [obj for obj in group if obj["id"] not in current]
        for obj in fresh:
            current[obj["id"]] = obj
            if len(current) >= max_objects:
                yield list(current.values())
                current = {obj["id"]: obj for obj in preamble}
    if len(current) > base:
        yield list(current.values())
