"""The write path of the intel connector: threat-indicator index, bulk batches, dead letters, stream acks.

- `IntelIndex` talks to Elasticsearch: installs the index template idempotently, refuses an index that
  is a data stream (no overwrite by `_id` there), writes bulk batches retrying the items that failed with
  429/5xx (whole requests: 429/5xx retried honouring Retry-After), deletes stale and expired documents, and
  re-stamps `@timestamp` on documents older than the window Elastic's indicator-match rules search.
- `StreamBatcher` buffers what stream events mean (document writes, stale-document cleanups, rule calls),
  writes them in batches, and saves the stream position only once everything up to it is durably written.
  An item that keeps failing goes to the dead-letter file with its event and reason; the stream moves on.
  When Elasticsearch or Kibana is unreachable the batch is retried until it succeeds or the connector
  stops: nothing is acknowledged that was not written.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from elasticsearch import ApiError, Elasticsearch

from ctibridge.errors import ConfigurationError, RemoteError
from ctibridge.logs import redact
from ctibridge.net import RETRYABLE_STATUS, backoff_delay
from ctibridge.platform.base import StreamEvent
from ctibridge.siem.elastic.client import with_retries
from ctibridge.siem.elastic.indicators import TEMPLATE_VERSION, index_template

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CLEANUP_CHUNK = 200
RESTAMP_PAGE = 1000
DEPENDENCY_REFERER = "init-dependencies"


class StopRequested(Exception):
    """The connector is stopping while a batch waits for Elasticsearch or Kibana; nothing was acked."""


@dataclass(frozen=True)
class Origin:
    """The stream event an operation comes from, for the dead-letter file."""

    event_id: str
    event_type: str
    stix: Mapping[str, Any]

    @classmethod
    def of(cls, event: StreamEvent) -> Origin:
        return cls(event.id, event.type, event.data)


@dataclass
class Op:
    action: str  # "index" or "delete"
    doc_id: str
    source: dict[str, Any] | None
    origin: Origin


@dataclass
class Failure:
    op_id: str
    action: str
    status: int | None
    reason: str


class DeadLetters:
    """JSON lines, one per event that could not be written: the event, the failures, the STIX object.

    Without a path, failures are only logged (at ERROR, with the same content).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.count = 0
        self._lock = threading.Lock()

    def write(self, origin: Origin, failures: Sequence[Failure], now: datetime | None = None) -> None:
        record = {
            "time": (now or datetime.now(UTC)).isoformat(),
            "event_id": origin.event_id,
            "event_type": origin.event_type,
            "stix_id": origin.stix.get("id"),
            "failures": [
                {"target": f.op_id, "action": f.action, "status": f.status, "reason": redact(f.reason)}
                for f in failures
            ],
            "object": origin.stix,
        }
        self.count += 1
        log.error(
            "dead-lettered event %s (%s): %s",
            origin.event_id,
            origin.stix.get("id"),
            "; ".join(f"{f.action} {f.op_id}: {redact(f.reason)}" for f in failures),
            extra={"event_id": origin.event_id},
        )
        if self.path is None:
            return
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())


