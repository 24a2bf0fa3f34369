"""ECS threat-indicator documents: mapping goldens, compound patterns, TLP, confidence, expiry, ECS check."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.patterns import atomic_values, parse_stix
from ctibridge.patterns.ast import quote_string
from ctibridge.siem.elastic import rules
from ctibridge.siem.elastic.indicators import (
    EVENT_DATASET,
    EVENT_MODULE,
    INDEX_MAPPINGS,
    IndicatorDocuments,
    confidence_band,
    index_template,
    iter_fields,
    simple_atoms,
)
from ctibridge.stix.markings import Tlp
from tests.fixtures.opencti_indicators import AUTHOR, bundle, indicator, observable, stix_pattern
from tests.support.stix_validation import assert_valid_bundle

ECS_FIELDS = Path(__file__).resolve().parent.parent / "vendor" / "ecs" / "ecs_flat-v9.4.0.yml"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5 = "098f6bcd4621d373cade4e832627b4f6"


@cache
def ecs() -> dict[str, Any]:
    return yaml.load(ECS_FIELDS.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)  # type: ignore[no-any-return]


def documents(**options: Any) -> IndicatorDocuments:
    return IndicatorDocuments(opencti_url="https://opencti.example", **options)


def only_document(obj: dict[str, Any], **options: Any) -> dict[str, Any]:
    plan = documents(**options).plan(obj, NOW)
    assert plan is not None and plan.dead_reason is None
    [(doc_id, source)] = plan.documents
    assert doc_id == obj["id"]
    return source


def value_fields(source: dict[str, Any]) -> dict[str, Any]:
    """threat.indicator minus what every document has: the typed value and its type."""
    common = {"id", "confidence", "marking", "name", "description", "first_seen", "last_seen", "modified_at"}
    return {
        k: v for k, v in source["threat"]["indicator"].items() if k not in common | {"provider", "reference"}
    }


# ---------------------------------------------------------------------------- goldens per observable

OBSERVABLE_GOLDENS = [
    (observable("ipv4-addr", value="198.51.100.7"), {"type": "ipv4-addr", "ip": "198.51.100.7"}),
    (observable("ipv4-addr", value="198.51.100.7/32"), {"type": "ipv4-addr", "ip": "198.51.100.7"}),
    (observable("ipv6-addr", value="2001:db8::1"), {"type": "ipv6-addr", "ip": "2001:db8::1"}),
    (
        observable("domain-name", value="Evil.Example.COM."),
        {"type": "domain-name", "url": {"domain": "evil.example.com"}},
    ),
    (
        observable("hostname", value="srv01.corp.example"),
        {"type": "domain-name", "url": {"domain": "srv01.corp.example"}},
    ),
    (
        observable("url", value="HTTPS://bad.example.org:8443/dl/x.exe?id=1#top"),
        {
            "type": "url",
            "url": {
                "full": "HTTPS://bad.example.org:8443/dl/x.exe?id=1#top",
                "original": "HTTPS://bad.example.org:8443/dl/x.exe?id=1#top",
                "scheme": "https",
                "domain": "bad.example.org",
                "port": 8443,
                "path": "/dl/x.exe",
                "query": "id=1",
                "fragment": "top",
            },
        },
    ),
    (
        observable("email-addr", value="phish@example.com"),
        {"type": "email-addr", "email": {"address": "phish@example.com"}},
    ),
    (
        observable(
            "file",
            hashes={"SHA-256": SHA256.upper(), "MD5": MD5, "SHA3-256": "ab" * 32},
            name="x.exe",
            size=1024,
        ),
        {"type": "file", "file": {"hash": {"sha256": SHA256, "md5": MD5}, "name": "x.exe", "size": 1024}},
    ),
    (
        observable("directory", path="C:\\Users\\Public"),
        {"type": "directory", "file": {"path": "C:\\Users\\Public"}},
    ),
    (
        observable("windows-registry-key", key="HKEY_LOCAL_MACHINE\\Software\\Run\\evil"),
        {
            "type": "windows-registry-key",
            "registry": {
                "path": "HKEY_LOCAL_MACHINE\\Software\\Run\\evil",
                "hive": "HKLM",
                "key": "Software\\Run\\evil",
            },
        },
    ),
    (
        observable("autonomous-system", number=64500, name="Example Transit"),
        {"type": "autonomous-system", "as": {"number": 64500, "organization": {"name": "Example Transit"}}},
    ),
    (
        observable(
            "x509-certificate",
            serial_number="36:f7:d4:32:f4:ab:70:ea:d3:ce:98:6e:ea:99:93:49:32:0a:b7:06",
            issuer="C=US, O=Example CA",
            subject="CN=bad.example.org",
            validity_not_before="2026-01-01T00:00:00Z",
            validity_not_after="2027-01-01T00:00:00Z",
        ),
        {
            "type": "x509-certificate",
            "x509": {
                "serial_number": "36:f7:d4:32:f4:ab:70:ea:d3:ce:98:6e:ea:99:93:49:32:0a:b7:06",
                "issuer": {"distinguished_name": "C=US, O=Example CA"},
                "subject": {"distinguished_name": "CN=bad.example.org"},
                "not_before": "2026-01-01T00:00:00.000Z",
                "not_after": "2027-01-01T00:00:00.000Z",
            },
        },
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected"), OBSERVABLE_GOLDENS, ids=lambda v: v["type"] if "id" in v else ""
)
def test_observable_documents_hold_typed_ecs_values(obj: dict[str, Any], expected: dict[str, Any]) -> None:
    source = only_document(obj)
    assert value_fields(source) == expected
    indicator_part = source["threat"]["indicator"]
    assert indicator_part["id"] == [obj["id"]]
    assert indicator_part["confidence"] == "Medium"  # score 60
    assert indicator_part["marking"] == {"tlp": "GREEN", "tlp_version": "2.0"}
    assert (
        indicator_part["reference"]
        == f"https://opencti.example/dashboard/observations/observables/{obj['id']}"
    )
    assert source["opencti"]["stix_id"] == obj["id"] and source["opencti"]["score"] == 60


@pytest.mark.parametrize(
    "obj",
    [
        observable("ipv4-addr", value="10.0.0.0/24"),  # a range: ECS `ip` holds addresses only
        observable("ipv4-addr", value="not-an-ip"),
        observable("mac-addr", value="00:11:22:33:44:55"),  # no threat.indicator field for it
        observable("file", hashes={"SHA-256": "abc"}),  # not a SHA-256
        observable("email-addr", value="no-at-sign"),
    ],
    ids=["cidr", "bad-ip", "mac", "short-hash", "bad-email"],
)
def test_observables_without_a_value_ecs_can_hold_have_no_document(obj: dict[str, Any]) -> None:
    plan = documents().plan(obj, NOW)
    assert plan is None or (plan.documents == [] and plan.ids == [])


# ---------------------------------------------------------------------------- indicators and patterns

PATTERN_GOLDENS = [
    (stix_pattern("ipv4-addr", "value", "203.0.113.9"), [{"type": "ipv4-addr", "ip": "203.0.113.9"}]),
    (stix_pattern("file", "hashes.MD5", MD5.upper()), [{"type": "file", "file": {"hash": {"md5": MD5}}}]),
    (
        stix_pattern("file", "hashes.'SHA-256'", SHA256),
        [{"type": "file", "file": {"hash": {"sha256": SHA256}}}],
    ),
    (stix_pattern("file", "name", "it's a\\b.exe"), [{"type": "file", "file": {"name": "it's a\\b.exe"}}]),
    (
        stix_pattern("email-message", "from_ref.value", "a@example.com"),
        [{"type": "email-addr", "email": {"address": "a@example.com"}}],
    ),
    (
        stix_pattern("windows-registry-key", "key", "HKEY_CURRENT_USER\\Run"),
        [
            {
                "type": "windows-registry-key",
                "registry": {"path": "HKEY_CURRENT_USER\\Run", "hive": "HKCU", "key": "Run"},
            }
        ],
    ),
    ("[autonomous-system:number = 64501]", [{"type": "autonomous-system", "as": {"number": 64501}}]),
    (
        "[network-traffic:dst_ref.value = '198.51.100.2' AND network-traffic:dst_port = 4444]",
        [{"type": "ipv4-addr", "ip": "198.51.100.2"}, {"type": "port", "port": 4444}],
    ),
    (
        "[domain-name:value IN ('a.example', 'b.example')]",
        [
            {"type": "domain-name", "url": {"domain": "a.example"}},
            {"type": "domain-name", "url": {"domain": "b.example"}},
        ],
    ),
]


@pytest.mark.parametrize(("pattern", "expected"), PATTERN_GOLDENS)
def test_pattern_values_become_typed_documents(pattern: str, expected: list[dict[str, Any]]) -> None:
    obj = indicator(pattern)
    plan = documents().plan(obj, NOW)
    assert plan is not None and plan.dead_reason is None
    assert [value_fields(source) for _, source in plan.documents] == expected
    assert [doc_id for doc_id, _ in plan.documents] == [obj["id"]] + [
        f"{obj['id']}:{n}" for n in range(1, len(expected))
    ]


def test_compound_pattern_gives_one_document_per_value_tied_to_the_indicator() -> None:
    pattern = (
        f"([ipv4-addr:value = '198.51.100.1'] OR [ipv4-addr:value = '10.0.0.0/8'] OR "
        f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'drop.exe']) FOLLOWEDBY "
        "[url:value = 'http://c2.example/x'] WITHIN 600 SECONDS"
    )
    obj = indicator(pattern, name="Campaign X", labels=["apt", "c2"])
    plan = documents().plan(obj, NOW)
    assert plan is not None
    kinds = [source["threat"]["indicator"]["type"] for _, source in plan.documents]
    assert kinds == ["ipv4-addr", "file", "file", "url"]  # the /8 range has no document
    assert plan.ids == [obj["id"], f"{obj['id']}:1", f"{obj['id']}:2", f"{obj['id']}:3"]
    for _, source in plan.documents:
        assert source["threat"]["indicator"]["id"] == [obj["id"]]
        assert source["threat"]["indicator"]["name"] == "Campaign X"
        assert source["opencti"]["stix_id"] == obj["id"] and source["opencti"]["pattern"] == pattern
        assert source["opencti"]["labels"] == ["apt", "c2"] and source["tags"] == ["apt", "c2"]
    assert plan.skipped == ["ipv4-addr:value '10.0.0.0/8': no ECS indicator form"]


def test_repeated_values_give_one_document() -> None:
    plan = documents().plan(
        indicator("[ipv4-addr:value = '192.0.2.1'] OR [ipv4-addr:value = '192.0.2.1']"), NOW
    )
    assert plan is not None and len(plan.documents) == 1


@pytest.mark.parametrize("pattern_type", ["kql", "eql", "sigma", "yara"])
def test_non_stix_indicators_have_no_documents(pattern_type: str) -> None:
    plan = documents().plan(indicator('source.ip: "1.2.3.4"', pattern_type=pattern_type), NOW)
    assert plan is not None and plan.documents == [] and plan.ids == []


def test_invalid_pattern_is_skipped_with_a_reason() -> None:
    plan = documents().plan(indicator("[ipv4-addr:value = 'x'"), NOW)
    assert plan is not None and plan.documents == [] and plan.skipped


def test_document_content_for_an_indicator() -> None:
    obj = indicator(
        stix_pattern("url", "value", "http://bad.example/"), name="Bad URL", score=85, labels=["phishing"],
        main_observable_type="Url",
    )  # fmt: skip
    obj["description"] = "Seen in a phishing wave"
    obj["kill_chain_phases"] = [{"kill_chain_name": "mitre-attack", "phase_name": "initial-access"}]
    obj["extensions"][rules.OCTI_EXTENSION]["id"] = "3f1c1e0e-2a57-4b8e-9c1f-1c1d2e3f4a5b"
    docs = documents()
    docs.remember_identity(AUTHOR)
    plan = docs.plan(obj, NOW)
    assert plan is not None
    [(_, source)] = plan.documents
    assert source["@timestamp"] == "2026-11-22T12:00:00.000Z"
    assert source["event"] == {
        "kind": "enrichment", "category": ["threat"], "type": ["indicator"],
        "module": "ti_custom", "dataset": "ti_custom.indicator",
    }  # fmt: skip
    ti = source["threat"]["indicator"]
    assert ti["confidence"] == "High" and ti["provider"] == "CERT Example"
    assert ti["first_seen"] == "2026-10-01T00:00:00.000Z" and ti["modified_at"] == "2026-11-01T00:00:00.000Z"
    assert ti["reference"] == (
        "https://opencti.example/dashboard/observations/indicators/3f1c1e0e-2a57-4b8e-9c1f-1c1d2e3f4a5b"
    )
    assert ti["description"] == "Seen in a phishing wave"
    assert source["threat"]["feed"] == {"name": "OpenCTI", "reference": "https://opencti.example"}
    octi = source["opencti"]
    assert octi["kill_chain_phases"] == obj["kill_chain_phases"]
    assert octi["score"] == 85 and octi["detection"] is True and octi["main_observable_type"] == "Url"
    assert octi["id"] == "3f1c1e0e-2a57-4b8e-9c1f-1c1d2e3f4a5b"
    assert octi["expires_at"] == "2027-01-30T00:00:00.000Z"  # modified + 90 days


def test_documents_match_what_the_indicator_match_rules_query() -> None:
    """The other half of the contract: the rules' threat_query filters on these exact values."""
    assert (EVENT_MODULE, EVENT_DATASET) == (rules.DOCUMENT_MODULE, rules.DOCUMENT_DATASET)
    assert EVENT_MODULE.startswith("ti_")  # Elastic's prebuilt rules: event.module:(threatintel or ti_*)
    for kind in rules.INDICATOR_KINDS:
        for _, field in kind.mappings:
            assert field.startswith("threat.indicator.") and field in ecs()


