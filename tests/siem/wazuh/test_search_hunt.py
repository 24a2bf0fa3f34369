"""The hunt as a whole: totals and per-agent / per-rule figures from the index, paging, filters, errors."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch

from ctibridge.config.wazuh import WazuhOpenSearchSettings, WazuhSearchSettings
from ctibridge.errors import ConfigurationError, RemoteError
from ctibridge.siem.wazuh.client import opensearch_options
from ctibridge.siem.wazuh.hunt import WazuhHunter, format_time
from ctibridge.siem.wazuh.search import load_field_table
from tests.doubles.opensearch import OpenSearchDouble
from tests.doubles.opensearch_query import parse_date
from tests.fixtures.wazuh_alerts import generate_alerts, make_agents, plant
from tests.siem.wazuh.search_support import CLOCK_NOW, Hunting, doc

VALUE = "8.8.4.4"
ENTITY = {"type": "ipv4-addr", "id": "ipv4-addr--0b7c2d8e-0000-4000-8000-000000000001", "value": VALUE}


@pytest.fixture(scope="module")
def hunting() -> Iterator[Hunting]:
    with OpenSearchDouble() as double:
        yield Hunting(double)


@pytest.fixture(scope="module")
def corpus(hunting: Hunting) -> tuple[str, list[dict[str, Any]]]:
    """1,500 matching alerts over 25 agents in two clusters (one agent id in both), plus 600 decoys."""
    agents = make_agents(25, seed=3)
    planted = plant(VALUE, "ipv4", 1500, agents=agents, seed=3)
    for n, alert in enumerate(planted):
        cluster = (n // 25) % 3  # every agent reports through both clusters and without one
        if cluster == 1:
            alert["cluster"] = {"name": "west"}
        elif cluster == 2:
            alert.pop("cluster", None)
    decoys = generate_alerts(600, seed=4, agents=agents)
    index = hunting.index(planted + decoys)
    return index, planted


def expected_agents(alerts: list[dict[str, Any]]) -> dict[tuple[str | None, str], list[int]]:
    groups: dict[tuple[str | None, str], list[int]] = {}
    for alert in alerts:
        key = (alert.get("cluster", {}).get("name"), alert["agent"]["id"])
        groups.setdefault(key, []).append(parse_date(alert["@timestamp"]))
    return groups


def millis(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def test_totals_agents_and_rules_cover_every_match_beyond_the_limit(
    hunting: Hunting, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, planted = corpus
    hunter = hunting.hunter(index, limit=120, page_size=50)
    result = hunter.hunt(ENTITY)
    assert result is not None
    assert result.total == len(planted) == 1500
    assert len(result.hits) == 120 and result.truncated
    assert len({h["_id"] for h in result.hits}) == 120
    assert all(VALUE in str(h["_source"]) for h in result.hits)
    stamps = [parse_date(h["_source"]["@timestamp"]) for h in result.hits]
    assert stamps == sorted(stamps, reverse=True), "newest first, across pages"
    assert stamps[0] == max(parse_date(a["@timestamp"]) for a in planted)
    groups = expected_agents(planted)
    got = {(a.cluster, a.agent_id): a for a in result.agents}
    assert set(got) == set(groups)
    assert ("west", "001") in got and ("wazuh", "001") in got and (None, "001") in got
    for key, stamps_of in groups.items():
        agent = got[key]
        assert agent.count == len(stamps_of)
        assert millis(agent.first_seen) == min(stamps_of) and millis(agent.last_seen) == max(stamps_of)
    names = {a["id"]: a for a in make_agents(25, seed=3)}
    for agent in result.agents:
        assert agent.agent_name == names[agent.agent_id]["name"]
        assert agent.agent_ip == names[agent.agent_id].get("ip")
    assert sum(a.count for a in result.agents) == 1500
    rules = Counter(a["rule"]["id"] for a in planted)
    assert {r.rule_id: r.count for r in result.rules} == dict(rules)
    for rule in result.rules:
        levels = {a["rule"]["level"] for a in planted if a["rule"]["id"] == rule.rule_id}
        assert rule.level == max(levels) and rule.description
    all_stamps = [parse_date(a["@timestamp"]) for a in planted]
    assert result.first_seen and millis(result.first_seen) == min(all_stamps)
    assert result.last_seen and millis(result.last_seen) == max(all_stamps)
    assert result.aggregations_complete
    assert result.query["track_total_hits"] is True and "aggs" in result.query


def test_paging_requests_use_search_after_and_stop_at_the_limit(
    hunting: Hunting, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, _ = corpus
    before = len(hunting.double.searches())
    result = hunting.hunter(index, limit=130, page_size=50).hunt(ENTITY)
    assert result is not None and len(result.hits) == 130
    bodies = [r.body for r in hunting.double.searches()[before:]]
    assert [b["size"] for b in bodies] == [50, 50, 30]
    assert "search_after" not in bodies[0] and all("search_after" in b for b in bodies[1:])
    assert all("aggs" not in b for b in bodies[1:])
    assert bodies[0]["sort"][-1] == {"_id": {"order": "asc"}}


def test_everything_returned_when_under_the_limit(
    hunting: Hunting, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, planted = corpus
    result = hunting.hunter(index, limit=2000, page_size=400).hunt(ENTITY)
    assert result is not None and not result.truncated
    assert len(result.hits) == result.total == len(planted)
    assert len({h["_id"] for h in result.hits}) == len(planted), "search_after pages neither skip nor repeat"
    assert all(VALUE in str(h["_source"]) for h in result.hits)
    by_rule = hunting.hunter(index, limit=40, order_by="rule.level:desc,@timestamp:asc").hunt(ENTITY)
    assert by_rule is not None
    levels = [h["_source"]["rule"]["level"] for h in by_rule.hits]
    assert levels == sorted(levels, reverse=True)


def test_no_match_gives_an_empty_result(hunting: Hunting, corpus: tuple[str, list[dict[str, Any]]]) -> None:
    index, _ = corpus
    result = hunting.hunter(index).hunt({**ENTITY, "value": "9.9.9.9"})
    assert result is not None
    assert (result.total, result.hits, result.agents, result.rules, result.truncated) == (
        0,
        (),
        (),
        (),
        False,
    )
    assert result.first_seen is None and result.last_seen is None


def test_time_window_is_utc_aware_and_relative_to_the_clock(hunting: Hunting) -> None:
    docs = {
        "old": doc({"data": {"srcip": VALUE}}, stamp="2024-05-01T23:59:59.999+0000"),
        "edge": doc({"data": {"srcip": VALUE}}, stamp="2024-05-02T02:00:00.000+0200"),
        "new": doc({"data": {"srcip": VALUE}}, stamp="2024-05-31T10:00:00.000-0300"),
    }
    index = hunting.index(docs)
    hunter = hunting.hunter(index, search_after="P30D")
    assert hunter.window_start() == CLOCK_NOW - dt.timedelta(days=30)
    body = hunter.build(ENTITY)
    assert {"range": {"@timestamp": {"gte": "2024-05-02T00:00:00.000Z"}}} in body["query"]["bool"]["filter"]
    result = hunter.hunt(ENTITY)
    assert result is not None and {h["_id"] for h in result.hits} == {"edge", "new"}
    absolute = hunting.hunter(index, search_after="2024-05-31T12:00:00+02:00").hunt(ENTITY)
    assert absolute is not None and {h["_id"] for h in absolute.hits} == {"new"}
    naive = WazuhHunter(
        None,
        WazuhOpenSearchSettings(url="http://x", search_after="P1D"),
        WazuhSearchSettings(),
        clock=lambda: dt.datetime(2024, 1, 1),
    )
    with pytest.raises(ValueError, match="timezone"):
        naive.build(ENTITY)
    assert format_time(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        "2023-12-31T23:00:00.000Z"
    )


def test_include_exclude_rule_exclusion_and_raw_filter(hunting: Hunting) -> None:
    docs = {
        "plain": doc({"data": {"srcip": VALUE}}),
        "integration": doc({"data": {"srcip": VALUE, "integration": "opencti"}}),
        "opencti-rule": doc({"data": {"srcip": VALUE}, "rule": {"groups": ["opencti", "ids"]}}),
        "noisy": doc({"data": {"srcip": VALUE}, "rule": {"id": "5710"}}),
        "web": doc({"data": {"srcip": VALUE}, "rule": {"groups": ["web"], "level": 12}}),
        "other-agent": doc({"data": {"srcip": VALUE}}, agent="002"),
    }
    index = hunting.index(docs)
    default = hunting.hunter(index).hunt(ENTITY)
    assert default is not None
    assert {h["_id"] for h in default.hits} == {"plain", "noisy", "web", "other-agent"}, "own alerts excluded"
    no_exclusion = hunting.hunter(index, exclude_match="").hunt(ENTITY)
    assert no_exclusion is not None and no_exclusion.total == 6
    include = hunting.hunter(index, include_match="agent.id=002,rule.groups=web,rule.groups=ids")
    assert include.hunt(ENTITY) is not None
    assert {h["_id"] for h in include.hunt(ENTITY).hits} == set()  # type: ignore[union-attr]
    either = hunting.hunter(index, include_match='{"rule.groups": ["web", "ids"]}', exclude_match="")
    assert {h["_id"] for h in either.hunt(ENTITY).hits} == {"web", "opencti-rule"}  # type: ignore[union-attr]
    excluded = hunting.hunter(index, exclude_rule_ids=["5710"]).hunt(ENTITY)
    assert excluded is not None and excluded.total == 3
    assert {r.rule_id for r in excluded.rules} == {"100001"}
    raw = hunting.hunter(index, filter='{"range": {"rule.level": {"gte": 10}}}').hunt(ENTITY)
    assert raw is not None and {h["_id"] for h in raw.hits} == {"web"}


def test_indexer_errors_become_remote_errors_without_secrets(hunting: Hunting) -> None:
    index = hunting.index({"a": doc({"data": {"srcip": VALUE}})})
    hunter = hunting.hunter(index)
    hunting.double.fail(status=503, times=1)
    with pytest.raises(RemoteError) as info:
        hunter.hunt(ENTITY)
    assert info.value.status == 503
    bad_sort = hunting.hunter(index, order_by="no.such.field:desc")
    with pytest.raises(RemoteError, match="No mapping found"):
        bad_sort.hunt(ENTITY)
    locked = WazuhHunter(
        OpenSearch(hunting.double.url, http_auth=("admin", "s3cret-word"), max_retries=0),
        WazuhOpenSearchSettings(url=hunting.double.url, index=index, search_after=None),
        WazuhSearchSettings(ignore_private_addrs=False),
    )
    with pytest.raises(RemoteError) as denied:
        locked.hunt(ENTITY)
    assert denied.value.status == 401 and "s3cret" not in str(denied.value)


def test_bad_field_table_is_a_configuration_error(tmp_path: Any) -> None:
    settings = WazuhOpenSearchSettings(url="http://x")
    with pytest.raises(ConfigurationError) as info:
        WazuhHunter(None, settings, WazuhSearchSettings(fields_version="9.x"))
    assert "WAZUH_SEARCH_FIELDS_VERSION" in info.value.problems
    bad = tmp_path / "fields.yml"
    bad.write_text("families:\n  ip: ['*.ip']\nexclude: [agent.ip]\n")
    with pytest.raises(ConfigurationError, match="reaches excluded"):
        WazuhHunter(None, settings, WazuhSearchSettings(fields_file=str(bad)))
    good = tmp_path / "mine.yml"
    good.write_text("version: mine\nfamilies:\n  ip: [data.custom_ip]\n")
    body = WazuhHunter(
        None, settings, WazuhSearchSettings(fields_file=str(good), ignore_private_addrs=False)
    ).build(ENTITY)
    assert body["query"]["bool"]["filter"][0] == {"term": {"data.custom_ip": VALUE}}


def test_builtin_table_never_reaches_excluded_fields() -> None:
    table = load_field_table("4.x")
    assert table.version == "4.x"
    assert set(table.exclude) == {"agent.ip", "predecoder.hostname"}
    import fnmatch

    for name, fields in table.families.items():
        for field in fields:
            assert field == field.strip() and " " not in field and "," not in field, (name, field)
            if name not in ("agent_ip", "agent_name"):
                assert not any(fnmatch.fnmatchcase(ex, field) for ex in table.exclude), (name, field)


def test_client_options_verify_tls_by_default() -> None:
    secure = opensearch_options(
        WazuhOpenSearchSettings(
            url="https://indexer:9200",
            username="reader",
            password="pw",
            ca_cert="/ca.pem",
            client_cert="/c.pem",
            client_key="/k.pem",
        )
    )
    assert secure["verify_certs"] is True and secure["use_ssl"] is True
    assert secure["ca_certs"] == "/ca.pem"
    assert (secure["client_cert"], secure["client_key"]) == ("/c.pem", "/k.pem")
    assert secure["http_auth"] == ("reader", "pw")
    insecure = opensearch_options(WazuhOpenSearchSettings(url="https://indexer:9200", verify_tls=False))
    assert insecure["verify_certs"] is False and "http_auth" not in insecure


def test_hunt_over_tls_with_ca_bundle_and_client_certificate() -> None:
    from ctibridge.siem.wazuh.client import build_opensearch

    with OpenSearchDouble(tls=True, require_client_cert=True) as double:
        assert double.tls is not None
        double.add_documents("wazuh-alerts-4.x-2024.05.11", [doc({"data": {"srcip": VALUE}})], ids=["a"])
        user, password = double.auth
        base = {
            "url": double.url,
            "username": user,
            "password": password,
            "search_after": None,
            "max_retries": 0,
        }
        settings = WazuhOpenSearchSettings(
            **base,
            ca_cert=str(double.tls.ca_path),
            client_cert=str(double.tls.client_cert_path),
            client_key=str(double.tls.client_key_path),
        )
        search = WazuhSearchSettings(ignore_private_addrs=False)
        result = WazuhHunter(build_opensearch(settings), settings, search).hunt(ENTITY)
        assert result is not None and result.total == 1
        without_ca = WazuhOpenSearchSettings(**base, timeout=5)
        with pytest.raises(RemoteError):  # verification is on by default: an unknown CA fails
            WazuhHunter(build_opensearch(without_ca), without_ca, search).hunt(ENTITY)


def test_more_agents_than_one_aggregation_lists_is_reported(
    hunting: Hunting, corpus: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctibridge.siem.wazuh.hunt as hunt_module

    index, planted = corpus
    monkeypatch.setattr(hunt_module, "AGG_SIZE", 4)
    result = hunting.hunter(index, limit=10).hunt(ENTITY)
    assert result is not None and not result.aggregations_complete
    assert result.total == len(planted), "the total stays exact"
    assert 0 < len(result.agents) <= 4 * 3 and len(result.rules) <= 4
