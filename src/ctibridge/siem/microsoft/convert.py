"""`ctibridge convert graph-incidents`: Graph security incidents (alerts expanded) to STIX, offline.

Input: a list response (`{"value": [...]}`), a JSON array, NDJSON, or one incident. The product filter
and indicator creation follow SENTINEL_INCIDENTS_TARGET_PRODUCT and SENTINEL_INCIDENTS_CREATE_INDICATORS
when set; unset, every alert is converted and no indicator is made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from ctibridge.convert import Converter, Stats, register
from ctibridge.errors import InputError
from ctibridge.model.reader import read_records
from ctibridge.siem.microsoft.incidents import (
    SOURCE,
    IncidentMapper,
    build_incident,
    skipped_summary,
    unwrap_incidents,
)
from ctibridge.stix.builder import StixBuilder, StixDict

log = logging.getLogger(__name__)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def convert_incidents(records: Iterator[Any], builder: StixBuilder, stats: Stats) -> Iterator[list[StixDict]]:
    mapper = IncidentMapper(os.environ.get("SENTINEL_INCIDENTS_TARGET_PRODUCT"))
    create_indicators = _flag("SENTINEL_INCIDENTS_CREATE_INDICATORS")

    def counted() -> Iterator[Any]:
        for record in records:
            stats.records += 1
            yield record

    built = 0
    for incident in read_records(counted(), mapper, "incident"):
        if incident is None:
            continue
        try:
            objects = build_incident(builder, incident, create_indicators=create_indicators).objects
        except (InputError, ValueError, TypeError) as exc:
            log.warning("skipped incident %s: %s", incident.id, exc)
            continue
        built += 1
        yield objects
    stats.skipped = stats.records - built
    if mapper.skipped:
        log.info("graph-incidents skipped: %s", skipped_summary(mapper.skipped))


register(
    Converter(
        "graph-incidents",
        "Microsoft Graph security incidents with alerts expanded (list response, array or one) to STIX",
        convert_incidents,
        unwrap=unwrap_incidents,
        default_author=SOURCE,
    )
)
