"""The OpenCTI adapter driving the real pycti helper against the double, over the API and over AMQP."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pycti.connector import opencti_connector_helper as pycti_helper
from pydantic import TypeAdapter

from ctibridge.errors import DeliveryError, RemoteError
from ctibridge.logs import TextFormatter
from ctibridge.platform.base import EnrichmentRequest, EnrichmentResult, StreamEvent
from ctibridge.platform.opencti import (
    OpenCTIPlatform,
    build_helper_config,
    parse_stream_message,
)
from ctibridge.platform.opencti import _excepthook as adapter_excepthook
from tests.conftest import Connect
from tests.doubles.opencti import OpenCTIDouble, PushedBundle

IPV4 = {
    "type": "ipv4-addr",
    "spec_version": "2.1",
    "id": "ipv4-addr--06ef1f7c-c9f7-536e-abcf-d02ad807426e",
    "value": "216.59.38.123",
}
Background = Callable[..., threading.Thread]


def identities(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": f"identity--{uuid.uuid5(uuid.NAMESPACE_URL, f'ctibridge-{i}')}",
            "name": f"Host {i}",
            "identity_class": "system",
            "created": "2024-01-01T00:00:00.000Z",
            "modified": "2024-01-01T00:00:00.000Z",
        }
        for i in range(start, start + count)
    ]


def received_bundles(
    double: OpenCTIDouble, protocol: str, connector_id: str, count: int
) -> list[PushedBundle]:
    """What reached the platform: the API pushes, or the messages pycti published on the push queue."""
    if protocol == "amqp":
        return double.read_push_queue(connector_id, count=count)
    return double.bundles(via="api")


def ids(objects: list[dict[str, Any]]) -> list[str]:
    return [o["id"] for o in objects]


# ---------------------------------------------------------------------------- configuration


def test_build_helper_config_maps_plain_values_to_pycti_keys() -> None:
    config = build_helper_config(
        url="https://opencti.example",
        token="secret-token",
        connector_id="7c8e2b9e-6d0a-4b8e-9d8e-0d6b1c2a3f4e",
        connector_type="EXTERNAL_IMPORT",
        connector_name="Elastic incidents",
        scope=["Incident", "Case-Incident"],
        duration_period=timedelta(minutes=30),
        queue_protocol="api",
        mq={"host": "rabbit", "port": None},
    )
    assert config["opencti"] == {
        "url": "https://opencti.example",
        "token": "secret-token",
        "ssl_verify": True,
        "json_logging": False,
    }
    connector = config["connector"]
    assert connector["scope"] == "Incident,Case-Incident"
    assert connector["queue_protocol"] == "api"
    assert "live_stream_id" not in connector
    assert config["mq"] == {"host": "rabbit"}
    assert TypeAdapter(timedelta).validate_python(connector["duration_period"]) == timedelta(minutes=30)
    with pytest.raises(ValueError, match="queue protocol"):
        build_helper_config(
            url="u",
            token="t",
            connector_id="i",
            connector_type="STREAM",
            connector_name="n",
            queue_protocol="kafka",
        )


def test_helper_built_from_config_registers_what_was_configured(
    opencti: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(
        opencti, connector_type="INTERNAL_ENRICHMENT", scope="IPv4-Addr,Domain-Name", auto=True
    )
    registration = opencti.connector(platform.helper.connector_id).registration
    assert registration["type"] == "INTERNAL_ENRICHMENT"
    assert registration["scope"] == ["IPv4-Addr", "Domain-Name"]
    assert registration["auto"] is True
    assert opencti.operations()[:4] == ["about", "about", "registerConnector", "pingConnector"]
    assert opencti.calls[0].headers["user-agent"].startswith("pycti/")
    assert sys.excepthook is not pycti_helper.killProgramHook


# ---------------------------------------------------------------------------- end to end


def test_end_to_end_work_bundle_state_and_rerun_resumes(
    double: OpenCTIDouble, protocol: str, connect: Connect
) -> None:
    connector_id = str(uuid.uuid4())
    first = connect(
        double,
        connector_id=connector_id,
        protocol=protocol,
        duration_period="PT1H",
        platform_options={"max_runs": 1},
    )
    batch = identities(3)

    def first_run() -> None:
        assert first.get_state() == {}
        with first.work("incidents 1") as work:
            assert work.send(batch) == 3
        first.set_state({"cursor": "2024-01-01T00:00:00Z", "seen": 3})

    first.schedule(first_run, timedelta(hours=1))
    assert first.runs == 1
    [work] = double.works(connector_id)
    assert (work.status, work.in_error, work.multipart) == ("complete", False, True)
    assert work.processed_message == "3 objects sent in 1 bundles"
    bundles = received_bundles(double, protocol, connector_id, count=3)
    assert {b.work_id for b in bundles} == {work.id}
    assert sorted(o["id"] for b in bundles for o in b.objects) == sorted(ids(batch))
    if protocol == "amqp":
        assert work.expectations == 3  # pycti splits one message per object and announces them
    assert double.state(connector_id) == {"cursor": "2024-01-01T00:00:00Z", "seen": 3}
    first.stop()
    assert double.deleted_connectors == []  # stopping must not unregister (that deletes the state)

    second = connect(
        double,
        connector_id=connector_id,
        protocol=protocol,
        duration_period="PT1H",
        platform_options={"max_runs": 1},
    )
    resumed: list[dict[str, Any]] = []

    def second_run() -> None:
        state = second.get_state()
        resumed.append(state)
        with second.work("incidents 2") as work:
            work.send(identities(2, start=state["seen"]))
        second.set_state({**state, "seen": state["seen"] + 2})

    second.schedule(second_run, timedelta(hours=1))
    assert resumed == [{"cursor": "2024-01-01T00:00:00Z", "seen": 3}]
    assert double.connector(connector_id).registrations == 2
    assert double.state(connector_id) == {"cursor": "2024-01-01T00:00:00Z", "seen": 5}
    second_work = next(w for w in double.works(connector_id) if w.name == "incidents 2")
    new = received_bundles(double, protocol, connector_id, count=2)
    new = [b for b in new if b.work_id == second_work.id]
    assert sorted(o["id"] for b in new for o in b.objects) == sorted(ids(identities(2, start=3)))


def test_send_splits_objects_into_bounded_bundles_of_one_work(
    opencti: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(opencti, platform_options={"chunk_size": 2})
    objects = identities(5)
    with platform.work("chunked") as work:
        assert work.send(objects) == 5
        assert work.send([]) == 0
    bundles = opencti.bundles(via="api", work_id=work.id)
    assert [len(b.objects) for b in bundles] == [2, 2, 1]
    assert [o["id"] for b in bundles for o in b.objects] == ids(objects)
    assert all(b.bundle["id"].startswith("bundle--") and b.bundle["type"] == "bundle" for b in bundles)
    assert opencti.work(work.id).processed_message == "5 objects sent in 3 bundles"


@pytest.mark.broker
def test_amqp_send_puts_every_object_on_the_push_queue_with_the_work(
    opencti_amqp: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(opencti_amqp, protocol="amqp", platform_options={"chunk_size": 2})
    with platform.work("amqp") as work:
        work.send(identities(3))
    messages = opencti_amqp.read_push_queue(platform.helper.connector_id, count=3)
    assert {m.work_id for m in messages} == {work.id}
    assert {m.applicant_id for m in messages} == {opencti_amqp.applicant_id}
    assert sorted(o["id"] for m in messages for o in m.objects) == sorted(ids(identities(3)))
    assert opencti_amqp.work(work.id).expectations == 3
    assert "stixBundlePush" not in opencti_amqp.operations()


# ---------------------------------------------------------------------------- failures


def test_failing_job_marks_its_work_in_error_and_keeps_the_state(
    opencti: OpenCTIDouble, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    platform = connect(opencti, duration_period="PT1S", platform_options={"max_runs": 2})
    connector_id = platform.helper.connector_id
    state_at_start: list[dict[str, Any] | None] = []

    def job() -> None:
        state_at_start.append(opencti.state(connector_id))
        run = len(state_at_start)
        with platform.work(f"run {run}") as work:
            work.send(identities(1, start=run))
            if run == 1:
                raise RuntimeError("SIEM unreachable with password=hunter2x")
        platform.set_state({"cursor": run})

    platform.schedule(job, timedelta(seconds=0.2))

    assert platform.runs == 2  # the scheduler survived the failure
    assert state_at_start == [None, None]  # the failed run did not advance the state
    first, second = sorted(opencti.works(connector_id), key=lambda w: w.name)
    assert first.in_error and first.status == "complete"
    assert "RuntimeError: SIEM unreachable" in str(first.processed_message)
    assert "hunter2x" not in str(first.processed_message)
    assert not second.in_error
    assert opencti.state(connector_id) == {"cursor": 2}
    assert "connector" in opencti.operations()  # pycti's queue-size check before the scheduled run
    assert sys.excepthook is not pycti_helper.killProgramHook
    assert "scheduled run 1 failed" in caplog.text
    assert opencti.token not in caplog.text  # not even before redaction
    written = "\n".join(TextFormatter().format(record) for record in caplog.records)
    assert "hunter2x" not in written  # ctibridge's handlers redact what the job's error carried


def test_stop_ends_a_scheduler_waiting_for_its_next_run(
    opencti: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    platform = connect(opencti, duration_period="PT1H")
    runner = background(platform.schedule, lambda: None, timedelta(hours=1))
    opencti.wait_for(lambda: platform.runs == 1, message="first run")
    started = time.monotonic()
    platform.stop()
    runner.join(timeout=5)
    assert not runner.is_alive() and time.monotonic() - started < 5
    assert platform.runs == 1


def test_set_state_keeps_the_stream_position(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti, connector_type="STREAM")
    platform.save_stream_position("1711633413527-0")
    platform.set_state({"batches": 4})
    assert opencti.state(platform.helper.connector_id) == {"batches": 4, "start_from": "1711633413527-0"}
    platform.set_state({"batches": 5, "start_from": "1711633413999-0"})
    assert platform.get_state() == {"batches": 5, "start_from": "1711633413999-0"}


def test_excepthook_logs_thread_errors_and_kills_only_for_a_stalled_stream(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    signals: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, signum: signals.append(signum))

    class Watchdog(pycti_helper.StreamAlive):
        def __init__(self, stopped: bool) -> None:
            super().__init__(helper=None, q=queue.Queue())
            if stopped:
                self.exit_event.set()

        def run(self) -> None:  # what pycti's watchdog does when it leaves its loop
            sys.excepthook(*sys.exc_info())

    sys.excepthook = adapter_excepthook
    for stopped in (True, False):
        watchdog = Watchdog(stopped)
        watchdog.start()
        watchdog.join()
    assert signals == [signal.SIGTERM]  # only the watchdog nobody stopped

    def failing() -> None:
        try:
            raise RuntimeError("stream thread failed")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())

    worker = threading.Thread(target=failing, name="pycti-worker")
    worker.start()
    worker.join()
    assert signals == [signal.SIGTERM]
    assert "unhandled error in pycti-worker" in caplog.text and "stream thread failed" in caplog.text


def test_schedule_without_period_runs_once_and_returns(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti)
    runs: list[int] = []
    platform.schedule(lambda: runs.append(1), None)
    assert runs == [1]
    info = opencti.connector(platform.helper.connector_id).connector_info or {}
    assert info["run_and_terminate"] is True and info["last_run_datetime"]


def test_run_and_terminate_setting_returns_after_one_run(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti, run_and_terminate=True)
    runs: list[int] = []
    platform.schedule(lambda: runs.append(1), timedelta(minutes=5))  # pycti calls sys.exit(0) here
    assert runs == [1]


def test_set_state_raises_when_the_platform_does_not_take_it(
    opencti: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(opencti)
    opencti.fail_next("pingConnector", "database unavailable")
    with pytest.raises(DeliveryError, match="database unavailable"):
        platform.set_state({"cursor": 1})
    assert opencti.state(platform.helper.connector_id) is None
    platform.set_state({"cursor": 2})
    assert opencti.state(platform.helper.connector_id) == {"cursor": 2}


def test_state_reset_on_the_platform_wins_over_a_concurrent_write(
    opencti: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(opencti)
    connector_id = platform.helper.connector_id
    platform.set_state({"cursor": 1})
    opencti.reset_connector_state(connector_id)
    with pytest.raises(DeliveryError, match="reset"):
        platform.set_state({"cursor": 2})
    assert platform.get_state() == {}
    platform.set_state({"cursor": 3})
    assert opencti.state(connector_id) == {"cursor": 3}


def test_failed_bundle_push_raises_and_marks_the_work_in_error(
    opencti: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(opencti)
    opencti.fail_next("stixBundlePush", "bundle rejected")
    with pytest.raises(DeliveryError, match="bundle rejected"), platform.work("doomed") as work:
        work.send(identities(1))
    record = opencti.work(work.id)
    assert record.in_error and "DeliveryError" in str(record.processed_message)


def test_failed_work_creation_raises_delivery_error(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti)
    opencti.fail_next("workAdd")
    with pytest.raises(DeliveryError, match="refused to open work"), platform.work("refused") as work:
        work.send(identities(1))
    assert opencti.bundles() == []  # nothing went out without its work
    # Not opened again to carry the failure: a refused open may still have created one (a timeout).
    assert opencti.works(platform.helper.connector_id) == []


def test_a_run_with_nothing_to_send_opens_no_work(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti)
    with platform.work("quiet run") as work:
        assert work.send([]) == 0
    assert opencti.works(platform.helper.connector_id) == []
    assert "workAdd" not in opencti.operations()


def test_a_quiet_run_that_is_interrupted_opens_no_work(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti)
    with pytest.raises(KeyboardInterrupt), platform.work("stopped"):
        raise KeyboardInterrupt
    assert opencti.works(platform.helper.connector_id) == []


def test_a_run_failing_before_it_sends_leaves_a_work_in_error(
    opencti: OpenCTIDouble, connect: Connect
) -> None:
    platform = connect(opencti)
    with pytest.raises(RuntimeError), platform.work("failed early"):
        raise RuntimeError("SIEM unreachable")
    [record] = opencti.works(platform.helper.connector_id)
    assert record.in_error and "SIEM unreachable" in str(record.processed_message)


# ---------------------------------------------------------------------------- live stream


def stream_platform(opencti: OpenCTIDouble, connect: Connect, **options: Any) -> OpenCTIPlatform:
    return connect(
        opencti, connector_type="STREAM", live_stream_id="live", live_stream_recover_iso_date=False, **options
    )


def test_stream_events_arrive_in_order_and_position_moves_only_when_saved(
    opencti: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    connector_id = str(uuid.uuid4())
    platform = stream_platform(opencti, connect, connector_id=connector_id)
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--c721b81a-6c3c-55ab-9bf3-038642e8add8",
        "name": "216.59.38.123",
        "pattern": "[ipv4-addr:value = '216.59.38.123']",
        "pattern_type": "stix",
    }
    sent = [opencti.append_event("create", IPV4), opencti.append_event("create", indicator)]
    received: list[StreamEvent] = []
    background(platform.listen_stream, received.append)
    opencti.wait_for(lambda: len(received) == 2, message="backlog delivered")
    patch = {"patch": [{"op": "replace", "path": "/name", "value": "x"}], "reverse_patch": []}
    sent.append(opencti.append_event("update", indicator, context=patch))
    sent.append(opencti.append_event("delete", IPV4))
    opencti.wait_for(lambda: len(received) == 4, message="live events delivered")

    assert [e.id for e in received] == sent
    assert [e.type for e in received] == ["create", "create", "update", "delete"]
    assert received[1].data["pattern"] == indicator["pattern"]
    assert received[2].context == patch
    assert received[0].message.startswith("creates a IPv4-Addr")
    connection = opencti.stream_connections[0]
    assert (connection.path, connection.headers["last-event-id"]) == ("/stream/live", "0-0")
    assert connection.headers["listen-delete"] == "true" and connection.headers["no-dependencies"] == "true"

    # Heartbeats carry the last event id; pycti would store it as start_from. It must stay put.
    opencti.wait_for(
        lambda: (
            sum(f[1] == "heartbeat" and f[0] == sent[-1] for f in opencti.stream_connections[0].frames) >= 2
        ),
        message="heartbeats",
    )
    assert platform.get_state()["start_from"] == "0-0"

    platform.save_stream_position(received[1].id)
    assert opencti.state(connector_id) == {"start_from": sent[1], "recover_until": False}
    platform.stop()

    rerun = stream_platform(opencti, connect, connector_id=connector_id)
    again: list[StreamEvent] = []
    background(rerun.listen_stream, again.append)
    opencti.wait_for(lambda: len(again) == 2, message="events after the saved position")
    assert opencti.stream_connections[-1].headers["last-event-id"] == sent[1]
    assert [e.id for e in again] == sent[2:]


def test_stream_starts_when_the_state_lacks_pycti_stream_keys(
    opencti: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    connector_id = str(uuid.uuid4())
    importer = connect(opencti, connector_id=connector_id)
    importer.set_state({"cursor": 7})  # pycti's stream thread would die on KeyError: 'start_from'
    importer.stop()
    platform = stream_platform(opencti, connect, connector_id=connector_id)
    event = opencti.append_event("create", IPV4)
    received: list[StreamEvent] = []
    background(platform.listen_stream, received.append)
    opencti.wait_for(lambda: len(received) == 1, message="event")
    assert received[0].id == event
    assert opencti.state(connector_id) == {"cursor": 7, "start_from": "0-0", "recover_until": False}
    assert len(opencti.stream_connections) == 1


def test_stream_handler_exception_is_logged_and_the_stream_goes_on(
    opencti: OpenCTIDouble, connect: Connect, background: Background, caplog: pytest.LogCaptureFixture
) -> None:
    platform = stream_platform(opencti, connect)
    sent = [opencti.append_event("create", {**IPV4, "value": f"10.0.0.{i}"}) for i in range(3)]
    handled: list[str] = []

    def handler(event: StreamEvent) -> None:
        if event.id == sent[1]:
            raise ValueError("cannot write to the SIEM")
        handled.append(event.id)

    with caplog.at_level(logging.ERROR, logger="ctibridge.platform.opencti"):
        background(platform.listen_stream, handler)
        opencti.wait_for(lambda: len(handled) == 2, message="events after the failing one")
    assert handled == [sent[0], sent[2]]
    [failure] = [r for r in caplog.records if getattr(r, "event_id", None)]
    assert failure.event_id == sent[1] and failure.exc_info is not None
    assert len(opencti.stream_connections) == 1  # pycti's stream thread did not die
    assert sys.excepthook is not pycti_helper.killProgramHook


def test_dropped_stream_reconnects_from_the_last_event_without_loss(
    opencti: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    platform = stream_platform(opencti, connect)
    received: list[str] = []

    def handler(event: StreamEvent) -> None:
        received.append(event.id)
        platform.save_stream_position(event.id)

    sent = [opencti.append_event("create", {**IPV4, "value": f"10.0.1.{i}"}) for i in range(2)]
    background(platform.listen_stream, handler)
    opencti.wait_for(lambda: len(received) == 2, message="first events")
    assert opencti.drop_stream_connections() == 1
    sent += [opencti.append_event("create", {**IPV4, "value": f"10.0.1.{i}"}) for i in range(2, 4)]
    opencti.wait_for(lambda: len(received) == 4, timeout=15, message="events after the drop")

    assert received == sent
    reconnect = opencti.stream_connections[-1]
    assert len(opencti.stream_connections) == 2
    assert reconnect.headers["last-event-id"] == sent[1]  # the position saved when the connection dropped
    assert platform.get_state()["start_from"] == sent[3]


def test_stream_reopened_after_failure_resumes_from_the_saved_position(
    opencti: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    platform = stream_platform(opencti, connect)
    received: list[str] = []

    def handler(event: StreamEvent) -> None:
        received.append(event.id)
        if len(received) == 1:
            platform.save_stream_position(event.id)  # later events are handled but not saved

    sent = [opencti.append_event("create", {**IPV4, "value": f"10.0.2.{i}"}) for i in range(3)]
    background(platform.listen_stream, handler)
    opencti.wait_for(lambda: len(received) == 3, message="first delivery")
    opencti.refuse_stream_connections(1)  # pycti's reconnect fails, its stream thread dies
    opencti.drop_stream_connections()
    opencti.wait_for(lambda: len(received) == 5, timeout=15, message="redelivery after reopening")

    assert received == sent + sent[1:]
    assert [c.status for c in opencti.stream_connections] == [200, 503, 200]
    assert opencti.stream_connections[-1].headers["last-event-id"] == sent[0]


def test_parse_stream_message_reads_platform_events() -> None:
    class Message:
        id = "1711633413527-0"
        event = "merge"
        data = (
            '{"version": "4", "type": "merge", "data": {"id": "x--1", "type": "x"}, "message": "merges",'
            ' "origin": {"referer": "r"}, "context": {"sources": [{"id": "x--2"}]}}'
        )

    event = parse_stream_message(Message())
    assert event == StreamEvent(
        "1711633413527-0",
        "merge",
        {"id": "x--1", "type": "x"},
        "merges",
        {"sources": [{"id": "x--2"}]},
        {"referer": "r"},
    )


# ---------------------------------------------------------------------------- enrichment


def enrichment_platform(opencti_amqp: OpenCTIDouble, connect: Connect) -> OpenCTIPlatform:
    opencti_amqp.load_entities([IPV4])
    return connect(opencti_amqp, protocol="amqp", connector_type="INTERNAL_ENRICHMENT", scope="IPv4-Addr")


DOMAIN = {
    "type": "domain-name",
    "spec_version": "2.1",
    "id": "domain-name--3c10e1bd-0b7f-5a0e-a8e6-6b6b1f1f5a11",
    "value": "c2.example",
}


@pytest.mark.broker
def test_enrichment_round_trip_over_amqp(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    platform = enrichment_platform(opencti_amqp, connect)
    connector_id = platform.helper.connector_id
    requests: list[EnrichmentRequest] = []

    def enrich(request: EnrichmentRequest) -> EnrichmentResult:
        requests.append(request)
        return EnrichmentResult([DOMAIN], "1 domain found")

    background(platform.listen_enrichment, enrich)
    work_id = opencti_amqp.send_enrichment_request(connector_id, IPV4["id"])
    opencti_amqp.wait_for(lambda: opencti_amqp.work(work_id).status == "complete", message="work processed")

    [request] = requests
    [delivery] = opencti_amqp.deliveries
    assert delivery.message["internal"]["work_id"] == work_id
    assert (request.entity_id, request.entity_type, request.playbook) == (IPV4["id"], "IPv4-Addr", False)
    assert request.stix_entity == IPV4 and request.stix_objects == [IPV4]
    work = opencti_amqp.work(work_id)
    assert work.received_message and work.processed_message == "1 domain found" and not work.in_error
    [message] = opencti_amqp.read_push_queue(connector_id, count=1)
    assert message.work_id == work_id and message.objects[0]["id"] == DOMAIN["id"]
    assert work.expectations == 1
    assert "stixCyberObservable" in opencti_amqp.operations()  # pycti read the entity first


@pytest.mark.broker
def test_enrichment_failure_marks_the_work_in_error_and_listening_goes_on(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    platform = enrichment_platform(opencti_amqp, connect)
    connector_id = platform.helper.connector_id
    calls: list[str] = []

    def enrich(request: EnrichmentRequest) -> EnrichmentResult:
        calls.append(request.entity_id)
        if len(calls) == 1:
            raise ConnectionError("Wazuh API timed out")
        return EnrichmentResult([], "nothing found")

    background(platform.listen_enrichment, enrich)
    failed = opencti_amqp.send_enrichment_request(connector_id, IPV4["id"])
    opencti_amqp.wait_for(lambda: opencti_amqp.work(failed).status == "complete", message="failed work")
    succeeded = opencti_amqp.send_enrichment_request(connector_id, IPV4["id"])
    opencti_amqp.wait_for(lambda: opencti_amqp.work(succeeded).status == "complete", message="second work")

    assert opencti_amqp.work(failed).in_error
    assert "Wazuh API timed out" in str(opencti_amqp.work(failed).processed_message)
    assert not opencti_amqp.work(succeeded).in_error
    assert opencti_amqp.work(succeeded).processed_message == "nothing found"
    assert opencti_amqp.read_push_queue(connector_id) == []  # nothing found, nothing sent
    assert sys.excepthook is not pycti_helper.killProgramHook


@pytest.mark.broker
def test_playbook_enrichment_passes_on_original_and_new_objects(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background
) -> None:
    platform = enrichment_platform(opencti_amqp, connect)
    seen: list[EnrichmentRequest] = []

    def enrich(request: EnrichmentRequest) -> EnrichmentResult:
        seen.append(request)
        return EnrichmentResult([DOMAIN], "1 domain found")

    background(platform.listen_enrichment, enrich)
    work_id = opencti_amqp.send_enrichment_request(platform.helper.connector_id, IPV4["id"], playbook=True)
    opencti_amqp.wait_for(lambda: opencti_amqp.work(work_id).status == "complete", message="playbook step")

    assert seen[0].playbook
    [step] = opencti_amqp.bundles(via="playbook")
    assert ids(step.objects) == [IPV4["id"], DOMAIN["id"]]
    assert opencti_amqp.read_push_queue(platform.helper.connector_id) == []  # playbooks get one bundle back


# ---------------------------------------------------------------------------- indicator lookup


def test_indicators_based_on_come_from_the_platform_as_stix(opencti: OpenCTIDouble, connect: Connect) -> None:
    ipv4 = {"type": "ipv4-addr", "spec_version": "2.1", "value": "198.51.100.7",
            "id": "ipv4-addr--0d36b1ff-3bbe-5d5b-9bb5-6f0d62e4c9f1"}  # fmt: skip
    when = "2026-01-01T00:00:00.000Z"

    def indicator(n: int) -> dict[str, Any]:
        return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.UUID(int=n)}",
                "created": when, "modified": when, "pattern": f"[ipv4-addr:value = '198.51.100.{n}']",
                "pattern_type": "stix", "valid_from": when, "x_opencti_score": n}  # fmt: skip

    def rel(kind: str, source: str, target: str) -> dict[str, Any]:
        return {"type": "relationship", "spec_version": "2.1", "id": f"relationship--{uuid.uuid4()}",
                "relationship_type": kind, "source_ref": source, "target_ref": target}  # fmt: skip

    based, other_kind, elsewhere = indicator(7), indicator(8), indicator(9)
    opencti.load_entities([ipv4, based, other_kind, elsewhere, rel("based-on", based["id"], ipv4["id"]),
                           rel("related-to", other_kind["id"], ipv4["id"]),
                           rel("based-on", elsewhere["id"], identities(1)[0]["id"])])  # fmt: skip
    platform = connect(opencti)
    assert platform.indicators_based_on(ipv4["id"]) == [based]
    assert platform.indicators_based_on(elsewhere["id"]) == []
    assert opencti.unknown_operations == []
    opencti.fail_next("indicators", "lookup refused")
    with pytest.raises(RemoteError, match="lookup refused"):
        platform.indicators_based_on(ipv4["id"])


# ---------------------------------------------------------------------------- workflow


def test_workflow_statuses_are_read_per_entity_type(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti)
    assert platform.workflow_statuses("Incident") == {}  # a new platform has a workflow for reports only
    ids = opencti.add_workflow("Incident", ["NEW", "IN_PROGRESS", "Triaged", "CLOSED"], disabled=["Triaged"])
    opencti.add_workflow("Incident", ["PENDING"], scope="REQUEST_ACCESS")
    opencti.add_workflow("Case-Incident", ["NEW"])
    statuses = platform.workflow_statuses("Incident")
    assert statuses == {"NEW": ids["NEW"], "IN_PROGRESS": ids["IN_PROGRESS"], "CLOSED": ids["CLOSED"]}
    assert list(statuses) == ["NEW", "IN_PROGRESS", "CLOSED"]  # in workflow order
    [call] = [c for c in opencti.calls if c.field == "statuses"][-1:]
    assert call.variables["filters"]["filters"] == [{"key": ["type"], "values": ["Incident"]}]


def test_an_unreadable_workflow_is_a_remote_error(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti)
    opencti.fail_next("statuses", "access denied")
    with pytest.raises(RemoteError, match="Incident workflow"):
        platform.workflow_statuses("Incident")


@pytest.mark.parametrize(
    "edges",
    [
        None,
        "nope",
        ["nope", None, {"node": "x"}, {"node": {"id": 5, "type": "Incident", "template": {"name": "NEW"}}}],
        [{"node": {"id": "s1", "type": "Incident", "template": {"name": 7}}}],
        [{"node": {"id": "s1", "type": "Incident", "template": None}}],
    ],
)
def test_a_malformed_workflow_answer_gives_no_statuses(
    opencti: OpenCTIDouble, connect: Connect, monkeypatch: pytest.MonkeyPatch, edges: Any
) -> None:
    platform = connect(opencti)
    monkeypatch.setattr(
        platform.helper.api, "query", lambda *_a, **_k: {"data": {"statuses": {"edges": edges}}}
    )
    assert platform.workflow_statuses("Incident") == {}
