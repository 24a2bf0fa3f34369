"""`ctibridge convert stix-to-rules BUNDLE`: the Kibana rule-create bodies the intel connector would deploy.

Writes a JSON array with one body per rule-worthy indicator (see `rules.RuleBuilder`), ready for
`POST /api/detection_engine/rules`. Settings come from the connector's environment variables
(`ELASTIC_SECURITY_RULE_INDEX_PATTERNS`, `_RULE_INTERVAL`, `_RULE_LOOKBACK`, `_RULES_ENABLED`,
`_INDEX_NAME`); `OPENCTI_URL`, when set, gives the references back to OpenCTI. Input: a STIX bundle, a
JSON array of objects, or NDJSON with one object per line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from ctibridge.config.base import describe_errors
from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.convert import Converter, Stats, register
from ctibridge.errors import ConfigurationError
from ctibridge.siem.elastic.rules import RuleBuilder
from ctibridge.stix.builder import StixBuilder

OFFLINE_URL = "http://localhost:9200"  # never contacted: rules name index patterns, not a cluster


def offline_settings() -> ElasticIntelSettings:
    """The intel settings from the environment; the Elasticsearch URL is not needed offline."""
    given = {} if os.environ.get("ELASTIC_SECURITY_URL") else {"url": OFFLINE_URL}
    try:
        return ElasticIntelSettings(**given)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(ElasticIntelSettings, exc)) from None


def unwrap_stix(document: Any) -> Iterator[Any]:
    """A bundle's objects, the items of a JSON array, or the document itself."""
    if isinstance(document, dict) and document.get("type") == "bundle":
        yield from document.get("objects") or []
    elif isinstance(document, list):
        yield from document
    else:
        yield document


def convert_rules(
    records: Iterator[Any], builder: StixBuilder, stats: Stats
) -> Iterable[list[dict[str, Any]]]:
    rules = RuleBuilder(offline_settings(), os.environ.get("OPENCTI_URL") or None)
    for record in records:
        stats.records += 1
        body = rules.rule_for(record) if isinstance(record, dict) else None
        if body is None:
            stats.skipped += 1
            continue
        yield [body]


register(
    Converter(
        "stix-to-rules",
        "STIX indicators (bundle, JSON array or NDJSON) to Kibana detection rule bodies (JSON array)",
        convert_rules,
        unwrap=unwrap_stix,
        output="json",
        default_author="OpenCTI",
    )
)
