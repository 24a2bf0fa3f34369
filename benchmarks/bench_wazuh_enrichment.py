"""Wazuh enrichment: an entity matching 10,000 alerts across 50 agents, hunted and mapped to STIX.

Figures: whole enrichments (hunt through the OpenSearch double + mapping) per second with the default
limit of 50 retrieved alerts and with all 10,000 retrieved (per-alert enrichment of every match), and the
mapping step alone for both. The double evaluates queries in Python, so "hunt + map" is dominated by it;
a real indexer answers from its own indices.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import Figure, measure, rate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.doubles.opensearch import OpenSearchDouble
from tests.fixtures.wazuh_alerts import generate_alerts, load_into, plant

from ctibridge.config.wazuh import WazuhOpenSearchSettings, WazuhSearchSettings
from ctibridge.siem.wazuh.enrich import WazuhEnrichmentMapper
from ctibridge.siem.wazuh.hunt import HuntResult, WazuhHunter, build_opensearch
from ctibridge.siem.wazuh.options import EnrichmentOptions, IncidentMode

IP = "45.33.32.156"
AGENTS = 50
ENTITY = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--2d1e3f4a-5b6c-5d7e-8f90-a1b2c3d4e5f6",
          "value": IP}  # fmt: skip
OPTIONS = EnrichmentOptions(
    app_url="https://wazuh.example",
    require_indicator_for_incidents=False,
    hits_abort_limit=None,
    bundle_abort_limit=None,
    incident_mode=IncidentMode.PER_SIGHTING,
)


def _enrich(hunter: WazuhHunter, mapper: WazuhEnrichmentMapper, rounds: int, matches: int) -> int:
    """What the connector does per request after inspection: hunt, then map."""
    made = 0
    inspection = mapper.inspect(ENTITY, [])
    for _ in range(rounds):
        result = hunter.hunt(ENTITY)
        assert result is not None and result.total == matches and len(result.agents) == AGENTS
        made += len(mapper.map(ENTITY, result, inspection).objects)
    return made


def _map_only(result: HuntResult, rounds: int) -> int:
    made = 0
    for _ in range(rounds):
        mapper = WazuhEnrichmentMapper(OPTIONS)  # a fresh builder: no cache carried over between rounds
        made += len(mapper.map(ENTITY, result, mapper.inspect(ENTITY, [])).objects)
    return made


def run(scale: float) -> list[Figure]:
    matches = max(int(10_000 * scale), 500)
    rounds = max(int(5 * scale), 1)
    figures = []
    with OpenSearchDouble() as indexer:
        load_into(indexer, None, plant(IP, "ipv4", matches, agents=AGENTS, seed=1))
        load_into(indexer, None, generate_alerts(max(int(5_000 * scale), 200), seed=2))
        user, password = indexer.auth
        for limit in (50, matches):
            settings = WazuhOpenSearchSettings(
                url=indexer.url,
                username=user,
                password=password,
                search_after=None,
                limit=limit,
                page_size=1000,
            )
            hunter = WazuhHunter(build_opensearch(settings), settings, WazuhSearchSettings())
            label = f"{matches:,} alerts / {AGENTS} agents, {min(limit, matches):,} retrieved"
            # Retrieving every match is minutes-scale work per enrichment: report it per minute.
            per, unit = (1, "enrichments/s") if limit < matches else (60, "enrichments/min")
            timing = measure(lambda h=hunter: _enrich(h, WazuhEnrichmentMapper(OPTIONS), rounds, matches))
            figures.append(rate("wazuh enrichment", f"hunt + map, {label}", rounds * per, timing, unit))
            result = hunter.hunt(ENTITY)
            assert result is not None
            timing = measure(lambda r=result: _map_only(r, rounds))
            objects = timing.result // rounds
            metric = f"map only, {label} ({objects:,} objects)"
            figures.append(rate("wazuh enrichment", metric, rounds * per, timing, unit))
    return figures
