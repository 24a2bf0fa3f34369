"""Sentinel Incidents through the OpenCTI double with the real pycti helper, msal and httpx.

2,000 Graph incidents over many pages arrive once each as Case-Incidents; the checkpoint lives on the
platform; a run cut short by a Graph outage resumes in a new helper (same connector id) without loss and
without sending anything twice; a throttled run waits out Retry-After and completes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ctibridge.connectors.sentinel_incidents import SentinelIncidentsConnector
from ctibridge.siem.microsoft.client import GraphIncidents, graph_ticks
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


def test_a_throttled_run_slows_down_and_completes(
    graph: GraphDouble, opencti: OpenCTIDouble, connect: Any
) -> None:
    incidents = generate_incidents(300, seed=63, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    # Graph-like sliding window, 2 requests per 0.5 s, answering 429 + Retry-After 4. The injected sleep
    # records the 4 s and really waits a tenth of it, which frees the window as the full wait would.
    graph.throttle("incidents", 2, 0.5, retry_after=4)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds / 10)

    connector_id = str(uuid.uuid4())
    settings = settings_for(graph)
    platform = connect(opencti, connector_id=connector_id, protocol="api")
    SentinelIncidentsConnector(settings, platform, GraphIncidents(settings, sleep=sleep)).run()

    received = case_ids(opencti)
    assert len(received) == len(set(received)) and set(received) == importable(incidents)
    served = graph.requests_to("incidents")
    throttled = [n for n, request in enumerate(served) if request.status == 429]
    assert throttled, "the window was small enough to throttle this run"
    assert waits == [4] * len(throttled), "one wait per 429, each the Retry-After"
    for n in throttled:  # the retry came after the (scaled) wait, not straight away
        assert served[n + 1].at - served[n].at >= 0.4 * 0.99
    works = opencti.works(connector_id)
    assert len(works) == 1 and works[0].status == "complete" and not works[0].in_error
    newest = max(incidents, key=lambda i: (graph_ticks(i["lastUpdateDateTime"]), i["id"]))
    at_newest = sorted(
        str(i["id"]) for i in incidents if i["lastUpdateDateTime"] == newest["lastUpdateDateTime"]
    )
    state = opencti.connector(connector_id).parsed_state
    assert state == {"last_update": newest["lastUpdateDateTime"], "ids_at_last_update": at_newest}
    assert_valid_bundle(opencti.bundles(via="api")[-1].bundle)


def test_case_and_incident_statuses_follow_graph(
    graph: GraphDouble, opencti: OpenCTIDouble, connect: Any
) -> None:
    incidents = generate_incidents(60, seed=64, alerts_per_incident=2, evidence_per_alert=1)
    load_into(graph, incidents)
    cases = opencti.add_workflow("Case-Incident", ["NEW", "IN_PROGRESS", "CLOSED"])
    alerts = opencti.add_workflow("Incident", ["NEW", "IN_PROGRESS", "CLOSED"])
    run_once(graph, connect(opencti, protocol="api"))
    case_status = {"active": "NEW", "inprogress": "IN_PROGRESS", "awaitingaction": "IN_PROGRESS",
                   "resolved": "CLOSED"}  # fmt: skip
    alert_status = {"new": "NEW", "inprogress": "IN_PROGRESS", "resolved": "CLOSED"}
    by_id = {str(i["id"]): i for i in incidents}
    alerts_by_id = {str(a["id"]): a for i in incidents for a in i.get("alerts") or []}
    seen_cases: set[str] = set()
    seen_alerts: set[str] = set()
    for pushed in opencti.bundles(via="api"):
        for obj in pushed.objects:
            if obj["type"] == "case-incident":
                status = str(by_id[obj["external_references"][0]["external_id"]]["status"]).lower()
                expected = cases[case_status[status]] if status in case_status else None  # unknownFutureValue
                assert obj.get("x_opencti_workflow_id") == expected, status
                seen_cases.add(status)
            elif obj["type"] == "incident":
                alert = alerts_by_id[obj["external_references"][0]["external_id"]]
                status = str(alert["status"]).lower()
                assert obj.get("x_opencti_workflow_id") == (
                    alerts[alert_status[status]] if status in alert_status else None
                )
                seen_alerts.add(status)
    assert len(seen_cases) >= 3 and len(seen_alerts) >= 2, (seen_cases, seen_alerts)
