"""Settings groups and their loading: environment first, then `config.yml`, then defaults.

Each group is a pydantic-settings model with the environment prefix users already know (`OPENCTI_`,
`CONNECTOR_`, `ELASTIC_SECURITY_`, ...). The YAML file holds the same groups as sections
(`opencti: {url: ...}`), the layout of the official connectors' `config.yml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ctibridge.config.types import CommaList, Duration
from ctibridge.errors import ConfigurationError
from ctibridge.logs import register_secret


class SettingsGroup(BaseSettings):
    """A group of settings read from `<PREFIX><FIELD>` environment variables.

    Environment variables win over values from the YAML file, which arrive as init arguments. An empty
    variable counts as unset (a group may give empty a meaning): compose files and orchestrators pass
    `NAME=` for a value left blank.
    """

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, validate_default=True, env_ignore_empty=True
    )
    section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings

    @classmethod
    def env_name(cls, field: str) -> str:
        prefix = cls.model_config.get("env_prefix", "")
        return f"{prefix}{field}".upper()


class OpenCTISettings(SettingsGroup):
    model_config = SettingsConfigDict(env_prefix="OPENCTI_")
    section: ClassVar[str] = "opencti"

    url: str
    token: SecretStr
    # pycti defaults to no verification; a SOC tool should not.
    ssl_verify: bool = True
    json_logging: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


ConnectorType = Literal["EXTERNAL_IMPORT", "INTERNAL_ENRICHMENT", "STREAM", "INTERNAL_IMPORT_FILE"]


class ConnectorSettings(SettingsGroup):
    """The `CONNECTOR_*` names of pycti; defaults that differ per connector come from `ConnectorSpec`."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_")
    section: ClassVar[str] = "connector"

    id: str
    type: ConnectorType | None = None
    name: str | None = None
    scope: CommaList = Field(default_factory=list)
    log_level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    duration_period: Duration | None = None
    live_stream_id: str | None = None
    auto: bool = False
    queue_protocol: Literal["amqp", "api"] = "amqp"
    run_and_terminate: bool = False
    confidence_level: int | None = Field(default=None, ge=0, le=100)

    @field_validator("log_level", "queue_protocol", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper().replace("-", "_") if isinstance(value, str) else value

    @field_validator("id")
    @classmethod
    def _non_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class ConnectorConfig(BaseModel):
    """A whole connector's configuration: shared groups plus the connector's own (subclasses add it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    opencti: OpenCTISettings
    connector: ConnectorSettings

    # Defaults the official connector of that name uses (e.g. its name and run period).
    connector_defaults: ClassVar[dict[str, Any]] = {}
    connector_type: ClassVar[str] = "EXTERNAL_IMPORT"
    # Groups that offline runs (`--dry-run`, `convert`) do not need.
    platform_groups: ClassVar[tuple[str, ...]] = ("opencti", "connector")

    @classmethod
    def groups(cls) -> dict[str, type[SettingsGroup]]:
        out: dict[str, type[SettingsGroup]] = {}
        for name, info in cls.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, SettingsGroup):
                out[name] = annotation
        return out

    @classmethod
    def load(cls, config_file: Path | None = None, *, offline: bool = False) -> Self:
        """Read every group; raise one `ConfigurationError` naming every problem by environment name.

        `offline` relaxes the OpenCTI groups, which a dry run or a file conversion never contacts.
        """
        sections = read_config_file(config_file) if config_file else {}
        problems: dict[str, str] = {}
        values: dict[str, Any] = {}
        for field_name, group in cls.groups().items():
            section = dict(sections.get(group.section or field_name) or {})
            if field_name == "connector":
                for key, default in cls.connector_defaults.items():
                    section.setdefault(key, default)
                section.setdefault("type", cls.connector_type)
            if offline and field_name in cls.platform_groups:
                # Placeholders arrive as init values, so real environment values still win and validate.
                section = {**_OFFLINE_PLACEHOLDERS, **section}
            try:
                values[field_name] = group(**section)
            except ValidationError as exc:
                problems.update(describe_errors(group, exc))
        if problems:
            raise ConfigurationError(problems)
        config = cls(**values)
        config.register_secrets()
        return config

    def register_secrets(self) -> None:
        """Tell the log redactor every secret value, so none can reach a log line."""
        for field_name in self.groups():
            group = getattr(self, field_name)
            for value in group.__dict__.values():
                if isinstance(value, SecretStr):
                    register_secret(value.get_secret_value())


# What only the OpenCTI connection needs; offline runs never contact it.
_OFFLINE_PLACEHOLDERS = {"url": "http://offline.invalid", "token": "offline", "id": "offline"}


_REASONS = {
    "missing": "required, not set",
    "bool_parsing": "expected a boolean (true/false, yes/no, 1/0)",
    "int_parsing": "expected a whole number",
}


def describe_errors(group: type[SettingsGroup], error: ValidationError) -> dict[str, str]:
    """Map pydantic errors to `{ENV_NAME: reason}` without ever including the input value."""
    problems: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else "?"
        reason = _REASONS.get(item["type"]) or item["msg"]
        reason = reason.removeprefix("Value error, ")
        problems[group.env_name(field)] = reason
    return problems


def read_config_file(path: Path) -> dict[str, Mapping[str, Any]]:
    """Load `config.yml` sections; a broken file is a configuration error, not a traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError({"--config": f"cannot read {path}: {exc.strerror}"}) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigurationError({"--config": f"{path} is not valid YAML{where}"}) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise ConfigurationError(
            {"--config": f"{path} must map group names (opencti, connector, ...) to settings"}
        )
    return {str(k).lower(): (v or {}) for k, v in data.items()}
