"""`WAZUH_*` settings of the Wazuh enrichment connector, named as the community connector names them.

Four groups: `WAZUH_*` (what to create from a hunt), `WAZUH_OPENSEARCH_*` (how to reach and filter the
alert indices), `WAZUH_SEARCH_*` (how each entity type is searched) and `WAZUH_ENRICH_*` (which observables
an enrichment creates). Set values accept a JSON list or a comma list; enum values ignore case, dashes,
underscores and spaces (`per-sighting`, `PER_SIGHTING`, `PerSighting`... all work).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ctibridge.config.base import ConnectorConfig, SettingsGroup
from ctibridge.config.types import (
    CommaList,
    LowerCommaList,
    TlpLevel,
    parse_datetime,
    parse_duration,
    split_list,
)
from ctibridge.stix.markings import Tlp, parse_tlp

_E = TypeVar("_E", bound=enum.Enum)


def enum_key(text: str) -> str:
    """Spelling-insensitive key: `Per_Alert-Rule`, `per alert rule` and `peralertrule` compare equal."""
    return re.sub(r"[\s_\-]+", "", text).lower()


def parse_enum(cls: type[_E], value: Any) -> _E:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        wanted = enum_key(value)
        for member in cls:
            if enum_key(str(member.value)) == wanted or enum_key(member.name) == wanted:
                return member
    choices = ", ".join(str(m.value) for m in cls)
    raise ValueError(f"expected one of: {choices}")


def _enum_validator(cls: type[_E]) -> Callable[[Any], _E]:
    return lambda value: parse_enum(cls, value)


def _enum_set_validator(cls: type[_E], allow_all: bool = True) -> Callable[[Any], frozenset[_E]]:
    def parse(value: Any) -> frozenset[_E]:
        items = split_list(list(value) if isinstance(value, frozenset) else value)
        if allow_all and any(enum_key(item) == "all" for item in items):
            return frozenset(cls)
        if any(enum_key(item) == "none" for item in items):
            return frozenset()
        return frozenset(parse_enum(cls, item) for item in items)

    return parse


def EnumSet(cls: type[_E]) -> Any:
    """A set of enum members from a JSON list or comma list; `all` = every member, `none` = empty."""
    return Annotated[frozenset[cls], NoDecode, BeforeValidator(_enum_set_validator(cls))]  # type: ignore[valid-type]


def _optional_int(value: Any) -> Any:
    """Empty, `none` or `null` switch a limit off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    return value


def _tlp_list(value: Any) -> list[Tlp]:
    if isinstance(value, list | tuple | set | frozenset):
        items = [item if isinstance(item, Tlp) else str(item) for item in value]
    else:
        items = split_list(value)
    return sorted({parse_tlp(item) for item in items})


TlpList = Annotated[list[Tlp], NoDecode, BeforeValidator(_tlp_list)]
OptionalLimit = Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(_optional_int)]


class IncidentCreateMode(enum.StrEnum):
    """How many incidents a hunt creates, from fewest to most."""

    NEVER = "never"
    PER_QUERY = "per-query"
    PER_SIGHTING = "per-sighting"
    PER_ALERT_RULE = "per-alert-rule"
    PER_ALERT = "per-alert"


