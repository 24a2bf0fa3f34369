"""Graph security incidents (Microsoft Sentinel and Defender XDR) to the model, and the model to STIX.

An incident becomes a Case-Incident, each alert an Incident, each piece of evidence one or more
observables linked to its alert's Incident. Enumerations are read case-insensitively (the docs spell
them `Active`, the metadata `active`); unknown members and `unknownFutureValue` fall back to a default.
Evidence is mapped one record at a time: a malformed or hostile item is skipped and counted, never the
alert. What the model has no place for (malware, an IP's country, indicators for malicious evidence)
travels beside it in `GraphAlert` and is built by `build_incident`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ctibridge.config.types import parse_datetime
from ctibridge.errors import InputError
from ctibridge.model import observables as o
from ctibridge.model.alerts import Alert, Case, Comment, Host, Link, Severity, Technique
from ctibridge.patterns.ast import quote_string
from ctibridge.stix.builder import Built, StixBuilder, StixDict

log = logging.getLogger(__name__)

SOURCE = "Microsoft Security"
PORTAL = "Microsoft Defender portal"
NS = "#microsoft.graph.security."

# Enumerations of the v1.0 metadata (members after unknownFutureValue are evolvable additions).
INCIDENT_STATUSES = ("active", "resolved", "inProgress", "redirected", "awaitingAction")
ALERT_STATUSES = ("new", "inProgress", "resolved")
CLASSIFICATIONS = ("falsePositive", "truePositive", "informationalExpectedActivity")
DETERMINATIONS = (
    "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
    "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious",
    "notEnoughDataToValidate", "confirmedActivity", "lineOfBusinessApplication",
)  # fmt: skip
VERDICTS = ("suspicious", "malicious", "noThreatsFound")
# Graph severity -> (OpenCTI severity, case priority): high P1, medium P2, low P3, informational P4.
SEVERITIES: dict[str, tuple[Severity, str]] = {
    "high": (Severity.HIGH, "P1"),
    "medium": (Severity.MEDIUM, "P2"),
    "low": (Severity.LOW, "P3"),
    "informational": (Severity.LOW, "P4"),
}
UNKNOWN_SEVERITY = (Severity.LOW, "P4")

# Product names old and new, and the serviceSource members, that name one product; compared squashed
# (lower case, letters and digits only) so "Azure Sentinel", "microsoftSentinel" and "Microsoft
# Sentinel" meet.
PRODUCT_FAMILIES: list[set[str]] = [
    {"azure sentinel", "microsoft sentinel", "sentinel", "azure security insights"},
    {
        "microsoft defender atp", "windows defender atp", "microsoft defender advanced threat protection",
        "microsoft defender for endpoint", "mdatp", "mde",
    },
    {"microsoft 365 defender", "microsoft defender xdr", "m365d", "defender xdr"},
    {"office 365 advanced threat protection", "office 365 atp", "microsoft defender for office 365", "mdo"},
    {"azure advanced threat protection", "azure atp", "microsoft defender for identity", "mdi"},
    {"microsoft cloud app security", "mcas", "microsoft defender for cloud apps", "mdca"},
    {"azure security center", "azure defender", "microsoft defender for cloud", "mdc"},
    {
        "azure active directory identity protection", "azure ad identity protection",
        "microsoft entra id protection",
    },
    {"microsoft data loss prevention", "data loss prevention"},
    {"microsoft insider risk management"},
    {"microsoft app governance"},
    {"microsoft threat intelligence"},
]  # fmt: skip

# Every evidence type of the v1.0 metadata is either mapped (below, `_EVIDENCE`) or listed here.
SKIPPED_EVIDENCE = frozenset(
    {
        "activeDirectoryDomain", "aiAgent", "alert", "amazonResource", "azureResource", "blobContainer",
        "cloudLogonRequest", "container", "containerImage", "containerRegistry", "googleCloudResource",
        "kubernetesCluster", "kubernetesController", "kubernetesNamespace", "kubernetesPod",
        "kubernetesSecret", "kubernetesService", "kubernetesServiceAccount", "mailCluster",
        "mailboxConfiguration", "sasToken", "score", "securityGroup", "servicePrincipal",
    }
)  # fmt: skip
_TECHNIQUE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_HTTP_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
_REGISTRY_TYPES = {
    "none": "REG_NONE", "string": "REG_SZ", "expandstring": "REG_EXPAND_SZ", "binary": "REG_BINARY",
    "dword": "REG_DWORD", "dwordbigendian": "REG_DWORD_BIG_ENDIAN", "link": "REG_LINK",
    "multistring": "REG_MULTI_SZ", "qword": "REG_QWORD",
}  # fmt: skip
_SHORT_HIVES = frozenset({"HKLM", "HKCU", "HKCR", "HKU", "HKCC"})
# fileHashAlgorithm members with a STIX hash name (sha256ac, Authenticode, has none).
_HASHES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256"}
_INDICATOR_HASHES = ("SHA-256", "SHA-1", "MD5")


def squash(value: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


def enum_member(value: Any, members: Iterable[str], default: str | None = None) -> str | None:
    """The metadata spelling of `value` compared case-insensitively; `default` for unknown members."""
    if not isinstance(value, str):
        return default
    wanted = value.strip().lower()
    for member in members:
        if member.lower() == wanted:
            return member
    return default


def graph_severity(value: Any) -> tuple[Severity, str]:
    """(OpenCTI severity, case priority); unknown and unknownFutureValue count as the lowest."""
    return SEVERITIES.get(str(value).strip().lower(), UNKNOWN_SEVERITY) if value else UNKNOWN_SEVERITY


class ProductFilter:
    """Keeps alerts of the target product(s), by product name or service source, old or new names."""

    def __init__(self, target: str | None) -> None:
        self.wanted: set[str] = set()
        for part in (target or "").split(","):
            key = squash(part)
            if not key or key in ("all", "any"):
                continue
            family = next((f for f in PRODUCT_FAMILIES if key in {squash(n) for n in f}), None)
            self.wanted |= {squash(n) for n in family} if family else {key}

    @property
    def active(self) -> bool:
        return bool(self.wanted)

    def __call__(self, alert: Mapping[str, Any]) -> bool:
        if not self.wanted:
            return True
        names = (alert.get("productName"), alert.get("serviceSource"))
        return any(isinstance(n, str) and squash(n) in self.wanted for n in names)


# --------------------------------------------------------------------------- mapped results


@dataclass(slots=True)
class GraphAlert:
    """An alert in the model, with what the model has no field for."""

    alert: Alert
    malware: list[tuple[str, str | None]] = field(default_factory=list)
    countries: list[tuple[o.IPAddress, str]] = field(default_factory=list)
    malicious: list[o.Observable] = field(default_factory=list)


@dataclass(slots=True)
class GraphIncident:
    id: str
    updated: str | None
    case: Case
    alerts: list[GraphAlert]


@dataclass(slots=True)
class _Evidence:
    """What one alert's evidence produced, deduplicated."""

    hosts: dict[Host, None] = field(default_factory=dict)
    users: o.ObservableSet = field(default_factory=o.ObservableSet)
    observables: o.ObservableSet = field(default_factory=o.ObservableSet)
    malware: dict[tuple[str, str | None], None] = field(default_factory=dict)
    countries: dict[tuple[o.IPAddress, str], None] = field(default_factory=dict)
    malicious: o.ObservableSet = field(default_factory=o.ObservableSet)