@pytest.mark.parametrize(
    ("pattern", "alone"),
    [
        ("[ipv4-addr:value = '198.51.100.7']", True),
        ("[ipv4-addr:value = '198.51.100.7'] OR [domain-name:value = 'c2.example']", True),
        ("[ipv4-addr:value = '198.51.100.7' AND network-traffic:dst_port = 443]", False),
        ("[domain-name:value = 'c2.example'] FOLLOWEDBY [url:value = 'http://c2.example/x']", False),
        ("[ipv4-addr:value = '198.51.100.7'] REPEATS 3 TIMES", False),
    ],
)
def test_only_values_that_satisfy_the_pattern_alone_are_matched_by_indicator_match_rules(
    pattern: str, alone: bool
) -> None:
    plan = documents().plan(indicator(pattern), NOW)
    assert plan is not None and plan.documents
    assert {source["opencti"]["matches_alone"] for _, source in plan.documents} == {alone}
    settings = ElasticIntelSettings(url="https://es.example:9200")
    for rule in rules.RuleBuilder(settings, None).indicator_match_rules():
        assert rule["threat_query"].endswith(" and not opencti.matches_alone:false")


def test_observable_documents_match_alone() -> None:
    plan = documents().plan(observable("ipv4-addr", value="198.51.100.9"), NOW)
    assert plan is not None and plan.documents[0][1]["opencti"]["matches_alone"] is True


