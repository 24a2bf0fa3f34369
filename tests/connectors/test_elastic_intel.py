"""Elastic Security Intel end to end: OpenCTI's SSE stream (the double, real pycti) into Elasticsearch and
Kibana (the doubles, real elasticsearch-py and httpx), plus the CLI's `convert stix-to-ecs` and dry run."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.connectors.elastic_intel import ElasticIntelConnector
from ctibridge.errors import CtiBridgeError
from ctibridge.platform.opencti import OpenCTIPlatform
from ctibridge.siem.elastic.client import build_elasticsearch, build_kibana_client
from ctibridge.siem.elastic.indicators import IndicatorDocuments
from ctibridge.siem.elastic.intel_writer import DeadLetters, IntelIndex
from ctibridge.siem.elastic.kibana_rules import KibanaRules
from ctibridge.siem.elastic.rules import (
    INDICATOR_MATCH_PREFIX,
    MANAGED_TAG,
    RuleBuilder,
    is_rule_worthy,
    rule_id_for,
)
from ctibridge.stix.markings import Tlp
from tests.conftest import Connect
from tests.doubles.elastic import ElasticDouble
from tests.doubles.opencti import OpenCTIDouble
from tests.fixtures.opencti_indicators import AUTHOR, bundle, generate_indicators, indicator, observable
from tests.support.stix_validation import findings
from tests.test_cli import ctibridge

INDEX = "logs-ti_custom_opencti.indicator"
SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
Background = Callable[..., threading.Thread]


def no_sleep(seconds: float) -> None:
    pass


@pytest.fixture(scope="module")
def shared_elastic() -> Iterator[ElasticDouble]:
    with ElasticDouble() as double:
        yield double


@pytest.fixture
def elastic(shared_elastic: ElasticDouble) -> Iterator[ElasticDouble]:
    """One double per module (its Kibana OpenAPI spec takes seconds to load), emptied after each test."""
    yield shared_elastic
    es, kibana = shared_elastic.es, shared_elastic.kibana
    with es.lock:
        es.indices.clear()
        es.data_streams.clear()
        for name in [n for n in es.index_templates if n.startswith("ctibridge-")]:
            del es.index_templates[name]
    with kibana.lock:
        for space in kibana.spaces.values():
            space.rules.clear()
    es.clear_bulk_hooks()
    for server in (es, kibana):
        server.clear_faults()
        server.clear_requests()


def assert_valid(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Valid STIX, but for the kql pattern type: OpenCTI's vocabulary, registered by the connector."""
    document = bundle(objects)
    problems = [p for p in findings(document) if not ("{245}" in p and "pattern_type" in p)]
    assert not problems, problems
    return document


def settings_for(elastic: ElasticDouble, tmp_path: Path, **overrides: Any) -> ElasticIntelSettings:
    values: dict[str, Any] = {
        "url": elastic.es.url,
        "kibana_url": elastic.kibana.url,
        "api_key": elastic.api_key,
        "batch_size": 4,
        "flush_interval": 0.2,
        "dead_letter_path": str(tmp_path / "dead-letters.jsonl"),
        **overrides,
    }
    return ElasticIntelSettings(**values)


def connector_for(
    elastic: ElasticDouble, platform: Any, settings: ElasticIntelSettings, opencti_url: str | None = None
) -> ElasticIntelConnector:
    index = IntelIndex(build_elasticsearch(settings), settings.index_name, sleep=no_sleep)
    rules = KibanaRules(build_kibana_client(settings), settings.kibana_space, sleep=no_sleep)
    return ElasticIntelConnector(
        settings,
        platform,
        index,
        rules=rules,
        rule_builder=RuleBuilder(settings, opencti_url),
        opencti_url=opencti_url,
        dead_letters=DeadLetters(settings.dead_letter_path),
        sleep=no_sleep,
    )