class WazuhSettings(SettingsGroup):
    """What a hunt creates in OpenCTI and when: sightings, incidents, the case, notes and links."""

    # Empty is a value here, as in the official connector: it switches a limit or a window off.
    model_config = SettingsConfigDict(env_prefix="WAZUH_", env_ignore_empty=False)
    section: ClassVar[str] = "wazuh"

    # Lookups and identities
    max_tlp: TlpLevel
    tlps: TlpList = Field(default_factory=lambda: [Tlp.AMBER_STRICT])
    app_url: str | None = None
    # The dashboard's index pattern in alert links; a site may have created its own for the alert indices.
    app_index_pattern_id: str = Field(default="wazuh-alerts-*", min_length=1)
    system_name: str = Field(default="Wazuh SIEM", min_length=1)
    author_name: str = Field(default="Wazuh", min_length=1)
    agents_as_systems: bool = True
    create_agent_ip_observable: bool = True
    create_agent_hostname_observable: bool = True
    ignore_own_entities: bool = False
    label_ignore_list: LowerCommaList = Field(default_factory=lambda: ["hygiene", "wazuh_ignore"])
    enrich_labels: LowerCommaList = Field(default_factory=lambda: ["wazuh_ignore"])
    # Abort limits: a hunt past them creates nothing (noise guard)
    hits_abort_limit: OptionalLimit = 1000
    system_abort_limit: OptionalLimit = None
    bundle_abort_limit: OptionalLimit = 500
    # Sightings, links and notes
    create_obs_sightings: bool = True
    max_extrefs: int = Field(default=10, ge=0)
    max_extrefs_per_alert_rule: int = Field(default=2, ge=0)
    max_notes: int = Field(default=10, ge=0)
    max_notes_per_alert_rule: int = Field(default=2, ge=0)
    alert_note_full_document: bool = False
    create_sighting_summary: bool = True
    create_incident_summary: bool = True
    # Indicator requirements
    require_indicator_for_incidents: bool = True
    require_indicator_detection: bool = False
    ignore_revoked_indicators: bool = True
    indicator_score_threshold: int | None = Field(default=None, ge=0, le=100)
    # Incidents and the case
    create_incident: IncidentCreateMode = IncidentCreateMode.PER_SIGHTING
    create_incident_threshold: int = Field(default=1, ge=0, le=16)
    rule_exclude_list: CommaList = Field(default_factory=list)
    incident_rule_exclude_list: CommaList = Field(default_factory=list)
    vulnerability_incident_cvss3_score_threshold: float | None = Field(default=None, ge=0, le=10)
    vulnerability_incident_active_only: bool = True
    create_incident_response: bool = True

    @field_validator("create_incident", mode="before")
    @classmethod
    def _incident_mode(cls, value: Any) -> IncidentCreateMode:
        return parse_enum(IncidentCreateMode, value)

    @field_validator(
        "indicator_score_threshold", "vulnerability_incident_cvss3_score_threshold", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return _optional_int(value)

    @field_validator("app_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("max_extrefs_per_alert_rule", "max_notes_per_alert_rule")
    @classmethod
    def _per_rule_within_total(cls, value: int, info: ValidationInfo) -> int:
        total = info.field_name.removesuffix("_per_alert_rule") if info.field_name else ""
        if total in info.data and value > info.data[total]:
            raise ValueError(f"must not exceed WAZUH_{total.upper()}")
        return value

    @property
    def marking_ids(self) -> list[str]:
        return [tlp.marking_id for tlp in self.tlps]


# -- OpenSearch


class Match(BaseModel):
    """`field=value`: an exact (keyword) match on one alert field."""

    model_config = {"frozen": True}
    field: str = Field(min_length=1)
    query: str


class OrderBy(BaseModel):
    model_config = {"frozen": True}
    field: str = Field(min_length=1)
    order: str = "desc"

    @field_validator("order")
    @classmethod
    def _order(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("asc", "desc"):
            raise ValueError("order must be asc or desc")
        return value


def _parse_matches(value: Any) -> list[Match]:
    """`a=b,c=d`, a JSON list of `{"field", "query"}` or a JSON object `{"field": "value" | [values]}`."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text[0] in "[{":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError("not valid JSON") from exc
        else:
            value = [item for item in text.split(",") if item.strip()]
    if isinstance(value, dict):
        pairs: list[Any] = []
        for key, item in value.items():
            pairs.extend({"field": key, "query": v} for v in (item if isinstance(item, list) else [item]))
        value = pairs
    if not isinstance(value, list):
        raise ValueError("expected field=value pairs separated by commas, or JSON")
    out = []
    for item in value:
        if isinstance(item, Match):
            out.append(item)
        elif isinstance(item, dict):
            out.append(Match(field=str(item.get("field", "")).strip(), query=str(item.get("query", ""))))
        elif isinstance(item, str) and "=" in item:
            name, query = item.split("=", 1)
            out.append(Match(field=name.strip(), query=query.strip()))
        else:
            raise ValueError("expected field=value pairs separated by commas, or JSON")
    return out


def _parse_order(value: Any) -> list[OrderBy]:
    """`@timestamp:desc,rule.level:desc` or JSON (`[{"field": ..., "order": ...}]` or sort-style objects)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError("not valid JSON") from exc
        else:
            value = [item for item in text.split(",") if item.strip()]
    if isinstance(value, dict):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, OrderBy):
            out.append(item)
        elif isinstance(item, str):
            name, _, order = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "desc")
            out.append(OrderBy(field=name.strip(), order=order or "desc"))
        elif isinstance(item, dict) and "field" in item:
            out.append(OrderBy(field=str(item["field"]), order=str(item.get("order", "desc"))))
        elif isinstance(item, dict) and len(item) == 1:
            ((name, order),) = item.items()
            order = order.get("order", "desc") if isinstance(order, dict) else order
            out.append(OrderBy(field=str(name), order=str(order)))
        else:
            raise ValueError("expected field:asc|desc pairs separated by commas, or JSON")
    return out


def _parse_filter(value: Any) -> list[dict[str, Any]]:
    """Raw query DSL clauses, a JSON object or list of objects; added to the bool filter as given."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError("expected a JSON query object or a JSON list of query objects") from exc
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, dict) and item for item in value):
        raise ValueError("expected a JSON query object or a JSON list of query objects")
    return list(value)


def _parse_look_back(value: Any) -> timedelta | datetime | None:
    """ISO-8601 duration (`P30D`: relative to each search) or an absolute date-time; empty = no limit."""
    if value is None or isinstance(value, timedelta | datetime):
        return value
    text = str(value).strip()
    if text.lower() in ("", "none", "null"):
        return None
    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_datetime(text)
    except ValueError:
        raise ValueError("expected an ISO-8601 duration such as P30D, or an ISO-8601 date-time") from None


# The OpenCTI -> Wazuh integration (wazuh-opencti) writes its alerts with `data.integration: opencti`
# under rules in the `opencti` group; hunting those would sight our own intelligence.
DEFAULT_EXCLUDE_MATCH = (
    Match(field="data.integration", query="opencti"),
    Match(field="rule.groups", query="opencti"),
)


class WazuhOpenSearchSettings(SettingsGroup):
    """How to reach the Wazuh indexer and which alerts a hunt considers."""

    model_config = SettingsConfigDict(env_prefix="WAZUH_OPENSEARCH_", env_ignore_empty=False)
    section: ClassVar[str] = "wazuh_opensearch"

    url: str
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    index: str = Field(default="wazuh-alerts-*", min_length=1)
    search_after: Annotated[timedelta | datetime | None, BeforeValidator(_parse_look_back)] = timedelta(
        days=30
    )
    include_match: Annotated[list[Match], NoDecode, BeforeValidator(_parse_matches)] = Field(
        default_factory=list
    )
    exclude_match: Annotated[list[Match], NoDecode, BeforeValidator(_parse_matches)] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE_MATCH)
    )
    limit: int = Field(default=50, ge=1, le=10_000)
    page_size: int = Field(default=500, ge=1, le=10_000)
    order_by: Annotated[list[OrderBy], NoDecode, BeforeValidator(_parse_order)] = Field(
        default_factory=lambda: [OrderBy(field="@timestamp", order="desc")]
    )
    filter: Annotated[list[dict[str, Any]], NoDecode, BeforeValidator(_parse_filter)] = Field(
        default_factory=list
    )
    timeout: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=3, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("client_key")
    @classmethod
    def _key_needs_cert(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and not info.data.get("client_cert"):
            raise ValueError("needs WAZUH_OPENSEARCH_CLIENT_CERT as well")
        return value


# -- Search options per entity type


class FileSearchOption(enum.StrEnum):
    SEARCH_SIZE = "search-size"  # with a name, also require the size (syscheck.size_after)
    SEARCH_NAME_AND_HASH = "search-name-and-hash"  # with hashes and a name, require both
    SEARCH_FILENAME_ONLY = "search-filename-only"  # without hashes, search the name(s)
    SEARCH_ADDITIONAL_FILENAMES = "search-additional-filenames"  # x_opencti_additional_names too
    BASENAME_ONLY = "basename-only"  # strip a path from name before searching
    INCLUDE_PARENT_DIR_REF = "include-parent-dir-ref"  # join parent_directory_ref.path to the name
    REQUIRE_ABS_PATH = "require-abs-path"  # never search a bare file name
    CASE_INSENSITIVE = "case-insensitive"  # names and paths ignore case (term case_insensitive)
    MATCH_BASENAME = "match-basename"  # a bare name matches paths ending in it (escaped wildcard)
    ALLOW_REGEXP = "allow-regexp"  # regexp: any number of backslashes in paths


class DirSearchOption(enum.StrEnum):
    MATCH_SUBDIRS = "match-subdirs"  # /a/b also matches /a/b/c (prefix on the path + separator)
    SEARCH_FILENAMES = "search-filenames"  # also look in fields holding file paths (prefix)
    CASE_INSENSITIVE = "case-insensitive"
    REQUIRE_ABS_PATH = "require-abs-path"
    NORMALISE_BACKSLASHES = "normalise-backslashes"  # search single and doubled backslash forms
    IGNORE_TRAILING_SLASH = "ignore-trailing-slash"
    ALLOW_REGEXP = "allow-regexp"  # regexp: any number of backslashes


class ProcessSearchOption(enum.StrEnum):
    CASE_INSENSITIVE = "case-insensitive"
    NORMALISE_BACKSLASHES = "normalise-backslashes"


class RegKeySearchOption(enum.StrEnum):
    MATCH_SUBDIRS = "match-subdirs"  # the key also matches its sub-keys (prefix)
    REQUIRE_ABS_PATH = "require-abs-path"  # the key must start with a hive
    IGNORE_TRAILING_SLASH = "ignore-trailing-slash"
    CASE_INSENSITIVE = "case-insensitive"
    SEARCH_HIVE_ALIASES = "search-hive-aliases"  # HKLM and HKEY_LOCAL_MACHINE alike
    NORMALISE_BACKSLASHES = "normalise-backslashes"
    IGNORE_SID = "ignore-sid"  # needs allow-regexp: any SID in HKEY_USERS\<SID>\...
    ALLOW_REGEXP = "allow-regexp"


class WazuhSearchSettings(SettingsGroup):
    """How each entity type is searched; keyword-exact by default, wildcard/regexp only when asked."""

    model_config = SettingsConfigDict(env_prefix="WAZUH_SEARCH_", env_ignore_empty=False)
    section: ClassVar[str] = "wazuh_search"

    fields_version: str = Field(default="4.x", min_length=1)
    fields_file: str | None = None
    filesearch_options: EnumSet(FileSearchOption) = frozenset(
        {
            FileSearchOption.SEARCH_SIZE,
            FileSearchOption.SEARCH_ADDITIONAL_FILENAMES,
            FileSearchOption.INCLUDE_PARENT_DIR_REF,
            FileSearchOption.SEARCH_FILENAME_ONLY,
            FileSearchOption.CASE_INSENSITIVE,
            FileSearchOption.MATCH_BASENAME,
        }
    )
    dirsearch_options: EnumSet(DirSearchOption) = frozenset(
        {
            DirSearchOption.MATCH_SUBDIRS,
            DirSearchOption.SEARCH_FILENAMES,
            DirSearchOption.NORMALISE_BACKSLASHES,
            DirSearchOption.IGNORE_TRAILING_SLASH,
            DirSearchOption.CASE_INSENSITIVE,
        }
    )
    procsearch_options: EnumSet(ProcessSearchOption) = frozenset(
        {ProcessSearchOption.CASE_INSENSITIVE, ProcessSearchOption.NORMALISE_BACKSLASHES}
    )
    regkeysearch_options: EnumSet(RegKeySearchOption) = frozenset(
        {
            RegKeySearchOption.MATCH_SUBDIRS,
            RegKeySearchOption.IGNORE_TRAILING_SLASH,
            RegKeySearchOption.CASE_INSENSITIVE,
            RegKeySearchOption.SEARCH_HIVE_ALIASES,
            RegKeySearchOption.NORMALISE_BACKSLASHES,
        }
    )
    lookup_agent_ip: bool = False
    lookup_agent_name: bool = False
    ignore_private_addrs: bool = True
    lookup_mac_variants: bool = True
    lookup_hashes_in_sysmon: bool = True
    lookup_hostnames_in_cmd_line: bool = False
    lookup_url_without_host: bool = False
    lookup_url_ignore_trailing_slash: bool = False
    case_insensitive_domains: bool = True
    case_insensitive_emails: bool = True
    case_insensitive_users: bool = False

    @field_validator("regkeysearch_options")
    @classmethod
    def _sid_needs_regexp(cls, value: frozenset[RegKeySearchOption]) -> frozenset[RegKeySearchOption]:
        if RegKeySearchOption.IGNORE_SID in value and RegKeySearchOption.ALLOW_REGEXP not in value:
            raise ValueError("ignore-sid needs allow-regexp")
        return value


# -- Enrichment


class EnrichEntityType(enum.StrEnum):
    ACCOUNT = "user-account"
    ATTACK_PATTERN = "attack-pattern"
    DIRECTORY = "directory"
    DOMAIN = "domain-name"
    EMAIL_ADDR = "email-addr"
    FILE = "file"
    IPV4_ADDRESS = "ipv4-addr"
    IPV6_ADDRESS = "ipv6-addr"
    MAC = "mac-addr"
    NETWORK_TRAFFIC = "network-traffic"
    PROCESS = "process"
    REGISTRY_KEY = "windows-registry-key"
    SOFTWARE = "software"
    URL = "url"
    USER_AGENT = "user-agent"
    VULNERABILITY = "vulnerability"


class FilenameBehaviour(enum.StrEnum):
    CREATE_DIR = "create-dir"  # a Directory as parent_directory_ref of every File with a path
    REMOVE_PATH = "remove-path"  # File name without its path (the path goes to the Directory)


class WazuhEnrichSettings(SettingsGroup):
    """Which observables an enrichment (when an incident is made) creates from the matching alerts."""

    model_config = SettingsConfigDict(env_prefix="WAZUH_ENRICH_", env_ignore_empty=False)
    section: ClassVar[str] = "wazuh_enrich"

    types: EnumSet(EnrichEntityType) = frozenset(EnrichEntityType)
    filename_behaviour: EnumSet(FilenameBehaviour) = frozenset(
        {FilenameBehaviour.CREATE_DIR, FilenameBehaviour.REMOVE_PATH}
    )


class WazuhEnrichmentConfig(ConnectorConfig):
    wazuh: WazuhSettings
    wazuh_opensearch: WazuhOpenSearchSettings
    wazuh_search: WazuhSearchSettings
    wazuh_enrich: WazuhEnrichSettings
    connector_defaults: ClassVar[dict[str, object]] = {
        "name": "Wazuh",
        "scope": "artifact,directory,domain-name,email-addr,hostname,ipv4-addr,ipv6-addr,mac-addr,"
        "network-traffic,process,stixfile,url,user-account,user-agent,windows-registry-key,"
        "windows-registry-value-type,vulnerability,indicator,software",
    }
    connector_type: ClassVar[str] = "INTERNAL_ENRICHMENT"
