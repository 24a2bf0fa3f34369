"""The OpenCTI double: its GraphQL contract, its live stream and its broker side, checked on their own."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pika
import pytest
import requests
from filigran_sseclient import SSEClient
from pycti import OpenCTIApiClient, OpenCTIConnectorHelper
from pycti.connector.opencti_connector import OpenCTIConnector

from ctibridge.platform.opencti import build_helper_config
from tests.conftest import HEARTBEAT, TOKEN
from tests.doubles.opencti import BrokerSettings, OpenCTIDouble

IPV4 = {
    "type": "ipv4-addr",
    "spec_version": "2.1",
    "id": "ipv4-addr--06ef1f7c-c9f7-536e-abcf-d02ad807426e",
    "value": "216.59.38.123",
}
AUTHOR = {
    "type": "identity",
    "spec_version": "2.1",
    "id": "identity--6384d70e-3e7e-5ea0-90a1-a9f589a60d30",
    "name": "Wazuh",
    "identity_class": "system",
}
INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--c721b81a-6c3c-55ab-9bf3-038642e8add8",
    "name": "216.59.38.123",
    "pattern": "[ipv4-addr:value = '216.59.38.123']",
    "pattern_type": "stix",
    "created_by_ref": AUTHOR["id"],
}
BASED_ON = {
    "type": "relationship",
    "spec_version": "2.1",
    "id": f"relationship--{uuid.uuid4()}",
    "relationship_type": "based-on",
    "source_ref": INDICATOR["id"],
    "target_ref": IPV4["id"],
}
Frame = tuple[str | None, str, Any]


def api_client(double: OpenCTIDouble, token: str = TOKEN) -> OpenCTIApiClient:
    return OpenCTIApiClient(double.url, token, log_level="error", ssl_verify=False)


def read_stream(
    double: OpenCTIDouble,
    path: str = "/stream/live",
    *,
    last_event_id: str | None = "0-0",
    headers: dict[str, str] | None = None,
    until: Callable[[list[Frame]], bool],
    timeout: float = 5.0,
) -> list[Frame]:
    """Frames read the way pycti reads them (filigran's SSEClient) until `until` holds."""
    client = SSEClient(
        double.url + path,
        last_event_id,
        headers={"authorization": f"Bearer {double.token}", **(headers or {})},
    )
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    try:
        for message in client:
            frames.append((message.id, message.event, json.loads(message.data)))
            if until(frames):
                return frames
            if time.monotonic() > deadline:
                raise AssertionError(f"stream condition not met; got {[(f[0], f[1]) for f in frames]}")
    finally:
        client.resp.close()
    return frames


def data_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f[1] not in ("connected", "heartbeat")]


def heartbeat_after(count: int) -> Callable[[list[Frame]], bool]:
    """Stop once `count` data events and then a heartbeat were read (nothing more is coming)."""
    return lambda frames: len(data_frames(frames)) >= count and frames[-1][1] == "heartbeat"


@pytest.fixture
def bare_double() -> Iterator[OpenCTIDouble]:
    """A double without the fixture's check on unknown operations, for tests that send them."""
    with OpenCTIDouble(token=TOKEN, heartbeat_interval=HEARTBEAT) as double:
        yield double


# ---------------------------------------------------------------------------- GraphQL


def test_wrong_token_is_refused_like_an_anonymous_request(bare_double: OpenCTIDouble) -> None:
    answer = requests.post(
        bare_double.url + "/graphql",
        json={"query": "query healthCheck { about { version } }"},
        headers={"Authorization": "Bearer wrong"},
        timeout=5,
    ).json()
    assert answer["errors"][0]["name"] == "AUTH_REQUIRED" and answer["data"] is None
    config = build_helper_config(
        url=bare_double.url,
        token="not-the-token",
        connector_id=str(uuid.uuid4()),
        connector_type="EXTERNAL_IMPORT",
        connector_name="x",
        ssl_verify=False,
    )
    with pytest.raises(ValueError, match="not reachable"):
        OpenCTIConnectorHelper(config)
    assert len(bare_double.auth_failures) >= 2
    assert bare_double.connector_ids == []