# --------------------------------------------------------------------------- helpers


def _text(value: Any, limit: int = 4096) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def _time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        log.debug("ignored unreadable time %r", value[:60])
        return None


def _http_url(value: Any) -> str | None:
    text = _text(value, 2048)
    return text if text and _HTTP_URL.match(text) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _file(details: Any) -> o.File | None:
    d = _mapping(details)
    if not d:
        return None
    return o.make_file(
        name=d.get("fileName"),
        directory=d.get("filePath"),
        size=d.get("fileSize"),
        hashes={k: d.get(k) for k in ("md5", "sha1", "sha256") if d.get(k)},
    )


def _user(account: Any) -> o.UserAccount | None:
    a = _mapping(account)
    upn = _text(a.get("userPrincipalName"), 512)
    return o.make_user(
        login=a.get("accountName") or upn,
        user_id=a.get("userSid") or a.get("azureAdUserId"),
        display_name=a.get("displayName"),
        domain=a.get("domainName"),
        email=upn,
    )


def _labels(record: Mapping[str, Any]) -> list[str]:
    out = []
    classification = enum_member(record.get("classification"), CLASSIFICATIONS)
    if classification:
        out.append(f"classification:{classification}")
    determination = enum_member(record.get("determination"), DETERMINATIONS)
    if determination:
        out.append(f"determination:{determination}")
    return out


