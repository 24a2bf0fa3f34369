"""The intel write path against the Elasticsearch double: template, bulk retries, dead letters, acks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.errors import ConfigurationError, RemoteError
from ctibridge.platform.base import StreamEvent
from ctibridge.siem.elastic.client import build_elasticsearch
from ctibridge.siem.elastic.indicators import TEMPLATE_PRIORITY, IndicatorDocuments
from ctibridge.siem.elastic.intel_writer import (
    DeadLetters,
    IntelIndex,
    Op,
    Origin,
    StopRequested,
    StreamBatcher,
)
from tests.doubles.elastic import ElasticDouble
from tests.fixtures.opencti_indicators import generate_indicators, indicator

INDEX = "logs-ti_custom_opencti.indicator"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def elastic() -> Iterator[ElasticDouble]:
    with ElasticDouble() as double:
        yield double


@pytest.fixture(autouse=True)
def clean(elastic: ElasticDouble) -> Iterator[None]:
    yield
    with elastic.es.lock:
        elastic.es.indices.clear()
        elastic.es.data_streams.clear()
        for name in [n for n in elastic.es.index_templates if n.startswith("ctibridge-")]:
            del elastic.es.index_templates[name]
    elastic.es.clear_bulk_hooks()
    elastic.es.clear_faults()
    elastic.es.clear_requests()


def intel_index(
    elastic: ElasticDouble, index: str = INDEX, sleep: Sleeps | None = None, **kw: Any
) -> IntelIndex:
    settings = ElasticIntelSettings(url=elastic.es.url, api_key=elastic.api_key, index_name=index)
    return IntelIndex(
        build_elasticsearch(settings), index, sleep=sleep if sleep is not None else Sleeps(), **kw
    )


def installed(elastic: ElasticDouble, index: str = INDEX, **kw: Any) -> IntelIndex:
    target = intel_index(elastic, index, **kw)
    target.install()
    return target


def event(obj: dict[str, Any], number: int, kind: str = "create", **extra: Any) -> StreamEvent:
    return StreamEvent(id=f"1700000000000-{number}", type=kind, data=obj, **extra)


def planned(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], Origin]]:
    docs = IndicatorDocuments(opencti_url="https://opencti.example")
    out = []
    for number, obj in enumerate(objects):
        plan = docs.plan(obj, NOW)
        assert plan is not None
        out.extend((doc_id, source, Origin.of(event(obj, number))) for doc_id, source in plan.documents)
    return out


# ---------------------------------------------------------------------------- template and index


@pytest.mark.parametrize("name", [INDEX, "logs-ti_custom.opencti-default"])
def test_install_makes_a_plain_index_even_where_logs_data_streams_would_match(
    elastic: ElasticDouble, name: str
) -> None:
    target = intel_index(elastic, name)
    assert target.install() == "created"
    template = elastic.es.index_templates[target.template_name]
    assert template["priority"] == TEMPLATE_PRIORITY > 500 and "data_stream" not in template
    assert name in elastic.es.indices and name not in elastic.es.data_streams
    assert elastic.es.field_type(name, "threat.indicator.ip") == "ip"
    assert elastic.es.field_type(name, "threat.indicator.url.full") == "wildcard"
    # Overwrite and delete by _id work (a data stream would refuse both).
    [(doc_id, source, origin)] = planned([indicator("[ipv4-addr:value = '192.0.2.1']")])
    assert target.write([Op("index", doc_id, source, origin)]) == []
    assert target.write([Op("index", doc_id, {**source, "tags": ["v2"]}, origin)]) == []
    assert elastic.es.source(name, doc_id)["tags"] == ["v2"]
    assert target.write([Op("delete", doc_id, None, origin), Op("delete", "missing", None, origin)]) == []
    assert elastic.es.doc_count(name) == 0


def test_install_is_idempotent(elastic: ElasticDouble) -> None:
    target = intel_index(elastic)
    assert target.install() == "created"
    elastic.es.clear_requests()
    assert target.install() == "unchanged"
    assert target.install() == "unchanged"
    assert elastic.es.count(r"/_index_template/", "PUT") == 0
    assert elastic.es.count(rf"^/{INDEX}$", "PUT") == 0  # the index is not created twice


def test_install_refuses_an_index_that_is_already_a_data_stream(elastic: ElasticDouble) -> None:
    name = "logs-ti_custom.opencti-default"
    target = intel_index(elastic, name)
    target.es.indices.create_data_stream(name=name)  # as the built-in logs-*-* template makes it
    assert name in elastic.es.data_streams
    with pytest.raises(ConfigurationError, match="data stream"):
        target.install()


# ---------------------------------------------------------------------------- bulk failures


def test_rejected_items_are_retried_with_backoff_and_land(elastic: ElasticDouble) -> None:
    sleeps = Sleeps()
    target = installed(elastic, sleep=sleeps)
    docs = planned(list(generate_indicators(20)))
    elastic.es.fail_bulk_items(ids=[docs[3][0], docs[7][0]], status=429, times=2)
    failed = target.write([Op("index", doc_id, source, origin) for doc_id, source, origin in docs])
    assert failed == []
    assert elastic.es.doc_count(INDEX) == len(docs)
    bulks = elastic.es.requests_to(r"/_bulk$")
    assert len(bulks) == 3  # all, then the two rejected ones, twice
    assert bulks[1].body.count(b'"index"') == 2 and len(sleeps) == 2 and 0 < sleeps[0] <= sleeps[1] * 2


def test_items_that_keep_failing_are_reported_and_the_rest_lands(elastic: ElasticDouble) -> None:
    target = installed(elastic, item_attempts=3)
    docs = planned(list(generate_indicators(10)))
    elastic.es.fail_bulk_items(ids=[docs[0][0]], status=429, times=None)
    elastic.es.fail_bulk_items(ids=[docs[1][0]], status=400, times=None)
    failed = target.write([Op("index", doc_id, source, origin) for doc_id, source, origin in docs])
    assert sorted((op.doc_id, f.status) for op, f in failed) == sorted([(docs[0][0], 429), (docs[1][0], 400)])
    assert "es_rejected_execution_exception" in dict((f.op_id, f.reason) for _, f in failed)[docs[0][0]]
    assert elastic.es.doc_count(INDEX) == len(docs) - 2
    # The mapping error is not retried: only the 429 item goes round again (3 attempts).
    assert [r.body.count(b'"index"') for r in elastic.es.requests_to(r"/_bulk$")] == [len(docs), 1, 1]


def test_whole_request_429_is_retried_honouring_retry_after(elastic: ElasticDouble) -> None:
    sleeps = Sleeps()
    target = installed(elastic, sleep=sleeps)
    elastic.es.inject(429, path=r"/_bulk$", times=2, retry_after=7)
    [(doc_id, source, origin)] = planned([indicator("[ipv4-addr:value = '192.0.2.2']")])
    assert target.write([Op("index", doc_id, source, origin)]) == []
    assert sleeps == [7, 7] and elastic.es.doc_count(INDEX) == 1


# ---------------------------------------------------------------------------- stale, expired, old


def test_remove_stale_sweep_expired_and_restamp(elastic: ElasticDouble) -> None:
    target = installed(elastic)
    compound = indicator("[ipv4-addr:value = '192.0.2.3'] OR [ipv4-addr:value = '192.0.2.4']")
    soon = indicator("[ipv4-addr:value = '192.0.2.5']", valid_until="2026-11-23T00:00:00.000Z")
    docs = planned([compound, soon])
    assert target.write([Op("index", d, s, o) for d, s, o in docs]) == []
    assert target.remove_stale({compound["id"]: [compound["id"]]}) == 1
    assert set(elastic.es.docs(INDEX)) == {compound["id"], soon["id"]}

    assert target.sweep_expired(NOW) == 0
    assert target.sweep_expired(NOW + timedelta(days=1)) == 1
    assert set(elastic.es.docs(INDEX)) == {compound["id"]}

    assert target.restamp(NOW + timedelta(days=1), timedelta(days=7)) == 0
    later = NOW + timedelta(days=20)
    assert target.restamp(later, timedelta(days=7)) == 1
    assert elastic.es.source(INDEX, compound["id"])["@timestamp"] == "2026-12-12T12:00:00.000Z"
    assert target.restamp(later, timedelta(days=7)) == 0


# ---------------------------------------------------------------------------- batching and acks


class Positions(list[str]):
    def __call__(self, event_id: str) -> None:
        self.append(event_id)


def batcher_for(target: IntelIndex, tmp_path: Path, **kw: Any) -> tuple[StreamBatcher, Positions]:
    positions = Positions()
    options: dict[str, Any] = {"batch_size": 3, "dead_letters": DeadLetters(tmp_path / "dead.jsonl"), **kw}
    return StreamBatcher(target, positions, **options), positions


def feed(batcher: StreamBatcher, obj: dict[str, Any], ev: StreamEvent) -> None:
    with batcher.lock:
        batcher.begin(ev)
        plan = IndicatorDocuments().plan(obj, NOW)
        assert plan is not None
        for doc_id, source in plan.documents:
            batcher.index_document(doc_id, source, Origin.of(ev))
        batcher.end(ev)


def test_position_is_saved_only_after_the_batch_holding_the_event_landed(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    target = installed(elastic)
    batcher, positions = batcher_for(target, tmp_path)
    objects = list(generate_indicators(7, seed=3))
    events = [event(obj, n) for n, obj in enumerate(objects)]
    for obj, ev in zip(objects[:2], events[:2], strict=True):
        feed(batcher, obj, ev)
    assert positions == [] and elastic.es.doc_count(INDEX) == 0  # buffered, nothing acknowledged
    feed(batcher, objects[2], events[2])  # the batch is full: written, then acknowledged
    assert positions == [events[2].id] and elastic.es.doc_count(INDEX) >= 3
    for obj, ev in zip(objects[3:], events[3:], strict=True):
        feed(batcher, obj, ev)
    assert positions == [events[2].id, events[5].id]
    assert batcher.idle_flush(0.0) and positions[-1] == events[6].id
    assert not batcher.idle_flush(0.0)  # nothing new


def test_an_event_whose_dependencies_were_flushed_is_not_acknowledged_early(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    target = installed(elastic)
    batcher, positions = batcher_for(target, tmp_path, batch_size=2)
    first, second, third = generate_indicators(3, seed=5)
    feed(batcher, first, event(first, 1))
    dependency = event(second, 2, origin={"referer": "init-dependencies"})
    feed(batcher, second, dependency)  # batch full mid-event: written, but event 2 is not complete
    assert positions == [event(first, 1).id]
    feed(batcher, third, event(third, 2))  # the event itself, same id
    batcher.flush()
    assert positions == [event(first, 1).id, dependency.id]


def test_unreachable_elasticsearch_blocks_the_batch_until_it_answers(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    target = installed(elastic, attempts=0)
    sleeps = Sleeps()
    batcher, positions = batcher_for(target, tmp_path, sleep=sleeps)
    elastic.es.inject(503, path=r"/_bulk$", times=4)
    objects = list(generate_indicators(3, seed=9))
    for number, obj in enumerate(objects):
        feed(batcher, obj, event(obj, number))
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # waited, acknowledged nothing meanwhile
    assert positions == [event(objects[2], 2).id] and elastic.es.doc_count(INDEX) == 3


def test_stop_while_waiting_acknowledges_nothing_and_later_flushes_refuse(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    target = installed(elastic, attempts=0)
    batcher, positions = batcher_for(target, tmp_path, stopping=lambda: True)
    elastic.es.inject(503, path=r"/_bulk$", times=10)
    objects = list(generate_indicators(3, seed=11))
    with pytest.raises(StopRequested):
        for number, obj in enumerate(objects):
            feed(batcher, obj, event(obj, number))
    with pytest.raises(StopRequested):
        batcher.flush(final=True)
    assert positions == []


def test_non_retryable_request_failure_is_fatal(elastic: ElasticDouble, tmp_path: Path) -> None:
    target = installed(elastic)
    batcher, positions = batcher_for(target, tmp_path)
    elastic.es.inject(403, path=r"/_bulk$", times=1)
    objects = list(generate_indicators(3, seed=13))
    with pytest.raises(RemoteError, match="403"):
        for number, obj in enumerate(objects):
            feed(batcher, obj, event(obj, number))
    assert positions == []


def test_failing_items_go_to_the_dead_letter_file_and_the_stream_moves_on(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    target = installed(elastic, item_attempts=2)
    batcher, positions = batcher_for(target, tmp_path, batch_size=10)
    objects = list(generate_indicators(3, seed=17))
    bad = IndicatorDocuments().plan(objects[1], NOW)
    assert bad is not None
    elastic.es.fail_bulk_items(ids=bad.ids, status=429, times=None)
    for number, obj in enumerate(objects):
        feed(batcher, obj, event(obj, number))
    batcher.flush()
    assert positions == [event(objects[2], 2).id]
    [line] = (tmp_path / "dead.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["event_id"] == event(objects[1], 1).id and record["stix_id"] == objects[1]["id"]
    assert record["object"] == objects[1]
    assert record["failures"][0]["status"] == 429 and "rejected" in record["failures"][0]["reason"]
    total = sum(len(IndicatorDocuments().plan(obj, NOW).ids) for obj in objects)  # type: ignore[union-attr]
    assert elastic.es.doc_count(INDEX) == total - len(bad.ids)
    assert batcher.dead_letters.count == 1
