"""Sentinel Incidents: Microsoft Graph security incidents, alerts and evidence into OpenCTI.

Collect (GraphIncidents, oldest update first) -> transform (IncidentMapper, StixBuilder) -> send
(Platform), one page at a time. The checkpoint is the last delivered page's newest `lastUpdateDateTime`
(Graph's original text, 7 fractional digits) plus the ids delivered at exactly that time, saved after
the page is delivered: `ge` finds those ids again and they are skipped, so a rerun sends nothing twice.

After a page that moved the checkpoint the next page is a fresh query from it rather than the
`@odata.nextLink`: `$skip` links shift when an incident is updated during the run and would then step
over one. The link is followed when the checkpoint cannot move (a page full of one timestamp).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from ctibridge.config.sentinel import SentinelIncidentsConfig, SentinelIncidentsSettings
from ctibridge.errors import InputError, RemoteError
from ctibridge.platform.base import Platform, Work
from ctibridge.platform.workflow import WorkflowResolver
from ctibridge.siem.microsoft.client import GraphIncidents, IncidentPage, graph_literal, graph_ticks
from ctibridge.siem.microsoft.incidents import SOURCE, IncidentMapper, build_incident, skipped_summary
from ctibridge.stix.builder import StixBuilder, StixDict
from ctibridge.stix.bundle import chunk_groups

log = logging.getLogger(__name__)


class SentinelIncidentsConnector:
    def __init__(
        self,
        settings: SentinelIncidentsSettings,
        platform: Platform,
        client: GraphIncidents,
        *,
        period: Any = None,
        chunk_objects: int = 5000,
        now: Any = None,
    ) -> None:
        self.settings = settings
        self.platform = platform
        self.client = client
        self.period = period
        self.chunk_objects = chunk_objects
        self.now = now or (lambda: datetime.now(UTC))
        self.builder = StixBuilder(author_name=SOURCE, tlp=settings.tlp)
        self.mapper = IncidentMapper(settings.target_product)
        self.workflow = WorkflowResolver(
            platform,
            {"case-incident": settings.incident_status_mapping, "incident": settings.alert_status_mapping},
        )

    def run(self) -> None:
        self.platform.schedule(self.process, self.period)

    def process(self) -> None:
        state = dict(self.platform.get_state())
        since: str = state.get("last_update") or graph_literal(self.settings.import_start_date)
        seen = set(state.get("ids_at_last_update") or [])
        self.mapper.skipped.clear()
        self.builder.workflow_ids = self.workflow.resolve()
        delivered = 0
        with self.platform.work(f"Microsoft Graph incidents import {self.now():%Y-%m-%d %H:%M:%S}") as work:
            query_since = since
            page = self.client.first_page(query_since)
            while True:
                delivered += self._deliver_page(work, page, since, seen)
                since, seen = self._advance(page, since, seen)
                self.platform.set_state({**state, "last_update": since, "ids_at_last_update": sorted(seen)})
                if not page.next_link:
                    break
                if graph_ticks(since) > graph_ticks(query_since):
                    query_since = since
                    page = self.client.first_page(query_since)
                else:
                    page = self.client.follow(page.next_link)
        log.info(
            "imported Microsoft Graph incidents",
            extra={"incidents": delivered, "skipped": skipped_summary(self.mapper.skipped)},
        )

    def _deliver_page(self, work: Work, page: IncidentPage, since: str, seen: set[str]) -> int:
        groups: list[list[StixDict]] = []
        previous = graph_ticks(since)
        indicators = self.settings.create_indicators
        for incident in page.incidents:
            if str(incident.get("id")) in seen and _ticks(incident) == previous:
                continue  # delivered by the run that saved this checkpoint
            try:
                mapped = self.mapper(incident)
                if mapped is None:
                    continue
                built = build_incident(self.builder, mapped, create_indicators=indicators)
            except (InputError, ValueError, TypeError) as exc:
                log.warning("skipped incident %s: %s", incident.get("id"), exc)
                continue
            groups.append(built.objects)
        if groups:
            preamble = self.builder.preamble()
            for chunk in chunk_groups(groups, preamble=preamble, max_objects=self.chunk_objects):
                work.send(chunk)
        return len(groups)

    @staticmethod
    def _advance(page: IncidentPage, since: str, seen: set[str]) -> tuple[str, set[str]]:
        """The checkpoint after `page`: its newest update time and the ids at that time."""
        newest, newest_text, ids = graph_ticks(since), since, set(seen)
        for incident in page.incidents:
            ticks = _ticks(incident)
            if ticks is None:
                continue
            if ticks < newest:
                raise RemoteError(
                    "microsoft-graph", "incidents are not in lastUpdateDateTime order ($orderby ignored?)"
                )
            if ticks > newest:
                newest, newest_text, ids = ticks, str(incident["lastUpdateDateTime"]).strip(), set()
            ids.add(str(incident.get("id")))
        return newest_text, ids


def _ticks(incident: dict[str, Any]) -> int | None:
    try:
        return graph_ticks(incident.get("lastUpdateDateTime"))  # type: ignore[arg-type]
    except InputError:
        return None


def build(config: SentinelIncidentsConfig, platform: Platform) -> SentinelIncidentsConnector:
    settings = config.sentinel_incidents
    return SentinelIncidentsConnector(
        settings, platform, GraphIncidents(settings), period=config.connector.duration_period
    )