def _tags(values: Any) -> list[str]:
    return [t for t in (_text(v, 256) for v in _items(values)) if t]


# --------------------------------------------------------------------------- the mapper


class IncidentMapper:
    """Graph incident (alerts expanded) -> `GraphIncident`; counts what it skipped in `skipped`."""

    def __init__(self, target_product: str | None = None) -> None:
        self.product = ProductFilter(target_product)
        self.skipped: Counter[str] = Counter()
        self.mapped: Counter[str] = Counter()

    def __call__(self, incident: Mapping[str, Any]) -> GraphIncident | None:
        """None when the incident is not imported (redirected, or no alert of the target product)."""
        incident_id = _text(incident.get("id"), 256)
        if not incident_id:
            raise InputError("an incident needs an 'id'")
        created = _time(incident.get("createdDateTime"))
        if created is None:
            raise InputError(f"incident {incident_id} has no readable createdDateTime")
        updated_text = incident.get("lastUpdateDateTime")
        status = enum_member(incident.get("status"), INCIDENT_STATUSES)
        if status == "redirected":
            # Merged into another incident, which carries its alerts: an empty shell, not a case.
            log.debug(
                "skipped incident %s: redirected to %s", incident_id, incident.get("redirectIncidentId")
            )
            self.skipped["incident:redirected"] += 1
            return None
        raw_alerts = [a for a in _items(incident.get("alerts")) if isinstance(a, Mapping)]
        kept = [a for a in raw_alerts if self.product(a)]
        if self.product.active and not kept:
            log.debug("skipped incident %s: no alert of the target product", incident_id)
            self.skipped["incident:other-product"] += 1
            return None
        alerts = []
        for raw in kept:
            try:
                alerts.append(self.alert(raw))
            except (InputError, ValueError, TypeError) as exc:
                log.warning("incident %s: skipped alert %s: %s", incident_id, raw.get("id"), exc)
                self.skipped["alert:invalid"] += 1
        severity, priority = graph_severity(incident.get("severity"))
        updated = _time(updated_text)
        name = _text(incident.get("displayName"), 1024) or f"Microsoft incident {incident_id}"
        links = []
        url = _http_url(incident.get("incidentWebUrl"))
        links.append(Link(PORTAL, url, incident_id, "Microsoft Graph security incident"))
        case = Case(
            source=SOURCE,
            id=incident_id,
            name=name,
            created=created,
            updated=updated if updated and updated >= created else None,
            description=self._case_description(incident, incident_id, status),
            status=status,
            severity=severity,
            priority=priority,
            tags=[*_tags(incident.get("customTags")), *_tags(incident.get("systemTags")), *_labels(incident)],
            assignees=[a] if (a := _text(incident.get("assignedTo"), 512)) else [],
            comments=list(self._comments(incident.get("comments"))),
            alerts=[a.alert for a in alerts],
            links=links,
        )
        self.mapped["incident"] += 1
        return GraphIncident(
            incident_id, updated_text if isinstance(updated_text, str) else None, case, alerts
        )

    @staticmethod
    def _case_description(incident: Mapping[str, Any], incident_id: str, status: str | None) -> str:
        parts = [_text(incident.get("description"), 32768) or "", _text(incident.get("summary"), 32768) or ""]
        facts = [f"incident {incident_id}", f"status {status or 'unknown'}"]
        if assigned := _text(incident.get("assignedTo"), 512):
            facts.append(f"assigned to {assigned}")
        if isinstance(incident.get("priorityScore"), int) and not isinstance(
            incident.get("priorityScore"), bool
        ):
            facts.append(f"priority score {incident['priorityScore']}")
        parts.append("Microsoft Graph: " + "; ".join(facts) + ".")
        if resolving := _text(incident.get("resolvingComment"), 8192):
            parts.append(f"Resolving comment: {resolving}")
        return "\n\n".join(p for p in parts if p)

    @staticmethod
    def _comments(comments: Any) -> Iterator[Comment]:
        for item in _items(comments):
            c = _mapping(item)
            text = _text(c.get("comment"), 32768)
            created = _time(c.get("createdDateTime") or c.get("createdTime"))
            if not text or created is None:
                continue
            yield Comment(text, created, _text(c.get("createdByDisplayName") or c.get("createdBy"), 512))

    # ------------------------------------------------------------------ alerts

    def alert(self, raw: Mapping[str, Any]) -> GraphAlert:
        alert_id = _text(raw.get("id"), 256)
        if not alert_id:
            raise InputError("an alert needs an 'id'")
        created = _time(raw.get("createdDateTime")) or _time(raw.get("firstActivityDateTime"))
        if created is None:
            raise InputError(f"alert {alert_id} has no readable createdDateTime")
        title = _text(raw.get("title"), 1024) or "Microsoft security alert"
        severity, _ = graph_severity(raw.get("severity"))
        first, last = _time(raw.get("firstActivityDateTime")), _time(raw.get("lastActivityDateTime"))
        if first and last and last < first:
            last = None
        updated = _time(raw.get("lastUpdateDateTime"))
        evidence = _Evidence()
        for item in _items(raw.get("evidence")):
            self.evidence(item, evidence)
        product = _text(raw.get("productName"), 256)
        service = enum_member_or_text(raw.get("serviceSource"))
        links = [Link(PORTAL, _http_url(raw.get("alertWebUrl")), alert_id, "Microsoft Graph security alert")]
        if provider_id := _text(raw.get("providerAlertId"), 256):
            links.append(Link(product or service or SOURCE, None, provider_id, "provider alert id"))
        alert = Alert(
            source=product or service or SOURCE,
            id=alert_id,
            # The alert id keeps two alerts with one title and creation time apart (their OpenCTI ids
            # derive from name and creation time; one incident's alerts often share both).
            name=f"{title} ({alert_id})",
            created=created,
            description=self._alert_description(raw, product, service),
            severity=severity,
            status=enum_member(raw.get("status"), ALERT_STATUSES, "unknown"),
            first_seen=first,
            last_seen=last,
            updated=updated if updated and updated >= created else None,
            tags=[*_tags(raw.get("systemTags")), *_labels(raw)],
            hosts=list(evidence.hosts),
            users=list(evidence.users.items),
            observables=list(evidence.observables.items),
            techniques=[Technique(t) for t in self._techniques(raw.get("mitreTechniques"))],
            links=links,
        )
        return GraphAlert(
            alert, list(evidence.malware), list(evidence.countries), list(evidence.malicious.items)
        )

    @staticmethod
    def _techniques(values: Any) -> Iterator[str]:
        seen = set()
        for value in _items(values):
            text = str(value).strip().upper() if isinstance(value, str) else ""
            if _TECHNIQUE.match(text) and text not in seen:
                seen.add(text)
                yield text

    @staticmethod
    def _alert_description(raw: Mapping[str, Any], product: str | None, service: str | None) -> str:
        parts = [_text(raw.get("description"), 32768) or ""]
        facts = [f"status {enum_member(raw.get('status'), ALERT_STATUSES, 'unknown')}"]
        if category := _text(raw.get("category"), 256):
            facts.append(f"category {category}")
        if detection := enum_member_or_text(raw.get("detectionSource")):
            facts.append(f"detection source {detection}")
        if service:
            facts.append(f"service source {service}")
        if product:
            facts.append(f"product {product}")
        if assigned := _text(raw.get("assignedTo"), 512):
            facts.append(f"assigned to {assigned}")
        parts.append("Microsoft Graph alert: " + "; ".join(facts) + ".")
        if actions := _text(raw.get("recommendedActions"), 32768):
            parts.append(f"Recommended actions: {actions}")
        return "\n\n".join(p for p in parts if p)

    # ------------------------------------------------------------------ evidence

    def evidence(self, item: Any, out: _Evidence) -> None:
        """Map one evidence record into `out`; a bad record is skipped and counted, never raised."""
        if not isinstance(item, Mapping):
            self.skipped["evidence:not-an-object"] += 1
            return
        kind = str(item.get("@odata.type") or "").removeprefix(NS).removesuffix("Evidence")
        handler = _EVIDENCE.get(kind)
        if handler is None:
            reason = "skipped" if kind in SKIPPED_EVIDENCE else "unknown"
            log.debug("%s evidence type %r", reason, kind[:80])
            self.skipped[f"evidence:{kind[:80] or '?'}"] += 1
            return
        found = _Evidence()
        try:
            handler(self, item, found)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            log.debug("skipped invalid %s evidence: %s", kind, exc)
            self.skipped[f"invalid:{kind}"] += 1
            return
        self.mapped[f"evidence:{kind}"] += 1
        malicious = enum_member(item.get("verdict"), VERDICTS) == "malicious"
        out.hosts.update(found.hosts)
        out.users.extend(found.users.items)
        out.observables.extend(found.observables.items)
        out.malware.update(found.malware)
        out.countries.update(found.countries)
        if malicious:
            out.malicious.extend(found.observables.items)

    def _ip(self, item: Mapping[str, Any], out: _Evidence) -> o.IPAddress | None:
        ip = o.make_ip(item.get("ipAddress"))
        if ip is None:
            return None
        out.observables.add(ip)
        country = _text(item.get("countryLetterCode"), 8)
        if country and country.isalpha():
            out.countries[(ip, country.upper())] = None
        return ip

    def _ev_ip(self, item: Mapping[str, Any], out: _Evidence) -> None:
        if self._ip(item, out) is None:
            raise ValueError("no valid ipAddress")

    def _ev_user(self, item: Mapping[str, Any], out: _Evidence) -> None:
        user = _user(item.get("userAccount"))
        if user is None:
            raise ValueError("no account name or id")
        out.users.add(user)

    def _ev_url(self, item: Mapping[str, Any], out: _Evidence) -> None:
        url = o.make_url(item.get("url"))
        if url is None:
            raise ValueError("not an absolute URL")
        out.observables.add(url)

    def _ev_device(self, item: Mapping[str, Any], out: _Evidence) -> None:
        dns_name = _text(item.get("deviceDnsName"), 253)
        host_name = _text(item.get("hostName"), 253)
        name = dns_name or host_name
        if not name:
            raise ValueError("no device name")
        ips = [
            ip
            for ip in dict.fromkeys(
                o.make_ip(v)
                for v in [*_items(item.get("ipInterfaces")), item.get("lastIpAddress"),
                          item.get("lastExternalIpAddress")]
            )
            if ip is not None
        ]  # fmt: skip
        os_name = " ".join(str(v) for v in (item.get("osPlatform"), item.get("osBuild")) if v)
        out.hosts[
            Host(
                name=name.lower(),
                hostname=o.make_hostname(name),
                ips=tuple(ips),
                id=_text(item.get("mdeDeviceId") or item.get("azureAdDeviceId"), 256),
                os=os_name[:256] or None,
            )
        ] = None
        for logged_on in _items(item.get("loggedOnUsers")):
            user = o.make_user(
                login=_mapping(logged_on).get("accountName"), domain=_mapping(logged_on).get("domainName")
            )
            out.users.add(user)

    def _ev_file(self, item: Mapping[str, Any], out: _Evidence) -> None:
        file = _file(item.get("fileDetails"))
        if file is None:
            raise ValueError("no file name or hash")
        out.observables.add(file)

    def _ev_fileHash(self, item: Mapping[str, Any], out: _Evidence) -> None:
        algorithm = _HASHES.get(str(item.get("algorithm") or "").lower())
        file = o.make_file(hashes={algorithm: item.get("value")}) if algorithm else None
        if file is None:
            raise ValueError("no usable hash")
        out.observables.add(file)

    def _process(self, item: Mapping[str, Any]) -> o.Process | None:
        """The evidence's process; None when it has neither pid nor command line, or only a pid (see
        `make_process`). Graph gives a parent no command line, so a parent without an image file is left
        out (the child is kept, without `parent_ref`).
        """
        image = _file(item.get("imageFile"))
        parent_image = _file(item.get("parentProcessImageFile"))
        parent = o.make_process(
            pid=item.get("parentProcessId"),
            name=parent_image.name if parent_image else None,
            image=parent_image,
            created=_time(item.get("parentProcessCreationDateTime")),
        )
        return o.make_process(
            pid=item.get("processId"),
            command_line=item.get("processCommandLine"),
            name=image.name if image else None,
            image=image,
            created=_time(item.get("processCreationDateTime")),
            parent=parent,
            user=_user(item.get("userAccount")),
        )

    def _ev_process(self, item: Mapping[str, Any], out: _Evidence) -> None:
        process = self._process(item)
        if process is None:
            raise ValueError("no process id or command line, or a process id alone")
        out.observables.add(process)

    def _registry(self, item: Mapping[str, Any], values: tuple[o.RegistryValue, ...] = ()) -> o.RegistryKey:
        hive, key = _text(item.get("registryHive"), 64), _text(item.get("registryKey"), 4096)
        key = key.lstrip("\\/") if key else None
        if not key:
            raise ValueError("no registry key")
        # Graph sends the key relative to its hive; tolerate one that already names the hive.
        head = key.replace("/", "\\").split("\\", 1)[0].upper()
        full = key if not hive or head.startswith("HKEY_") or head in _SHORT_HIVES else f"{hive}\\{key}"
        registry = o.make_registry_key(full, values)
        if registry is None:
            raise ValueError("unreadable registry key")
        return registry

    def _ev_registryKey(self, item: Mapping[str, Any], out: _Evidence) -> None:
        out.observables.add(self._registry(item))

    def _ev_registryValue(self, item: Mapping[str, Any], out: _Evidence) -> None:
        name = _text(item.get("registryValueName"), 1024)
        values = ()
        if name is not None:
            data_type = str(item.get("registryValueType") or "")
            stix_type = (
                data_type.upper()
                if data_type.upper().startswith("REG_")
                else _REGISTRY_TYPES.get(squash(data_type))
            )
            values = (o.RegistryValue(name, _text(item.get("registryValue"), 32768), stix_type),)
        out.observables.add(self._registry(item, values))

    def _ev_mailbox(self, item: Mapping[str, Any], out: _Evidence) -> None:
        address = o.make_email(item.get("primaryAddress") or item.get("upn"), item.get("displayName"))
        user = _user(item.get("userAccount"))
        if address is None and user is None:
            raise ValueError("no mailbox address")
        out.observables.add(address)
        out.users.add(user)

    def _sender(self, sender: Any) -> o.EmailAddress | None:
        s = _mapping(sender)
        return o.make_email(s.get("emailAddress"), s.get("displayName")) if s else None

    def _ev_analyzedMessage(self, item: Mapping[str, Any], out: _Evidence) -> None:
        sender = self._sender(item.get("p1Sender"))
        recipient = o.make_email(item.get("recipientEmailAddress"))
        subject = _text(item.get("subject"), 4096)
        message_id = _text(item.get("internetMessageId"), 1024)
        if not (sender or subject or message_id):
            raise ValueError("no sender, subject or message id")
        out.observables.add(
            o.EmailMessage(
                subject=subject,
                sender=sender,
                to=(recipient,) if recipient else (),
                message_id=message_id,
                date=_time(item.get("receivedDateTime")),
            )
        )
        out.observables.extend([sender, self._sender(item.get("p2Sender")), recipient])
        out.observables.add(o.make_ip(item.get("senderIp")))
        out.observables.extend(o.make_url(u) for u in _items(item.get("urls")))

    def _ev_cloudApplication(self, item: Mapping[str, Any], out: _Evidence) -> None:
        name = _text(item.get("displayName") or item.get("instanceName"), 1024)
        if not name:
            raise ValueError("no application name")
        out.observables.add(o.Software(name=name))

    def _ev_oauthApplication(self, item: Mapping[str, Any], out: _Evidence) -> None:
        name = _text(item.get("displayName"), 1024)
        if not name:
            raise ValueError("no application name")
        out.observables.add(o.Software(name=name, vendor=_text(item.get("publisher"), 512)))

    def _ev_malware(self, item: Mapping[str, Any], out: _Evidence) -> None:
        name = _text(item.get("name"), 512)
        if not name:
            raise ValueError("no malware name")
        out.malware[(name, _text(item.get("category"), 256))] = None
        for file_item in _items(item.get("files")):
            if isinstance(file_item, Mapping):
                out.observables.add(_file(file_item.get("fileDetails")))
        for process_item in _items(item.get("processes")):
            if isinstance(process_item, Mapping):
                out.observables.add(self._process(process_item))

    def _ev_dns(self, item: Mapping[str, Any], out: _Evidence) -> None:
        domain = o.make_domain(item.get("domainName"))
        if domain is None:
            raise ValueError("no valid domain name")
        out.observables.add(domain)
        for ip_item in _items(item.get("ipAddresses")):
            if isinstance(ip_item, Mapping):
                self._ip(ip_item, out)

    def _ev_networkConnection(self, item: Mapping[str, Any], out: _Evidence) -> None:
        src = _mapping(item.get("sourceAddress")).get("ipAddress")
        dst = _mapping(item.get("destinationAddress")).get("ipAddress")
        protocol = enum_member(item.get("protocol"), ("tcp", "udp"))
        traffic = o.make_network_traffic(
            src, dst, item.get("sourcePort"), item.get("destinationPort"), [protocol] if protocol else []
        )
        ends = [self._ip(_mapping(item.get(k)), out) for k in ("sourceAddress", "destinationAddress")]
        if traffic is None and not any(ends):
            raise ValueError("no valid address")
        out.observables.add(traffic)

    def _ev_nic(self, item: Mapping[str, Any], out: _Evidence) -> None:
        mac = o.make_mac(item.get("macAddress"))
        ip = self._ip(_mapping(item.get("ipAddress")), out)
        if mac is None and ip is None:
            raise ValueError("no MAC or IP address")
        out.observables.add(mac)

    def _ev_hostLogonSession(self, item: Mapping[str, Any], out: _Evidence) -> None:
        account, host = _mapping(item.get("account")), _mapping(item.get("host"))
        if account:
            self._ev_user(account, out)
        if host:
            self._ev_device(host, out)

    def _ev_cloudLogonSession(self, item: Mapping[str, Any], out: _Evidence) -> None:
        account = _mapping(item.get("account"))
        if account:
            self._ev_user(account, out)
        agent = o.make_user_agent(item.get("userAgent"))
        if agent is None and not account:
            raise ValueError("no account or user agent")
        out.observables.add(agent)

    def _ev_gitHubUser(self, item: Mapping[str, Any], out: _Evidence) -> None:
        user = o.make_user(
            login=item.get("login"), user_id=item.get("userId"), display_name=item.get("name"),
            email=item.get("email"),
        )  # fmt: skip
        if user is None:
            raise ValueError("no login or user id")
        out.users.add(user)
        out.observables.add(o.make_email(item.get("email")))

    def _ev_gitHubOrganization(self, item: Mapping[str, Any], out: _Evidence) -> None:
        url = o.make_url(_http_url(item.get("webUrl")))
        if url is None:
            raise ValueError("no web URL")
        out.observables.add(url)

    def _ev_gitHubRepo(self, item: Mapping[str, Any], out: _Evidence) -> None:
        url = o.make_url(_http_url(item.get("baseUrl")))
        if url is None:
            raise ValueError("no repository URL")
        out.observables.add(url)

    def _ev_blob(self, item: Mapping[str, Any], out: _Evidence) -> None:
        hashes = {}
        for entry in _items(item.get("fileHashes")):
            algorithm = _HASHES.get(str(_mapping(entry).get("algorithm") or "").lower())
            if algorithm:
                hashes[algorithm] = _mapping(entry).get("value")
        file = o.make_file(name=item.get("name"), hashes=hashes)
        url = o.make_url(_http_url(item.get("url")))
        if file is None and url is None:
            raise ValueError("no blob name, hash or URL")
        out.observables.extend([file, url])

    def _ev_submissionMail(self, item: Mapping[str, Any], out: _Evidence) -> None:
        sender = o.make_email(item.get("sender"))
        recipient = o.make_email(item.get("recipient"))
        subject = _text(item.get("subject"), 4096)
        if not (sender or subject):
            raise ValueError("no sender or subject")
        out.observables.add(
            o.EmailMessage(subject=subject, sender=sender, to=(recipient,) if recipient else ())
        )
        out.observables.extend([sender, recipient, o.make_email(item.get("submitter"))])
        out.observables.add(o.make_ip(item.get("senderIp")))

    def _ev_teamsMessage(self, item: Mapping[str, Any], out: _Evidence) -> None:
        sender = o.make_email(item.get("senderFromAddress"))
        out.observables.add(sender)
        out.observables.add(o.make_ip(item.get("senderIP")))
        for url_item in _items(item.get("urls")):
            out.observables.add(o.make_url(_mapping(url_item).get("url")))
        for file_item in _items(item.get("files")):
            out.observables.add(_file(_mapping(file_item).get("fileDetails")))
        if not out.observables.items:
            raise ValueError("no sender, URL or file")

    def _ev_ioTDevice(self, item: Mapping[str, Any], out: _Evidence) -> None:
        name = _text(item.get("deviceName") or item.get("deviceId"), 253)
        ip = o.make_ip(_mapping(item.get("ipAddress")).get("ipAddress"))
        if not name and ip is None:
            raise ValueError("no device name or IP")
        if name:
            out.hosts[Host(name=name.lower(), hostname=o.make_hostname(name), ips=(ip,) if ip else ())] = None
        else:
            out.observables.add(ip)
        out.observables.add(o.make_mac(item.get("macAddress")))


