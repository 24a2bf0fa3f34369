"""Kibana alert documents to the model and to valid STIX."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ctibridge.errors import InputError
from ctibridge.model import Severity
from ctibridge.model.observables import DomainName, File, IPAddress, NetworkTraffic, Process, RegistryKey, Url
from ctibridge.siem.elastic.alerts import AlertMapper, unwrap_alerts
from ctibridge.stix import StixBuilder, Tlp, make_bundle
from tests.support.stix_validation import assert_valid_bundle

SHA256 = "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea"


def alert(uuid: str = "abc123ff-0000-4000-8000-000000000001", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": "2025-03-04T10:15:02.113Z",
        "kibana.alert.uuid": uuid,
        "kibana.alert.rule.name": "Malware Detection",
        "kibana.alert.rule.uuid": "2f5b6a10-5d2c-11ee-8c99-0242ac120002",
        "kibana.alert.rule.rule_id": "malware-detection",
        "kibana.alert.rule.type": "query",
        "kibana.alert.rule.tags": ["Elastic", "Windows"],
        "kibana.alert.rule.description": "Detects malware.",
        "kibana.alert.severity": "high",
        "kibana.alert.risk_score": 73,
        "kibana.alert.workflow_status": "open",
        "kibana.alert.reason": "malware event on WS-1",
        "kibana.alert.original_time": "2025-03-04T10:14:58.000Z",
        "kibana.alert.rule.threat": [
            {
                "framework": "MITRE ATT&CK",
                "tactic": {
                    "id": "TA0002",
                    "name": "Execution",
                    "reference": "https://attack.mitre.org/tactics/TA0002/",
                },
                "technique": [
                    {
                        "id": "T1204",
                        "name": "User Execution",
                        "reference": "https://attack.mitre.org/techniques/T1204/",
                        "subtechnique": [{"id": "T1204.002", "name": "Malicious File", "reference": "x"}],
                    }
                ],
            }
        ],
        "host": {"name": "WS-1", "ip": ["10.0.0.5", "fe80::1", "bogus"], "os": {"name": "Windows"}},
        "user": {"name": "bob", "domain": "CORP"},
        "process": {
            "pid": 42,
            "command_line": "evil.exe /x",
            "executable": "C:\\Temp\\evil.exe",
            "name": "evil.exe",
            "hash": {"sha256": SHA256, "md5": "tooshort"},
            "parent": {"pid": 4, "command_line": "explorer.exe", "executable": "C:\\Windows\\explorer.exe"},
        },
        "source": {"ip": "10.0.0.5", "port": 50000},
        "destination": {"ip": "203.0.113.9", "port": 443},
        "network": {"transport": "tcp"},
        "registry": {
            "hive": "HKLM",
            "key": "Software\\Run",
            "value": "evil",
            "data": {"strings": ["c:\\e.exe"]},
        },
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def mapper() -> AlertMapper:
    return AlertMapper("https://kibana.example:5601/", space="soc")


def test_core_fields(mapper: AlertMapper) -> None:
    mapped = mapper(alert(), ".internal.alerts-security.alerts-soc-000001")
    assert mapped.name == "Malware Detection on ws-1 (abc123ff)"
    assert mapped.severity is Severity.HIGH and mapped.risk_score == 73
    assert mapped.status == "open"
    assert mapped.tags == ["Elastic", "Windows"]
    assert "Reason: malware event on WS-1" in mapped.description and "risk score 73" in mapped.description
    assert mapped.first_seen is not None and mapped.first_seen.isoformat() == "2025-03-04T10:14:58+00:00"
    assert [t.id for t in mapped.techniques] == ["T1204", "T1204.002"]
    assert mapped.hosts[0].name == "ws-1"
    assert [ip.value for ip in mapped.hosts[0].ips] == ["10.0.0.5", "fe80::1"], "invalid host IP dropped"
    link = mapped.links[0]
    assert link.external_id == mapped.id
    assert link.url is not None and link.url.startswith(
        "https://kibana.example:5601/s/soc/app/security/alerts/redirect/abc123ff-0000-4000-8000-000000000001?"
    )
    assert "index=.internal.alerts-security.alerts-soc-000001" in link.url
    assert mapped.links[1].url == (
        "https://kibana.example:5601/s/soc/app/security/rules/id/2f5b6a10-5d2c-11ee-8c99-0242ac120002"
    )


def test_observables(mapper: AlertMapper) -> None:
    observables = mapper(alert()).observables
    ips = {o.value for o in observables if isinstance(o, IPAddress)}
    assert ips == {"203.0.113.9"}, "host addresses become host IPs, not loose observables"
    process = next(o for o in observables if isinstance(o, Process))
    assert process.pid == 42 and process.parent is not None and process.parent.pid == 4
    assert process.image is not None and process.image.hash_map == {"SHA-256": SHA256}, "bad md5 dropped"
    traffic = next(o for o in observables if isinstance(o, NetworkTraffic))
    assert (traffic.dst_port, traffic.protocols) == (443, ("tcp",))
    key = next(o for o in observables if isinstance(o, RegistryKey))
    assert key.key == "HKEY_LOCAL_MACHINE\\Software\\Run" and key.values[0].data == "c:\\e.exe"


def test_severity_falls_back_to_risk_score_bands(mapper: AlertMapper) -> None:
    doc = alert()
    del doc["kibana.alert.severity"]
    doc["kibana.alert.risk_score"] = 21
    assert mapper(doc).severity is Severity.LOW
    doc["kibana.alert.risk_score"] = 74
    assert mapper(doc).severity is Severity.CRITICAL


def test_a_risk_score_of_zero_is_a_score(mapper: AlertMapper) -> None:
    doc = alert(**{"kibana.alert.risk_score": 0, "kibana.alert.rule.risk_score": 99})
    del doc["kibana.alert.severity"]
    mapped = mapper(doc)
    assert mapped.risk_score == 0
    assert mapped.severity is Severity.LOW
    assert "risk score 0" in mapped.description
    del doc["kibana.alert.risk_score"]  # absent: the rule's score stands in
    assert mapper(doc).severity is Severity.CRITICAL


def test_kibana_url_field_wins(mapper: AlertMapper) -> None:
    doc = alert(**{"kibana.alert.url": "https://k.example/app/security/alerts/redirect/x"})
    assert mapper(doc).links[0].url == "https://k.example/app/security/alerts/redirect/x"


def test_indicator_match_adds_the_matched_value(mapper: AlertMapper) -> None:
    doc = alert(
        threat={
            "enrichments": [
                {"matched": {"atomic": "198.51.100.7", "field": "source.ip", "type": "indicator_match_rule"}},
                {"matched": {"atomic": "ab" * 16, "field": "file.hash.md5", "type": "indicator_match_rule"}},
                {"matched": {"atomic": "evil.example.net", "field": "dns.question.name"}},
            ]
        }
    )
    observables = mapper(doc).observables
    assert "198.51.100.7" in {o.value for o in observables if isinstance(o, IPAddress)}
    assert any(isinstance(o, File) and o.hash_map == {"MD5": "ab" * 16} for o in observables)
    assert "evil.example.net" in {getattr(o, "value", None) for o in observables}


@pytest.mark.parametrize(
    ("field", "atomic", "kind"),
    [
        ("url.domain", "evil.example.net", DomainName),
        ("url.registered_domain", "example.net", DomainName),
        ("destination.domain", "c2.example.org", DomainName),
        ("url.full", "https://evil.example.net/payload.bin", Url),
        ("url.original", "http://evil.example.net/a?b=c", Url),
    ],
)
def test_indicator_match_type_follows_the_matched_field(
    mapper: AlertMapper, field: str, atomic: str, kind: type
) -> None:
    doc = alert(threat={"enrichments": [{"matched": {"atomic": atomic, "field": field}}]})
    matched = [o for o in mapper(doc).observables if getattr(o, "value", None) == atomic]
    assert [type(o) for o in matched] == [kind]


def test_a_technique_under_several_tactics_keeps_every_tactic(mapper: AlertMapper) -> None:
    technique = {"id": "T1078", "name": "Valid Accounts", "reference": "x"}
    threat = [
        {"framework": "MITRE ATT&CK", "tactic": {"id": f"TA000{n}", "name": name}, "technique": [technique]}
        for n, name in ((1, "Initial Access"), (3, "Persistence"), (4, "Privilege Escalation"))
    ]
    mapped = mapper(alert(**{"kibana.alert.rule.threat": threat}))
    assert [(t.id, t.tactics) for t in mapped.techniques] == [
        ("T1078", ("Initial Access", "Persistence", "Privilege Escalation"))
    ]
    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER)
    pattern = next(o for o in builder.alert(mapped).objects if o["type"] == "attack-pattern")
    assert [p["phase_name"] for p in pattern["kill_chain_phases"]] == [
        "initial-access",
        "persistence",
        "privilege-escalation",
    ]


def test_same_timestamp_alerts_stay_distinct_and_reruns_are_stable(mapper: AlertMapper) -> None:
    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER)
    first = builder.alert(mapper(alert("11111111-aaaa-4000-8000-000000000001"))).id
    second = builder.alert(mapper(alert("22222222-bbbb-4000-8000-000000000002"))).id
    again = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER).alert(
        AlertMapper("https://kibana.example:5601/", space="soc")(
            alert("11111111-aaaa-4000-8000-000000000001")
        )
    )
    assert first != second
    assert again.id == first


def test_bundle_is_valid(mapper: AlertMapper) -> None:
    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER)
    objects = builder.preamble() + builder.alert(mapper(alert())).objects
    assert_valid_bundle(make_bundle(objects))


@pytest.mark.parametrize("missing", ["kibana.alert.uuid", "@timestamp"])
def test_unusable_alerts_raise_input_error(mapper: AlertMapper, missing: str) -> None:
    doc = alert()
    del doc[missing]
    with pytest.raises(InputError):
        mapper(doc)


def test_minimal_alert_and_odd_values(mapper: AlertMapper) -> None:
    doc = {
        "@timestamp": "2025-01-01T00:00:00Z",
        "kibana.alert.uuid": "x1",
        "host": "not-an-object",
        "user": None,
    }
    mapped = mapper(doc)
    assert mapped.name == "Elastic Security alert (x1)"
    assert mapped.observables == [] and mapped.hosts == []


def test_unwrap_search_response_and_hits() -> None:
    response = {
        "hits": {
            "total": {"value": 2},
            "hits": [{"_id": "a", "_index": "i", "_source": {"x": 1}}, {"_id": "b", "_source": {}}],
        }
    }
    unwrapped = list(unwrap_alerts(response))
    assert unwrapped == [{"x": 1, "_id": "a", "_index": "i"}, {"_id": "b", "_index": None}]
    assert list(unwrap_alerts([{"a": 1}, {"b": 2}])) == [{"a": 1}, {"b": 2}]
    assert json.loads(json.dumps(copy.deepcopy(unwrapped)))  # plain JSON data


def test_every_path_the_mapping_reads_is_in_its_field_set(mapper: AlertMapper) -> None:
    """Mapped strictly (a read outside FIELDS raises), every fixture alert maps as in production."""
    from ctibridge.siem.ecs import EcsDocument
    from ctibridge.siem.elastic.alerts import FIELDS
    from tests.fixtures.elastic_alerts import generate_alerts

    docs = [alert(), *generate_alerts(400, seed=5)]
    for doc in docs:
        strict = mapper(EcsDocument(doc, only=FIELDS, strict=True), doc.get("_index"))
        assert strict == mapper(doc, doc.get("_index"))


def test_the_process_user_is_the_alert_user_when_the_logins_agree(mapper: AlertMapper) -> None:
    doc = alert(user={"name": "bob", "domain": "CORP", "id": "S-1-5-21-1"})
    doc["process"] = {**doc["process"], "user": {"name": "bob"}}
    mapped = mapper(doc)
    [process] = [obs for obs in mapped.observables if isinstance(obs, Process)]
    assert process.user is mapped.users[0]  # one account, with its id and domain
    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER)
    objects = builder.alert(mapped).objects
    accounts = [o for o in objects if o["type"] == "user-account"]
    assert len(accounts) == 1 and accounts[0]["user_id"] == "S-1-5-21-1"
    doc["process"] = {**doc["process"], "user": {"name": "SYSTEM"}}
    [process] = [obs for obs in mapper(doc).observables if isinstance(obs, Process)]
    assert process.user is not None and process.user.account_login == "SYSTEM"
