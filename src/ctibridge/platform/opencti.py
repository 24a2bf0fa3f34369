"""OpenCTI behind the `Platform` interface, through pycti's `OpenCTIConnectorHelper`.

The helper is built by the caller (see `build_helper_config`) and injected, so tests drive the real pycti
code against a local double. This module keeps pycti's flows (registration, works, `send_stix2_bundle`,
state pings, `schedule_process`, `listen_stream`, `listen`) and adapts the places where pycti's defaults
would break our contract:

- pycti installs `killProgramHook` as `sys.excepthook` and calls it from its threads on any error (and when
  its stream watchdog exits normally), which SIGTERMs the process. We replace it with a hook that logs;
  only a genuinely stalled live stream still terminates the process, as pycti intends.
- `force_ping` swallows errors, so `set_state` pushes the state itself and raises `DeliveryError`.
- The stream thread moves `start_from` on every heartbeat, even for callbacks that manage their own state;
  while streaming we pin `start_from` so it only moves through `save_stream_position`.
- `helper.stop()` unregisters the connector (the platform deletes it with its state); `stop()` here only
  stops the threads.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sched
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from types import TracebackType
from typing import Any

from pycti import OpenCTIConnectorHelper
from pycti.connector import opencti_connector_helper as pycti_helper

from ctibridge.errors import CtiBridgeError, DeliveryError, InputError, RemoteError
from ctibridge.logs import redact
from ctibridge.platform.base import (
    EnrichmentRequest,
    EnrichmentResult,
    Platform,
    StixObject,
    StreamEvent,
    Work,
    chunked,
)
from ctibridge.platform.workflow import WORKFLOW_STATUSES_QUERY, statuses_of, workflow_variables

logger = logging.getLogger(__name__)

QUEUE_PROTOCOLS = ("amqp", "api")
STREAM_POSITION_KEY = "start_from"
STREAM_RECOVER_KEY = "recover_until"
# pycti's stream watchdog gives up after 45 s without a message; feed it while a handler is busy.
_WATCHDOG_FEED_INTERVAL = 5.0
_THREAD_JOIN_TIMEOUT = 10.0
_MAX_WORK_MESSAGE = 2000
# Indicators read per observable lookup; an observable with more is an outlier, the first ones suffice.
INDICATOR_LOOKUP_LIMIT = 100
VOCABULARY_DESCRIPTIONS = {
    "kql": "Kibana Query Language (KQL)",
    "lucene": "Apache Lucene query string syntax",
    "eql": "Elastic Event Query Language (EQL)",
    "esql": "Elasticsearch Query Language (ES|QL)",
}


def build_helper_config(
    *,
    url: str,
    token: str,
    connector_id: str,
    connector_type: str,
    connector_name: str,
    ssl_verify: bool | str = True,
    scope: str | Sequence[str] | None = None,
    log_level: str = "error",
    duration_period: timedelta | str | None = None,
    live_stream_id: str | None = None,
    auto: bool = False,
    queue_protocol: str = "amqp",
    run_and_terminate: bool = False,
    queue_threshold: float | None = None,
    live_stream_listen_delete: bool = True,
    live_stream_no_dependencies: bool = True,
    live_stream_with_inferences: bool = False,
    live_stream_recover_iso_date: str | bool | None = None,
    live_stream_start_timestamp: str | None = None,
    mq: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """pycti's configuration dict from plain values; pass it to `OpenCTIConnectorHelper(config)`.

    Unset values are left out so pycti applies its own defaults. pycti gives environment variables with
    the same names (`OPENCTI_URL`, `CONNECTOR_ID`, ...) precedence over this dict. `json_logging` is
    forced off: with it pycti calls `logging.basicConfig(force=True)` and replaces our (redacting) log
    handlers. `live_stream_recover_iso_date=False` disables the platform's recovery mode on first run.
    """
    if queue_protocol not in QUEUE_PROTOCOLS:
        raise ValueError(f"queue protocol must be one of {QUEUE_PROTOCOLS}, not {queue_protocol!r}")
    connector: dict[str, Any] = {
        "id": connector_id,
        "type": connector_type,
        "name": connector_name,
        "log_level": log_level,
        "auto": auto,
        "queue_protocol": queue_protocol,
        "run_and_terminate": run_and_terminate,
        "live_stream_listen_delete": live_stream_listen_delete,
        "live_stream_no_dependencies": live_stream_no_dependencies,
        "live_stream_with_inferences": live_stream_with_inferences,
    }
    if scope is not None:
        connector["scope"] = scope if isinstance(scope, str) else ",".join(scope)
    if duration_period is not None:
        connector["duration_period"] = (
            iso_duration(duration_period) if isinstance(duration_period, timedelta) else duration_period
        )
    optional = {
        "live_stream_id": live_stream_id,
        "queue_threshold": queue_threshold,
        "live_stream_recover_iso_date": live_stream_recover_iso_date,
        "live_stream_start_timestamp": live_stream_start_timestamp,
    }
    connector.update({key: value for key, value in optional.items() if value is not None})
    config: dict[str, Any] = {
        "opencti": {"url": url, "token": token, "ssl_verify": ssl_verify, "json_logging": False},
        "connector": connector,
    }
    if mq:
        config["mq"] = {key: value for key, value in mq.items() if value is not None}
    return config


def iso_duration(period: timedelta) -> str:
    """An ISO-8601 duration pycti parses back to the same number of seconds (`PT1800S`)."""
    seconds = period.total_seconds()
    return f"PT{int(seconds)}S" if seconds == int(seconds) else f"PT{seconds}S"


def _excepthook(
    etype: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
) -> None:
    """Log what pycti reports instead of killing the process; keep the kill for a stalled stream only."""
    thread = threading.current_thread()
    if isinstance(thread, pycti_helper.StreamAlive):
        if thread.exit_event.is_set():
            return  # pycti reports every watchdog exit, including the ones we asked for
        logger.critical(
            "OpenCTI live stream stalled (no event or heartbeat for 45 s); terminating so the supervisor "
            "restarts from the saved stream position"
        )
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if etype is None or value is None:
        return
    logger.error("unhandled error in %s", thread.name, exc_info=(etype, value, tb))


def _ensure_safe_excepthook() -> None:
    """Every helper construction reinstalls pycti's hook; undo that before running anything."""
    if sys.excepthook is pycti_helper.killProgramHook:
        sys.excepthook = _excepthook


