"""`ELASTIC_SECURITY_*` settings, named as the official Elastic Security connectors name them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from ctibridge.config.base import ConnectorConfig, SettingsGroup
from ctibridge.config.types import (
    CommaList,
    LowerCommaList,
    StatusMap,
    TlpLevel,
    UtcDatetime,
    known_statuses,
)
from ctibridge.stix.markings import Tlp

ALERT_STATUSES = {"open", "acknowledged", "closed", "in-progress"}
CASE_STATUSES = {"open", "in-progress", "closed"}


def _seven_days_ago() -> datetime:
    return datetime.now(UTC) - timedelta(days=7)


class ElasticConnection(SettingsGroup):
    """How to reach Elasticsearch and Kibana (separate URLs; Kibana may default to the same)."""

    model_config = SettingsConfigDict(env_prefix="ELASTIC_SECURITY_")
    section: ClassVar[str] = "elastic_security"

    url: str
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    verify_ssl: bool = True
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    kibana_url: str | None = None
    kibana_space: str = "default"
    request_timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0)

    @field_validator("url", "kibana_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def kibana_base_url(self) -> str:
        return self.kibana_url or self.url


class ElasticIncidentsSettings(ElasticConnection):
    import_start_date: UtcDatetime = Field(default_factory=_seven_days_ago)
    import_alerts: bool = True
    import_cases: bool = True
    alert_statuses: LowerCommaList = Field(default_factory=list)
    alert_rule_tags: CommaList = Field(default_factory=list)
    case_statuses: LowerCommaList = Field(default_factory=list)
    alerts_index: str = ".alerts-security.alerts-*"
    page_size: int = Field(default=500, ge=1, le=10_000)
    # Alerts are searchable a moment after their @timestamp (bulk write, index refresh): a run reads up to
    # this many seconds before its start, so the checkpoint never passes an alert still on its way.
    settle_seconds: int = Field(default=120, ge=0, le=86_400)
    tlp: TlpLevel = Tlp.AMBER
    # Elastic workflow status -> OpenCTI status (a status template name in the entity's workflow).
    alert_status_mapping: StatusMap = Field(
        default_factory=lambda: {
            "open": "NEW", "acknowledged": "IN_PROGRESS", "in-progress": "IN_PROGRESS", "closed": "CLOSED"
        }
    )  # fmt: skip
    case_status_mapping: StatusMap = Field(
        default_factory=lambda: {"open": "NEW", "in-progress": "IN_PROGRESS", "closed": "CLOSED"}
    )

    @field_validator("alert_statuses", "alert_status_mapping")
    @classmethod
    def _known_alert_statuses(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        return known_statuses(value, ALERT_STATUSES)

    @field_validator("case_statuses", "case_status_mapping")
    @classmethod
    def _known_case_statuses(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        return known_statuses(value, CASE_STATUSES)


class ElasticIntelSettings(ElasticConnection):
    index_name: str = "logs-ti_custom_opencti.indicator"
    indicator_expire_time: int = Field(default=90, ge=0, description="days after the last modification")
    batch_size: int = Field(default=100, ge=1, le=10_000)
    create_rules: bool = True
    rules_enabled: bool = False
    rule_index_patterns: CommaList = Field(
        default_factory=lambda: ["logs-*", "filebeat-*", "winlogbeat-*", "auditbeat-*", "packetbeat-*"]
    )
    rule_interval: str = "5m"
    rule_lookback: str = "1m"
    max_tlp: TlpLevel = Tlp.AMBER
    dead_letter_path: str | None = None
    flush_interval: float = Field(default=2.0, gt=0, description="seconds of stream silence before a flush")
    sweep_interval: int = Field(default=3600, ge=1, description="seconds between expiry sweeps")


class ElasticIncidentsConfig(ConnectorConfig):
    elastic_security: ElasticIncidentsSettings
    connector_defaults: ClassVar[dict[str, object]] = {
        "name": "Elastic Security Incidents",
        "scope": "incident,case-incident,observable,attack-pattern,identity,note",
        "duration_period": "PT30M",
    }
    connector_type: ClassVar[str] = "EXTERNAL_IMPORT"


class ElasticIntelConfig(ConnectorConfig):
    elastic_security: ElasticIntelSettings
    connector_defaults: ClassVar[dict[str, object]] = {
        "name": "Elastic Security Intel",
        "scope": "elastic-security",
    }
    connector_type: ClassVar[str] = "STREAM"
