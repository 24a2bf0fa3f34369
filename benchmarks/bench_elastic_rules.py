"""Indicators -> Kibana rule bodies, and rule upserts through the Kibana double.

The indicator corpus reuses the pattern benchmark's generator (mostly single IOC equalities, then IN lists,
compound observations, LIKE, CIDR, MATCHES, qualifiers, FOLLOWEDBY), so the split between "covered by the
indicator-match rules", "one rule" and "untranslatable" is what an OpenCTI feed looks like. The STIX parse
cache is cleared first: each indicator is parsed once, as in the stream. Upserts go over loopback HTTP to
the Kibana double with OpenAPI validation of each body, so that figure measures the client plus the double.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_patterns import corpus
from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.patterns.lowering import lower
from ctibridge.patterns.stix import _parse_cached
from ctibridge.siem.elastic.client import build_kibana_client
from ctibridge.siem.elastic.kibana_rules import KibanaRules
from ctibridge.siem.elastic.rules import RuleBuilder
from harness import Figure, measure, rate

BENCHMARK = "elastic-rules"


def _indicators(count: int) -> list[dict[str, object]]:
    return [
        {
            "type": "indicator",
            "id": f"indicator--{uuid.UUID(int=number, version=4)}",
            "name": f"bench {number}",
            "pattern_type": "stix",
            "pattern": pattern,
            "x_opencti_score": number % 101,
            "labels": ["bench"],
        }
        for number, pattern in enumerate(corpus(count))
    ]


def run(scale: float) -> list[Figure]:
    from tests.doubles.elastic_kibana import KibanaDouble

    count = max(1, int(10_000 * scale))
    indicators = _indicators(count)
    settings = ElasticIntelSettings(url="http://localhost:9200")
    builder = RuleBuilder(settings, "https://opencti.example")
    _parse_cached.cache_clear()
    lower.cache_clear()
    timing = measure(lambda: [builder.decide(indicator) for indicator in indicators])
    outcomes = Counter(decision.outcome for decision in timing.result)
    split = "/".join(
        f"{outcomes[k]} {k}" for k in ("covered", "rule", "untranslatable", "skip") if outcomes[k]
    )
    figures = [rate(BENCHMARK, f"indicator->rule decision ({split})", count, timing, "indicators/s")]

    bodies = [d.body for d in timing.result if d.body is not None][: max(1, int(300 * scale))]
    with KibanaDouble() as kibana:
        kibana_settings = ElasticIntelSettings(
            url="http://localhost:9200", kibana_url=kibana.url, api_key=kibana.api_key
        )
        api = KibanaRules(build_kibana_client(kibana_settings), "default")
        timing = measure(lambda: [api.upsert(body) for body in bodies])
        figures.append(rate(BENCHMARK, "rule create via double (validated)", len(bodies), timing, "rules/s"))
        timing = measure(lambda: [api.upsert(body) for body in bodies])
        figures.append(rate(BENCHMARK, "rule replay (unchanged)", len(bodies), timing, "rules/s"))
        timing = measure(api.managed_rule_ids)
        figures.append(rate(BENCHMARK, "managed ids via _find", len(timing.result), timing, "rules/s"))
    return figures


if __name__ == "__main__":
    for figure in run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0):
        print(f"{figure.metric:<60} {figure.value:>12,.1f} {figure.unit}")
