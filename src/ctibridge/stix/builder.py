"""One STIX 2.1 builder for every SIEM: model objects in, OpenCTI-ready plain dicts out.

Plain dicts rather than stix2 objects: the stix2 constructors validate on every call and dominate the
cost of a conversion. Correctness is kept by the tests, which validate every bundle they produce with
the OASIS validator, and by the ids, which come from pycti's generators (see `ids`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ctibridge.memo import keep
from ctibridge.model.alerts import Alert, Case, Host, Link, Severity, Technique
from ctibridge.model.observables import (
    AutonomousSystem,
    Directory,
    DomainName,
    EmailAddress,
    EmailMessage,
    File,
    Hostname,
    IPAddress,
    MacAddress,
    NetworkTraffic,
    Observable,
    Process,
    RegistryKey,
    Software,
    Url,
    UserAccount,
    UserAgent,
)
from ctibridge.stix import ids
from ctibridge.stix.ids import format_time
from ctibridge.stix.markings import Tlp

StixDict = dict[str, Any]
_MEMO_SIZE = 4096
OPENCTI_SCO_EXTENSION = "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82"
MITRE_URL = "https://attack.mitre.org/techniques/"


@dataclass(frozen=True, slots=True)
class Built:
    """Objects made for one model object; `id` is its main object's id."""

    id: str
    objects: list[StixDict]


def _put(target: StixDict, key: str, value: Any) -> None:
    if value is not None and value != [] and value != "":
        target[key] = value


