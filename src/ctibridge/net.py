"""HTTP plumbing shared by every SIEM client: TLS options and retry timing that honours Retry-After."""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from ctibridge.errors import RemoteError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def tls_options(
    verify: bool = True,
    ca_cert: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> dict[str, Any]:
    """httpx keyword arguments: verification on by default, an optional CA bundle and client certificate."""
    if not verify:
        return {"verify": False}
    if not ca_cert and not client_cert:
        return {"verify": True}
    context = ssl.create_default_context(cafile=ca_cert) if ca_cert else ssl.create_default_context()
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return {"verify": context}


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, retry_after: float | None, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Delay before retry `attempt` (from 1): the server's Retry-After, else a capped, jittered doubling."""
    if retry_after is not None:
        return min(retry_after, cap * 5)
    return min(cap, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


class Retryable(Exception):
    """Raised by one attempt of a call that may succeed later (429, 5xx, connection failure)."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def retry(
    attempt: Callable[[], _T], *, service: str, attempts: int, sleep: Callable[[float], None] = time.sleep
) -> _T:
    """Run `attempt`, retrying `Retryable` failures up to `attempts` times, honouring Retry-After.

    When retries run out the last failure becomes a `RemoteError`; other exceptions pass through.
    """
    for number in range(1, attempts + 2):
        try:
            return attempt()
        except Retryable as exc:
            if number > attempts:
                raise RemoteError(service, exc.reason, exc.status) from None
            delay = backoff_delay(number, exc.retry_after)
        log.warning("%s busy or unreachable; retry %d/%d in %.1fs", service, number, attempts, delay)
        sleep(delay)
    raise AssertionError("unreachable")
