"""OpenCTI indicators and observables -> ECS threat-indicator documents (`threat.indicator.*`).

One document per observable and per indicator value: an indicator's STIX pattern gives its values through
its equality tests (`atomic_values`), a compound pattern one document per value, all tied to the indicator
by `threat.indicator.id` and `opencti.stix_id`. `_id` derives from the STIX id (plus the value's position
for the second and later values), so an update overwrites and a replay changes nothing.

Documents carry only ECS fields and ECS expected values, plus OpenCTI-only data under `opencti.*`, and the
`event.*` fields and `@timestamp` Elastic's indicator-match rules filter on (`event.module: ti_*`,
`@timestamp` within 30 days: the connector's maintenance job re-stamps documents that grow old).

Whether a document should exist at all is decided here too (`Plan.dead_reason`): revoked,
`x_opencti_detection: false`, past `valid_until`, past the expire time counted from the last
modification, or marked above the TLP ceiling. `opencti.expires_at` stores the moment it stops being live,
for the periodic sweep.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ctibridge.config.types import parse_datetime
from ctibridge.patterns import PatternError, atomic_values, is_atomic, parse_stix
from ctibridge.stix.markings import Tlp, tlp_of

log = logging.getLogger(__name__)

ECS_VERSION = "9.4.0"
EVENT_MODULE = "ti_custom"  # Elastic's prebuilt indicator-match rules filter on `event.module: ti_*`
EVENT_DATASET = "ti_custom.indicator"
FEED_NAME = "OpenCTI"
OCTI_EXTENSION = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"
OCTI_SCO_EXTENSION = "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82"
TEMPLATE_VERSION = 1
# Above the priority of Elasticsearch's built-in `logs-*-*` (100) and Fleet's templates (up to 200), and
# above 500 as Elastic advises for user templates overriding them: the index is a plain index, never a data
# stream, so documents can be overwritten and deleted by `_id`.
TEMPLATE_PRIORITY = 600
MAX_PATTERN_IN_DOCUMENT = 2048
MAX_TEXT = 8192

_HASHES = {
    "MD5": ("md5", 32),
    "SHA1": ("sha1", 40),
    "SHA256": ("sha256", 64),
    "SHA384": ("sha384", 96),
    "SHA512": ("sha512", 128),
    "SSDEEP": ("ssdeep", 0),
    "TLSH": ("tlsh", 0),
}
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
_REGISTRY_HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKEY_USERS": "HKU",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKEY_CURRENT_CONFIG": "HKCC",
}
# Observable types with a document of their own (STIX SCO type -> ECS threat.indicator.type).
OBSERVABLE_TYPES = {
    "ipv4-addr": "ipv4-addr",
    "ipv6-addr": "ipv6-addr",
    "domain-name": "domain-name",
    "hostname": "domain-name",  # OpenCTI's custom SCO; ECS has no hostname indicator type
    "url": "url",
    "email-addr": "email-addr",
    "file": "file",
    "directory": "directory",
    "windows-registry-key": "windows-registry-key",
    "autonomous-system": "autonomous-system",
    "x509-certificate": "x509-certificate",
}
HANDLED_TYPES = frozenset({"indicator", *OBSERVABLE_TYPES})

# Patterns that only OR `type:path = 'string'` comparisons (`[a = 'x']`, `[a = 'x' OR b = 'y']`,
# `[a = 'x'] OR [b = 'y']`) are the form almost every feed indicator has. Parsing them with the OASIS grammar
# costs ~0.7 ms; scanning this strict subset of the grammar takes microseconds. Anything else (other
# operators, AND, parentheses, qualifiers, escapes other than \\ and \', reserved words) goes to the parser.
_COMPARISON = re.compile(
    r"\s*([A-Za-z][A-Za-z0-9-]*)"
    r":((?:[A-Za-z_][A-Za-z0-9_]*)(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|'[^'\\]*'))*)"
    r"\s*=\s*'((?:[^'\\]|\\['\\])*)'\s*"
)
_OPEN = re.compile(r"\s*\[")
_OR = re.compile(r"OR(?=[\s\[])")
_CLOSE = re.compile(r"\]\s*")
_STIX_ESCAPE = re.compile(r"\\(['\\])")
_RESERVED = frozenset(
    "AND OR NOT FOLLOWEDBY LIKE MATCHES ISSUPERSET ISSUBSET EXISTS LAST IN START STOP SECONDS "  # noqa: SIM905
    "true false WITHIN REPEATS TIMES".split()
)


def confidence_band(score: Any) -> str:
    """ECS confidence from a 0-100 score: none -> Not Specified, 0 None, 1-29 Low, 30-69 Medium, 70+ High."""
    try:
        value = int(score)
    except (TypeError, ValueError, OverflowError):
        return "Not Specified"
    if value <= 0:
        return "None"
    if value < 30:
        return "Low"
    if value < 70:
        return "Medium"
    return "High"


def opencti_value(obj: Mapping[str, Any], key: str) -> Any:
    """An OpenCTI attribute from `x_opencti_<key>` or the OpenCTI extensions (as the stream sends it)."""
    value = obj.get(f"x_opencti_{key}")
    if value is not None:
        return value
    extensions = obj.get("extensions")
    if not extensions:
        return None
    try:
        for name in (OCTI_EXTENSION, OCTI_SCO_EXTENSION):
            extension = extensions.get(name)
            if extension:
                found = extension.get(key)
                if found is not None:
                    return found
    except AttributeError:  # extensions that are not objects: nothing to read
        return None
    return None


class _Attributes:
    """OpenCTI attributes of one object, read once: root `x_opencti_*` first, then the extensions."""

    __slots__ = ("extension", "obj")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.obj = obj
        merged: dict[str, Any] = {}
        extensions = obj.get("extensions")
        if isinstance(extensions, dict):
            for name in (OCTI_SCO_EXTENSION, OCTI_EXTENSION):
                extension = extensions.get(name)
                if isinstance(extension, dict):
                    merged.update(extension)
        self.extension = merged

    def get(self, key: str) -> Any:
        value = self.obj.get(_ROOT_KEYS.get(key) or f"x_opencti_{key}")
        return value if value is not None else self.extension.get(key)


_ROOT_KEYS = {
    key: f"x_opencti_{key}"
    for key in (
        "score", "detection", "description", "created_at", "updated_at", "created_by_ref", "id", "labels",
        "main_observable_type",
    )
}  # fmt: skip


def simple_atoms(pattern: str) -> list[tuple[str, str, Any]] | None:
    """(type, property path, value) of each comparison of an OR-of-equalities pattern (see _COMPARISON);
    None when the pattern is anything else."""
    atoms: list[tuple[str, str, Any]] = []
    position, end = 0, len(pattern)
    while True:
        opened = _OPEN.match(pattern, position)
        if opened is None:
            return None
        position = opened.end()
        while True:
            match = _COMPARISON.match(pattern, position)
            if match is None:
                return None
            object_type, path, raw = match.groups()
            steps = path.split(".")
            if object_type in _RESERVED or any(step in _RESERVED for step in steps):
                return None
            dotted = ".".join(step[1:-1] if step.startswith("'") else step for step in steps)
            atoms.append((object_type, dotted, _STIX_ESCAPE.sub(r"\1", raw) if "\\" in raw else raw))
            position = match.end()
            joined = _OR.match(pattern, position)
            if joined is None:
                break
            position = joined.end()
        closed = _CLOSE.match(pattern, position)
        if closed is None:
            return None
        position = closed.end()
        if position == end:
            return atoms
        joined = _OR.match(pattern, position)
        if joined is None:
            return None
        position = joined.end()


def pattern_atoms(pattern: str) -> tuple[list[tuple[str, str, Any]], bool]:
    """Every value the pattern tests with `=` or IN, and whether each value alone satisfies the pattern
    (an OR of equalities) rather than only a part of it (AND, FOLLOWEDBY, qualifiers, other operators).
    Raises PatternError for an invalid pattern."""
    fast = simple_atoms(pattern)
    if fast is not None:
        return fast, True
    parsed = parse_stix(pattern)
    return [(atom.type, atom.path, atom.value) for atom in atomic_values(parsed)], is_atomic(parsed)


# ------------------------------------------------------------------ value -> threat.indicator fields

Fields = dict[str, Any]


def _ip(value: Any) -> tuple[str, Fields] | None:
    """An address (a /32 or /128 network counts as one); other ranges have no document (ECS `ip` holds
    addresses only), a rule covers them."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    octets = text.split(".")
    if len(octets) == 4 and all(
        o.isdigit() and o.isascii() and len(o) <= 3 and (o == "0" or o[0] != "0") and int(o) <= 255
        for o in octets
    ):
        return ("ipv4-addr", {"ip": text})  # dotted quad, already canonical (ipaddress agrees; it is slower)
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            if network.num_addresses != 1:
                return None
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = network.network_address
        else:
            address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (f"ipv{address.version}-addr", {"ip": str(address)})


