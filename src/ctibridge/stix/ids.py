"""Deterministic STIX ids, equal to the ids OpenCTI computes, so reruns update instead of duplicating.

SDO and relationship ids come from pycti's own generators. SCO ids follow the STIX 2.1 algorithm
(uuid5 over the canonical JSON of the id-contributing properties), which is also what OpenCTI uses.
Timestamps are hashed exactly as they are emitted, so both always go through `format_time`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pycti import (
    AttackPattern,
    CaseIncident,
    Identity,
    Incident,
    Indicator,
    Malware,
    Note,
    StixCoreRelationship,
    StixSightingRelationship,
    Vulnerability,
)
from stix2.canonicalization.Canonicalize import canonicalize

SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")

# STIX 2.1 id-contributing properties per SCO type (OpenCTI custom types key on `value`).
ID_CONTRIBUTING: dict[str, tuple[str, ...]] = {
    "artifact": ("hashes", "payload_bin"),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "email-message": ("from_ref", "subject", "body"),
    "file": ("hashes", "name", "parent_directory_ref", "extensions"),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "network-traffic": (
        "start",
        "end",
        "src_ref",
        "dst_ref",
        "src_port",
        "dst_port",
        "protocols",
        "extensions",
    ),
    "software": ("name", "cpe", "swid", "vendor", "version"),
    "url": ("value",),
    "user-account": ("account_type", "user_id", "account_login"),
    "windows-registry-key": ("key", "values"),
    "x509-certificate": ("hashes", "serial_number"),
    "hostname": ("value",),
    "user-agent": ("value",),
    # STIX gives process no contributing properties (random ids); OpenCTI keys it on these.
    "process": ("command_line", "pid"),
}
_HASH_PREFERENCE = ("MD5", "SHA-1", "SHA-256", "SHA-512")
_UUID4_TYPES = frozenset({"process"})


def format_time(value: datetime) -> str:
    """STIX timestamp with milliseconds and `Z`, the one form we emit and hash."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _one_hash(hashes: dict[str, str]) -> dict[str, str]:
    for name in _HASH_PREFERENCE:
        if name in hashes:
            return {name: hashes[name]}
    first = next(iter(hashes))
    return {first: hashes[first]}


def sco_id(stix_type: str, properties: dict[str, Any]) -> str:
    """Id of a cyber observable from its properties (only the contributing ones count)."""
    contributing = {}
    for name in ID_CONTRIBUTING[stix_type]:
        value = properties.get(name)
        if value is None or value == [] or value == {}:
            continue
        contributing[name] = _one_hash(value) if name == "hashes" else value
    if not contributing:
        raise ValueError(f"{stix_type} has none of its id-contributing properties")
    digest = uuid.uuid5(SCO_NAMESPACE, canonicalize(contributing, utf8=False))
    if stix_type in _UUID4_TYPES:
        # STIX demands a UUIDv4 here; a v4-formatted id derived from the content keeps reruns stable.
        digest = uuid.UUID(bytes=digest.bytes, version=4)
    return f"{stix_type}--{digest}"


def incident_id(name: str, created: str) -> str:
    return Incident.generate_id(name, created)


def case_incident_id(name: str, created: str) -> str:
    return CaseIncident.generate_id(name, created)


def identity_id(name: str, identity_class: str) -> str:
    return Identity.generate_id(name, identity_class)


def attack_pattern_id(name: str, mitre_id: str | None) -> str:
    return AttackPattern.generate_id(name, mitre_id)


def vulnerability_id(name: str) -> str:
    return Vulnerability.generate_id(name)


def malware_id(name: str) -> str:
    return Malware.generate_id(name)


def indicator_id(pattern: str) -> str:
    return Indicator.generate_id(pattern)


def note_id(content: str, created: str, abstract: str | None = None) -> str:
    return Note.generate_id(created, content, abstract)


def relationship_id(
    relationship_type: str,
    source_ref: str,
    target_ref: str,
    start_time: str | None = None,
    stop_time: str | None = None,
) -> str:
    return StixCoreRelationship.generate_id(relationship_type, source_ref, target_ref, start_time, stop_time)


def sighting_id(
    sighting_of_ref: str,
    where_sighted_refs: list[str],
    first_seen: str | None = None,
    last_seen: str | None = None,
) -> str:
    return StixSightingRelationship.generate_id(sighting_of_ref, where_sighted_refs, first_seen, last_seen)
