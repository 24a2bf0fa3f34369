"""Offline conversions (`ctibridge convert KIND FILE`): records in, a STIX bundle (or SIEM documents) out.

Output is streamed: records are read, mapped and written one at a time, so converting a million alerts
needs no more memory than converting a thousand. Each SIEM registers its kinds with `register`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import orjson

from ctibridge.inputs import Unwrap, iter_records
from ctibridge.model.reader import read_alert, read_case, read_records
from ctibridge.stix.builder import Built, StixBuilder

StixDict = dict[str, Any]


@dataclass
class Stats:
    """What a conversion read, made and skipped: the one-screen summary."""

    records: int = 0
    skipped: int = 0
    unreadable: int = 0  # input lines skipped before they became records (not JSON, not UTF-8)
    written: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    def count_unreadable(self) -> None:
        self.unreadable += 1

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def summary(self, kind: str, destination: str) -> str:
        lines = [
            f"{kind}: read {self.records + self.unreadable} record(s), "
            f"skipped {self.skipped + self.unreadable}, "
            f"wrote {sum(self.written.values())} object(s) to {destination} in {self.seconds:.2f}s"
        ]
        for stix_type, count in sorted(self.written.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {stix_type:<24} {count:>8}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Converter:
    """One conversion kind: how to unwrap the input and turn its records into output groups."""

    kind: str
    description: str
    convert: Callable[[Iterator[Any], StixBuilder, Stats], Iterable[list[StixDict]]]
    unwrap: Unwrap | None = None
    output: Literal["stix", "ndjson", "json"] = "stix"
    default_author: str = "ctibridge"


CONVERTERS: dict[str, Converter] = {}


def register(converter: Converter) -> Converter:
    CONVERTERS[converter.kind] = converter
    return converter


class BundleWriter:
    """Streams one STIX bundle to a text handle, suppressing objects it wrote recently.

    The bundle id comes last (JSON key order is free) so it can derive from the content, which keeps
    repeated conversions byte-identical. Deduplication keeps a bounded window of ids: shared objects
    (author, hosts, techniques) recur constantly and are caught; memory does not grow with the input.
    The serialised objects are UTF-8 bytes and go to the handle's byte buffer when it has a UTF-8 one,
    sparing a decode and an encode of every object.
    """

    def __init__(self, handle: IO[str], stats: Stats, window: int = 65536) -> None:
        self.handle = handle
        self.stats = stats
        self.window = window
        # Two generations of written ids: an id in either is suppressed, a full current generation
        # retires the older one. Cheaper per object than an LRU and bounded all the same (two windows).
        self._recent: set[str] = set()
        self._older: set[str] = set()
        self._digest = hashlib.sha1(b"bundle")
        self._separator = b"\n"
        self._send = _byte_writer(handle)
        self._send(b'{"type": "bundle", "objects": [')

    def write(self, objects: Iterable[StixDict]) -> None:
        recent, older = self._recent, self._older
        remember = recent.add
        ids: list[str] = []
        types: list[str] = []
        parts: list[bytes] = []
        dumps = orjson.dumps
        for obj in objects:
            obj_id = obj["id"]
            if obj_id in recent:
                continue
            remember(obj_id)
            if obj_id in older:  # written a generation ago: kept, not written again
                continue
            ids.append(obj_id)
            types.append(obj["type"])
            parts.append(dumps(obj))
        # Rolled per group rather than per object: a generation may hold one group more, no less.
        if len(recent) > self.window:
            self._older, self._recent = recent, set()
        if not parts:
            return
        # One count, digest update and write per group: the same result as one per object, fewer calls.
        self.stats.written.update(types)
        self._digest.update("".join(ids).encode())
        self._send(self._separator + b",\n".join(parts))
        self._separator = b",\n"

    def close(self) -> None:
        digest = uuid.UUID(bytes=self._digest.digest()[:16], version=5)
        self._send(f'\n], "id": "bundle--{digest}"}}\n'.encode())
        buffer = getattr(self.handle, "buffer", None)
        if buffer is not None:
            buffer.flush()  # later text writes to the handle come after the bundle


def _byte_writer(handle: IO[str]) -> Callable[[bytes], Any]:
    """Bytes straight to the handle's UTF-8 buffer when it has one, else decoded for a text-only handle."""
    buffer = getattr(handle, "buffer", None)
    encoding = (getattr(handle, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if buffer is not None and encoding == "utf8":
        handle.flush()  # what was written as text goes first
        return buffer.write  # type: ignore[no-any-return]
    return lambda data: handle.write(data.decode("utf-8"))


def run_conversion(
    converter: Converter, source: str, handle: IO[str], builder: StixBuilder, stats: Stats | None = None
) -> Stats:
    stats = stats or Stats()
    records = iter_records(source, converter.unwrap, on_skip=stats.count_unreadable)
    groups = iter(converter.convert(records, builder, stats))
    if converter.output == "stix":
        # Nothing is written before the input proves readable: an empty or garbled file is an error
        # on stderr, not the head of a bundle that never closes on stdout.
        first = next(groups, None)
        writer = BundleWriter(handle, stats)
        writer.write(builder.preamble())
        if first is not None:
            writer.write(first)
        for group in groups:
            writer.write(group)
        writer.close()
    elif converter.output == "ndjson":
        for group in groups:
            for item in group:
                handle.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
                stats.written[str(item.get("_kind", "document"))] += 1
    else:
        items = [item for group in groups for item in group]
        json.dump(items, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
        stats.written["item"] += len(items)
    return stats


# ---------------------------------------------------------------- the SIEM-agnostic kinds


def mapped_conversion(
    make_reader: Callable[[], Callable[[Any], Any]],
    kind: str,
    build: Callable[[StixBuilder, Any], Built],
) -> Callable[[Iterator[Any], StixBuilder, Stats], Iterator[list[StixDict]]]:
    """A conversion that reads each record into the model (skipping unreadable ones) and builds STIX.

    `make_reader` runs once per conversion, so readers that depend on settings read them then.
    """

    def convert(records: Iterator[Any], builder: StixBuilder, stats: Stats) -> Iterator[list[StixDict]]:
        def counted() -> Iterator[Any]:
            for record in records:
                stats.records += 1
                yield record

        mapped = 0
        for item in read_records(counted(), make_reader(), kind):
            mapped += 1
            yield build(builder, item).objects
        stats.skipped = stats.records - mapped

    return convert


register(
    Converter(
        "alerts",
        "alerts in ctibridge's normalised JSON model (NDJSON or a JSON array) to STIX",
        mapped_conversion(lambda: read_alert, "alert", StixBuilder.alert),
    )
)
register(
    Converter(
        "cases",
        "cases in ctibridge's normalised JSON model to STIX",
        mapped_conversion(lambda: read_case, "case", StixBuilder.case),
    )
)
