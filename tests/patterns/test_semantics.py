"""Decisions made once for all languages (lowering): negation, IPs, transforms, qualifiers."""

from __future__ import annotations

import pytest

from ctibridge.patterns import FieldMap, Untranslatable, parse_stix, translate
from ctibridge.patterns.fieldmap import TargetField
from ctibridge.patterns.lowering import (
    MAX_SEQUENCE_STEPS,
    All,
    AnyOf,
    Cidr,
    Equals,
    Exists,
    Not,
    Sequence,
    Wildcard,
    lower,
)
from ctibridge.patterns.regex import ANY_CHARS

MAP = FieldMap.from_data(
    {
        "timestamp_field": "ts",
        "types": {"ip": ["ip"], "date": ["ts"]},
        "fields": {
            "ipv4-addr:value": ["ip", "ip_text"],
            "ipv6-addr:value": ["ip", "ip_text"],
            "file:name": ["name", "path|basename"],
            "windows-registry-key:key": ["key|hive_aliases"],
            "file:hashes.MD5": ["md5|lowercase"],
            "x509-certificate:hashes.'SHA-1'": ["sha1|uppercase"],
            "mac-addr:value": ["mac|mac_dashes"],
            "url:value": ["url"],
        },
    },
    name="semantics",
)
IP = TargetField("ip", "ip")
IP_TEXT = TargetField("ip_text")
NAME = TargetField("name")
PATH = TargetField("path", transform="basename")
URL = TargetField("url")


def lowered(pattern: str, field_map: FieldMap = MAP) -> object:
    return lower(parse_stix(pattern), field_map)


def test_negation_requires_the_property_per_field() -> None:
    assert lowered("[url:value != 'x']") == All((Exists(URL), Not(Equals(URL, ("x",)))))
    assert lowered("[file:name NOT IN ('a', 'b')]") == AnyOf(
        (
            All((Exists(NAME), Not(Equals(NAME, ("a", "b"))))),
            All(
                (
                    Exists(PATH),
                    Not(
                        AnyOf(
                            (
                                Equals(PATH, ("a", "b")),
                                Wildcard(PATH, (ANY_CHARS, "\\a")),
                                Wildcard(PATH, (ANY_CHARS, "/a")),
                                Wildcard(PATH, (ANY_CHARS, "\\b")),
                                Wildcard(PATH, (ANY_CHARS, "/b")),
                            )
                        )
                    ),
                )
            ),
        )
    )


def test_not_exists_means_no_mapped_field_holds_the_property() -> None:
    assert lowered("[NOT EXISTS url:value]") == Not(Exists(URL))


def test_cidr_values_on_ip_and_keyword_fields() -> None:
    assert lowered("[ipv4-addr:value = '10.1.0.0/16']") == AnyOf(
        (Cidr(IP, "10.1.0.0/16"), Wildcard(IP_TEXT, ("10.1.", ANY_CHARS)))
    )
    assert lowered("[ipv4-addr:value ISSUBSET '10.1.2.3/32']") == AnyOf(
        (Equals(IP, ("10.1.2.3",)), Equals(IP_TEXT, ("10.1.2.3",)))
    )
    assert lowered("[ipv4-addr:value IN ('10.0.0.1', '10.9.0.0/16')]") == AnyOf(
        (
            Equals(IP, ("10.0.0.1",)),
            Cidr(IP, "10.9.0.0/16"),
            Equals(IP_TEXT, ("10.0.0.1",)),
            Wildcard(IP_TEXT, ("10.9.", ANY_CHARS)),
        )
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[ipv4-addr:value ISSUBSET '10.16.0.0/12']", "only IPv4 prefixes of whole octets"),
        ("[ipv6-addr:value ISSUBSET '2001:db8::/32']", "only IPv4 prefixes of whole octets"),
        ("[ipv4-addr:value ISSUBSET '0.0.0.0/0']", "only IPv4 prefixes of whole octets"),
        ("[ipv4-addr:value ISSUPERSET '10.0.0.0/8']", "event fields hold single addresses"),
        ("[url:value ISSUBSET 'example.com']", "ISSUBSET needs an IP address or CIDR"),
        ("[ipv4-addr:value = 'example.com']", "needs an IP address or CIDR for ip field ip"),
        ("[ipv4-addr:value LIKE '10.%']", "LIKE cannot be applied to ip field ip"),
        ("[url:value IN ()]", "IN () matches nothing"),
    ],
)
def test_ip_and_value_checks(pattern: str, reason: str) -> None:
    with pytest.raises(Untranslatable, match=reason.replace("(", r"\(").replace(")", r"\)")):
        lowered(pattern)


