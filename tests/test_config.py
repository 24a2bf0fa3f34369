"""Configuration: users' names accepted, every mistake named by its environment variable, no secret echoed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctibridge.config import CONNECTOR_CONFIGS, ElasticIncidentsConfig, SentinelIncidentsConfig
from ctibridge.config.types import format_duration, parse_datetime, parse_duration, split_list
from ctibridge.errors import ConfigurationError
from ctibridge.stix import Tlp

BASE = {
    "OPENCTI_URL": "https://opencti.example:8080/",
    "OPENCTI_TOKEN": "0b9a-secret-token",
    "CONNECTOR_ID": "5e2f2b0c-6a5e-4d8e-9d54-2f1f9f0e9a11",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("OPENCTI_", "CONNECTOR_", "ELASTIC_SECURITY_", "SENTINEL_", "WAZUH_")):
            monkeypatch.delenv(name)


def setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_empty_environment_names_every_required_setting() -> None:
    with pytest.raises(ConfigurationError) as info:
        ElasticIncidentsConfig.load()
    assert set(info.value.problems) == {
        "OPENCTI_URL",
        "OPENCTI_TOKEN",
        "CONNECTOR_ID",
        "ELASTIC_SECURITY_URL",
    }


def test_official_names_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(
        monkeypatch,
        {
            **BASE,
            "ELASTIC_SECURITY_URL": "https://es.example:9200",
            "ELASTIC_SECURITY_API_KEY": "ZXhhbXBsZTprZXk=",
            "ELASTIC_SECURITY_ALERT_STATUSES": "open, Acknowledged",
            "ELASTIC_SECURITY_ALERT_RULE_TAGS": '["Windows", "Critical"]',
            "ELASTIC_SECURITY_IMPORT_START_DATE": "2024-02-03",
            "ELASTIC_SECURITY_VERIFY_SSL": "no",
            "CONNECTOR_DURATION_PERIOD": "P1DT2H",
            "CONNECTOR_QUEUE_PROTOCOL": "API",
            "CONNECTOR_AUTO": "yes",
        },
    )
    config = ElasticIncidentsConfig.load()
    assert config.opencti.url == "https://opencti.example:8080"
    assert config.opencti.ssl_verify is True, "TLS verification is on unless switched off"
    assert config.connector.name == "Elastic Security Incidents"
    assert config.connector.type == "EXTERNAL_IMPORT"
    assert config.connector.duration_period == timedelta(days=1, hours=2)
    assert config.connector.queue_protocol == "api"
    assert config.connector.auto is True
    es = config.elastic_security
    assert es.alert_statuses == ["open", "acknowledged"]
    assert es.alert_rule_tags == ["Windows", "Critical"]
    assert es.import_start_date == datetime(2024, 2, 3, tzinfo=UTC)
    assert es.verify_ssl is False
    assert es.kibana_base_url == "https://es.example:9200"
    assert es.tlp is Tlp.AMBER
    assert es.api_key is not None and "ZXhh" not in repr(es)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose files pass `NAME=` for a value left blank in .env: a default, not a refusal."""
    setenv(
        monkeypatch,
        {
            **BASE,
            "ELASTIC_SECURITY_URL": "https://es.example:9200",
            "ELASTIC_SECURITY_KIBANA_URL": "",
            "ELASTIC_SECURITY_KIBANA_SPACE": "",
            "ELASTIC_SECURITY_TLP": "",
        },
    )
    es = ElasticIncidentsConfig.load().elastic_security
    assert es.kibana_url is None and es.kibana_base_url == "https://es.example:9200"
    assert es.tlp is Tlp.AMBER
    # A required setting left blank is reported as missing, by name.
    monkeypatch.setenv("OPENCTI_TOKEN", "")
    with pytest.raises(ConfigurationError) as info:
        ElasticIncidentsConfig.load()
    assert set(info.value.problems) == {"OPENCTI_TOKEN"}