def test_unknown_operations_fail_loudly_and_are_recorded(bare_double: OpenCTIDouble) -> None:
    api = api_client(bare_double)
    with pytest.raises(ValueError, match="UNSUPPORTED_OPERATION"):
        api.query("query Settings { settings { id platform_title } }")
    [call] = bare_double.unknown_operations
    assert (call.operation, call.field) == ("Settings", "settings")


def test_injected_failure_answers_one_call_with_an_error(opencti: OpenCTIDouble) -> None:
    api = api_client(opencti)
    opencti.fail_next("about", "maintenance")
    with pytest.raises(ValueError, match="maintenance"):
        api.query("query healthCheck { about { version } }")
    assert api.health_check() is True


def test_vocabularies_are_read_and_created_as_pycti_does(opencti: OpenCTIDouble) -> None:
    api = api_client(opencti)
    stix = api.vocabulary.read_or_create_unchecked(name="stix", category="pattern_type_ov", required=False)
    assert stix is not None and stix["name"] == "stix"
    created = api.vocabulary.read_or_create_unchecked(
        name="kql", category="pattern_type_ov", required=False, description="Kusto query language"
    )
    again = api.vocabulary.read_or_create_unchecked(name="kql", category="pattern_type_ov", required=False)
    assert created["id"] == again["id"] and again["category"]["key"] == "pattern_type_ov"
    assert [v["name"] for v in opencti.created_vocabularies] == ["kql"]
    assert "kql" in opencti.vocabulary_names("pattern_type_ov")
    listed = api.vocabulary.list(
        filters={
            "mode": "and",
            "filterGroups": [],
            "filters": [
                {"key": "category", "values": ["pattern_type_ov"]},
                {"key": "name", "values": ["KQL", "eql"]},
            ],
        }
    )
    assert sorted(v["name"] for v in listed) == ["eql", "kql"]


def test_entity_reads_serve_loaded_objects_by_standard_or_internal_id(opencti: OpenCTIDouble) -> None:
    opencti.load_entities([IPV4, INDICATOR, AUTHOR])
    api = api_client(opencti)
    observable = api.stix_cyber_observable.read(id=IPV4["id"], withFiles=True)
    assert observable["standard_id"] == IPV4["id"]
    assert (observable["entity_type"], observable["observable_value"]) == ("IPv4-Addr", "216.59.38.123")
    assert api.stix_core_object.read(id=observable["id"])["standard_id"] == IPV4["id"]
    assert api.indicator.read(id=INDICATOR["id"])["pattern"] == INDICATOR["pattern"]
    assert api.indicator.read(id=IPV4["id"]) is None  # wrong type, as the platform answers
    assert api.stix_cyber_observable.read(id=f"ipv4-addr--{uuid.uuid4()}") is None


def test_works_follow_the_platform_lifecycle(opencti: OpenCTIDouble) -> None:
    api = api_client(opencti)
    connector_id = str(uuid.uuid4())
    api.connector.register(
        OpenCTIConnector(connector_id, "c", "EXTERNAL_IMPORT", None, False, False, False, False, "none")
    )
    work_id = api.work.initiate_work(connector_id, "run", is_multipart=True)
    api.work.to_received(work_id, "received")
    api.work.add_expectations(work_id, 4)
    api.work.to_processed(work_id, "done")
    work = opencti.work(work_id)
    assert (work.status, work.received_message, work.processed_message) == ("complete", "received", "done")
    assert (work.expectations, work.multipart, work.in_error) == (4, True, False)
    with pytest.raises(ValueError, match="WORK_NOT_ALIVE"):
        api.work.to_processed("work_unknown", "x")


# ---------------------------------------------------------------------------- live stream


