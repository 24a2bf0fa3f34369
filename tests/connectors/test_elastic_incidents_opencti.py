"""Elastic Security Incidents through the OpenCTI double with the real pycti helper.

25,000 alerts over many pages arrive once each as incidents; the checkpoint is stored on the platform;
a restarted connector (new helper, same connector id) resumes from it and sends nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ctibridge.config.elastic import ElasticIncidentsSettings
from ctibridge.connectors.elastic_incidents import ElasticIncidentsConnector
from ctibridge.siem.elastic.client import AlertReader, build_elasticsearch
from tests.doubles.elastic import ElasticDouble
from tests.doubles.opencti import OpenCTIDouble
from tests.fixtures.elastic_alerts import alert_id, generate_alerts, load_into

INDEX = ".alerts-security.alerts-default"


@pytest.fixture
def elastic() -> Iterator[ElasticDouble]:
    with ElasticDouble() as double:
        yield double


def incidents(opencti: OpenCTIDouble) -> list[str]:
    return [
        obj["external_references"][0]["external_id"]
        for pushed in opencti.bundles(via="api")
        for obj in pushed.objects
        if obj["type"] == "incident"
    ]


def run_once(elastic: ElasticDouble, platform: Any) -> None:
    settings = ElasticIncidentsSettings(
        url=elastic.es.url, api_key=elastic.api_key, import_start_date="2020-01-01", page_size=2000,
        import_cases=False,
    )  # fmt: skip
    reader = AlertReader(build_elasticsearch(settings), settings.alerts_index, page_size=settings.page_size)
    ElasticIncidentsConnector(settings, platform, reader, None, period=None).run()


def test_25k_alerts_once_each_then_resume(
    elastic: ElasticDouble, opencti: OpenCTIDouble, connect: Any
) -> None:
    docs = list(generate_alerts(25_000, seed=11))
    load_into(elastic, INDEX, docs, clone=False)
    connector_id = str(uuid.uuid4())

    run_once(elastic, connect(opencti, connector_id=connector_id, protocol="api"))
    received = incidents(opencti)
    assert len(received) == 25_000 and set(received) == {alert_id(d) for d in docs}
    state = opencti.connector(connector_id).parsed_state
    assert state and state["alerts_after"], "checkpoint stored on the platform"
    works = opencti.works(connector_id)
    assert len(works) == 1 and works[0].status == "complete"

    # Restart: a new helper with the same id reads the checkpoint back and finds nothing new.
    bundles_before = len(opencti.bundles())
    run_once(elastic, connect(opencti, connector_id=connector_id, protocol="api"))
    assert len(opencti.bundles()) == bundles_before


def test_incident_status_follows_the_alert_workflow_status(
    elastic: ElasticDouble, opencti: OpenCTIDouble, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    docs = list(generate_alerts(40, seed=21))
    load_into(elastic, INDEX, docs)
    settings = ElasticIncidentsSettings(
        url=elastic.es.url, api_key=elastic.api_key, import_start_date="2020-01-01", import_cases=False
    )
    reader = AlertReader(build_elasticsearch(settings), settings.alerts_index, page_size=500)
    clock = iter([datetime(2025, 6, day, tzinfo=UTC) for day in (1, 2)])
    platform = connect(opencti, protocol="api")
    connector = ElasticIncidentsConnector(settings, platform, reader, None, now=lambda: next(clock))

    # No workflow for incidents yet (as on a new platform): no status is sent, and the gap is told.
    connector.process()
    assert all("x_opencti_workflow_id" not in o for o in sent_incidents(opencti))
    assert "OpenCTI has no workflow for Incident" in caplog.text
    assert "Case-Incident" not in caplog.text  # cases are not imported: their workflow is not asked for

    # An admin adds one; a closed alert's incident then moves to CLOSED without a restart.
    ids = opencti.add_workflow("Incident", ["NEW", "IN_PROGRESS", "CLOSED"])
    target = next(d for d in docs if d["kibana.alert.workflow_status"] == "open")
    changed = {
        **target,
        "kibana.alert.workflow_status": "closed",
        "kibana.alert.workflow_status_updated_at": "2025-06-01T12:00:00.000Z",
    }
    load_into(elastic, INDEX, [changed])
    pushed = len(opencti.bundles())
    connector.process()
    [incident] = sent_incidents(opencti, after=pushed)
    assert incident["external_references"][0]["external_id"] == alert_id(target)
    assert incident["x_opencti_workflow_id"] == ids["CLOSED"]
    assert "workflow status closed" in incident["description"]

    # A full run (a second connector, from the start) maps every Elastic status onto the workflow.
    pushed = len(opencti.bundles())
    ElasticIncidentsConnector(settings, connect(opencti, protocol="api"), reader, None).process()
    expected = {"open": ids["NEW"], "acknowledged": ids["IN_PROGRESS"], "closed": ids["CLOSED"]}
    status_of = {alert_id(d): d["kibana.alert.workflow_status"] for d in docs}
    status_of[alert_id(target)] = "closed"
    rerun = sent_incidents(opencti, after=pushed)
    assert len(rerun) == 40 and len(set(status_of.values())) == 3
    for obj in rerun:
        alert = obj["external_references"][0]["external_id"]
        assert obj["x_opencti_workflow_id"] == expected[status_of[alert]], alert


def sent_incidents(opencti: OpenCTIDouble, after: int = 0) -> list[dict[str, Any]]:
    return [o for pushed in opencti.bundles()[after:] for o in pushed.objects if o["type"] == "incident"]
