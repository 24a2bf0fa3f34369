"""`ctibridge convert stix-to-ecs BUNDLE`: the threat-indicator documents the intel connector would write.

NDJSON, one line per document: `{"_index", "_id", "_source"}`, ready for a `_bulk` body or a diff. Settings
come from the connector's environment (`ELASTIC_SECURITY_INDEX_NAME`, `_INDICATOR_EXPIRE_TIME`,
`_MAX_TLP`); `OPENCTI_URL`, when set, gives the references back to OpenCTI. Objects that must have no
document (revoked, expired, above the TLP ceiling, no value ECS can hold) are counted as skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from ctibridge.convert import Converter, Stats, register
from ctibridge.siem.elastic.indicators import IndicatorDocuments
from ctibridge.siem.elastic.rules_convert import offline_settings, unwrap_stix
from ctibridge.stix.builder import StixBuilder

log = logging.getLogger(__name__)


def convert_documents(
    records: Iterator[Any], builder: StixBuilder, stats: Stats
) -> Iterable[list[dict[str, Any]]]:
    settings = offline_settings()
    documents = IndicatorDocuments(
        opencti_url=os.environ.get("OPENCTI_URL") or None,
        expire_days=settings.indicator_expire_time,
        max_tlp=settings.max_tlp,
    )
    now = datetime.now(UTC)
    for record in records:
        stats.records += 1
        if not isinstance(record, dict):
            stats.skipped += 1
            continue
        documents.remember_identity(record)
        plan = documents.plan(record, now)
        if plan is None or not plan.documents:
            if plan is not None:
                why = plan.dead_reason or "; ".join(plan.skipped) or "no value to match on"
                log.info("no document for %s: %s", plan.stix_id, why)
            stats.skipped += 1
            continue
        yield [
            {"_index": settings.index_name, "_id": doc_id, "_source": source}
            for doc_id, source in plan.documents
        ]


register(
    Converter(
        "stix-to-ecs",
        "STIX indicators and observables (bundle, JSON array or NDJSON) to ECS threat-indicator documents "
        "(NDJSON of _index/_id/_source)",
        convert_documents,
        unwrap=unwrap_stix,
        output="ndjson",
        default_author="OpenCTI",
    )
)