# ---------------------------------------------------------------------------- TLP, confidence, expiry


@pytest.mark.parametrize(
    ("tlp", "expected"),
    [(Tlp.CLEAR, "CLEAR"), (Tlp.GREEN, "GREEN"), (Tlp.AMBER, "AMBER"), (Tlp.AMBER_STRICT, "AMBER+STRICT")],
)
def test_marking_comes_from_the_object_marking_refs(tlp: Tlp, expected: str) -> None:
    source = only_document(indicator("[ipv4-addr:value = '192.0.2.7']", tlp=tlp), max_tlp=Tlp.AMBER_STRICT)
    assert source["threat"]["indicator"]["marking"]["tlp"] == expected


def test_no_tlp_marking_means_no_marking_field_and_is_exported() -> None:
    source = only_document(indicator("[ipv4-addr:value = '192.0.2.8']", tlp=None))
    assert "marking" not in source["threat"]["indicator"]


@pytest.mark.parametrize(("tlp", "ceiling", "exported"), [
    (Tlp.RED, Tlp.AMBER, False), (Tlp.AMBER_STRICT, Tlp.AMBER, False), (Tlp.AMBER, Tlp.AMBER, True),
    (Tlp.AMBER, Tlp.GREEN, False), (Tlp.CLEAR, Tlp.CLEAR, True),
])  # fmt: skip
def test_objects_above_the_tlp_ceiling_are_not_exported(tlp: Tlp, ceiling: Tlp, exported: bool) -> None:
    obj = indicator("[ipv4-addr:value = '192.0.2.9']", tlp=tlp)
    plan = documents(max_tlp=ceiling).plan(obj, NOW)
    assert plan is not None and plan.ids == [obj["id"]]
    assert bool(plan.documents) is exported
    assert (plan.dead_reason is None) is exported


