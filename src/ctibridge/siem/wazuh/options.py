"""What a Wazuh hunt turns into, as one plain value: the mapper is testable without any settings.

`EnrichmentOptions.from_settings` is the single place that reads the `WAZUH_*` groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ctibridge.config.wazuh import EnrichEntityType, FilenameBehaviour, IncidentCreateMode
from ctibridge.stix.markings import Tlp

if TYPE_CHECKING:
    from ctibridge.config.wazuh import WazuhEnrichSettings, WazuhSearchSettings, WazuhSettings

IncidentMode = IncidentCreateMode
# The dashboard's index pattern id used in alert links; the prior connector's value (unverified in general).
DEFAULT_INDEX_PATTERN_ID = "wazuh-alerts-*"


@dataclass(frozen=True)
class EnrichmentOptions:
    # identities, markings, links
    author_name: str = "Wazuh"
    system_name: str = "Wazuh SIEM"
    tlps: tuple[Tlp, ...] = (Tlp.AMBER_STRICT,)
    max_tlp: Tlp = Tlp.AMBER
    app_url: str | None = None
    index_pattern_id: str = DEFAULT_INDEX_PATTERN_ID
    agents_as_systems: bool = True
    create_agent_ip_observable: bool = True
    create_agent_hostname_observable: bool = True
    # inspection
    ignore_own_entities: bool = False
    ignore_private_addrs: bool = True
    label_ignore_list: frozenset[str] = frozenset({"hygiene", "wazuh_ignore"})
    enrich_labels: tuple[str, ...] = ("wazuh_ignore",)
    # abort limits (None = off)
    hits_abort_limit: int | None = 1000
    system_abort_limit: int | None = None
    bundle_abort_limit: int | None = 500
    # sightings, links, notes
    create_obs_sightings: bool = True
    max_extrefs: int = 10
    max_extrefs_per_alert_rule: int = 2
    max_notes: int = 10
    max_notes_per_alert_rule: int = 2
    alert_note_full_document: bool = False
    create_sighting_summary: bool = True
    create_incident_summary: bool = True
    # indicators
    require_indicator_for_incidents: bool = True
    require_indicator_detection: bool = False
    ignore_revoked_indicators: bool = True
    indicator_score_threshold: int | None = None
    # incidents and the case
    incident_mode: IncidentCreateMode = IncidentCreateMode.PER_SIGHTING
    incident_threshold: int = 1
    incident_rule_exclude_list: frozenset[str] = frozenset()
    vulnerability_cvss3_threshold: float | None = None
    vulnerability_active_only: bool = True
    create_case: bool = True
    # enrichment
    enrich_types: frozenset[str] = field(default_factory=lambda: frozenset(t.value for t in EnrichEntityType))
    create_directories: bool = True
    remove_path: bool = True

    @classmethod
    def from_settings(
        cls,
        wazuh: WazuhSettings,
        search: WazuhSearchSettings | None = None,
        enrich: WazuhEnrichSettings | None = None,
    ) -> EnrichmentOptions:
        extra: dict[str, object] = {}
        if search is not None:
            extra["ignore_private_addrs"] = search.ignore_private_addrs
        if enrich is not None:
            extra["enrich_types"] = frozenset(str(t.value) for t in enrich.types)
            extra["create_directories"] = FilenameBehaviour.CREATE_DIR in enrich.filename_behaviour
            extra["remove_path"] = FilenameBehaviour.REMOVE_PATH in enrich.filename_behaviour
        return cls(
            author_name=wazuh.author_name,
            system_name=wazuh.system_name,
            tlps=tuple(wazuh.tlps) or (Tlp.AMBER_STRICT,),
            max_tlp=wazuh.max_tlp,
            app_url=wazuh.app_url,
            index_pattern_id=getattr(wazuh, "app_index_pattern_id", None) or DEFAULT_INDEX_PATTERN_ID,
            agents_as_systems=wazuh.agents_as_systems,
            create_agent_ip_observable=wazuh.create_agent_ip_observable,
            create_agent_hostname_observable=wazuh.create_agent_hostname_observable,
            ignore_own_entities=wazuh.ignore_own_entities,
            label_ignore_list=frozenset(wazuh.label_ignore_list),
            enrich_labels=tuple(wazuh.enrich_labels),
            hits_abort_limit=wazuh.hits_abort_limit,
            system_abort_limit=wazuh.system_abort_limit,
            bundle_abort_limit=wazuh.bundle_abort_limit,
            create_obs_sightings=wazuh.create_obs_sightings,
            max_extrefs=wazuh.max_extrefs,
            max_extrefs_per_alert_rule=wazuh.max_extrefs_per_alert_rule,
            max_notes=wazuh.max_notes,
            max_notes_per_alert_rule=wazuh.max_notes_per_alert_rule,
            alert_note_full_document=wazuh.alert_note_full_document,
            create_sighting_summary=wazuh.create_sighting_summary,
            create_incident_summary=wazuh.create_incident_summary,
            require_indicator_for_incidents=wazuh.require_indicator_for_incidents,
            require_indicator_detection=wazuh.require_indicator_detection,
            ignore_revoked_indicators=wazuh.ignore_revoked_indicators,
            indicator_score_threshold=wazuh.indicator_score_threshold,
            incident_mode=wazuh.create_incident,
            incident_threshold=wazuh.create_incident_threshold,
            incident_rule_exclude_list=frozenset(wazuh.incident_rule_exclude_list),
            vulnerability_cvss3_threshold=wazuh.vulnerability_incident_cvss3_score_threshold,
            vulnerability_active_only=wazuh.vulnerability_incident_active_only,
            create_case=wazuh.create_incident_response,
            **extra,  # type: ignore[arg-type]
        )
