"""The file platform: STIX bundles written atomically to a directory, state in a JSON file beside them.

It is the embedded default behind `--dry-run DIR` and `ctibridge convert`: every connector can run
without an OpenCTI platform, and what it would have sent can be inspected, diffed or imported later.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ctibridge.errors import DeliveryError, InputError
from ctibridge.inputs import iter_records
from ctibridge.platform.base import (
    EnrichmentRequest,
    EnrichmentResult,
    Platform,
    StixObject,
    StreamEvent,
    Work,
    chunked,
)
from ctibridge.stix.bundle import make_bundle

log = logging.getLogger(__name__)
STATE_FILE = "state.json"
VOCABULARY_FILE = "vocabularies.json"


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _FileWork(Work):
    def __init__(self, platform: FilePlatform, name: str) -> None:
        self.platform = platform
        self.name = name
        # Unique across runs and processes (a rerun within the same second must not overwrite), and
        # sortable by time so the directory lists bundles in the order they were written.
        self.id = (
            f"work-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{platform.next_sequence():05d}-{uuid.uuid4().hex[:8]}"
        )
        self.files: list[Path] = []

    def send(self, objects: Sequence[StixObject]) -> int:
        sent = 0
        for chunk in chunked(objects, self.platform.chunk_size):
            path = self.platform.directory / f"{self.id}-{len(self.files) + 1:04d}.json"
            try:
                write_atomically(path, json.dumps(make_bundle(list(chunk)), indent=1, ensure_ascii=False))
            except OSError as exc:
                raise DeliveryError(f"cannot write {path}: {exc.strerror}") from exc
            self.files.append(path)
            sent += len(chunk)
        return sent


class FilePlatform(Platform):
    """Bundles to `directory`; stream events and enrichment requests read from files when given."""

    def __init__(
        self,
        directory: str | Path,
        *,
        chunk_size: int = 5000,
        stream_events: str | Path | None = None,
        enrichment_requests: str | Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.chunk_size = chunk_size
        self.stream_events = stream_events
        self.enrichment_requests = enrichment_requests
        self._sequence = 0
        self.works: list[_FileWork] = []
        self._request_objects: list[dict[str, Any]] = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create {self.directory}: {exc.strerror}") from exc

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    def get_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read state file {self.state_path}: {exc}") from exc

    def set_state(self, state: Mapping[str, Any]) -> None:
        write_atomically(self.state_path, json.dumps(dict(state), indent=1, sort_keys=True, default=str))

    @contextmanager
    def work(self, name: str) -> Iterator[Work]:
        work = _FileWork(self, name)
        self.works.append(work)
        log.info("work started", extra={"work_id": work.id, "work_name": name})
        try:
            yield work
        except BaseException:
            log.error("work failed", extra={"work_id": work.id})
            raise
        if work.files:
            log.info("work done", extra={"work_id": work.id, "bundles": len(work.files)})
        else:
            log.info("nothing new to send", extra={"work_id": work.id})

    def schedule(self, job: Callable[[], None], period: timedelta | None) -> None:
        """A dry run executes the job once: a loop writing files forever would only fill the disk."""
        job()

    def listen_stream(self, handler: Callable[[StreamEvent], None]) -> None:
        if self.stream_events is None:
            raise InputError(
                "a dry run of a stream connector needs stream events from a file (--events FILE)"
            )
        start_after = self.get_state().get("start_from")
        skipping = start_after is not None
        for number, record in enumerate(iter_records(self.stream_events), start=1):
            try:
                event = stream_event_from_record(record)
            except (InputError, ValueError, AttributeError) as exc:
                log.warning("skipped stream record #%d: %s", number, exc)
                continue
            if skipping:
                skipping = event.id != start_after
                continue
            handler(event)

    def save_stream_position(self, event_id: str) -> None:
        self.set_state({**self.get_state(), "start_from": event_id})

    def ensure_vocabulary(self, category: str, names: Sequence[str]) -> None:
        """Record the entries in `vocabularies.json` (category -> sorted names), so a dry run shows what
        would be registered in OpenCTI; idempotent."""
        path = self.directory / VOCABULARY_FILE
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            current = {}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from exc
        known = {str(n).lower(): str(n) for n in current.get(category, [])}
        added = [n.strip() for n in names if n and n.strip() and n.strip().lower() not in known]
        if not added:
            return
        for name in added:
            known[name.lower()] = name
        current[category] = sorted(known.values())
        try:
            write_atomically(path, json.dumps(current, indent=1, sort_keys=True))
        except OSError as exc:
            raise DeliveryError(f"cannot write {path}: {exc.strerror}") from exc
        log.info("vocabulary entries recorded", extra={"category": category, "entries": added})

    def indicators_based_on(self, observable_id: str) -> list[dict[str, Any]]:
        """Offline there is no knowledge base: only the request being handled can name such indicators."""
        objects = self._request_objects
        indicators = {o.get("id"): o for o in objects if o.get("type") == "indicator"}
        sources = dict.fromkeys(
            o.get("source_ref")
            for o in objects
            if o.get("type") == "relationship"
            and o.get("relationship_type") == "based-on"
            and o.get("target_ref") == observable_id
        )
        return [dict(indicators[i]) for i in sources if i in indicators]

    def listen_enrichment(self, handler: Callable[[EnrichmentRequest], EnrichmentResult]) -> None:
        if self.enrichment_requests is None:
            raise InputError(
                "a dry run of an enrichment connector needs requests from a file (--events FILE)"
            )
        for number, record in enumerate(iter_records(self.enrichment_requests), start=1):
            try:
                request = enrichment_request_from_record(record)
            except (InputError, ValueError, AttributeError) as exc:
                log.warning("skipped enrichment record #%d: %s", number, exc)
                continue
            self._request_objects = request.stix_objects
            try:
                result = handler(request)
            finally:
                self._request_objects = []
            with self.work(f"Enrichment of {request.entity_id}") as work:
                if result.objects:
                    work.send(result.objects)
            log.info("enrichment done", extra={"entity_id": request.entity_id, "result": result.message})


def stream_event_from_record(record: Mapping[str, Any]) -> StreamEvent:
    """An SSE event as recorded (`id`, `event`, `data` as JSON text or object)."""
    data = record.get("data")
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, Mapping) or "id" not in record or not record.get("event"):
        raise InputError("a stream event needs 'id', 'event' and 'data'")
    return StreamEvent(
        id=str(record["id"]),
        type=str(record.get("event") or record.get("type") or ""),
        data=dict(data.get("data") or {}),
        message=str(data.get("message") or ""),
        context=dict(data.get("context") or {}),
        origin=dict(data.get("origin") or {}),
    )


def enrichment_request_from_record(record: Mapping[str, Any]) -> EnrichmentRequest:
    """An enrichment message as OpenCTI sends it (`event` with the entity and its STIX objects)."""
    event = record.get("event", record)
    objects = event.get("stix_objects") or []
    if isinstance(objects, str):
        objects = json.loads(objects)
    entity = event.get("stix_entity") or {}
    if isinstance(entity, str):
        entity = json.loads(entity)
    if not entity and objects:
        entity = next((o for o in objects if o.get("id") == event.get("entity_id")), objects[0])
    if not entity:
        raise InputError("an enrichment request needs 'stix_entity' or 'stix_objects'")
    return EnrichmentRequest(
        entity_id=str(event.get("entity_id") or entity.get("id")),
        entity_type=str(event.get("entity_type") or entity.get("type")),
        stix_entity=dict(entity),
        stix_objects=[dict(o) for o in objects] or [dict(entity)],
        playbook=bool(record.get("internal", {}).get("playbook")),
    )
