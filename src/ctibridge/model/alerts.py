"""SIEM-agnostic alerts, cases and sightings: what every SIEM mapping produces.

Severity and status are normalised to OpenCTI's vocabularies here, once, so the STIX builder never
needs to know which SIEM an alert came from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from ctibridge.model.observables import Hostname, IPAddress, Observable, UserAccount


class Severity(enum.StrEnum):
    """OpenCTI's incident_severity_ov / case_severity_ov values, ordered by rank."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @property
    def priority(self) -> str:
        """case_priority_ov: critical P1, high P2, medium P3, low P4."""
        return f"P{4 - self.rank}"


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


@dataclass(frozen=True, slots=True)
class Technique:
    """A MITRE ATT&CK technique or sub-technique (`T1059`, `T1059.001`)."""

    id: str
    name: str | None = None
    tactics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """A way back to the record in the SIEM (alert page, rule page, case page)."""

    source_name: str
    url: str | None = None
    external_id: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    """A monitored system: becomes a system Identity (targeted) and a Hostname observable."""

    name: str
    hostname: Hostname | None = None
    ips: tuple[IPAddress, ...] = ()
    id: str | None = None
    os: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    id: str | None = None
    description: str | None = None
    type: str | None = None
    url: str | None = None


@dataclass(slots=True)
class Alert:
    """One SIEM alert. `created` is the alert's own time and takes part in its OpenCTI id."""

    source: str
    id: str
    name: str
    created: datetime
    description: str = ""
    rule: Rule | None = None
    severity: Severity | None = None
    risk_score: float | None = None
    status: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    updated: datetime | None = None
    tags: list[str] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    users: list[UserAccount] = field(default_factory=list)
    observables: list[Observable] = field(default_factory=list)
    techniques: list[Technique] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    raw_ref: str | None = None
    incident_type: str = "alert"


@dataclass(frozen=True, slots=True)
class Comment:
    text: str
    created: datetime
    author: str | None = None
    id: str | None = None


@dataclass(slots=True)
class Case:
    """A SIEM case/incident grouping alerts; becomes an OpenCTI Case-Incident."""

    source: str
    id: str
    name: str
    created: datetime
    description: str = ""
    updated: datetime | None = None
    status: str | None = None
    severity: Severity | None = None
    priority: str | None = None
    tags: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    alert_refs: list[str] = field(default_factory=list)
    observables: list[Observable] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    response_types: list[str] = field(default_factory=list)


def severity_from_score(score: float | None) -> Severity | None:
    """Elastic's risk-score bands (0-100): 0-21 low, 22-47 medium, 48-73 high, 74 and up critical."""
    if score is None:
        return None
    if score >= 74:
        return Severity.CRITICAL
    if score >= 48:
        return Severity.HIGH
    if score >= 22:
        return Severity.MEDIUM
    return Severity.LOW


def parse_severity(value: object) -> Severity | None:
    """Read a severity word in any case; `informational`/`unknown` are low, the floor of OpenCTI's scale."""
    if not isinstance(value, str):
        return None
    return _SEVERITY_WORDS.get(value.strip().lower())


# A dict rather than `Severity(text)`: the Enum lookup costs more than the rest of an alert's severity.
_SEVERITY_WORDS = {
    **{word: Severity.LOW for word in ("informational", "info", "unknown", "none")},
    **{severity.value: severity for severity in Severity},
}
