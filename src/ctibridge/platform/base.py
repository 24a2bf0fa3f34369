"""The one interface every connector talks to, whatever is behind it (OpenCTI, or files for offline runs).

Connectors receive a `Platform` by injection, so the same connector code runs against OpenCTI in
production, against a directory with `--dry-run DIR`, and against test doubles.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

StixObject = Mapping[str, Any]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One live-stream event: `type` is create, update, delete or merge; `data` the STIX object."""

    id: str
    type: str
    data: dict[str, Any]
    message: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EnrichmentRequest:
    """An entity OpenCTI asks us to enrich, with the STIX objects it already knows around it."""

    entity_id: str
    entity_type: str
    stix_entity: dict[str, Any]
    stix_objects: list[dict[str, Any]]
    playbook: bool = False


@dataclass(frozen=True, slots=True)
class EnrichmentResult:
    """What an enrichment produced: new objects to send, and a message for the work log."""

    objects: list[dict[str, Any]]
    message: str


class Work(abc.ABC):
    """One unit of work (an OpenCTI "work"): everything sent through it is tracked together."""

    id: str | None = None

    @abc.abstractmethod
    def send(self, objects: Sequence[StixObject]) -> int:
        """Deliver objects (chunked as needed); return how many were sent.

        Returns only once the platform holds the objects (queued at the broker, accepted by the API or
        written to disk), so a caller may advance its state right after. Raises `DeliveryError` otherwise.
        """


class Platform(abc.ABC):
    """Where connectors send STIX, keep their state and receive stream events or enrichment requests."""

    @abc.abstractmethod
    def get_state(self) -> dict[str, Any]:
        """The connector's saved state, `{}` when none was saved yet."""

    @abc.abstractmethod
    def set_state(self, state: Mapping[str, Any]) -> None:
        """Persist state durably before returning (a crash right after must not lose it)."""

    @abc.abstractmethod
    def work(self, name: str) -> AbstractContextManager[Work]:
        """Open a work; leaving the block marks it processed, or in error when an exception escapes."""

    @abc.abstractmethod
    def schedule(self, job: Callable[[], None], period: timedelta | None) -> None:
        """Run `job` now and then every `period`; once when `period` is None. Blocks."""

    @abc.abstractmethod
    def listen_stream(self, handler: Callable[[StreamEvent], None]) -> None:
        """Deliver live-stream events to `handler` in order. Blocks.

        The position is advanced only through `save_stream_position`, so a connector that batches
        writes can acknowledge events after the batch holding them is durably written.
        """

    @abc.abstractmethod
    def save_stream_position(self, event_id: str) -> None:
        """Record that every stream event up to `event_id` was handled."""

    @abc.abstractmethod
    def listen_enrichment(self, handler: Callable[[EnrichmentRequest], EnrichmentResult]) -> None:
        """Deliver enrichment requests to `handler`; send what it returns in the request's work. Blocks."""

    def indicators_based_on(self, observable_id: str) -> list[dict[str, Any]]:
        """The STIX indicators the platform knows `based-on` this observable.

        Enrichment requests carry the entity and what it references, not the indicators pointing at it,
        so connectors that need them ask here. Platforms without a knowledge base know none.
        """
        return []

    def workflow_statuses(self, entity_type: str) -> dict[str, str] | None:
        """The statuses of the platform's workflow for `entity_type` (`Incident`, `Case-Incident`): status
        id by its template's name in upper case, in workflow order; empty when that type has no workflow.

        None from platforms that have no workflows at all (files): objects then carry no status.
        """
        return None

    def ensure_vocabulary(self, category: str, names: Sequence[str]) -> None:
        """Make `names` exist in the open vocabulary `category` (e.g. pattern types `pattern_type_ov`).

        Idempotent. Platforms without vocabularies do nothing.
        """
        log.debug("vocabulary %s not managed by this platform: %s", category, ", ".join(names))

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads; safe to call more than once."""


def chunked(objects: Sequence[StixObject], size: int) -> Iterator[Sequence[StixObject]]:
    """Split objects into bounded chunks so no bundle grows without limit."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    for start in range(0, len(objects), size):
        yield objects[start : start + size]