def _domain(value: Any) -> tuple[str, Fields] | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return ("domain-name", {"url": {"domain": value.strip().rstrip(".").lower()}})


def _url(value: Any) -> tuple[str, Fields] | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    url: Fields = {"full": text, "original": text}
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return ("url", {"url": url})
    if parts.scheme:
        url["scheme"] = parts.scheme.lower()
    if parts.hostname:
        url["domain"] = parts.hostname.lower()
    if port is not None:
        url["port"] = port
    if parts.path:
        url["path"] = parts.path
    if parts.query:
        url["query"] = parts.query
    if parts.fragment:
        url["fragment"] = parts.fragment
    return ("url", {"url": url})


def _email(value: Any) -> tuple[str, Fields] | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    return ("email-addr", {"email": {"address": value.strip()}})


def _hash(algorithm: str, value: Any) -> tuple[str, Fields] | None:
    """A file hash under its ECS name; hex digests are checked for length and lowercased."""
    known = _HASHES.get(algorithm.replace("-", "").replace("'", "").upper())
    if known is None or not isinstance(value, str) or not value.strip():
        return None
    name, length = known
    text = value.strip()
    if length:
        if len(text) != length or not _HEX.match(text):
            return None
        text = text.lower()
    return ("file", {"file": {"hash": {name: text}}})