def test_stream_sends_connected_then_events_then_heartbeats_with_the_last_id(opencti: OpenCTIDouble) -> None:
    first = opencti.append_event("create", IPV4)
    second = opencti.append_event("update", IPV4, context={"patch": [], "reverse_patch": []})
    merged = opencti.append_event(
        "merge", IPV4, context={"patch": [], "reverse_patch": [], "sources": [IPV4]}
    )
    frames = read_stream(opencti, until=heartbeat_after(3))
    assert frames[0][:2] == (None, "connected") and "connectionId" in frames[0][2]
    events = data_frames(frames)
    assert [(f[0], f[1]) for f in events] == [(first, "create"), (second, "update"), (merged, "merge")]
    payload = events[1][2]
    assert payload["version"] == "4" and payload["type"] == "update" and payload["data"]["id"] == IPV4["id"]
    assert payload["context"] == {"patch": [], "reverse_patch": []}
    assert events[2][2]["context"]["sources"] == [IPV4]
    assert frames[-1][0] == merged  # heartbeats carry the last event id
    assert [_key(i) for i in (first, second, merged)] == sorted(_key(i) for i in (first, second, merged))


def test_stream_resumes_after_last_event_id_or_from(opencti: OpenCTIDouble) -> None:
    sent = [opencti.append_event("create", {**IPV4, "value": f"10.9.0.{i}"}) for i in range(3)]
    resumed = read_stream(opencti, last_event_id=sent[0], until=heartbeat_after(2))
    assert [f[0] for f in data_frames(resumed)] == sent[1:]
    from_param = read_stream(
        opencti, f"/stream/live?from={sent[1]}", last_event_id=None, until=heartbeat_after(1)
    )
    assert [f[0] for f in data_frames(from_param)] == sent[2:]
    assert opencti.stream_connections[0].headers["last-event-id"] == sent[0]


def test_stream_honours_listen_delete_and_with_inferences(opencti: OpenCTIDouble) -> None:
    created = opencti.append_event("create", IPV4)
    inferred = opencti.append_event("create", {**IPV4, "value": "10.9.1.1"}, inferred=True)
    deleted = opencti.append_event("delete", IPV4)
    default = read_stream(opencti, until=heartbeat_after(2))
    assert [f[0] for f in data_frames(default)] == [created, deleted]
    filtered = read_stream(
        opencti, headers={"listen-delete": "false", "with-inferences": "true"}, until=heartbeat_after(2)
    )
    assert [f[0] for f in data_frames(filtered)] == [created, inferred]


def test_stream_resolves_dependencies_under_the_event_id(opencti: OpenCTIDouble) -> None:
    opencti.load_entities([AUTHOR, IPV4, BASED_ON])
    event = opencti.append_event("create", INDICATOR)
    refs_only = data_frames(
        read_stream(opencti, headers={"no-dependencies": "true"}, until=heartbeat_after(2))
    )
    assert [(f[0], f[2]["data"]["id"], f[2]["origin"]) for f in refs_only] == [
        (event, AUTHOR["id"], {"referer": "init-dependencies"}),
        (event, INDICATOR["id"], {"user_id": opencti.applicant_id}),
    ]
    with_relations = data_frames(
        read_stream(opencti, headers={"no-dependencies": "false"}, until=heartbeat_after(4))
    )
    assert [f[2]["data"]["id"] for f in with_relations] == [
        AUTHOR["id"],
        IPV4["id"],
        BASED_ON["id"],
        INDICATOR["id"],
    ]


