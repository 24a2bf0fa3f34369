"""The query clause that finds one OpenCTI entity in Wazuh alerts.

Wazuh 4.x indexes strings as `keyword`: exact and case-sensitive. So each field family gets the spellings
its sources write (FIM lower-case hashes, Sysmon's upper-case combined hash string, doubled Windows
backslashes, MAC and IPv6 textual forms, registry hive aliases) as exact terms first. `prefix`, `wildcard`
and `regexp` appear only where a `WAZUH_SEARCH_*` option asks, and every value put into them goes through
the one escaping function of that syntax. Which fields each family searches is data (`fields-4.x.yml`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ctibridge.config.wazuh import (
    DirSearchOption,
    FileSearchOption,
    ProcessSearchOption,
    RegKeySearchOption,
    WazuhSearchSettings,
)
from ctibridge.errors import InputError
from ctibridge.patterns.regex import lucene_literal
from ctibridge.patterns.render.opensearch import escape_wildcard

log = logging.getLogger(__name__)

Clause = dict[str, Any]
MAX_VALUE_LENGTH = 8192
# auditd splits a command line into a0..aN; the field table lists a0..a7 for paths.
MAX_EXECVE_ARGS = 8
# Sub-prefixes / addresses a CIDR may expand to on keyword fields before only `ip` fields are searched.
MAX_CIDR_EXPANSION = 32

SEARCHABLE_TYPES = frozenset(
    {
        "ipv4-addr",
        "ipv6-addr",
        "domain-name",
        "hostname",
        "x-opencti-hostname",
        "url",
        "email-addr",
        "user-account",
        "mac-addr",
        "user-agent",
        "file",
        "artifact",
        "directory",
        "process",
        "windows-registry-key",
        "network-traffic",
        "software",
        "vulnerability",
        "indicator",
    }
)

__all__ = [
    "SEARCHABLE_TYPES",
    "Clause",
    "FieldTable",
    "SearchBuilder",
    "Unsearchable",
    "escape_regexp",
    "escape_wildcard",
    "load_field_table",
]


class Unsearchable(InputError):
    """The entity cannot (or, per the settings, must not) be searched; the message says why."""


def escape_regexp(text: str) -> str:
    """The one escaping function for Lucene `regexp` values: every ASCII punctuation character, which
    covers the operators of the default flags ALL (`# @ & < > ~`) as well as `. ? + * | { } [ ] ( ) " \\`."""
    return "".join(lucene_literal(char) for char in text)


# --------------------------------------------------------------------------------------------------
# Field table


@dataclass(frozen=True)
class FieldTable:
    version: str
    exclude: tuple[str, ...]
    ip_typed: frozenset[str]
    families: Mapping[str, tuple[str, ...]]

    def family(self, name: str) -> tuple[str, ...]:
        return self.families.get(name, ())


def _check_table(data: Any, origin: str) -> FieldTable:
    if not isinstance(data, dict) or not isinstance(data.get("families"), dict):
        raise ValueError(f"{origin}: expected a mapping with `families`")
    exclude = tuple(str(name) for name in data.get("exclude") or ())
    families: dict[str, tuple[str, ...]] = {}
    for name, fields in data["families"].items():
        if not isinstance(fields, list) or not all(isinstance(f, str) and f.strip() for f in fields):
            raise ValueError(f"{origin}: family {name!r} must be a list of field names")
        for field in fields:
            if field in exclude and name not in ("agent_ip", "agent_name"):
                raise ValueError(f"{origin}: family {name!r} lists the excluded field {field!r}")
            if "*" in field:
                reached = [ex for ex in exclude if fnmatch.fnmatchcase(ex, field)]
                if reached:
                    raise ValueError(f"{origin}: glob {field!r} in {name!r} reaches excluded {reached[0]!r}")
        families[str(name)] = tuple(fields)
    return FieldTable(
        version=str(data.get("version", "")),
        exclude=exclude,
        ip_typed=frozenset(str(f) for f in data.get("ip_typed") or ()),
        families=families,
    )


@lru_cache(maxsize=8)
def load_field_table(version: str = "4.x", path: str | None = None) -> FieldTable:
    """The field table of a Wazuh version (built in) or a user's YAML file; ValueError when unusable."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        origin = path
    else:
        name = f"fields-{version}.yml"
        resource = resources.files("ctibridge.siem.wazuh").joinpath(name)
        if not resource.is_file():
            raise ValueError(f"no built-in field table for Wazuh {version!r}")
        text = resource.read_text(encoding="utf-8")
        origin = name
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"{origin} is not valid YAML") from None
    return _check_table(data, origin)


