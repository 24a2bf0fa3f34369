"""`ctibridge convert elastic-alerts`: Kibana alert documents to STIX, offline.

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
from ctibridge.stix.builder import StixBuilder, StixDict


def _convert_alerts(records: Iterator[Any], builder: StixBuilder, stats: Stats) -> Iterator[list[StixDict]]:
    mapper = AlertMapper(
        os.environ.get("ELASTIC_SECURITY_KIBANA_URL") or os.environ.get("ELASTIC_SECURITY_URL"),
        os.environ.get("ELASTIC_SECURITY_KIBANA_SPACE", "default"),
    )
    mapped = 0

    def counted() -> Iterator[Any]:
        for record in records:
            stats.records += 1
            yield record

    for alert in read_records(counted(), lambda doc: mapper(doc, doc.get("_index")), "alert"):
        mapped += 1
        yield builder.alert(alert).objects
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