class IntelIndex:
    """The threat-indicator index in Elasticsearch."""

    def __init__(
        self,
        es: Elasticsearch,
        index: str,
        *,
        attempts: int = 5,
        item_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.es = es
        self.index = index
        self.attempts = attempts
        self.item_attempts = item_attempts
        self.sleep = sleep

    def _retry(self, call: Callable[[], _T]) -> _T:
        return with_retries(call, service="elasticsearch", attempts=self.attempts, sleep=self.sleep)

    @property
    def template_name(self) -> str:
        return f"ctibridge-{self.index}"

    def install(self) -> str:
        """Install or update our template, then make sure the index exists as a plain index.

        Returns "created", "updated" or "unchanged" for the template. An index that is a data stream
        (created earlier by the built-in `logs-*-*` template) is a configuration error: documents could
        not be overwritten or deleted by `_id` there.
        """
        wanted = index_template(self.index)
        current = self._get_template()
        if current is not None and _same_template(current, wanted):
            outcome = "unchanged"
        else:
            self._retry(
                lambda: self.es.indices.put_index_template(
                    name=self.template_name,
                    index_patterns=wanted["index_patterns"],
                    priority=wanted["priority"],
                    template=wanted["template"],
                    version=wanted["version"],
                    meta=wanted["_meta"],
                )
            )
            outcome = "created" if current is None else "updated"
        streams = self._retry(
            lambda: self.es.options(ignore_status=404).indices.get_data_stream(name=self.index)
        )
        if streams.meta.status == 200 and streams.get("data_streams"):
            raise ConfigurationError(
                {
                    "ELASTIC_SECURITY_INDEX_NAME": f"{self.index} is a data stream (append-only, no "
                    "update or delete by _id); delete it or choose another name"
                }
            )
        exists = self._retry(lambda: self.es.indices.exists(index=self.index))
        if not exists:
            self._retry(lambda: self.es.options(ignore_status=400).indices.create(index=self.index))
        elif outcome != "unchanged":
            mappings = wanted["template"]["mappings"]
            self._retry(
                lambda: self.es.indices.put_mapping(index=self.index, properties=mappings["properties"])
            )
        log.info("index template %s %s (version %d)", self.template_name, outcome, TEMPLATE_VERSION)
        return outcome

    def _get_template(self) -> dict[str, Any] | None:
        answer = self._retry(
            lambda: self.es.options(ignore_status=404).indices.get_index_template(name=self.template_name)
        )
        if answer.meta.status == 404:
            return None
        templates = answer.get("index_templates") or []
        return dict(templates[0]["index_template"]) if templates else None

    def write(self, ops: Sequence[Op]) -> list[tuple[Op, Failure]]:
        """Bulk-write `ops`; retry items failing with 429/5xx; return the ones that kept failing.

        Deleting a document that does not exist is a success. A whole request that keeps failing raises
        `RemoteError` (nothing is reported as failed item, the caller retries the batch).
        """
        failed: list[tuple[Op, Failure]] = []
        pending = list(ops)
        for attempt in range(1, self.item_attempts + 1):
            if not pending:
                break
            operations: list[dict[str, Any]] = []
            for op in pending:
                operations.append({op.action: {"_index": self.index, "_id": op.doc_id}})
                if op.action == "index":
                    operations.append(op.source or {})
            answer = self._retry(lambda operations=operations: self.es.bulk(operations=operations))
            retry: list[Op] = []
            for op, item in zip(pending, answer["items"], strict=True):
                result = next(iter(item.values()))
                error = result.get("error")
                if not error:
                    continue
                status = result.get("status")
                reason = _item_reason(error)
                if status in RETRYABLE_STATUS and attempt < self.item_attempts:
                    retry.append(op)
                else:
                    failed.append((op, Failure(op.doc_id, op.action, status, reason)))
            if retry:
                log.warning(
                    "%d of %d bulk items rejected (e.g. %s); retry %d/%d",
                    len(retry),
                    len(pending),
                    retry[0].doc_id,
                    attempt,
                    self.item_attempts - 1,
                )
                self.sleep(backoff_delay(attempt, None, base=0.5, cap=30))
            pending = retry
        return failed

    def remove_stale(self, keep: Mapping[str, Sequence[str]]) -> int:
        """Delete the documents of these STIX objects except the listed `_id`s (values a pattern lost).

        The index is refreshed first: `_delete_by_query` only sees what a refresh made searchable.
        """
        if not keep:
            return 0
        self._retry(lambda: self.es.indices.refresh(index=self.index))
        deleted = 0
        items = list(keep.items())
        for start in range(0, len(items), CLEANUP_CHUNK):
            clauses = []
            for stix_id, ids in items[start : start + CLEANUP_CHUNK]:
                clause: dict[str, Any] = {"filter": [{"term": {"opencti.stix_id": stix_id}}]}
                if ids:
                    clause["must_not"] = [{"ids": {"values": list(ids)}}]
                clauses.append({"bool": clause})
            query = {"bool": {"should": clauses, "minimum_should_match": 1}}
            answer = self._retry(
                lambda query=query: self.es.delete_by_query(
                    index=self.index, query=query, conflicts="proceed", refresh=True
                )
            )
            deleted += int(answer.get("deleted") or 0)
        return deleted

    def sweep_expired(self, now: datetime) -> int:
        """Delete every document whose `opencti.expires_at` has passed (expired while nothing happened)."""
        query = {"range": {"opencti.expires_at": {"lte": now.astimezone(UTC).isoformat()}}}
        answer = self._retry(
            lambda: self.es.delete_by_query(index=self.index, query=query, conflicts="proceed", refresh=True)
        )
        return int(answer.get("deleted") or 0)

    def restamp(self, now: datetime, older_than: timedelta, max_rounds: int = 1000) -> int:
        """Set `@timestamp` to `now` on documents stamped before `now - older_than`.

        Elastic's indicator-match rules only read indicators stamped within the last 30 days; a live
        indicator that has not changed for longer must stay visible to them.
        """
        cutoff = (now - older_than).astimezone(UTC).isoformat()
        stamp = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        total = 0
        for _ in range(max_rounds):
            answer = self._retry(
                lambda: self.es.search(
                    index=self.index,
                    query={"range": {"@timestamp": {"lt": cutoff}}},
                    size=RESTAMP_PAGE,
                    source=False,
                    track_total_hits=False,
                )
            )
            hits = answer["hits"]["hits"]
            if not hits:
                break
            operations: list[dict[str, Any]] = []
            for hit in hits:
                operations.append({"update": {"_index": self.index, "_id": hit["_id"]}})
                operations.append({"doc": {"@timestamp": stamp}})
            result = self._retry(lambda operations=operations: self.es.bulk(operations=operations))
            done = sum(1 for item in result["items"] if not next(iter(item.values())).get("error"))
            total += done
            self._retry(lambda: self.es.indices.refresh(index=self.index))
            if done == 0:
                break
        return total


def _same_template(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Ours, same version, same patterns and priority (Elasticsearch echoes mappings normalised, so the
    version is what tells whether the mappings changed)."""
    return (
        current.get("version") == wanted["version"]
        and (current.get("_meta") or {}).get("managed_by") == wanted["_meta"]["managed_by"]
        and list(current.get("index_patterns") or []) == wanted["index_patterns"]
        and current.get("priority") == wanted["priority"]
        and not current.get("data_stream")
    )


def _item_reason(error: Any) -> str:
    if isinstance(error, Mapping):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" ({cause['reason']})"
        return reason
    return str(error)


# ------------------------------------------------------------------ batching and acknowledgement


RuleCall = Callable[[], object]


@dataclass
class _Pending:
    ops: dict[str, Op] = field(default_factory=dict)
    stale: dict[str, tuple[list[str], Origin]] = field(default_factory=dict)
    rules: dict[str, tuple[str, RuleCall, Origin]] = field(default_factory=dict)
    events: int = 0

    def __bool__(self) -> bool:
        return bool(self.ops or self.stale or self.rules)


class StreamBatcher:
    """Buffers the writes of stream events and acknowledges events only after their writes landed.

    Within a batch the last operation on a document (or rule) wins, so a batch never writes an older
    version over a newer one, not even when a failed item is retried.

    Acknowledgement: the platform sends an event's dependencies under the event's own id, before it; an id
    is complete once a later id arrives or its last frame is not a dependency. The saved position is the
    newest complete id whose writes all landed, so a restart never skips part of an event.
    """

    def __init__(
        self,
        index: IntelIndex,
        save_position: Callable[[str], None],
        *,
        batch_size: int,
        dead_letters: DeadLetters,
        stopping: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 60.0,
    ) -> None:
        self.index = index
        self.save_position = save_position
        self.batch_size = batch_size
        self.dead_letters = dead_letters
        self.stopping = stopping
        self.sleep = sleep
        self.max_wait = max_wait
        self.lock = threading.RLock()
        self._pending = _Pending()
        self._current: str | None = None
        self._previous: str | None = None
        self._current_complete = False
        self._saved: str | None = None
        self.last_activity = time.monotonic()
        self.written = 0
        self.deleted = 0
        self.flushes = 0
        self.failed: BaseException | None = None

    # ------------------------------------------------------------------ event bracketing

    def begin(self, event: StreamEvent) -> None:
        if event.id != self._current:
            if self._current is not None:
                self._previous = self._current
            self._current = event.id
            self._current_complete = False

    def end(self, event: StreamEvent) -> None:
        self._current_complete = (event.origin or {}).get("referer") != DEPENDENCY_REFERER
        self._pending.events += 1
        self.last_activity = time.monotonic()
        if len(self._pending.ops) >= self.batch_size or self._pending.events >= self.batch_size:
            self.flush()

    # ------------------------------------------------------------------ buffering

    def index_document(self, doc_id: str, source: dict[str, Any], origin: Origin) -> None:
        self._pending.ops.pop(doc_id, None)  # re-insert: the newest operation goes last
        self._pending.ops[doc_id] = Op("index", doc_id, source, origin)

    def delete_document(self, doc_id: str, origin: Origin) -> None:
        self._pending.ops.pop(doc_id, None)
        self._pending.ops[doc_id] = Op("delete", doc_id, None, origin)

    def keep_only(self, stix_id: str, ids: Sequence[str], origin: Origin) -> None:
        """After this batch, the object's documents are exactly `ids` (others are removed)."""
        self._pending.stale[stix_id] = (list(ids), origin)

    def touch(self, stix_id: str, ids: Sequence[str]) -> None:
        """A later event rewrote these documents: a pending cleanup of the object must keep them."""
        if stix_id in self._pending.stale:
            _, origin = self._pending.stale[stix_id]
            self._pending.stale[stix_id] = (list(ids), origin)

    def rule(self, key: str, description: str, call: RuleCall, origin: Origin) -> None:
        self._pending.rules.pop(key, None)
        self._pending.rules[key] = (description, call, origin)

    def has_rule(self, key: str) -> bool:
        return key in self._pending.rules

    # ------------------------------------------------------------------ flushing

    def flush(self, *, final: bool = False) -> None:
        """Write everything buffered, then save the newest position that is safe to save."""
        with self.lock:
            if self.failed is not None:
                raise self.failed
            pending, self._pending = self._pending, _Pending()
            if pending:
                try:
                    self._write(pending)
                except BaseException as exc:
                    # What this batch held is neither written nor acknowledged: no later flush may move
                    # the position past it. The connector stops; a restart replays from the saved position.
                    self.failed = exc
                    raise
                self.flushes += 1
            safe = self._current if (self._current_complete or final) else self._previous
            if safe is not None and safe != self._saved:
                self.save_position(safe)
                self._saved = safe

    def idle_flush(self, idle_seconds: float) -> bool:
        """Flush when nothing arrived for `idle_seconds`; True when it flushed or saved."""
        with self.lock:
            if time.monotonic() - self.last_activity < idle_seconds:
                return False
            if not self._pending and (self._current is None or self._saved == self._current):
                return False
            self.flush()
            return True

    def _write(self, pending: _Pending) -> None:
        failures: dict[tuple[str, str], tuple[Origin, list[Failure]]] = {}

        def fail(origin: Origin, failure: Failure) -> None:
            key = (origin.event_id, str(origin.stix.get("id", "")))
            failures.setdefault(key, (origin, []))[1].append(failure)

        if pending.ops:
            ops = list(pending.ops.values())
            failed = self._until_done("Elasticsearch bulk write", lambda: self.index.write(ops))
            for op, failure in failed:
                fail(op.origin, failure)
            self.written += sum(1 for op in ops if op.action == "index")
            self.deleted += sum(1 for op in ops if op.action == "delete")
        if pending.stale:
            keep = {stix_id: ids for stix_id, (ids, _) in pending.stale.items()}
            self.deleted += self._until_done("stale document cleanup", lambda: self.index.remove_stale(keep))
        for key, (description, call, origin) in pending.rules.items():
            try:
                self._until_done(description, call)
            except RemoteError as exc:
                fail(origin, Failure(key, description, exc.status, str(exc)))
        for origin, items in failures.values():
            self.dead_letters.write(origin, items)

    def _until_done(self, what: str, call: Callable[[], _T]) -> _T:
        """Run `call`, waiting out an unreachable or overloaded service for as long as it takes.

        Non-retryable answers (4xx) raise `RemoteError` at once; a stop request raises `StopRequested`.
        """
        wait = 1.0
        while True:
            try:
                return call()
            except (RemoteError, ApiError) as exc:
                status = exc.status if isinstance(exc, RemoteError) else exc.meta.status
                if status is not None and status not in RETRYABLE_STATUS:
                    if isinstance(exc, ApiError):
                        raise RemoteError("elasticsearch", str(exc.message), status) from None
                    raise
                if self.stopping():
                    raise StopRequested(f"{what} not done: {exc}") from exc
                log.error("%s failed (%s); retrying in %.0f s, nothing acknowledged", what, exc, wait)
                self.sleep(wait)
                wait = min(wait * 2, self.max_wait)
