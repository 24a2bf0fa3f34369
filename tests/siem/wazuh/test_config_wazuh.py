"""`WAZUH_*` settings: the community connector's names, JSON or comma lists, forgiving enums, clear errors."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctibridge.config import CONNECTOR_CONFIGS
from ctibridge.config.wazuh import (
    DirSearchOption,
    EnrichEntityType,
    FilenameBehaviour,
    FileSearchOption,
    IncidentCreateMode,
    Match,
    OrderBy,
    RegKeySearchOption,
    WazuhEnrichmentConfig,
    parse_enum,
)
from ctibridge.errors import ConfigurationError
from ctibridge.siem.wazuh.alertdoc import view
from ctibridge.siem.wazuh.options import EnrichmentOptions
from ctibridge.siem.wazuh.sightings import alert_link
from ctibridge.stix import Tlp

BASE = {
    "OPENCTI_URL": "https://opencti.example",
    "OPENCTI_TOKEN": "tok-secret-123",
    "CONNECTOR_ID": "0f2b7c1e-4b5d-4c1e-9d7a-1e2f3a4b5c6d",
    "WAZUH_MAX_TLP": "amber",
    "WAZUH_OPENSEARCH_URL": "https://indexer.example:9200/",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENCTI_", "CONNECTOR_", "WAZUH_")):
            monkeypatch.delenv(name)


def load(monkeypatch: pytest.MonkeyPatch, **values: str) -> WazuhEnrichmentConfig:
    for key, value in {**BASE, **values}.items():
        monkeypatch.setenv(key, value)
    return WazuhEnrichmentConfig.load()


def problems(monkeypatch: pytest.MonkeyPatch, **values: str) -> dict[str, str]:
    with pytest.raises(ConfigurationError) as info:
        load(monkeypatch, **values)
    return info.value.problems


def test_registered_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CONNECTOR_CONFIGS["wazuh-enrichment"] is WazuhEnrichmentConfig
    config = load(monkeypatch)
    assert config.connector.type == "INTERNAL_ENRICHMENT"
    w = config.wazuh
    assert w.max_tlp is Tlp.AMBER and w.tlps == [Tlp.AMBER_STRICT]
    assert w.marking_ids == [Tlp.AMBER_STRICT.marking_id]
    assert w.create_incident is IncidentCreateMode.PER_SIGHTING and w.create_incident_threshold == 1
    assert w.label_ignore_list == ["hygiene", "wazuh_ignore"] and w.enrich_labels == ["wazuh_ignore"]
    assert (w.hits_abort_limit, w.system_abort_limit, w.bundle_abort_limit) == (1000, None, 500)
    assert (w.max_extrefs, w.max_extrefs_per_alert_rule, w.max_notes, w.max_notes_per_alert_rule) == (
        10,
        2,
        10,
        2,
    )
    assert (
        w.require_indicator_for_incidents
        and w.ignore_revoked_indicators
        and not w.require_indicator_detection
    )
    assert w.indicator_score_threshold is None and w.vulnerability_incident_cvss3_score_threshold is None
    assert w.system_name == "Wazuh SIEM" and w.author_name == "Wazuh" and w.app_url is None
    o = config.wazuh_opensearch
    assert o.url == "https://indexer.example:9200" and o.verify_tls is True
    assert o.index == "wazuh-alerts-*" and o.search_after == timedelta(days=30)
    assert o.exclude_match == [
        Match(field="data.integration", query="opencti"),
        Match(field="rule.groups", query="opencti"),
    ]
    assert o.include_match == [] and o.filter == [] and o.limit == 50
    assert o.order_by == [OrderBy(field="@timestamp", order="desc")]
    s = config.wazuh_search
    assert FileSearchOption.ALLOW_REGEXP not in s.filesearch_options, "regexp only when asked"
    assert RegKeySearchOption.ALLOW_REGEXP not in s.regkeysearch_options
    assert s.ignore_private_addrs and s.lookup_mac_variants and s.lookup_hashes_in_sysmon
    assert not (s.lookup_agent_ip or s.lookup_agent_name or s.lookup_url_without_host)
    assert config.wazuh_enrich.types == frozenset(EnrichEntityType)
    assert config.wazuh_enrich.filename_behaviour == {
        FilenameBehaviour.CREATE_DIR,
        FilenameBehaviour.REMOVE_PATH,
    }


@pytest.mark.parametrize(
    "spelling", ["per-alert-rule", "PER_ALERT_RULE", "PerAlertRule", "per alert rule", " Per-Alert_Rule "]
)
def test_enums_ignore_case_dashes_and_underscores(monkeypatch: pytest.MonkeyPatch, spelling: str) -> None:
    assert (
        load(monkeypatch, WAZUH_CREATE_INCIDENT=spelling).wazuh.create_incident
        is IncidentCreateMode.PER_ALERT_RULE
    )
    for other in ("MATCH_SUBDIRS", "match subdirs", "MatchSubdirs", "match--subdirs"):
        assert parse_enum(DirSearchOption, other) is DirSearchOption.MATCH_SUBDIRS
    with pytest.raises(ValueError, match="match-subdirs"):
        parse_enum(DirSearchOption, "match-subdir")


def test_lists_as_json_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(
        monkeypatch,
        WAZUH_TLPS="white, TLP:GREEN",
        WAZUH_LABEL_IGNORE_LIST='["Hygiene", "noise"]',
        WAZUH_RULE_EXCLUDE_LIST="5710, 5712,",
        WAZUH_INCIDENT_RULE_EXCLUDE_LIST='["31101"]',
        WAZUH_SEARCH_FILESEARCH_OPTIONS='["Search_Size", "ALLOW-REGEXP"]',
        WAZUH_SEARCH_DIRSEARCH_OPTIONS="none",
        WAZUH_SEARCH_REGKEYSEARCH_OPTIONS="all",
        WAZUH_ENRICH_TYPES="process, FILE,ipv4_addr",
        WAZUH_OPENSEARCH_INCLUDE_MATCH="agent.id=001, rule.groups=web",
        WAZUH_OPENSEARCH_EXCLUDE_MATCH='[{"field": "data.integration", "query": "virustotal"}]',
        WAZUH_OPENSEARCH_ORDER_BY="rule.level:desc,@timestamp",
        WAZUH_OPENSEARCH_FILTER='{"range": {"rule.level": {"gte": 3}}}',
        WAZUH_OPENSEARCH_SEARCH_AFTER="2024-05-01",
    )
    w, o, s = config.wazuh, config.wazuh_opensearch, config.wazuh_search
    assert w.tlps == [Tlp.CLEAR, Tlp.GREEN]
    assert w.label_ignore_list == ["hygiene", "noise"]
    assert w.rule_exclude_list == ["5710", "5712"] and w.incident_rule_exclude_list == ["31101"]
    assert s.filesearch_options == {FileSearchOption.SEARCH_SIZE, FileSearchOption.ALLOW_REGEXP}
    assert s.dirsearch_options == frozenset() and s.regkeysearch_options == frozenset(RegKeySearchOption)
    assert config.wazuh_enrich.types == {
        EnrichEntityType.PROCESS,
        EnrichEntityType.FILE,
        EnrichEntityType.IPV4_ADDRESS,
    }
    assert o.include_match == [Match(field="agent.id", query="001"), Match(field="rule.groups", query="web")]
    assert o.exclude_match == [Match(field="data.integration", query="virustotal")]
    assert o.order_by == [
        OrderBy(field="rule.level", order="desc"),
        OrderBy(field="@timestamp", order="desc"),
    ]
    assert o.filter == [{"range": {"rule.level": {"gte": 3}}}]
    assert o.search_after == datetime(2024, 5, 1, tzinfo=UTC)
    assert load(
        monkeypatch, WAZUH_OPENSEARCH_SEARCH_AFTER="PT12H"
    ).wazuh_opensearch.search_after == timedelta(hours=12)
    off = load(
        monkeypatch,
        WAZUH_OPENSEARCH_SEARCH_AFTER="none",
        WAZUH_HITS_ABORT_LIMIT="",
        WAZUH_OPENSEARCH_EXCLUDE_MATCH="",
    )
    assert off.wazuh_opensearch.search_after is None and off.wazuh.hits_abort_limit is None
    assert off.wazuh_opensearch.exclude_match == []


def test_app_index_pattern_id_reaches_the_alert_links(monkeypatch: pytest.MonkeyPatch) -> None:
    default = EnrichmentOptions.from_settings(load(monkeypatch).wazuh)
    assert default.index_pattern_id == "wazuh-alerts-*"
    config = load(
        monkeypatch, WAZUH_APP_URL="https://dash.example", WAZUH_APP_INDEX_PATTERN_ID="site alerts/1"
    )
    options = EnrichmentOptions.from_settings(config.wazuh)
    assert options.index_pattern_id == "site alerts/1"
    alert = view({"_id": "doc/9", "_index": "wazuh-alerts-4.x-2024.05.01", "_source": {"id": "1.2"}})
    link = alert_link(options, alert)
    assert (
        link is not None
        and link.url == "https://dash.example/app/discover#/context/site%20alerts%2F1/doc%2F9"
    )
    assert "WAZUH_APP_INDEX_PATTERN_ID" in problems(monkeypatch, WAZUH_APP_INDEX_PATTERN_ID="")


def test_errors_name_the_variable_and_never_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hunter2-Pa55"
    found = problems(
        monkeypatch,
        WAZUH_MAX_TLP=secret,
        WAZUH_CREATE_INCIDENT=secret,
        WAZUH_TLPS=secret,
        WAZUH_CREATE_INCIDENT_THRESHOLD="17",
        WAZUH_MAX_EXTREFS="3",
        WAZUH_MAX_EXTREFS_PER_ALERT_RULE="4",
        WAZUH_APP_URL="ftp://dash",
        WAZUH_OPENSEARCH_PASSWORD=secret,
        WAZUH_OPENSEARCH_URL=secret,
        WAZUH_OPENSEARCH_SEARCH_AFTER=secret,
        WAZUH_OPENSEARCH_INCLUDE_MATCH=secret,
        WAZUH_OPENSEARCH_ORDER_BY="@timestamp:sideways",
        WAZUH_OPENSEARCH_FILTER="[1, 2]",
        WAZUH_OPENSEARCH_CLIENT_KEY="/k.pem",
        WAZUH_OPENSEARCH_LIMIT="0",
        WAZUH_SEARCH_FILESEARCH_OPTIONS=f"search-size,{secret}",
        WAZUH_SEARCH_REGKEYSEARCH_OPTIONS="ignore-sid",
        WAZUH_SEARCH_LOOKUP_AGENT_IP=secret,
        WAZUH_ENRICH_TYPES="tool",
    )
    assert set(found) == {
        "WAZUH_MAX_TLP",
        "WAZUH_CREATE_INCIDENT",
        "WAZUH_TLPS",
        "WAZUH_CREATE_INCIDENT_THRESHOLD",
        "WAZUH_MAX_EXTREFS_PER_ALERT_RULE",
        "WAZUH_APP_URL",
        "WAZUH_OPENSEARCH_URL",
        "WAZUH_OPENSEARCH_SEARCH_AFTER",
        "WAZUH_OPENSEARCH_INCLUDE_MATCH",
        "WAZUH_OPENSEARCH_ORDER_BY",
        "WAZUH_OPENSEARCH_FILTER",
        "WAZUH_OPENSEARCH_CLIENT_KEY",
        "WAZUH_OPENSEARCH_LIMIT",
        "WAZUH_SEARCH_FILESEARCH_OPTIONS",
        "WAZUH_SEARCH_REGKEYSEARCH_OPTIONS",
        "WAZUH_SEARCH_LOOKUP_AGENT_IP",
        "WAZUH_ENRICH_TYPES",
    }
    assert (
        "per-sighting" in found["WAZUH_CREATE_INCIDENT"]
        and "allow-regexp" in found["WAZUH_SEARCH_REGKEYSEARCH_OPTIONS"]
    )
    assert "WAZUH_MAX_EXTREFS" in found["WAZUH_MAX_EXTREFS_PER_ALERT_RULE"]
    text = str(ConfigurationError(found))
    assert secret not in text and "Pa55" not in text


def test_max_tlp_is_required_and_yaml_sections_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "WAZUH_MAX_TLP" in problems(monkeypatch, WAZUH_MAX_TLP="")
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        "wazuh:\n  max_tlp: TLP:RED\n  create_incident: never\n"
        "wazuh_search:\n  filesearch_options: [search-size, case-insensitive]\n"
        "wazuh_opensearch:\n  url: http://yaml.example:9200\n"
        "  exclude_match: {rule.groups: [opencti, noisy]}\n"
        "wazuh_enrich:\n  types: [url, domain-name]\n"
    )
    for key in ("WAZUH_MAX_TLP", "WAZUH_OPENSEARCH_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in BASE.items():
        if not key.startswith("WAZUH_"):
            monkeypatch.setenv(key, value)
    config = WazuhEnrichmentConfig.load(config_file)
    assert config.wazuh.max_tlp is Tlp.RED and config.wazuh.create_incident is IncidentCreateMode.NEVER
    assert config.wazuh_search.filesearch_options == {
        FileSearchOption.SEARCH_SIZE,
        FileSearchOption.CASE_INSENSITIVE,
    }
    assert config.wazuh_opensearch.url == "http://yaml.example:9200"
    assert config.wazuh_opensearch.exclude_match == [
        Match(field="rule.groups", query="opencti"),
        Match(field="rule.groups", query="noisy"),
    ]
    assert config.wazuh_enrich.types == {EnrichEntityType.URL, EnrichEntityType.DOMAIN}
    monkeypatch.setenv("WAZUH_CREATE_INCIDENT", "per-alert")
    assert WazuhEnrichmentConfig.load(config_file).wazuh.create_incident is IncidentCreateMode.PER_ALERT, (
        "env wins"
    )


def test_password_is_secret_and_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctibridge.logs import redact

    config = load(monkeypatch, WAZUH_OPENSEARCH_USERNAME="reader", WAZUH_OPENSEARCH_PASSWORD="Very-Secret-42")
    assert "Very-Secret-42" not in repr(config.wazuh_opensearch)
    assert "Very-Secret-42" not in redact("login failed with Very-Secret-42")