def _to_json_object(obj: StixObject) -> dict[str, Any]:
    serialize = getattr(obj, "serialize", None)
    if callable(serialize):  # stix2 library objects
        return json.loads(serialize())
    return json.loads(json.dumps(dict(obj)))


def _bundle(objects: Sequence[StixObject]) -> str:
    return json.dumps(
        {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [_to_json_object(o) for o in objects]}
    )


def _error_message(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:_MAX_WORK_MESSAGE]


class _OpenCTIWork(Work):
    """A pycti work, opened with the first objects: a scheduled run that finds nothing new leaves no
    empty work in the platform's list (one every period otherwise). Every chunk is sent with its id."""

    def __init__(self, platform: OpenCTIPlatform, name: str) -> None:
        self.id: str | None = None
        self.name = name
        self.opened = False
        self.tried = False  # an open was attempted (a failed one may still have created the work)
        self._platform = platform
        self.objects_sent = 0
        self.bundles_sent = 0

    def open(self) -> None:
        helper = self._platform._helper
        self.tried = True
        try:
            self.id = helper.api.work.initiate_work(helper.connect_id, self.name, is_multipart=True)
        except Exception as exc:
            raise DeliveryError(f"OpenCTI refused to open work {self.name!r}: {_error_message(exc)}") from exc
        self.opened = True

    def send(self, objects: Sequence[StixObject]) -> int:
        if not objects:
            return 0
        if not self.opened:
            self.open()
        sent, bundles = self._platform._send(objects, self.id)
        self.objects_sent += sent
        self.bundles_sent += bundles
        return sent

    def summary(self) -> str:
        return f"{self.objects_sent} objects sent in {self.bundles_sent} bundles"