@pytest.mark.parametrize(("score", "band"), [
    (None, "Not Specified"), (0, "None"), (1, "Low"), (29, "Low"), (30, "Medium"), (69, "Medium"),
    (70, "High"), (100, "High"), ("55", "Medium"), ("n/a", "Not Specified"),
])  # fmt: skip
def test_confidence_bands(score: Any, band: str) -> None:
    assert confidence_band(score) == band
    if score is None or isinstance(score, int):
        obj = indicator("[ipv4-addr:value = '192.0.2.10']", score=score)
        assert only_document(obj)["threat"]["indicator"]["confidence"] == band


@pytest.mark.parametrize(("changes", "dead"), [
    ({"revoked": True}, "revoked"),
    ({"valid_until": "2026-11-22T11:59:59.000Z"}, "valid_until passed"),
    ({"modified": "2026-08-23T11:00:00.000Z"}, "expire time passed"),  # 90 days before NOW, and an hour
    ({"detection": False}, "x_opencti_detection is false"),
])  # fmt: skip
def test_expired_or_disabled_indicators_have_no_documents(changes: dict[str, Any], dead: str) -> None:
    obj = indicator("[ipv4-addr:value = '192.0.2.11']", **changes)
    plan = documents().plan(obj, NOW)
    assert plan is not None and plan.dead_reason == dead and plan.documents == [] and plan.ids == [obj["id"]]