def _text(kind: str, *path: str) -> Callable[[Any], tuple[str, Fields] | None]:
    def build(value: Any) -> tuple[str, Fields] | None:
        if not isinstance(value, str) or not value.strip():
            return None
        node: Fields = {path[-1]: value[:MAX_TEXT]}
        for step in reversed(path[:-1]):
            node = {step: node}
        return (kind, node)

    return build


def _number(kind: str, *path: str) -> Callable[[Any], tuple[str, Fields] | None]:
    def build(value: Any) -> tuple[str, Fields] | None:
        if isinstance(value, bool) or not isinstance(value, int | str):
            return None
        try:
            number = int(value)
        except ValueError:
            return None
        if not 0 <= number < 2**63:
            return None
        node: Fields = {path[-1]: number}
        for step in reversed(path[:-1]):
            node = {step: node}
        return (kind, node)

    return build


def _registry_key(value: Any) -> tuple[str, Fields] | None:
    """`registry.path` holds hive + key as STIX does; `registry.key` is hive-relative in ECS."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = value.strip()
    head, _, rest = path.partition("\\")
    registry: Fields = {"path": path}
    hive = _REGISTRY_HIVES.get(head.upper(), head.upper() if head.upper().startswith("HK") else None)
    if hive:
        registry["hive"] = hive
        if rest:
            registry["key"] = rest
    return ("windows-registry-key", {"registry": registry})


def _port(value: Any) -> tuple[str, Fields] | None:
    built = _number("port", "port")(value)
    return built if built and built[1]["port"] <= 65535 else None


_ATOM_MAP: dict[tuple[str, str], Callable[[Any], tuple[str, Fields] | None]] = {
    ("ipv4-addr", "value"): _ip,
    ("ipv6-addr", "value"): _ip,
    ("domain-name", "value"): _domain,
    ("hostname", "value"): _domain,
    ("url", "value"): _url,
    ("email-addr", "value"): _email,
    ("email-message", "from_ref.value"): _email,
    ("email-message", "sender_ref.value"): _email,
    ("email-message", "to_refs[*].value"): _email,
    ("email-message", "cc_refs[*].value"): _email,
    ("file", "name"): _text("file", "file", "name"),
    ("file", "size"): _number("file", "file", "size"),
    ("file", "parent_directory_ref.path"): _text("file", "file", "directory"),
    ("directory", "path"): _text("directory", "file", "path"),
    ("windows-registry-key", "key"): _registry_key,
    ("autonomous-system", "number"): _number("autonomous-system", "as", "number"),
    ("autonomous-system", "name"): _text("autonomous-system", "as", "organization", "name"),
    ("network-traffic", "dst_ref.value"): _ip,
    ("network-traffic", "src_ref.value"): _ip,
    ("network-traffic", "dst_port"): _port,
    ("network-traffic", "src_port"): _port,
    ("x509-certificate", "serial_number"): _text("x509-certificate", "x509", "serial_number"),
    ("x509-certificate", "issuer"): _text("x509-certificate", "x509", "issuer", "distinguished_name"),
    ("x509-certificate", "subject"): _text("x509-certificate", "x509", "subject", "distinguished_name"),
}


def atom_fields(object_type: str, path: str, value: Any) -> tuple[str, Fields] | None:
    """(ECS indicator type, `threat.indicator` sub-fields) of one pattern value; None: no ECS field."""
    if object_type == "file" and path.startswith("hashes."):
        return _hash(path[len("hashes.") :], value)
    build = _ATOM_MAP.get((object_type, path))
    return build(value) if build is not None else None


def _merge(target: Fields, extra: Fields) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def observable_fields(obj: Mapping[str, Any]) -> tuple[str, Fields] | None:
    """(ECS indicator type, `threat.indicator` sub-fields) of a STIX observable; None when nothing maps."""
    sco_type = obj.get("type")
    if sco_type in ("ipv4-addr", "ipv6-addr"):
        return _ip(obj.get("value"))
    if sco_type in ("domain-name", "hostname"):
        return _domain(obj.get("value"))
    if sco_type == "url":
        return _url(obj.get("value"))
    if sco_type == "email-addr":
        return _email(obj.get("value"))
    if sco_type == "windows-registry-key":
        return _registry_key(obj.get("key"))
    parts: list[tuple[str, Fields] | None] = []
    kind = OBSERVABLE_TYPES.get(str(sco_type))
    if sco_type == "file":
        hashes = obj.get("hashes") if isinstance(obj.get("hashes"), Mapping) else {}
        parts.extend(_hash(str(name), value) for name, value in hashes.items())
        parts.append(_text("file", "file", "name")(obj.get("name")))
        parts.append(_number("file", "file", "size")(obj.get("size")))
        parts.append(_text("file", "file", "mime_type")(obj.get("mime_type")))
    elif sco_type == "directory":
        parts.append(_text("directory", "file", "path")(obj.get("path")))
    elif sco_type == "autonomous-system":
        parts.append(_number("autonomous-system", "as", "number")(obj.get("number")))
        parts.append(_text("autonomous-system", "as", "organization", "name")(obj.get("name")))
    elif sco_type == "x509-certificate":
        x509 = "x509-certificate"
        parts.append(_text(x509, "x509", "serial_number")(obj.get("serial_number")))
        parts.append(_text(x509, "x509", "issuer", "distinguished_name")(obj.get("issuer")))
        parts.append(_text(x509, "x509", "subject", "distinguished_name")(obj.get("subject")))
        parts.append(_text(x509, "x509", "signature_algorithm")(obj.get("signature_algorithm")))
        parts.append(_text(x509, "x509", "version_number")(obj.get("version")))
        parts.append(_text(x509, "x509", "public_key_algorithm")(obj.get("subject_public_key_algorithm")))
        parts.append(_number(x509, "x509", "public_key_exponent")(obj.get("subject_public_key_exponent")))
        for source, target in (("validity_not_before", "not_before"), ("validity_not_after", "not_after")):
            stamp = _timestamp(obj.get(source))
            parts.append((x509, {"x509": {target: stamp}}) if stamp else None)
    fields: Fields = {}
    for part in parts:
        if part is not None:
            _merge(fields, part[1])
    return (kind, fields) if kind and fields else None


_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def _timestamp(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, str) and _CANONICAL_TIME.match(value):
        return value  # OpenCTI's own form, already what we write
    try:
        return _iso(parse_datetime(str(value)))
    except ValueError:
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------ documents


@dataclass
class Plan:
    """What one STIX object means for the index: documents to write, or why it must have none.

    `ids` are every `_id` the object's current content maps to (written when live, deleted when dead).
    """

    stix_id: str
    ids: list[str] = field(default_factory=list)
    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    dead_reason: str | None = None
    skipped: list[str] = field(default_factory=list)
    expires_at: datetime | None = None


def document_id(stix_id: str, position: int) -> str:
    """`<stix id>` for an object's first value, `<stix id>:<n>` for the n-th further one."""
    return stix_id if position == 0 else f"{stix_id}:{position}"