def enum_member_or_text(value: Any) -> str | None:
    """Service/detection sources: open-ended enums, kept as sent unless unknown."""
    text = _text(value, 256)
    if not text or text.lower() in ("unknown", "unknownfuturevalue"):
        return None
    return text[:1].lower() + text[1:]


_EVIDENCE: dict[str, Callable[[IncidentMapper, Mapping[str, Any], _Evidence], None]] = {
    name.removeprefix("_ev_"): method
    for name, method in vars(IncidentMapper).items()
    if name.startswith("_ev_")
}
MAPPED_EVIDENCE = frozenset(_EVIDENCE)


# --------------------------------------------------------------------------- STIX


def indicator_pattern(observable: o.Observable) -> tuple[str, str, str] | None:
    """(pattern, name, main observable type) for observables an indicator can match, else None."""
    if isinstance(observable, o.IPAddress):
        value, stix_type, path = observable.value, observable.stix_type, "value"
    elif isinstance(observable, o.Url):
        value, stix_type, path = observable.value, "url", "value"
    elif isinstance(observable, o.DomainName):
        value, stix_type, path = observable.value, "domain-name", "value"
    elif isinstance(observable, o.EmailAddress):
        value, stix_type, path = observable.value, "email-addr", "value"
    elif isinstance(observable, o.File) and observable.hashes:
        hashes = observable.hash_map
        algorithm = next(a for a in (*_INDICATOR_HASHES, *hashes) if a in hashes)
        value, stix_type, path = hashes[algorithm], "file", f"hashes.{quote_string(algorithm)}"
    else:
        return None
    return f"[{stix_type}:{path} = {quote_string(value)}]", value, {
        "ipv4-addr": "IPv4-Addr", "ipv6-addr": "IPv6-Addr", "url": "Url", "domain-name": "Domain-Name",
        "email-addr": "Email-Addr", "file": "StixFile",
    }[stix_type]  # fmt: skip


