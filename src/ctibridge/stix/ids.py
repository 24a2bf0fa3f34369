"""Deterministic STIX ids, equal to the ids OpenCTI computes, so reruns update instead of duplicating.

SDO and relationship ids come from pycti's own generators. SCO ids follow the STIX 2.1 algorithm
(uuid5 over the canonical JSON of the id-contributing properties), which is also what OpenCTI uses.
Timestamps are hashed exactly as they are emitted, so both always go through `format_time`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from ctibridge.memo import keep


def _pycti() -> Any:
    """pycti, imported on first use: it loads its API client and a web framework (most of a second), and
    the alert path computes its ids without it; only rarer objects and odd text call its generators."""
    import pycti

    return pycti


def canonicalize(data: Any, utf8: bool = True) -> Any:
    """stix2's RFC 8785 reference implementation, imported on first use (the stix2 package is large)."""
    from stix2.canonicalization.Canonicalize import canonicalize as reference

    return reference(data, utf8=utf8)


SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
_NAMESPACE_BYTES = SCO_NAMESPACE.bytes

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
    if type(value) is not datetime or (value.tzinfo is not UTC and value.tzinfo is not None):
        return _format_time(value)
    # An alert's times recur in its neighbours' (one rule run shares them): format each once. Equal
    # UTC datetimes are the same instant, equal naive ones the same fields, so the text is the same.
    text = _FORMATTED.get(value)
    return text if text is not None else keep(_FORMATTED, value, _format_time(value), 1024)


_FORMATTED: dict[datetime, str] = {}


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Padded fields, %-formatted (fewer steps than isoformat and slicing): a four-digit year always, as
    # RFC 3339 wants; strftime would print year 99 as "99".
    return _TIME_TEXT % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000,
    )


_TIME_TEXT = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"


def _plain(value: Any) -> bool:
    """True when the stdlib encoder prints `value` exactly as RFC 8785 does.

    That holds for strings, integers (not bools or floats: JCS prints numbers the ES6 way), lists, and
    dicts with ASCII keys (JCS sorts keys by UTF-16 units, Python by code points: equal for ASCII).
    """
    kind = type(value)
    if kind is str or kind is int:
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    return False


def canonical_json(data: dict[str, Any]) -> str:
    """RFC 8785 (JCS) text, as pycti and OpenCTI hash it; the stdlib encoder where it gives the same."""
    if _plain(data):
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode("utf-8")
        except (orjson.JSONEncodeError, TypeError):  # lone surrogates, integers beyond 64 bits
            pass
    return str(canonicalize(data, utf8=False))


def uuid5_id(stix_type: str, data: dict[str, Any], *, version: int = 5) -> str:
    """`<type>--uuid5(namespace, JCS(data))`, computed without building intermediate UUID objects."""
    try:
        name = canonical_json(data).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: only the reference implementation knows them
        name = str(canonicalize(data, utf8=False)).encode("utf-8", "surrogatepass")
    return _format_id(stix_type, name, version)


