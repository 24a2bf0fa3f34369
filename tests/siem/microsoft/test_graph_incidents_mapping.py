"""Graph security incidents to STIX: goldens, enum spellings, product filter, evidence types, bad input.

Inputs follow the v1.0 metadata shapes (tests/vendor/msgraph); expected values are written out by hand
from the issue's mapping table, so a change in the mapping shows up as a failing field, not a new file.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from ctibridge.model import Severity
from ctibridge.siem.microsoft.incidents import (
    MAPPED_EVIDENCE,
    SKIPPED_EVIDENCE,
    IncidentMapper,
    build_incident,
    graph_severity,
    unwrap_incidents,
)
from ctibridge.stix import StixBuilder, Tlp, make_bundle
from tests.fixtures.graph_incidents import MAPPED_EVIDENCE as FIXTURE_MAPPED
from tests.fixtures.graph_incidents import SKIPPED_EVIDENCE as FIXTURE_SKIPPED
from tests.fixtures.graph_incidents import generate_incidents
from tests.support.stix_validation import assert_valid_bundle

NS = "#microsoft.graph.security."
METADATA = Path(__file__).resolve().parents[2] / "vendor" / "msgraph" / "security-incidents-v1.0.xml"
SHA256 = "a" * 63 + "1"


def ev(kind: str, **props: Any) -> dict[str, Any]:
    return {
        "@odata.type": f"{NS}{kind}Evidence",
        "createdDateTime": "2024-05-01T10:00:00.1234567Z",
        "verdict": "unknown",
        "roles": [],
        "tags": [],
        **props,
    }


def alert(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "da637551227677560813_-961444813",
        "providerAlertId": "637551227677560813_-961444813",
        "incidentId": "2972395",
        "status": "New",
        "severity": "Medium",
        "classification": "TruePositive",
        "determination": "Malware",
        "serviceSource": "MicrosoftDefenderForEndpoint",
        "detectionSource": "Antivirus",
        "productName": "Microsoft Defender for Endpoint",
        "title": "Suspicious execution of hidden file",
        "description": "A hidden file has been launched.",
        "category": "DefenseEvasion",
        "mitreTechniques": ["T1564.001", "t1059", "not-a-technique"],
        "recommendedActions": "Isolate the device.",
        "createdDateTime": "2024-05-01T10:05:00.5533333Z",
        "lastUpdateDateTime": "2024-05-01T11:00:00.0000000Z",
        "firstActivityDateTime": "2024-05-01T09:55:00.0000000Z",
        "lastActivityDateTime": "2024-05-01T10:04:00.0000000Z",
        "alertWebUrl": "https://security.microsoft.com/alerts/da637551227677560813_-961444813",
        "systemTags": [],
        "evidence": [
            ev(
                "device",
                deviceDnsName="WS-1001.contoso.com",
                hostName="WS-1001",
                mdeDeviceId="f" * 40,
                osPlatform="Windows11",
                osBuild=22631,
                ipInterfaces=["10.1.2.3", "2001:db8::5"],
                lastExternalIpAddress="203.0.113.7",
                loggedOnUsers=[{"accountName": "alice", "domainName": "CONTOSO"}],
            ),
            ev(
                "user",
                userAccount={
                    "accountName": "bob",
                    "domainName": "CONTOSO",
                    "userSid": "S-1-5-21-1-2-3-1104",
                    "azureAdUserId": "6baf9d1e-0000-4000-8000-000000000001",
                    "userPrincipalName": "bob@contoso.com",
                    "displayName": "Bob B",
                },
            ),
            ev("ip", verdict="Malicious", ipAddress="198.51.100.23", countryLetterCode="nl"),
            ev("url", verdict="malicious", url="https://evil.example.net/drop?id=1"),
            ev(
                "file",
                verdict="Suspicious",
                fileDetails={
                    "fileName": "payload.exe",
                    "filePath": r"C:\Users\Public",
                    "fileSize": 1024,
                    "sha256": SHA256,
                    "sha1": None,
                    "md5": "0" * 32,
                },
            ),
        ],
    }
    doc.update(overrides)
    return doc


def incident(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "2972395",
        "displayName": "Multi-stage incident involving Execution on one endpoint",
        "description": "Correlated by Microsoft Defender XDR.",
        "severity": "High",
        "status": "Active",
        "classification": "TruePositive",
        "determination": "MultiStagedAttack",
        "assignedTo": "analyst@contoso.com",
        "createdDateTime": "2024-05-01T10:06:00.1000000Z",
        "lastUpdateDateTime": "2024-05-01T11:30:00.0000001Z",
        "incidentWebUrl": "https://security.microsoft.com/incidents/2972395?tid=t",
        "redirectIncidentId": None,
        "customTags": ["Demo"],
        "systemTags": ["Defender Experts"],
        "comments": [
            {
                "comment": "Device isolated.",
                "createdByDisplayName": "analyst@contoso.com",
                "createdDateTime": "2024-05-01T10:30:00.0000000Z",
            }
        ],
        "alerts": [alert()],
    }
    doc.update(overrides)
    return doc


def convert(doc: dict[str, Any], *, target: str | None = None, indicators: bool = False) -> list[Any]:
    mapped = IncidentMapper(target)(doc)
    assert mapped is not None
    builder = StixBuilder(author_name="Microsoft Security", tlp=Tlp.AMBER)
    objects = [*builder.preamble(), *build_incident(builder, mapped, create_indicators=indicators).objects]
    assert_valid_bundle(make_bundle(objects))
    return objects


def of_type(objects: list[dict[str, Any]], stix_type: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["type"] == stix_type]


def by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in objects}


# ------------------------------------------------------------------------------------------- goldens


def test_incident_golden() -> None:
    objects = convert(incident())
    [case] = of_type(objects, "case-incident")
    assert case["name"] == "Multi-stage incident involving Execution on one endpoint"
    assert case["created"] == "2024-05-01T10:06:00.100Z" and case["modified"] == "2024-05-01T11:30:00.000Z"
    assert case["severity"] == "high" and case["priority"] == "P1"
    assert case["labels"] == [
        "Demo",
        "Defender Experts",
        "classification:truePositive",
        "determination:multiStagedAttack",
    ]
    assert "Correlated by Microsoft Defender XDR." in case["description"]
    assert "status active" in case["description"] and "assigned to analyst@contoso.com" in case["description"]
    assert case["external_references"] == [
        {
            "source_name": "Microsoft Defender portal",
            "url": "https://security.microsoft.com/incidents/2972395?tid=t",
            "external_id": "2972395",
            "description": "Microsoft Graph security incident",
        }
    ]
    # object_refs hold everything created for the case (not the author, marking or the comment note).
    others = {o["id"] for o in objects if o["type"] not in ("case-incident", "marking-definition")}
    others -= {objects[0]["id"]} | {
        n["id"] for n in of_type(objects, "note") if case["id"] in n["object_refs"]
    }
    assert set(case["object_refs"]) == others

    [comment] = [n for n in of_type(objects, "note") if n["object_refs"] == [case["id"]]]
    assert (
        comment["content"] == "Device isolated." and comment["abstract"] == "Comment by analyst@contoso.com"
    )


def test_alert_golden() -> None:
    objects = convert(incident())
    [inc] = of_type(objects, "incident")
    assert inc["name"] == "Suspicious execution of hidden file (da637551227677560813_-961444813)"
    assert inc["created"] == "2024-05-01T10:05:00.553Z"
    assert inc["severity"] == "medium" and inc["source"] == "Microsoft Defender for Endpoint"
    assert inc["first_seen"] == "2024-05-01T09:55:00.000Z" and inc["last_seen"] == "2024-05-01T10:04:00.000Z"
    for fact in (
        "status new",
        "category DefenseEvasion",
        "detection source antivirus",
        "service source microsoftDefenderForEndpoint",
        "Isolate the device.",
    ):
        assert fact in inc["description"]
    assert inc["labels"] == ["classification:truePositive", "determination:malware"]
    refs = inc["external_references"]
    assert refs[0]["url"].endswith("/alerts/da637551227677560813_-961444813")
    assert refs[1] == {
        "source_name": "Microsoft Defender for Endpoint",
        "external_id": "637551227677560813_-961444813",
        "description": "provider alert id",
    }
    uses = {
        by_id(objects)[r["target_ref"]]["x_mitre_id"]
        for r in of_type(objects, "relationship")
        if r["relationship_type"] == "uses" and r["source_ref"] == inc["id"]
    }
    assert uses == {"T1564.001", "T1059"}


def test_evidence_golden() -> None:
    objects = convert(incident())
    index = by_id(objects)
    [inc] = of_type(objects, "incident")
    related = {
        r["source_ref"]
        for r in of_type(objects, "relationship")
        if r["relationship_type"] == "related-to" and r["target_ref"] == inc["id"]
    }
    [system] = [i for i in of_type(objects, "identity") if i["identity_class"] == "system"]
    assert system["name"] == "ws-1001.contoso.com"
    assert any(
        r["relationship_type"] == "targets" and r["target_ref"] == system["id"]
        for r in of_type(objects, "relationship")
    )
    assert {h["value"] for h in of_type(objects, "hostname")} == {"ws-1001.contoso.com"}
    assert {o["value"] for o in of_type(objects, "ipv4-addr")} == {"10.1.2.3", "203.0.113.7", "198.51.100.23"}
    assert {o["value"] for o in of_type(objects, "ipv6-addr")} == {"2001:db8::5"}
    bob = next(u for u in of_type(objects, "user-account") if u.get("account_login") == "bob")
    assert bob["user_id"] == "S-1-5-21-1-2-3-1104" and bob["display_name"] == "Bob B"
    assert "CONTOSO" in bob["x_opencti_description"]
    assert any(u.get("account_login") == "alice" for u in of_type(objects, "user-account"))
    [url] = of_type(objects, "url")
    [file] = [f for f in of_type(objects, "file") if f.get("name") == "payload.exe"]
    assert file["hashes"] == {"SHA-256": SHA256}, "the all-zero MD5 is dropped"
    assert file["size"] == 1024 and index[file["parent_directory_ref"]]["path"] == r"C:\Users\Public"
    assert {url["id"], file["id"], bob["id"]} <= related
    [country] = [n for n in of_type(objects, "note") if n.get("abstract") == "IP address country"]
    assert country["content"] == "198.51.100.23 is located in country NL."
    ip_id = next(o["id"] for o in of_type(objects, "ipv4-addr") if o["value"] == "198.51.100.23")
    assert ip_id in country["object_refs"]


def test_ids_are_deterministic() -> None:
    first = [o["id"] for o in convert(incident())]
    second = [o["id"] for o in convert(copy.deepcopy(incident()))]
    assert first == second


def test_indicators_only_for_malicious_evidence_when_asked() -> None:
    assert not of_type(convert(incident()), "indicator")
    objects = convert(incident(), indicators=True)
    patterns = sorted(i["pattern"] for i in of_type(objects, "indicator"))
    assert patterns == [
        "[ipv4-addr:value = '198.51.100.23']",
        "[url:value = 'https://evil.example.net/drop?id=1']",
    ], "the suspicious file makes no indicator"
    [inc] = of_type(objects, "incident")
    for indicator in of_type(objects, "indicator"):
        kinds = {
            (r["relationship_type"], by_id(objects)[r["target_ref"]]["type"])
            for r in of_type(objects, "relationship")
            if r["source_ref"] == indicator["id"]
        }
        assert ("indicates", "incident") in kinds and len(kinds) == 2
        assert any(
            r["target_ref"] == inc["id"]
            for r in of_type(objects, "relationship")
            if r["source_ref"] == indicator["id"]
        )


# ------------------------------------------------------------------------------------------- enums


@pytest.mark.parametrize(
    ("value", "severity", "priority"),
    [
        ("high", Severity.HIGH, "P1"),
        ("High", Severity.HIGH, "P1"),
        ("MEDIUM", Severity.MEDIUM, "P2"),
        ("low", Severity.LOW, "P3"),
        ("Informational", Severity.LOW, "P4"),
        ("unknown", Severity.LOW, "P4"),
        ("unknownFutureValue", Severity.LOW, "P4"),
        ("catastrophic", Severity.LOW, "P4"),
        (None, Severity.LOW, "P4"),
        (7, Severity.LOW, "P4"),
    ],
)
def test_severity_and_priority(value: Any, severity: Severity, priority: str) -> None:
    assert graph_severity(value) == (severity, priority)
    [case] = of_type(convert(incident(severity=value)), "case-incident")
    assert (case["severity"], case["priority"]) == (severity.value, priority)


@pytest.mark.parametrize("spelling", [str.lower, str.upper, lambda s: s[:1].upper() + s[1:], lambda s: s])
def test_enum_spellings_map_alike(spelling: Any) -> None:
    doc = incident(
        status=spelling("inProgress"),
        classification=spelling("falsePositive"),
        determination=spelling("notMalicious"),
    )
    doc["alerts"][0]["status"] = spelling("resolved")
    doc["alerts"][0]["evidence"][2]["verdict"] = spelling("malicious")
    objects = convert(doc, indicators=True)
    [case] = of_type(objects, "case-incident")
    assert "status inProgress" in case["description"]
    assert "classification:falsePositive" in case["labels"] and "determination:notMalicious" in case["labels"]
    [inc] = of_type(objects, "incident")
    assert "status resolved" in inc["description"]
    assert "[ipv4-addr:value = '198.51.100.23']" in {i["pattern"] for i in of_type(objects, "indicator")}


@pytest.mark.parametrize("value", ["unknownFutureValue", "unknown", "somethingNew", None, 3, ["active"]])
def test_unknown_enum_values_fall_back(value: Any) -> None:
    doc = incident(status=value, classification=value, determination=value)
    doc["alerts"][0].update(status=value, severity=value, serviceSource=value, detectionSource=value)
    objects = convert(doc)
    [case] = of_type(objects, "case-incident")
    assert "status unknown" in case["description"]
    assert not [label for label in case["labels"] if label.startswith(("classification:", "determination:"))]
    [inc] = of_type(objects, "incident")
    assert inc["severity"] == "low" and "status unknown" in inc["description"]
    assert "unknownFutureValue" not in inc["description"]


def test_redirected_incident_is_skipped_and_counted() -> None:
    mapper = IncidentMapper()
    assert mapper(incident(status="Redirected", redirectIncidentId="1")) is None
    assert mapper.skipped["incident:redirected"] == 1


# ------------------------------------------------------------------------------------------- product filter


SENTINEL_ALERTS = [
    {"productName": "Azure Sentinel", "serviceSource": "unknownFutureValue"},
    {"productName": "Microsoft Sentinel", "serviceSource": "microsoftSentinel"},
    {"productName": None, "serviceSource": "MicrosoftSentinel"},
]
MDE_ALERTS = [
    {"productName": "Microsoft Defender ATP", "serviceSource": None},
    {"productName": "Microsoft Defender for Endpoint", "serviceSource": "microsoftDefenderForEndpoint"},
    {"productName": None, "serviceSource": "MicrosoftDefenderForEndpoint"},
]
OTHER_ALERTS = [
    {"productName": "Microsoft Defender for Office 365", "serviceSource": "microsoftDefenderForOffice365"}
]


def _product_incident() -> dict[str, Any]:
    alerts = []
    for n, names in enumerate(SENTINEL_ALERTS + MDE_ALERTS + OTHER_ALERTS):
        alerts.append(alert(id=f"a{n}", evidence=[], **names))
    return incident(alerts=alerts)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("Azure Sentinel", {"a0", "a1", "a2"}),
        ("microsoft sentinel", {"a0", "a1", "a2"}),
        ("Microsoft Defender ATP", {"a3", "a4", "a5"}),
        ("MICROSOFT DEFENDER FOR ENDPOINT", {"a3", "a4", "a5"}),
        ("Azure Sentinel,Microsoft Defender ATP", {"a0", "a1", "a2", "a3", "a4", "a5"}),
        ("", {f"a{n}" for n in range(7)}),
    ],
)
def test_target_product_filter(target: str, expected: set[str]) -> None:
    mapped = IncidentMapper(target)(_product_incident())
    assert mapped is not None
    assert {a.alert.id for a in mapped.alerts} == expected


def test_incident_without_target_product_alerts_is_skipped() -> None:
    mapper = IncidentMapper("Azure Sentinel")
    doc = incident(alerts=[alert(id="x", **OTHER_ALERTS[0])])
    assert mapper(doc) is None and mapper.skipped["incident:other-product"] == 1


# ------------------------------------------------------------------------------------------- evidence types

FILE_DETAILS = {"fileName": "a.dll", "filePath": r"C:\Temp", "sha1": "b" * 39 + "1"}
EVIDENCE_CASES: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
    (
        ev("user", userAccount={"accountName": "eve", "userSid": "S-1-5-21-9"}),
        "user-account",
        {"account_login": "eve"},
    ),
    (ev("ip", ipAddress="2001:db8::1"), "ipv6-addr", {"value": "2001:db8::1"}),
    (ev("url", url="http://x.example.org/a"), "url", {"value": "http://x.example.org/a"}),
    (ev("device", hostName="SRV-9", ipInterfaces=["10.9.9.9"]), "hostname", {"value": "srv-9"}),
    (ev("file", fileDetails=FILE_DETAILS), "file", {"name": "a.dll"}),
    (ev("fileHash", algorithm="Sha256", value=SHA256.upper()), "file", {"hashes": {"SHA-256": SHA256}}),
    (
        ev(
            "process",
            processId=4242,
            processCommandLine="cmd.exe /c whoami",
            imageFile=FILE_DETAILS,
            parentProcessId=11,
            parentProcessImageFile={"fileName": "explorer.exe"},
        ),
        "process",
        {"pid": 4242, "command_line": "cmd.exe /c whoami"},
    ),
    (
        ev("registryKey", registryHive="HKEY_LOCAL_MACHINE", registryKey=r"SOFTWARE\Run"),
        "windows-registry-key",
        {"key": r"HKEY_LOCAL_MACHINE\SOFTWARE\Run"},
    ),
    (
        ev(
            "registryValue",
            registryHive="HKEY_CURRENT_USER",
            registryKey=r"Env",
            registryValueName="Path",
            registryValue="x",
            registryValueType="ExpandString",
        ),
        "windows-registry-key",
        {
            "key": r"HKEY_CURRENT_USER\Env",
            "values": [{"name": "Path", "data": "x", "data_type": "REG_EXPAND_SZ"}],
        },
    ),
    (
        ev("mailbox", primaryAddress="Ceo@Contoso.com", displayName="CEO"),
        "email-addr",
        {"value": "ceo@contoso.com"},
    ),
    (
        ev(
            "analyzedMessage",
            subject="Invoice",
            internetMessageId="<m1@evil.example>",
            p1Sender={"emailAddress": "billing@evil.example", "displayName": "Billing"},
            recipientEmailAddress="bob@contoso.com",
            urls=["https://evil.example/pay"],
            senderIp="192.0.2.5",
        ),
        "email-message",
        {"subject": "Invoice", "message_id": "<m1@evil.example>"},
    ),
    (ev("cloudApplication", appId=11161, displayName="Office 365"), "software", {"name": "Office 365"}),
    (
        ev(
            "malware",
            name="Trojan:Win32/Emotet.A",
            category="Trojan",
            files=[ev("file", fileDetails=FILE_DETAILS)],
        ),
        "malware",
        {"name": "Trojan:Win32/Emotet.A"},
    ),
    (
        ev("dns", domainName="Evil.Example.net", ipAddresses=[ev("ip", ipAddress="192.0.2.9")]),
        "domain-name",
        {"value": "evil.example.net"},
    ),
    (
        ev(
            "networkConnection",
            sourceAddress=ev("ip", ipAddress="10.0.0.1"),
            sourcePort=50000,
            destinationAddress=ev("ip", ipAddress="192.0.2.80"),
            destinationPort=443,
            protocol="Tcp",
        ),
        "network-traffic",
        {"src_port": 50000, "dst_port": 443, "protocols": ["tcp"]},
    ),
    (
        ev("nic", macAddress="AA-BB-CC-DD-EE-FF", ipAddress=ev("ip", ipAddress="10.4.4.4")),
        "mac-addr",
        {"value": "aa:bb:cc:dd:ee:ff"},
    ),
    (
        ev(
            "cloudLogonSession",
            account=ev("user", userAccount={"accountName": "kim"}),
            userAgent="Mozilla/5.0",
        ),
        "user-agent",
        {"value": "Mozilla/5.0"},
    ),
    (
        ev(
            "hostLogonSession",
            account=ev("user", userAccount={"accountName": "lee"}),
            host=ev("device", hostName="LT-7"),
        ),
        "hostname",
        {"value": "lt-7"},
    ),
    (
        ev("oauthApplication", displayName="Mail Sync", publisher="Evil Inc"),
        "software",
        {"name": "Mail Sync", "vendor": "Evil Inc"},
    ),
    (
        ev(
            "blob",
            name="dump.zip",
            url="https://acct.blob.core.windows.net/c/dump.zip",
            fileHashes=[{"algorithm": "md5", "value": "c" * 32}],
        ),
        "file",
        {"name": "dump.zip"},
    ),
    (
        ev("submissionMail", subject="Report", sender="x@evil.example", recipient="y@contoso.com"),
        "email-message",
        {"subject": "Report"},
    ),
    (
        ev("teamsMessage", senderFromAddress="ext@evil.example", urls=[ev("url", url="https://t.example/x")]),
        "url",
        {"value": "https://t.example/x"},
    ),
    (
        ev("gitHubUser", login="octo-evil", userId="42", email="o@evil.example"),
        "user-account",
        {"account_login": "octo-evil", "user_id": "42"},
    ),
    (ev("ioTDevice", deviceName="PLC-1", macAddress="00:11:22:33:44:55"), "hostname", {"value": "plc-1"}),
]


@pytest.mark.parametrize(
    ("evidence", "stix_type", "expected"),
    EVIDENCE_CASES,
    ids=[c[0]["@odata.type"].removeprefix(NS) for c in EVIDENCE_CASES],
)
def test_evidence_type(evidence: dict[str, Any], stix_type: str, expected: dict[str, Any]) -> None:
    objects = convert(incident(alerts=[alert(evidence=[evidence])]))
    candidates = of_type(objects, stix_type)
    assert any(all(o.get(k) == v for k, v in expected.items()) for o in candidates), candidates


# Properties every process carries whatever it is: what is left tells what the process says.
_PROCESS_FRAME = {"type", "spec_version", "id", "object_marking_refs", "x_opencti_created_by_ref"}


def _pid_only(process: dict[str, Any]) -> bool:
    return set(process) - _PROCESS_FRAME - {"created_time"} == {"pid"}


def _on_device(incident_id: str, host: str, process: dict[str, Any]) -> dict[str, Any]:
    evidence = [ev("device", deviceDnsName=host), ev("process", **process)]
    return incident(
        id=incident_id,
        displayName=f"Incident {incident_id}",
        alerts=[alert(id=f"da{incident_id}", evidence=evidence)],
    )


def test_pid_only_parents_are_not_emitted_nor_merged_across_devices() -> None:
    """A pid alone names nothing outside its host: parent pid 4 on two devices must not become one object."""
    runs = [
        ("101", "ws-1.contoso.com", "cmd.exe /c whoami"),
        ("202", "srv-2.contoso.com", "powershell.exe -nop"),
    ]
    children, processes = [], []
    for incident_id, host, command in runs:
        doc = _on_device(
            incident_id,
            host,
            {
                "processId": 4242,
                "processCommandLine": command,
                "parentProcessId": 4,
                "parentProcessCreationDateTime": "2024-05-01T09:00:00Z",
            },
        )
        found = of_type(convert(doc), "process")
        processes += found
        children += [p for p in found if p.get("command_line") == command]
    assert len(children) == 2 and children[0]["id"] != children[1]["id"]
    assert not [p for p in processes if p.get("pid") == 4], "no parent process from a pid alone"
    assert not [p for p in processes if _pid_only(p)]
    assert all("parent_ref" not in child for child in children)
    assert children[0]["pid"] == 4242 and children[0]["command_line"] == "cmd.exe /c whoami"


def test_pid_only_process_evidence_is_skipped_and_counted() -> None:
    mapper = IncidentMapper()
    evidence = [
        ev("process", processId=4, parentProcessId=0, processCreationDateTime="2024-05-01T09:00:00Z"),
        ev("malware", name="Agent.X", processes=[{"processId": 8, "parentProcessId": 4}]),
    ]
    mapped = mapper(incident(alerts=[alert(evidence=evidence)]))
    assert mapped is not None
    [graph_alert] = mapped.alerts
    assert not [o for o in graph_alert.alert.observables if type(o).__name__ == "Process"]
    assert mapper.skipped["invalid:process"] == 1 and mapper.mapped["evidence:malware"] == 1


def test_parent_with_an_image_file_is_still_linked() -> None:
    doc = _on_device(
        "303",
        "ws-3.contoso.com",
        {
            "processId": 4242,
            "processCommandLine": "cmd.exe /c whoami",
            "parentProcessId": 4,
            "parentProcessCreationDateTime": "2024-05-01T09:00:00Z",
            "parentProcessImageFile": {"fileName": "services.exe", "filePath": r"C:\Windows\System32"},
        },
    )
    objects = convert(doc)
    index = by_id(objects)
    [child] = [p for p in of_type(objects, "process") if p.get("command_line") == "cmd.exe /c whoami"]
    parent = index[child["parent_ref"]]
    assert parent["type"] == "process" and parent["pid"] == 4
    assert parent["created_time"] == "2024-05-01T09:00:00.000Z"
    assert index[parent["image_ref"]]["name"] == "services.exe"
    # A process without a command line but with more than its pid (here its user) is kept as before.
    user_only = _on_device(
        "404", "ws-4.contoso.com", {"processId": 77, "userAccount": {"accountName": "eve"}}
    )
    [process] = of_type(convert(user_only), "process")
    assert process["pid"] == 77 and "creator_user_ref" in process


def test_more_than_fifteen_evidence_types_are_mapped() -> None:
    assert len({c[0]["@odata.type"] for c in EVIDENCE_CASES}) >= 15
    assert len(MAPPED_EVIDENCE) >= 15


def test_every_metadata_evidence_type_is_handled_or_skipped() -> None:
    declared = set(re.findall(r'ComplexType Name="(\w+)Evidence"', METADATA.read_text())) - {"alert"}
    assert len(declared) >= 45
    assert declared <= MAPPED_EVIDENCE | SKIPPED_EVIDENCE, declared - MAPPED_EVIDENCE - SKIPPED_EVIDENCE
    assert not MAPPED_EVIDENCE & SKIPPED_EVIDENCE


def test_fixture_evidence_types_are_mapped_or_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    docs = generate_incidents(60, seed=21, alerts_per_incident=2, evidence_per_alert=9)
    mapper = IncidentMapper()
    builder = StixBuilder(author_name="Microsoft Security", tlp=Tlp.AMBER)
    built = []
    with caplog.at_level(logging.DEBUG, logger="ctibridge.siem.microsoft.incidents"):
        for doc in docs:
            mapped = mapper(doc)
            if mapped is not None:
                built.append(build_incident(builder, mapped, create_indicators=True).objects)
    assert {k.removeprefix("evidence:") for k in mapper.mapped if k.startswith("evidence:")} == set(
        FIXTURE_MAPPED
    )
    for kind in FIXTURE_SKIPPED:
        assert mapper.skipped[f"evidence:{kind}"] > 0
    assert "skipped evidence type 'kubernetesPod'" in caplog.text
    # The fixtures carry a bad IP and short hashes: skipped per record, counted.
    assert mapper.skipped["invalid:ip"] + mapper.skipped["invalid:fileHash"] > 0
    # Validation costs ~5 ms an object: the first incidents already hold every evidence type twice.
    sample = [*builder.preamble(), *(o for group in built[:4] for o in group)]
    assert_valid_bundle(make_bundle(list({o["id"]: o for o in sample}.values())))


# ------------------------------------------------------------------------------------------- bad input


def test_bad_evidence_is_skipped_per_record() -> None:
    bad = [
        "not an object",
        None,
        ev("ip", ipAddress="999.1.1.300"),
        ev("url", url="javascript:alert(1)"),
        ev("fileHash", algorithm="sha256ac", value="abc"),
        ev("process", processId="NaN"),
        ev("registryKey", registryKey={"nested": True}),
        ev("device"),
        {"@odata.type": "#microsoft.graph.security.brandNewEvidence", "x": 1},
        {"no type": True},
    ]
    good = ev("url", url="https://still.example/ok")
    mapper = IncidentMapper()
    mapped = mapper(incident(alerts=[alert(evidence=[*bad, good])]))
    assert mapped is not None
    [graph_alert] = mapped.alerts
    assert [str(o) for o in graph_alert.alert.observables] == ["Url(value='https://still.example/ok')"]
    assert sum(mapper.skipped.values()) == len(bad)
    assert mapper.skipped["evidence:brandNew"] == 1


def test_bad_alert_is_skipped_not_the_incident() -> None:
    mapper = IncidentMapper()
    mapped = mapper(
        incident(
            alerts=[alert(id=None), alert(createdDateTime="yesterday", firstActivityDateTime=None), alert()]
        )
    )
    assert mapped is not None and len(mapped.alerts) == 1
    assert mapper.skipped["alert:invalid"] == 2


@pytest.mark.parametrize("field", ["id", "createdDateTime"])
def test_incident_without_id_or_time_is_an_input_error(field: str) -> None:
    from ctibridge.errors import InputError

    with pytest.raises(InputError):
        IncidentMapper()(incident(**{field: None}))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
EVIDENCE_KEYS = [
    "ipAddress",
    "url",
    "fileDetails",
    "userAccount",
    "processId",
    "processCommandLine",
    "registryKey",
    "registryHive",
    "domainName",
    "ipAddresses",
    "name",
    "files",
    "verdict",
    "hostName",
    "deviceDnsName",
    "p1Sender",
    "subject",
    "algorithm",
    "value",
    "primaryAddress",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(MAPPED_EVIDENCE)),
    values=st.dictionaries(st.sampled_from(EVIDENCE_KEYS), JSON, max_size=6),
)
def test_hostile_evidence_never_breaks_the_alert(kind: str, values: dict[str, Any]) -> None:
    good = ev("url", url="https://still.example/ok")
    mapper = IncidentMapper()
    mapped = mapper(incident(alerts=[alert(evidence=[ev(kind, **values), good])]))
    assert mapped is not None and len(mapped.alerts) == 1
    builder = StixBuilder(author_name="Microsoft Security", tlp=Tlp.AMBER)
    objects = [*builder.preamble(), *build_incident(builder, mapped, create_indicators=True).objects]
    assert "https://still.example/ok" in {o.get("value") for o in objects}
    assert_valid_bundle(make_bundle(objects))


@settings(max_examples=80, deadline=None)
@given(
    tail=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=40
    )
)
def test_indicator_patterns_escape_hostile_values(tail: str) -> None:
    url = f"https://evil.example/{tail}"
    mapper = IncidentMapper()
    mapped = mapper(incident(alerts=[alert(evidence=[ev("url", verdict="Malicious", url=url)])]))
    assert mapped is not None
    builder = StixBuilder(author_name="Microsoft Security", tlp=Tlp.AMBER)
    objects = build_incident(builder, mapped, create_indicators=True).objects
    [indicator] = of_type(objects, "indicator")
    assert run_validator(indicator["pattern"]) == []
    unquoted = indicator["pattern"].removeprefix("[url:value = '").removesuffix("']")
    assert unquoted.replace("\\'", "'").replace("\\\\", "\\") == url


def test_unwrap_accepts_a_list_response_an_array_or_one_incident() -> None:
    one = incident()
    assert list(unwrap_incidents({"@odata.context": "x", "value": [one, one]})) == [one, one]
    assert list(unwrap_incidents([one])) == [one]
    assert list(unwrap_incidents(one)) == [one]


@pytest.mark.parametrize(
    ("hive", "key", "expected"),
    [
        ("HKEY_LOCAL_MACHINE", r"SOFTWARE\Run", r"HKEY_LOCAL_MACHINE\SOFTWARE\Run"),
        ("HKEY_USERS", r"\S-1-5-18\Env", r"HKEY_USERS\S-1-5-18\Env"),
        ("HKEY_LOCAL_MACHINE", r"HKLM\SOFTWARE\Run", r"HKEY_LOCAL_MACHINE\SOFTWARE\Run"),
        (None, r"HKCU\Env", r"HKEY_CURRENT_USER\Env"),
    ],
)
def test_registry_keys_are_full_paths(hive: str | None, key: str, expected: str) -> None:
    evidence = ev("registryKey", registryHive=hive, registryKey=key)
    objects = convert(incident(alerts=[alert(evidence=[evidence])]))
    assert [o["key"] for o in of_type(objects, "windows-registry-key")] == [expected]
