"""Elastic Security Incidents: alerts and Kibana cases into OpenCTI, incrementally and without loss.

Collect (AlertReader, KibanaCases) -> transform (mappers, StixBuilder) -> send (Platform). The alert
checkpoint is the last delivered page's sort key, saved after each page; cases advance their checkpoint
only once every case of the run was delivered, because the API lists them newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from ctibridge.config.elastic import ElasticIncidentsConfig, ElasticIncidentsSettings
from ctibridge.config.types import parse_datetime
from ctibridge.errors import InputError
from ctibridge.platform.base import Platform, Work
from ctibridge.platform.workflow import WorkflowResolver
from ctibridge.siem.elastic.alerts import SOURCE, AlertMapper
from ctibridge.siem.elastic.cases import CaseMapper, alert_ids_of
from ctibridge.siem.elastic.client import AlertReader, KibanaCases, build_elasticsearch
from ctibridge.stix.builder import StixBuilder, StixDict
from ctibridge.stix.bundle import chunk_groups

log = logging.getLogger(__name__)


class ElasticIncidentsConnector:
    def __init__(
        self,
        settings: ElasticIncidentsSettings,
        platform: Platform,
        alerts: AlertReader,
        cases: KibanaCases | None,
        *,
        period: Any = None,
        chunk_objects: int = 5000,
        now: Any = None,
    ) -> None:
        self.settings = settings
        self.platform = platform
        self.alerts = alerts
        self.cases = cases
        self.period = period
        self.chunk_objects = chunk_objects
        self.now = now or (lambda: datetime.now(UTC))
        self.builder = StixBuilder(author_name=SOURCE, tlp=settings.tlp)
        self.alert_mapper = AlertMapper(settings.kibana_base_url, settings.kibana_space)
        self.case_mapper = CaseMapper(settings.kibana_base_url, settings.kibana_space, self.alert_mapper)
        wanted = {"incident": settings.alert_status_mapping}  # alerts of cases are incidents too
        if settings.import_cases:
            wanted["case-incident"] = settings.case_status_mapping
        self.workflow = WorkflowResolver(platform, wanted)

    def run(self) -> None:
        self.platform.schedule(self.process, self.period)

    def process(self) -> None:
        state = dict(self.platform.get_state())
        started = self.now()
        self.builder.workflow_ids = self.workflow.resolve()
        with self.platform.work(f"Elastic Security import {started:%Y-%m-%d %H:%M:%S}") as work:
            if self.settings.import_alerts:
                self._import_alerts(work, state, started)
            if self.settings.import_cases and self.cases is not None:
                self._import_cases(work, state)

    # ------------------------------------------------------------------ alerts

    def _deliver(self, work: Work, groups: Iterable[list[StixDict]]) -> int:
        sent = 0
        for chunk in chunk_groups(groups, preamble=self.builder.preamble(), max_objects=self.chunk_objects):
            sent += work.send(chunk)
        return sent

    def _map_alerts(self, documents: list[dict[str, Any]]) -> list[list[StixDict]]:
        groups = []
        for document in documents:
            try:
                groups.append(self.builder.alert(self.alert_mapper(document, document.get("_index"))).objects)
            except (InputError, ValueError, TypeError) as exc:
                log.warning("skipped alert %s: %s", document.get("_id"), exc)
        return groups

    def _import_alerts(self, work: Work, state: dict[str, Any], started: datetime) -> None:
        s = self.settings
        horizon = started - timedelta(seconds=s.settle_seconds)
        # The start date the import began from, kept: the default (7 days back) moves at every restart,
        # and the status pass must cover every alert imported, not only the last 7 days' of this process.
        floor_text = state.setdefault("alerts_since", s.import_start_date.isoformat())
        floor = parse_datetime(floor_text)
        query = self.alerts.query(
            since=s.import_start_date, until=horizon, statuses=s.alert_statuses, rule_tags=s.alert_rule_tags
        )
        count = 0
        for page in self.alerts.pages(query, state.get("alerts_after")):
            self._deliver(work, self._map_alerts(page.hits))
            count += len(page.hits)
            state["alerts_after"] = page.last_sort
            self.platform.set_state(state)
        log.info("imported alerts", extra={"alerts": count})

        # Alerts already imported whose workflow status changed since the previous run: re-send them.
        checked = state.get("status_checked_at")
        if checked and state.get("alerts_after"):
            since = parse_datetime(checked)
            query = self.alerts.query(
                since=floor, statuses=s.alert_statuses, rule_tags=s.alert_rule_tags,
                status_changed_since=since, until=horizon,
            )  # fmt: skip
            changed = 0
            for page in self.alerts.pages(query):
                self._deliver(work, self._map_alerts(page.hits))
                changed += len(page.hits)
            log.info("re-sent alerts with a changed status", extra={"alerts": changed})
        state["status_checked_at"] = horizon.isoformat()
        self.platform.set_state(state)

    # ------------------------------------------------------------------ cases

    def _import_cases(self, work: Work, state: dict[str, Any]) -> None:
        assert self.cases is not None
        checkpoint_text = state.get("cases_updated_at")
        checkpoint = parse_datetime(checkpoint_text) if checkpoint_text else self.settings.import_start_date
        newest = checkpoint
        groups = []
        for case in self.cases.updated_since(checkpoint, self.settings.case_statuses):
            try:
                comments = self.cases.comments(str(case["id"]))
                comments += self.cases.alert_attachments(str(case["id"]))
                documents = self.alerts.by_refs(alert_ids_of(case, comments))
                mapped = self.case_mapper(case, comments, documents)
            except (InputError, KeyError, ValueError) as exc:
                log.warning("skipped case %s: %s", case.get("id"), exc)
                continue
            groups.append(self.builder.case(mapped).objects)
            newest = max(newest, mapped.updated or mapped.created)
        self._deliver(work, groups)
        log.info("imported cases", extra={"cases": len(groups)})
        if newest > checkpoint:
            state["cases_updated_at"] = newest.isoformat()
            self.platform.set_state(state)


def build(config: ElasticIncidentsConfig, platform: Platform) -> ElasticIncidentsConnector:
    settings = config.elastic_security
    es = build_elasticsearch(settings)
    reader = AlertReader(
        es, settings.alerts_index, page_size=settings.page_size, attempts=settings.max_retries
    )
    cases = KibanaCases(settings, attempts=settings.max_retries) if settings.import_cases else None
    return ElasticIncidentsConnector(
        settings, platform, reader, cases, period=config.connector.duration_period
    )