def test_detection_false_at_the_root_counts_too() -> None:
    obj = indicator("[ipv4-addr:value = '192.0.2.12']", detection=None)
    obj["x_opencti_detection"] = False
    plan = documents().plan(obj, NOW)
    assert plan is not None and plan.dead_reason == "x_opencti_detection is false"


def test_expiry_is_the_earlier_of_valid_until_and_the_expire_time() -> None:
    soon = indicator("[ipv4-addr:value = '192.0.2.13']", valid_until="2026-12-01T00:00:00.000Z")
    assert only_document(soon)["opencti"]["expires_at"] == "2026-12-01T00:00:00.000Z"
    late = indicator("[ipv4-addr:value = '192.0.2.14']", valid_until="2030-01-01T00:00:00.000Z")
    assert only_document(late, expire_days=30)["opencti"]["expires_at"] == "2026-12-01T00:00:00.000Z"
    old = indicator("[ipv4-addr:value = '192.0.2.15']", modified="2020-01-01T00:00:00.000Z")
    assert "expires_at" not in only_document(old, expire_days=0)["opencti"]  # 0 disables the expire time
    plan = documents(expire_days=10).plan(old, NOW)
    assert plan is not None and plan.dead_reason == "expire time passed"
    assert plan.expires_at == datetime(2020, 1, 11, tzinfo=UTC) and NOW - plan.expires_at > timedelta(0)


