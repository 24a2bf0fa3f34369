"""Sentinel Incidents through the OpenCTI double with the real pycti helper, msal and httpx.

2,000 Graph incidents over many pages arrive once each as Case-Incidents; the checkpoint lives on the
platform; a run cut short by a Graph outage resumes in a new helper (same connector id) without loss and
without sending anything twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ctibridge.connectors.sentinel_incidents import SentinelIncidentsConnector
from ctibridge.siem.microsoft.client import GraphIncidents
from tests.doubles.graph import GraphDouble
from tests.doubles.opencti import OpenCTIDouble
from tests.fixtures.graph_incidents import generate_incidents, load_into
from tests.siem.microsoft.test_graph_client import Sleeps, settings_for
from tests.support.stix_validation import assert_valid_bundle


@pytest.fixture
def graph() -> Iterator[GraphDouble]:
    with GraphDouble() as double:
        yield double


def case_ids(opencti: OpenCTIDouble) -> list[str]:
    return [
        obj["external_references"][0]["external_id"]
        for pushed in opencti.bundles(via="api")
        for obj in pushed.objects
        if obj["type"] == "case-incident"
    ]


def importable(incidents: list[dict[str, Any]]) -> set[str]:
    return {str(i["id"]) for i in incidents if str(i["status"]).lower() != "redirected"}


def run_once(graph: GraphDouble, platform: Any, **overrides: Any) -> SentinelIncidentsConnector:
    settings = settings_for(graph, **overrides)
    connector = SentinelIncidentsConnector(settings, platform, GraphIncidents(settings, sleep=Sleeps()))
    connector.run()
    return connector


def test_2000_incidents_once_each_then_nothing_on_rerun(
    graph: GraphDouble, opencti: OpenCTIDouble, connect: Any
) -> None:
    incidents = generate_incidents(2000, seed=61, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    connector_id = str(uuid.uuid4())

    run_once(graph, connect(opencti, connector_id=connector_id, protocol="api"))
    received = case_ids(opencti)
    assert len(received) == len(set(received)) and set(received) == importable(incidents)
    pushed = opencti.bundles(via="api")
    assert len(pushed) >= 2000 // 50, "one bundle per page at least"
    assert_valid_bundle(pushed[0].bundle)  # ~5 ms an object to validate: the first stands for the rest
    state = opencti.connector(connector_id).parsed_state
    assert state and state["last_update"] and state["ids_at_last_update"]
    works = opencti.works(connector_id)
    assert len(works) == 1 and works[0].status == "complete"

    before = len(opencti.bundles())
    run_once(graph, connect(opencti, connector_id=connector_id, protocol="api"))
    assert len(opencti.bundles()) == before


def test_a_run_cut_short_resumes_without_loss_or_repeats(
    graph: GraphDouble, opencti: OpenCTIDouble, connect: Any
) -> None:
    incidents = generate_incidents(400, seed=62, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    connector_id = str(uuid.uuid4())
    # Graph fails for good after four pages: the run ends in error, its delivered pages checkpointed.
    graph.inject("incidents", 503, times=1000, after=4)
    run_once(graph, connect(opencti, connector_id=connector_id, protocol="api"), max_retries=1)
    first = case_ids(opencti)
    assert 0 < len(first) < len(importable(incidents))
    assert opencti.works(connector_id)[0].status == "complete" and opencti.works(connector_id)[0].in_error
    checkpoint = opencti.connector(connector_id).parsed_state
    assert checkpoint and checkpoint["last_update"]

    graph.clear_faults()
    run_once(graph, connect(opencti, connector_id=connector_id, protocol="api"))
    received = case_ids(opencti)
    assert set(received) == importable(incidents), "nothing lost"
    assert len(received) == len(set(received)), "nothing sent twice"
    for pushed in opencti.bundles(via="api")[-2:]:
        assert_valid_bundle(pushed.bundle)
