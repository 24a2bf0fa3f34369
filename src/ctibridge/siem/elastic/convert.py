"""`ctibridge convert elastic-alerts` and `kibana-cases`: Elastic Security data to STIX, offline.

Alert links use `kibana.alert.url` when the alert has one, else a redirect URL built from
`ELASTIC_SECURITY_KIBANA_URL` (or `ELASTIC_SECURITY_URL`) when either is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ctibridge.convert import Converter, Stats, register
from ctibridge.model.reader import read_records
from ctibridge.siem.elastic.alerts import SOURCE, AlertMapper, unwrap_alerts
from ctibridge.siem.elastic.cases import CaseMapper, unwrap_cases
from ctibridge.stix.builder import StixBuilder, StixDict


def _kibana() -> tuple[str | None, str]:
    url = os.environ.get("ELASTIC_SECURITY_KIBANA_URL") or os.environ.get("ELASTIC_SECURITY_URL")
    return url, os.environ.get("ELASTIC_SECURITY_KIBANA_SPACE", "default")


def _counted(records: Iterator[Any], stats: Stats) -> Iterator[Any]:
    for record in records:
        stats.records += 1
        yield record


def _convert_alerts(records: Iterator[Any], builder: StixBuilder, stats: Stats) -> Iterator[list[StixDict]]:
    mapper = AlertMapper(*_kibana())
    mapped = 0
    for alert in read_records(_counted(records, stats), lambda doc: mapper(doc, doc.get("_index")), "alert"):
        mapped += 1
        yield builder.alert(alert).objects
    stats.skipped = stats.records - mapped


def _convert_cases(records: Iterator[Any], builder: StixBuilder, stats: Stats) -> Iterator[list[StixDict]]:
    mapper = CaseMapper(*_kibana())
    mapped = 0
    for case in read_records(_counted(records, stats), mapper, "case"):
        mapped += 1
        yield builder.case(case).objects
    stats.skipped = stats.records - mapped


register(
    Converter(
        "elastic-alerts",
        "Kibana security alerts (NDJSON, JSON array or search response) to STIX",
        _convert_alerts,
        unwrap=unwrap_alerts,
        default_author=SOURCE,
    )
)
register(
    Converter(
        "kibana-cases",
        "Kibana cases (a Cases _find response, a JSON array, or one case) to STIX",
        _convert_cases,
        unwrap=unwrap_cases,
        default_author=SOURCE,
    )
)
