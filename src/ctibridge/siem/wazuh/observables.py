"""Alert fields -> observables, per the Wazuh "alert field -> SCO" table (../shared/reference/wazuh.md).

The field lists are data (`FIELDS`), so a Wazuh version with other field names is a table change.
Every value goes through the `make_*` validators of `ctibridge.model.observables`: an invalid IP, a
malformed hash or a missing part drops that one value (logged at debug), never the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ctibridge.model.alerts import Technique
from ctibridge.model.observables import (
    Directory,
    DomainName,
    File,
    IPAddress,
    NetworkTraffic,
    Observable,
    Process,
    RegistryKey,
    RegistryValue,
    Software,
    Url,
    UserAccount,
    make_domain,
    make_file,
    make_ip,
    make_network_traffic,
    make_process,
    make_registry_key,
    make_url,
    make_user,
)
from ctibridge.siem.wazuh.alertdoc import get, index_paths, techniques, text, texts, to_float

log = logging.getLogger(__name__)

# Versioned field table (Wazuh 4.x alerts).
FIELDS: dict[str, tuple[str, ...]] = {
    "ip": (
        "data.srcip",
        "data.dstip",
        "data.src_ip",
        "data.dest_ip",
        "data.win.eventdata.sourceIp",
        "data.win.eventdata.destinationIp",
        "data.aws.remote_ip",
        "data.aws.source_ip_address",
        "data.office365.ClientIP",
        "data.gcp.protoPayload.requestMetadata.callerIp",
    ),
    "user_login": (
        "data.srcuser",
        "data.dstuser",
        "data.win.eventdata.samAccountname",
        "data.office365.UserId",
        "syscheck.uname_after",
    ),
    "user_id": (
        "data.audit.uid",
        "data.uid",
        "data.win.eventdata.subjectUserSid",
        "data.win.eventdata.targetSid",
    ),
    "file_path": (
        "data.win.eventdata.targetFilename",
        "data.win.eventdata.file",
        "data.win.eventdata.filePath",
        "data.audit.file.name",
        "data.office365.SourceFileName",
        "data.sca.check.file",
        "data.smbd.filename",
        "data.smbd.new_filename",
        "data.ChildPath",
        "data.ParentPath",
        "data.Path",
        "data.TargetPath",
    ),
    "url": ("data.url", "data.office365.MessageURLs"),
    "domain": ("data.dns.question.name", "data.win.eventdata.queryName"),
    "registry_key": ("data.win.eventdata.targetObject",),
}
# (source ip, destination ip, source port, destination port, protocol)
TRAFFIC_FIELDS: tuple[tuple[str, str, str, str, str], ...] = (
    ("data.srcip", "data.dstip", "data.srcport", "data.dstport", "data.protocol"),
    (
        "data.win.eventdata.sourceIp",
        "data.win.eventdata.destinationIp",
        "data.win.eventdata.sourcePort",
        "data.win.eventdata.destinationPort",
        "data.win.eventdata.protocol",
    ),
)
# Hashes stored next to a path: (path field, {algorithm: hash field}, size field)
HASHED_FILES: tuple[tuple[str, dict[str, str], str | None], ...] = (
    ("syscheck.path", {"md5": "syscheck.md5_after", "sha1": "syscheck.sha1_after",
                       "sha256": "syscheck.sha256_after"}, "syscheck.size_after"),
    ("data.osquery.columns.path", {"md5": "data.osquery.columns.md5", "sha1": "data.osquery.columns.sha1",
                                   "sha256": "data.osquery.columns.sha256"}, None),
    ("data.virustotal.source.file", {"md5": "data.virustotal.source.md5",
                                     "sha1": "data.virustotal.source.sha1"}, None),
)  # fmt: skip
REGISTRY_DATA_TYPES = frozenset(
    {
        "REG_NONE",
        "REG_SZ",
        "REG_EXPAND_SZ",
        "REG_BINARY",
        "REG_DWORD",
        "REG_DWORD_BIG_ENDIAN",
        "REG_DWORD_LITTLE_ENDIAN",
        "REG_LINK",
        "REG_MULTI_SZ",
        "REG_RESOURCE_LIST",
        "REG_FULL_RESOURCE_DESCRIPTION",
        "REG_RESOURCE_REQUIREMENTS_LIST",
        "REG_QWORD",
        "REG_INVALID_TYPE",
    }
)
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"})
# CVSS3 severity word -> the middle of its score band, when an alert carries no score.
_SEVERITY_SCORE = {"none": 0.0, "low": 2.0, "medium": 5.5, "high": 8.0, "critical": 9.5}


@dataclass(frozen=True, slots=True)
class VulnerabilityFinding:
    cve: str
    score: float | None = None
    title: str | None = None
    software: Software | None = None


@dataclass(slots=True)
class AlertFindings:
    """What one alert contributes to an enrichment."""

    observables: list[Observable] = field(default_factory=list)
    vulnerabilities: list[VulnerabilityFinding] = field(default_factory=list)
    techniques: list[Technique] = field(default_factory=list)


# The same addresses recur across thousands of alerts; parsing is the costly part. Module-level and
# bounded, keyed by the text only.
_ip = lru_cache(maxsize=65536)(make_ip)


def observable_type(obs: Observable) -> str:
    """The STIX type an observable becomes (the names `WAZUH_ENRICH_TYPES` uses)."""
    if isinstance(obs, IPAddress):
        return obs.stix_type
    return _TYPE_NAMES.get(type(obs), type(obs).__name__.lower())


_TYPE_NAMES: dict[type, str] = {
    File: "file",
    Directory: "directory",
    Process: "process",
    UserAccount: "user-account",
    Url: "url",
    DomainName: "domain-name",
    RegistryKey: "windows-registry-key",
    NetworkTraffic: "network-traffic",
    Software: "software",
}


def parse_sysmon_hashes(value: Any) -> dict[str, str]:
    """`SHA1=…,MD5=…,SHA256=…,IMPHASH=…` -> {"sha1": …, "md5": …, "sha256": …} (IMPHASH is no file hash)."""
    if not isinstance(value, str):
        return {}
    out: dict[str, str] = {}
    for part in value.split(","):
        name, sep, digest = part.partition("=")
        name = name.strip().lower().replace("-", "")
        if sep and name in ("md5", "sha1", "sha256", "sha512") and digest.strip():
            out[name] = digest.strip()
    return out


def cvss_score(source: Mapping[str, Any]) -> float | None:
    """CVSS3 base score (4.7 and older: `cvss.cvss3.base_score`; 4.8+: `score.base`), else the middle
    of the band named by `severity`."""
    for path in ("data.vulnerability.cvss.cvss3.base_score", "data.vulnerability.score.base"):
        score = to_float(get(source, path))
        if score is not None and 0.0 <= score <= 10.0:
            return score
    severity = text(source, "data.vulnerability.severity", 32)
    return _SEVERITY_SCORE.get(severity.lower()) if severity else None


class AlertObservables:
    """Extracts the enrichment findings of alerts, shaped by the filename options."""

    def __init__(self, *, create_directories: bool = True, remove_path: bool = True) -> None:
        self.create_directories = create_directories
        self.remove_path = remove_path

    def __call__(self, document: Mapping[str, Any]) -> AlertFindings:
        found = AlertFindings()
        source = index_paths(document)
        steps = (
            self._ips,
            self._users,
            self._files,
            self._processes,
            self._urls_domains,
            self._registry,
            self._traffic,
        )
        for step in steps:
            try:
                found.observables.extend(o for o in step(source) if o is not None)
            except (TypeError, ValueError, AttributeError) as exc:  # a shape no validator expected
                log.debug("skipped part of an alert (%s): %s", step.__name__, exc)
        try:
            found.vulnerabilities.extend(self._vulnerabilities(source))
        except (TypeError, ValueError, AttributeError) as exc:
            log.debug("skipped the vulnerability of an alert: %s", exc)
        found.techniques.extend(techniques(source))
        return found

    # ------------------------------------------------------------------ parts

    def file(self, path: Any, hashes: Mapping[str, Any] | None = None, size: Any = None) -> File | None:
        built = make_file(path=path, hashes=dict(hashes or {}), size=size)
        if built is None:
            return None
        path_text = str(path).strip() if path is not None else None
        if not self.remove_path and path_text:
            built = File(built.name and path_text, built.hashes, built.size, built.directory, built.mime_type)
        if not self.create_directories and built.directory is not None:
            built = File(built.name, built.hashes, built.size, None, built.mime_type)
        return built

    def _ips(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        for path in FIELDS["ip"]:
            if path in source:
                for value in texts(source, path):
                    yield _ip(value)

    def _users(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        for path in FIELDS["user_login"]:
            for value in texts(source, path) if path in source else ():
                domain, sep, login = value.rpartition("\\")
                yield make_user(login=login, domain=domain if sep else None)
        for path in FIELDS["user_id"]:
            for value in texts(source, path) if path in source else ():
                yield make_user(user_id=value)

    def _files(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        registry = is_registry_alert(source)
        for path_field, hash_fields, size_field in HASHED_FILES:
            if registry and path_field == "syscheck.path":
                continue
            path = text(source, path_field) if path_field in source else None
            hashes = {a: source[name] for a, name in hash_fields.items() if source.get(name) is not None}
            if path or hashes:
                yield self.file(path, hashes, get(source, size_field) if size_field else None)
        for path_field in FIELDS["file_path"]:
            for value in texts(source, path_field) if path_field in source else ():
                yield self.file(value)
        if not text(source, "data.win.eventdata.commandLine"):  # a process brings its image itself
            image = text(source, "data.win.eventdata.image")
            if image:
                yield self.file(image, parse_sysmon_hashes(get(source, "data.win.eventdata.hashes")))

    def _processes(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        ed = get(source, "data.win.eventdata")
        if isinstance(ed, Mapping) and (ed.get("commandLine") or ed.get("processId")):
            parent = None
            if ed.get("parentCommandLine") or ed.get("parentProcessId"):
                parent = make_process(
                    pid=ed.get("parentProcessId"),
                    command_line=ed.get("parentCommandLine"),
                    image=self.file(ed.get("parentImage")),
                )
            user_text = text(ed, "user", 512)
            user = None
            if user_text:
                domain, sep, login = user_text.rpartition("\\")
                user = make_user(login=login, domain=domain if sep else None)
            yield make_process(
                pid=ed.get("processId"),
                command_line=ed.get("commandLine"),
                image=self.file(ed.get("image"), parse_sysmon_hashes(ed.get("hashes"))),
                cwd=ed.get("currentDirectory"),
                parent=parent,
                user=user,
            )
        audit = get(source, "data.audit")
        if isinstance(audit, Mapping) and (audit.get("execve") or audit.get("pid")):
            execve = audit.get("execve")
            args: list[str] = []
            if isinstance(execve, Mapping):
                numbered = sorted(
                    (int(k[1:]), v) for k, v in execve.items() if k[:1] == "a" and k[1:].isdigit()
                )
                args = [str(v) for _, v in numbered if v is not None and not isinstance(v, (dict, list))]
            command = " ".join(args) or audit.get("command")
            auid = text(audit, "auid", 64)
            yield make_process(
                pid=audit.get("pid"),
                command_line=command,
                image=self.file(audit.get("exe")),
                user=make_user(user_id=auid) if auid and auid not in ("4294967295", "-1") else None,
            )

    def _urls_domains(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        for path in FIELDS["url"]:
            for value in texts(source, path) if path in source else ():
                yield make_url(value)
        for path in FIELDS["domain"]:
            for value in texts(source, path) if path in source else ():
                yield make_domain(value)

    def _registry(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        if is_registry_alert(source):
            values: tuple[RegistryValue, ...] = ()
            name = text(source, "syscheck.value_name", 1024)
            if name:
                data_type = text(source, "syscheck.value_type", 64)
                values = (RegistryValue(name, None, data_type if data_type in REGISTRY_DATA_TYPES else None),)
            yield make_registry_key(get(source, "syscheck.path"), values)
        for path in FIELDS["registry_key"]:
            for value in texts(source, path) if path in source else ():
                yield make_registry_key(value)

    def _traffic(self, source: Mapping[str, Any]) -> Iterable[Observable | None]:
        for src, dst, sport, dport, proto in TRAFFIC_FIELDS:
            if src not in source or dst not in source:
                continue
            protocol = text(source, proto, 32)
            protocols: tuple[str, ...] = ()
            if protocol:
                protocols = ("http",) if protocol.upper() in _HTTP_METHODS else (protocol,)
                if not protocols[0].replace("-", "").isalnum():
                    protocols = ()
            yield make_network_traffic(
                get(source, src), get(source, dst), get(source, sport), get(source, dport), protocols
            )

    def _vulnerabilities(self, source: Mapping[str, Any]) -> Iterable[VulnerabilityFinding]:
        cve = text(source, "data.vulnerability.cve", 64)
        if not cve:
            return
        package = text(source, "data.vulnerability.package.name", 512)
        software = (
            Software(package, text(source, "data.vulnerability.package.version", 256)) if package else None
        )
        yield VulnerabilityFinding(
            cve.upper(), cvss_score(source), text(source, "data.vulnerability.title", 2048), software
        )


def is_registry_alert(source: Mapping[str, Any]) -> bool:
    """FIM registry events keep the key in `syscheck.path`; tell them from file events."""
    decoder = text(source, "decoder.name", 256) or ""
    if "registry" in decoder:
        return True
    path = (text(source, "syscheck.path") or "").upper()
    return path.startswith(("HKEY_", "HKLM\\", "HKCU\\", "HKU\\", "HKCR\\", "HKCC\\"))