class IndicatorDocuments:
    """Maps STIX indicators and observables to ECS threat-indicator documents (pure, no I/O).

    `expire_days` 0 disables the expire time; objects without a TLP marking are exported (as OpenCTI's
    connectors treat them as TLP:CLEAR) but carry no `marking.tlp`, since none is known.
    """

    def __init__(
        self,
        *,
        opencti_url: str | None = None,
        expire_days: int = 90,
        max_tlp: Tlp = Tlp.AMBER,
        feed_name: str = FEED_NAME,
        identity_cache: int = 10_000,
    ) -> None:
        self.opencti_url = opencti_url.rstrip("/") if opencti_url else None
        self.expire = timedelta(days=expire_days) if expire_days > 0 else None
        self.max_tlp = max_tlp
        self.feed: dict[str, Any] = {"name": feed_name}
        if self.opencti_url:
            self.feed["reference"] = self.opencti_url
        self._identities: dict[str, str] = {}
        self._identity_cache = identity_cache
        self._now: datetime | None = None
        self._now_text = ""

    def remember_identity(self, obj: Mapping[str, Any]) -> None:
        """Keep author names seen on the stream, for `threat.indicator.provider` (refs carry only ids)."""
        if obj.get("type") == "identity" and obj.get("id") and obj.get("name"):
            if len(self._identities) >= self._identity_cache:
                self._identities.pop(next(iter(self._identities)))
            self._identities[str(obj["id"])] = str(obj["name"])[:MAX_TEXT]

    def plan(self, obj: Mapping[str, Any], now: datetime) -> Plan | None:
        """The documents of `obj` at `now`, or None when the object type has no documents."""
        obj_type = obj.get("type")
        stix_id = obj.get("id")
        if obj_type not in HANDLED_TYPES or not isinstance(stix_id, str) or not stix_id:
            return None
        plan = Plan(stix_id)
        attributes = _Attributes(obj)
        tlp = tlp_of(_refs(obj.get("object_marking_refs")))
        # Liveness applies to every indicator, documents or not: it also decides whether a rule may exist.
        plan.dead_reason, plan.expires_at = self._liveness(obj, now, attributes, tlp)
        values: list[tuple[str, Fields]] = []
        matches_alone = True
        if obj_type == "indicator":
            pattern_type = str(obj.get("pattern_type") or "stix").strip().lower()
            if pattern_type != "stix":
                return plan  # kql/eql/sigma...: a rule covers it, there is no value to match on
            try:
                atoms, matches_alone = pattern_atoms(str(obj.get("pattern") or ""))
            except PatternError as exc:
                plan.skipped.append(f"invalid STIX pattern: {exc}")
                return plan
            seen: set[str] = set()
            for object_type, path, value in atoms:
                mapped = atom_fields(object_type, path, value)
                if mapped is None:
                    plan.skipped.append(f"{object_type}:{path} {str(value)[:80]!r}: no ECS indicator form")
                    continue
                if len(atoms) > 1:
                    key = repr(mapped)
                    if key in seen:
                        continue
                    seen.add(key)
                values.append(mapped)
        else:
            mapped = observable_fields(obj)
            if mapped is None:
                plan.skipped.append(f"{obj_type} without a value ECS can hold")
            else:
                values.append(mapped)
        plan.ids = [document_id(stix_id, n) for n in range(len(values))]
        if plan.dead_reason is None and values:
            common = self._common(obj, now, plan.expires_at, attributes, tlp)
            # Indicator-match rules must not fire on one part of an AND / FOLLOWEDBY pattern: its own rule
            # holds the exact logic, and this flag keeps those documents out of the match.
            common["opencti"]["matches_alone"] = matches_alone
            plan.documents = [
                (doc_id, self._document(common, kind, fields))
                for doc_id, (kind, fields) in zip(plan.ids, values, strict=True)
            ]
        return plan

    def document_ids(self, obj: Mapping[str, Any]) -> list[str]:
        """Every `_id` the object's content maps to, whatever its liveness (for delete events)."""
        plan = self.plan(obj, datetime.now(UTC))
        return plan.ids if plan else []

    # ------------------------------------------------------------------ liveness

    def _liveness(
        self, obj: Mapping[str, Any], now: datetime, attributes: _Attributes, tlp: Tlp | None
    ) -> tuple[str | None, datetime | None]:
        if tlp is not None and tlp > self.max_tlp:
            return f"marked {tlp.label}, above the {self.max_tlp.label} ceiling", None
        if obj.get("revoked") is True:
            return "revoked", None
        if attributes.get("detection") is False:
            return "x_opencti_detection is false", None
        expires: list[datetime] = []
        valid_until = _parsed(obj.get("valid_until"))
        if valid_until is not None:
            expires.append(valid_until)
        if self.expire is not None:
            modified = _parsed(obj.get("modified")) or _parsed(attributes.get("updated_at"))
            modified = modified or _parsed(obj.get("created")) or _parsed(attributes.get("created_at"))
            with contextlib.suppress(OverflowError):  # a modification date near year 9999
                expires.append((modified or now) + self.expire)
        expires_at = min(expires) if expires else None
        if expires_at is not None and expires_at <= now:
            reason = "valid_until passed" if expires_at == valid_until else "expire time passed"
            return reason, expires_at
        return None, expires_at

    # ------------------------------------------------------------------ document body

    def _common(
        self,
        obj: Mapping[str, Any],
        now: datetime,
        expires_at: datetime | None,
        attributes: _Attributes,
        tlp: Tlp | None,
    ) -> dict[str, Any]:
        """Everything but the typed value: shared by all documents of one object."""
        stix_id = str(obj["id"])
        is_indicator = obj.get("type") == "indicator"
        score = attributes.get("score")
        if score is None and is_indicator:
            score = obj.get("confidence")
        indicator: dict[str, Any] = {
            "id": [stix_id],
            "confidence": confidence_band(score),
        }
        if tlp is not None:
            indicator["marking"] = {"tlp": tlp.name.replace("_", "+"), "tlp_version": "2.0"}
        name = obj.get("name") if is_indicator else _observable_name(obj)
        if name:
            indicator["name"] = str(name)[:MAX_TEXT]
        description = obj.get("description") or attributes.get("description")
        if description:
            indicator["description"] = str(description)[:MAX_TEXT]
        created = _timestamp(obj.get("created")) or _timestamp(attributes.get("created_at"))
        modified = _timestamp(obj.get("modified")) or _timestamp(attributes.get("updated_at"))
        first_seen = _timestamp(obj.get("valid_from")) if is_indicator else None
        if first_seen or created:
            indicator["first_seen"] = first_seen or created
        if modified or created:
            indicator["last_seen"] = modified or created
            indicator["modified_at"] = modified or created
        author = obj.get("created_by_ref") or attributes.get("created_by_ref")
        if author and str(author) in self._identities:
            indicator["provider"] = self._identities[str(author)]
        internal_id = attributes.get("id")
        reference = self._reference(obj, internal_id)
        if reference:
            indicator["reference"] = reference

        octi: dict[str, Any] = {"stix_id": stix_id, "type": obj.get("type")}
        if internal_id:
            octi["id"] = str(internal_id)
        if score is not None:
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                octi["score"] = max(-(2**63), min(2**63 - 1, int(score)))
        labels = obj.get("labels") or attributes.get("labels")
        if isinstance(labels, list) and labels:
            octi["labels"] = [str(label)[:MAX_TEXT] for label in labels]
        if author:
            octi["created_by_ref"] = str(author)
        if is_indicator:
            chain = obj.get("kill_chain_phases")
            if chain:
                phases = [
                    {"kill_chain_name": str(p.get("kill_chain_name")), "phase_name": str(p.get("phase_name"))}
                    for p in chain
                    if isinstance(p, Mapping)
                ]
                if phases:
                    octi["kill_chain_phases"] = phases
            octi["pattern"] = str(obj.get("pattern") or "")[:MAX_PATTERN_IN_DOCUMENT]
            octi["pattern_type"] = str(obj.get("pattern_type") or "stix")
            for key in ("valid_from", "valid_until"):
                stamp = _timestamp(obj.get(key))
                if stamp:
                    octi[key] = stamp
            main_type = attributes.get("main_observable_type")
            if main_type:
                octi["main_observable_type"] = str(main_type)
            detection = attributes.get("detection")
            if isinstance(detection, bool):
                octi["detection"] = detection
        if expires_at is not None:
            octi["expires_at"] = _iso(expires_at)
        if now is not self._now:
            self._now, self._now_text = now, _iso(now)
        common: dict[str, Any] = {
            "@timestamp": self._now_text,
            "ecs": {"version": ECS_VERSION},
            "event": {
                "kind": "enrichment",
                "category": ["threat"],
                "type": ["indicator"],
                "module": EVENT_MODULE,
                "dataset": EVENT_DATASET,
            },
            "threat": {"feed": self.feed, "indicator": indicator},
            "opencti": octi,
        }
        if "labels" in octi:
            common["tags"] = octi["labels"]
        return common

    @staticmethod
    def _document(common: dict[str, Any], kind: str, fields: Fields) -> dict[str, Any]:
        indicator = {**common["threat"]["indicator"], "type": kind, **fields}
        return {**common, "threat": {"feed": common["threat"]["feed"], "indicator": indicator}}

    def _reference(self, obj: Mapping[str, Any], internal_id: Any) -> str | None:
        if not self.opencti_url:
            return None
        target = str(internal_id or obj["id"])
        section = "indicators" if obj.get("type") == "indicator" else "observables"
        return f"{self.opencti_url}/dashboard/observations/{section}/{target}"


