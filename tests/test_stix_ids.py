"""Golden ids: what we emit must be what pycti (and so OpenCTI) computes, or reruns duplicate."""

from __future__ import annotations

from datetime import UTC, datetime

import pycti
import pytest
import stix2
from pycti.utils.constants import CustomObservableHostname, CustomObservableUserAgent

from ctibridge.model import Technique
from ctibridge.model.observables import (
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
    make_registry_key,
    make_url,
    make_user,
    make_user_agent,
)
from ctibridge.stix import StixBuilder, Tlp
from ctibridge.stix.ids import format_time

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def builder() -> StixBuilder:
    return StixBuilder(author_name="ctibridge", tlp=Tlp.AMBER)


def test_fact_sheet_vectors(builder: StixBuilder) -> None:
    assert builder.system("Wazuh")["id"] == "identity--6384d70e-3e7e-5ea0-90a1-a9f589a60d30"
    assert builder.incident(name="Test incident", created=T0)["id"] == (
        "incident--3758c137-51a6-5064-a0c9-ade15633cbdc"
    )
    assert builder.indicator(pattern="[ipv4-addr:value = '216.59.38.123']", name="x", valid_from=T0)[
        "id"
    ] == ("indicator--c721b81a-6c3c-55ab-9bf3-038642e8add8")
    assert (
        builder.observable(make_ip("216.59.38.123")).id == "ipv4-addr--06ef1f7c-c9f7-536e-abcf-d02ad807426e"
    )


def test_created_is_hashed_as_emitted(builder: StixBuilder) -> None:
    incident = builder.incident(name="Rule A", created=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
    assert incident["created"] == "2024-05-06T07:08:09.123Z"
    assert incident["id"] == pycti.Incident.generate_id("Rule A", "2024-05-06T07:08:09.123Z")


@pytest.mark.parametrize("name", ["Brute force on web-1", "  Mixed CASE name  ", "unicodé ✓"])
def test_sdo_ids_equal_pycti(builder: StixBuilder, name: str) -> None:
    created = format_time(T0)
    assert builder.incident(name=name, created=T0)["id"] == pycti.Incident.generate_id(name, created)
    assert builder.case_incident(name=name, created=T0)["id"] == pycti.CaseIncident.generate_id(name, created)
    assert builder.identity(name, "organization")["id"] == pycti.Identity.generate_id(name, "organization")
    assert builder.system(name)["id"] == pycti.Identity.generate_id(name, "system")
    assert builder.vulnerability(name)["id"] == pycti.Vulnerability.generate_id(name)
    assert builder.malware(name)["id"] == pycti.Malware.generate_id(name)
    note = builder.note(content=name, created=T0, object_refs=["incident--x"], abstract="Summary")
    assert note["id"] == pycti.Note.generate_id(created, name, "Summary")


def test_author_id_matches_its_own_name_and_class() -> None:
    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.GREEN)
    assert builder.author["id"] == pycti.Identity.generate_id("Elastic Security", "organization")
    assert builder.author["identity_class"] == "organization"


@pytest.mark.parametrize("mitre_id", ["T1059", "T1059.001", "t1110.003"])
def test_attack_pattern_ids_equal_pycti(builder: StixBuilder, mitre_id: str) -> None:
    pattern = builder.attack_pattern(Technique(mitre_id, "Some technique"))
    assert pattern["id"] == pycti.AttackPattern.generate_id("Some technique", mitre_id)
    assert pattern["x_mitre_id"] == mitre_id.upper()


def test_attack_pattern_vector_from_fact_sheet(builder: StixBuilder) -> None:
    assert (
        builder.attack_pattern(Technique("T1059"))["id"]
        == "attack-pattern--2564d78f-c102-5432-99eb-c6bb50177e94"
    )


def test_relationship_and_sighting_ids_equal_pycti(builder: StixBuilder) -> None:
    rel = builder.relationship("related-to", "ipv4-addr--a", "incident--b")
    assert rel["id"] == pycti.StixCoreRelationship.generate_id("related-to", "ipv4-addr--a", "incident--b")
    timed = builder.relationship("uses", "incident--b", "attack-pattern--c", start_time=T0)
    assert timed["id"] == pycti.StixCoreRelationship.generate_id(
        "uses", "incident--b", "attack-pattern--c", format_time(T0)
    )
    sighting = builder.sighting(
        sighting_of_ref="indicator--1", where_sighted_ref="identity--2", first_seen=T0, last_seen=T0, count=2
    )
    assert sighting["id"] == pycti.StixSightingRelationship.generate_id("indicator--1", ["identity--2"])


