"""Kibana cases to Case-Incidents: attached alerts become the same Incidents the alert import makes."""

from __future__ import annotations

from typing import Any

import pytest

from ctibridge.errors import InputError
from ctibridge.model import Severity
from ctibridge.siem.elastic.alerts import AlertMapper
from ctibridge.siem.elastic.cases import CaseMapper, alert_ids_of, unwrap_cases
from ctibridge.stix import StixBuilder, Tlp, make_bundle
from tests.siem.test_elastic_alerts import alert
from tests.support.stix_validation import assert_valid_bundle

ALERT_ID = "abc123ff-0000-4000-8000-000000000001"


def case(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "c0ffee00-1111-4222-8333-444455556666",
        "title": "Ransomware on finance share",
        "description": "Files encrypted",
        "status": "in-progress",
        "severity": "high",
        "tags": ["ransomware"],
        "owner": "securitySolution",
        "assignees": [{"uid": "u_analyst_1"}],
        "created_at": "2025-03-04T12:00:00.000Z",
        "created_by": {"username": "alice", "full_name": "Alice A"},
        "updated_at": None,
        "comments": [
            {
                "type": "user",
                "id": "cm1",
                "comment": "Isolated fs-01",
                "created_at": "2025-03-04T12:30:00.000Z",
                "created_by": {"username": "alice"},
            },
            {
                "type": "alert",
                "id": "cm2",
                "alertId": [ALERT_ID, "gone-0001"],
                "index": [".alerts-x", ".alerts-x"],
                "rule": {"id": "r", "name": "Malware Detection"},
                "created_at": "2025-03-04T12:01:00.000Z",
            },
        ],
        "observables": [
            {"typeKey": "observable-type-ipv4", "value": "203.0.113.9"},
            {"typeKey": "observable-type-domain", "value": "evil.example.net"},
            {"typeKey": "observable-type-file-hash", "value": "ab" * 32},
            {"typeKey": "observable-type-file-hash", "value": "not-a-hash"},
            {"typeKey": "observable-type-agent-id", "value": "agent-1"},
        ],
    }
    doc.update(overrides)
    return doc


def test_case_fields_and_alert_incidents_share_ids() -> None:
    alert_mapper = AlertMapper("https://kibana.example")
    mapper = CaseMapper("https://kibana.example", alert_mapper=alert_mapper)
    mapped = mapper(case(), alert_documents={ALERT_ID: alert(ALERT_ID)})
    assert mapped.severity is Severity.HIGH and mapped.priority == "P2"
    assert mapped.updated == mapped.created, "never-edited cases fall back to created_at"
    assert [c.text for c in mapped.comments] == ["Isolated fs-01"]
    assert "gone-0001" in mapped.description and "u_analyst_1" in mapped.description
    assert len(mapped.observables) == 3
    assert (
        mapped.links[0].url
        == "https://kibana.example/app/security/cases/c0ffee00-1111-4222-8333-444455556666"
    )

    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER)
    built = builder.case(mapped)
    incident_id = builder.alert(alert_mapper(alert(ALERT_ID), ".alerts-x")).id
    case_obj = built.objects[0]
    assert incident_id in case_obj["object_refs"]
    assert case_obj["priority"] == "P2"
    assert_valid_bundle(make_bundle(builder.preamble() + built.objects))


def test_alert_ids_from_single_and_list_comments() -> None:
    comments = [
        {"type": "alert", "alertId": "a1", "index": "i1"},
        {"type": "alert", "alertId": ["a2", "a1"], "index": ["i2", "i1"]},
        {"type": "user", "comment": "x"},
    ]
    assert alert_ids_of({}, comments) == [("a1", "i1"), ("a2", "i2")]


def test_unwrap_and_errors() -> None:
    assert list(unwrap_cases({"cases": [{"id": 1}], "page": 1})) == [{"id": 1}]
    assert list(unwrap_cases({"id": 2})) == [{"id": 2}]
    with pytest.raises(InputError):
        CaseMapper()(case(title=""))
    with pytest.raises(InputError):
        CaseMapper()(case(created_at="someday"))
