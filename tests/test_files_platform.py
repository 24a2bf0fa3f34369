"""The file platform: atomic bundle files, durable state, stream replay that resumes after its position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctibridge.errors import InputError
from ctibridge.platform.base import EnrichmentRequest, EnrichmentResult, StreamEvent
from ctibridge.platform.files import FilePlatform

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "samples" / "opencti"


def objects(count: int) -> list[dict]:
    return [
        {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": f"ipv4-addr--{i:08d}-0000-4000-8000-000000000000",
            "value": f"10.0.{i // 256}.{i % 256}",
        }
        for i in range(count)
    ]


def test_bundles_are_chunked_and_state_persists(tmp_path: Path) -> None:
    platform = FilePlatform(tmp_path, chunk_size=40)
    with platform.work("import") as work:
        assert work.send(objects(100)) == 100
    files = sorted(tmp_path.glob("work-*.json"))
    assert len(files) == 3
    bundles = [json.loads(f.read_text()) for f in files]
    assert [len(b["objects"]) for b in bundles] == [40, 40, 20]
    assert not list(tmp_path.glob(".*")), "no temporary files left behind"
    assert platform.get_state() == {}
    platform.set_state({"last": "2024-01-01T00:00:00Z"})
    assert FilePlatform(tmp_path).get_state() == {"last": "2024-01-01T00:00:00Z"}


def test_a_failing_work_leaves_state_alone(tmp_path: Path) -> None:
    platform = FilePlatform(tmp_path)
    platform.set_state({"cursor": 1})
    with pytest.raises(RuntimeError), platform.work("import") as work:
        work.send(objects(2))
        raise RuntimeError("SIEM went away")
    assert platform.get_state() == {"cursor": 1}


def test_corrupt_state_is_reported(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(InputError, match="state file"):
        FilePlatform(tmp_path).get_state()


def test_stream_replay_resumes_after_saved_position(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    lines = [
        {
            "id": f"1700000000000-{i}",
            "event": "create",
            "data": json.dumps({"data": {"id": f"indicator--{i}", "type": "indicator"}}),
        }
        for i in range(5)
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    platform = FilePlatform(tmp_path / "out", stream_events=events)
    seen: list[StreamEvent] = []

    def handler(event: StreamEvent) -> None:
        seen.append(event)
        if len(seen) == 2:
            platform.save_stream_position(event.id)

    platform.listen_stream(handler)
    assert [e.id for e in seen] == [f"1700000000000-{i}" for i in range(5)]
    assert seen[0].data["type"] == "indicator"
    resumed: list[str] = []
    FilePlatform(tmp_path / "out", stream_events=events).listen_stream(lambda e: resumed.append(e.id))
    assert resumed == [f"1700000000000-{i}" for i in range(2, 5)]


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared samples not present beside the repository")
def test_recorded_opencti_samples_parse(tmp_path: Path) -> None:
    recorded = json.loads((SAMPLES / "opencti-stream-events.json").read_text())
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text("\n".join(json.dumps(item["content"]) for item in recorded["items"]) + "\n")
    seen: list[StreamEvent] = []
    FilePlatform(tmp_path / "o", stream_events=ndjson).listen_stream(seen.append)
    assert [e.type for e in seen] == ["create", "update", "delete"], "the non-event record is skipped"
    assert all(e.data.get("id") for e in seen)


def test_enrichment_requests_from_file(tmp_path: Path) -> None:
    requests = tmp_path / "requests.ndjson"
    entity = {
        "type": "ipv4-addr",
        "id": "ipv4-addr--06ef1f7c-c9f7-536e-abcf-d02ad807426e",
        "value": "216.59.38.123",
    }
    requests.write_text(
        json.dumps({"event": {"entity_id": entity["id"], "stix_objects": [entity]}, "internal": {}}) + "\n"
    )
    platform = FilePlatform(tmp_path / "out", enrichment_requests=requests)
    received: list[EnrichmentRequest] = []

    def handler(request: EnrichmentRequest) -> EnrichmentResult:
        received.append(request)
        return EnrichmentResult(objects=objects(3), message="3 found")

    platform.listen_enrichment(handler)
    assert received[0].entity_type == "ipv4-addr" and received[0].stix_entity == entity
    written = list((tmp_path / "out").glob("work-*.json"))
    assert len(written) == 1 and len(json.loads(written[0].read_text())["objects"]) == 3


def test_stream_without_events_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--events"):
        FilePlatform(tmp_path).listen_stream(lambda e: None)


def test_runs_never_overwrite_each_other(tmp_path: Path) -> None:
    for _ in range(3):  # three platform instances within the same second, as quick reruns are
        with FilePlatform(tmp_path).work("import") as work:
            work.send(objects(1))
    assert len(list(tmp_path.glob("work-*.json"))) == 3


def test_offline_indicator_lookup_answers_from_the_request_being_handled(tmp_path: Path) -> None:
    ip = {
        "type": "ipv4-addr",
        "id": "ipv4-addr--06ef1f7c-c9f7-536e-abcf-d02ad807426e",
        "value": "216.59.38.123",
    }
    indicator = {"type": "indicator", "id": "indicator--c721b81a-6c3c-55ab-9bf3-038642e8add8"}
    based_on = {
        "type": "relationship",
        "id": "relationship--00000000-0000-4000-8000-000000000001",
        "relationship_type": "based-on",
        "source_ref": indicator["id"],
        "target_ref": ip["id"],
    }
    requests = tmp_path / "requests.ndjson"
    lines = [
        {"event": {"entity_id": ip["id"], "stix_objects": objs}} for objs in ([ip, indicator, based_on], [ip])
    ]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    platform = FilePlatform(tmp_path / "out", enrichment_requests=requests)
    seen: list[list[dict[str, object]]] = []

    def handler(request: EnrichmentRequest) -> EnrichmentResult:
        seen.append(platform.indicators_based_on(request.entity_id))
        return EnrichmentResult([], "")

    platform.listen_enrichment(handler)
    assert seen == [[indicator], []]
    assert platform.indicators_based_on(ip["id"]) == []
