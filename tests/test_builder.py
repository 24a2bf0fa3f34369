"""The builder's objects, validated with the OASIS validator, and chunking that keeps groups whole."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ctibridge.model import Alert, Case, Comment, Host, Link, Severity, Technique
from ctibridge.model.observables import (
    EmailMessage,
    NetworkTraffic,
    RegistryValue,
    Software,
    make_asn,
    make_domain,
    make_email,
    make_file,
    make_hostname,
    make_ip,
    make_mac,
    make_process,
    make_registry_key,
    make_url,
    make_user,
    make_user_agent,
)
from ctibridge.stix import StixBuilder, Tlp, chunk_groups, make_bundle
from tests.support.stix_validation import assert_valid_bundle, findings

T0 = datetime(2025, 3, 4, 10, 15, 2, 113000, tzinfo=UTC)


def full_alert(alert_id: str = "a1") -> Alert:
    parent = make_process(pid=1, command_line="explorer.exe")
    return Alert(
        source="Elastic Security",
        id=alert_id,
        name=f"Malware on web-1 ({alert_id})",
        created=T0,
        description="desc",
        severity=Severity.HIGH,
        first_seen=T0,
        hosts=[Host(name="web-1", hostname=make_hostname("web-1"), ips=(make_ip("10.0.0.1"),))],
        users=[make_user(login="bob", domain="CORP")],
        observables=[
            make_ip("2001:db8::1"),
            make_domain("evil.example.com"),
            make_url("http://x.example/a"),
            make_file(
                name="a.exe", hashes={"md5": "d41d8cd98f00b204e9800998ecf8427f"}, path="C:\\Windows\\a.exe"
            ),
            make_process(pid=4, command_line="cmd.exe /c x", parent=parent, image=make_file(name="cmd.exe")),
            make_mac("AA-BB-CC-DD-EE-FF"),
            make_user_agent("curl/8"),
            make_asn(64500),
            make_registry_key("HKLM\\Software\\x", (RegistryValue("v", "d", "REG_SZ"),)),
            NetworkTraffic(make_ip("10.0.0.1"), make_ip("10.0.0.2"), 1, 443, ("tcp",)),
            EmailMessage(subject="hi", sender=make_email("a@b.example"), to=(make_email("c@d.example"),)),
            Software("Office", "16"),
        ],
        techniques=[Technique("T1059.001", "PowerShell", ("Execution",))],
        links=[Link("Elastic Security", "https://kibana.example/alerts/a1", "a1")],
        tags=["t1", "t1", " "],
    )


@pytest.fixture
def builder() -> StixBuilder:
    return StixBuilder(author_name="ctibridge", tlp=Tlp.AMBER)


def test_alert_bundle_is_valid_stix(builder: StixBuilder) -> None:
    built = builder.alert(full_alert())
    assert_valid_bundle(make_bundle(builder.preamble() + built.objects))


def test_alert_objects_and_links(builder: StixBuilder) -> None:
    built = builder.alert(full_alert())
    by_type: dict[str, list[dict]] = {}
    for obj in built.objects:
        by_type.setdefault(obj["type"], []).append(obj)
    incident = by_type["incident"][0]
    assert incident["id"] == built.id
    assert incident["severity"] == "high"
    assert incident["labels"] == ["t1"]
    assert incident["external_references"][0]["external_id"] == "a1"
    assert incident["object_marking_refs"] == [Tlp.AMBER.marking_id]
    rels = {
        (r["relationship_type"], r["source_ref"].split("--")[0], r["target_ref"].split("--")[0])
        for r in by_type["relationship"]
    }
    assert ("targets", "incident", "identity") in rels
    assert ("uses", "incident", "attack-pattern") in rels
    assert ("related-to", "ipv6-addr", "incident") in rels
    assert ("related-to", "hostname", "identity") in rels
    processes = by_type["process"]
    child = next(p for p in processes if p.get("pid") == 4)
    parent = next(p for p in processes if p.get("pid") == 1)
    assert child["parent_ref"] == parent["id"]
    assert len({o["id"] for o in built.objects}) == len(built.objects), "no duplicate objects"


def test_every_reference_resolves_inside_the_group(builder: StixBuilder) -> None:
    objects = builder.preamble() + builder.alert(full_alert()).objects
    known = {o["id"] for o in objects}
    for obj in objects:
        for key, value in obj.items():
            refs = value if key.endswith("_refs") else [value] if key.endswith("_ref") else []
            for ref in refs:
                assert ref in known or ref.startswith("marking-definition--"), (obj["type"], key, ref)


def test_case_bundle_with_notes_is_valid(builder: StixBuilder) -> None:
    case = Case(
        source="Elastic Security",
        id="c1",
        name="Ransomware case",
        created=T0,
        severity=Severity.CRITICAL,
        comments=[Comment("First look: encrypted shares", T0, "analyst"), Comment("   ", T0)],
        alerts=[full_alert("a1")],
        observables=[make_ip("203.0.113.5")],
        links=[Link("Elastic Security", "https://kibana.example/cases/c1", "c1")],
    )
    built = builder.case(case)
    case_obj = built.objects[0]
    assert case_obj["type"] == "case-incident"
    assert case_obj["priority"] == "P1"
    notes = [o for o in built.objects if o["type"] == "note"]
    assert len(notes) == 1 and notes[0]["object_refs"] == [case_obj["id"]]
    assert builder.alert(full_alert("a1")).id in case_obj["object_refs"]
    assert_valid_bundle(make_bundle(builder.preamble() + built.objects))


def test_other_sdos_are_valid(builder: StixBuilder) -> None:
    ip = builder.observable(make_ip("198.51.100.1"))
    system = builder.system("wazuh-agent-1")
    objects = [
        *builder.preamble(),
        *ip.objects,
        system,
        builder.sighting(
            sighting_of_ref=ip.id, where_sighted_ref=system["id"], first_seen=T0, last_seen=T0, count=3
        ),
        builder.vulnerability("CVE-2024-3094", "xz backdoor", 10.0),
        builder.malware("Emotet"),
        builder.indicator(pattern="[ipv4-addr:value = '198.51.100.1']", name="198.51.100.1", valid_from=T0),
        builder.note(
            content="summary", created=T0, object_refs=[ip.id], abstract="Summary", note_types=["analysis"]
        ),
    ]
    assert_valid_bundle(make_bundle(objects))


def test_validation_catches_a_broken_object(builder: StixBuilder) -> None:
    incident = builder.incident(name="x", created=T0)
    incident["created"] = "yesterday"
    assert findings(make_bundle([*builder.preamble(), incident]))


@pytest.mark.parametrize("tlp", list(Tlp))
def test_tlp_is_configurable(tlp: Tlp) -> None:
    builder = StixBuilder(author_name="a", tlp=tlp)
    incident = builder.incident(name="x", created=T0)
    assert incident["object_marking_refs"] == [tlp.marking_id]
    assert builder.preamble()[1]["id"] == tlp.marking_id
    assert_valid_bundle(make_bundle([*builder.preamble(), incident]))


def test_every_authored_object_carries_the_markings_set_after_construction() -> None:
    # The Wazuh mapper marks with several TLPs by setting marking_refs on its builder.
    builder = StixBuilder(author_name="a", tlp=Tlp.AMBER)
    builder.marking_refs = [Tlp.GREEN.marking_id, Tlp.AMBER.marking_id]
    objects = builder.alert(full_alert()).objects
    authored = [o for o in objects if "created_by_ref" in o or "x_opencti_created_by_ref" in o]
    assert {o["type"] for o in authored} >= {"incident", "relationship", "identity", "process"}
    assert all(o["object_marking_refs"] == builder.marking_refs for o in authored)
    timed = builder.relationship("related-to", objects[0]["id"], objects[1]["id"], start_time=T0)
    assert timed["object_marking_refs"] == builder.marking_refs


def test_chunks_are_bounded_and_keep_groups_whole(builder: StixBuilder) -> None:
    groups = [builder.alert(full_alert(f"a{i}")).objects for i in range(30)]
    size = max(len(g) for g in groups) + 10
    chunks = list(chunk_groups(groups, preamble=builder.preamble(), max_objects=size))
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= size
        ids = {o["id"] for o in chunk}
        assert builder.author_id in ids
        for obj in chunk:  # every in-bundle reference resolves within its chunk
            for ref in [*obj.get("object_refs", []), obj.get("source_ref"), obj.get("target_ref")]:
                if ref:
                    assert ref in ids
    delivered = {o["id"] for chunk in chunks for o in chunk}
    assert delivered == {o["id"] for g in groups for o in g} | {o["id"] for o in builder.preamble()}


def test_siem_statuses_become_opencti_workflow_ids_where_mapped(builder: StixBuilder) -> None:
    alert = full_alert()
    assert "x_opencti_workflow_id" not in builder.alert(alert).objects[0]  # offline: no workflow
    builder.workflow_ids = {
        "incident": {"open": "status-new", "closed": "status-closed"},
        "case-incident": {"in-progress": "status-progress"},
    }
    alert.status = "Closed"
    assert builder.alert(alert).objects[0]["x_opencti_workflow_id"] == "status-closed"
    alert.status = "acknowledged"  # not mapped: the incident keeps whatever OpenCTI gave it
    assert "x_opencti_workflow_id" not in builder.alert(alert).objects[0]
    alert.status = ["open"]  # type: ignore[assignment]  # a malformed document: no status, no crash
    assert "x_opencti_workflow_id" not in builder.alert(alert).objects[0]
    alert.status = "open"
    case = Case(source="Elastic Security", id="c1", name="Case", created=T0, status="in-progress",
                alerts=[alert])  # fmt: skip
    built = builder.case(case)
    assert built.objects[0]["x_opencti_workflow_id"] == "status-progress"
    incident = next(o for o in built.objects if o["type"] == "incident")
    assert incident["x_opencti_workflow_id"] == "status-new"
    assert_valid_bundle(make_bundle(builder.preamble() + built.objects))
