"""`ctibridge convert elastic-alerts` and `kibana-cases`: Elastic Security data to STIX, offline.

Alert links use `kibana.alert.url` when the alert has one, else a redirect URL built from
`ELASTIC_SECURITY_KIBANA_URL` (or `ELASTIC_SECURITY_URL`) when either is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ctibridge.convert import Converter, mapped_conversion, register
from ctibridge.model.alerts import Alert
from ctibridge.siem.elastic.alerts import SOURCE, AlertMapper, unwrap_alerts
from ctibridge.siem.elastic.cases import CaseMapper, unwrap_cases
from ctibridge.stix.builder import StixBuilder


def _kibana() -> tuple[str | None, str]:
    url = os.environ.get("ELASTIC_SECURITY_KIBANA_URL") or os.environ.get("ELASTIC_SECURITY_URL")
    return url, os.environ.get("ELASTIC_SECURITY_KIBANA_SPACE", "default")


def _alert_reader() -> Callable[[Any], Alert]:
    mapper = AlertMapper(*_kibana())
    return lambda document: mapper(document, document.get("_index"))


register(
    Converter(
        "elastic-alerts",
        "Kibana security alerts (NDJSON, JSON array or search response) to STIX",
        mapped_conversion(_alert_reader, "alert", StixBuilder.alert),
        unwrap=unwrap_alerts,
        default_author=SOURCE,
    )
)
register(
    Converter(
        "kibana-cases",
        "Kibana cases (a Cases _find response, a JSON array, or one case) to STIX",
        mapped_conversion(lambda: CaseMapper(*_kibana()), "case", StixBuilder.case),
        unwrap=unwrap_cases,
        default_author=SOURCE,
    )
)