def _observable_name(obj: Mapping[str, Any]) -> str | None:
    for key in ("value", "key", "name", "path", "serial_number"):
        if obj.get(key):
            return str(obj[key])
    hashes = obj.get("hashes")
    if isinstance(hashes, Mapping) and hashes:
        return str(next(iter(hashes.values())))
    if obj.get("number") is not None:
        return f"AS{obj['number']}"
    return None


def _refs(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _parsed(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_datetime(str(value))
    except ValueError:
        return None


# ------------------------------------------------------------------ index template

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DATE = {"type": "date"}
_LONG = {"type": "long"}
_WILDCARD = {"type": "wildcard"}


def _dn() -> dict[str, Any]:
    return {"properties": {"distinguished_name": _KEYWORD}}


THREAT_INDICATOR_MAPPING: dict[str, Any] = {
    "properties": {
        "type": _KEYWORD,
        "id": _KEYWORD,
        "confidence": _KEYWORD,
        "name": _KEYWORD,
        "description": _KEYWORD,
        "provider": _KEYWORD,
        "reference": _KEYWORD,
        "first_seen": _DATE,
        "last_seen": _DATE,
        "modified_at": _DATE,
        "marking": {"properties": {"tlp": _KEYWORD, "tlp_version": _KEYWORD}},
        "ip": {"type": "ip"},
        "port": _LONG,
        "email": {"properties": {"address": _KEYWORD}},
        "url": {
            "properties": {
                "full": _WILDCARD,
                "original": _WILDCARD,
                "path": _WILDCARD,
                "domain": _KEYWORD,
                "scheme": _KEYWORD,
                "query": _KEYWORD,
                "fragment": _KEYWORD,
                "port": _LONG,
            }
        },
        "file": {
            "properties": {
                "name": _KEYWORD,
                "path": _KEYWORD,
                "directory": _KEYWORD,
                "mime_type": _KEYWORD,
                "size": _LONG,
                "hash": {"properties": {name: _KEYWORD for name, _ in _HASHES.values()}},
            }
        },
        "registry": {"properties": {"path": _KEYWORD, "hive": _KEYWORD, "key": _KEYWORD, "value": _KEYWORD}},
        "as": {"properties": {"number": _LONG, "organization": {"properties": {"name": _KEYWORD}}}},
        "x509": {
            "properties": {
                "serial_number": _KEYWORD,
                "issuer": _dn(),
                "subject": _dn(),
                "signature_algorithm": _KEYWORD,
                "version_number": _KEYWORD,
                "public_key_algorithm": _KEYWORD,
                "public_key_exponent": _LONG,
                "not_before": _DATE,
                "not_after": _DATE,
            }
        },
    }
}

INDEX_MAPPINGS: dict[str, Any] = {
    # Fields outside this mapping stay in _source unindexed: hostile input cannot explode the mapping.
    "dynamic": False,
    "properties": {
        "@timestamp": _DATE,
        "ecs": {"properties": {"version": _KEYWORD}},
        "tags": _KEYWORD,
        "event": {
            "properties": {
                "kind": _KEYWORD,
                "category": _KEYWORD,
                "type": _KEYWORD,
                "module": _KEYWORD,
                "dataset": _KEYWORD,
            }
        },
        "threat": {
            "properties": {
                "feed": {"properties": {"name": _KEYWORD, "reference": _KEYWORD}},
                "indicator": THREAT_INDICATOR_MAPPING,
            }
        },
        "opencti": {
            "properties": {
                "id": _KEYWORD,
                "stix_id": _KEYWORD,
                "type": _KEYWORD,
                "score": _LONG,
                "labels": _KEYWORD,
                "created_by_ref": _KEYWORD,
                "kill_chain_phases": {"properties": {"kill_chain_name": _KEYWORD, "phase_name": _KEYWORD}},
                "pattern": {"type": "keyword", "ignore_above": 1024, "index": False},
                "pattern_type": _KEYWORD,
                "valid_from": _DATE,
                "valid_until": _DATE,
                "main_observable_type": _KEYWORD,
                "detection": {"type": "boolean"},
                "matches_alone": {"type": "boolean"},
                "expires_at": _DATE,
            }
        },
    },
}


def index_template(index_name: str) -> dict[str, Any]:
    """A composable template making `index_name` a plain index with ECS mappings (see TEMPLATE_PRIORITY)."""
    return {
        "index_patterns": [index_name],
        "priority": TEMPLATE_PRIORITY,
        "template": {"mappings": INDEX_MAPPINGS},
        "version": TEMPLATE_VERSION,
        "_meta": {
            "managed_by": "ctibridge",
            "description": "OpenCTI threat-indicator documents (ECS), written by ctibridge elastic-intel",
        },
    }


def iter_fields(document: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted field, leaf value) pairs of a nested document; list items are reported one by one."""
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from iter_fields(value, path + ".")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield from iter_fields(item, path + ".")
                else:
                    yield path, item
        else:
            yield path, value
