"""Typed observables that every SIEM mapping produces and the STIX builder consumes.

Construct through the `parse`/`make_*` functions: they validate and normalise, and return None (with a
debug line) for a value that does not parse, so an invalid IP or hash never reaches OpenCTI.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any, TypeVar

from ctibridge.memo import keep

log = logging.getLogger(__name__)
_T = TypeVar("_T")

HASH_LENGTHS = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128}
_HASH_ALIASES = {
    "md5": "MD5",
    "sha1": "SHA-1",
    "sha-1": "SHA-1",
    "sha256": "SHA-256",
    "sha-256": "SHA-256",
    "sha512": "SHA-512",
    "sha-512": "SHA-512",
}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_MAC = re.compile(r"^[0-9a-f]{12}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _skip(kind: str, value: Any, reason: str) -> None:
    global _dropped
    _dropped += 1
    if log.isEnabledFor(logging.DEBUG):  # absent values come here on every alert: no str() for nothing
        log.debug("dropped invalid %s %r: %s", kind, str(value)[:200], reason)


_dropped = 0  # how many values _skip has dropped: `remember` keeps no result whose making dropped one
_EXACT_TYPES = frozenset({str, int, type(None)})
_MISSING = object()
_REMEMBERED = 2048


def remember(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
    """`make()`, kept in `cache` under the raw inputs `key`: hosts, users and binaries recur across
    alerts, and validating and building them again costs more than looking them up.

    Only keys made of strings, integers and None are kept (equal such keys are identical inputs, where
    `1 == 1.0 == True` are not), and only results whose making dropped nothing, so that a hit never
    hides a debug line.
    """
    if not _EXACT_TYPES.issuperset(map(type, key)):  # one C-level pass over the key
        return make()
    found = cache.get(key, _MISSING)
    if found is not _MISSING:
        return found  # type: ignore[no-any-return]
    before = _dropped
    made = make()
    return keep(cache, key, made, _REMEMBERED) if _dropped == before else made


@dataclass(frozen=True, slots=True)
class IPAddress:
    """An IPv4/IPv6 address or CIDR network, in its canonical text form."""

    value: str
    version: int

    @property
    def stix_type(self) -> str:
        return "ipv4-addr" if self.version == 4 else "ipv6-addr"


@dataclass(frozen=True, slots=True)
class DomainName:
    value: str


@dataclass(frozen=True, slots=True)
class Hostname:
    value: str


@dataclass(frozen=True, slots=True)
class Url:
    value: str


@dataclass(frozen=True, slots=True)
class EmailAddress:
    value: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class MacAddress:
    value: str


@dataclass(frozen=True, slots=True)
class UserAgent:
    value: str


@dataclass(frozen=True, slots=True)
class AutonomousSystem:
    number: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Directory:
    path: str


@dataclass(frozen=True, slots=True)
class File:
    """A file known by any of name, hashes, size or directory; at least a name or a hash."""

    name: str | None = None
    hashes: tuple[tuple[str, str], ...] = ()
    size: int | None = None
    directory: Directory | None = None
    mime_type: str | None = None
    # Files are remembered and looked up by value on every alert that shows them (as observable and as
    # process image): the hash is computed once. Not a field for equality, display or construction.
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        cached = self._hash
        if cached is None:
            cached = hash((self.name, self.hashes, self.size, self.directory, self.mime_type))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without the cached hash: string hashes differ between processes.
        return (File, (self.name, self.hashes, self.size, self.directory, self.mime_type))

    @property
    def hash_map(self) -> dict[str, str]:
        return dict(self.hashes)


@dataclass(frozen=True, slots=True)
class UserAccount:
    account_login: str | None = None
    user_id: str | None = None
    display_name: str | None = None
    domain: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Process:
    """A process; OpenCTI keys it on command line and pid, so one of those is required."""

    pid: int | None = None
    command_line: str | None = None
    name: str | None = None
    image: File | None = None
    cwd: str | None = None
    created: datetime | None = None
    parent: Process | None = None
    user: UserAccount | None = None


@dataclass(frozen=True, slots=True)
class RegistryValue:
    name: str
    data: str | None = None
    data_type: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryKey:
    key: str
    values: tuple[RegistryValue, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkTraffic:
    src: IPAddress | None = None
    dst: IPAddress | None = None
    src_port: int | None = None
    dst_port: int | None = None
    protocols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EmailMessage:
    subject: str | None = None
    sender: EmailAddress | None = None
    to: tuple[EmailAddress, ...] = ()
    message_id: str | None = None
    date: datetime | None = None


@dataclass(frozen=True, slots=True)
class Software:
    name: str
    version: str | None = None
    vendor: str | None = None


Observable = (
    IPAddress
    | DomainName
    | Hostname
    | Url
    | EmailAddress
    | MacAddress
    | UserAgent
    | AutonomousSystem
    | Directory
    | File
    | UserAccount
    | Process
    | RegistryKey
    | NetworkTraffic
    | EmailMessage
    | Software
)


# --------------------------------------------------------------------------- validating constructors


def _text(value: Any, limit: int = 8192) -> str | None:
    if type(value) is str:  # the common case, first
        text = value.strip()
        return text if text and len(text) <= limit else None
    if value is None or isinstance(value, (dict, list, tuple, bool)):
        return None
    text = str(value).strip()
    if not text or len(text) > limit:
        return None
    return text


# A dotted quad without leading zeros is already in the canonical form ipaddress would print.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IP_CACHE: dict[str, IPAddress] = {}


def make_ip(value: Any) -> IPAddress | None:
    """Parse an IPv4/IPv6 address or CIDR; host bits in a CIDR are an error, not silently cleared."""
    text = _text(value, 64)
    if text is None:
        return None
    # Addresses recur (hosts, servers, scanners): one object per address, which also makes the
    # builder's lookups of it identity hits.
    known = _IP_CACHE.get(text)
    if known is not None:
        return known
    parsed = IPAddress(text, 4) if _CANONICAL_IPV4.fullmatch(text) else _parse_ip(value, text)
    return keep(_IP_CACHE, text, parsed, 4096) if parsed is not None else None


def _parse_ip(value: Any, text: str) -> IPAddress | None:
    text = text.split("%", 1)[0] if "%" in text and "/" not in text else text  # drop an IPv6 zone id
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=True)
            if net.prefixlen == net.max_prefixlen:
                return IPAddress(str(net.network_address), net.version)
            return IPAddress(str(net), net.version)
        addr = ipaddress.ip_address(text)
    except ValueError as exc:
        _skip("ip", value, str(exc))
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return IPAddress(str(addr.ipv4_mapped), 4)
    return IPAddress(str(addr), addr.version)


def normalize_domain(value: Any) -> str | None:
    text = _text(value, 253)
    if text is None:
        return None
    text = text.rstrip(".").lower()
    try:
        ascii_text = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        return None
    labels = ascii_text.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():  # an IPv4 address is not a domain
        return None
    return text


def make_domain(value: Any) -> DomainName | None:
    text = normalize_domain(value)
    if text is None:
        _skip("domain", value, "not a domain name")
        return None
    return DomainName(text)


def make_hostname(value: Any) -> Hostname | None:
    text = _text(value, 253)
    if text is None or _CONTROL.search(text) or " " in text:
        _skip("hostname", value, "empty, too long or contains spaces")
        return None
    return Hostname(text.lower())


def make_url(value: Any) -> Url | None:
    text = _text(value, 8192)
    if text is None or not _URL.match(text):
        _skip("url", value, "not an absolute URL")
        return None
    return Url(text)


def make_email(value: Any, display_name: Any = None) -> EmailAddress | None:
    text = _text(value, 320)
    if text is None or not _EMAIL.match(text):
        _skip("email", value, "not an email address")
        return None
    return EmailAddress(text.lower(), _text(display_name, 256))


def make_mac(value: Any) -> MacAddress | None:
    """Accept the common spellings (aa:bb.., AA-BB.., aabb.ccdd.eeff); store lower-case with colons."""
    text = _text(value, 32)
    compact = re.sub(r"[:\-.\s]", "", text.lower()) if text else ""
    if not _MAC.match(compact):
        _skip("mac", value, "not a 48-bit MAC address")
        return None
    return MacAddress(":".join(compact[i : i + 2] for i in range(0, 12, 2)))


def make_user_agent(value: Any) -> UserAgent | None:
    text = _text(value, 4096)
    return UserAgent(text) if text else None


def make_asn(number: Any, name: Any = None) -> AutonomousSystem | None:
    try:
        parsed = int(str(number).upper().removeprefix("AS"))
    except (TypeError, ValueError):
        _skip("autonomous system", number, "not a number")
        return None
    if not 0 <= parsed <= 4_294_967_295:
        _skip("autonomous system", number, "out of range")
        return None
    return AutonomousSystem(parsed, _text(name, 256))


_HASH_CACHE: dict[tuple[str, str], tuple[str, str]] = {}


def normalize_hash(algorithm: str, value: Any) -> tuple[str, str] | None:
    """Return (STIX algorithm name, lower-case hex) for a valid hash, None otherwise."""
    if type(value) is not str:
        return _normalize_hash(algorithm, value)
    # The same samples and binaries recur across alerts: check each valid hash once.
    key = (algorithm, value)
    known = _HASH_CACHE.get(key)
    if known is None:
        known = _normalize_hash(algorithm, value)
        if known is not None:
            keep(_HASH_CACHE, key, known, 4096)
    return known


def _normalize_hash(algorithm: str, value: Any) -> tuple[str, str] | None:
    name = _HASH_ALIASES.get(algorithm.lower().replace("_", "-"), algorithm.upper())
    text = _text(value, 256)
    expected = HASH_LENGTHS.get(name)
    if text is None or expected is None or len(text) != expected or not _HEX.match(text):
        _skip(f"{algorithm} hash", value, "wrong length or alphabet")
        return None
    if not text.strip("0"):  # all zeros (text is not empty here)
        _skip(f"{algorithm} hash", value, "all zeros")
        return None
    return name, text.lower()


def make_hashes(raw: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for algorithm, value in (raw or {}).items():
        normalized = normalize_hash(str(algorithm), value)
        if normalized:
            pairs[normalized[0]] = normalized[1]
    return tuple(sorted(pairs.items()))


def make_directory(path: Any) -> Directory | None:
    text = _text(path, 4096)
    return Directory(text) if text else None


def make_file(
    *,
    name: Any = None,
    hashes: dict[str, Any] | None = None,
    size: Any = None,
    directory: Any = None,
    path: Any = None,
    mime_type: Any = None,
) -> File | None:
    """A file from its parts; `path` is split into directory and name when those are not given."""
    key = (name, path, directory, size, mime_type, *chain.from_iterable(hashes.items() if hashes else ()))
    return remember(_FILES, key, lambda: _make_file(name, hashes, size, directory, path, mime_type))


_FILES: dict[tuple[Any, ...], File | None] = {}


def _make_file(
    name: Any, hashes: dict[str, Any] | None, size: Any, directory: Any, path: Any, mime_type: Any
) -> File | None:
    name_text = _text(name, 1024)
    dir_text = _text(directory, 4096)
    path_text = _text(path, 4096)
    if path_text and (not name_text or not dir_text):
        sep = "\\" if "\\" in path_text else "/"
        head, _, tail = path_text.rpartition(sep)
        name_text = name_text or _text(tail, 1024)
        dir_text = dir_text or _text(head or (sep if path_text.startswith(sep) else None), 4096)
    parsed_size = None
    if size is not None:
        try:
            parsed_size = int(size)
        except (TypeError, ValueError):
            _skip("file size", size, "not a whole number")
        if parsed_size is not None and parsed_size < 0:
            parsed_size = None
    hash_pairs = make_hashes(hashes)
    if not name_text and not hash_pairs:
        return None
    return File(
        name=name_text,
        hashes=hash_pairs,
        size=parsed_size,
        directory=Directory(dir_text) if dir_text else None,
        mime_type=_text(mime_type, 256),
    )


def make_user(
    *, login: Any = None, user_id: Any = None, display_name: Any = None, domain: Any = None, email: Any = None
) -> UserAccount | None:
    key = (login, user_id, display_name, domain, email)
    return remember(_USERS, key, lambda: _make_user(login, user_id, display_name, domain, email))


_USERS: dict[tuple[Any, ...], UserAccount | None] = {}


def _make_user(login: Any, user_id: Any, display_name: Any, domain: Any, email: Any) -> UserAccount | None:
    login_text, id_text = _text(login, 512), _text(user_id, 512)
    if not login_text and not id_text:
        return None
    return UserAccount(
        account_login=login_text,
        user_id=id_text,
        display_name=_text(display_name, 512),
        domain=_text(domain, 512),
        # An absent email is not an invalid one: validated (and reported when dropped) only when given.
        email=address.value if email is not None and (address := make_email(email)) else None,
    )


def make_process(
    *,
    pid: Any = None,
    command_line: Any = None,
    name: Any = None,
    image: File | None = None,
    cwd: Any = None,
    created: datetime | None = None,
    parent: Process | None = None,
    user: UserAccount | None = None,
) -> Process | None:
    parsed_pid = None
    if pid is not None:
        try:
            parsed_pid = int(pid)
        except (TypeError, ValueError):
            _skip("pid", pid, "not a whole number")
    command = _text(command_line, 32768)
    if parsed_pid is None and command is None:
        return None
    name_text = _text(name, 1024)
    if command is None and name_text is None and image is None and parent is None and user is None:
        # Keyed on its pid alone (see stix.ids), which names nothing outside its host and boot: it would
        # be one OpenCTI object with every process of that pid on any device, in any incident.
        _skip("process", pid, "a process id with nothing else to tell it apart")
        return None
    return Process(
        pid=parsed_pid,
        command_line=command,
        name=name_text,
        image=image,
        cwd=_text(cwd, 4096),
        created=created,
        parent=parent,
        user=user,
    )


_HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKU": "HKEY_USERS",
    "HKCC": "HKEY_CURRENT_CONFIG",
}


def normalize_registry_key(key: Any) -> str | None:
    """Full hive names, as STIX requires (`HKLM\\...` becomes `HKEY_LOCAL_MACHINE\\...`)."""
    text = _text(key, 4096)
    if text is None:
        return None
    text = text.replace("/", "\\").strip("\\")
    head, sep, rest = text.partition("\\")
    full = _HIVES.get(head.upper())
    if full:
        return full + sep + rest
    if head.upper().startswith("HKEY_"):
        return head.upper() + sep + rest
    return text


def make_registry_key(key: Any, values: tuple[RegistryValue, ...] = ()) -> RegistryKey | None:
    text = normalize_registry_key(key)
    return RegistryKey(text, values) if text else None


def make_network_traffic(
    src: Any, dst: Any, src_port: Any, dst_port: Any, protocols: Any = ()
) -> NetworkTraffic | None:
    """A connection with both ends and both ports known (STIX best practice wants both ports).

    A half-known connection is better represented by its addresses alone, which mappers emit anyway.
    """
    src_ip, dst_ip = make_ip(src), make_ip(dst)
    sport, dport = make_port(src_port), make_port(dst_port)
    if src_ip is None or dst_ip is None or sport is None or dport is None:
        return None
    names = tuple(dict.fromkeys(str(p).strip().lower() for p in protocols or () if str(p).strip()))
    return NetworkTraffic(src=src_ip, dst=dst_ip, src_port=sport, dst_port=dport, protocols=names)


def make_port(value: Any) -> int | None:
    if value is None:  # most alerts have no ports: no exception raised and caught for them
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        return None
    return port if 0 <= port <= 65535 else None


@dataclass(slots=True)
class ObservableSet:
    """Collects observables without duplicates, keeping first-seen order."""

    items: dict[Observable, None] = field(default_factory=dict)

    def add(self, observable: Observable | None) -> None:
        if observable is not None:
            self.items.setdefault(observable, None)

    def extend(self, observables: Any) -> None:
        for observable in observables:
            self.add(observable)

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def as_list(self) -> list[Observable]:
        return list(self.items)
