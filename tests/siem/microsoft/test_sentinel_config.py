"""SENTINEL_INCIDENTS_* and CONNECTOR_* names as users of the Sentinel Incidents connector write them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from ctibridge.config import SentinelIncidentsConfig
from ctibridge.errors import ConfigurationError
from ctibridge.stix import Tlp

BASE = {
    "OPENCTI_URL": "https://opencti.example:8080",
    "OPENCTI_TOKEN": "0b9a-secret-token",
    "CONNECTOR_ID": "5e2f2b0c-6a5e-4d8e-9d54-2f1f9f0e9a11",
    "SENTINEL_INCIDENTS_TENANT_ID": "8f0b4c38-5d43-4a0e-9c37-6ef2a1d1c0de",
    "SENTINEL_INCIDENTS_CLIENT_ID": "3c1f9e7a-0b6d-4f1e-8a52-2d9c7e4b5a10",
    "SENTINEL_INCIDENTS_CLIENT_SECRET": "v3ry~s3cret~value",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENCTI_", "CONNECTOR_", "SENTINEL_")):
            monkeypatch.delenv(name)


def load(monkeypatch: pytest.MonkeyPatch, **values: str) -> SentinelIncidentsConfig:
    for key, value in {**BASE, **values}.items():
        monkeypatch.setenv(key, value)
    return SentinelIncidentsConfig.load()


def test_every_documented_name(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(
        monkeypatch,
        SENTINEL_INCIDENTS_LOGIN_URL="https://login.microsoft.com/",
        SENTINEL_INCIDENTS_API_BASE_URL="https://graph.microsoft.com",
        SENTINEL_INCIDENTS_INCIDENT_PATH="v1.0/security/incidents",
        SENTINEL_INCIDENTS_TARGET_PRODUCT=" Microsoft Defender ATP ",
        SENTINEL_INCIDENTS_IMPORT_START_DATE="2023-05-06",
        SENTINEL_INCIDENTS_TLP="TLP:GREEN",
        SENTINEL_INCIDENTS_CREATE_INDICATORS="true",
        SENTINEL_INCIDENTS_PAGE_SIZE="25",
        SENTINEL_INCIDENTS_CLIENT_CERT="/etc/ssl/client.pem",
        SENTINEL_INCIDENTS_CLIENT_KEY="/etc/ssl/client.key",
        CONNECTOR_TYPE="external-import",
        CONNECTOR_NAME="Sentinel Incidents (prod)",
        CONNECTOR_SCOPE="incident,case-incident",
        CONNECTOR_LOG_LEVEL="DEBUG",
        CONNECTOR_DURATION_PERIOD="PT10M",
    )
    s = config.sentinel_incidents
    assert s.login_url == "https://login.microsoft.com" and s.api_base_url == "https://graph.microsoft.com"
    assert s.incident_path == "/v1.0/security/incidents"
    assert s.target_product == "Microsoft Defender ATP"
    assert s.import_start_date == datetime(2023, 5, 6, tzinfo=UTC)
    assert s.tlp == Tlp.GREEN and s.create_indicators and s.page_size == 25
    assert (s.client_cert, s.client_key) == ("/etc/ssl/client.pem", "/etc/ssl/client.key")
    c = config.connector
    assert c.type == "EXTERNAL_IMPORT" and c.name == "Sentinel Incidents (prod)"
    assert c.scope == ["incident", "case-incident"] and c.log_level == "debug"
    assert c.duration_period == timedelta(minutes=10)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(monkeypatch)
    s = config.sentinel_incidents
    assert s.import_start_date == datetime(2020, 1, 1, tzinfo=UTC)
    assert s.target_product == "Azure Sentinel" and s.tlp == Tlp.AMBER and not s.create_indicators
    assert s.verify_ssl and s.incident_path == "/v1.0/security/incidents"
    assert config.connector.name == "Sentinel Incidents" and config.connector.type == "EXTERNAL_IMPORT"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENTINEL_INCIDENTS_IMPORT_START_DATE", "last tuesday"),
        ("SENTINEL_INCIDENTS_LOGIN_URL", "login.microsoftonline.com"),
        ("SENTINEL_INCIDENTS_PAGE_SIZE", "0"),
        ("SENTINEL_INCIDENTS_TENANT_ID", "  "),
        ("SENTINEL_INCIDENTS_TLP", "TLP:PURPLE"),
    ],
)
def test_mistakes_are_named_without_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load(monkeypatch, **{name: value})
    assert name in info.value.problems
    assert "v3ry~s3cret~value" not in str(info.value)


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCTI_URL", BASE["OPENCTI_URL"])
    with pytest.raises(ConfigurationError) as info:
        SentinelIncidentsConfig.load()
    assert {
        "SENTINEL_INCIDENTS_TENANT_ID", "SENTINEL_INCIDENTS_CLIENT_ID", "SENTINEL_INCIDENTS_CLIENT_SECRET",
    } <= set(info.value.problems)  # fmt: skip