def expected_documents(objects: dict[str, dict[str, Any]], ceiling: Tlp = Tlp.AMBER) -> dict[str, dict]:
    docs = IndicatorDocuments(opencti_url=None, max_tlp=ceiling)
    docs.remember_identity(AUTHOR)
    out: dict[str, dict[str, Any]] = {}
    for obj in objects.values():
        plan = docs.plan(obj, datetime.now(UTC))
        if plan is not None:
            out.update(plan.documents)
    return out


def comparable(source: dict[str, Any]) -> dict[str, Any]:
    """Without the write time and the internal id the platform gives each object on the stream."""
    octi = {k: v for k, v in source["opencti"].items() if k != "id"}
    return {**{k: v for k, v in source.items() if k != "@timestamp"}, "opencti": octi}


def stream_platform(opencti: OpenCTIDouble, connect: Connect, connector_id: str) -> OpenCTIPlatform:
    return connect(
        opencti,
        connector_id=connector_id,
        connector_type="STREAM",
        live_stream_id="live",
        live_stream_recover_iso_date=False,
    )


def test_stream_end_to_end_keeps_exactly_the_live_indicators_and_rules(
    opencti: OpenCTIDouble, connect: Connect, background: Background, elastic: ElasticDouble, tmp_path: Path
) -> None:
    connector_id = str(uuid.uuid4())
    platform = stream_platform(opencti, connect, connector_id)
    settings = settings_for(elastic, tmp_path)
    connector = connector_for(elastic, platform, settings)
    opencti.load_entities([AUTHOR])  # sent as a dependency before the first object that refers to it

    live: dict[str, dict[str, Any]] = {}
    atomic = list(generate_indicators(10, seed=21))
    compound = indicator(f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'loader.exe']", name="Loader")
    kql = indicator('process.name: "mimikatz.exe"', pattern_type="kql", name="Mimikatz")
    sequence = indicator("[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']")
    red = indicator("[ipv4-addr:value = '203.0.113.66']", tlp=Tlp.RED)
    ip = observable("ipv4-addr", value="198.51.100.23")
    url = observable("url", value="http://dl.example.org/payload.bin")
    assert_valid([*atomic, compound, kql, sequence, red, ip, url])

    sent: list[str] = []

    def send(kind: str, obj: dict[str, Any], **extra: Any) -> None:
        sent.append(opencti.append_event(kind, obj, **extra))
        if kind == "delete":
            live.pop(obj["id"], None)
        else:
            live[obj["id"]] = obj

    # A rejected bulk item on the first batch: retried with backoff, lands.
    first_docs = IndicatorDocuments().plan(atomic[0], datetime.now(UTC))
    assert first_docs is not None
    elastic.es.fail_bulk_items(ids=first_docs.ids[:1], status=429, times=2)
    for obj in [*atomic[:6], compound, kql, sequence, red, ip]:
        send("create", obj)
    background(connector.run)
    opencti.wait_for(
        lambda: (opencti.state(connector_id) or {}).get("start_from") == sent[-1], message="wave 1"
    )
    assert elastic.es.source(INDEX, atomic[0]["id"]) is not None

    # Updates, a revocation, deletes; the connection drops in the middle of them.
    patch = {"patch": [{"op": "replace", "path": "/x_opencti_score", "value": 90}], "reverse_patch": []}
    rescored = json.loads(json.dumps(atomic[1]))
    rescored["extensions"]["extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"]["score"] = 90
    send("update", rescored, context=patch)
    narrowed = {**compound, "pattern": f"[file:hashes.'SHA-256' = '{SHA256}']"}  # one value fewer, atomic now
    send("update", narrowed, context={"patch": [{"op": "replace", "path": "/pattern", "value": "..."}]})
    send("update", {**atomic[2], "revoked": True}, context={"patch": [{"op": "replace", "path": "/revoked"}]})
    opencti.drop_stream_connections()
    send("update", {**kql, "revoked": True}, context={"patch": [{"op": "replace", "path": "/revoked"}]})
    send("delete", atomic[3])
    send("delete", ip)
    for obj in [*atomic[6:], url]:
        send("create", obj)
    opencti.wait_for(
        lambda: (opencti.state(connector_id) or {}).get("start_from") == sent[-1],
        timeout=20,
        message="wave 2",
    )
    connector.stop()

    assert len(opencti.stream_connections) >= 2  # reconnected after the drop, from a saved position
    assert opencti.stream_connections[-1].headers["last-event-id"] in sent
    documents = elastic.es.docs(INDEX)
    expected = expected_documents(live)
    assert set(documents) == set(expected)
    assert {k: comparable(v) for k, v in documents.items()} == {k: comparable(v) for k, v in expected.items()}
    assert documents[rescored["id"]]["opencti"]["score"] == 90
    assert documents[rescored["id"]]["threat"]["indicator"]["provider"] == "CERT Example"
    assert f"{compound['id']}:1" not in documents  # the value the pattern lost
    assert red["id"] not in documents and atomic[2]["id"] not in documents and ip["id"] not in documents

    managed = {r["rule_id"] for r in elastic.kibana.rules() if MANAGED_TAG in r.get("tags", [])}
    per_indicator = {rule_id for rule_id in managed if not rule_id.startswith(INDICATOR_MATCH_PREFIX)}
    wanted = {
        rule_id_for(obj["id"])
        for obj in live.values()
        if obj["type"] == "indicator" and not obj.get("revoked") and obj is not red and is_rule_worthy(obj)
    }
    assert per_indicator == wanted == {rule_id_for(sequence["id"])}
    assert len(managed - per_indicator) == 5  # one indicator-match rule per indicator kind
    assert {"kql", "lucene", "eql", "esql"} <= set(opencti.vocabulary_names("pattern_type_ov"))
    assert not (tmp_path / "dead-letters.jsonl").exists()