class _StreamCallback:
    """pycti stream callback: parses messages into `StreamEvent`s and isolates handler failures.

    `manages_state` tells pycti not to move `start_from` after each event; `set_heartbeat_queue` gives us
    pycti's watchdog queue so a long-running handler does not look like a dead stream.
    """

    manages_state = True

    def __init__(self, handler: Callable[[StreamEvent], None]) -> None:
        self._handler = handler
        self._watchdog: queue.Queue[Any] | None = None
        self._busy = threading.Event()
        self.failures = 0

    def set_heartbeat_queue(self, watchdog: queue.Queue[Any]) -> None:
        self._watchdog = watchdog

    def feed_watchdog(self) -> None:
        if self._busy.is_set() and self._watchdog is not None:
            with suppress(queue.Full):
                self._watchdog.put_nowait("handler-busy")

    def __call__(self, msg: Any) -> None:
        event_id = str(getattr(msg, "id", None))
        try:
            event = parse_stream_message(msg)
        except InputError as exc:
            self.failures += 1
            logger.error(
                "skipping unreadable stream event %s: %s", event_id, exc, extra={"event_id": event_id}
            )
            return
        self._busy.set()
        try:
            self._handler(event)
        except Exception:
            self.failures += 1
            logger.exception(
                "stream handler failed on event %s (%s); continuing with the next event",
                event_id,
                event.type,
                extra={"event_id": event_id},
            )
        finally:
            self._busy.clear()


