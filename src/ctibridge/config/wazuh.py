"""`WAZUH_*` settings: the connection and the TLP ceiling every lookup needs."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from ctibridge.config.base import ConnectorConfig, SettingsGroup
from ctibridge.config.types import TlpLevel


class WazuhSettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="WAZUH_")
    section: ClassVar[str] = "wazuh"

    max_tlp: TlpLevel
    app_url: str | None = None
    system_name: str = "Wazuh SIEM"
    author_name: str = "Wazuh"


class WazuhOpenSearchSettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="WAZUH_OPENSEARCH_")
    section: ClassVar[str] = "wazuh_opensearch"

    url: str
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    index: str = "wazuh-alerts-4.x-*"
    search_after: str = "P30D"
    limit: int = Field(default=50, ge=1)
    timeout: float = Field(default=20.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class WazuhEnrichmentConfig(ConnectorConfig):
    wazuh: WazuhSettings
    wazuh_opensearch: WazuhOpenSearchSettings
    connector_defaults: ClassVar[dict[str, object]] = {
        "name": "Wazuh",
        "scope": "artifact,directory,domain-name,email-addr,hostname,ipv4-addr,ipv6-addr,mac-addr,"
        "network-traffic,process,stixfile,url,user-account,user-agent,windows-registry-key,"
        "windows-registry-value-type,vulnerability,indicator",
    }
    connector_type: ClassVar[str] = "INTERNAL_ENRICHMENT"