def test_default_start_date_is_seven_days_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, {**BASE, "ELASTIC_SECURITY_URL": "http://es:9200"})
    start = ElasticIncidentsConfig.load().elastic_security.import_start_date
    assert timedelta(days=6, hours=23) < datetime.now(UTC) - start < timedelta(days=7, minutes=1)


def test_invalid_values_are_all_reported_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(
        monkeypatch,
        {
            **BASE,
            "OPENCTI_URL": "opencti.example",
            "OPENCTI_TOKEN": "tok-123-very-secret",
            "ELASTIC_SECURITY_URL": "https://es:9200",
            "ELASTIC_SECURITY_VERIFY_SSL": "tok-123-very-secret",
            "ELASTIC_SECURITY_ALERT_STATUSES": "open,bogus",
            "ELASTIC_SECURITY_TLP": "purple",
            "CONNECTOR_DURATION_PERIOD": "every hour",
            "ELASTIC_SECURITY_PAGE_SIZE": "0",
        },
    )
    with pytest.raises(ConfigurationError) as info:
        ElasticIncidentsConfig.load()
    problems = info.value.problems
    assert set(problems) == {
        "OPENCTI_URL",
        "ELASTIC_SECURITY_VERIFY_SSL",
        "ELASTIC_SECURITY_ALERT_STATUSES",
        "ELASTIC_SECURITY_TLP",
        "CONNECTOR_DURATION_PERIOD",
        "ELASTIC_SECURITY_PAGE_SIZE",
    }
    assert "bogus" in problems["ELASTIC_SECURITY_ALERT_STATUSES"]
    assert "tok-123-very-secret" not in str(info.value)


def test_yaml_file_with_environment_winning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        "opencti:\n  url: http://from-file:8080\n  token: file-token\n"
        "connector:\n  id: from-file\n  log_level: debug\n"
        "sentinel_incidents:\n  tenant_id: t1\n  client_id: c1\n  client_secret: s1\n"
        "  import_start_date: '2023-05-06'\n  target_product: Microsoft Defender ATP\n"
    )
    monkeypatch.setenv("OPENCTI_URL", "http://from-env:8080")
    config = SentinelIncidentsConfig.load(config_file)
    assert config.opencti.url == "http://from-env:8080"
    assert config.connector.id == "from-file"
    assert config.connector.log_level == "debug"
    assert config.connector.name == "Sentinel Incidents"
    settings = config.sentinel_incidents
    assert settings.import_start_date == datetime(2023, 5, 6, tzinfo=UTC)
    assert settings.target_product == "Microsoft Defender ATP"
    assert settings.api_base_url == "https://graph.microsoft.com"


@pytest.mark.parametrize(
    ("content", "reason"),
    [("opencti: [unclosed", "not valid YAML"), ("- a\n- b\n", "must map group names")],
)
def test_broken_yaml_is_a_configuration_error(tmp_path: Path, content: str, reason: str) -> None:
    config_file = tmp_path / "config.yml"
    config_file.write_text(content)
    with pytest.raises(ConfigurationError) as info:
        ElasticIncidentsConfig.load(config_file)
    assert reason in info.value.problems["--config"]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        ElasticIncidentsConfig.load(tmp_path / "nope.yml")
    assert "cannot read" in info.value.problems["--config"]


def test_offline_load_needs_only_the_siem_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELASTIC_SECURITY_URL", "https://es:9200")
    config = ElasticIncidentsConfig.load(offline=True)
    assert config.elastic_security.url == "https://es:9200"
    monkeypatch.setenv("CONNECTOR_LOG_LEVEL", "DEBUG")
    assert ElasticIncidentsConfig.load(offline=True).connector.log_level == "debug"


