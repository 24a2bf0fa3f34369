"""A Wazuh hunt result -> STIX: sightings, incidents, the case, enrichment observables and notes.

Hunt (`hunt.WazuhHunter`) -> inspect/map (here) -> send (the connector). Every id is deterministic
(see `incidents` and `notes`): a rerun over the same alerts sends the same objects, which OpenCTI
upserts, so it creates nothing new.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctibridge.model.alerts import Severity
from ctibridge.siem.wazuh.alertdoc import AlertView, view
from ctibridge.siem.wazuh.incidents import IncidentPlan, IncidentPlanner, anchor_time
from ctibridge.siem.wazuh.inspection import IndicatorLookup, Inspection, inspect
from ctibridge.siem.wazuh.notes import alert_content, summary_content
from ctibridge.siem.wazuh.observables import AlertFindings, AlertObservables, observable_type
from ctibridge.siem.wazuh.options import EnrichmentOptions
from ctibridge.siem.wazuh.sightings import (
    SOURCE_NAME,
    Systems,
    build_systems,
    labelled,
    newest_per_rule,
    sighting,
)
from ctibridge.stix import ids
from ctibridge.stix.builder import StixBuilder, StixDict

if TYPE_CHECKING:
    from ctibridge.siem.wazuh.hunt import HuntResult

_SUMMARY_CREATED = "1970-01-01T00:00:00.000Z"


@dataclass(slots=True)
class Mapped:
    """The objects to send (empty when aborted) and what they are, for the work message and the tests."""

    objects: list[StixDict]
    counts: Counter[str] = field(default_factory=Counter)
    aborted: str | None = None

    @property
    def message(self) -> str:
        if self.aborted:
            return f"nothing sent: {self.aborted}"
        made = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()) if n)
        return made or "nothing to create"


def entity_label(entity: Mapping[str, Any]) -> str:
    """A short human name for the hunted entity, for incident names and notes."""
    for key in ("value", "name", "command_line", "key", "path", "account_login", "user_id", "pattern"):
        value = entity.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    hashes = entity.get("hashes")
    if isinstance(hashes, Mapping) and hashes:
        algorithm, digest = next(iter(sorted(hashes.items())))
        return f"{algorithm}:{digest}"
    return str(entity.get("id") or "entity")


def summary_note_id(entity_id: str) -> str:
    """One summary per entity, whatever its content: a rerun with new alerts updates the same note."""
    return ids.note_id(f"Wazuh hunt summary of {entity_id}", _SUMMARY_CREATED)


class WazuhEnrichmentMapper:
    """Turns hunt results into STIX; one instance serves every request (its builder caches shared objects)."""

    def __init__(self, options: EnrichmentOptions) -> None:
        self.options = options
        tlps = sorted(set(options.tlps))
        self.builder = StixBuilder(author_name=options.author_name, tlp=max(tlps))
        self.builder.marking_refs = [tlp.marking_id for tlp in tlps]
        self._markings = [tlp.marking for tlp in tlps]
        self.extract = AlertObservables(
            create_directories=options.create_directories, remove_path=options.remove_path
        )

    @property
    def author_id(self) -> str:
        return self.builder.author_id

    def preamble(self) -> list[StixDict]:
        return [self.builder.author, *self._markings]

    def inspect(
        self,
        entity: Mapping[str, Any],
        related: Sequence[Mapping[str, Any]],
        lookup: IndicatorLookup | None = None,
    ) -> Inspection:
        return inspect(entity, related, self.options, author_id=self.author_id, lookup=lookup)

    def abort_reason(self, result: HuntResult) -> str | None:
        o = self.options
        if o.hits_abort_limit is not None and result.total > o.hits_abort_limit:
            return f"{result.total} matching alerts exceed WAZUH_HITS_ABORT_LIMIT ({o.hits_abort_limit})"
        if o.system_abort_limit is not None and len(result.agents) > o.system_abort_limit:
            return f"{len(result.agents)} agents exceed WAZUH_SYSTEM_ABORT_LIMIT ({o.system_abort_limit})"
        return None

    # ------------------------------------------------------------------ mapping

    def map(self, entity: Mapping[str, Any], result: HuntResult, inspection: Inspection) -> Mapped:
        reason = self.abort_reason(result)
        if reason:
            return Mapped([], aborted=reason)
        if result.total == 0:
            return Mapped([])
        run = _Run(self, entity, result, inspection)
        objects = run.build()
        limit = self.options.bundle_abort_limit
        if limit is not None and len(objects) > limit:
            return Mapped(
                [], aborted=f"{len(objects)} STIX objects exceed WAZUH_BUNDLE_ABORT_LIMIT ({limit})"
            )
        return Mapped(objects, run.counts)


class _Run:
    """The state of mapping one hunt result."""

    def __init__(
        self,
        mapper: WazuhEnrichmentMapper,
        entity: Mapping[str, Any],
        result: HuntResult,
        inspection: Inspection,
    ) -> None:
        self.mapper = mapper
        self.options = mapper.options
        self.builder = mapper.builder
        self.entity = entity
        self.entity_id = str(entity["id"])
        self.entity_type = str(entity.get("type") or "")
        self.label = entity_label(entity)
        self.anchor = anchor_time(entity)  # `created` of incidents and the case: stable across windows
        self.result = result
        self.inspection = inspection
        self.labels = list(self.options.enrich_labels)
        self.objects: dict[str, StixDict] = {}
        self.counts: Counter[str] = Counter()
        self.views = [view(hit) for hit in result.hits]
        self._findings: dict[int, AlertFindings] = {}

    def add(self, items: Iterable[StixDict]) -> None:
        for obj in items:
            # Never re-send the hunted entity: our markings and labels would land on it.
            if obj["id"] != self.entity_id and obj["id"] not in self.objects:
                self.objects[obj["id"]] = obj

    def build(self) -> list[StixDict]:
        self.add(self.mapper.preamble())
        systems = build_systems(self.builder, self.options, self.result.agents, self.labels)
        self.add(systems.objects)
        sightings = self._sightings(systems) if self.inspection.sightings else {}
        incidents: list[tuple[IncidentPlan, StixDict]] = []
        if self.inspection.incidents:
            planner = IncidentPlanner(
                self.options, entity_label=self.label, entity_type=self.entity_type, anchor=self.anchor
            )
            for plan in planner.plan(self.result, self.views, systems):
                incidents.append((plan, self._incident(plan)))
        case = self._case([inc for _, inc in incidents]) if incidents and self.options.create_case else None
        self._notes(systems, sightings, incidents, case)
        return list(self.objects.values())

    # ------------------------------------------------------------------ sightings

    def _sightings(self, systems: Systems) -> dict[str, StixDict]:
        by_system: dict[str, list[AlertView]] = {}
        for alert in self.views:
            by_system.setdefault(systems.system_of(alert.agent_key), []).append(alert)
        out = {}
        for system_id, group in systems.groups.items():
            if group.first_seen is None or group.count <= 0:
                continue
            obj = sighting(
                self.builder,
                self.options,
                entity_id=self.entity_id,
                group=group,
                alerts=by_system.get(system_id, []),
                truncated=self.result.truncated,
            )
            out[system_id] = obj
            self.add([obj])
            self.counts["sightings"] += 1
        return out

    # ------------------------------------------------------------------ incidents and enrichment

    def _incident(self, plan: IncidentPlan) -> StixDict:
        b = self.builder
        incident = b.incident(
            name=plan.name,
            created=plan.created,
            description=plan.description,
            severity=plan.severity,
            source=SOURCE_NAME,
            first_seen=plan.first_seen,
            last_seen=plan.last_seen,
            modified=plan.last_seen if plan.last_seen and plan.last_seen > plan.created else None,
            links=plan.links,
        )
        inc_id = incident["id"]
        rels = []
        if self.entity_type == "vulnerability":
            rels.append(b.relationship("targets", inc_id, self.entity_id))
        elif self.entity_type != "indicator":
            rels.append(b.relationship("related-to", inc_id, self.entity_id))
        rels.extend(
            b.relationship("indicates", indicator, inc_id) for indicator in self.inspection.indicators
        )
        rels.extend(b.relationship("targets", inc_id, system) for system in plan.systems)
        self.add([incident, *rels])
        self.counts["incidents"] += 1
        self._enrich(inc_id, plan.alerts)
        return incident

    def _findings_of(self, alert: AlertView) -> AlertFindings:
        key = id(alert)
        found = self._findings.get(key)
        if found is None:
            found = self._findings[key] = self.mapper.extract(alert.source)
        return found

    def _enrich(self, incident_id: str, alerts: Sequence[AlertView]) -> None:
        b, types = self.builder, self.options.enrich_types
        related: dict[str, str] = {}  # target id -> relationship type from/to the incident
        for alert in alerts:
            found = self._findings_of(alert)
            for obs in found.observables:
                if observable_type(obs) not in types:
                    continue
                built = b.observable(obs)
                self._add_enrichment(built.objects)
                related.setdefault(built.id, "related-to")
            for vuln in found.vulnerabilities:
                vuln_id = None
                if "vulnerability" in types:
                    vuln_obj = b.vulnerability(vuln.cve, score=vuln.score)
                    vuln_id = vuln_obj["id"]
                    self._add_enrichment([vuln_obj])
                    related.setdefault(vuln_id, "targets")
                if vuln.software is not None and "software" in types:
                    software = b.observable(vuln.software)
                    self._add_enrichment(software.objects)
                    related.setdefault(software.id, "related-to")
                    if vuln_id:
                        self.add([b.relationship("has", software.id, vuln_id)])
            if "attack-pattern" in types:
                for technique in found.techniques:
                    pattern = b.attack_pattern(technique)
                    self.add([pattern])
                    related.setdefault(pattern["id"], "uses")
        for target, kind in related.items():
            if target == self.entity_id:
                continue
            if kind == "related-to":
                self.add([b.relationship("related-to", target, incident_id)])
            else:
                self.add([b.relationship(kind, incident_id, target)])

    def _add_enrichment(self, objects: Iterable[StixDict]) -> None:
        fresh = [o for o in objects if o["id"] not in self.objects and o["id"] != self.entity_id]
        self.counts["enrichment objects"] += len({o["id"] for o in fresh})
        self.add(labelled(o, self.labels) for o in fresh)

    # ------------------------------------------------------------------ case

    def _case(self, incidents: Sequence[StixDict]) -> StixDict:
        severities = [Severity(i["severity"]) for i in incidents if i.get("severity")]
        top = max(severities, key=lambda s: s.rank) if severities else None
        skip = {self.builder.author_id, *(m["id"] for m in self.mapper.preamble())}
        refs = [self.entity_id, *(oid for oid in self.objects if oid not in skip)]
        case = self.builder.case_incident(
            name=f"Wazuh: {self.label[:120]}",
            created=self.anchor,
            description=f"{len(incidents)} incidents from {self.result.total} Wazuh alerts matching "
            f"{self.label[:200]}.",
            severity=top,
            object_refs=refs,
        )
        self.add([case])
        self.counts["cases"] += 1
        return case

    # ------------------------------------------------------------------ notes

    def _notes(
        self,
        systems: Systems,
        sightings: Mapping[str, StixDict],
        incidents: Sequence[tuple[IncidentPlan, StixDict]],
        case: StixDict | None,
    ) -> None:
        o, b = self.options, self.builder
        refs: list[str] = []
        if o.create_sighting_summary and sightings:
            refs += [s["id"] for s in sightings.values()]
        if o.create_incident_summary and incidents:
            refs += [inc["id"] for _, inc in incidents]
            refs += [case["id"]] if case else []
        if refs:
            created = dict(self.counts)
            content = summary_content(self.result, entity_label=self.label, created=created)
            when = self.result.first_seen or self.result.last_seen
            note = b.note(
                content=content,
                created=when,  # type: ignore[arg-type]
                object_refs=[self.entity_id, *refs],
                abstract=f"Wazuh: {self.result.total} alerts matching {self.label[:100]}",
                note_types=["analysis"],
            ) if when else None  # fmt: skip
            if note is not None:
                note["id"] = summary_note_id(self.entity_id)
                self.add([note])
                self.counts["notes"] += 1
        chosen = newest_per_rule(self.views, o.max_notes, o.max_notes_per_alert_rule)
        for alert in chosen:
            when = alert.time or self.result.first_seen
            if when is None:
                continue
            alert_refs = [self.entity_id]
            system = systems.system_of(alert.agent_key)
            if system in sightings:
                alert_refs.append(sightings[system]["id"])
            alert_refs += [inc["id"] for plan, inc in incidents if any(a is alert for a in plan.alerts)]
            note = b.note(
                content=alert_content(alert, full_document=o.alert_note_full_document),
                created=when,
                object_refs=alert_refs,
                abstract=f"Wazuh alert {alert.alert_id} (rule {alert.rule_id or '?'}) on "
                f"{alert.agent_name or alert.agent_id or 'unknown agent'}",
                note_types=["external"],
            )
            self.add([note])
            self.counts["notes"] += 1