class StixBuilder:
    """Turns model objects into STIX dicts authored by one identity and marked with one TLP."""

    def __init__(
        self,
        *,
        author_name: str,
        tlp: Tlp,
        author_class: str = "organization",
        author_description: str | None = None,
    ) -> None:
        self.tlp = tlp
        self.marking_refs = [tlp.marking_id]
        self.author = self.identity(author_name, author_class, author_description, authored=False)
        self.author_id: str = self.author["id"]
        # OpenCTI workflow status ids by STIX type, then by the SIEM's own status in lower case; set by
        # a connector that looked them up in the platform (offline there is no workflow to point into).
        self.workflow_ids: dict[str, dict[str, str]] = {}
        # Hosts, techniques and observables recur across alerts; their objects are built once. Per
        # builder: a process-wide cache would keep every builder alive.
        self._memo: dict[object, Any] = {}
        self._relation_template: StixDict = {
            "type": "relationship",
            "spec_version": "2.1",
            "id": "",
            "created": _EPOCH,
            "modified": _EPOCH,
            "created_by_ref": self.author_id,
            "object_marking_refs": self.marking_refs,
            "relationship_type": "",
            "source_ref": "",
            "target_ref": "",
        }

    # ------------------------------------------------------------------ shared objects

    def preamble(self) -> list[StixDict]:
        """What every bundle carries so that each chunk stands alone: author and marking definition."""
        return [self.author, self.tlp.marking]

    def _sdo(self, stix_type: str, stix_id: str, created: str, modified: str | None = None) -> StixDict:
        return {
            "type": stix_type,
            "spec_version": "2.1",
            "id": stix_id,
            "created": created,
            "modified": modified or created,
            "created_by_ref": self.author_id,
            "object_marking_refs": self.marking_refs,
        }

    def external_reference(self, link: Link) -> StixDict:
        ref: StixDict = {"source_name": link.source_name}
        _put(ref, "url", link.url)
        _put(ref, "external_id", link.external_id)
        _put(ref, "description", link.description)
        return ref

    # ------------------------------------------------------------------ SDOs

    def identity(
        self, name: str, identity_class: str, description: str | None = None, *, authored: bool = True
    ) -> StixDict:
        obj: StixDict = {
            "type": "identity",
            "spec_version": "2.1",
            "id": ids.identity_id(name, identity_class),
            "created": "1970-01-01T00:00:00.000Z",
            "modified": "1970-01-01T00:00:00.000Z",
            "name": name,
            "identity_class": identity_class,
        }
        _put(obj, "description", description)
        if authored:
            obj["created_by_ref"] = self.author_id
            obj["object_marking_refs"] = self.marking_refs
        return obj

    def system(self, name: str, description: str | None = None) -> StixDict:
        return self.identity(name, "system", description)

    def incident(
        self,
        *,
        name: str,
        created: datetime,
        description: str = "",
        severity: Severity | None = None,
        source: str | None = None,
        incident_type: str = "alert",
        first_seen: datetime | None = None,
        last_seen: datetime | None = None,
        modified: datetime | None = None,
        labels: Sequence[str] = (),
        links: Iterable[Link] = (),
        status: str | None = None,
    ) -> StixDict:
        created_text = format_time(created)
        obj = self._sdo("incident", ids.incident_id(name, created_text), created_text, _time(modified))
        obj["name"] = name
        # What _put does, spelled out: one incident per alert, and a call per field costs more than it.
        if description:
            obj["description"] = description
        if incident_type:
            obj["incident_type"] = incident_type
        if severity is not None:
            obj["severity"] = severity.value
        if source:
            obj["source"] = source
        if first_seen is not None:
            obj["first_seen"] = format_time(first_seen)
        if last_seen is not None:
            obj["last_seen"] = format_time(last_seen)
        if labels:
            _put(obj, "labels", _labels(labels))
        references = [self.external_reference(link) for link in links]
        if references:
            obj["external_references"] = references
        if status and self.workflow_ids:
            self._set_workflow(obj, status)
        return obj

    def _set_workflow(self, obj: StixDict, status: str) -> None:
        """The OpenCTI status the SIEM status maps to: OpenCTI upserts it, so a re-sent object follows."""
        if type(status) is not str:
            return
        workflow_id = self.workflow_ids.get(obj["type"], {}).get(status.strip().lower())
        if workflow_id:
            obj["x_opencti_workflow_id"] = workflow_id

    def case_incident(
        self,
        *,
        name: str,
        created: datetime,
        description: str = "",
        severity: Severity | None = None,
        priority: str | None = None,
        modified: datetime | None = None,
        labels: Sequence[str] = (),
        links: Iterable[Link] = (),
        object_refs: Sequence[str] = (),
        response_types: Sequence[str] = (),
        status: str | None = None,
    ) -> StixDict:
        created_text = format_time(created)
        obj = self._sdo(
            "case-incident", ids.case_incident_id(name, created_text), created_text, _time(modified)
        )
        obj["name"] = name
        _put(obj, "description", description)
        _put(obj, "severity", severity.value if severity else None)
        _put(obj, "priority", priority or (severity.priority if severity else None))
        _put(obj, "labels", _labels(labels))
        _put(obj, "response_types", list(response_types))
        _put(obj, "external_references", [self.external_reference(link) for link in links])
        # A case with no refs is valid in OpenCTI; the STIX schema for containers wants at least one.
        obj["object_refs"] = _unique(object_refs) or [self.author_id]
        if status and self.workflow_ids:
            self._set_workflow(obj, status)
        return obj

    def attack_pattern(self, technique: Technique) -> StixDict:
        """ATT&CK techniques are public: no author or marking, so they merge with the MITRE dataset."""
        found: StixDict | None = self._memo.get(technique)
        return (
            found
            if found is not None
            else keep(self._memo, technique, self._build_attack_pattern(technique), _MEMO_SIZE)
        )

    def _build_attack_pattern(self, technique: Technique) -> StixDict:
        mitre_id = technique.id.upper()
        obj: StixDict = {
            "type": "attack-pattern",
            "spec_version": "2.1",
            "id": ids.attack_pattern_id(technique.name or mitre_id, mitre_id),
            "created": "1970-01-01T00:00:00.000Z",
            "modified": "1970-01-01T00:00:00.000Z",
            "name": technique.name or mitre_id,
            "x_mitre_id": mitre_id,
            "external_references": [
                {
                    "source_name": "mitre-attack",
                    "external_id": mitre_id,
                    "url": MITRE_URL + mitre_id.replace(".", "/") + "/",
                }
            ],
        }
        if technique.tactics:
            obj["kill_chain_phases"] = [
                {"kill_chain_name": "mitre-attack", "phase_name": _phase(tactic)}
                for tactic in technique.tactics
            ]
        return obj

    def vulnerability(
        self, name: str, description: str | None = None, score: float | None = None
    ) -> StixDict:
        obj = self._sdo("vulnerability", ids.vulnerability_id(name), "1970-01-01T00:00:00.000Z")
        obj["name"] = name
        _put(obj, "description", description)
        _put(obj, "x_opencti_cvss_base_score", score)
        if name.upper().startswith("CVE-"):
            obj["external_references"] = [{"source_name": "cve", "external_id": name.upper()}]
        return obj

    def malware(self, name: str, description: str | None = None) -> StixDict:
        obj = self._sdo("malware", ids.malware_id(name), "1970-01-01T00:00:00.000Z")
        obj["name"] = name
        obj["is_family"] = False
        _put(obj, "description", description)
        return obj

    def indicator(
        self,
        *,
        pattern: str,
        name: str,
        valid_from: datetime,
        pattern_type: str = "stix",
        main_observable_type: str | None = None,
        description: str | None = None,
        score: int | None = None,
    ) -> StixDict:
        created_text = format_time(valid_from)
        obj = self._sdo("indicator", ids.indicator_id(pattern), created_text)
        obj.update(
            {"name": name, "pattern": pattern, "pattern_type": pattern_type, "valid_from": created_text}
        )
        obj["description"] = description or f"{pattern_type} pattern {pattern}"
        _put(obj, "x_opencti_main_observable_type", main_observable_type)
        _put(obj, "x_opencti_score", score)
        return obj

    def note(
        self,
        *,
        content: str,
        created: datetime,
        object_refs: Sequence[str],
        abstract: str | None = None,
        note_types: Sequence[str] = (),
    ) -> StixDict:
        created_text = format_time(created)
        obj = self._sdo("note", ids.note_id(content, created_text, abstract or None), created_text)
        obj["content"] = content
        _put(obj, "abstract", abstract)
        _put(obj, "note_types", list(note_types))
        obj["object_refs"] = _unique(object_refs)
        return obj

    # ------------------------------------------------------------------ SROs

    def relationship(
        self,
        relationship_type: str,
        source_ref: str,
        target_ref: str,
        *,
        description: str | None = None,
        start_time: datetime | None = None,
        stop_time: datetime | None = None,
    ) -> StixDict:
        start = format_time(start_time) if start_time is not None else None
        stop = format_time(stop_time) if stop_time is not None else None
        obj = self._relation(relationship_type, source_ref, target_ref, start, stop)
        if description is not None or start is not None or stop is not None:
            _put(obj, "description", description)
            _put(obj, "start_time", start)
            _put(obj, "stop_time", stop)
        return obj

    def _relation(
        self,
        relationship_type: str,
        source_ref: str,
        target_ref: str,
        start: str | None = None,
        stop: str | None = None,
    ) -> StixDict:
        """The fields every relationship has; alone, the alert path's many relationships without times.

        A copy of a filled-in template with four fields set costs a third less than a ten-field literal,
        and keeps the literal's key order.
        """
        relation = self._relation_template.copy()
        relation["id"] = ids.relationship_id(relationship_type, source_ref, target_ref, start, stop)
        relation["object_marking_refs"] = self.marking_refs  # a user of the builder may set several
        relation["relationship_type"] = relationship_type
        relation["source_ref"] = source_ref
        relation["target_ref"] = target_ref
        return relation

    def sighting(
        self,
        *,
        sighting_of_ref: str,
        where_sighted_ref: str,
        first_seen: datetime,
        last_seen: datetime,
        count: int,
        description: str | None = None,
        placeholder_indicator: str | None = None,
    ) -> StixDict:
        """A sighting whose id stays stable while first/last seen and count move (a rerun updates it).

        STIX only lets an SDO be sighted; OpenCTI reads `x_opencti_sighting_of_ref` for an observable,
        with any indicator id as placeholder in `sighting_of_ref`.
        """
        sighting_id = ids.sighting_id(sighting_of_ref, [where_sighted_ref])
        obj = self._sdo("sighting", sighting_id, format_time(first_seen), format_time(last_seen))
        is_sco = sighting_of_ref.split("--", 1)[0] in ids.ID_CONTRIBUTING
        obj.update(
            {
                "sighting_of_ref": (placeholder_indicator or _PLACEHOLDER_INDICATOR)
                if is_sco
                else sighting_of_ref,
                "where_sighted_refs": [where_sighted_ref],
                "first_seen": format_time(first_seen),
                "last_seen": format_time(last_seen),
                "count": count,
            }
        )
        if is_sco:
            obj["x_opencti_sighting_of_ref"] = sighting_of_ref
        _put(obj, "description", description)
        return obj

    # ------------------------------------------------------------------ SCOs

    def _sco(self, stix_type: str, properties: StixDict) -> StixDict:
        obj: StixDict = {"type": stix_type, "spec_version": "2.1", "id": ids.sco_id(stix_type, properties)}
        obj.update(properties)
        obj["object_marking_refs"] = self.marking_refs
        obj["x_opencti_created_by_ref"] = self.author_id
        return obj

    def observable(self, observable: Observable) -> Built:
        """The observable's objects, main one first, nested ones (directory, parent process...) after."""
        if type(observable) is Process:
            # Not remembered: a pid seldom recurs, and hashing a process with its image, parent and user
            # costs about as much as building it (its image and user, which do recur, are remembered).
            return self._build_observable(observable)
        found: Built | None = self._memo.get(observable)
        return (
            found
            if found is not None
            else keep(self._memo, observable, self._build_observable(observable), _MEMO_SIZE)
        )

    def _build_observable(self, observable: Observable) -> Built:
        objects: list[StixDict] = []
        main = self._observable(observable, objects)
        return Built(main["id"], [main, *objects])

    def _observable(self, obs: Observable, extra: list[StixDict]) -> StixDict:
        # Exact-type fast paths for the observables every alert carries; the isinstance chain below
        # stays the general case.
        kind = type(obs)
        if kind is Process:
            return self._process(obs, extra)  # type: ignore[arg-type]
        if kind is File:
            return self._file(obs, extra)  # type: ignore[arg-type]
        if kind is UserAccount:
            return self._user(obs)  # type: ignore[arg-type]
        if kind is IPAddress or isinstance(obs, IPAddress):
            return self._sco(obs.stix_type, {"value": obs.value})
        if isinstance(obs, (DomainName, Url, MacAddress, Hostname, UserAgent)):
            return self._sco(_VALUE_TYPES[type(obs)], {"value": obs.value})
        if isinstance(obs, EmailAddress):
            props: StixDict = {"value": obs.value}
            _put(props, "display_name", obs.display_name)
            return self._sco("email-addr", props)
        if isinstance(obs, AutonomousSystem):
            props = {"number": obs.number}
            _put(props, "name", obs.name)
            return self._sco("autonomous-system", props)
        if isinstance(obs, Directory):
            return self._sco("directory", {"path": obs.path})
        if isinstance(obs, File):
            return self._file(obs, extra)
        if isinstance(obs, UserAccount):
            return self._user(obs)
        if isinstance(obs, Process):
            return self._process(obs, extra)
        if isinstance(obs, RegistryKey):
            props = {"key": obs.key}
            if obs.values:
                props["values"] = [_registry_value(v) for v in obs.values]
            return self._sco("windows-registry-key", props)
        if isinstance(obs, NetworkTraffic):
            return self._network_traffic(obs, extra)
        if isinstance(obs, EmailMessage):
            return self._email_message(obs, extra)
        if isinstance(obs, Software):
            props = {"name": obs.name}
            _put(props, "version", obs.version)
            _put(props, "vendor", obs.vendor)
            return self._sco("software", props)
        raise TypeError(f"not an observable: {type(obs).__name__}")

    def _nested(self, obs: Observable, extra: list[StixDict]) -> str:
        # Through the memo: a process's image, parent and user recur across alerts even when the process
        # does not. The order is the one building in place gives: the nested object's own nested objects
        # (`objects[1:]`), then the nested object itself.
        built = self.observable(obs)
        extra.extend(built.objects[1:])
        extra.append(built.objects[0])
        return built.id

    def _file(self, obs: File, extra: list[StixDict]) -> StixDict:
        props: StixDict = {}
        _put(props, "name", obs.name)
        if obs.hashes:
            props["hashes"] = obs.hash_map
        _put(props, "size", obs.size)
        _put(props, "mime_type", obs.mime_type)
        if obs.directory:
            props["parent_directory_ref"] = self._nested(obs.directory, extra)
        return self._sco("file", props)

    def _user(self, obs: UserAccount) -> StixDict:
        props: StixDict = {}
        _put(props, "account_login", obs.account_login)
        _put(props, "user_id", obs.user_id)
        _put(props, "display_name", obs.display_name)
        if obs.domain:
            # STIX has no domain property; account_type would change the id OpenCTI computes.
            props["x_opencti_description"] = f"Domain: {obs.domain}"
        return self._sco("user-account", props)

    def _process(self, obs: Process, extra: list[StixDict]) -> StixDict:
        props: StixDict = {}
        # _put's test, spelled out for the fields' types (an int, text, a datetime): one process per alert.
        if obs.pid is not None:
            props["pid"] = obs.pid
        if obs.command_line:
            props["command_line"] = obs.command_line
        if obs.cwd:
            props["cwd"] = obs.cwd
        if obs.created is not None:
            props["created_time"] = format_time(obs.created)
        if obs.image:
            props["image_ref"] = self._nested(obs.image, extra)
        if obs.parent:
            props["parent_ref"] = self._nested(obs.parent, extra)
        if obs.user:
            props["creator_user_ref"] = self._nested(obs.user, extra)
        if obs.name and not obs.command_line:
            props["x_opencti_description"] = f"Process name: {obs.name}"
        return self._sco("process", props)

    def _network_traffic(self, obs: NetworkTraffic, extra: list[StixDict]) -> StixDict:
        props: StixDict = {}
        if obs.src:
            props["src_ref"] = self._nested(obs.src, extra)
        if obs.dst:
            props["dst_ref"] = self._nested(obs.dst, extra)
        _put(props, "src_port", obs.src_port)
        _put(props, "dst_port", obs.dst_port)
        version = (obs.src or obs.dst).version if (obs.src or obs.dst) else 4
        props["protocols"] = [p.lower() for p in obs.protocols] or [f"ipv{version}"]
        return self._sco("network-traffic", props)

    def _email_message(self, obs: EmailMessage, extra: list[StixDict]) -> StixDict:
        props: StixDict = {"is_multipart": False}
        _put(props, "subject", obs.subject)
        _put(props, "message_id", obs.message_id)
        _put(props, "date", _time(obs.date))
        if obs.sender:
            props["from_ref"] = self._nested(obs.sender, extra)
        if obs.to:
            props["to_refs"] = [self._nested(addr, extra) for addr in obs.to]
        return self._sco("email-message", props)

    # ------------------------------------------------------------------ composites

    def host(self, host: Host) -> Built:
        """A monitored host: its system identity first, then its hostname and IPs related to it."""
        found: Built | None = self._memo.get(host)
        return found if found is not None else keep(self._memo, host, self._build_host(host), _MEMO_SIZE)

    def _build_host(self, host: Host) -> Built:
        system = self.system(host.name, f"Host {host.name}" + (f" ({host.os})" if host.os else ""))
        objects = [system]
        for obs in (host.hostname, *host.ips):
            if obs is None:
                continue
            built = self.observable(obs)
            objects.extend(built.objects)
            objects.append(self.relationship("related-to", built.id, system["id"]))
        return Built(system["id"], objects)

    def alert(self, alert: Alert) -> Built:
        """An alert as an Incident with its observables, targeted systems and attack patterns."""
        incident = self.incident(
            name=alert.name,
            created=alert.created,
            description=alert.description,
            severity=alert.severity,
            source=alert.source,
            incident_type=alert.incident_type,
            first_seen=alert.first_seen,
            last_seen=alert.last_seen,
            modified=alert.updated,
            labels=alert.tags,
            links=alert.links,
            status=alert.status,
        )
        incident_id = incident["id"]
        # Each object once, in first-seen order: `seen` maps ids to objects, and its values are the result.
        seen: dict[str, StixDict] = {incident_id: incident}
        add = seen.setdefault
        relation = self._relation
        for host in alert.hosts:
            built = self.host(host)
            for item in built.objects:
                add(item["id"], item)
            rel = relation("targets", incident_id, built.id)
            add(rel["id"], rel)
            for item in built.objects[1:]:
                if item["type"] != "relationship":
                    rel = relation("related-to", item["id"], incident_id)
                    add(rel["id"], rel)
        observable = self.observable
        for obs in (*alert.users, *alert.observables):
            built = observable(obs)
            for item in built.objects:
                add(item["id"], item)
            rel = relation("related-to", built.id, incident_id)
            add(rel["id"], rel)
        for technique in alert.techniques:
            pattern = self.attack_pattern(technique)
            add(pattern["id"], pattern)
            rel = relation("uses", incident_id, pattern["id"])
            add(rel["id"], rel)
        return Built(incident_id, list(seen.values()))

    def case(self, case: Case, related_ids: Sequence[str] = ()) -> Built:
        """A case as a Case-Incident holding its alerts' incidents, observables and comment notes."""
        objects: list[StixDict] = []
        refs: list[str] = list(related_ids)
        for alert in case.alerts:
            built = self.alert(alert)
            objects.extend(built.objects)
            refs.extend(o["id"] for o in built.objects)
        refs.extend(case.alert_refs)
        for obs in case.observables:
            built = self.observable(obs)
            objects.extend(built.objects)
            refs.extend(o["id"] for o in built.objects)
        case_obj = self.case_incident(
            name=case.name,
            created=case.created,
            description=case.description,
            severity=case.severity,
            priority=case.priority,
            modified=case.updated,
            labels=case.tags,
            links=case.links,
            object_refs=refs,
            response_types=case.response_types,
            status=case.status,
        )
        notes = [
            self.note(
                content=comment.text,
                created=comment.created,
                object_refs=[case_obj["id"]],
                abstract=f"Comment by {comment.author}" if comment.author else "Comment",
                note_types=["external"],
            )
            for comment in case.comments
            if comment.text.strip()
        ]
        return Built(case_obj["id"], [case_obj, *_dedupe(objects), *notes])


_VALUE_TYPES: dict[type, str] = {
    DomainName: "domain-name",
    Url: "url",
    MacAddress: "mac-addr",
    Hostname: "hostname",
    UserAgent: "user-agent",
}
_EPOCH = "1970-01-01T00:00:00.000Z"
# Any indicator id works as the STIX-side placeholder; OpenCTI reads x_opencti_sighting_of_ref.
_PLACEHOLDER_INDICATOR = "indicator--c1034564-a9fb-429b-a1c1-c80116cc8e1e"


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _labels(labels: Sequence[str]) -> list[str]:
    return _unique([text for text in (label.strip() for label in labels if label) if text])


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _dedupe(objects: Iterable[StixDict]) -> list[StixDict]:
    return list({obj["id"]: obj for obj in objects}.values())


def _phase(tactic: str) -> str:
    return tactic.strip().lower().replace(" ", "-")


def _registry_value(value: Any) -> StixDict:
    out: StixDict = {"name": value.name}
    _put(out, "data", value.data)
    _put(out, "data_type", value.data_type)
    return out
