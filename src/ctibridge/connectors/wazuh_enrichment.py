"""Wazuh enrichment: hunt an OpenCTI entity in the Wazuh alert indices and record what was found.

Request -> inspect (skip with a logged reason) -> hunt (`WazuhHunter`) -> map (`WazuhEnrichmentMapper`)
-> the platform sends the objects in the request's work (or passes them on in a playbook). Everything
sent has a deterministic id, so enriching the same entity again over the same alerts creates nothing new.
Qualifying indicators come from the request's objects, else from the platform (`indicators_based_on`):
OpenCTI's request for an observable does not carry the indicators based on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ctibridge.config.wazuh import WazuhEnrichmentConfig
from ctibridge.platform.base import EnrichmentRequest, EnrichmentResult, Platform
from ctibridge.siem.wazuh.enrich import WazuhEnrichmentMapper
from ctibridge.siem.wazuh.hunt import Unsearchable, WazuhHunter, build_opensearch
from ctibridge.siem.wazuh.options import EnrichmentOptions

log = logging.getLogger(__name__)


class WazuhEnrichmentConnector:
    def __init__(self, options: EnrichmentOptions, platform: Platform, hunter: WazuhHunter) -> None:
        self.options = options
        self.platform = platform
        self.hunter = hunter
        self.mapper = WazuhEnrichmentMapper(options)

    def run(self) -> None:
        self.platform.listen_enrichment(self.enrich)

    def enrich(self, request: EnrichmentRequest) -> EnrichmentResult:
        entity = _entity_of(request)
        if entity is None:
            return self._skipped(request.entity_id, "the request carries no STIX entity")
        related = [o for o in request.stix_objects if o.get("id") != entity["id"]]
        inspection = self.mapper.inspect(entity, related, self.platform.indicators_based_on)
        if inspection.skip:
            return self._skipped(entity["id"], inspection.skip)
        reason = self.hunter.skip_reason(entity, related)
        if reason:
            return self._skipped(entity["id"], reason)
        try:
            self.hunter.build(entity, related)
        except Unsearchable as exc:
            return self._skipped(entity["id"], f"not searchable in Wazuh: {exc}")
        result = self.hunter.hunt(entity, related)
        if result is None:
            return self._skipped(entity["id"], "not searchable in Wazuh")
        mapped = self.mapper.map(entity, result, inspection)
        if mapped.aborted:
            log.warning("enrichment of %s aborted: %s", entity["id"], mapped.aborted)
        log.info(
            "hunted %s in Wazuh: %d alerts, %d retrieved; %s",
            entity["id"],
            result.total,
            len(result.hits),
            mapped.message,
            extra={"entity_id": entity["id"], "alerts": result.total},
        )
        return EnrichmentResult(mapped.objects, f"{result.total} Wazuh alerts; {mapped.message}")

    @staticmethod
    def _skipped(entity_id: str, reason: str) -> EnrichmentResult:
        log.info("not enriching %s: %s", entity_id, reason, extra={"entity_id": entity_id})
        return EnrichmentResult([], f"skipped: {reason}")


def _entity_of(request: EnrichmentRequest) -> dict[str, Any] | None:
    if request.stix_entity.get("id"):
        return dict(request.stix_entity)
    for obj in request.stix_objects:
        if isinstance(obj, Mapping) and obj.get("id") == request.entity_id:
            return dict(obj)
    return None


def build(config: WazuhEnrichmentConfig, platform: Platform) -> WazuhEnrichmentConnector:
    hunter = WazuhHunter(
        build_opensearch(config.wazuh_opensearch),
        config.wazuh_opensearch,
        config.wazuh_search,
        exclude_rule_ids=config.wazuh.rule_exclude_list,
    )
    options = EnrichmentOptions.from_settings(config.wazuh, config.wazuh_search, config.wazuh_enrich)
    return WazuhEnrichmentConnector(options, platform, hunter)