def test_stream_recovery_sends_known_entities_then_live_events(opencti: OpenCTIDouble) -> None:
    opencti.load_entities([AUTHOR])
    time.sleep(0.01)
    recover_until = time.time()
    time.sleep(0.01)
    live = opencti.append_event("create", IPV4)
    iso = datetime.fromtimestamp(recover_until, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    frames = data_frames(read_stream(opencti, f"/stream/live?recover={iso}", until=heartbeat_after(2)))
    assert [(f[1], f[2]["data"]["id"], f[2]["origin"].get("referer")) for f in frames] == [
        ("create", AUTHOR["id"], "init-create"),
        ("create", IPV4["id"], None),
    ]
    assert frames[1][0] == live


def test_stream_refuses_bad_tokens_and_unknown_streams(opencti: OpenCTIDouble) -> None:
    for path, token in (("/stream/live", "wrong"), ("/stream/nope", opencti.token)):
        answer = requests.get(opencti.url + path, headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert answer.status_code == 401
    opencti.refuse_stream_connections(1)
    answer = requests.get(
        opencti.url + "/stream", headers={"authorization": f"Bearer {opencti.token}"}, timeout=5
    )
    assert answer.status_code == 503
    assert [c.status for c in opencti.stream_connections] == [401, 401, 503]
    assert opencti.auth_failures == ["/stream/live"]


def test_dropping_and_stopping_end_open_streams_promptly(bare_double: OpenCTIDouble) -> None:
    bare_double.append_event("create", IPV4)
    response = requests.get(
        bare_double.url + "/stream",
        headers={"authorization": f"Bearer {bare_double.token}", "last-event-id": "0-0"},
        stream=True,
        timeout=5,
    )
    lines = response.iter_lines()
    assert next(lines) == b"event: connected"
    assert bare_double.drop_stream_connections() == 1
    assert b"event: create" in list(lines)  # the rest of the buffer, then the end of the stream
    open_again = requests.get(
        bare_double.url + "/stream",
        headers={"authorization": f"Bearer {bare_double.token}", "last-event-id": "0-0"},
        stream=True,
        timeout=5,
    )
    started = time.monotonic()
    bare_double.stop()
    list(open_again.iter_lines())  # returns once the server closed the connection (reads time out at 5 s)
    assert time.monotonic() - started < 2
    assert [c.closed for c in bare_double.stream_connections] == [True, True]


# ---------------------------------------------------------------------------- broker side


@pytest.mark.broker
def test_registration_declares_unique_queues_that_are_removed_on_stop(broker: BrokerSettings) -> None:
    double = OpenCTIDouble(token=TOKEN, broker=broker, declare_queues=True).start()
    other = OpenCTIDouble(token=TOKEN, broker=broker, declare_queues=True)
    try:
        api = api_client(double)
        connector_id = str(uuid.uuid4())
        answer = api.connector.register(_connector(connector_id))
        config = answer["config"]
        assert config["push"] != f"push_{connector_id}" and config["push"].endswith(connector_id)
        assert config["push"].startswith(double.prefix) and not config["push"].startswith(other.prefix)
        assert json.loads(answer["jwks"])["keys"][0]["kty"] == "RSA"
        parameters = pika.ConnectionParameters(
            host=broker.host,
            port=broker.port,
            credentials=pika.PlainCredentials(broker.user, broker.password),
        )
        with pika.BlockingConnection(parameters) as connection:
            channel = connection.channel()
            channel.basic_publish(
                exchange=config["push_exchange"],
                routing_key=config["push_routing"],
                body=json.dumps(
                    {
                        "content": _b64({"type": "bundle", "objects": [IPV4]}),
                        "work_id": "w1",
                        "action_sequence": 1,
                    }
                ),
            )
        [message] = double.read_push_queue(connector_id, count=1)
        assert (message.work_id, message.objects) == ("w1", [IPV4])
    finally:
        double.stop()
    with (
        pika.BlockingConnection(parameters) as connection,
        pytest.raises(pika.exceptions.ChannelClosedByBroker),
    ):
        connection.channel().queue_declare(queue=config["push"], passive=True)


def _connector(connector_id: str) -> OpenCTIConnector:
    return OpenCTIConnector(
        connector_id, "double test", "INTERNAL_ENRICHMENT", "IPv4-Addr", False, False, False, False, "none"
    )


def _key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def _b64(bundle: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(bundle).encode()).decode()