def build_incident(
    builder: StixBuilder, incident: GraphIncident, *, create_indicators: bool = False
) -> Built:
    """The Case-Incident first, then every alert's objects, extras and the comment notes.

    The case's `object_refs` hold everything built for it, so opening the case in OpenCTI shows it all.
    """
    objects: list[StixDict] = []
    for graph_alert in incident.alerts:
        objects.extend(_alert_objects(builder, graph_alert, create_indicators))
    unique = list({obj["id"]: obj for obj in objects}.values())
    shell = dataclasses.replace(incident.case, alerts=[])
    built = builder.case(shell, related_ids=[obj["id"] for obj in unique])
    return Built(built.id, [built.objects[0], *unique, *built.objects[1:]])


def _alert_objects(builder: StixBuilder, graph_alert: GraphAlert, create_indicators: bool) -> list[StixDict]:
    alert = graph_alert.alert
    built = builder.alert(alert)
    objects = list(built.objects)
    for name, category in graph_alert.malware:
        malware = builder.malware(name, f"Malware category: {category}" if category else None)
        objects += [malware, builder.relationship("uses", built.id, malware["id"])]
    for ip, country in graph_alert.countries:
        ip_id = builder.observable(ip).id
        objects.append(
            builder.note(
                content=f"{ip.value} is located in country {country}.",
                created=alert.created,
                object_refs=[ip_id, built.id],
                abstract="IP address country",
                note_types=["analysis"],
            )
        )
    if create_indicators:
        for observable in graph_alert.malicious:
            found = indicator_pattern(observable)
            if found is None:
                continue
            pattern, name, main_type = found
            observable_id = builder.observable(observable).id
            indicator = builder.indicator(
                pattern=pattern,
                name=name,
                valid_from=alert.created,
                main_observable_type=main_type,
                description=f"Evidence with a malicious verdict in {alert.name}",
                score=80,
            )
            objects += [
                indicator,
                builder.relationship("based-on", indicator["id"], observable_id),
                builder.relationship("indicates", indicator["id"], built.id),
            ]
    return objects


def unwrap_incidents(document: Any) -> Iterator[Any]:
    """Incidents from a list response (`value`), a JSON array, NDJSON lines, or one incident."""
    if isinstance(document, list):
        yield from document
    elif isinstance(document, Mapping) and isinstance(document.get("value"), list):
        yield from document["value"]
    else:
        yield document


def skipped_summary(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {count}" for key, count in sorted(counter.items())) or "nothing"