def test_restart_replays_nothing_already_acknowledged_and_sets_up_idempotently(
    opencti: OpenCTIDouble, connect: Connect, background: Background, elastic: ElasticDouble, tmp_path: Path
) -> None:
    connector_id = str(uuid.uuid4())
    settings = settings_for(elastic, tmp_path, create_rules=False)
    objects = list(generate_indicators(6, seed=33))
    sent = [opencti.append_event("create", obj) for obj in objects]
    first = connector_for(elastic, stream_platform(opencti, connect, connector_id), settings)
    background(first.run)
    opencti.wait_for(
        lambda: (opencti.state(connector_id) or {}).get("start_from") == sent[-1], message="first"
    )
    first.stop()
    bulks = elastic.es.count(r"/_bulk$")
    templates = elastic.es.count(r"/_index_template/", "PUT")

    second = connector_for(elastic, stream_platform(opencti, connect, connector_id), settings)
    background(second.run)
    later = opencti.append_event("delete", objects[0])
    opencti.wait_for(lambda: (opencti.state(connector_id) or {}).get("start_from") == later, message="second")
    second.stop()
    assert second.events == 1  # only the new event: nothing acknowledged came back
    assert elastic.es.count(r"/_index_template/", "PUT") == templates
    assert elastic.es.count(r"/_bulk$") == bulks + 1
    assert objects[0]["id"] not in elastic.es.docs(INDEX)


def test_unwritable_index_stops_the_connector_without_moving_the_position(
    opencti: OpenCTIDouble, connect: Connect, background: Background, elastic: ElasticDouble, tmp_path: Path
) -> None:
    connector_id = str(uuid.uuid4())
    settings = settings_for(elastic, tmp_path, create_rules=False, batch_size=2)
    connector = connector_for(elastic, stream_platform(opencti, connect, connector_id), settings)
    elastic.es.inject(403, path=r"/_bulk$", times=1)
    for obj in generate_indicators(4, seed=35):
        opencti.append_event("create", obj)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            connector.run()
        except CtiBridgeError as exc:
            errors.append(exc)

    thread = background(run)
    thread.join(timeout=20)
    assert not thread.is_alive() and len(errors) == 1 and "403" in str(errors[0])
    assert (opencti.state(connector_id) or {}).get("start_from") in (None, "0-0")


