"""Kibana security alert documents (`.alerts-security.alerts-*`) to the normalised model.

Field facts: ../shared/reference/elastic.md §1. The incident name carries the rule name, the host and
the alert's short id, so alerts of one rule run (which share a timestamp) stay distinct incidents while
a rerun of the same alert lands on the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ctibridge.config.types import parse_datetime
from ctibridge.errors import InputError
from ctibridge.memo import keep
from ctibridge.model import observables as o
from ctibridge.model.alerts import Alert, Host, Link, Rule, Technique, parse_severity, severity_from_score
from ctibridge.siem.ecs import EcsDocument, FieldSet, first, objects

log = logging.getLogger(__name__)
SOURCE = "Elastic Security"
HASHES = ("md5", "sha1", "sha256", "sha512")
IP_FIELDS = (
    "source.ip",
    "destination.ip",
    "client.ip",
    "server.ip",
    "source.nat.ip",
    "destination.nat.ip",
    "dns.resolved_ip",
)
DOMAIN_FIELDS = ("dns.question.name", "url.domain", "source.domain", "destination.domain", "client.domain",
                 "server.domain")  # fmt: skip
URL_FIELDS = ("url.full", "url.original")
EMAIL_FIELDS = ("email.from.address", "email.to.address", "email.sender.address", "email.reply_to.address",
                "user.email")  # fmt: skip
_FILE_FIELDS = ("name", "path", "directory", "size", "mime_type", *(f"hash.{algo}" for algo in HASHES))
_PROCESS_FIELDS = ("executable", "name", "pid", "command_line", "working_directory", "start",
                   *(f"hash.{algo}" for algo in HASHES))  # fmt: skip
_VALUE_FIELDS = ((IP_FIELDS, o.make_ip), (DOMAIN_FIELDS, o.make_domain), (URL_FIELDS, o.make_url),
                 (EMAIL_FIELDS, o.make_email))  # fmt: skip
_HASH_PATHS = {prefix: tuple((algo, f"{prefix}.hash.{algo}") for algo in HASHES)
               for prefix in ("file", "dll", "process", "process.parent")}  # fmt: skip
# The field paths of each file and process object, spelled once here rather than by f-strings per alert.
_PATHS = {prefix: {name: f"{prefix}.{name}" for name in (*_FILE_FIELDS, *_PROCESS_FIELDS, "user.name")}
          for prefix in ("file", "dll", "process", "process.parent")}  # fmt: skip
# Every path the mapping reads with first()/values(); EcsDocument refuses any other, so a path added to
# the mapping but not here fails loudly in the tests instead of reading as absent.
FIELDS = FieldSet(
    (
        "_index", "@timestamp", "kibana.alert.uuid", "kibana.alert.start", "kibana.alert.rule.name",
        "kibana.alert.risk_score", "kibana.alert.rule.risk_score", "kibana.alert.severity",
        "kibana.alert.workflow_status", "kibana.alert.rule.rule_id", "kibana.alert.rule.uuid",
        "kibana.alert.rule.description", "kibana.alert.rule.type", "kibana.alert.original_time",
        "kibana.alert.last_detected", "kibana.alert.workflow_status_updated_at", "kibana.alert.rule.tags",
        "kibana.alert.reason", "kibana.alert.url",
        "host.name", "host.hostname", "host.ip", "host.os.name", "host.os.full", "host.id",
        "user.name", "user.id", "user.full_name", "user.domain", "user.target.name", "user.target.domain",
        *IP_FIELDS, *DOMAIN_FIELDS, *URL_FIELDS, *EMAIL_FIELDS, "user_agent.original",
        *(f"{prefix}.{name}" for prefix in ("file", "dll") for name in _FILE_FIELDS),
        *(f"process.{name}" for name in _PROCESS_FIELDS), "process.user.name",
        *(f"process.parent.{name}" for name in _PROCESS_FIELDS),
        "registry.hive", "registry.key", "registry.path", "registry.value", "registry.data.strings",
        "registry.data.type", "source.port", "destination.port", "network.transport",
        "email.subject", "email.message_id",
    )
)  # fmt: skip
# The field-set paths under each object the mapping reads as a whole: when none has a value the object
# maps to None, so `has_any` can skip it without reading each path.
_UNDER = {prefix: frozenset(path for path in FIELDS.paths if path.startswith(f"{prefix}."))
          for prefix in ("file", "dll", "process", "process.parent", "registry")}  # fmt: skip


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except (ValueError, TypeError):
        log.debug("ignored unreadable time %r", value)
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class AlertMapper:
    """Maps one alert document; `kibana_url` builds links when the alert carries none."""

    def __init__(self, kibana_url: str | None = None, space: str = "default") -> None:
        self.kibana_url = kibana_url.rstrip("/") if kibana_url else None
        self.space_prefix = "" if space in ("", "default") else f"/s/{space}"

    def __call__(self, source: Mapping[str, Any], index: str | None = None) -> Alert:
        document = source if isinstance(source, EcsDocument) else EcsDocument(source, only=FIELDS)
        first = document.first
        alert_id = first("kibana.alert.uuid") or document.get("_id")
        if not alert_id:
            raise InputError("alert without kibana.alert.uuid")
        created = _time(first("@timestamp")) or _time(first("kibana.alert.start"))
        if created is None:
            raise InputError(f"alert {alert_id} has no readable @timestamp")
        rule_name = first("kibana.alert.rule.name") or "Elastic Security alert"
        hosts = self._hosts(document)
        users = self._users(document)
        where = f" on {hosts[0].name}" if hosts else ""
        risk = _float(first("kibana.alert.risk_score"))
        if risk is None:  # 0 is a score: only an absent or unreadable one falls back to the rule's
            risk = _float(first("kibana.alert.rule.risk_score"))
        severity = parse_severity(first("kibana.alert.severity")) or severity_from_score(risk)
        status = first("kibana.alert.workflow_status")
        rule = Rule(
            name=str(rule_name),
            id=first("kibana.alert.rule.rule_id") or first("kibana.alert.rule.uuid"),
            description=first("kibana.alert.rule.description"),
            type=first("kibana.alert.rule.type"),
            url=self._rule_url(first("kibana.alert.rule.uuid")),
        )
        return Alert(
            source=SOURCE,
            id=str(alert_id),
            name=f"{rule_name}{where} ({str(alert_id)[:8]})",
            created=created,
            description=self._description(document, rule, risk, status),
            rule=rule,
            severity=severity,
            risk_score=risk,
            status=status,
            first_seen=_time(first("kibana.alert.original_time")) or created,
            last_seen=_time(first("kibana.alert.last_detected")),
            updated=_time(first("kibana.alert.workflow_status_updated_at")),
            tags=[str(tag) for tag in document.values("kibana.alert.rule.tags")],
            hosts=hosts,
            users=users,
            observables=self._observables(document, users[0] if users else None),
            techniques=self._techniques(document),
            links=self._links(document, str(alert_id), rule, index, created),
            raw_ref=f"{index or first('_index') or ''}/{alert_id}",
        )

    # ------------------------------------------------------------------ parts

    @staticmethod
    def _description(document: EcsDocument, rule: Rule, risk: float | None, status: Any) -> str:
        parts = [rule.description or ""]
        reason = document.first("kibana.alert.reason")
        if reason:
            parts.append(f"Reason: {reason}")
        facts = []
        if risk is not None:
            facts.append(f"risk score {risk:g}")
        if status:
            facts.append(f"workflow status {status}")
        if rule.type:
            facts.append(f"rule type {rule.type}")
        if facts:
            parts.append("Elastic: " + ", ".join(facts) + ".")
        return "\n\n".join([part for part in parts if part])

    @staticmethod
    def _hosts(document: EcsDocument) -> list[Host]:
        first = document.first
        hostname = first("host.hostname")
        name = first("host.name") or hostname
        if not name:
            return []
        os_name = first("host.os.name") or first("host.os.full")
        host_id = first("host.id")
        ips = document.values("host.ip")
        key = (name, hostname, os_name, host_id, *ips)
        return [o.remember(_HOSTS, key, lambda: _host(name, hostname, os_name, host_id, ips))]

    @staticmethod
    def _users(document: EcsDocument) -> list[o.UserAccount]:
        first = document.first
        user = o.make_user(
            login=first("user.name"),
            user_id=first("user.id"),
            display_name=first("user.full_name"),
            domain=first("user.domain"),
        )
        target = o.make_user(login=first("user.target.name"), domain=first("user.target.domain"))
        # Each once, in order, as an ObservableSet collects them.
        if target is None or target == user:
            return [user] if user is not None else []
        return [user, target] if user is not None else [target]

    def _observables(self, document: EcsDocument, user: o.UserAccount | None) -> list[o.Observable]:
        found: list[o.Observable | None] = []
        add = found.append
        first, values = document.first, document.values
        host_ips = set(values("host.ip"))
        for fields, make in _VALUE_FIELDS:
            for field in document.present(fields):  # most fields are absent
                for value in values(field):
                    if make is not o.make_ip or value not in host_ips:
                        add(make(value))
        agent = first("user_agent.original")
        if agent is not None:
            add(o.make_user_agent(agent))
        add(self._file(document, "file"))
        add(self._file(document, "dll"))
        before_process = len(found)
        process = self._process(document, user=user)
        add(self._registry(document))
        source_port, destination_port = first("source.port"), first("destination.port")
        if source_port is not None and destination_port is not None:  # else no connection: skip the work
            add(
                o.make_network_traffic(
                    first("source.ip"),
                    first("destination.ip"),
                    source_port,
                    destination_port,
                    values("network.transport"),
                )
            )
        subject = first("email.subject")
        sender_address = first("email.from.address")
        sender = o.make_email(sender_address) if sender_address is not None else None
        if subject or sender:
            add(
                o.EmailMessage(
                    subject=subject,
                    sender=sender,
                    to=tuple(e for e in (o.make_email(v) for v in values("email.to.address")) if e),
                    message_id=first("email.message_id"),
                )
            )
        found.extend(self._matched_indicators(document))
        # Each once, in first-seen order, as an ObservableSet collects them (dict.fromkeys: in one call).
        # The one process equals nothing else here, so it skips the dedupe: hashing a process hashes its
        # image, parent and user, each in Python.
        unique = dict.fromkeys(obs for obs in found[:before_process] if obs is not None)
        head = len(unique)
        unique.update(dict.fromkeys(obs for obs in found[before_process:] if obs is not None))
        observables = list(unique)
        if process is not None:
            observables.insert(head, process)
        return observables

    @staticmethod
    def _hashes(document: EcsDocument, prefix: str) -> dict[str, Any]:
        first = document.first
        hashes: dict[str, Any] = {}
        for algo, path in _HASH_PATHS[prefix]:
            value = first(path)
            if value:
                hashes[algo] = value
        return hashes

    def _file(self, document: EcsDocument, prefix: str) -> o.File | None:
        if not document.has_any(_UNDER[prefix]):
            return None
        first, paths = document.first, _PATHS[prefix]
        return o.make_file(
            name=first(paths["name"]),
            path=first(paths["path"]),
            directory=first(paths["directory"]),
            size=first(paths["size"]),
            hashes=self._hashes(document, prefix),
            mime_type=first(paths["mime_type"]),
        )

    def _process(
        self,
        document: EcsDocument,
        prefix: str = "process",
        depth: int = 0,
        user: o.UserAccount | None = None,
    ) -> o.Process | None:
        """The process and its parent; `user` is the alert's user, the process's creator when the logins
        agree (one account with its id and domain, not a second one known by login only)."""
        if not document.has_any(_UNDER[prefix]):
            return None
        first, paths = document.first, _PATHS[prefix]
        name = first(paths["name"])
        image = o.make_file(path=first(paths["executable"]), name=name, hashes=self._hashes(document, prefix))
        parent = self._process(document, f"{prefix}.parent", depth + 1) if depth == 0 else None
        return o.make_process(
            pid=first(paths["pid"]),
            command_line=first(paths["command_line"]),
            name=name,
            image=image,
            cwd=first(paths["working_directory"]),
            created=_time(first(paths["start"])),
            parent=parent,
            user=self._process_user(first(paths["user.name"]), user) if depth == 0 else None,
        )

    @staticmethod
    def _process_user(login: Any, user: o.UserAccount | None) -> o.UserAccount | None:
        account = o.make_user(login=login)
        if account is not None and user is not None and account.account_login == user.account_login:
            return user
        return account

    @staticmethod
    def _registry(document: EcsDocument) -> o.RegistryKey | None:
        if not document.has_any(_UNDER["registry"]):
            return None
        hive, key = document.first("registry.hive"), document.first("registry.key")
        path = document.first("registry.path")
        value_name = document.first("registry.value")
        full_key = f"{hive}\\{key}" if hive and key else None
        if full_key is None and path:
            # registry.path is hive + key (+ value): drop the value to get the key.
            full_key = path.rsplit("\\", 1)[0] if value_name and str(path).endswith(str(value_name)) else path
        data = document.first("registry.data.strings")
        registry_values = (
            (
                o.RegistryValue(
                    str(value_name), str(data) if data else None, document.first("registry.data.type")
                ),
            )
            if value_name
            else ()
        )
        return o.make_registry_key(full_key, registry_values)

    @staticmethod
    def _matched_indicators(document: EcsDocument) -> Iterator[o.Observable | None]:
        for enrichment in document.objects("threat.enrichments"):
            atomic = first(enrichment, "matched.atomic")
            field = str(first(enrichment, "matched.field") or "")
            if atomic is None:
                continue
            # The ECS field the indicator matched decides the type; the leaf before the object, as
            # `url.domain` holds a domain, not a URL.
            if field.endswith(".ip"):
                yield o.make_ip(atomic)
            elif ".hash." in field:
                yield o.make_file(hashes={field.rsplit(".", 1)[1]: atomic})
            elif field.endswith((".domain", "question.name", ".registered_domain")):
                yield o.make_domain(atomic)
            elif field.startswith("url."):
                yield o.make_url(atomic)
            elif field.endswith(".address"):
                yield o.make_email(atomic)
            elif field.startswith("registry."):
                yield o.make_registry_key(atomic)
            else:
                log.debug("indicator match on unmapped field %s", field)

    @staticmethod
    def _techniques(document: EcsDocument) -> list[Technique]:
        # Every alert of a rule carries the rule's threat list: read each distinct list once.
        key = _threat_key(document.source)
        known = _TECHNIQUES.get(key) if key is not None else None
        if known is None:
            known = tuple(_read_techniques(document.objects(_THREAT_PATH)))
            if key is not None:
                keep(_TECHNIQUES, key, known, 1024)
        return list(known)

    def _rule_url(self, rule_uuid: Any) -> str | None:
        if not (self.kibana_url and rule_uuid):
            return None
        return f"{self.kibana_url}{self.space_prefix}/app/security/rules/id/{quote(str(rule_uuid))}"

    def _links(
        self, document: EcsDocument, alert_id: str, rule: Rule, index: str | None, created: datetime
    ) -> list[Link]:
        url = document.first("kibana.alert.url")
        if not url and self.kibana_url:
            query = {"timestamp": created.isoformat().replace("+00:00", "Z")}
            if index:
                query["index"] = index
            url = (
                f"{self.kibana_url}{self.space_prefix}/app/security/alerts/redirect/{quote(alert_id)}?"
                + urlencode(query)
            )
        links = [Link(SOURCE, url or None, alert_id, "Elastic Security alert")]
        if rule.url or rule.id:
            links.append(
                Link(f"{SOURCE} rule", rule.url, str(rule.id) if rule.id else None, f"Rule: {rule.name}")
            )
        return links


_HOSTS: dict[tuple[Any, ...], Host] = {}
_THREAT_PATH = "kibana.alert.rule.threat"
_TECHNIQUES: dict[bytes, tuple[Technique, ...]] = {}


def _threat_key(source: Mapping[str, Any]) -> bytes | None:
    """The flat threat list's JSON, or None when it cannot be remembered: absent, beside nested `kibana`
    objects (per-alert values), or holding integers beyond 64 bits."""
    threats = source.get(_THREAT_PATH)
    if threats is None or "kibana" in source or "kibana.alert" in source or "kibana.alert.rule" in source:
        return None
    try:
        return orjson.dumps(threats)
    except (orjson.JSONEncodeError, TypeError):
        return None


def _read_techniques(threats: list[Mapping[str, Any]]) -> list[Technique]:
    techniques: dict[str, Technique] = {}
    for threat in threats:
        if "mitre" not in str(threat.get("framework", "MITRE ATT&CK")).lower():
            continue
        tactic = first(threat, "tactic.name")
        tactics = (str(tactic),) if tactic else ()
        for technique in objects(threat, "technique"):
            for item in (technique, *objects(technique, "subtechnique")):
                if not item.get("id"):
                    continue
                known = techniques.get(item["id"])
                if known is None:
                    techniques[item["id"]] = Technique(item["id"], item.get("name"), tactics)
                else:  # a technique a rule lists under several tactics: every tactic is a kill-chain phase
                    merged = tuple(dict.fromkeys((*known.tactics, *tactics)))
                    techniques[item["id"]] = Technique(known.id, known.name, merged)
    return list(techniques.values())


def _host(name: Any, hostname: Any, os_name: Any, host_id: Any, ips: list[Any]) -> Host:
    addresses = tuple(dict.fromkeys(ip for ip in (o.make_ip(v) for v in ips) if ip))
    return Host(
        name=str(name).lower(),
        hostname=o.make_hostname(hostname or name),
        ips=addresses,
        id=host_id,
        os=str(os_name) if os_name else None,
    )


def unwrap_alerts(document: Any) -> Iterator[Any]:
    """Alert documents from NDJSON lines, a JSON array, or an Elasticsearch search response."""
    if type(document) is dict and document.get("hits") is None and "_source" not in document:
        yield document  # one alert per NDJSON line, the common case, without the slow ABC Mapping checks
        return
    if isinstance(document, list):
        for item in document:
            yield from unwrap_alerts(item)
        return
    if isinstance(document, Mapping) and isinstance(document.get("hits"), Mapping):
        for hit in document["hits"].get("hits") or ():
            yield _from_hit(hit)
        return
    if isinstance(document, Mapping) and "_source" in document:
        yield _from_hit(document)
        return
    yield document


def _from_hit(hit: Mapping[str, Any]) -> dict[str, Any]:
    source = dict(hit.get("_source") or {})
    source.setdefault("_id", hit.get("_id"))
    source.setdefault("_index", hit.get("_index"))
    return source