def test_sighting_id_is_stable_while_counts_move(builder: StixBuilder) -> None:
    first = builder.sighting(
        sighting_of_ref="ipv4-addr--1", where_sighted_ref="identity--2", first_seen=T0, last_seen=T0, count=1
    )
    later = builder.sighting(
        sighting_of_ref="ipv4-addr--1",
        where_sighted_ref="identity--2",
        first_seen=T0,
        last_seen=datetime(2024, 2, 1, tzinfo=UTC),
        count=9,
    )
    assert first["id"] == later["id"]
    assert later["x_opencti_sighting_of_ref"] == "ipv4-addr--1"
    assert later["sighting_of_ref"].startswith("indicator--")


OBSERVABLE_CASES = [
    (make_ip("10.1.2.3"), stix2.IPv4Address(value="10.1.2.3")),
    (make_ip("10.0.0.0/8"), stix2.IPv4Address(value="10.0.0.0/8")),
    (make_ip("2001:db8::1"), stix2.IPv6Address(value="2001:db8::1")),
    (make_domain("Evil.Example.COM."), stix2.DomainName(value="evil.example.com")),
    (make_url("https://x.example/a?b=c"), stix2.URL(value="https://x.example/a?b=c")),
    (make_email("Bob@Example.org"), stix2.EmailAddress(value="bob@example.org")),
    (make_mac("AA-BB-CC-DD-EE-FF"), stix2.MACAddress(value="aa:bb:cc:dd:ee:ff")),
    (make_asn("AS64500"), stix2.AutonomousSystem(number=64500)),
    (
        make_user(login="bob", user_id="S-1-5-21-1"),
        stix2.UserAccount(account_login="bob", user_id="S-1-5-21-1"),
    ),
    (
        make_file(name="a.exe", hashes={"sha256": "ab" * 32, "md5": "cd" * 16}),
        stix2.File(name="a.exe", hashes={"SHA-256": "ab" * 32, "MD5": "cd" * 16}),
    ),
    (make_file(hashes={"SHA1": "ef" * 20}), stix2.File(hashes={"SHA-1": "ef" * 20})),
    (
        make_registry_key("HKLM\\Software\\Run", (RegistryValue("evil", "c:\\x.exe", "REG_SZ"),)),
        stix2.WindowsRegistryKey(
            key="HKEY_LOCAL_MACHINE\\Software\\Run",
            values=[{"name": "evil", "data": "c:\\x.exe", "data_type": "REG_SZ"}],
        ),
    ),
    (
        Software("Office", "16.0", "Microsoft"),
        stix2.Software(name="Office", version="16.0", vendor="Microsoft"),
    ),
    (make_hostname("WEB-01"), CustomObservableHostname(value="web-01")),
    (make_user_agent("curl/8.0"), CustomObservableUserAgent(value="curl/8.0")),
]


@pytest.mark.parametrize(("observable", "reference"), OBSERVABLE_CASES, ids=lambda v: type(v).__name__)
def test_observable_ids_equal_stix2(builder: StixBuilder, observable: object, reference: object) -> None:
    assert builder.observable(observable).id == reference.id  # type: ignore[arg-type, attr-defined]


def test_nested_refs_take_part_in_ids(builder: StixBuilder) -> None:
    file = make_file(path="C:\\Windows\\evil.exe")
    built = builder.observable(file)
    directory = built.objects[1]
    assert directory["path"] == "C:\\Windows"
    reference = stix2.File(name="evil.exe", parent_directory_ref=stix2.Directory(path="C:\\Windows").id)
    assert built.id == reference.id

    traffic = NetworkTraffic(make_ip("10.0.0.1"), make_ip("10.0.0.2"), 1234, 443, ("tcp",))
    built = builder.observable(traffic)
    reference_nt = stix2.NetworkTraffic(
        src_ref=stix2.IPv4Address(value="10.0.0.1").id,
        dst_ref=stix2.IPv4Address(value="10.0.0.2").id,
        src_port=1234,
        dst_port=443,
        protocols=["tcp"],
    )
    assert built.id == reference_nt.id


