"""Read JSON records from a file or stdin: NDJSON streams line by line, so memory stays flat.

Also accepted: a JSON array, a single object, and the envelopes the SIEM APIs answer with (an
Elasticsearch search response, a list response with `value`, `cases` or `data`), unwrapped by the caller's
`unwrap` function.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ctibridge.errors import InputError

Unwrap = Callable[[Any], Iterator[Any]]
log = logging.getLogger(__name__)


def _identity(document: Any) -> Iterator[Any]:
    if isinstance(document, list):
        yield from document
    else:
        yield document


def open_input(source: str | Path) -> IO[bytes]:
    """The raw bytes: JSON is UTF-8, and the parsers read bytes without a decoded copy of each line."""
    if str(source) == "-":
        return sys.stdin.buffer
    try:
        return Path(source).open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from None


def iter_records(
    source: str | Path, unwrap: Unwrap | None = None, on_skip: Callable[[], None] | None = None
) -> Iterator[Any]:
    """Yield records from `source` ('-' for stdin), NDJSON or one JSON document.

    An NDJSON line that is not JSON or not UTF-8 is logged and skipped; `on_skip` hears of each, so a
    summary can count it with the records it skipped.
    """
    stream = open_input(source)
    try:
        yield from _iter_stream(stream, str(source), unwrap or _identity, on_skip or _ignore)
    finally:
        if str(source) != "-":
            stream.close()


def _ignore() -> None:
    return None


def _iter_stream(stream: IO[bytes], name: str, unwrap: Unwrap, on_skip: Callable[[], None]) -> Iterator[Any]:
    first = stream.readline()
    while first and not first.strip():
        first = stream.readline()
    if not first:
        raise InputError(f"{name} is empty")
    try:
        head = _loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        head = None
    if isinstance(head, dict):
        second = _next_content_line(stream)
        if second is None:
            yield from unwrap(head)
            return
        # NDJSON: one record per line; a broken line is reported with its number, never fatal.
        yield from unwrap(head)
        yield from _ndjson_line(second, 2, name, unwrap, on_skip)
        for number, line in enumerate(stream, start=3):
            if line and not line.isspace():  # as `line.strip()`, without copying the line
                yield from _ndjson_line(line, number, name, unwrap, on_skip)
        return
    text = first + stream.read()
    try:
        document = _loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name} is neither NDJSON nor a JSON document: {exc.msg} at line {exc.lineno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    yield from unwrap(document)


def _next_content_line(stream: IO[bytes]) -> bytes | None:
    for line in stream:
        if line.strip():
            return line
    return None


def _ndjson_line(
    line: bytes, number: int, name: str, unwrap: Unwrap, on_skip: Callable[[], None]
) -> Iterator[Any]:
    try:
        record = _loads(line)
    except json.JSONDecodeError as exc:
        log.warning("skipped %s line %d: not JSON (%s)", name, number, exc.msg)
        on_skip()
        return
    except UnicodeDecodeError as exc:
        log.warning("skipped %s line %d: not UTF-8 (%s)", name, number, exc.reason)
        on_skip()
        return
    yield from unwrap(record)


def _loads(data: bytes) -> Any:
    """orjson for speed; the stdlib for what orjson refuses (NaN, huge integers, a byte-order mark) and
    for its messages."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
