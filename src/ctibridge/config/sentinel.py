"""`SENTINEL_INCIDENTS_*` settings, named as the official Sentinel Incidents connector names them."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from ctibridge.config.base import ConnectorConfig, SettingsGroup
from ctibridge.config.types import StatusMap, TlpLevel, UtcDatetime, known_statuses
from ctibridge.stix.markings import Tlp

# Graph's security incidentStatus and alertStatus members, lower-cased as the mappings key them.
INCIDENT_STATUSES = {"active", "inprogress", "awaitingaction", "resolved", "redirected"}
ALERT_STATUSES = {"new", "inprogress", "resolved", "unknown"}


class SentinelIncidentsSettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="SENTINEL_INCIDENTS_")
    section: ClassVar[str] = "sentinel_incidents"

    tenant_id: str
    client_id: str
    client_secret: SecretStr
    login_url: str = "https://login.microsoftonline.com"
    api_base_url: str = "https://graph.microsoft.com"
    incident_path: str = "/v1.0/security/incidents"
    target_product: str = "Azure Sentinel"
    import_start_date: UtcDatetime = "2020-01-01T00:00:00Z"  # type: ignore[assignment]
    tlp: TlpLevel = Tlp.AMBER
    create_indicators: bool = False
    page_size: int = Field(default=50, ge=1, le=1000)
    verify_ssl: bool = True
    ca_cert: str | None = None
    # mTLS towards a login/Graph endpoint behind a TLS-inspecting proxy that wants a client certificate.
    client_cert: str | None = None
    client_key: str | None = None
    request_timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    # Graph status -> OpenCTI status in the workflow of the object it becomes (see docs).
    incident_status_mapping: StatusMap = Field(
        default_factory=lambda: {
            "active": "NEW",
            "inprogress": "IN_PROGRESS",
            "awaitingaction": "IN_PROGRESS",
            "resolved": "CLOSED",
        }
    )
    alert_status_mapping: StatusMap = Field(
        default_factory=lambda: {"new": "NEW", "inprogress": "IN_PROGRESS", "resolved": "CLOSED"}
    )

    @field_validator("incident_status_mapping")
    @classmethod
    def _known_incident_statuses(cls, value: dict[str, str]) -> dict[str, str]:
        return known_statuses(value, INCIDENT_STATUSES)

    @field_validator("alert_status_mapping")
    @classmethod
    def _known_alert_statuses(cls, value: dict[str, str]) -> dict[str, str]:
        return known_statuses(value, ALERT_STATUSES)

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _non_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("target_product")
    @classmethod
    def _product(cls, value: str) -> str:
        return value.strip()

    @field_validator("login_url", "api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("incident_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return "/" + value.strip().lstrip("/")


class SentinelIncidentsConfig(ConnectorConfig):
    sentinel_incidents: SentinelIncidentsSettings
    connector_defaults: ClassVar[dict[str, object]] = {
        "name": "Sentinel Incidents",
        "scope": "incident,case-incident,observable,attack-pattern,identity,note",
        "duration_period": "PT5M",
    }
    connector_type: ClassVar[str] = "EXTERNAL_IMPORT"
