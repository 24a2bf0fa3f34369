"""Indicators to Kibana rule bodies: rule types per pattern type, escaping, ids, bands, indicator match."""

from __future__ import annotations

import logging
import re
from typing import Any

import eql
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from luqum.parser import parser as luqum_parser
from luqum.tree import Phrase, SearchField
from luqum.visitor import TreeVisitor

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.errors import ConfigurationError
from ctibridge.siem.elastic.rules import (
    INDICATOR_KINDS,
    MANAGED_TAG,
    RuleBuilder,
    is_rule_worthy,
    rule_id_for,
    severity_for,
    stix_id_for,
)
from tests.doubles.elastic_kibana import DEFAULT_SPEC_PATH, KibanaSpec
from tests.patterns.helpers import hostile_text, kql_quoted, stix_string
from tests.patterns.test_sigma import LINUX_RULE, WINDOWS_RULE
from tests.support.shared import shared_file

ECS_SPEC = shared_file("specs/ecs/ecs_flat-v9.4.0.yml")
needs_kibana_spec = pytest.mark.skipif(not DEFAULT_SPEC_PATH.is_file(), reason="Kibana OpenAPI spec absent")
OPENCTI = "https://opencti.example"
SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
HOSTILE_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def intel_settings(**overrides: Any) -> ElasticIntelSettings:
    return ElasticIntelSettings(url="https://es.example:9200", **overrides)


def indicator(pattern: str, pattern_type: str = "stix", number: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
        "created": "2025-01-01T00:00:00.000Z",
        "modified": "2025-01-02T00:00:00.000Z",
        "name": f"Indicator {number}",
        "pattern": pattern,
        "pattern_type": pattern_type,
        "valid_from": "2025-01-01T00:00:00Z",
        **extra,
    }


@pytest.fixture(scope="module")
def builder() -> RuleBuilder:
    return RuleBuilder(intel_settings(), OPENCTI)


@pytest.fixture(scope="module")
def spec() -> KibanaSpec:
    loaded = KibanaSpec.load()
    if loaded is None:
        pytest.skip("Kibana OpenAPI spec absent")
    return loaded


def spec_errors(spec: KibanaSpec, body: dict[str, Any]) -> list[str]:
    schema = spec.discriminated("Security_Detections_API_RuleCreateProps", body["type"])
    assert schema is not None, body["type"]
    return spec.errors(schema, body)


def parse_eql(query: str) -> Any:
    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        return eql.parse_query(query)


def eql_strings(query: str) -> list[str]:
    return [node.value for node in parse_eql(query) if isinstance(node, eql.ast.String)]


# --- which indicators get a rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "worthy"),
    [
        ("[ipv4-addr:value = '198.51.100.7']", False),
        ("[ipv6-addr:value = '2001:db8::1'] OR [domain-name:value = 'evil.example']", False),
        (f"[file:hashes.'SHA-256' = '{SHA256}']", False),
        ("[url:value = 'http://evil.example/x' OR email-addr:value = 'a@evil.example']", False),
        ("[ipv4-addr:value IN ('198.51.100.7', '198.51.100.8')]", False),
        ("[ipv4-addr:value = '198.51.100.0/24']", True),  # a range: ECS `ip` documents cannot hold it
        ("[ipv4-addr:value = '198.51.100.7/32']", False),  # one address
        ("[ipv6-addr:value = '2001:db8::/64']", True),
        ("[file:name = 'evil.exe']", True),  # no indicator-match rule for file names
        (f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'a.exe']", True),
        ("[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']", True),
        ("[ipv4-addr:value != '198.51.100.7']", True),
        ("[process:command_line MATCHES '^cmd']", True),
        ("[ipv4-addr:value = '198.51.100.7'] WITHIN 10 SECONDS", True),
        ("not a pattern", False),
    ],
)
def test_stix_patterns_need_a_rule_only_beyond_covered_atomic_values(pattern: str, worthy: bool) -> None:
    assert is_rule_worthy(indicator(pattern)) is worthy


@pytest.mark.parametrize("pattern_type", ["kql", "lucene", "eql", "esql", "sigma", "KQL"])
def test_every_native_and_sigma_indicator_is_rule_worthy(pattern_type: str) -> None:
    assert is_rule_worthy(indicator("anything", pattern_type))