@pytest.mark.parametrize("name", sorted(CONNECTOR_CONFIGS))
def test_every_connector_reports_its_required_settings(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CONNECTOR_CONFIGS[name].load()
    assert {"OPENCTI_URL", "OPENCTI_TOKEN", "CONNECTOR_ID"} <= set(info.value.problems)
    assert len(info.value.problems) >= 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT30M", timedelta(minutes=30)),
        ("P1D", timedelta(days=1)),
        ("PT1H30M5S", timedelta(hours=1, minutes=30, seconds=5)),
        ("P2W", timedelta(weeks=2)),
        ("3600", timedelta(hours=1)),
        ("pt5m", timedelta(minutes=5)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["P", "PT", "30 minutes", "P1Y", "-PT5M", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_duration(text)


def test_dates_and_lists() -> None:
    assert parse_datetime("2024-01-02") == datetime(2024, 1, 2, tzinfo=UTC)
    assert parse_datetime("2024-01-02T03:04:05Z") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_datetime("2024-01-02T05:04:05+02:00") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_datetime("02/01/2024")
    assert split_list("a, b,,c ") == ["a", "b", "c"]
    assert split_list('["x", "y"]') == ["x", "y"]
    with pytest.raises(ValueError):
        split_list("[broken")


def test_status_mappings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**BASE, "ELASTIC_SECURITY_URL": "https://es:9200"}
    setenv(monkeypatch, env)
    settings = ElasticIncidentsConfig.load().elastic_security
    assert settings.alert_status_mapping["acknowledged"] == "IN_PROGRESS"
    assert settings.case_status_mapping == {"open": "NEW", "in-progress": "IN_PROGRESS", "closed": "CLOSED"}
    setenv(
        monkeypatch,
        {
            "ELASTIC_SECURITY_ALERT_STATUS_MAPPING": "Open:Triage, closed : Done",
            "ELASTIC_SECURITY_CASE_STATUS_MAPPING": "none",
        },
    )
    settings = ElasticIncidentsConfig.load().elastic_security
    assert settings.alert_status_mapping == {"open": "Triage", "closed": "Done"}
    assert settings.case_status_mapping == {}
    setenv(
        monkeypatch,
        {
            "ELASTIC_SECURITY_ALERT_STATUS_MAPPING": "open:NEW,resolved:CLOSED",
            "ELASTIC_SECURITY_CASE_STATUS_MAPPING": "open",
        },
    )
    with pytest.raises(ConfigurationError) as info:
        ElasticIncidentsConfig.load()
    problems = info.value.problems
    assert set(problems) == {"ELASTIC_SECURITY_ALERT_STATUS_MAPPING", "ELASTIC_SECURITY_CASE_STATUS_MAPPING"}
    assert "resolved" in problems["ELASTIC_SECURITY_ALERT_STATUS_MAPPING"]
    assert "pairs" in problems["ELASTIC_SECURITY_CASE_STATUS_MAPPING"]


def test_sentinel_status_mappings_take_graph_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(
        monkeypatch,
        {
            **BASE,
            "SENTINEL_INCIDENTS_TENANT_ID": "t",
            "SENTINEL_INCIDENTS_CLIENT_ID": "c",
            "SENTINEL_INCIDENTS_CLIENT_SECRET": "s",
            "SENTINEL_INCIDENTS_INCIDENT_STATUS_MAPPING": "active:NEW,awaitingAction:PENDING",
        },
    )
    settings = SentinelIncidentsConfig.load().sentinel_incidents
    assert settings.incident_status_mapping == {"active": "NEW", "awaitingaction": "PENDING"}
    assert settings.alert_status_mapping["inprogress"] == "IN_PROGRESS"
    monkeypatch.setenv("SENTINEL_INCIDENTS_ALERT_STATUS_MAPPING", "dismissed:CLOSED")
    with pytest.raises(ConfigurationError) as info:
        SentinelIncidentsConfig.load()
    assert "dismissed" in info.value.problems["SENTINEL_INCIDENTS_ALERT_STATUS_MAPPING"]


@pytest.mark.parametrize(
    "text",
    [
        '{"open": null}',
        '{"open": ""}',
        '{"open": ["NEW"]}',
        "open:NEW,OPEN:CLOSED",
        '["open", "NEW"]',
        ":NEW",
    ],
)
def test_bad_status_mappings_are_refused(text: str) -> None:
    from ctibridge.config.types import parse_status_map

    with pytest.raises(ValueError):
        parse_status_map(text)