# ---------------------------------------------------------------------------- ECS field list and template


def corpus() -> list[dict[str, Any]]:
    objects = [obj for obj, _ in OBSERVABLE_GOLDENS] + [indicator(pattern) for pattern, _ in PATTERN_GOLDENS]
    full = indicator("[url:value = 'http://x.example/a']", labels=["l"])
    full["description"] = "d"
    full["kill_chain_phases"] = [{"kill_chain_name": "k", "phase_name": "p"}]
    full["extensions"][rules.OCTI_EXTENSION].update(id="internal-1", main_observable_type="Url")
    full["valid_until"] = "2027-06-01T00:00:00.000Z"
    objects.append(full)
    docs = documents(max_tlp=Tlp.RED)
    docs.remember_identity(AUTHOR)
    out = []
    for obj in objects:
        plan = docs.plan(obj, NOW)
        assert plan is not None and plan.documents, obj
        out.extend(source for _, source in plan.documents)
    return out


def _ecs_accepts(spec: dict[str, Any], value: Any) -> bool:
    ftype = spec["type"]
    if ftype in ("keyword", "wildcard", "constant_keyword", "match_only_text", "text"):
        return isinstance(value, str)
    if ftype == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if ftype == "date":
        return isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")) is not None
    if ftype == "ip":
        return ipaddress.ip_address(value) is not None
    return False


def test_the_corpus_bundle_is_valid_stix() -> None:
    objects = [obj for obj, _ in OBSERVABLE_GOLDENS] + [indicator(pattern) for pattern, _ in PATTERN_GOLDENS]
    assert_valid_bundle(bundle(objects))


def test_every_document_field_is_an_ecs_field_with_an_ecs_value() -> None:
    fields = ecs()
    checked = 0
    for source in corpus():
        for path, value in iter_fields(source):
            if path.startswith("opencti."):
                continue  # the one custom namespace
            assert path in fields, f"{path} is not an ECS field"
            spec = fields[path]
            assert _ecs_accepts(spec, value), f"{path}={value!r} is not a valid {spec['type']}"
            allowed = [a["name"] for a in spec.get("allowed_values") or []] or spec.get("expected_values")
            if allowed:
                assert value in allowed, f"{path}={value!r} not among {allowed}"
            checked += 1
    assert checked > 300


def test_the_custom_namespace_is_not_ecs() -> None:
    assert not any(name == "opencti" or name.startswith("opencti.") for name in ecs())