@pytest.mark.parametrize(
    "obj",
    [
        indicator("rule x { condition: true }", "yara"),
        indicator("", "stix"),
        {"type": "malware", "id": "malware--00000000-0000-4000-8000-000000000001", "name": "x"},
    ],
)
def test_other_objects_and_pattern_types_get_no_rule(builder: RuleBuilder, obj: dict[str, Any]) -> None:
    assert not is_rule_worthy(obj)
    assert builder.rule_for(obj) is None


def test_covered_atomic_indicators_get_no_rule(builder: RuleBuilder) -> None:
    decision = builder.decide(indicator("[domain-name:value = 'evil.example']"))
    assert decision.body is None and decision.outcome == "covered"


# --- rule type, language and query per pattern type -------------------------------------------------


def test_compound_stix_becomes_a_kql_query_rule(builder: RuleBuilder) -> None:
    body = builder.rule_for(indicator(f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'a.exe']"))
    assert body is not None
    assert (body["type"], body["language"]) == ("query", "kuery")
    assert f'file.hash.sha256: "{SHA256}"' in body["query"] and 'file.name: "a.exe"' in body["query"]
    assert " and " in body["query"]
    assert body["index"] == intel_settings().rule_index_patterns


def test_cidr_indicator_becomes_a_rule_testing_the_range(builder: RuleBuilder) -> None:
    body = builder.rule_for(indicator("[ipv4-addr:value = '198.51.100.0/24']"))
    assert body is not None and body["type"] == "query"
    assert 'source.ip: "198.51.100.0/24"' in body["query"]


def test_regex_falls_back_to_lucene(builder: RuleBuilder) -> None:
    body = builder.rule_for(indicator("[process:command_line MATCHES '^cmd\\\\.exe /c']"))
    assert body is not None and (body["type"], body["language"]) == ("query", "lucene")
    tree = luqum_parser.parse(body["query"])
    assert "process.command_line" in str(tree)


def test_followedby_becomes_an_eql_sequence(builder: RuleBuilder) -> None:
    pattern = (
        "([domain-name:value = 'a.example'] FOLLOWEDBY [url:value = 'http://b.example/x']) WITHIN 60 SECONDS"
    )
    body = builder.rule_for(indicator(pattern))
    assert body is not None and (body["type"], body["language"]) == ("eql", "eql")
    assert body["query"].startswith("sequence with maxspan=60s")
    parsed = parse_eql(body["query"])
    assert {"a.example", "http://b.example/x"} <= set(eql_strings(body["query"]))
    assert parsed is not None


def test_esql_is_the_last_resort_and_names_the_rule_indices() -> None:
    builder = RuleBuilder(intel_settings(), OPENCTI, stix_targets=("esql",))
    body = builder.rule_for(indicator("[file:name = 'a.exe' AND file:size > 10]"))
    assert body is not None and (body["type"], body["language"]) == ("esql", "esql")
    assert body["query"].startswith(
        "FROM logs-*,filebeat-*,winlogbeat-*,auditbeat-*,packetbeat-* METADATA _id"
    )
    assert "index" not in body, "ES|QL rules take their indices from FROM"


@pytest.mark.parametrize(
    ("pattern_type", "query", "rule_type", "language"),
    [
        ("kql", 'process.name: "cmd.exe" and not user.name: "svc"', "query", "kuery"),
        ("lucene", 'process.name:"cmd.exe" AND NOT user.name:svc', "query", "lucene"),
        ("eql", 'process where process.name == "cmd.exe"', "eql", "eql"),
        ("esql", 'FROM logs-* METADATA _id, _index, _version | WHERE process.name == "x"', "esql", "esql"),
    ],
)
def test_native_queries_keep_their_language_and_text(
    builder: RuleBuilder, pattern_type: str, query: str, rule_type: str, language: str
) -> None:
    body = builder.rule_for(indicator(query, pattern_type))
    assert body is not None
    assert (body["type"], body["language"], body["query"]) == (rule_type, language, query)
    if rule_type == "eql":
        parse_eql(body["query"])
    if language == "lucene":
        luqum_parser.parse(body["query"])


@pytest.mark.parametrize(
    ("pattern_type", "query"),
    [
        ("eql", 'process where process.name == "x'),
        ("lucene", "a:(b"),
        ("kql", 'a: "b'),
        ("esql", "ROW a = 1"),
    ],
)
def test_invalid_native_queries_get_no_rule_and_a_reason(
    builder: RuleBuilder, caplog: pytest.LogCaptureFixture, pattern_type: str, query: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="ctibridge.siem.elastic.rules"):
        assert builder.rule_for(indicator(query, pattern_type)) is None
    assert "indicator--00000000-0000-4000-8000-000000000001" in caplog.text
    assert pattern_type in caplog.text


def test_sigma_converts_to_lucene_through_the_ecs_pipeline(builder: RuleBuilder) -> None:
    body = builder.rule_for(indicator(WINDOWS_RULE, "sigma"))
    assert body is not None and (body["type"], body["language"]) == ("query", "lucene")
    luqum_parser.parse(body["query"])
    assert "process.executable" in body["query"]


def test_sigma_to_eql_when_preferred() -> None:
    builder = RuleBuilder(intel_settings(), OPENCTI, sigma_targets=("eql",))
    body = builder.rule_for(indicator(WINDOWS_RULE, "sigma"))
    assert body is not None and body["type"] == "eql"
    assert 'a"b' in " ".join(eql_strings(body["query"])), "the quote stays inside one string literal"


def test_sigma_without_ecs_mapping_is_refused_with_a_reason(
    builder: RuleBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert builder.rule_for(indicator(LINUX_RULE, "sigma")) is None
    assert "linux" in caplog.text


def test_untranslatable_stix_gets_no_rule_never_a_wrong_query(caplog: pytest.LogCaptureFixture) -> None:
    # Observation AND correlates separate events: no single query expresses it.
    builder = RuleBuilder(intel_settings(), OPENCTI)
    pattern = "[domain-name:value = 'a.example'] AND [file:name = 'x.exe']"
    with caplog.at_level(logging.WARNING):
        decision = builder.decide(indicator(pattern))
        assert builder.rule_for(indicator(pattern)) is None
    assert decision.outcome == "untranslatable" and "observation-level AND" in decision.reason
    assert "observation-level AND" in caplog.text


# --- hostile values stay literal -------------------------------------------------------------------


def compound(value: str) -> str:
    return f"[file:name = {stix_string(value)} AND file:size > 10]"


@HOSTILE_SETTINGS
@given(value=hostile_text)
def test_hostile_values_stay_one_kql_literal(value: str) -> None:
    body = RuleBuilder(intel_settings(), OPENCTI, stix_targets=("kql",)).rule_for(indicator(compound(value)))
    assert body is not None
    literals = re.findall(r'(?:^|[\s(])file\.name: "((?:[^"\\]|\\.)*)"', body["query"], re.S)
    assert [kql_quoted(text) for text in literals] == [value]


@HOSTILE_SETTINGS
@given(value=hostile_text)
def test_hostile_values_stay_one_eql_literal(value: str) -> None:
    body = RuleBuilder(intel_settings(), OPENCTI, stix_targets=("eql",)).rule_for(indicator(compound(value)))
    assert body is not None and body["type"] == "eql"
    # one literal per mapped file-name field, each the whole value
    strings = eql_strings(body["query"])
    assert strings and all(text == value for text in strings)


class _Phrases(TreeVisitor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(track_parents=False)
        self.found: list[tuple[str, str]] = []

    def visit_search_field(self, node: SearchField, context: Any) -> Any:
        if isinstance(node.expr, Phrase):
            self.found.append((node.name, node.expr.unescaped_value[1:-1]))
        yield from self.generic_visit(node, context)


@HOSTILE_SETTINGS
@given(value=hostile_text)
def test_hostile_values_stay_one_lucene_phrase(value: str) -> None:
    builder = RuleBuilder(intel_settings(), OPENCTI, stix_targets=("lucene",))
    body = builder.rule_for(indicator(compound(value)))
    assert body is not None and body["language"] == "lucene"
    visitor = _Phrases()
    visitor.visit(luqum_parser.parse(body["query"]))
    names = [text for field, text in visitor.found if field == "file.name"]
    assert names == [value]


@HOSTILE_SETTINGS
@given(label=hostile_text, name=hostile_text)
def test_hostile_labels_and_names_are_plain_strings(label: str, name: str) -> None:
    body = RuleBuilder(intel_settings(), OPENCTI).rule_for(
        indicator(compound("x"), name=name, labels=[label, "OpenCTI"])
    )
    assert body is not None
    assert body["tags"][-2:] == ["OpenCTI", MANAGED_TAG]
    if label.strip() and label.strip() not in ("OpenCTI", MANAGED_TAG):
        assert body["tags"][0] == label.strip()
    assert body["name"].startswith("OpenCTI: ")


# --- ids, bands and the common fields ----------------------------------------------------------------


def test_rule_ids_are_deterministic_and_reversible() -> None:
    stix_id = "indicator--c721b81a-6c3c-55ab-9bf3-038642e8add8"
    assert rule_id_for(stix_id) == rule_id_for(stix_id) == "opencti-" + stix_id
    assert rule_id_for(stix_id.upper().replace("INDICATOR", "indicator")) == rule_id_for(stix_id)
    assert stix_id_for(rule_id_for(stix_id)) == stix_id
    assert stix_id_for("opencti-indicator-match-ip") is None and stix_id_for("someone-elses") is None
    with pytest.raises(ValueError):
        rule_id_for('indicator--x" or *')


def test_same_indicator_same_body(builder: RuleBuilder) -> None:
    first = builder.rule_for(indicator("[file:name = 'a.exe' AND file:size > 1]", number=7))
    again = RuleBuilder(intel_settings(), OPENCTI).rule_for(
        indicator("[file:name = 'a.exe' AND file:size > 1]", number=7)
    )
    assert first == again and first is not None
    assert first["rule_id"] == "opencti-indicator--00000000-0000-4000-8000-000000000007"


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (None, ("high", 50)),
        (0, ("low", 0)),
        (21, ("low", 21)),
        (22, ("medium", 22)),
        (47, ("medium", 47)),
        (48, ("high", 48)),
        (73, ("high", 73)),
        (74, ("critical", 74)),
        (100, ("critical", 100)),
        (150, ("critical", 100)),
        (-5, ("low", 0)),
    ],
)
def test_severity_bands_follow_kibanas_risk_score_schema(
    score: int | None, expected: tuple[str, int]
) -> None:
    assert severity_for(score) == expected


def test_score_from_the_stream_extension_and_common_fields(builder: RuleBuilder) -> None:
    extension = {
        "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba": {
            "score": 30,
            "id": "5d1a7c2e-aaaa-4bbb-8ccc-000000000001",
        }
    }
    body = builder.rule_for(
        indicator(
            "[file:name = 'a.exe' AND file:size > 1]",
            labels=["apt", "apt", " ransomware "],
            description="Loader",
            extensions=extension,
        )
    )
    assert body is not None
    assert (body["severity"], body["risk_score"]) == ("medium", 30)
    assert body["tags"] == ["apt", "ransomware", "OpenCTI", MANAGED_TAG]
    assert body["references"] == [
        f"{OPENCTI}/dashboard/observations/indicators/5d1a7c2e-aaaa-4bbb-8ccc-000000000001"
    ]
    assert body["description"].startswith("Loader")
    assert (body["interval"], body["from"], body["enabled"]) == ("5m", "now-360s", False)


def test_reference_falls_back_to_the_stix_id_and_settings_apply() -> None:
    builder = RuleBuilder(
        intel_settings(
            rule_interval="1h", rule_lookback="5m", rules_enabled=True, rule_index_patterns="a-*,b-*"
        ),
        OPENCTI + "/",
    )
    body = builder.rule_for(indicator("[file:name = 'a.exe' AND file:size > 1]", x_opencti_score=90))
    assert body is not None
    assert body["references"] == [
        f"{OPENCTI}/dashboard/observations/indicators/indicator--00000000-0000-4000-8000-000000000001"
    ]
    assert (body["interval"], body["from"], body["enabled"], body["index"]) == (
        "1h",
        "now-3900s",
        True,
        ["a-*", "b-*"],
    )
    assert RuleBuilder(intel_settings(), None).rule_for(indicator(compound("x")))["references"] == []  # type: ignore[index]


@pytest.mark.parametrize("field", ["rule_interval", "rule_lookback"])
@pytest.mark.parametrize("value", ["5 minutes", "0m", "-1m", "5w", ""])
def test_bad_schedule_settings_are_configuration_errors(field: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=field.upper()):
        RuleBuilder(intel_settings(**{field: value}), OPENCTI)


# --- spec validation ---------------------------------------------------------------------------------


@needs_kibana_spec
def test_every_rule_body_validates_against_the_kibana_spec(spec: KibanaSpec) -> None:
    builders = [
        RuleBuilder(intel_settings(), OPENCTI),
        RuleBuilder(intel_settings(), OPENCTI, stix_targets=("esql",)),
        RuleBuilder(intel_settings(), None, sigma_targets=("eql",)),
    ]
    cases = [
        indicator("[file:name = 'a.exe' AND file:size > 1]", labels=["x"], x_opencti_score=12),
        indicator("[process:command_line MATCHES 'evil']"),
        indicator("[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']"),
        indicator('process.name: "x"', "kql"),
        indicator("process.name:x", "lucene"),
        indicator('process where process.name == "x"', "eql"),
        indicator("FROM logs-* METADATA _id, _index, _version | WHERE a == 1", "esql"),
        indicator(WINDOWS_RULE, "sigma", description="Sigma"),
    ]
    checked = 0
    for rules in builders:
        for case in cases:
            body = rules.rule_for(case)
            if body is None:  # only EQL expresses sequences
                assert rules.stix_targets == ("esql",) and "FOLLOWEDBY" in case["pattern"]
                continue
            assert spec_errors(spec, body) == [], body
            checked += 1
    assert checked == len(builders) * len(cases) - 1


@needs_kibana_spec
def test_indicator_match_rules_validate_and_map_ecs_fields(spec: KibanaSpec, builder: RuleBuilder) -> None:
    rules = builder.indicator_match_rules()
    assert [r["rule_id"] for r in rules] == [f"opencti-indicator-match-{k.key}" for k in INDICATOR_KINDS]
    ecs = yaml.load(
        ECS_SPEC.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    for rule in rules:
        assert spec_errors(spec, rule) == [], rule["rule_id"]
        assert rule["type"] == "threat_match" and rule["threat_indicator_path"] == "threat.indicator"
        assert rule["threat_index"] == ["logs-ti_custom_opencti.indicator"]
        assert 'event.module:"ti_custom"' in rule["threat_query"]
        assert 'event.dataset:"ti_custom.indicator"' in rule["threat_query"]
        for group in rule["threat_mapping"]:
            for entry in group["entries"]:
                assert entry["field"] in ecs, entry["field"]
                assert entry["value"] in ecs and entry["value"].startswith("threat.indicator."), entry
        assert MANAGED_TAG in rule["tags"]
    by_kind = {r["rule_id"].rsplit("-", 1)[-1]: r for r in rules}
    mapping = {(e["field"], e["value"]) for r in rules for g in r["threat_mapping"] for e in g["entries"]}
    assert ("source.ip", "threat.indicator.ip") in mapping
    assert ("destination.ip", "threat.indicator.ip") in mapping
    assert ("url.full", "threat.indicator.url.full") in mapping
    assert ("file.hash.sha256", "threat.indicator.file.hash.sha256") in mapping
    assert ("dns.question.name", "threat.indicator.url.domain") in mapping
    assert ("email.from.address", "threat.indicator.email.address") in mapping
    assert 'threat.indicator.type:("domain-name")' in by_kind["domain"]["threat_query"]
    # entries of one group are ANDed: every mapping stands alone (OR)
    assert all(len(g["entries"]) == 1 for r in rules for g in r["threat_mapping"])


@given(st.sampled_from(["[ipv4-addr:value = '{}']", "[ipv6-addr:value = '{}']"]), st.ip_addresses())
def test_every_plain_address_is_covered_by_the_ip_rule(template: str, address: Any) -> None:
    if ("ipv6" in template) != (address.version == 6):
        return
    assert not is_rule_worthy(indicator(template.format(address)))