def test_transforms() -> None:
    assert translate(
        "[file:hashes.MD5 = 'D41D8CD98F00B204E9800998ECF8427E']", target="kql", field_map=MAP
    ) == ('md5: "d41d8cd98f00b204e9800998ecf8427e"')
    sha1 = "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
    assert translate(f"[x509-certificate:hashes.'SHA-1' = '{sha1}']", target="kql", field_map=MAP) == (
        f'sha1: "{sha1.upper()}"'
    )
    assert translate("[mac-addr:value = '00:00:5e:00:53:af']", target="kql", field_map=MAP) == (
        'mac: "00-00-5E-00-53-AF"'
    )
    assert translate("[windows-registry-key:key = 'HKLM\\\\Run']", target="kql", field_map=MAP) == (
        'key: ("HKLM\\\\Run" or "HKEY_LOCAL_MACHINE\\\\Run")'
    )
    assert translate(
        "[windows-registry-key:key LIKE 'hkey_users\\\\%\\\\Run']", target="lucene", field_map=MAP
    ) == ("key:hkey?users\\\\*\\\\Run OR key:HKU\\\\*\\\\Run")
    assert translate("[windows-registry-key:key LIKE 'HKLM\\\\%']", target="kql", field_map=MAP) == (
        "key: HKLM\\\\* or key: HKEY_LOCAL_MACHINE\\\\*"
    )
    assert translate("[windows-registry-key:key = 'Software\\\\x']", target="kql", field_map=MAP) == (
        'key: "Software\\\\x"'
    )


def test_basename_fields_reject_patterns_they_cannot_make_exact() -> None:
    for pattern in ("[file:name LIKE 'a%']", "[file:name MATCHES 'a']", "[file:name > 'a']"):
        with pytest.raises(Untranslatable, match="holds full paths"):
            lowered(pattern)


def test_within_on_one_event_always_holds_and_nested_spans_keep_the_tightest() -> None:
    assert lowered("[url:value = 'a'] WITHIN 5 SECONDS") == Equals(URL, ("a",))
    sequence = lowered("(([url:value = 'a'] FOLLOWEDBY [url:value = 'b']) WITHIN 9 SECONDS) WITHIN 4 SECONDS")
    assert isinstance(sequence, Sequence) and sequence.maxspan == 4


def test_repeats_expand_into_sequence_steps_up_to_the_limit() -> None:
    assert lowered("[url:value = 'a'] REPEATS 1 TIMES") == Equals(URL, ("a",))
    three = lowered("[url:value = 'a'] REPEATS 3 TIMES")
    assert isinstance(three, Sequence) and three.steps == (Equals(URL, ("a",)),) * 3
    with pytest.raises(Untranslatable, match="exceeds"):
        lowered(f"[url:value = 'a'] REPEATS {MAX_SEQUENCE_STEPS + 1} TIMES")


def test_start_stop_applies_to_every_sequence_step() -> None:
    sequence = lowered(
        "([url:value = 'a'] FOLLOWEDBY [url:value = 'b']) "
        "START t'2020-01-01T00:00:00Z' STOP t'2020-02-01T00:00:00Z'"
    )
    assert isinstance(sequence, Sequence)
    assert all(isinstance(step, All) and len(step.operands) == 3 for step in sequence.steps)


def test_start_stop_needs_a_timestamp_field() -> None:
    no_time = FieldMap.from_data({"fields": {"url:value": ["url"]}})
    with pytest.raises(Untranslatable, match="no timestamp field"):
        lowered("[url:value = 'a'] START t'2020-01-01T00:00:00Z' STOP t'2020-02-01T00:00:00Z'", no_time)


def test_within_inside_a_followedby_chain_is_rejected() -> None:
    with pytest.raises(Untranslatable, match="WITHIN on part of a FOLLOWEDBY chain"):
        lowered(
            "([url:value = 'a'] FOLLOWEDBY [url:value = 'b']) WITHIN 5 SECONDS FOLLOWEDBY [url:value = 'c']"
        )


def test_lowering_is_cached_per_pattern_and_map() -> None:
    pattern = parse_stix("[url:value = 'cache me']")
    assert lower(pattern, MAP) is lower(pattern, MAP)
