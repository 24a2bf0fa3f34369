"""The OpenSearch double (Wazuh 4.x semantics) and the Wazuh alert fixtures, checked with opensearch-py.

The Wazuh connector's tests are only as good as this double: if it matched loosely (case, escaping,
totals, aggregations), a wrong query would pass there and fail against a real Wazuh indexer.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from opensearchpy import AuthenticationException, OpenSearch, RequestError, TransportError  # noqa: E402

from tests.doubles.opensearch import OpenSearchDouble  # noqa: E402
from tests.doubles.opensearch_query import parse_date, regexp_to_re, wildcard_to_re  # noqa: E402
from tests.fixtures.wazuh_alerts import (  # noqa: E402
    generate_alerts,
    load_into,
    make_agents,
    plant,
    wazuh_timestamp,
)

INDEX = "wazuh-alerts-4.x-2024.05.11"
NOW = parse_date("2024-06-01T00:00:00Z")


def lucene_wildcard_escape(value: str) -> str:
    return re.sub(r"([*?\\])", r"\\\1", value)


def lucene_regexp_escape(value: str) -> str:
    return re.sub(r'([.?+*|{}\[\]()"\\#@&<>~])', r"\\\1", value)


@pytest.fixture(scope="module")
def double() -> Iterator[OpenSearchDouble]:
    with OpenSearchDouble(now_millis=NOW) as server:
        yield server


@pytest.fixture(scope="module")
def client(double: OpenSearchDouble) -> OpenSearch:
    return OpenSearch(double.url, http_auth=double.auth, timeout=30)


@pytest.fixture
def fresh() -> Iterator[tuple[OpenSearchDouble, OpenSearch]]:
    with OpenSearchDouble(now_millis=NOW) as server:
        yield server, OpenSearch(server.url, http_auth=server.auth, max_retries=0, timeout=10)


def ids(response: dict[str, Any]) -> set[str]:
    return {h["_id"] for h in response["hits"]["hits"]}


def search(client: OpenSearch, query: dict[str, Any], index: str = "small-*", **body: Any) -> set[str]:
    return ids(client.search(index=index, body={"query": query, "size": 1000, **body}))


@pytest.fixture(scope="module")
def small(double: OpenSearchDouble) -> None:
    docs = {
        "paco": {
            "data": {"srcuser": "paco", "srcip": "172.17.1.1"},
            "full_log": "Invalid user Paco from 172.17.1.1",
            "rule": {"id": 5712, "level": 10},
            "@timestamp": "2024-05-11T12:29:19.905+0000",
        },
        "Paco": {
            "data": {"srcuser": "Paco", "x": {"srcip": "10.0.0.1"}},
            "full_log": "Accepted key for PACO",
            "rule": {"id": "5715", "level": 3},
            "@timestamp": "2024-05-10T23:59:59.999+0000",
        },
        "paco2": {
            "data": {"srcuser": "paco admin"},
            "agent": {"ip": "172.17.1.1"},
            "rule": {"id": "5710", "level": 5},
            "@timestamp": "2024-05-12T00:00:00.000+0200",
        },
        "aws": {"data": {"aws": {"srcaddr": "192.0.2.44"}}, "@timestamp": "2024-04-20T10:00:00Z"},
        "dotted": {
            "data.win": {"eventdata.image": "C:\\Windows\\cmd.exe"},
            "tags": [{"k": "one"}, {"k": "two"}],
            "@timestamp": "2024-05-11T00:00:00Z",
        },
    }
    double.add_documents("small-1", list(docs.values()), ids=list(docs))


# ------------------------------------------------------------ basics


def test_auth_and_info(double: OpenSearchDouble) -> None:
    with pytest.raises(AuthenticationException):
        OpenSearch(double.url).info()
    with pytest.raises(AuthenticationException):
        OpenSearch(double.url, http_auth=("admin", "wrong")).info()
    info = OpenSearch(double.url, http_auth=double.auth).info()
    assert info["version"]["distribution"] == "opensearch"
    assert info["version"]["number"].startswith("2.")
    assert double.requests[0].status == 401


def test_unsupported_clauses_fail_loudly(client: OpenSearch, small: None) -> None:
    for query in (
        {"fuzzy": {"data.srcuser": "pac"}},
        {"query_string": {"query": "paco"}},
        {"nested": {"path": "x", "query": {"match_all": {}}}},
        {"term": {"data.srcuser": {"value": "paco", "fuzziness": 2}}},
    ):
        with pytest.raises(RequestError) as err:
            client.search(index="small-*", body={"query": query})
        assert err.value.status_code == 400 and err.value.error == "parsing_exception"
    with pytest.raises(RequestError):
        client.search(index="small-*", body={"query": {"match_all": {}}, "highlight": {}})
    with pytest.raises(RequestError):
        client.search(index="small-*", body={"aggs": {"x": {"histogram": {"field": "rule.level"}}}})


def test_missing_index_and_patterns(client: OpenSearch, small: None) -> None:
    with pytest.raises(TransportError) as err:
        client.search(index="nope", body={})
    assert err.value.status_code == 404
    assert client.search(index="nothing-*", body={})["hits"]["total"]["value"] == 0
    assert client.search(index="small-1,nothing-*", body={})["hits"]["total"]["value"] == 5
    assert client.count(index="small-*", body={"query": {"term": {"data.srcuser": "paco"}}})["count"] == 1


# ------------------------------------------------------------ keyword semantics


def test_keyword_is_exact_and_case_sensitive(client: OpenSearch, small: None) -> None:
    assert search(client, {"term": {"data.srcuser": "paco"}}) == {"paco"}
    assert search(client, {"term": {"data.srcuser": "Paco"}}) == {"Paco"}
    assert search(client, {"term": {"data.srcuser": {"value": "PACO", "case_insensitive": True}}}) == {
        "paco",
        "Paco",
    }
    assert search(client, {"match": {"data.srcuser": "paco"}}) == {"paco"}  # keyword match is not analysed
    assert search(client, {"terms": {"data.srcuser": ["paco", "paco admin"]}}) == {"paco", "paco2"}
    assert search(client, {"term": {"rule.id": "5712"}}) == {"paco"}  # numeric source in keyword field
    assert search(client, {"term": {"rule.id": 5715}}) == {"Paco"}
    for typed in ("data.aws.srcaddr", "rule.level"):  # only string fields take case_insensitive
        with pytest.raises(RequestError, match="case insensitive"):
            search(client, {"term": {typed: {"value": "10", "case_insensitive": True}}})


def test_text_fields_are_analysed(client: OpenSearch, small: None) -> None:
    assert search(client, {"match": {"full_log": "PACO nobody"}}) == {"paco", "Paco"}
    assert search(client, {"match": {"full_log": {"query": "paco invalid", "operator": "and"}}}) == {"paco"}
    assert search(client, {"term": {"full_log": "Paco"}}) == set()  # term is not analysed
    assert search(client, {"term": {"full_log": "paco"}}) == {"paco", "Paco"}
    assert search(client, {"match_phrase": {"full_log": "user paco from"}}) == {"paco"}
    assert search(client, {"match": {"full_log": "172.17.1.1"}}) == {"paco"}  # one token, as UAX#29
    assert search(client, {"match": {"full_log": "172.17"}}) == set()


def test_bool_prefix_exists_ids_and_numbers(client: OpenSearch, small: None) -> None:
    assert search(
        client,
        {
            "bool": {
                "should": [{"term": {"data.srcuser": "paco"}}, {"term": {"data.srcuser": "Paco"}}],
                "must_not": [{"range": {"rule.level": {"lt": 5}}}],
            }
        },
    ) == {"paco"}
    both = {
        "bool": {
            "should": [{"prefix": {"data.srcuser": "paco"}}, {"exists": {"field": "agent.ip"}}],
            "minimum_should_match": 2,
        }
    }
    assert search(client, both) == {"paco2"}
    assert search(
        client,
        {"bool": {"filter": [{"exists": {"field": "data"}}], "should": [{"term": {"data.srcuser": "zzz"}}]}},
    ) == {"paco", "Paco", "paco2", "aws", "dotted"}
    assert search(client, {"prefix": {"data.srcuser": {"value": "PA", "case_insensitive": True}}}) == {
        "paco",
        "Paco",
        "paco2",
    }
    assert search(client, {"ids": {"values": ["aws", "missing"]}}) == {"aws"}
    assert search(client, {"range": {"rule.level": {"gte": 5, "lte": 10}}}) == {"paco", "paco2"}
    assert search(client, {"term": {"rule.level": "10"}}) == {"paco"}
    with pytest.raises(RequestError):
        search(client, {"term": {"rule.level": "high"}})


def test_dotted_keys_and_object_arrays(client: OpenSearch, small: None) -> None:
    assert search(client, {"term": {"data.win.eventdata.image": "C:\\Windows\\cmd.exe"}}) == {"dotted"}
    assert search(client, {"term": {"tags.k": "two"}}) == {"dotted"}
    assert search(client, {"wildcard": {"data.win.eventdata.image": "*\\\\cmd.exe"}}) == {"dotted"}


def test_glob_field_expansion_and_ip_fields(client: OpenSearch, small: None) -> None:
    assert search(client, {"multi_match": {"query": "172.17.1.1", "fields": ["*.srcip"]}}) == {"paco"}
    # globs reach typed fields (data.aws.srcaddr is ip): like OpenSearch, refuse unless lenient
    with pytest.raises(RequestError):
        search(client, {"multi_match": {"query": "10.0.0.1", "fields": ["data.*"]}})
    assert search(client, {"multi_match": {"query": "10.0.0.1", "fields": ["data.*"], "lenient": True}}) == {
        "Paco"
    }
    assert search(
        client, {"multi_match": {"query": "10.0.0.1", "fields": ["*.srcip"], "type": "phrase"}}
    ) == {"Paco"}
    assert search(client, {"multi_match": {"query": "172.17.1.1", "fields": ["*ip"]}}) == {"paco", "paco2"}
    # data.aws.srcaddr is `ip` in the Wazuh template: CIDR terms work, non-IP strings are refused ...
    assert search(client, {"term": {"data.aws.srcaddr": "192.0.2.0/24"}}) == {"aws"}
    with pytest.raises(RequestError) as err:
        search(client, {"multi_match": {"query": "evil.example", "fields": ["data.aws.src*"]}})
    assert "IP string literal" in str(err.value.info)
    # ... unless lenient, and data.srcip is a keyword: no CIDR semantics
    assert (
        search(client, {"multi_match": {"query": "evil.example", "fields": ["data.aws.*"], "lenient": True}})
        == set()
    )
    assert search(client, {"term": {"data.srcip": "172.17.1.0/24"}}) == set()


# ------------------------------------------------------------ wildcard / regexp


def test_wildcard_and_regexp_semantics(client: OpenSearch, small: None) -> None:
    assert search(client, {"wildcard": {"data.srcuser": "pa?o"}}) == {"paco"}
    assert search(client, {"wildcard": {"data.srcuser": {"value": "PA*", "case_insensitive": True}}}) == {
        "paco",
        "Paco",
        "paco2",
    }
    assert search(client, {"regexp": {"data.srcuser": "pac"}}) == set()  # anchored to the whole term
    assert search(client, {"regexp": {"data.srcuser": "[pP]aco( admin)?"}}) == {"paco", "Paco", "paco2"}
    assert search(client, {"regexp": {"data.srcuser": "pa.o\\s.*"}}) == {"paco2"}
    assert search(client, {"regexp": {"data.srcuser": "p@"}}) == {"paco", "paco2"}  # @ = any string
    assert search(client, {"regexp": {"data.srcuser": {"value": "p@", "flags": "NONE"}}}) == set()
    assert search(client, {"regexp": {"data.srcuser": {"value": "PACO", "case_insensitive": True}}}) == {
        "paco",
        "Paco",
    }
    assert search(client, {"regexp": {"data.srcuser": 'pa"co"'}}) == {"paco"}
    for operator in ("~(paco)", "paco&p.*", "<1-5>"):
        with pytest.raises(RequestError) as err:
            search(client, {"regexp": {"data.srcuser": operator}})
        assert "unsupported query" in str(err.value.info)
    with pytest.raises(RequestError):
        search(client, {"wildcard": {"rule.level": "1*"}})


def test_lucene_translations() -> None:
    assert re.fullmatch(wildcard_to_re(r"a\*b?"), "a*bc")
    assert not re.fullmatch(wildcard_to_re(r"a\*b?"), "axbc")
    assert regexp_to_re("a{2,3}").fullmatch("aaa") and not regexp_to_re("a{2,3}").fullmatch("aaaa")
    assert regexp_to_re("a**").fullmatch("aaa")  # stacked repeats are legal in Lucene
    assert regexp_to_re("^$").fullmatch("^$")  # no anchors in Lucene: literal characters
    assert regexp_to_re("#|x").fullmatch("x") and not regexp_to_re("#").fullmatch("")
    assert regexp_to_re(r"[^a-c\]]+").fullmatch("xyz") and not regexp_to_re(r"[^a-c\]]+").fullmatch("x]")
    assert regexp_to_re(r"C:\\\\+Windows").fullmatch("C:\\\\Windows")


HOSTILE = st.text(alphabet=st.sampled_from(list("ab.?+*|{}[]()\"\\#@&<>~^$ '")), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_escaped_hostile_values_match_only_themselves(value: str) -> None:
    decoys = {
        value + "a",
        "a" + value,
        value.replace(value[0], "b" if value[0] != "b" else "a", 1),
        value[:-1],
        "",
        value.upper() + "A",
        "ab",
        "\\" + value,
    }
    decoys.discard(value)
    wild = re.compile(wildcard_to_re(lucene_wildcard_escape(value)), re.DOTALL)
    regex = regexp_to_re(lucene_regexp_escape(value))
    assert wild.fullmatch(value) and regex.fullmatch(value)
    for decoy in decoys:
        assert not wild.fullmatch(decoy), decoy
        assert not regex.fullmatch(decoy), decoy


def test_hostile_values_end_to_end(fresh: tuple[OpenSearchDouble, OpenSearch]) -> None:
    double, client = fresh
    values = [
        'a"b',
        "a\\b",
        "a*b",
        "a?b",
        "a.b",
        "a+b",
        "(a)",
        "[a]",
        "a|b",
        "a#b",
        "a@b",
        "a&b",
        "<a>",
        "~a",
        "axb",
        "ab",
        "a\\\\b",
        "C:\\Windows\\x.exe",
    ]
    double.add_documents("hostile", [{"v": v} for v in values], ids=[str(i) for i in range(len(values))])
    for i, value in enumerate(values):
        assert search(client, {"wildcard": {"v": lucene_wildcard_escape(value)}}, "hostile") == {str(i)}, (
            value
        )
        assert search(client, {"wildcard": {"v": "*" + lucene_wildcard_escape(value) + "*"}}, "hostile") >= {
            str(i)
        }
        assert search(client, {"regexp": {"v": lucene_regexp_escape(value)}}, "hostile") == {str(i)}, value
        assert search(client, {"term": {"v": value}}, "hostile") == {str(i)}


# ------------------------------------------------------------ dates


def test_date_ranges_with_wazuh_offsets_and_math(client: OpenSearch, small: None) -> None:
    day = {"gte": "2024-05-11T00:00:00.000+0000", "lt": "2024-05-12T00:00:00.000+0000"}
    # paco2 is 2024-05-12T00:00+0200 = 2024-05-11T22:00Z
    assert search(client, {"range": {"@timestamp": day}}) == {"paco", "paco2", "dotted"}
    assert (
        search(client, {"range": {"@timestamp": {"gt": "2024-05-11||/d", "lt": "2024-05-12||+1d/d"}}})
        == set()
    )
    assert search(client, {"range": {"@timestamp": {"gte": "2024-05-11||/d", "lte": "2024-05-11||/d"}}}) == {
        "paco",
        "paco2",
        "dotted",
    }
    assert search(client, {"range": {"@timestamp": {"gte": "now-30d"}}}) == {
        "paco",
        "Paco",
        "paco2",
        "dotted",
    }
    assert search(client, {"range": {"@timestamp": {"gte": "now-42d/d"}}}) == {
        "paco",
        "Paco",
        "paco2",
        "aws",
        "dotted",
    }
    assert search(client, {"range": {"@timestamp": {"gte": 1715430559905, "lte": 1715430559905}}}) == {"paco"}
    assert parse_date("2024-05-11T12:29:19.905+0000") == 1715430559905


# ------------------------------------------------------------ volume


AGENTS = make_agents(50, seed=3)
BIG_VALUE = "203.0.113.77"
BIG_QUERY = {"multi_match": {"query": BIG_VALUE, "fields": ["*.srcip", "*.ClientIP", "*.sourceIPAddress"]}}


@pytest.fixture(scope="module")
def big(double: OpenSearchDouble) -> list[dict[str, Any]]:
    alerts = generate_alerts(2000, seed=3, agents=AGENTS) + plant(BIG_VALUE, "ipv4", 10_500, AGENTS, seed=3)
    load_into(double, None, alerts)
    return alerts


def test_search_after_pages_through_everything(client: OpenSearch, big: list[dict[str, Any]]) -> None:
    query = BIG_QUERY
    seen: list[str] = []
    after = None
    started = time.perf_counter()
    while True:
        body: dict[str, Any] = {
            "query": query,
            "size": 2000,
            "sort": [{"@timestamp": "desc"}, {"_id": "asc"}],
            "_source": ["@timestamp", "agent.id"],
        }
        if after:
            body["search_after"] = after
        hits = client.search(index="wazuh-alerts-*", body=body)["hits"]["hits"]
        if not hits:
            break
        assert isinstance(hits[0]["sort"][0], int)  # dates sort as epoch millis
        assert parse_date(hits[0]["_source"]["@timestamp"]) == hits[0]["sort"][0]
        assert set(hits[0]["_source"]) == {"@timestamp", "agent"}
        seen += [h["_id"] for h in hits]
        after = hits[-1]["sort"]
    assert len(seen) == len(set(seen)) == 10_500
    assert time.perf_counter() - started < 30
    with pytest.raises(RequestError):
        client.search(index="wazuh-alerts-*", body={"sort": ["@timestamp"], "search_after": [1, 2]})
    with pytest.raises(RequestError):
        client.search(index="wazuh-alerts-*", body={"from": 9_000, "size": 2_000})


def test_track_total_hits(client: OpenSearch, big: list[dict[str, Any]]) -> None:
    query = BIG_QUERY
    expected = sum(1 for a in big if BIG_VALUE in str(a))
    assert expected > 10_000
    default = client.search(index="wazuh-alerts-*", body={"query": query, "size": 0})["hits"]["total"]
    assert default == {"value": 10_000, "relation": "gte"}
    exact = client.search(index="wazuh-alerts-*", body={"query": query, "size": 0, "track_total_hits": True})
    assert exact["hits"]["total"] == {"value": expected, "relation": "eq"}
    off = client.search(index="wazuh-alerts-*", body={"query": query, "size": 0, "track_total_hits": False})
    assert "total" not in off["hits"]
    capped = client.search(
        index="wazuh-alerts-*", body={"query": query, "size": 0}, params={"track_total_hits": 5}
    )
    assert capped["hits"]["total"] == {"value": 5, "relation": "gte"}


def test_aggregations_match_brute_force(client: OpenSearch, big: list[dict[str, Any]]) -> None:
    body = {
        "query": BIG_QUERY,
        "size": 0,
        "aggs": {
            "agents": {
                "terms": {"field": "agent.id", "size": 100},
                "aggs": {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}},
            },
            "top3": {"terms": {"field": "agent.id", "size": 3}},
            "n": {"value_count": {"field": "@timestamp"}},
            "rules": {"terms": {"field": "rule.id"}},
        },
    }
    aggs = client.search(index="wazuh-alerts-*", body=body)["aggregations"]
    matching = [a for a in big if BIG_VALUE in str(a)]
    counts = Counter(a["agent"]["id"] for a in matching)
    assert len(counts) == 50
    buckets = {b["key"]: b for b in aggs["agents"]["buckets"]}
    assert {k: b["doc_count"] for k, b in buckets.items()} == counts
    for agent_id, bucket in buckets.items():
        stamps = [parse_date(a["@timestamp"]) for a in matching if a["agent"]["id"] == agent_id]
        assert bucket["first"]["value"] == min(stamps) and bucket["last"]["value"] == max(stamps)
        assert bucket["first"]["value_as_string"].endswith("Z")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(b["key"], b["doc_count"]) for b in aggs["top3"]["buckets"]] == ranked[:3]
    assert aggs["top3"]["sum_other_doc_count"] == len(matching) - sum(c for _, c in ranked[:3])
    assert aggs["n"]["value"] == len(matching)
    assert sum(b["doc_count"] for b in aggs["rules"]["buckets"]) == len(matching)
    newest = client.search(
        index="wazuh-alerts-*",
        body={
            "query": BIG_QUERY,
            "size": 0,
            "aggs": {
                "rules": {
                    "terms": {"field": "rule.id", "size": 10},
                    "aggs": {
                        "newest": {
                            "top_hits": {"size": 2, "sort": [{"@timestamp": "desc"}], "_source": ["rule.id"]}
                        }
                    },
                }
            },
        },
    )
    for bucket in newest["aggregations"]["rules"]["buckets"]:
        stamps = sorted(
            (parse_date(a["@timestamp"]) for a in matching if a["rule"]["id"] == bucket["key"]), reverse=True
        )
        top = bucket["newest"]["hits"]
        assert top["total"]["value"] == bucket["doc_count"]
        assert [h["sort"][0] for h in top["hits"]] == stamps[:2]
        assert all(h["_source"] == {"rule": {"id": bucket["key"]}} for h in top["hits"])
    with pytest.raises(RequestError):  # text fields have no field data
        client.search(
            index="wazuh-alerts-*", body={"size": 0, "aggs": {"x": {"terms": {"field": "full_log"}}}}
        )


def test_terms_aggregation_missing_bucket(fresh: tuple[OpenSearchDouble, OpenSearch]) -> None:
    double, client = fresh
    docs = [
        {"agent": {"id": "001"}, "cluster": {"name": "east"}},
        {"agent": {"id": "001"}},
        {"agent": {"id": "002"}},
    ]
    double.add_documents("wazuh-alerts-4.x-m", docs, ids=["a", "b", "c"])
    body = {"size": 0, "aggs": {"c": {"terms": {"field": "cluster.name", "missing": "-"}}}}
    buckets = client.search(index="wazuh-alerts-*", body=body)["aggregations"]["c"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in buckets} == {"-": 2, "east": 1}
    without = client.search(
        index="wazuh-alerts-*", body={"size": 0, "aggs": {"c": {"terms": {"field": "cluster.name"}}}}
    )
    assert {b["key"]: b["doc_count"] for b in without["aggregations"]["c"]["buckets"]} == {"east": 1}


# ------------------------------------------------------------ faults, log, source


def test_faults_and_request_log(fresh: tuple[OpenSearchDouble, OpenSearch]) -> None:
    double, client = fresh
    double.add_documents("wazuh-alerts-4.x-x", [{"a": "1"}])
    double.fail(429, times=1, retry_after=7, path="_search")
    with pytest.raises(TransportError) as err:
        client.search(index="wazuh-alerts-*", body={"query": {"match_all": {}}})
    assert err.value.status_code == 429
    assert err.value.error == "es_rejected_execution_exception"
    assert client.search(index="wazuh-alerts-*", body={})["hits"]["total"]["value"] == 1
    double.fail(503, times=2, retry_after=1)
    with pytest.raises(TransportError) as err:
        client.info()
    assert err.value.status_code == 503
    retrying = OpenSearch(double.url, http_auth=double.auth, max_retries=3, retry_on_status=(503,))
    assert retrying.info()["version"]["distribution"] == "opensearch"
    double.fail(429, retry_after=30, path="_search")
    raw = httpx.post(f"{double.url}/wazuh-alerts-*/_search", json={}, auth=double.auth)
    assert raw.status_code == 429 and raw.headers["retry-after"] == "30"
    assert raw.json()["error"]["type"] == "es_rejected_execution_exception"
    unauthorized = httpx.get(double.url)
    assert unauthorized.status_code == 401 and "Basic" in unauthorized.headers["www-authenticate"]
    searches = double.searches()
    assert searches[0].body == {"query": {"match_all": {}}} and searches[0].status == 429
    assert [r.status for r in double.requests if r.path == "/"][-4:] == [503, 503, 200, 401]


def test_source_filtering(client: OpenSearch, small: None) -> None:
    hit = client.search(
        index="small-*",
        body={
            "query": {"ids": {"values": ["paco"]}},
            "_source": {"includes": ["data.*", "rule"], "excludes": ["*.srcip"]},
        },
    )
    assert hit["hits"]["hits"][0]["_source"] == {
        "data": {"srcuser": "paco"},
        "rule": {"id": 5712, "level": 10},
    }
    hit = client.search(index="small-*", body={"query": {"ids": {"values": ["paco"]}}, "_source": False})
    assert "_source" not in hit["hits"]["hits"][0]


# ------------------------------------------------------------ fixtures


def test_fixtures_are_deterministic_and_wazuh_shaped() -> None:
    first, again = generate_alerts(300, seed=5, agents=12), generate_alerts(300, seed=5, agents=12)
    assert first == again and first != generate_alerts(300, seed=6, agents=12)
    assert {a["agent"]["id"] for a in first} == {f"{n:03d}" for n in range(12)}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", a["timestamp"]) for a in first)
    assert all(a["@timestamp"] == a["timestamp"] and 0 <= a["rule"]["level"] <= 15 for a in first)
    assert "ip" not in next(a for a in first if a["agent"]["id"] == "000")["agent"]
    sysmon = next(a for a in first if "sysmon_event1" in a["rule"]["groups"])
    assert re.fullmatch(
        r"SHA1=[0-9A-F]{40},MD5=[0-9A-F]{32},SHA256=[0-9A-F]{64},IMPHASH=[0-9A-F]{32}",
        sysmon["data"]["win"]["eventdata"]["hashes"],
    )
    vuln = [a for a in first if "vulnerability-detector" in a["rule"]["groups"]]
    assert {a["rule"]["id"] for a in vuln} <= {"23503", "23504", "23505", "23506"} and vuln
    assert any(a.get("syscheck", {}).get("path", "").startswith("HKEY_") for a in first)
    assert (
        wazuh_timestamp(dt.datetime(2024, 5, 11, 12, 29, 19, 905000, tzinfo=dt.UTC))
        == "2024-05-11T12:29:19.905+0000"
    )


@pytest.mark.parametrize(
    ("kind", "value", "field"),
    [
        ("sha256", "A" * 64, "syscheck.sha256_after"),
        ("domain", "evil.example", "data.win.eventdata.queryName"),
        ("registry_key", "HKEY_LOCAL_MACHINE\\Software\\Evil", "syscheck.path"),
        ("cve", "CVE-2024-0001", "data.vulnerability.cve"),
    ],
)
def test_plant_spreads_over_agents(
    fresh: tuple[OpenSearchDouble, OpenSearch], kind: str, value: str, field: str
) -> None:
    double, client = fresh
    alerts = plant(value, kind, 40, agents=8)
    assert len({a["agent"]["id"] for a in alerts}) == 8
    load_into(double, None, alerts + generate_alerts(100, agents=8))
    stored = value.lower() if kind == "sha256" else value
    found = client.search(
        index="wazuh-alerts-*", body={"query": {"term": {field: stored}}, "size": 0, "track_total_hits": True}
    )
    if kind == "sha256":  # Sysmon carries it upper-case inside the combined hashes string
        sysmon = client.search(
            index="wazuh-alerts-*",
            body={
                "size": 0,
                "track_total_hits": True,
                "query": {"wildcard": {"data.win.eventdata.hashes": f"*SHA256={value.upper()}*"}},
            },
        )
        assert found["hits"]["total"]["value"] + sysmon["hits"]["total"]["value"] == 40
    else:
        assert found["hits"]["total"]["value"] == 40


# ------------------------------------------------------------ TLS


def test_tls_with_ca_bundle_and_client_certificate() -> None:
    with OpenSearchDouble(tls=True, require_client_cert=True) as double:
        tls = double.tls
        assert tls is not None and double.url.startswith("https://localhost:")
        client = OpenSearch(
            double.url,
            http_auth=double.auth,
            ca_certs=str(tls.ca_path),
            client_cert=str(tls.client_cert_path),
            client_key=str(tls.client_key_path),
            max_retries=0,
        )
        assert client.info()["version"]["distribution"] == "opensearch"
        untrusted = OpenSearch(double.url, http_auth=double.auth, max_retries=0, timeout=5)
        with pytest.raises(TransportError):  # the system CAs do not know the throw-away CA
            untrusted.info()
        no_client_cert = OpenSearch(
            double.url, http_auth=double.auth, ca_certs=str(tls.ca_path), max_retries=0, timeout=5
        )
        with pytest.raises(TransportError):
            no_client_cert.info()