# --------------------------------------------------------------------------------------------------
# Clause helpers


def any_of(clauses: Iterable[Clause | None]) -> Clause | None:
    items = _dedupe(c for c in clauses if c)
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return {"bool": {"should": items, "minimum_should_match": 1}}


def all_of(clauses: Iterable[Clause | None]) -> Clause | None:
    items = _dedupe(c for c in clauses if c)
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return {"bool": {"filter": items}}


def _dedupe(clauses: Iterable[Clause]) -> list[Clause]:
    seen: set[str] = set()
    out = []
    for clause in clauses:
        key = repr(clause)
        if key not in seen:
            seen.add(key)
            out.append(clause)
    return out


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _concrete(fields: Iterable[str]) -> list[str]:
    return [f for f in fields if "*" not in f]


def _globs(fields: Iterable[str]) -> list[str]:
    return [f for f in fields if "*" in f]


def exact(fields: Sequence[str], values: Sequence[str], case_insensitive: bool = False) -> Clause | None:
    """Keyword-exact match of any value in any field: term/terms on named fields, multi_match on globs."""
    values = _unique(values)
    if not values or not fields:
        return None
    clauses: list[Clause] = []
    for field in _concrete(fields):
        if case_insensitive:
            clauses.extend({"term": {field: {"value": v, "case_insensitive": True}}} for v in values)
        elif len(values) == 1:
            clauses.append({"term": {field: values[0]}})
        else:
            clauses.append({"terms": {field: values}})
    globs = _globs(fields)
    if globs:
        # multi_match on keyword fields is exact and case-sensitive: send the common spellings.
        spellings = _unique(
            s for v in values for s in ((v, v.lower(), v.upper()) if case_insensitive else (v,))
        )
        clauses.extend(
            {"multi_match": {"query": v, "fields": list(globs), "lenient": True}} for v in spellings
        )
    return any_of(clauses)


def prefix(fields: Sequence[str], values: Sequence[str], case_insensitive: bool = False) -> Clause | None:
    """`prefix` needs no escaping (no special characters); globs cannot take it and are left out."""
    body = {"case_insensitive": True} if case_insensitive else {}
    return any_of(
        {"prefix": {field: {"value": v, **body}}} for field in _concrete(fields) for v in _unique(values)
    )


def wildcard(fields: Sequence[str], patterns: Sequence[str], case_insensitive: bool = False) -> Clause | None:
    """`patterns` must already be built with `escape_wildcard` around every value."""
    body = {"case_insensitive": True} if case_insensitive else {}
    return any_of(
        {"wildcard": {field: {"value": p, **body}}} for field in _concrete(fields) for p in _unique(patterns)
    )


def regexp(fields: Sequence[str], patterns: Sequence[str], case_insensitive: bool = False) -> Clause | None:
    """`patterns` must already be built with `escape_regexp` around every value."""
    body = {"case_insensitive": True} if case_insensitive else {}
    return any_of(
        {"regexp": {field: {"value": p, "flags": "ALL", **body}}}
        for field in _concrete(fields)
        for p in _unique(patterns)
    )


# --------------------------------------------------------------------------------------------------
# Value normalisation