# ---------------------------------------------------------------------------- CLI


def write_bundle(path: Path) -> dict[str, dict[str, Any]]:
    objects = {
        "ip": indicator("[ipv4-addr:value = '198.51.100.7']", labels=["c2"]),
        "compound": indicator("[domain-name:value = 'a.example'] OR [url:value = 'http://a.example/x']"),
        "revoked": indicator("[ipv4-addr:value = '198.51.100.8']", revoked=True),
        "red": indicator("[ipv4-addr:value = '198.51.100.9']", tlp=Tlp.RED),
        "kql": indicator('source.ip: "1.2.3.4"', pattern_type="kql"),
        "hash": observable("file", hashes={"SHA-256": SHA256}),
    }
    document = assert_valid(list(objects.values()))
    path.write_text(json.dumps(document))
    return objects


def test_convert_stix_to_ecs_writes_one_ndjson_line_per_document(tmp_path: Path) -> None:
    objects = write_bundle(tmp_path / "bundle.json")
    result = ctibridge(
        "convert", "stix-to-ecs", str(tmp_path / "bundle.json"), env={"OPENCTI_URL": "https://octi.example"}
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(line) == {"_index", "_id", "_source"} and line["_index"] == INDEX for line in lines)
    ids = [line["_id"] for line in lines]
    compound = objects["compound"]["id"]
    assert ids == [objects["ip"]["id"], compound, f"{compound}:1", objects["hash"]["id"]]
    by_id = {line["_id"]: line["_source"] for line in lines}
    assert by_id[compound]["threat"]["indicator"]["url"] == {"domain": "a.example"}
    assert by_id[f"{compound}:1"]["threat"]["indicator"]["type"] == "url"
    assert by_id[objects["ip"]["id"]]["threat"]["indicator"]["reference"].startswith("https://octi.example/")
    assert "stix-to-ecs: read" in result.stderr

    custom = ctibridge(
        "convert", "stix-to-ecs", str(tmp_path / "bundle.json"), "-o", str(tmp_path / "docs.ndjson"),
        env={"ELASTIC_SECURITY_INDEX_NAME": "ti-opencti", "ELASTIC_SECURITY_MAX_TLP": "RED"},
    )  # fmt: skip
    assert custom.returncode == 0, custom.stderr
    written = [json.loads(line) for line in (tmp_path / "docs.ndjson").read_text().splitlines()]
    assert {line["_index"] for line in written} == {"ti-opencti"}
    assert objects["red"]["id"] in {line["_id"] for line in written}