def _format_id(stix_type: str, name: bytes, version: int = 5) -> str:
    digest = _NAMESPACE_SHA1.copy()
    digest.update(name)
    h = digest.hexdigest()
    # RFC 4122 version and variant nibbles, set on the hex text (uuid.uuid5 does the same on the integer).
    return f"{stix_type}--{h[:8]}-{h[8:12]}-{_HEX[version]}{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _string_id(stix_type: str, data: dict[str, str]) -> str:
    """uuid5 id of a dict of strings under ASCII keys, the shape of every SDO and relationship id.

    For strings orjson's sorted output is RFC 8785 (the property tests hold it to the reference); orjson
    refuses lone surrogates, which go through the reference implementation instead.
    """
    for value in data.values():
        if type(value) is not str:
            return uuid5_id(stix_type, data)
    try:
        return _format_id(stix_type, orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
    except orjson.JSONEncodeError:
        return uuid5_id(stix_type, data)


_NAMESPACE_SHA1 = hashlib.sha1(_NAMESPACE_BYTES)
# The variant nibble: its two high bits become 10, so 0-3 -> 8-b, 4-7 -> 8-b, and so on.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}
_HEX = [f"{n:x}" for n in range(16)]


def _one_hash(hashes: dict[str, str]) -> dict[str, str]:
    for name in _HASH_PREFERENCE:
        if name in hashes:
            return {name: hashes[name]}
    first = next(iter(hashes))
    return {first: hashes[first]}


def sco_id(stix_type: str, properties: dict[str, Any]) -> str:
    """Id of a cyber observable from its properties (only the contributing ones count)."""
    contributing = {}
    flat = True  # only strings and integers, for which orjson's sorted output is the JCS text
    for name in ID_CONTRIBUTING[stix_type]:
        value = properties.get(name)
        if value is None or value == [] or value == {}:
            continue
        if name == "hashes":
            value = _one_hash(value)
            # One algorithm and its text: orjson prints that dict as JCS does (nothing to sort).
            ((algorithm, digest),) = value.items()
            flat = flat and type(algorithm) is str and type(digest) is str
        else:
            kind = type(value)
            flat = flat and (kind is str or kind is int)
        contributing[name] = value
    if not contributing:
        raise ValueError(f"{stix_type} has none of its id-contributing properties")
    # STIX demands a UUIDv4 for processes; a v4-formatted id derived from the content keeps reruns stable.
    version = 4 if stix_type in _UUID4_TYPES else 5
    if flat:
        try:
            return _format_id(stix_type, orjson.dumps(contributing, option=orjson.OPT_SORT_KEYS), version)
        except orjson.JSONEncodeError:  # lone surrogates, integers beyond 64 bits
            pass
    return uuid5_id(stix_type, contributing, version=version)


# The SDO ids on the alert path (one incident per alert) are computed here exactly as pycti's generators
# compute them (same data dict, same JCS, same uuid5); tests/test_stix_ids.py holds them equal, including
# for hostile text. Rarer ones call pycti directly.


def incident_id(name: str, created: str) -> str:
    """`Incident.generate_id`: lower-cased, stripped name and the created text."""
    if not (type(name) is str and type(created) is str):
        return _pycti().Incident.generate_id(name, created)
    return _string_id("incident", {"name": name.lower().strip(), "created": created})


def case_incident_id(name: str, created: str) -> str:
    """`CaseIncident.generate_id`."""
    if not (type(name) is str and type(created) is str):
        return _pycti().CaseIncident.generate_id(name, created)
    return _string_id("case-incident", {"name": name.lower().strip(), "created": created})


def identity_id(name: str, identity_class: str) -> str:
    """`Identity.generate_id`."""
    if not (type(name) is str and type(identity_class) is str):
        return _pycti().Identity.generate_id(name, identity_class)
    return _string_id("identity", {"name": name.lower().strip(), "identity_class": identity_class.lower()})


def attack_pattern_id(name: str, mitre_id: str | None) -> str:
    """`AttackPattern.generate_id`: keyed on the ATT&CK id when there is one, else on the name."""
    if not (type(name) is str and (mitre_id is None or type(mitre_id) is str)):
        return _pycti().AttackPattern.generate_id(name, mitre_id)
    normalized = mitre_id.lower().strip() if mitre_id is not None else ""
    data = {"x_mitre_id": normalized} if normalized else {"name": name.lower().strip()}
    return _string_id("attack-pattern", data)


def vulnerability_id(name: str) -> str:
    return _pycti().Vulnerability.generate_id(name)


def malware_id(name: str) -> str:
    return _pycti().Malware.generate_id(name)


def indicator_id(pattern: str) -> str:
    return _pycti().Indicator.generate_id(pattern)


def note_id(content: str, created: str, abstract: str | None = None) -> str:
    return _pycti().Note.generate_id(created, content, abstract)


def relationship_id(
    relationship_type: str,
    source_ref: str,
    target_ref: str,
    start_time: str | None = None,
    stop_time: str | None = None,
) -> str:
    """pycti's relationship id (`StixCoreRelationship.generate_id`), computed on the hot path directly.

    Alerts produce more relationships than anything else; tests prove equality with pycti's generator.
    """
    data = {"relationship_type": relationship_type, "source_ref": source_ref, "target_ref": target_ref}
    if (
        start_time is None
        and type(relationship_type) is str
        and type(source_ref) is str
        and type(target_ref) is str
    ):
        # The common case, without _string_id's checks (the keys are already in sorted order) and with
        # _format_id inlined: several relationships per alert.
        try:
            name = orjson.dumps(data)
        except orjson.JSONEncodeError:  # lone surrogates
            return uuid5_id("relationship", data)
        digest = _NAMESPACE_SHA1.copy()
        digest.update(name)
        h = digest.hexdigest()
        return f"relationship--{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
    if start_time is not None:
        data["start_time"] = start_time
        if stop_time is not None:
            data["stop_time"] = stop_time
    return _string_id("relationship", data)


def sighting_id(
    sighting_of_ref: str,
    where_sighted_refs: list[str],
    first_seen: str | None = None,
    last_seen: str | None = None,
) -> str:
    return _pycti().StixSightingRelationship.generate_id(
        sighting_of_ref, where_sighted_refs, first_seen, last_seen
    )