def test_process_ids_are_deterministic_uuid4(builder: StixBuilder) -> None:
    from ctibridge.model.observables import make_process

    one = builder.observable(make_process(pid=42, command_line="cmd.exe /c whoami")).id
    two = builder.observable(make_process(pid=42, command_line="cmd.exe /c whoami")).id
    other = builder.observable(make_process(pid=43, command_line="cmd.exe /c whoami")).id
    assert one == two != other
    assert one.split("--")[1][14] == "4"


# ----------------------------------------------------------------- the fast canonical form is exact

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from stix2.canonicalization.Canonicalize import canonicalize  # noqa: E402

from ctibridge.stix.ids import canonical_json, relationship_id, sco_id  # noqa: E402

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_json_values = st.recursive(
    st.one_of(_text, st.integers(-(2**53), 2**53)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_text, _json_values, max_size=6))
def test_canonical_json_equals_rfc8785_reference(data: dict) -> None:
    assert canonical_json(data) == canonicalize(data, utf8=False)


@settings(max_examples=200, deadline=None)
@given(
    _text,
    _text,
    _text,
    st.none() | st.just("2024-01-01T00:00:00.000Z"),
    st.none() | st.just("2024-02-01T00:00:00.000Z"),
)
def test_relationship_id_equals_pycti(
    rel_type: str, source: str, target: str, start: str | None, stop: str | None
) -> None:
    assert relationship_id(rel_type, source, target, start, stop) == pycti.StixCoreRelationship.generate_id(
        rel_type, source, target, start, stop
    )


@settings(max_examples=200, deadline=None)
@given(_text.filter(bool))
def test_sco_ids_equal_stix2_for_any_text(value: str) -> None:
    assert sco_id("url", {"value": value}) == stix2.URL(value=value).id
    assert sco_id("user-account", {"account_login": value}) == stix2.UserAccount(account_login=value).id


@settings(max_examples=200, deadline=None)
@given(
    _text.filter(bool),
    st.sampled_from(["MD5", "SHA-1", "SHA-256", "SHA-512", "x-custom"]),
    _text.filter(bool),
)
def test_file_ids_with_a_hash_equal_stix2_for_any_text(name: str, algorithm: str, digest: str) -> None:
    # The reference scheme as stix2 computes it (uuid5 over the JCS text), without its hash validation.
    import uuid

    from stix2.base import SCO_DET_ID_NAMESPACE

    data = {"name": name, "hashes": {algorithm: digest}}
    reference = f"file--{uuid.uuid5(SCO_DET_ID_NAMESPACE, canonicalize(data, utf8=False))}"
    assert sco_id("file", data) == reference


def test_floats_and_bools_fall_back_to_the_reference() -> None:
    data = {"a": 1.5, "b": True, "c": 1e21}
    assert canonical_json(data) == canonicalize(data, utf8=False)


@settings(max_examples=300, deadline=None)
@given(_text, _text, st.none() | _text)
def test_sdo_ids_on_the_alert_path_equal_pycti_for_any_text(name: str, other: str, mitre: str | None) -> None:
    from ctibridge.stix import ids

    assert ids.incident_id(name, other) == pycti.Incident.generate_id(name, other)
    assert ids.case_incident_id(name, other) == pycti.CaseIncident.generate_id(name, other)
    assert ids.identity_id(name, other) == pycti.Identity.generate_id(name, other)
    assert ids.attack_pattern_id(name, mitre) == pycti.AttackPattern.generate_id(name, mitre)


def test_sdo_ids_with_datetimes_still_follow_pycti() -> None:
    from ctibridge.stix import ids

    created = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert ids.incident_id("x", created) == pycti.Incident.generate_id("x", created)  # type: ignore[arg-type]


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_are_rfc3339_with_milliseconds_and_four_digit_years(moment: datetime) -> None:
    text = format_time(moment)
    assert len(text) == 24 and text.endswith("Z")
    assert datetime.fromisoformat(text[:-1] + "+00:00") == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
    if moment.year >= 1000:
        assert text == moment.isoformat(timespec="milliseconds")[:23] + "Z"
    else:  # strftime would print "99-...", which is no RFC 3339 timestamp
        assert text.startswith(f"{moment.year:04d}-")
