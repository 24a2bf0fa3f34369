"""Elastic Security Incidents through the OpenCTI double with the real pycti helper.

25,000 alerts over many pages arrive once each as incidents; the checkpoint is stored on the platform;
a restarted connector (new helper, same connector id) resumes from it and sends nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
