"""Wazuh enrichment end to end: the OpenCTI double delivers an enrichment request over RabbitMQ to the real
pycti helper, the connector hunts the entity in the OpenSearch double through the real hunter and
opensearch-py, and the bundles it sends come back through the double's API.

For each incident mode: the expected sightings, incidents, case and notes; a second enrichment of the same
entity sends exactly the same ids (OpenCTI upserts them: nothing new is created).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ctibridge.config.wazuh import WazuhOpenSearchSettings, WazuhSearchSettings
from ctibridge.connectors.wazuh_enrichment import WazuhEnrichmentConnector
from ctibridge.siem.wazuh.hunt import WazuhHunter, build_opensearch
from ctibridge.siem.wazuh.inspection import OCTI_EXTENSION
from ctibridge.siem.wazuh.options import EnrichmentOptions, IncidentMode
from ctibridge.stix import ids
from ctibridge.stix.markings import Tlp
from tests.conftest import Connect
from tests.doubles.opencti import OpenCTIDouble
from tests.doubles.opensearch import OpenSearchDouble
from tests.fixtures.wazuh_alerts import generate_alerts, load_into, plant
from tests.support.stix_validation import assert_valid_bundle

pytestmark = pytest.mark.broker

IP = "45.33.32.156"
IPV4 = {"type": "ipv4-addr", "spec_version": "2.1", "id": ids.sco_id("ipv4-addr", {"value": IP}), "value": IP}
PLANTED = plant(IP, "ipv4", 30, agents=6, seed=4)
OPTIONS = EnrichmentOptions(
    app_url="https://wazuh.example",
    require_indicator_for_incidents=False,
    bundle_abort_limit=None,
    max_tlp=Tlp.AMBER,
)
Background = Callable[..., threading.Thread]


@pytest.fixture(scope="module")
def indexer() -> Iterator[OpenSearchDouble]:
    with OpenSearchDouble() as double:
        load_into(double, None, generate_alerts(400, seed=21))  # alerts without the address
        load_into(double, None, PLANTED)
        yield double


def hunter_for(indexer: OpenSearchDouble, **settings: Any) -> WazuhHunter:
    user, password = indexer.auth
    opensearch = WazuhOpenSearchSettings(
        url=indexer.url,
        username=user,
        password=password,
        search_after=None,
        limit=200,
        max_retries=0,
        **settings,
    )
    return WazuhHunter(build_opensearch(opensearch), opensearch, WazuhSearchSettings())


def start(
    opencti: OpenCTIDouble,
    connect: Connect,
    background: Background,
    indexer: OpenSearchDouble,
    options: EnrichmentOptions,
    entities: list[dict[str, Any]] | None = None,
) -> str:
    opencti.load_entities(entities or [IPV4])
    platform = connect(opencti, protocol="api", connector_type="INTERNAL_ENRICHMENT", scope="IPv4-Addr")
    background(WazuhEnrichmentConnector(options, platform, hunter_for(indexer)).run)
    return platform.helper.connector_id


def enrich(opencti: OpenCTIDouble, connector_id: str, entity_id: str = IPV4["id"]) -> list[dict[str, Any]]:
    work_id = opencti.send_enrichment_request(connector_id, entity_id)
    opencti.wait_for(lambda: opencti.work(work_id).status == "complete", timeout=30, message="enrichment")
    assert not opencti.work(work_id).in_error, opencti.work(work_id).processed_message
    objects = []
    for pushed in opencti.bundles(via="api", work_id=work_id):
        assert_valid_bundle(pushed.bundle)
        objects.extend(pushed.objects)
    return objects


def expected_incidents(mode: IncidentMode) -> int:
    return {
        IncidentMode.NEVER: 0,
        IncidentMode.PER_QUERY: 1,
        IncidentMode.PER_SIGHTING: len({d["agent"]["id"] for d in PLANTED}),
        IncidentMode.PER_ALERT_RULE: len({d["rule"]["id"] for d in PLANTED}),
        IncidentMode.PER_ALERT: len(PLANTED),
    }[mode]


@pytest.mark.parametrize("mode", list(IncidentMode))
def test_each_mode_end_to_end_and_a_rerun_creates_nothing_new(
    opencti_amqp: OpenCTIDouble,
    connect: Connect,
    background: Background,
    indexer: OpenSearchDouble,
    mode: IncidentMode,
) -> None:
    connector_id = start(opencti_amqp, connect, background, indexer, replace(OPTIONS, incident_mode=mode))
    first = enrich(opencti_amqp, connector_id)
    kinds = Counter(o["type"] for o in first)
    agents = {d["agent"]["id"] for d in PLANTED}
    rules = {d["rule"]["id"] for d in PLANTED}
    assert kinds["sighting"] == len(agents)  # 5 agent systems + the SIEM for agent 000
    assert kinds["incident"] == expected_incidents(mode)
    assert kinds["case-incident"] == (0 if mode is IncidentMode.NEVER else 1)
    assert kinds["note"] == 1 + min(OPTIONS.max_notes, OPTIONS.max_notes_per_alert_rule * len(rules))
    assert sum(o["count"] for o in first if o["type"] == "sighting") == len(PLANTED)
    assert {o.get("x_opencti_sighting_of_ref") for o in first if o["type"] == "sighting"} == {IPV4["id"]}
    if mode is not IncidentMode.NEVER:
        [case] = [o for o in first if o["type"] == "case-incident"]
        assert {o["id"] for o in first if o["type"] == "incident"} <= set(case["object_refs"])
        assert any(o["type"] == "attack-pattern" for o in first)
    assert IPV4["id"] not in {o["id"] for o in first}

    second = enrich(opencti_amqp, connector_id)
    assert sorted(o["id"] for o in second) == sorted(o["id"] for o in first)
    assert {o["id"]: o for o in second} == {o["id"]: o for o in first}
    works = [w for w in opencti_amqp.works(connector_id) if w.processed_message]
    assert all(f"{len(PLANTED)} Wazuh alerts" in str(w.processed_message) for w in works)


def test_skipped_entities_send_nothing_and_say_why(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background, indexer: OpenSearchDouble
) -> None:
    ignored = {**IPV4, "id": ids.sco_id("ipv4-addr", {"value": "45.33.32.157"}), "value": "45.33.32.157",
               "x_opencti_labels": ["wazuh_ignore"]}  # fmt: skip
    red = {**IPV4, "id": ids.sco_id("ipv4-addr", {"value": "45.33.32.158"}), "value": "45.33.32.158",
           "object_marking_refs": [Tlp.RED.marking_id]}  # fmt: skip
    connector_id = start(opencti_amqp, connect, background, indexer, OPTIONS, [ignored, red])
    for entity, reason in ((ignored, "wazuh_ignore"), (red, "TLP:RED")):
        work_id = opencti_amqp.send_enrichment_request(connector_id, entity["id"])
        opencti_amqp.wait_for(lambda w=work_id: opencti_amqp.work(w).status == "complete", timeout=30)
        message = str(opencti_amqp.work(work_id).processed_message)
        assert message.startswith("skipped") and reason in message
        assert opencti_amqp.bundles(work_id=work_id) == []
    searched = " ".join(str(r.body) for r in indexer.searches())
    assert ignored["value"] not in searched and red["value"] not in searched


def test_no_match_sends_nothing(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background, indexer: OpenSearchDouble
) -> None:
    quiet = {**IPV4, "id": ids.sco_id("ipv4-addr", {"value": "45.33.32.200"}), "value": "45.33.32.200"}
    connector_id = start(opencti_amqp, connect, background, indexer, OPTIONS, [quiet])
    assert enrich(opencti_amqp, connector_id, quiet["id"]) == []


def test_indexer_failure_marks_the_work_in_error_and_the_next_request_succeeds(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background, indexer: OpenSearchDouble
) -> None:
    connector_id = start(
        opencti_amqp, connect, background, indexer, replace(OPTIONS, incident_mode=IncidentMode.PER_QUERY)
    )
    indexer.fail(503, times=1)
    failed = opencti_amqp.send_enrichment_request(connector_id, IPV4["id"])
    opencti_amqp.wait_for(lambda: opencti_amqp.work(failed).status == "complete", timeout=30)
    assert opencti_amqp.work(failed).in_error
    assert "admin-secret" not in str(opencti_amqp.work(failed).processed_message)
    assert any(o["type"] == "incident" for o in enrich(opencti_amqp, connector_id))


def test_playbook_step_gets_the_entity_and_what_was_found(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background, indexer: OpenSearchDouble
) -> None:
    connector_id = start(
        opencti_amqp, connect, background, indexer, replace(OPTIONS, incident_mode=IncidentMode.PER_QUERY)
    )
    work_id = opencti_amqp.send_enrichment_request(connector_id, IPV4["id"], playbook=True)
    opencti_amqp.wait_for(lambda: opencti_amqp.work(work_id).status == "complete", timeout=30)
    [step] = opencti_amqp.bundles(via="playbook")
    assert step.objects[0]["id"] == IPV4["id"]
    assert Counter(o["type"] for o in step.objects)["incident"] == 1
    assert_valid_bundle(step.bundle)


@pytest.mark.usefixtures("pycti_sandbox")
def test_cli_dry_run_replays_requests_from_a_file(indexer: OpenSearchDouble, tmp_path: Path) -> None:
    """`ctibridge run wazuh-enrichment --dry-run DIR --events FILE`: settings from the environment, the
    real `build()`, bundles on disk (one run: a subprocess start costs seconds; reruns are tested above)."""
    requests = tmp_path / "requests.ndjson"
    requests.write_text(json.dumps({"event": {"entity_id": IPV4["id"], "stix_entity": IPV4}}) + "\n")
    user, password = indexer.auth
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "WAZUH_MAX_TLP": "amber",
        "WAZUH_CREATE_INCIDENT": "Per_Alert_Rule",
        "WAZUH_REQUIRE_INDICATOR_FOR_INCIDENTS": "false",
        "WAZUH_BUNDLE_ABORT_LIMIT": "none",
        "WAZUH_APP_URL": "https://wazuh.example/",
        "WAZUH_OPENSEARCH_URL": indexer.url,
        "WAZUH_OPENSEARCH_USERNAME": user,
        "WAZUH_OPENSEARCH_PASSWORD": password,
        "WAZUH_OPENSEARCH_SEARCH_AFTER": "none",
        "WAZUH_OPENSEARCH_LIMIT": "200",
    }
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "ctibridge.cli", "run", "wazuh-enrichment", "--dry-run", str(out),
         "--events", str(requests)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert password not in done.stderr + done.stdout
    objects = []
    for path in sorted(out.glob("work-*.json")):
        bundle = json.loads(path.read_text())
        assert_valid_bundle(bundle)
        objects.extend(bundle["objects"])
    kinds = Counter(o["type"] for o in objects)
    assert kinds["incident"] == expected_incidents(IncidentMode.PER_ALERT_RULE)
    assert kinds["case-incident"] == 1
    assert kinds["sighting"] == len({d["agent"]["id"] for d in PLANTED})
    assert IPV4["id"] not in {o["id"] for o in objects}


def based_on(observable: dict[str, Any], pattern: str, **octi: Any) -> list[dict[str, Any]]:
    """An indicator `based-on` the observable, as OpenCTI exports it (score/detection in its extension)."""
    when = "2026-01-05T10:00:00.000Z"
    indicator = {
        "type": "indicator", "spec_version": "2.1", "id": ids.indicator_id(pattern), "created": when,
        "modified": when, "name": pattern, "pattern": pattern, "pattern_type": "stix", "valid_from": when,
        "extensions": {OCTI_EXTENSION: {"extension_type": "property-extension", **octi}},
    }  # fmt: skip
    relationship = {
        "type": "relationship", "spec_version": "2.1", "created": when, "modified": when,
        "id": ids.relationship_id("based-on", indicator["id"], observable["id"]),
        "relationship_type": "based-on", "source_ref": indicator["id"], "target_ref": observable["id"],
    }  # fmt: skip
    return [indicator, relationship]


def test_an_indicator_known_only_to_the_platform_qualifies_the_observable(
    opencti_amqp: OpenCTIDouble, connect: Connect, background: Background, indexer: OpenSearchDouble
) -> None:
    """OpenCTI's request for an observable carries what it references, never the indicators based on it:
    with the indicator required, the connector asks the platform (pycti `indicator.list`, `regardingOf`)."""
    options = replace(
        OPTIONS,
        incident_mode=IncidentMode.PER_QUERY,
        require_indicator_for_incidents=True,
        create_obs_sightings=False,
        require_indicator_detection=True,
    )
    other = {**IPV4, "id": ids.sco_id("ipv4-addr", {"value": "45.33.32.201"}), "value": "45.33.32.201"}
    not_for_detection = based_on(other, "[ipv4-addr:value = '45.33.32.201']", detection=False, score=90)
    connector_id = start(opencti_amqp, connect, background, indexer, options, [IPV4, other])
    opencti_amqp.load_entities(not_for_detection)
    searches = len(indexer.searches())

    for entity in (IPV4, other):  # no indicator at all; one the platform knows but not for detection
        work_id = opencti_amqp.send_enrichment_request(connector_id, entity["id"])
        opencti_amqp.wait_for(lambda w=work_id: opencti_amqp.work(w).status == "complete", timeout=30)
        message = str(opencti_amqp.work(work_id).processed_message)
        assert message.startswith("skipped: no qualifying indicator"), message
        assert opencti_amqp.bundles(work_id=work_id) == []
    assert len(indexer.searches()) == searches

    indicator, relationship = based_on(IPV4, f"[ipv4-addr:value = '{IP}']", detection=True, score=80)
    opencti_amqp.load_entities([indicator, relationship])
    objects = enrich(opencti_amqp, connector_id)
    [incident] = [o for o in objects if o["type"] == "incident"]
    indicates = [o for o in objects if o["type"] == "relationship" and o["relationship_type"] == "indicates"]
    assert [(r["source_ref"], r["target_ref"]) for r in indicates] == [(indicator["id"], incident["id"])]
    sightings = [o for o in objects if o["type"] == "sighting"]  # allowed now that an indicator qualifies
    assert sum(o["count"] for o in sightings) == len(PLANTED)
    assert Counter(o["type"] for o in objects)["case-incident"] == 1
    [delivery] = [d for d in opencti_amqp.deliveries if d.message["event"]["entity_id"] == IPV4["id"]][-1:]
    assert indicator["id"] not in delivery.message["event"]["stix_objects"]  # the request never had it
    lookups = [c for c in opencti_amqp.calls if c.field == "indicators"]
    assert [c.variables["filters"]["filters"][0]["values"][0]["values"] for c in lookups] == [
        [IPV4["id"]],
        [other["id"]],
        [IPV4["id"]],
    ]
    assert opencti_amqp.unknown_operations == []
