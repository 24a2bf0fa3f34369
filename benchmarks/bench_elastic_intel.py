"""Elastic Security Intel: indicators -> ECS documents (target >= 20,000/s on one core), and stream events
end to end (OpenCTI double's SSE -> real pycti -> connector -> real elasticsearch-py -> Elasticsearch double).

Documents: a feed-like mix (single IOC equalities, a few OR-compound patterns, see
tests/fixtures/opencti_indicators.py) and, apart, patterns that need the full OASIS parser (AND, FOLLOWEDBY),
which feeds rarely carry and which also get a rule. End to end is wall-clock only: the doubles run in this
process, so its CPU time is not the connector's.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from harness import Figure, measure, rate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.doubles.elastic import ElasticDouble
from tests.doubles.opencti import OpenCTIDouble
from tests.fixtures.opencti_indicators import generate_indicators, indicator

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.connectors.elastic_intel import ElasticIntelConnector
from ctibridge.siem.elastic.client import build_elasticsearch
from ctibridge.siem.elastic.indicators import IndicatorDocuments
from ctibridge.siem.elastic.intel_writer import IntelIndex

BENCHMARK = "elastic-intel"
TOKEN = "bench-token-2f7c"


def _documents(objects: list[dict], documents: IndicatorDocuments) -> int:
    now = datetime.now(UTC)
    made = 0
    for obj in objects:
        plan = documents.plan(obj, now)
        made += len(plan.documents) if plan else 0
    return made


def _parsed_patterns(count: int) -> list[dict]:
    return [
        indicator(
            f"[file:hashes.MD5 = '{number:032x}' AND file:name = 'drop{number}.exe'] FOLLOWEDBY "
            f"[ipv4-addr:value = '198.51.{number >> 8 & 255}.{number & 255}']"
        )
        for number in range(count)
    ]


def _end_to_end(count: int, batch_size: int) -> float:
    """Seconds from the connector's start until the position of the last of `count` events is saved."""
    from pycti import OpenCTIConnectorHelper

    from ctibridge.platform.opencti import OpenCTIPlatform, build_helper_config

    for name in [n for n in os.environ if n.startswith(("OPENCTI_", "CONNECTOR_"))]:
        del os.environ[name]
    with OpenCTIDouble(token=TOKEN, heartbeat_interval=1.0) as opencti, ElasticDouble() as elastic:
        connector_id = str(uuid.uuid4())
        helper = OpenCTIConnectorHelper(
            build_helper_config(
                url=opencti.url,
                token=TOKEN,
                connector_id=connector_id,
                connector_type="STREAM",
                connector_name="bench",
                queue_protocol="api",
                ssl_verify=False,
                live_stream_id="live",
                live_stream_recover_iso_date=False,
            )
        )
        platform = OpenCTIPlatform(helper, stream_retry_delay=0.5)
        settings = ElasticIntelSettings(
            url=elastic.es.url,
            api_key=elastic.api_key,
            batch_size=batch_size,
            flush_interval=0.2,
            create_rules=False,
        )
        connector = ElasticIntelConnector(
            settings, platform, IntelIndex(build_elasticsearch(settings), settings.index_name)
        )
        last = ""
        for obj in generate_indicators(count, seed=5):
            last = opencti.append_event("create", obj)
        start = time.perf_counter()
        runner = threading.Thread(target=connector.run, name="bench-elastic-intel")
        runner.start()
        opencti.wait_for(
            lambda: (opencti.state(connector_id) or {}).get("start_from") == last,
            timeout=600,
            message="every event acknowledged",
        )
        elapsed = time.perf_counter() - start
        connector.stop()
        runner.join(timeout=30)
        documents = elastic.es.doc_count(settings.index_name)
        assert documents >= count, (documents, count)
        return elapsed


def run(scale: float) -> list[Figure]:
    logging.getLogger("ctibridge").setLevel(logging.WARNING)
    figures = []
    count = max(int(100_000 * scale), 2000)
    feed = list(generate_indicators(count, seed=1))
    documents = IndicatorDocuments(opencti_url="https://opencti.example")
    _documents(feed[:1000], documents)  # warm up
    timing = measure(lambda: _documents(feed, documents))
    figures.append(rate(BENCHMARK, f"{count:,} feed indicators -> documents", count, timing, "indicators/s",
                        ">= 20,000/s (per CPU-second)"))  # fmt: skip
    figures.append(rate(BENCHMARK, f"{count:,} feed indicators -> documents", timing.result, timing,
                        "documents/s", ""))  # fmt: skip
    parsed = _parsed_patterns(max(int(5000 * scale), 200))
    timing = measure(lambda: _documents(parsed, IndicatorDocuments()))
    figures.append(rate(BENCHMARK, f"{len(parsed):,} AND/FOLLOWEDBY patterns -> documents", len(parsed),
                        timing, "indicators/s", "(full OASIS parse)"))  # fmt: skip
    events = max(int(20_000 * scale), 1000)
    seconds = _end_to_end(events, batch_size=500)
    figures.append(Figure(BENCHMARK, f"{events:,} stream events end to end (batch 500)", events / seconds,
                          "events/s", "wall clock, doubles in-process"))  # fmt: skip
    return figures