def _mapped(mappings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for name, spec in mappings.get("properties", {}).items():
        if "properties" in spec:
            out.update(_mapped(spec, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec["type"]
    return out


def test_template_maps_every_document_field_with_its_ecs_type() -> None:
    mapped = _mapped(INDEX_MAPPINGS)
    for path, ftype in mapped.items():
        if not path.startswith("opencti."):
            assert ecs()[path]["type"] == ftype, path
    for source in corpus():
        for path, _ in iter_fields(source):
            assert path in mapped, f"{path} is not in the template: it would not be searchable"
    template = index_template("logs-ti_custom_opencti.indicator")
    assert template["index_patterns"] == ["logs-ti_custom_opencti.indicator"]
    assert template["priority"] > 500 and "data_stream" not in template


# ---------------------------------------------------------------------------- the fast pattern path

_TYPES = st.sampled_from(["ipv4-addr", "domain-name", "url", "file", "email-addr", "x-custom-thing"])
_PATHS = st.sampled_from(["value", "name", "hashes.MD5", "hashes.'SHA-256'", "parent_directory_ref.path"])
_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["'", "\\", "\\'", "a\\\\b", "' OR '1'='1", "x] OR [y:z = 'w", "%_*?", "\n\t"]
)


_COMPARISONS = st.lists(st.tuples(_TYPES, _PATHS, _VALUES), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    comparisons=_COMPARISONS,
    spaces=st.sampled_from(["", " ", "  ", "\t"]),
    inside=st.booleans(),
)
def test_fast_path_reads_or_equalities_exactly_as_the_full_parser(
    comparisons: list[tuple[str, str, str]], spaces: str, inside: bool
) -> None:
    texts = []
    for object_type, path, value in comparisons:
        if path == "hashes.MD5":
            value = MD5
        elif path == "hashes.'SHA-256'":
            value = SHA256
        texts.append(f"{spaces}{object_type}:{path}{spaces}={spaces}{quote_string(value)}{spaces}")
    if inside:  # [a = 'x' OR b = 'y']
        pattern = f"{spaces}[" + " OR ".join(texts) + f"]{spaces}"
    else:  # [a = 'x'] OR [b = 'y']
        pattern = " OR ".join(f"[{text}]" for text in texts)
    fast = simple_atoms(pattern)
    assert fast is not None, pattern
    slow = [(a.type, a.path, a.value) for a in atomic_values(parse_stix(pattern))]
    assert fast == slow


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value != '1.2.3.4']",
        "[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']",
        "[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '1.2.3.5']",
        "([ipv4-addr:value = '1.2.3.4'] OR [ipv4-addr:value = '1.2.3.5'])",
        "[ipv4-addr:value = '1.2.3.4'] WITHIN 5 SECONDS",
        "[ipv4-addr:value = '1.2.3.4'] OR",
        "[ipv4-addr:value IN ('1.2.3.4')]",
        "[file:name = 'a\\x']",  # not a STIX escape
        "[x:AND = 'v']",  # reserved word
        '[ipv4-addr:value = "1.2.3.4"]',
    ],
)
def test_fast_path_leaves_everything_else_to_the_parser(pattern: str) -> None:
    assert simple_atoms(pattern) is None


# ---------------------------------------------------------------------------- hostile input

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
_HANDLED_TYPE = st.sampled_from(
    ["indicator", "ipv4-addr", "url", "file", "windows-registry-key", "x509-certificate"]
)
_KEYS = st.sampled_from([
    "pattern", "pattern_type", "value", "hashes", "key", "name", "number", "object_marking_refs",
    "extensions", "labels", "valid_until", "modified", "created", "revoked", "kill_chain_phases",
    "x_opencti_score", "x_opencti_detection", "description", "created_by_ref", "serial_number",
    "validity_not_before", "size",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(obj_type=_HANDLED_TYPE, fields=st.dictionaries(_KEYS, _JSON, max_size=8))
def test_malformed_objects_never_crash_the_mapping(obj_type: str, fields: dict[str, Any]) -> None:
    obj = {**fields, "type": obj_type, "id": f"{obj_type}--6ba7b810-9dad-11d1-80b4-00c04fd430c8"}
    plan = documents().plan(obj, NOW)
    assert plan is not None
    for doc_id, source in plan.documents:
        assert doc_id.startswith(obj["id"])
        for path, value in iter_fields(source):
            if not path.startswith("opencti."):
                assert _ecs_accepts(ecs()[path], value), (path, value)


def test_extreme_values_are_skipped_not_crashing() -> None:
    obj = indicator("[ipv4-addr:value = '192.0.2.77']", modified="9999-12-31T23:59:59.000Z")
    obj["x_opencti_score"] = float("inf")
    source = only_document(obj)
    assert source["threat"]["indicator"]["confidence"] == "Not Specified"
    assert "expires_at" not in source["opencti"] and "score" not in source["opencti"]


_OCTETS = st.integers(-5, 300).map(str) | st.sampled_from(["00", "01", "007", "", "x", "\u0661"])


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.lists(_OCTETS, min_size=3, max_size=5).map(".".join),
        st.text(max_size=20),
    )
)
def test_address_values_agree_with_the_ipaddress_module(text: str) -> None:
    from ctibridge.siem.elastic.indicators import atom_fields

    try:
        expected: str | None = str(ipaddress.ip_address(text.strip())) if "/" not in text else None
    except ValueError:
        expected = None
    if "/" in text:
        return
    got = atom_fields("ipv4-addr", "value", text)
    assert (got[1]["ip"] if got else None) == expected