_ABS_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_BACKSLASHES = re.compile(r"\\+")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_HASH_ALGOS = {  # STIX hash key (normalised) -> (family, hex length, Sysmon name)
    "MD5": ("hash_md5", 32, "MD5"),
    "SHA1": ("hash_sha1", 40, "SHA1"),
    "SHA256": ("hash_sha256", 64, "SHA256"),
    "SHA512": ("hash_sha512", 128, None),
}
_HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKEY_USERS": "HKU",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKEY_CURRENT_CONFIG": "HKCC",
}
_HIVE_BY_NAME = {**{k: k for k in _HIVES}, **{v: k for k, v in _HIVES.items()}}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Unsearchable(f"{what} is missing or empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise Unsearchable(f"{what} is longer than {MAX_VALUE_LENGTH} characters")
    return value


def is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(_ABS_WINDOWS.match(path))


def backslash_forms(path: str, normalise: bool = True) -> list[str]:
    """The path as given, with single backslashes, and with doubled ones (Wazuh's Sysmon logs)."""
    if "\\" not in path or not normalise:
        return [path]
    single = _BACKSLASHES.sub(lambda _: "\\", path)
    return _unique([path, single, single.replace("\\", "\\\\")])


def backslash_regexp(path: str, subtree: bool = False) -> str:
    """Regexp for `path` with any number of backslashes between parts (escaped literals otherwise)."""
    parts = [escape_regexp(part) for part in _BACKSLASHES.split(path)]
    body = "\\\\+".join(parts)
    return body + ("(\\\\+.*)?" if subtree else "")


def mac_variants(value: str, all_forms: bool) -> list[str]:
    digits = re.sub(r"[\s:.\-]", "", value)
    if len(digits) != 12 or not _HEX.match(digits):
        raise Unsearchable("MAC address is not 12 hexadecimal digits")
    low = digits.lower()
    pairs = [low[i : i + 2] for i in range(0, 12, 2)]
    colon = ":".join(pairs)
    if not all_forms:
        return [colon]
    forms = [colon, "-".join(pairs), low, ".".join(low[i : i + 4] for i in range(0, 12, 4))]
    return _unique(f for form in forms for f in (form, form.upper()))


def _split_basename(path: str) -> str:
    return re.split(r"[\\/]+", path.rstrip("\\/"))[-1]


def _related_by_id(related: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(obj.get("id")): obj for obj in related if isinstance(obj, Mapping) and obj.get("id")}


# --------------------------------------------------------------------------------------------------
# The builder


class SearchBuilder:
    """Entity (a STIX 2.1 dict as OpenCTI sends it) -> the bool clause that finds it in alerts."""

    def __init__(self, settings: WazuhSearchSettings, table: FieldTable | None = None) -> None:
        self.settings = settings
        self.table = table or load_field_table(settings.fields_version, settings.fields_file)

    def f(self, family: str) -> tuple[str, ...]:
        return self.table.family(family)

    def skip_reason(self, entity: Mapping[str, Any]) -> str | None:
        """Why the settings say this entity must not be hunted (private addresses), else None."""
        if entity.get("type") in ("ipv4-addr", "ipv6-addr") and self.settings.ignore_private_addrs:
            try:
                network = ipaddress.ip_network(str(entity.get("value", "")).strip(), strict=False)
            except ValueError:
                return None
            if network.is_private or network.is_loopback or network.is_link_local or network.is_multicast:
                shown = network.network_address if network.num_addresses == 1 else network
                return f"{shown} is a private or reserved address (WAZUH_SEARCH_IGNORE_PRIVATE_ADDRS)"
        return None

    def clause(self, entity: Mapping[str, Any], related: Sequence[Mapping[str, Any]] = ()) -> Clause:
        """The clause, or Unsearchable with the reason."""
        if not isinstance(entity, Mapping):
            raise Unsearchable("the entity is not a JSON object")
        kind = str(entity.get("type", "")).lower()
        reason = self.skip_reason(entity)
        if reason:
            raise Unsearchable(reason)
        handler = getattr(self, "_" + kind.replace("-", "_"), None) if kind in SEARCHABLE_TYPES else None
        if handler is None:
            raise Unsearchable(f"entity type {kind or '(none)'!r} is not searchable in Wazuh alerts")
        result = handler(entity, _related_by_id(related))
        if not result:
            raise Unsearchable(f"nothing searchable in this {kind} with the current WAZUH_SEARCH_* options")
        return result

    # -- addresses
    def _ipv4_addr(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        return self._ip(_text(entity.get("value"), "value"), 4)

    def _ipv6_addr(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        return self._ip(_text(entity.get("value"), "value"), 6)

    def _ip(self, value: str, version: int) -> Clause | None:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise Unsearchable(f"value is not a valid IPv{version} address or network") from None
        if network.version != version:
            raise Unsearchable(f"value is not an IPv{version} address")
        fields = list(self.f("ip")) + (list(self.f("agent_ip")) if self.settings.lookup_agent_ip else [])
        if network.num_addresses == 1:
            return self._addresses(fields, _ip_spellings(network.network_address), version)
        return self._cidr(network, fields)

    def _addresses(self, fields: Sequence[str], spellings: list[str], version: int) -> Clause | None:
        """IPv6 hex ignores case on keyword fields; `ip` fields parse it and refuse case_insensitive."""
        typed = [f for f in fields if f in self.table.ip_typed]
        keyword = [f for f in fields if f not in self.table.ip_typed]
        return any_of([exact(typed, spellings), exact(keyword, spellings, case_insensitive=version == 6)])

    def _cidr(
        self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, fields: list[str]
    ) -> Clause | None:
        typed = [f for f in _concrete(fields) if f in self.table.ip_typed]
        keyword = [f for f in _concrete(fields) if f not in self.table.ip_typed]
        clauses: list[Clause | None] = [{"term": {f: str(network)}} for f in typed]
        if network.version == 4 and network.prefixlen < 8:
            raise Unsearchable(f"network {network} is too broad to hunt (prefix shorter than /8)")
        if network.version == 6 and network.prefixlen < 16:
            raise Unsearchable(f"network {network} is too broad to hunt (prefix shorter than /16)")
        if network.num_addresses <= MAX_CIDR_EXPANSION:
            spellings = [s for ip in network for s in _ip_spellings(ip)]
            clauses.append(self._addresses(fields, spellings, network.version))
            return any_of(clauses)
        prefixes = _cidr_prefixes(network)
        if prefixes is None:
            log.warning(
                "network %s cannot be expressed on keyword fields; only ip-typed fields are searched", network
            )
        else:
            clauses.append(prefix(keyword, prefixes, case_insensitive=network.version == 6))
        return any_of(clauses)

    # -- names
    def _domain_name(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        value = _text(entity.get("value"), "value").strip().rstrip(".")
        ci = self.settings.case_insensitive_domains
        fields = list(self.f("domain")) + (
            list(self.f("agent_name")) if self.settings.lookup_agent_name else []
        )
        clauses = [exact(fields, [value], ci)]
        if self.settings.lookup_hostnames_in_cmd_line:
            clauses.append(wildcard(self.f("command_line"), [f"*{escape_wildcard(value)}*"], ci))
        return any_of(clauses)

    _hostname = _domain_name
    _x_opencti_hostname = _domain_name

    def _url(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        value = _text(entity.get("value"), "value").strip()
        values = [value]
        if self.settings.lookup_url_ignore_trailing_slash:
            values.append(value[:-1] if value.endswith("/") else value + "/")
        if self.settings.lookup_url_without_host:
            parts = urlsplit(value)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if parts.netloc and path and path != "/":
                values.append(path)
                if self.settings.lookup_url_ignore_trailing_slash:
                    values.append(path[:-1] if path.endswith("/") else path + "/")
        return exact(self.f("url"), values)

    def _email_addr(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        value = _text(entity.get("value"), "value").strip()
        return exact(self.f("email"), [value], self.settings.case_insensitive_emails)

    def _user_account(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        clauses = []
        login = entity.get("account_login")
        if isinstance(login, str) and login.strip():
            clauses.append(
                exact(
                    self.f("user_login"),
                    [_text(login, "account_login")],
                    self.settings.case_insensitive_users,
                )
            )
        user_id = entity.get("user_id")
        if isinstance(user_id, str | int) and str(user_id).strip():
            clauses.append(exact(self.f("user_id"), [_text(str(user_id), "user_id")]))
        if not clauses:
            raise Unsearchable("user-account has neither account_login nor user_id")
        return any_of(clauses)

    def _mac_addr(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        forms = mac_variants(_text(entity.get("value"), "value"), self.settings.lookup_mac_variants)
        return exact(self.f("mac"), forms)

    def _user_agent(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        return exact(self.f("user_agent"), [_text(entity.get("value"), "value")])

    # -- files
    def _hash_clause(self, hashes: Any) -> Clause | None:
        if not isinstance(hashes, Mapping):
            return None
        clauses = []
        for key, value in hashes.items():
            algo = re.sub(r"[^A-Z0-9]", "", str(key).upper())
            if algo not in _HASH_ALGOS or not isinstance(value, str):
                continue
            family, length, sysmon = _HASH_ALGOS[algo]
            digest = value.strip()
            if len(digest) != length or not _HEX.match(digest):
                log.warning("ignoring %s hash that is not %d hexadecimal digits", key, length)
                continue
            clauses.append(exact(self.f(family), [digest.lower(), digest.upper()]))
            if sysmon and self.settings.lookup_hashes_in_sysmon:
                token = escape_wildcard(f"{sysmon}={digest.upper()}")
                clauses.append(wildcard(self.f("sysmon_hashes"), [f"*{token}", f"*{token},*"], True))
        return any_of(clauses)

    def _file_names(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> list[str]:
        options = self.settings.filesearch_options
        names = [entity.get("name")]
        if FileSearchOption.SEARCH_ADDITIONAL_FILENAMES in options:
            extra = entity.get("x_opencti_additional_names") or []
            names.extend(extra if isinstance(extra, list) else [])
        out = [_text(n, "name").strip() for n in names if isinstance(n, str) and n.strip()]
        if FileSearchOption.BASENAME_ONLY in options:
            out = [_split_basename(n) for n in out]
        parent = related.get(str(entity.get("parent_directory_ref", "")))
        if (
            FileSearchOption.INCLUDE_PARENT_DIR_REF in options
            and parent
            and isinstance(parent.get("path"), str)
        ):
            directory = parent["path"].rstrip("\\/")
            sep = "\\" if "\\" in directory or _ABS_WINDOWS.match(directory) else "/"
            out = [n if is_absolute(n) else f"{directory}{sep}{_split_basename(n)}" for n in out]
        return _unique(out)

    def _name_clause(self, name: str) -> Clause | None:
        options = self.settings.filesearch_options
        ci = FileSearchOption.CASE_INSENSITIVE in options
        clauses: list[Clause | None] = []
        if is_absolute(name):
            clauses.append(exact(self.f("file_path"), backslash_forms(name), ci))
            if FileSearchOption.ALLOW_REGEXP in options:
                clauses.append(regexp(self.f("file_path"), [backslash_regexp(name)], ci))
            return any_of(clauses)
        if FileSearchOption.REQUIRE_ABS_PATH in options:
            return None
        forms = backslash_forms(name)
        if "\\" not in name and "/" not in name:
            clauses.append(exact(self.f("file_name"), [name], ci))
        clauses.append(exact(self.f("file_path"), forms, ci))
        if FileSearchOption.MATCH_BASENAME in options:
            patterns = [f"*{sep}{escape_wildcard(form)}" for form in forms for sep in ("\\\\", "/")]
            clauses.append(wildcard(self.f("file_path"), patterns, ci))
        if FileSearchOption.ALLOW_REGEXP in options:
            clauses.append(regexp(self.f("file_path"), [f"(.*[\\\\/])?{backslash_regexp(name)}"], ci))
        return any_of(clauses)

    def _file(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        options = self.settings.filesearch_options
        hashes = self._hash_clause(entity.get("hashes"))
        names = any_of(self._name_clause(n) for n in self._file_names(entity, related))
        size = entity.get("size")
        if names and FileSearchOption.SEARCH_SIZE in options and isinstance(size, int) and size >= 0:
            size_fields = _concrete(self.f("file_size"))
            if size_fields:
                agrees = any_of(
                    [
                        exact(size_fields, [str(size)]),
                        {"bool": {"must_not": [{"exists": {"field": f}} for f in size_fields]}},
                    ]
                )
                names = all_of([names, agrees])
        if hashes and names and FileSearchOption.SEARCH_NAME_AND_HASH in options:
            return all_of([hashes, names])
        if hashes:
            return hashes
        if names and FileSearchOption.SEARCH_FILENAME_ONLY in options:
            return names
        if entity.get("hashes") and not hashes:
            raise Unsearchable(
                "file has no hash in a known algorithm and form (MD5, SHA-1, SHA-256, SHA-512)"
            )
        raise Unsearchable(
            "file has no hash, and name-only search is off or the name is not an absolute path"
        )

    def _artifact(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        hashes = self._hash_clause(entity.get("hashes"))
        if not hashes:
            raise Unsearchable("artifact has no hash in a known algorithm and form")
        return hashes

    def _directory(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        options = self.settings.dirsearch_options
        path = _text(entity.get("path"), "path").strip()
        if DirSearchOption.REQUIRE_ABS_PATH in options and not is_absolute(path):
            raise Unsearchable("directory path is not absolute (require-abs-path)")
        ci = DirSearchOption.CASE_INSENSITIVE in options
        bare = path.rstrip("\\/") or path
        sep = "\\" if "\\" in bare or _ABS_WINDOWS.match(bare) else "/"
        base = [bare] if DirSearchOption.IGNORE_TRAILING_SLASH in options else [path]
        forms = [
            f for b in base for f in backslash_forms(b, DirSearchOption.NORMALISE_BACKSLASHES in options)
        ]
        if DirSearchOption.IGNORE_TRAILING_SLASH in options and bare != "/":
            forms += [f + ("\\\\" if "\\\\" in f else sep) for f in forms]
        clauses = [exact(self.f("directory"), forms, ci)]
        subtree = [f.rstrip("\\/") + ("\\\\" if "\\\\" in f else sep) for f in forms]
        if DirSearchOption.MATCH_SUBDIRS in options:
            clauses.append(prefix(self.f("directory"), subtree, ci))
        if DirSearchOption.SEARCH_FILENAMES in options:
            clauses.append(prefix(self.f("file_path"), subtree, ci))
        if DirSearchOption.ALLOW_REGEXP in options:
            fields = list(self.f("directory")) + (
                list(self.f("file_path")) if DirSearchOption.SEARCH_FILENAMES in options else []
            )
            subdirs = DirSearchOption.MATCH_SUBDIRS in options or DirSearchOption.SEARCH_FILENAMES in options
            pattern = backslash_regexp(bare, subtree=subdirs) + ("" if subdirs else "[\\\\/]?")
            clauses.append(regexp(fields, [pattern], ci))
        return any_of(clauses)

    # -- processes and registry
    def _process(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        options = self.settings.procsearch_options
        command = entity.get("command_line")
        if not isinstance(command, str) or not command.strip():
            raise Unsearchable("process has no command_line")
        command = _text(command, "command_line")
        ci = ProcessSearchOption.CASE_INSENSITIVE in options
        forms = backslash_forms(command, ProcessSearchOption.NORMALISE_BACKSLASHES in options)
        clauses = [exact(self.f("command_line"), forms, ci)]
        tokens = _tokens(command)
        prefixes = self.f("execve_prefix")
        if prefixes and tokens and len(tokens) <= MAX_EXECVE_ARGS:
            for base in prefixes:
                clauses.append(all_of(exact([f"{base}{i}"], [tok], ci) for i, tok in enumerate(tokens)))
        return any_of(clauses)

    def _windows_registry_key(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        options = self.settings.regkeysearch_options
        key = _text(entity.get("key"), "key").strip()
        single = _BACKSLASHES.sub(lambda _: "\\", key).rstrip("\\")
        hive, _, rest = single.partition("\\")
        canonical = _HIVE_BY_NAME.get(hive.upper())
        if RegKeySearchOption.REQUIRE_ABS_PATH in options and canonical is None:
            raise Unsearchable("registry key does not start with a known hive (require-abs-path)")
        hives = [hive]
        if canonical and RegKeySearchOption.SEARCH_HIVE_ALIASES in options:
            hives = _unique([hive, canonical, _HIVES[canonical]])
        keys = [f"{h}\\{rest}" if rest else h for h in hives]
        normalise = RegKeySearchOption.NORMALISE_BACKSLASHES in options
        forms = [f for k in keys for f in backslash_forms(k, normalise)]
        exact_forms = list(forms)
        if RegKeySearchOption.IGNORE_TRAILING_SLASH in options:
            exact_forms += [f + ("\\\\" if "\\\\" in f else "\\") for f in forms]
        ci = RegKeySearchOption.CASE_INSENSITIVE in options
        fields = self.f("registry_key")
        clauses = [exact(fields, exact_forms, ci)]
        if RegKeySearchOption.MATCH_SUBDIRS in options:
            clauses.append(prefix(fields, [f + ("\\\\" if "\\\\" in f else "\\") for f in forms], ci))
        values = entity.get("values")
        if isinstance(values, list):
            names = [
                v.get("name") for v in values if isinstance(v, Mapping) and isinstance(v.get("name"), str)
            ]
            names = [n for n in names if n]
            if names:
                clauses.append(
                    exact(
                        fields, [f + ("\\\\" if "\\\\" in f else "\\") + n for f in forms for n in names], ci
                    )
                )
                clauses.append(
                    all_of([exact(fields, exact_forms, ci), exact(self.f("registry_value_name"), names)])
                )
        if RegKeySearchOption.ALLOW_REGEXP in options:
            subtree = RegKeySearchOption.MATCH_SUBDIRS in options
            patterns = []
            for k in keys:
                h, _, r = k.partition("\\")
                if RegKeySearchOption.IGNORE_SID in options and canonical == "HKEY_USERS":
                    # any SID: the first component after the hive
                    _, _, after_sid = r.partition("\\")
                    body = (
                        escape_regexp(h)
                        + "\\\\+[^\\\\]+"
                        + ("\\\\+" + backslash_regexp(after_sid) if after_sid else "")
                    )
                    patterns.append(body + ("(\\\\+.*)?" if subtree else "\\\\*"))
                else:
                    patterns.append(backslash_regexp(k, subtree=subtree) + ("" if subtree else "\\\\*"))
            clauses.append(regexp(fields, patterns, ci))
        return any_of(clauses)

    # -- traffic, software, vulnerabilities
    def _network_traffic(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        parts: list[Clause | None] = []
        for ref, family in (("src_ref", "src_ip"), ("dst_ref", "dst_ip")):
            target = related.get(str(entity.get(ref, "")))
            value = target.get("value") if target else None
            if isinstance(value, str) and value.strip():
                try:
                    address = ipaddress.ip_address(value.strip())
                except ValueError:
                    raise Unsearchable(f"{ref} is not a single IP address") from None
                parts.append(self._addresses(self.f(family), _ip_spellings(address), address.version))
            elif entity.get(ref):
                raise Unsearchable(f"{ref} is not among the related objects sent with the entity")
        if not parts:
            raise Unsearchable("network-traffic has no resolvable src_ref or dst_ref address")
        for key, family in (("src_port", "src_port"), ("dst_port", "dst_port")):
            port = entity.get(key)
            if isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535:
                parts.append(exact(self.f(family), [str(port)]))
        return all_of(parts)

    def _software(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        name = _text(entity.get("name"), "name").strip()
        clauses = [exact(self.f("software_name"), [name], case_insensitive=True)]
        version = entity.get("version")
        if isinstance(version, str) and version.strip():
            clauses.append(exact(self.f("software_version"), [version.strip()]))
        return all_of(clauses)

    def _vulnerability(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        name = _text(entity.get("name"), "name").strip()
        return exact(self.f("cve"), [name], case_insensitive=True)

    def _indicator(self, entity: Mapping[str, Any], related: Mapping[str, Any]) -> Clause | None:
        from ctibridge.patterns.api import translate
        from ctibridge.patterns.errors import PatternError

        pattern_type = str(entity.get("pattern_type", "")).lower()
        if pattern_type != "stix":
            raise Unsearchable(
                f"indicator pattern type {pattern_type or '(none)'!r} is not searchable (only stix)"
            )
        pattern = _text(entity.get("pattern"), "pattern")
        try:
            result = translate(pattern, source="stix", target="opensearch")
        except PatternError as exc:
            raise Unsearchable(f"indicator pattern cannot be searched: {exc}") from None
        if not isinstance(result, dict) or not result:
            raise Unsearchable("indicator pattern translated to nothing")
        return result


def _ip_spellings(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    if ip.version == 4:
        return [str(ip)]
    return _unique([ip.compressed, ip.exploded])


def _cidr_prefixes(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str] | None:
    """Keyword prefixes that cover exactly the addresses of `network` in their usual spelling."""
    if network.version == 4:
        boundary = -(-network.prefixlen // 8) * 8
        subnets = list(network.subnets(new_prefix=boundary)) if boundary != network.prefixlen else [network]
        if len(subnets) > MAX_CIDR_EXPANSION:
            return None
        octets = boundary // 8
        return [".".join(str(subnet.network_address).split(".")[:octets]) + "." for subnet in subnets]
    if network.prefixlen % 16:
        return None
    hextets = network.network_address.exploded.split(":")[: network.prefixlen // 16]
    if any(int(h, 16) == 0 for h in hextets):
        return None  # zero groups may be compressed away: no reliable textual prefix
    compressed = ":".join(format(int(h, 16), "x") for h in hextets) + ":"
    return _unique([compressed, ":".join(hextets) + ":"])


def _tokens(command: str) -> list[str]:
    try:
        return shlex.split(command, posix=True)
    except ValueError:
        return command.split()