def parse_stream_message(msg: Any) -> StreamEvent:
    """A pycti SSE message (`id`, `event`, JSON `data`) as a `StreamEvent`."""
    try:
        payload = json.loads(msg.data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"stream event data is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise InputError("stream event data has no STIX object")
    return StreamEvent(
        id=str(msg.id),
        type=str(msg.event),
        data=payload["data"],
        message=str(payload.get("message") or ""),
        context=payload.get("context") or {},
        origin=payload.get("origin") or {},
    )


def enrichment_request(event: Mapping[str, Any], *, playbook: bool) -> EnrichmentRequest:
    """What pycti hands an enrichment callback, as an `EnrichmentRequest`."""
    stix_entity = dict(event.get("stix_entity") or {})
    enrichment_entity = event.get("enrichment_entity") or {}
    return EnrichmentRequest(
        entity_id=str(event.get("entity_id") or stix_entity.get("id") or ""),
        entity_type=str(event.get("entity_type") or enrichment_entity.get("entity_type") or ""),
        stix_entity=stix_entity,
        stix_objects=[dict(o) for o in event.get("stix_objects") or []],
        playbook=playbook,
    )


def merge_objects(original: Sequence[StixObject], new: Sequence[StixObject]) -> list[dict[str, Any]]:
    """Original objects followed by new ones; a new object replaces an original with the same id."""
    merged: dict[str, dict[str, Any]] = {}
    for obj in [*original, *new]:
        data = _to_json_object(obj)
        merged[str(data.get("id"))] = data
    return list(merged.values())


class OpenCTIPlatform(Platform):
    """The `Platform` interface over an injected `OpenCTIConnectorHelper`.

    `chunk_size` bounds the objects per bundle. `max_runs` stops `schedule` after that many runs (tests run
    a single iteration with 1). `stream_retry_delay` is the pause before reopening a live stream whose
    pycti thread died. `cleanup_inconsistent_bundle` is passed to pycti: it drops references to objects
    absent from the bundle, which breaks references across chunks, hence off by default.
    """

    def __init__(
        self,
        helper: OpenCTIConnectorHelper,
        *,
        chunk_size: int = 5000,
        max_runs: int | None = None,
        stream_retry_delay: float = 10.0,
        cleanup_inconsistent_bundle: bool = False,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk size must be positive")
        if max_runs is not None and max_runs <= 0:
            raise ValueError("max_runs must be positive")
        self._helper = helper
        self._chunk_size = chunk_size
        self._max_runs = max_runs
        self._stream_retry_delay = stream_retry_delay
        self._cleanup = cleanup_inconsistent_bundle
        self._stop = threading.Event()
        self._scheduler_stop = threading.Event()
        self._state_lock = threading.RLock()
        self._set_state_unguarded: Callable[[Any], None] = helper.set_state
        self._stream_thread: pycti_helper.ListenStream | None = None
        self._runs = 0
        _ensure_safe_excepthook()

    @property
    def helper(self) -> OpenCTIConnectorHelper:
        return self._helper

    @property
    def runs(self) -> int:
        """How many scheduled runs started."""
        return self._runs

    # ------------------------------------------------------------------ state

    def get_state(self) -> dict[str, Any]:
        return dict(self._helper.get_state() or {})

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Store the state and push it to OpenCTI before returning.

        The stream keys pycti keeps in the state (`start_from`, `recover_until`) are carried over when the
        new state does not set them, so an import-style write cannot reset a stream position.
        """
        new_state = json.loads(json.dumps(dict(state)))
        with self._state_lock:
            current = self._helper.get_state() or {}
            for key in (STREAM_POSITION_KEY, STREAM_RECOVER_KEY):
                if key in current and key not in new_state:
                    new_state[key] = current[key]
            self._store_state(new_state)

    def save_stream_position(self, event_id: str) -> None:
        with self._state_lock:
            state = self._helper.get_state() or {}
            state[STREAM_POSITION_KEY] = str(event_id)
            self._store_state(state)

    def _store_state(self, state: dict[str, Any]) -> None:
        """`helper.set_state` then one ping carrying it, like `force_ping`, but failures raise.

        On a failed push the new state stays local and pycti's ping thread pushes it later (within 40 s).
        """
        self._set_state_unguarded(state)
        helper = self._helper
        try:
            answer = helper.api.connector.ping(helper.connector_id, state, helper.connector_info.all_details)
        except Exception as exc:
            raise DeliveryError(f"OpenCTI did not take the connector state: {_error_message(exc)}") from exc
        stored = (answer or {}).get("connector_state")
        try:
            stored_state = json.loads(stored) if stored else None
        except ValueError:
            stored_state = None
        if stored_state != state:
            # The platform answers a pending reset (from its UI) with the reset state; adopt it as pycti's
            # ping thread does, rather than overwriting the reset on the next ping.
            self._set_state_unguarded(stored_state)
            raise DeliveryError("OpenCTI did not store the connector state: it was reset on the platform")

    # ------------------------------------------------------------------ works and sending

    @contextmanager
    def work(self, name: str) -> Iterator[Work]:
        """One pycti work, multipart because a run may send several bundles into it.

        It is opened by the first send. A run that fails still leaves a work in error, so the failure
        shows in the platform; a run with nothing to send leaves none.
        """
        helper = self._helper
        work = _OpenCTIWork(self, name)
        try:
            yield work
        except BaseException as exc:
            # A failure before anything was sent still gets a work, so it shows in the platform; not an
            # interrupt (a stop is no failure), and not after an open that failed (it may have made one).
            if not work.tried and isinstance(exc, Exception):
                try:
                    work.open()
                except DeliveryError:
                    logger.exception("could not open a work to mark %r in error", name)
            if work.opened and work.id is not None:
                try:
                    helper.api.work.to_processed(work.id, _error_message(exc), in_error=True)
                except Exception:
                    logger.exception("could not mark work %r in error", name)
            raise
        if not work.opened:
            logger.info("nothing new to send: no work opened", extra={"work_name": name})
            return
        if work.id is not None:
            try:
                helper.api.work.to_processed(work.id, work.summary(), in_error=False)
            except Exception as exc:
                raise DeliveryError(f"OpenCTI did not close work {work.id}: {_error_message(exc)}") from exc

    def _send(self, objects: Sequence[StixObject], work_id: str | None) -> tuple[int, int]:
        """Send objects in chunks; return (objects, bundles). Each call returns once OpenCTI holds them."""
        items = list(objects)
        bundles = 0
        for chunk in chunked(items, self._chunk_size):
            self._send_bundle(_bundle(chunk), work_id)
            bundles += 1
        return len(items), bundles

    def _send_bundle(self, bundle: str, work_id: str | None) -> None:
        try:
            self._helper.send_stix2_bundle(bundle, work_id=work_id, cleanup_inconsistent_bundle=self._cleanup)
        except Exception as exc:
            raise DeliveryError(f"OpenCTI did not take the bundle: {_error_message(exc)}") from exc

    # ------------------------------------------------------------------ scheduling

    def schedule(self, job: Callable[[], None], period: timedelta | None) -> None:
        """Run through pycti's scheduler: queue-size check before each run, run info in the pings.

        A job's exception is logged and the next run happens as scheduled. With `period` None (or pycti's
        run-and-terminate setting) the job runs once and this returns; pycti's `sys.exit(0)` there is caught.
        """
        _ensure_safe_excepthook()
        runner = self._scheduled(job)
        if period is None:
            seconds = 0.0
        else:
            seconds = period.total_seconds()
            if seconds <= 0:
                raise ValueError("period must be positive; use None to run once")
            self._helper.scheduler = sched.scheduler(time.monotonic, self._scheduler_delay)
        try:
            self._helper.schedule_process(runner, seconds)
        except SystemExit:
            logger.info("run and terminate: single run done")

    def _scheduled(self, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if self._stop.is_set() or self._scheduler_stop.is_set():
                return
            self._runs += 1
            try:
                job()
            except Exception:
                logger.exception("scheduled run %d failed; next run as scheduled", self._runs)
            finally:
                if self._max_runs is not None and self._runs >= self._max_runs:
                    self._scheduler_stop.set()

        return run

    def _scheduler_delay(self, seconds: float) -> None:
        """The scheduler's sleep, cut short by `stop()`; once stopping, drop pending runs so it returns."""
        if not self._scheduler_stop.is_set():
            self._scheduler_stop.wait(max(seconds, 0.0))
        if self._scheduler_stop.is_set() or self._stop.is_set():
            scheduler = self._helper.scheduler
            for entry in list(scheduler.queue):
                with suppress(ValueError):  # already run or cancelled
                    scheduler.cancel(entry)

    # ------------------------------------------------------------------ live stream

    def listen_stream(self, handler: Callable[[StreamEvent], None]) -> None:
        """Deliver live-stream events in order until `stop()`; reopen the stream if pycti's thread dies.

        A reopened stream starts from the last saved position, so events after it are delivered again.
        """
        _ensure_safe_excepthook()
        callback = _StreamCallback(handler)
        feeder = threading.Thread(
            target=self._feed_watchdog, args=(callback,), name="stream-watchdog-feed", daemon=True
        )
        self._pin_stream_position()
        feeder.start()
        try:
            while not self._stop.is_set():
                self._complete_stream_state()
                self._stop_watchdogs()
                listener = type(self._helper).listen_stream(self._helper, callback)
                self._stream_thread = listener
                while listener.is_alive() and not self._stop.is_set():
                    listener.join(0.2)
                if self._stop.is_set():
                    break
                logger.warning(
                    "OpenCTI live stream ended; reopening from the saved position in %.1f s",
                    self._stream_retry_delay,
                )
                self._stop.wait(self._stream_retry_delay)
        finally:
            self._halt_stream()
            self._unpin_stream_position()
            feeder.join(timeout=_WATCHDOG_FEED_INTERVAL + 1)

    def _feed_watchdog(self, callback: _StreamCallback) -> None:
        while not self._stop.wait(_WATCHDOG_FEED_INTERVAL):
            callback.feed_watchdog()

    def _pin_stream_position(self) -> None:
        """Let pycti's stream thread write the state, but never move `start_from` once it is set."""
        original = self._set_state_unguarded
        helper = self._helper

        def guarded_set_state(state: Any) -> None:
            if isinstance(state, dict):
                current = helper.get_state() or {}
                if STREAM_POSITION_KEY in current:
                    state = {**state, STREAM_POSITION_KEY: current[STREAM_POSITION_KEY]}
            original(state)

        helper.set_state = guarded_set_state  # type: ignore[method-assign]

    def _unpin_stream_position(self) -> None:
        self._helper.__dict__.pop("set_state", None)

    def _complete_stream_state(self) -> None:
        """pycti reads both stream keys from any non-empty state and dies on a state lacking them."""
        with self._state_lock:
            state = self._helper.get_state()
            if not state or (STREAM_POSITION_KEY in state and STREAM_RECOVER_KEY in state):
                return
            helper = self._helper
            if STREAM_POSITION_KEY not in state:
                start = helper.connect_live_stream_start_timestamp
                state[STREAM_POSITION_KEY] = f"{start}-0" if start is not None else "0-0"
            if STREAM_RECOVER_KEY not in state:
                recover = helper.connect_live_stream_recover_iso_date
                state[STREAM_RECOVER_KEY] = recover if recover is not None else helper.date_now_z()
            self._store_state(state)

    def _watchdogs(self) -> list[pycti_helper.StreamAlive]:
        return [
            t
            for t in threading.enumerate()
            if isinstance(t, pycti_helper.StreamAlive) and t.helper is self._helper
        ]

    def _stop_watchdogs(self) -> None:
        """A stream thread that died leaves its watchdog running; it would report a stall later."""
        for watchdog in self._watchdogs():
            watchdog.stop()

    def _halt_stream(self) -> None:
        listener = self._stream_thread
        if listener is not None:
            listener.stop()
            listener.join(timeout=_THREAD_JOIN_TIMEOUT)
            if listener.is_alive():
                logger.warning("OpenCTI stream thread still waiting for the next message")
        self._stop_watchdogs()
        for watchdog in self._watchdogs():
            watchdog.join(timeout=_THREAD_JOIN_TIMEOUT)

    # ------------------------------------------------------------------ enrichment

    def listen_enrichment(self, handler: Callable[[EnrichmentRequest], EnrichmentResult]) -> None:
        """Serve enrichment requests through `helper.listen` until `stop()`.

        pycti reads the entity, marks the request's work received, calls us, then marks the work processed
        with our message (or in error with the exception's message).
        """
        _ensure_safe_excepthook()
        if self._stop.is_set():
            return

        def callback(event: dict[str, Any]) -> str:
            return self._enrich(handler, event)

        self._helper.listen(callback)

    def _enrich(self, handler: Callable[[EnrichmentRequest], EnrichmentResult], event: dict[str, Any]) -> str:
        helper = self._helper
        request = enrichment_request(event, playbook=helper.playbook is not None)
        work_id = helper.work_id
        try:
            result = handler(request)
            if request.playbook:
                # A playbook step passes one bundle on: what it received plus what we found.
                self._send_bundle(_bundle(merge_objects(request.stix_objects, result.objects)), work_id)
            elif result.objects:
                self._send(result.objects, work_id)
        except Exception as exc:
            logger.exception(
                "enrichment of %s failed", request.entity_id, extra={"entity_id": request.entity_id}
            )
            raise CtiBridgeError(_error_message(exc)) from exc
        return result.message

    def indicators_based_on(self, observable_id: str) -> list[dict[str, Any]]:
        """Indicators `based-on` the observable, as STIX, in one `indicators` query (pycti `indicator.list`).

        `regardingOf` selects the entities on the other end of a relationship of that type with the id;
        `toStix` returns each node as its STIX export, with score and detection in the OpenCTI extension.
        A failure raises (`RemoteError`): guessing "none" would silently withhold incidents.
        """
        filters = {
            "mode": "and",
            "filters": [
                {
                    "key": "regardingOf",
                    "values": [
                        {"key": "id", "values": [observable_id]},
                        {"key": "relationship_type", "values": ["based-on"]},
                    ],
                }
            ],
            "filterGroups": [],
        }
        try:
            rows = self._helper.api.indicator.list(filters=filters, first=INDICATOR_LOOKUP_LIMIT, toStix=True)
            found = [json.loads(row["toStix"]) for row in rows or [] if row.get("toStix")]
        except Exception as exc:
            raise RemoteError(
                "OpenCTI", f"could not look up the indicators based on {observable_id}: {_error_message(exc)}"
            ) from exc
        return [obj for obj in found if isinstance(obj, dict) and obj.get("type") == "indicator"]

    # ------------------------------------------------------------------ workflow

    def workflow_statuses(self, entity_type: str) -> dict[str, str]:
        """The entity type's workflow, from the `statuses` query filtered on `type` (no pycti call exists).

        Statuses of another scope (request access) or disabled ones are left out. A failure raises
        `RemoteError`; the caller decides what a missing workflow costs.
        """
        try:
            answer = self._helper.api.query(WORKFLOW_STATUSES_QUERY, workflow_variables(entity_type))
            edges = answer["data"]["statuses"]["edges"]
        except Exception as exc:
            raise RemoteError(
                "OpenCTI", f"could not read the {entity_type} workflow: {_error_message(exc)}"
            ) from exc
        return statuses_of(edges, entity_type)

    # ------------------------------------------------------------------ vocabularies

    def ensure_vocabulary(self, category: str, names: Sequence[str]) -> None:
        """Read each name in `category`, create the missing ones (pycti `vocabulary.list` / `create`).

        The filter names the category as well as the name: pycti's `read_or_create_unchecked` filters on
        the name alone, so a same-named entry of another category would hide a missing one. A failure
        (e.g. a token without the right to edit vocabularies) is logged and the connector carries on: its
        data still flows, OpenCTI users just cannot pick the pattern type yet.
        """
        api = self._helper.api
        for name in dict.fromkeys(n.strip() for n in names if n and n.strip()):
            filters = {
                "mode": "and",
                "filters": [
                    {"key": "category", "values": [category]},
                    {"key": "name", "values": [name]},
                ],
                "filterGroups": [],
            }
            try:
                existing = api.vocabulary.list(filters=filters)
                if any(str(v.get("name", "")).lower() == name.lower() for v in existing or []):
                    continue
                api.vocabulary.create(
                    name=name, category=category, description=VOCABULARY_DESCRIPTIONS.get(name, "")
                )
                logger.info("vocabulary entry added", extra={"category": category, "entry": name})
            except Exception as exc:
                logger.warning(
                    "could not register %r in vocabulary %s: %s", name, category, _error_message(exc)
                )

    # ------------------------------------------------------------------ shutdown

    def stop(self) -> None:
        """Stop pycti's threads (scheduler, stream, queue listener, ping); the connector stays registered."""
        self._stop.set()
        self._scheduler_stop.set()
        listener = self._stream_thread
        if listener is not None:
            listener.stop()
        self._stop_listen_queue()
        ping = getattr(self._helper, "ping", None)
        if isinstance(ping, pycti_helper.PingAlive):
            ping.stop()

    def _stop_listen_queue(self) -> None:
        """Stop the AMQP consumer from its own I/O loop: pika connections are not thread-safe."""
        listen_queue = getattr(self._helper, "listen_queue", None)
        if listen_queue is None:
            return
        if listen_queue.listen_protocol != "AMQP":
            # pycti keeps its uvicorn server local to the thread: nothing can stop it but the process end.
            logger.warning("the enrichment HTTP listener (listen protocol API) stops only with the process")
            return
        deadline = time.monotonic() + _THREAD_JOIN_TIMEOUT
        while listen_queue.is_alive() and time.monotonic() < deadline:
            listen_queue.exit_event.set()
            connection, channel = listen_queue.pika_connection, listen_queue.channel
            if connection is not None and channel is not None and connection.is_open:
                try:
                    connection.add_callback_threadsafe(channel.stop_consuming)
                except Exception:  # the connection closed meanwhile; the loop sees exit_event
                    logger.debug("listen queue connection already closed")
            listen_queue.join(0.2)
        if listen_queue.is_alive():
            logger.warning("OpenCTI listen queue thread did not stop in time")
            return
        try:
            listen_queue.stop()
        except Exception:
            logger.debug("listen queue connection already closed", exc_info=True)
