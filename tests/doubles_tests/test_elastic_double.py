"""The Elasticsearch + Kibana doubles and the alert fixtures, checked on their own with the real clients.

These tests pin the vendor contract the connectors (issues 4 and 5) will be tested against: if a
double drifts from Elasticsearch/Kibana behaviour, a connector test could pass against it and fail in
production.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

import httpx  # noqa: E402
from elasticsearch import (  # noqa: E402
    ApiError,
    AuthenticationException,
    BadRequestError,
    ConflictError,
    Elasticsearch,
    NotFoundError,
)
from elasticsearch import ConnectionError as EsConnectionError  # noqa: E402

from tests.doubles.elastic import DEFAULT_SPEC_PATH, ElasticDouble, ElasticsearchDouble, KibanaSpec  # noqa: E402
from tests.doubles.elastic_query import resolve_path  # noqa: E402
from tests.fixtures.elastic_alerts import (  # noqa: E402
    RULES,
    alert_id,
    alerts_backing_index,
    generate_alerts,
    generate_cases,
    load_cases_into,
    load_into,
    main,
    rule_bodies,
)
from tests.support.shared import shared_file  # noqa: E402

ECS_SPEC = shared_file("specs/ecs/ecs_flat-v9.4.0.yml")
EXAMPLE = ROOT / "examples" / "elastic-alerts.ndjson"
XSRF = {"kbn-xsrf": "true"}
needs_kibana_spec = pytest.mark.skipif(
    not DEFAULT_SPEC_PATH.is_file(), reason=f"Kibana OpenAPI spec not present at {DEFAULT_SPEC_PATH}"
)


@pytest.fixture
def elastic() -> Iterator[ElasticDouble]:
    with ElasticDouble(basic_users={"elastic": "changeme"}) as double:
        yield double


@pytest.fixture
def es(elastic: ElasticDouble) -> Elasticsearch:
    client = Elasticsearch(elastic.es.url, api_key=elastic.api_key, max_retries=0, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def kb(elastic: ElasticDouble) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=elastic.kibana.url, headers=elastic.kibana.auth_header, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[ElasticDouble, Elasticsearch, list[dict[str, Any]]]]:
    """25,000 generated alerts behind the Kibana alias (loaded directly, not over HTTP)."""
    docs = list(generate_alerts(25_000, seed=11))
    with ElasticDouble() as double:
        load_into(double, docs=docs, clone=False)
        client = Elasticsearch(double.es.url, api_key=double.api_key, max_retries=0, request_timeout=60)
        yield double, client, docs
        client.close()


# --------------------------------------------------------------------------------------------------
# Elasticsearch: protocol, auth


def test_info_carries_product_header_and_negotiated_media_type(
    elastic: ElasticDouble, es: Elasticsearch
) -> None:
    info = es.info()
    assert info["version"]["number"].startswith("9.")
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert info.meta.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    sent = elastic.es.requests_to(r"^/$", "GET")[-1]
    assert "compatible-with=9" in sent.header("accept")

    plain = httpx.get(elastic.es.url + "/", headers=elastic.es.auth_header)
    assert plain.headers["x-elastic-product"] == "Elasticsearch"
    assert plain.headers["content-type"] == "application/json"
    assert es.ping()


def test_auth_is_required_and_answers_like_elasticsearch(elastic: ElasticDouble) -> None:
    anonymous = httpx.get(elastic.es.url + "/_search")
    assert anonymous.status_code == 401
    assert anonymous.headers["x-elastic-product"] == "Elasticsearch"
    assert "ApiKey" in anonymous.headers["www-authenticate"]
    error = anonymous.json()["error"]
    assert error["type"] == "security_exception"
    assert error["reason"] == "missing authentication credentials for REST request [/_search]"

    with pytest.raises(AuthenticationException) as bad_key:
        Elasticsearch(elastic.es.url, api_key=("nobody", "wrong"), max_retries=0).info()
    assert bad_key.value.status_code == 401
    assert not Elasticsearch(elastic.es.url, api_key="bad", max_retries=0).ping()

    assert Elasticsearch(elastic.es.url, basic_auth=("elastic", "changeme")).info()["tagline"]
    with pytest.raises(AuthenticationException):
        Elasticsearch(elastic.es.url, basic_auth=("elastic", "nope"), max_retries=0).info()


def test_media_type_rules(elastic: ElasticDouble) -> None:
    headers = {
        **elastic.es.auth_header,
        "Accept": "application/vnd.elasticsearch+json; compatible-with=7",
        "Content-Type": "application/vnd.elasticsearch+json; compatible-with=7",
    }
    wrong_version = httpx.post(elastic.es.url + "/_search", headers=headers, content=b"{}")
    assert wrong_version.status_code == 400
    assert wrong_version.json()["error"]["type"] == "media_type_header_exception"

    text = httpx.post(
        elastic.es.url + "/_search",
        headers={**elastic.es.auth_header, "Content-Type": "text/plain"},
        content=b"{}",
    )
    assert text.status_code == 406
    assert text.json()["error"] == "Content-Type header [text/plain] is not supported"

    unknown = httpx.get(elastic.es.url + "/_nope/_nothing/here", headers=elastic.es.auth_header)
    assert unknown.status_code == 400
    assert "no handler found for uri" in unknown.json()["error"]
    wrong_method = httpx.put(elastic.es.url + "/_search", headers=elastic.es.auth_header)
    assert wrong_method.status_code == 405


# --------------------------------------------------------------------------------------------------
# Point in time and search_after


def _page_with_pit(
    client: Elasticsearch, pit: str, sort: list[Any], size: int, after: list[Any] | None = None
) -> tuple[list[dict[str, Any]], str]:
    kwargs: dict[str, Any] = {
        "pit": {"id": pit, "keep_alive": "1m"},
        "sort": sort,
        "size": size,
        "source": ["kibana.alert.uuid", "@timestamp"],
        "track_total_hits": False,
    }
    if after is not None:
        kwargs["search_after"] = after
    response = client.search(**kwargs)
    return response["hits"]["hits"], response["pit_id"]


def test_pit_search_after_pages_25k_with_timestamp_ties(big: Any) -> None:
    double, client, docs = big
    timestamps = [d["@timestamp"] for d in docs]
    assert len(set(timestamps)) < len(timestamps) / 3, "fixture must produce many timestamp ties"

    pit = client.open_point_in_time(index=".alerts-security.alerts-*", keep_alive="1m")["id"]
    late = next(generate_alerts(1, seed=999))
    double.es.load(".alerts-security.alerts-default", [late], id_field="kibana.alert.uuid")
    seen: list[str] = []
    previous: list[Any] | None = None
    after = None
    pages = 0
    while True:
        hits, pit = _page_with_pit(client, pit, [{"@timestamp": "asc"}], 1000, after)
        if not hits:
            break
        pages += 1
        for hit in hits:
            assert len(hit["sort"]) == 2, "a PIT search gets the implicit _shard_doc tie-breaker"
            assert hit["_index"] == alerts_backing_index()
            if previous is not None:
                assert hit["sort"] >= previous
            previous = hit["sort"]
            seen.append(hit["_id"])
        after = hits[-1]["sort"]
    assert pages == 25
    assert len(seen) == len(set(seen)) == 25_000
    assert set(seen) == {alert_id(d) for d in docs}
    assert alert_id(late) not in seen, "documents indexed after opening the PIT are invisible through it"
    assert client.close_point_in_time(id=pit)["succeeded"]
    assert double.es.open_pits == 0
    client.delete(
        index=".alerts-security.alerts-default", id=alert_id(late)
    )  # leave the shared index as found


def test_pit_with_explicit_tiebreaker_resumes_from_a_checkpoint(big: Any) -> None:
    _, client, docs = big
    sort = [{"@timestamp": "desc"}, {"kibana.alert.uuid": "asc"}]
    expected = sorted(
        docs, key=lambda d: (-dt.datetime.fromisoformat(d["@timestamp"]).timestamp(), d["kibana.alert.uuid"])
    )
    pit = client.open_point_in_time(index=".alerts-security.alerts-default", keep_alive="2m")["id"]
    first, pit = _page_with_pit(client, pit, sort, 7000)
    assert len(first[0]["sort"]) == 3
    checkpoint = first[-1]["sort"][:2]  # what a connector persists: time + uuid, not the shard doc
    client.close_point_in_time(id=pit)

    pit = client.open_point_in_time(index=".alerts-security.alerts-default", keep_alive="2m")["id"]
    rest: list[str] = []
    after: list[Any] | None = checkpoint
    while True:
        hits, pit = _page_with_pit(client, pit, sort, 5000, after)
        if not hits:
            break
        assert len(hits[0]["sort"]) == 2, "with a 2-value search_after no implicit tie-breaker is added"
        rest += [h["_id"] for h in hits]
        after = hits[-1]["sort"]
    client.close_point_in_time(id=pit)
    assert [h["_id"] for h in first] + rest == [alert_id(d) for d in expected]
    assert isinstance(first[0]["sort"][0], int), "date sort values are epoch millis"


def test_result_window_and_total_hits(big: Any) -> None:
    _, client, _ = big
    ok = client.search(index=".alerts-security.alerts-*", from_=9990, size=10, source=False)
    assert len(ok["hits"]["hits"]) == 10
    assert ok["hits"]["total"] == {"value": 10_000, "relation": "gte"}
    with pytest.raises(BadRequestError) as too_far:
        client.search(index=".alerts-security.alerts-*", from_=9995, size=10)
    body = too_far.value.body["error"]
    assert body["root_cause"][0]["type"] == "illegal_argument_exception"
    assert "Result window is too large" in body["root_cause"][0]["reason"]
    with pytest.raises(BadRequestError):
        client.search(index=".alerts-security.alerts-*", size=10_001)
    exact = client.search(index=".alerts-security.alerts-*", size=0, track_total_hits=True)
    assert exact["hits"]["total"] == {"value": 25_000, "relation": "eq"}
    assert (
        "total"
        not in client.search(index=".alerts-security.alerts-*", size=0, track_total_hits=False)["hits"]
    )
    assert client.count(index=".alerts-security.alerts-default")["count"] == 25_000


def test_pit_contract_errors(elastic: ElasticDouble, es: Elasticsearch) -> None:
    es.index(index="alerts", id="1", document={"@timestamp": "2025-01-01T00:00:00Z", "n": 1})
    with pytest.raises(BadRequestError) as no_keep_alive:
        es.perform_request("POST", "/alerts/_pit", headers={"accept": "application/json"})
    assert "[keep_alive] is not specified" in str(no_keep_alive.value.body)

    pit = es.open_point_in_time(index="alerts", keep_alive="1m")["id"]
    with pytest.raises(BadRequestError) as with_index:
        es.search(index="alerts", pit={"id": pit})
    assert with_index.value.body["error"]["type"] == "action_request_validation_exception"
    assert "[indices] cannot be used with point in time" in with_index.value.body["error"]["reason"]
    with pytest.raises(BadRequestError, match="routing"):
        es.search(pit={"id": pit}, routing="x")
    with pytest.raises(BadRequestError, match="preference"):
        es.search(pit={"id": pit}, preference="_local")
    with pytest.raises(BadRequestError) as shard_doc:
        es.search(index="alerts", sort=["_shard_doc"])
    assert "cannot be used without [point in time]" in shard_doc.value.body["error"]["reason"]
    with pytest.raises(BadRequestError, match="search_after"):
        es.search(pit={"id": pit}, sort=[{"@timestamp": "asc"}], search_after=[1, 2, 3, 4])
    with pytest.raises(BadRequestError) as too_long:
        es.open_point_in_time(index="alerts", keep_alive="2d")
    assert "Keep alive for request (2d) is too large" in str(too_long.value.body)

    elastic.es.advance_clock(61)
    with pytest.raises(NotFoundError) as expired:
        es.search(pit={"id": pit, "keep_alive": "1m"})
    assert expired.value.body["error"]["root_cause"][0]["type"] == "search_context_missing_exception"
    assert es.options(ignore_status=404).close_point_in_time(id=pit)["num_freed"] == 0


def test_pit_is_a_snapshot_and_keep_alive_extends(elastic: ElasticDouble, es: Elasticsearch) -> None:
    for i in range(3):
        es.index(index="events", id=str(i), document={"@timestamp": f"2025-01-0{i + 1}T00:00:00Z", "v": i})
    pit = es.open_point_in_time(index="events", keep_alive="30s")["id"]
    es.index(index="events", id="3", document={"@timestamp": "2025-01-09T00:00:00Z", "v": 3})
    es.delete(index="events", id="0")
    es.index(index="events", id="1", document={"@timestamp": "2025-01-02T00:00:00Z", "v": 100})
    snap = es.search(pit={"id": pit, "keep_alive": "30s"}, sort=["@timestamp"], size=10)
    assert [(h["_id"], h["_source"]["v"]) for h in snap["hits"]["hits"]] == [("0", 0), ("1", 1), ("2", 2)]
    live = es.search(index="events", sort=["@timestamp"], size=10)
    assert [h["_id"] for h in live["hits"]["hits"]] == ["1", "2", "3"]
    elastic.es.advance_clock(25)
    es.search(pit={"id": pit, "keep_alive": "30s"}, size=1)  # extends the keep-alive
    elastic.es.advance_clock(25)
    assert es.search(pit={"id": pit}, size=1)["pit_id"] == pit
    es.close_point_in_time(id=pit)


def test_search_after_without_pit_skips_documents_equal_on_every_key(es: Elasticsearch) -> None:
    for i in range(6):
        es.index(
            index="ties",
            id=f"d{i}",
            document={
                "@timestamp": "2025-01-01T00:00:00Z" if i < 4 else "2025-01-02T00:00:00Z",
                "k": f"k{i}",
            },
        )
    first = es.search(index="ties", sort=[{"@timestamp": "asc"}], size=2)["hits"]["hits"]
    after = es.search(index="ties", sort=[{"@timestamp": "asc"}], size=10, search_after=first[-1]["sort"])
    assert [h["_id"] for h in after["hits"]["hits"]] == ["d4", "d5"], (
        "ties on the only key are skipped (data loss)"
    )
    with_tiebreak = es.search(index="ties", sort=[{"@timestamp": "asc"}, {"k.keyword": "asc"}], size=2)
    rest = es.search(
        index="ties",
        sort=[{"@timestamp": "asc"}, {"k.keyword": "asc"}],
        size=10,
        search_after=with_tiebreak["hits"]["hits"][-1]["sort"],
    )
    assert [h["_id"] for h in rest["hits"]["hits"]] == ["d2", "d3", "d4", "d5"]
    with pytest.raises(BadRequestError, match="from"):
        es.search(index="ties", sort=["@timestamp"], from_=5, search_after=first[-1]["sort"])
    with pytest.raises(BadRequestError) as text_sort:
        es.search(index="ties", sort=["k"])
    assert "Text fields are not optimised" in str(text_sort.value.body)
    with pytest.raises(BadRequestError, match="No mapping found"):
        es.search(index="ties", sort=["missing.field"])
    assert es.search(index="ties", sort=[{"missing.field": {"unmapped_type": "long"}}])["hits"]["hits"]


# --------------------------------------------------------------------------------------------------
# Query evaluation

QUERY_DOCS: dict[str, dict[str, Any]] = {
    "a": {
        "@timestamp": "2025-03-01T10:00:00.000Z",
        "kibana.alert.workflow_status": "open",
        "kibana.alert.rule.tags": ["OpenCTI", "Malware"],
        "kibana.alert.risk_score": 73,
        "host": {"name": "wks-01", "ip": ["10.0.0.5", "2001:db8::5"]},
        "event.category": ["process"],
    },
    "b": {
        "@timestamp": "2025-03-01T11:00:00.000Z",
        "kibana.alert.workflow_status": "closed",
        "kibana.alert.rule.tags": ["Network"],
        "kibana.alert.risk_score": 21,
        "host.name": "srv-02",
        "host.ip": "10.0.1.9",
        "source": {"ip": "203.0.113.7"},
    },
    "c": {
        "@timestamp": 1740830400000,
        "kibana.alert.workflow_status": "acknowledged",
        "kibana.alert.rule.tags": [],
        "kibana.alert.risk_score": 47.5,
        "host": [{"name": "wks-03", "ip": "10.0.2.1"}],
        "user": {"name": "Alice", "domain": "CORP"},
    },
}
QUERY_MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "kibana.alert.workflow_status": {"type": "keyword"},
        "kibana.alert.rule.tags": {"type": "keyword"},
        "kibana.alert.risk_score": {"type": "float"},
        "host": {"properties": {"name": {"type": "keyword"}, "ip": {"type": "ip"}}},
        "source": {"properties": {"ip": {"type": "ip"}}},
        "user": {"properties": {"name": {"type": "keyword"}, "domain": {"type": "keyword"}}},
        "event": {"properties": {"category": {"type": "keyword"}}},
    }
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"match_all": {}}, {"a", "b", "c"}),
        ({"term": {"kibana.alert.workflow_status": "open"}}, {"a"}),
        ({"terms": {"kibana.alert.workflow_status": ["open", "acknowledged"]}}, {"a", "c"}),
        ({"term": {"kibana.alert.rule.tags": "OpenCTI"}}, {"a"}),
        ({"term": {"host.name": "srv-02"}}, {"b"}),
        ({"term": {"host.name": "wks-03"}}, {"c"}),
        ({"term": {"host.ip": "2001:db8::5"}}, {"a"}),
        ({"term": {"host.ip": "10.0.0.0/16"}}, {"a", "b", "c"}),
        ({"term": {"user.name": {"value": "alice", "case_insensitive": True}}}, {"c"}),
        ({"range": {"@timestamp": {"gte": "2025-03-01T10:30:00Z"}}}, {"b", "c"}),
        ({"range": {"@timestamp": {"lt": "2025-03-01T11:00:00Z"}}}, {"a"}),
        ({"range": {"@timestamp": {"gt": 1740823200000, "lte": "2025-03-01T12:00:00Z"}}}, {"b", "c"}),
        (
            {
                "range": {
                    "@timestamp": {
                        "gte": "2025-03-01",
                        "lt": "2025-03-01||+1d",
                        "format": "strict_date_optional_time",
                    }
                }
            },
            {"a", "b", "c"},
        ),
        ({"range": {"@timestamp": {"gte": "now-1000d/d"}}}, {"a", "b", "c"}),
        ({"range": {"kibana.alert.risk_score": {"gte": 47, "lt": 73}}}, {"c"}),
        ({"exists": {"field": "source.ip"}}, {"b"}),
        ({"exists": {"field": "user"}}, {"c"}),
        ({"exists": {"field": "not.mapped"}}, set()),
        ({"ids": {"values": ["a", "c", "zz"]}}, {"a", "c"}),
        ({"match": {"host.name": "wks-01"}}, {"a"}),
        ({"prefix": {"host.name": "wks"}}, {"a", "c"}),
        ({"wildcard": {"host.name": {"value": "*-0?"}}}, {"a", "b", "c"}),
        (
            {
                "bool": {
                    "filter": [{"terms": {"kibana.alert.workflow_status": ["open", "closed"]}}],
                    "must_not": [{"term": {"host.name": "srv-02"}}],
                }
            },
            {"a"},
        ),
        (
            {"bool": {"should": [{"term": {"host.name": "wks-01"}}, {"term": {"host.name": "srv-02"}}]}},
            {"a", "b"},
        ),
        (
            {
                "bool": {
                    "should": [
                        {"term": {"host.name": "wks-01"}},
                        {"exists": {"field": "host.ip"}},
                        {"term": {"kibana.alert.rule.tags": "OpenCTI"}},
                    ],
                    "minimum_should_match": 2,
                }
            },
            {"a"},
        ),
        (
            {
                "bool": {
                    "filter": {"range": {"kibana.alert.risk_score": {"gt": 0}}},
                    "should": [{"term": {"host.name": "none"}}],
                }
            },
            {"a", "b", "c"},
        ),
        (
            {
                "bool": {
                    "must": [
                        {
                            "bool": {
                                "should": [
                                    {"term": {"event.category": "process"}},
                                    {"term": {"user.domain": "CORP"}},
                                ]
                            }
                        }
                    ]
                }
            },
            {"a", "c"},
        ),
    ],
)
def test_query_evaluation_over_flat_nested_and_array_fields(
    es: Elasticsearch, query: dict[str, Any], expected: set[str]
) -> None:
    es.indices.create(index="q", mappings=QUERY_MAPPINGS)
    for doc_id, doc in QUERY_DOCS.items():
        es.index(index="q", id=doc_id, document=doc)
    hits = es.search(index="q", query=query, size=10)["hits"]["hits"]
    assert {h["_id"] for h in hits} == expected


def test_unknown_and_unsupported_queries_are_refused(es: Elasticsearch) -> None:
    es.index(index="q2", id="1", document={"a": "x"})
    with pytest.raises(BadRequestError, match="unknown query"):
        es.search(index="q2", query={"no_such_query": {}})
    with pytest.raises(BadRequestError, match="double_unsupported_exception"):
        es.search(index="q2", query={"query_string": {"query": "a:x"}})
    with pytest.raises(BadRequestError, match="double_unsupported_exception"):
        es.search(index="q2", aggs={"t": {"terms": {"field": "a.keyword"}}})
    with pytest.raises(NotFoundError):
        es.search(index="missing-index")
    assert es.search(index="missing-*")["hits"]["hits"] == []
    es.index(index="q3", id="2", document={"a": "y"})
    assert {h["_id"] for h in es.search(index="q2,q3,missing-*")["hits"]["hits"]} == {"1", "2"}
    assert {h["_id"] for h in es.search(index="q*,-q3")["hits"]["hits"]} == {"1"}
    with pytest.raises(NotFoundError):
        es.search(index="q2,missing-index")


def test_sort_missing_values_formats_and_source_filtering(es: Elasticsearch) -> None:
    es.indices.create(index="s", mappings={"properties": {"t": {"type": "date"}, "k": {"type": "keyword"}}})
    es.index(index="s", id="1", document={"t": "2025-01-01T00:00:00Z", "k": "b", "nested": {"x": 1, "y": 2}})
    es.index(index="s", id="2", document={"k": "a"})
    es.index(index="s", id="3", document={"t": "2025-01-02T00:00:00Z"})
    asc = es.search(index="s", sort=[{"t": "asc"}])["hits"]["hits"]
    assert [h["_id"] for h in asc] == ["1", "3", "2"]
    assert asc[-1]["sort"] == [2**63 - 1]
    desc = es.search(index="s", sort=[{"t": "desc"}])["hits"]["hits"]
    assert [h["_id"] for h in desc] == ["3", "1", "2"]
    assert desc[-1]["sort"] == [-(2**63)]
    kw = es.search(index="s", sort=[{"k": {"order": "desc", "missing": "_first"}}])["hits"]["hits"]
    assert [(h["_id"], h["sort"]) for h in kw] == [("3", [None]), ("1", ["b"]), ("2", ["a"])]
    formatted = es.search(
        index="s", sort=[{"t": {"order": "asc", "format": "strict_date_optional_time_nanos"}}]
    )
    assert formatted["hits"]["hits"][0]["sort"] == ["2025-01-01T00:00:00.000000000Z"]
    filtered = es.search(index="s", query={"ids": {"values": ["1"]}}, source_includes=["nested.x", "k"])
    assert filtered["hits"]["hits"][0]["_source"] == {"k": "b", "nested": {"x": 1}}
    assert "_source" not in es.search(index="s", source=False)["hits"]["hits"][0]


# --------------------------------------------------------------------------------------------------
# Writes, bulk, templates, data streams


def test_bulk_answers_per_item_with_injected_and_real_failures(
    elastic: ElasticDouble, es: Elasticsearch
) -> None:
    es.indices.create(
        index="intel",
        mappings={"properties": {"threat.indicator.ip": {"type": "ip"}, "score": {"type": "long"}}},
    )
    es.index(index="intel", id="existing", document={"score": 1})
    elastic.es.fail_bulk_items(positions=[1], status=429)
    operations: list[dict[str, Any]] = [
        {"index": {"_index": "intel", "_id": "ok-1"}},
        {"threat": {"indicator": {"ip": "198.51.100.7"}}},
        {"index": {"_index": "intel", "_id": "throttled"}},
        {"score": 2},
        {"index": {"_index": "intel", "_id": "cidr"}},
        {"threat.indicator.ip": "10.0.0.0/8"},
        {"create": {"_index": "intel", "_id": "existing"}},
        {"score": 3},
        {"update": {"_index": "intel", "_id": "absent"}},
        {"doc": {"score": 4}},
        {"update": {"_index": "intel", "_id": "upserted"}},
        {"doc": {"score": 5}, "doc_as_upsert": True},
        {"delete": {"_index": "intel", "_id": "never-there"}},
    ]
    result = es.bulk(operations=operations)
    assert result["errors"] is True
    statuses = [next(iter(item.values()))["status"] for item in result["items"]]
    assert statuses == [201, 429, 400, 409, 404, 201, 404]
    items = [next(iter(item.values())) for item in result["items"]]
    assert items[1]["error"]["type"] == "es_rejected_execution_exception"
    assert items[2]["error"]["type"] == "document_parsing_exception"
    assert "is not an IP string literal" in items[2]["error"]["caused_by"]["reason"]
    assert items[3]["error"]["type"] == "version_conflict_engine_exception"
    assert items[4]["error"]["type"] == "document_missing_exception"
    assert items[6]["result"] == "not_found" and "error" not in items[6]
    assert set(elastic.es.docs("intel")) == {"existing", "ok-1", "upserted"}

    retry = es.bulk(operations=operations[2:4])  # the hook fired once: the retry goes through
    assert retry["errors"] is False
    elastic.es.fail_bulk_items(ids=["ok-1"], status=400, times=None)
    again = es.bulk(operations=operations[:2])
    assert next(iter(again["items"][0].values()))["error"]["type"] == "document_parsing_exception"

    bare = httpx.post(
        elastic.es.url + "/_bulk",
        headers={**elastic.es.auth_header, "Content-Type": "application/x-ndjson"},
        content=b'{"index":{"_index":"intel"}}\n{"score":1}',
    )
    assert bare.status_code == 400
    assert "must be terminated by a newline" in bare.json()["error"]["reason"]
    logged = elastic.es.requests_to(r"/_bulk$")[0]
    assert logged.json[0] == {"index": {"_index": "intel", "_id": "ok-1"}}


def test_documents_crud_mget_count_and_delete_by_query(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError, match="must be lowercase"):
        es.index(index="Bad-Name", document={"a": 1})
    assert es.index(index="docs", id="1", document={"v": 1, "tag": "x"})["result"] == "created"
    assert es.index(index="docs", id="1", document={"v": 2, "tag": "x"})["result"] == "updated"
    with pytest.raises(ConflictError):
        es.create(index="docs", id="1", document={"v": 3})
    assert es.get(index="docs", id="1")["_source"] == {"v": 2, "tag": "x"}
    assert es.exists(index="docs", id="1") and not es.exists(index="docs", id="2")
    assert es.update(index="docs", id="1", doc={"v": 2})["result"] == "noop"
    es.update(index="docs", id="2", doc={"v": 9, "tag": "y"}, doc_as_upsert=True)
    got = es.mget(index="docs", ids=["1", "2", "3"])["docs"]
    assert [d["found"] for d in got] == [True, True, False]
    assert es.count(index="docs", query={"term": {"tag.keyword": "y"}})["count"] == 1
    deleted = es.delete_by_query(index="docs", query={"range": {"v": {"gte": 5}}}, refresh=True)
    assert deleted["deleted"] == 1
    es.indices.refresh(index="docs")
    assert es.delete(index="docs", id="1")["result"] == "deleted"
    with pytest.raises(NotFoundError):
        es.delete(index="docs", id="1")
    with pytest.raises(NotFoundError):
        es.get(index="nowhere", id="1")


def test_index_templates_and_builtin_data_streams(es: Elasticsearch) -> None:
    es.indices.put_index_template(
        name="ti-opencti",
        index_patterns=["logs-ti_custom_opencti.*"],
        priority=600,
        template={"mappings": {"properties": {"threat.indicator.ip": {"type": "ip"}}}},
    )
    assert es.indices.exists_index_template(name="ti-opencti")
    got = es.indices.get_index_template(name="ti-opencti")["index_templates"][0]
    assert got["index_template"]["priority"] == 600
    with pytest.raises(BadRequestError, match="same priority"):
        es.indices.put_index_template(name="clash", index_patterns=["logs-ti_custom_opencti.*"], priority=600)

    # priority 600 beats the built-in logs-*-* (100): a plain index, overwrite by _id works
    name = "logs-ti_custom_opencti.indicator-default"
    es.index(index=name, id="indicator--1", document={"threat.indicator.ip": "192.0.2.1"})
    es.index(index=name, id="indicator--1", document={"threat.indicator.ip": "192.0.2.2"})
    assert es.get(index=name, id="indicator--1")["_version"] == 2
    with pytest.raises(BadRequestError) as cidr:
        es.index(index=name, id="indicator--2", document={"threat.indicator.ip": "10.0.0.0/8"})
    assert cidr.value.body["error"]["type"] == "document_parsing_exception"

    # without it the name becomes a data stream: append-only
    stream = "logs-ti_other.indicator-default"
    with pytest.raises(BadRequestError, match="op_type of create"):
        es.index(index=stream, id="x", document={"@timestamp": "2025-03-01T00:00:00Z"})
    es.create(index=stream, id="x", document={"@timestamp": "2025-03-01T00:00:00Z"})
    with pytest.raises(ConflictError):
        es.create(index=stream, id="x", document={"@timestamp": "2025-03-01T00:00:00Z"})
    with pytest.raises(BadRequestError, match="timestamp"):
        es.create(index=stream, id="y", document={"a": 1})
    with pytest.raises(BadRequestError, match="op_type of create"):
        es.delete(index=stream, id="x")
    hit = es.search(index=stream)["hits"]["hits"][0]
    assert hit["_index"].startswith(f".ds-{stream}-")
    assert es.indices.get_data_stream(name=stream)["data_streams"][0]["template"] == "logs"
    es.indices.delete_index_template(name="ti-opencti")
    with pytest.raises(NotFoundError):
        es.indices.get_index_template(name="ti-opencti")


# --------------------------------------------------------------------------------------------------
# Faults and the request log


def test_429_with_retry_after_reaches_the_caller_and_default_retries(
    elastic: ElasticDouble, es: Elasticsearch
) -> None:
    es.index(index="f", id="1", document={"a": 1})
    elastic.es.clear_requests()
    elastic.es.inject(429, path=r"/_search$", method="POST", times=2, retry_after=1)
    with pytest.raises(ApiError) as limited:
        es.search(index="f")
    assert limited.value.status_code == 429
    assert limited.value.meta.headers["retry-after"] == "1"
    assert limited.value.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert limited.value.body["error"]["type"] == "es_rejected_execution_exception"

    retrying = Elasticsearch(elastic.es.url, api_key=elastic.api_key)  # client default: 3 retries on 429/5xx
    assert retrying.search(index="f")["hits"]["total"]["value"] == 1
    searches = elastic.es.requests_to(r"/_search$", "POST")
    assert [r.status for r in searches] == [429, 429, 200]
    assert all(r.fault for r in searches[:2])

    elastic.es.inject(503, path=r"/_search$", times=1)
    with pytest.raises(ApiError) as unavailable:
        es.search(index="f")
    assert unavailable.value.status_code == 503
    elastic.es.inject(path=r"/_search$", close_connection=True)
    with pytest.raises(EsConnectionError):
        es.search(index="f")
    assert es.search(index="f")["hits"]["hits"]
    assert elastic.es.count(r"/_search$") == 6


# --------------------------------------------------------------------------------------------------
# Kibana


def test_kibana_auth_xsrf_and_api_version(elastic: ElasticDouble, kb: httpx.Client) -> None:
    assert httpx.get(elastic.kibana.url + "/api/status").status_code == 401
    missing = kb.post("/api/cases", json={})
    assert missing.status_code == 400
    assert missing.json() == {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Request must contain a kbn-xsrf header.",
    }
    for method in ("PUT", "PATCH", "DELETE"):
        assert kb.request(method, "/api/detection_engine/rules").status_code == 400
    assert kb.get("/api/cases/_find").status_code == 200
    assert kb.get("/api/status").json()["version"]["number"].startswith("9.")
    assert (
        kb.post("/api/detection_engine/rules", json={}, headers={"kbn-version": "9.1.5"}).status_code == 400
    )
    bad_version = kb.get("/api/detection_engine/rules/_find", headers={"elastic-api-version": "2099-01-01"})
    assert bad_version.status_code == 400
    assert kb.get(
        "/api/detection_engine/rules/_find", headers={"elastic-api-version": "2023-10-31"}
    ).is_success
    basic = httpx.get(elastic.kibana.url + "/api/status", auth=("elastic", "changeme"))
    assert basic.status_code == 200


def test_kibana_spaces_keep_data_apart(elastic: ElasticDouble, kb: httpx.Client) -> None:
    elastic.kibana.add_space("soc")
    case = {
        "title": "In SOC space",
        "description": "d",
        "owner": "securitySolution",
        "tags": [],
        "connector": {"id": "none", "name": "none", "type": ".none", "fields": None},
        "settings": {"syncAlerts": True},
    }
    created = kb.post("/s/soc/api/cases", json=case, headers=XSRF)
    assert created.status_code == 200
    assert kb.get("/s/soc/api/cases/_find").json()["total"] == 1
    assert kb.get("/api/cases/_find").json()["total"] == 0
    assert kb.get(f"/api/cases/{created.json()['id']}").status_code == 404
    assert kb.get("/s/nowhere/api/cases/_find").status_code == 404
    rule = rule_bodies()[0]
    assert kb.post("/s/soc/api/detection_engine/rules", json=rule, headers=XSRF).status_code == 200
    assert kb.post("/api/detection_engine/rules", json=rule, headers=XSRF).status_code == 200, (
        "rule_id per space"
    )
    assert len(elastic.kibana.rules("soc")) == len(elastic.kibana.rules("default")) == 1


def test_cases_find_pages_sorts_and_filters(elastic: ElasticDouble, kb: httpx.Client) -> None:
    cases = generate_cases(45, seed=3)
    load_cases_into(elastic, cases)
    seen: list[str] = []
    stamps: list[str | None] = []
    page = 1
    while True:
        body = kb.get(
            "/api/cases/_find",
            params={
                "owner": "securitySolution",
                "sortField": "updatedAt",
                "sortOrder": "desc",
                "page": page,
                "perPage": 20,
            },
        ).json()
        assert body["per_page"] == 20 and body["total"] == 45
        if not body["cases"]:
            break
        seen += [c["id"] for c in body["cases"]]
        stamps += [c["updated_at"] for c in body["cases"]]
        assert all(c["comments"] == [] for c in body["cases"])
        page += 1
    assert page == 4 and sorted(seen) == sorted(c["id"] for c in cases)
    present = [s for s in stamps if s is not None]
    assert present == sorted(present, reverse=True)
    assert stamps[len(present) :] == [None] * (len(stamps) - len(present)), "never-updated cases sort last"

    created = [
        c["created_at"]
        for c in kb.get(
            "/api/cases/_find", params={"sortField": "createdAt", "sortOrder": "asc", "perPage": 100}
        ).json()["cases"]
    ]
    assert created == sorted(created)
    by_status = kb.get("/api/cases/_find", params={"status": "closed", "perPage": 100}).json()
    assert {c["status"] for c in by_status["cases"]} == {"closed"}
    assert by_status["count_closed_cases"] == by_status["total"]
    assert by_status["count_open_cases"] == sum(1 for c in cases if c["status"] == "open")
    cutoff = sorted(c["created_at"] for c in cases)[30]
    recent = kb.get("/api/cases/_find", params={"from": cutoff, "perPage": 100}).json()
    assert recent["total"] == 15
    older = kb.get("/api/cases/_find", params={"to": cutoff, "perPage": 100}).json()
    assert older["total"] == 31, "from and to are inclusive bounds on created_at"
    severe = kb.get(
        "/api/cases/_find", params=[("severity", "critical"), ("tags", "malware"), ("tags", "c2")]
    )
    assert all(
        c["severity"] == "critical" and {"malware", "c2"} & set(c["tags"]) for c in severe.json()["cases"]
    )
    assert kb.get("/api/cases/_find", params={"owner": "observability"}).json()["total"] == 0

    too_big = kb.get("/api/cases/_find", params={"perPage": 101})
    assert too_big.status_code == 400
    assert too_big.json()["message"] == (
        "The provided perPage value was too high. The maximum allowed perPage value is 100."
    )
    too_deep = kb.get("/api/cases/_find", params={"perPage": 100, "page": 101})
    assert "Paginating through more than 10,000 documents is not possible" in too_deep.json()["message"]
    assert 'invalid keys "per_page"' in kb.get("/api/cases/_find", params={"per_page": 5}).json()["message"]
    assert kb.get("/api/cases/_find", params={"status": "pending"}).status_code == 400


def _case_spec_errors(spec: KibanaSpec, case: dict[str, Any]) -> list[str]:
    """Spec errors of a case response, ignoring single-string alert ids.

    Kibana stores and returns ``alertId``/``index`` as given, a list or one string
    (``rt.union([rt.array(rt.string), rt.string])``); the generated OpenAPI only lists the array form.
    """
    strings = {
        f"comments.{i}.{key}"
        for i, c in enumerate(case.get("comments", []))
        if c.get("type") == "alert"
        for key in ("alertId", "index")
        if isinstance(c.get(key), str)
    }
    return [
        e
        for e in spec.errors("Cases_case_response_properties", case, mode="read")
        if e.split(":", 1)[0] not in strings
    ]


def test_case_detail_comments_alerts_and_patch(elastic: ElasticDouble, kb: httpx.Client) -> None:
    alerts = list(generate_alerts(30, seed=5))
    case = next(
        c
        for c in generate_cases(10, seed=5, alerts=alerts)
        if any(x["type"] == "user" for x in c["comments"]) and c["status"] != "closed"
    )
    load_cases_into(elastic, [case])
    detail = kb.get(f"/api/cases/{case['id']}").json()
    assert len(detail["comments"]) == len(case["comments"]) and detail["observables"]
    user_comments = kb.get(f"/api/cases/{case['id']}/comments/_find", params={"perPage": 100}).json()
    assert user_comments["total"] == detail["totalComment"]
    assert {c["type"] for c in user_comments["comments"]} == {"user"}, "find comments returns user comments"
    attached = kb.get(f"/api/cases/{case['id']}/alerts").json()
    expected_ids = {
        x
        for c in case["comments"]
        if c["type"] == "alert"
        for x in (c["alertId"] if isinstance(c["alertId"], list) else [c["alertId"]])
    }
    assert {a["id"] for a in attached} == expected_ids
    assert {a["index"] for a in attached} == {alerts_backing_index()}

    stale = kb.patch(
        "/api/cases",
        json={"cases": [{"id": case["id"], "version": "WzEsMV0=", "status": "closed"}]},
        headers=XSRF,
    )
    assert stale.status_code == 409
    closed = kb.patch(
        "/api/cases",
        json={"cases": [{"id": case["id"], "version": detail["version"], "status": "closed"}]},
        headers=XSRF,
    )
    assert closed.status_code == 200
    assert closed.json()[0]["closed_at"] and closed.json()[0]["version"] != detail["version"]
    comment = kb.post(
        f"/api/cases/{case['id']}/comments",
        headers=XSRF,
        json={"type": "user", "comment": "from the test", "owner": "securitySolution"},
    )
    assert comment.status_code == 200 and comment.json()["totalComment"] == detail["totalComment"] + 1
    observable = kb.post(
        f"/api/cases/{case['id']}/observables",
        headers=XSRF,
        json={"observable": {"typeKey": "observable-type-ipv4", "value": "192.0.2.44"}},
    )
    assert observable.json()["observables"][-1]["value"] == "192.0.2.44"
    assert kb.get("/api/cases/not-a-case").status_code == 404
    if elastic.kibana.spec is not None:
        for body in (detail, closed.json()[0], comment.json()):
            assert _case_spec_errors(elastic.kibana.spec, body) == []


def test_rule_crud_conflicts_and_not_found(elastic: ElasticDouble, kb: httpx.Client) -> None:
    body = rule_bodies()[1]
    created = kb.post("/api/detection_engine/rules", json=body, headers=XSRF)
    assert created.status_code == 200
    rule = created.json()
    assert rule["rule_id"] == body["rule_id"] and rule["id"] != body["rule_id"] and rule["revision"] == 0
    duplicate = kb.post("/api/detection_engine/rules", json=body, headers=XSRF)
    assert duplicate.status_code == 409
    assert duplicate.json() == {"message": f'rule_id: "{body["rule_id"]}" already exists', "status_code": 409}
    assert (
        kb.get("/api/detection_engine/rules", params={"rule_id": body["rule_id"]}).json()["id"] == rule["id"]
    )
    assert kb.get("/api/detection_engine/rules", params={"id": rule["id"]}).json()["name"] == body["name"]

    patched = kb.patch(
        "/api/detection_engine/rules", json={"rule_id": body["rule_id"], "enabled": False}, headers=XSRF
    ).json()
    assert patched["enabled"] is False and patched["tags"] == body["tags"] and patched["revision"] == 1
    replaced = kb.put(
        "/api/detection_engine/rules",
        headers=XSRF,
        json={
            "id": rule["id"],
            "name": "Renamed",
            "description": "d",
            "type": "query",
            "query": "a:b",
            "severity": "low",
            "risk_score": 5,
        },
    ).json()
    assert replaced["name"] == "Renamed" and replaced["tags"] == [] and replaced["enabled"] is True
    assert replaced["rule_id"] == body["rule_id"] and replaced["created_at"] == rule["created_at"]

    assert kb.delete(
        "/api/detection_engine/rules", params={"rule_id": body["rule_id"]}, headers=XSRF
    ).is_success
    gone = kb.get("/api/detection_engine/rules", params={"rule_id": body["rule_id"]})
    assert gone.status_code == 404
    assert gone.json() == {"message": f'rule_id: "{body["rule_id"]}" not found', "status_code": 404}
    assert (
        kb.get("/api/detection_engine/rules", params={"id": "nope"}).json()["message"]
        == 'id: "nope" not found'
    )
    assert kb.get("/api/detection_engine/rules").status_code == 400
    assert (
        kb.put(
            "/api/detection_engine/rules",
            json={
                "rule_id": "nope",
                **{k: body[k] for k in ("name", "description", "type", "severity", "risk_score")},
            },
            headers=XSRF,
        ).status_code
        == 404
    )


def test_rules_find_and_bulk_action(elastic: ElasticDouble, kb: httpx.Client) -> None:
    ids = {}
    for body in rule_bodies():
        ids[body["rule_id"]] = kb.post("/api/detection_engine/rules", json=body, headers=XSRF).json()["id"]
    ti = kb.get(
        "/api/detection_engine/rules/_find",
        params={
            "filter": 'alert.attributes.tags:"Use Case: Threat Intelligence"',
            "per_page": 2,
            "page": 1,
            "sort_field": "name",
            "sort_order": "asc",
        },
    ).json()
    assert ti["total"] == 3 and ti["perPage"] == 2 and len(ti["data"]) == 2
    assert [r["name"] for r in ti["data"]] == sorted(r["name"] for r in ti["data"])
    both = kb.get(
        "/api/detection_engine/rules/_find",
        params={
            "filter": "alert.attributes.params.type:(eql OR esql) AND NOT alert.attributes.enabled:false"
        },
    ).json()
    assert {r["type"] for r in both["data"]} == {"eql", "esql"} and both["total"] == 4
    assert (
        kb.get("/api/detection_engine/rules/_find", params={"filter": "alert.attributes.nope:1"}).status_code
        == 400
    )

    first = list(ids.values())[:2]
    disabled = kb.post(
        "/api/detection_engine/rules/_bulk_action", headers=XSRF, json={"action": "disable", "ids": first}
    ).json()
    assert disabled["attributes"]["summary"] == {"failed": 0, "skipped": 0, "succeeded": 2, "total": 2}
    again = kb.post(
        "/api/detection_engine/rules/_bulk_action", headers=XSRF, json={"action": "disable", "ids": first}
    ).json()
    assert again["attributes"]["summary"]["skipped"] == 2
    partial = kb.post(
        "/api/detection_engine/rules/_bulk_action",
        headers=XSRF,
        json={"action": "enable", "ids": [first[0], "missing-id"]},
    )
    assert partial.status_code == 500 and partial.json()["attributes"]["summary"]["failed"] == 1
    both_selectors = kb.post(
        "/api/detection_engine/rules/_bulk_action",
        headers=XSRF,
        json={"action": "delete", "ids": first, "query": ""},
    )
    assert both_selectors.status_code == 400
    deleted = kb.post(
        "/api/detection_engine/rules/_bulk_action",
        headers=XSRF,
        json={"action": "delete", "query": 'alert.attributes.tags:"Rule Type: Indicator Match"'},
    )
    assert deleted.json()["attributes"]["summary"]["succeeded"] == 3
    assert len(elastic.kibana.rules()) == len(RULES) - 3


@needs_kibana_spec
def test_rule_bodies_are_validated_against_the_kibana_spec(elastic: ElasticDouble, kb: httpx.Client) -> None:
    spec = elastic.kibana.spec
    assert spec is not None and KibanaSpec.load() is spec, "the 3.7 MB spec is parsed once per process"
    for body in rule_bodies():
        response = kb.post("/api/detection_engine/rules", json=body, headers=XSRF)
        assert response.status_code == 200, response.text
        assert spec.errors("Security_Detections_API_RuleResponse", response.json(), mode="read") == []
    assert elastic.kibana.validation_failures == []

    base = {"name": "x", "description": "d", "risk_score": 10, "severity": "low"}
    cases = [
        ({**base, "type": "eql", "query": "process where true"}, "'language' is a required property"),
        (
            {
                **base,
                "type": "threat_match",
                "query": "*:*",
                "threat_index": ["logs-ti_*"],
                "threat_query": "*:*",
            },
            "'threat_mapping' is a required property",
        ),
        ({**base, "type": "query", "risk_score": 101}, "risk_score: 101 is greater than the maximum of 100"),
        ({**base, "type": "query", "severity": "urgent"}, "severity: 'urgent' is not one of"),
        ({**base, "type": "query", "name": None}, "name: None for not nullable"),
        ({**base, "type": "sigma"}, "Invalid discriminator value"),
    ]
    for body, reason in cases:
        response = kb.post("/api/detection_engine/rules", json=body, headers=XSRF)
        assert response.status_code == 400, body
        assert response.json()["message"].startswith("[request body]: ")
        assert reason in response.json()["message"]
    assert len(elastic.kibana.validation_failures) == len(cases)
    assert reason in elastic.kibana.validation_failures[-1]["reasons"][0]

    throttle_null = {
        **base,
        "type": "query",
        "query": "a:b",
        "actions": [
            {
                "action_type_id": ".email",
                "group": "default",
                "id": "c1",
                "params": {},
                "frequency": {"notifyWhen": "onActiveAlert", "summary": True, "throttle": None},
            }
        ],
    }
    assert kb.post("/api/detection_engine/rules", json=throttle_null, headers=XSRF).status_code == 200
    existing = elastic.kibana.rules()[0]
    bad_patch = kb.patch(
        "/api/detection_engine/rules", json={"id": existing["id"], "risk_score": "high"}, headers=XSRF
    )
    assert bad_patch.status_code == 400 and "risk_score" in bad_patch.json()["message"]
    bad_put = kb.put(
        "/api/detection_engine/rules", json={"id": existing["id"], "type": "eql", **base}, headers=XSRF
    )
    assert bad_put.status_code == 400


def test_kibana_faults_and_request_log(elastic: ElasticDouble, kb: httpx.Client) -> None:
    elastic.kibana.inject(429, path=r"/api/cases/_find$", times=1, retry_after=2)
    limited = kb.get("/api/cases/_find")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["statusCode"] == 429
    elastic.kibana.inject(502, path=r"^/s/soc/", times=None)
    elastic.kibana.add_space("soc")
    assert kb.get("/s/soc/api/cases/_find").status_code == 502
    assert kb.get("/api/cases/_find").status_code == 200
    log = elastic.kibana.requests_to(r"/api/cases/_find$")
    assert [r.status for r in log] == [429, 502, 200]
    assert log[0].header("authorization") == f"ApiKey {elastic.api_key}"


# --------------------------------------------------------------------------------------------------
# TLS


def test_tls_with_ca_bundle_and_client_certificates() -> None:
    with ElasticDouble(tls=True, require_client_cert=True) as double:
        tls = double.tls
        assert tls is not None and double.es.url.startswith("https://localhost:")
        client = Elasticsearch(
            double.es.url,
            api_key=double.api_key,
            ca_certs=str(tls.ca_path),
            client_cert=str(tls.client_cert_path),
            client_key=str(tls.client_key_path),
        )
        assert client.info()["tagline"]
        no_cert = Elasticsearch(
            double.es.url, api_key=double.api_key, ca_certs=str(tls.ca_path), max_retries=0
        )
        with pytest.raises(EsConnectionError):
            no_cert.info()
        untrusted = Elasticsearch(
            double.es.url,
            api_key=double.api_key,
            max_retries=0,
            client_cert=str(tls.client_cert_path),
            client_key=str(tls.client_key_path),
        )
        with pytest.raises(EsConnectionError):
            untrusted.info()
        with httpx.Client(
            verify=tls.client_context(with_client_cert=True), headers=double.kibana.auth_header
        ) as kb:
            assert kb.get(double.kibana.url + "/api/status").status_code == 200
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=tls.client_context()) as kb:
            kb.get(double.kibana.url + "/api/status")


# --------------------------------------------------------------------------------------------------
# Fixtures


def test_alert_generator_is_deterministic_and_realistic() -> None:
    docs = list(generate_alerts(600, seed=7))
    assert docs == list(generate_alerts(600, seed=7))
    assert docs != list(generate_alerts(600, seed=8))
    assert [d["kibana.alert.uuid"] for d in docs[:5]] != [
        d["kibana.alert.uuid"] for d in generate_alerts(5, seed=8)
    ]
    assert len({alert_id(d) for d in docs}) == 600
    assert {d["kibana.alert.rule.type"] for d in docs} == {r.type for r in RULES}
    assert {d["kibana.alert.rule.name"] for d in docs} == {r.name for r in RULES}
    for doc in docs:
        assert "kibana" not in doc and "kibana.alert.uuid" in doc, "kibana.alert.* are flat keys"
        assert doc["kibana.alert.workflow_status"] in ("open", "acknowledged", "closed")
        assert doc["kibana.alert.severity"] in ("low", "medium", "high", "critical")
        assert doc["kibana.alert.original_time"] <= doc["@timestamp"]
    assert any(isinstance(d.get("host"), dict) and isinstance(d["host"]["ip"], list) for d in docs)
    assert any("source.ip" in d for d in docs) and any("ip" in d.get("source", {}) for d in docs)
    assert any(":" in str(v) for d in docs for v in resolve_path(d, "destination.ip"))
    assert sum("kibana.alert.url" not in d for d in docs) > 0
    assert 0 < sum("kibana.alert.workflow_status_updated_at" in d for d in docs) < 600
    assert max(list(d["@timestamp"] for d in docs).count(t) for t in {d["@timestamp"] for d in docs}) >= 10
    matched = [m for d in docs for m in resolve_path(d, "threat.enrichments.matched")]
    assert {m["field"] for m in matched} >= {"destination.ip", "file.hash.sha256", "url.full"}
    assert all(set(m) == {"atomic", "field", "id", "index", "type"} for m in matched)
    assert any(resolve_path(d, "process.parent.pid") and resolve_path(d, "file.hash.sha256") for d in docs)
    assert any(resolve_path(d, "registry.path") for d in docs) and any(
        resolve_path(d, "email.to.address") for d in docs
    )
    assert any(resolve_path(d, "user.domain") for d in docs) and any(
        resolve_path(d, "dll.hash.sha256") for d in docs
    )
    assert any(t["technique"][0].get("subtechnique") for d in docs for t in d["kibana.alert.rule.threat"])


def _bad_values(docs: list[dict[str, Any]]) -> set[str]:
    found = set()
    for doc in docs:
        for path in ("source.ip", "destination.ip", "host.ip"):
            for value in resolve_path(doc, path):
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    found.add(f"ip:{value}")
        for value in resolve_path(doc, "file.hash.sha256"):
            if len(value) != 64:
                found.add("sha256-length")
        for value in resolve_path(doc, "email.attachments.file.hash.md5"):
            if any(c not in "0123456789abcdef" for c in value):
                found.add("md5-not-hex")
    return found


def test_bundled_example_is_the_generator_output_and_covers_every_rule_type(tmp_path: Path) -> None:
    target = tmp_path / "alerts.ndjson"
    assert main(["--count", "40", "--seed", "0", "-o", str(target)]) == 0
    assert EXAMPLE.read_text(encoding="utf-8") == target.read_text(encoding="utf-8"), (
        "regenerate with: python -m tests.fixtures.elastic_alerts --count 40 -o "
        "examples/elastic-alerts.ndjson"
    )
    docs = [json.loads(line) for line in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(docs) == 40
    assert {d["kibana.alert.rule.name"] for d in docs} == {r.name for r in RULES}
    assert _bad_values(docs) == {"ip:999.12.7.1", "ip:not-an-ip", "sha256-length", "md5-not-hex"}


@pytest.mark.skipif(not ECS_SPEC.is_file(), reason=f"ECS field reference not present at {ECS_SPEC}")
def test_generated_source_fields_are_ecs_fields() -> None:
    import yaml

    with ECS_SPEC.open(encoding="utf-8") as handle:
        ecs = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

    def leaves(obj: Any, prefix: str = "") -> Iterator[str]:
        if isinstance(obj, dict):
            for key, value in obj.items():
                yield from leaves(value, f"{prefix}{key}.")
        elif isinstance(obj, list):
            for value in obj:
                yield from leaves(value, prefix)
        else:
            yield prefix[:-1]

    unknown = {
        p
        for d in generate_alerts(1500, seed=2)
        for p in leaves(d)
        if not p.startswith("kibana.") and p not in ecs
    }
    assert unknown == set()


def test_cases_reference_generated_alerts_and_observable_types(
    elastic: ElasticDouble, es: Elasticsearch
) -> None:
    alerts = list(generate_alerts(60, seed=4))
    load_into(elastic, docs=alerts)
    cases = generate_cases(20, seed=4, alerts=alerts)
    assert cases == generate_cases(20, seed=4, alerts=alerts)
    attached = [c for case in cases for c in case["comments"] if c["type"] == "alert"]
    assert any(isinstance(c["alertId"], str) for c in attached) and any(
        isinstance(c["alertId"], list) for c in attached
    )
    refs = [
        (c["index"], c["alertId"]) if isinstance(c["alertId"], str) else (c["index"][0], c["alertId"][0])
        for c in attached
    ]
    found = es.mget(docs=[{"_index": index, "_id": doc_id} for index, doc_id in refs])["docs"]
    assert all(d["found"] for d in found)
    type_keys = {o["typeKey"] for case in cases for o in case["observables"]}
    assert type_keys <= {
        f"observable-type-{t}"
        for t in (
            "ipv4",
            "ipv6",
            "url",
            "hostname",
            "domain",
            "email",
            "file-hash",
            "file-path",
            "agent-id",
            "user",
        )
    }
    assert {"observable-type-ipv4", "observable-type-hostname", "observable-type-file-hash"} <= type_keys
    assert any(case["updated_at"] is None for case in cases)
    assert all(case["closed_at"] for case in cases if case["status"] == "closed")
    assert {case["status"] for case in cases} == {"open", "in-progress", "closed"}
    for case in cases:
        assert base64.b64decode(case["version"]).startswith(b"[")
    if elastic.kibana.spec is not None:
        for case in cases:
            assert _case_spec_errors(elastic.kibana.spec, case) == []


def test_direct_loader_checks_mappings() -> None:
    double = ElasticsearchDouble()
    double.create_index("strict", mappings={"dynamic": "strict", "properties": {"a": {"type": "long"}}})
    with pytest.raises(ValueError, match="strict_dynamic_mapping_exception"):
        double.load("strict", [{"_id": "1", "b": 1}])
    with pytest.raises(ValueError, match="document_parsing_exception"):
        double.load("strict", [{"_id": "1", "a": "x"}])
    assert double.load("strict", [{"_id": "1", "a": "7"}]) == 1
    assert double.source("strict", "1") == {"a": "7"}