def test_convert_stix_to_ecs_reports_a_bad_setting_without_traceback(tmp_path: Path) -> None:
    write_bundle(tmp_path / "bundle.json")
    result = ctibridge(
        "convert", "stix-to-ecs", str(tmp_path / "bundle.json"), env={"ELASTIC_SECURITY_MAX_TLP": "purple"}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ELASTIC_SECURITY_MAX_TLP" in result.stderr


def test_dry_run_replays_stream_events_from_a_file_into_elasticsearch(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    objects = list(generate_indicators(5, seed=41))
    events = [
        {"id": f"1700000000000-{n}", "event": "create", "data": json.dumps({"data": obj})}
        for n, obj in enumerate(objects)
    ]
    events.append({"id": "1700000000001-0", "event": "delete", "data": json.dumps({"data": objects[0]})})
    (tmp_path / "events.ndjson").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    env = {
        "ELASTIC_SECURITY_URL": elastic.es.url,
        "ELASTIC_SECURITY_API_KEY": elastic.api_key,
        "ELASTIC_SECURITY_CREATE_RULES": "false",
        "CONNECTOR_LIVE_STREAM_ID": "live",
    }
    out, replay = str(tmp_path / "out"), str(tmp_path / "events.ndjson")
    result = ctibridge("run", "elastic-intel", "--dry-run", out, "--events", replay, env=env)
    assert result.returncode == 0, result.stderr
    expected = expected_documents({o["id"]: o for o in objects[1:]})
    assert set(elastic.es.docs(INDEX)) == set(expected)
    assert json.loads((tmp_path / "out" / "state.json").read_text())["start_from"] == "1700000000001-0"


# ---------------------------------------------------------------------------- expiry while nothing happens


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_sweep_removes_documents_and_rules_that_expired_while_nothing_happened_even_after_restart(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    from ctibridge.platform.files import FilePlatform

    soon = "2026-12-01T00:00:00.000Z"
    atomic = indicator("[ipv4-addr:value = '192.0.2.50']", valid_until=soon)
    eql = indicator('process where process.name == "x.exe"', pattern_type="eql", valid_until=soon)
    lasting = indicator("[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']")
    events = [
        {"id": f"1700000000000-{n}", "event": "create", "data": {"data": obj}}
        for n, obj in enumerate([atomic, eql, lasting])
    ]
    replay = tmp_path / "events.ndjson"
    replay.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    settings = settings_for(elastic, tmp_path)
    clock = Clock(datetime(2026, 11, 22, tzinfo=UTC))

    def connector() -> ElasticIntelConnector:
        made = connector_for(elastic, FilePlatform(tmp_path / "out", stream_events=replay), settings)
        made.now = clock
        return made

    connector().run()  # the file platform replays the events and returns
    per_indicator = {
        r["rule_id"] for r in elastic.kibana.rules() if r["rule_id"].startswith("opencti-indicator--")
    }
    assert per_indicator == {rule_id_for(eql["id"]), rule_id_for(lasting["id"])}
    assert atomic["id"] in elastic.es.docs(INDEX)

    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    restarted = connector()  # a new process: what expires when is read back from the index and the rules
    restarted.setup()
    restarted.maintain()
    remaining = {
        r["rule_id"] for r in elastic.kibana.rules() if r["rule_id"].startswith("opencti-indicator--")
    }
    assert remaining == {rule_id_for(lasting["id"])}
    assert atomic["id"] not in elastic.es.docs(INDEX)
    assert lasting["id"] in elastic.es.docs(INDEX)  # its documents (a.example, b.example) stay


def test_an_unmappable_event_and_a_refused_rule_are_dead_lettered_and_the_stream_goes_on(
    elastic: ElasticDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctibridge.platform.files import FilePlatform

    objects = list(generate_indicators(3, seed=51))
    eql = indicator('process where process.name == "y.exe"', pattern_type="eql")
    events = [
        {"id": f"1700000000000-{n}", "event": "create", "data": {"data": obj}}
        for n, obj in enumerate([*objects, eql])
    ]
    replay = tmp_path / "events.ndjson"
    replay.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    settings = settings_for(elastic, tmp_path)
    connector = connector_for(elastic, FilePlatform(tmp_path / "out", stream_events=replay), settings)
    connector.setup()  # the indicator-match rules exist: the next POST is the eql indicator's rule
    elastic.kibana.inject(400, path=r"/api/detection_engine/rules$", method="POST", times=1)
    original = connector.documents.plan

    def plan(obj: dict[str, Any], now: datetime) -> Any:
        if obj["id"] == objects[1]["id"]:
            raise KeyError("unexpected shape")
        return original(obj, now)

    monkeypatch.setattr(connector.documents, "plan", plan)
    connector.run()

    records = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()]
    assert [(r["stix_id"], r["failures"][0]["action"]) for r in records] == [
        (objects[1]["id"], "map"),
        (eql["id"], f"upsert rule {rule_id_for(eql['id'])}"),
    ]
    assert records[1]["failures"][0]["status"] == 400
    docs = elastic.es.docs(INDEX)
    assert objects[0]["id"] in docs and objects[2]["id"] in docs and objects[1]["id"] not in docs
    assert json.loads((tmp_path / "out" / "state.json").read_text())["start_from"] == events[-1]["id"]
