"""KibanaRules against the Kibana double: upsert by rule_id, delete, paging, retries, xsrf, spaces, mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.errors import RemoteError
from ctibridge.siem.elastic import kibana_rules
from ctibridge.siem.elastic.client import build_kibana_client
from ctibridge.siem.elastic.kibana_rules import KibanaRules
from ctibridge.siem.elastic.rules import MANAGED_TAG, RuleBuilder
from tests.doubles.elastic import ElasticDouble
from tests.doubles.elastic_kibana import KibanaDouble

RULES = r"/api/detection_engine/rules$"


@pytest.fixture(scope="module")
def kibana() -> Iterator[KibanaDouble]:
    double = KibanaDouble(spaces=("default", "sec"))
    double.start()
    yield double
    double.stop()


@pytest.fixture(autouse=True)
def clean(kibana: KibanaDouble) -> Iterator[None]:
    yield
    with kibana.lock:
        for space in kibana.spaces.values():
            space.rules.clear()
        kibana.validation_failures.clear()
    kibana.clear_faults()
    kibana.clear_requests()


def settings_for(kibana: KibanaDouble, space: str = "sec", **extra: Any) -> ElasticIntelSettings:
    return ElasticIntelSettings(
        url="https://es.invalid:9200",
        kibana_url=kibana.url,
        api_key=kibana.api_key,
        kibana_space=space,
        **extra,
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def rules_api(kibana: KibanaDouble, space: str = "sec", **kwargs: Any) -> KibanaRules:
    settings = settings_for(kibana, space)
    return KibanaRules(build_kibana_client(settings), settings.kibana_space, **kwargs)


def body_for(
    number: int, pattern: str = "[file:name = 'a.exe' AND file:size > 1]", **extra: Any
) -> dict[str, Any]:
    builder = RuleBuilder(ElasticIntelSettings(url="https://es.invalid"), "https://opencti.example")
    body = builder.rule_for(
        {
            "type": "indicator",
            "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
            "name": f"Indicator {number}",
            "pattern_type": "stix",
            "pattern": pattern,
            **extra,
        }
    )
    assert body is not None
    return body


def test_create_then_update_the_same_rule(kibana: KibanaDouble) -> None:
    api = rules_api(kibana, sleep=Sleeps())
    body = body_for(1)
    assert api.upsert(body) == "created"
    stored = kibana.rule(rule_id=body["rule_id"], space="sec")
    assert stored is not None and stored["query"] == body["query"] and stored["tags"][-1] == MANAGED_TAG
    assert kibana.validation_failures == []

    changed = body_for(1, "[file:name = 'b.exe' AND file:size > 2]", x_opencti_score=90)
    assert api.upsert(changed) == "updated"
    after = kibana.rule(rule_id=body["rule_id"], space="sec")
    assert after is not None
    assert after["id"] == stored["id"], "the same saved object was replaced, not a second rule created"
    assert after["query"] == changed["query"] and after["severity"] == "critical"
    assert after["revision"] == stored["revision"] + 1
    assert len(kibana.rules("sec")) == 1
    assert kibana.count(RULES, "PUT") == 1


def test_replayed_upsert_changes_nothing(kibana: KibanaDouble) -> None:
    api = rules_api(kibana)
    body = body_for(2)
    api.upsert(body)
    revision = kibana.rule(rule_id=body["rule_id"], space="sec")["revision"]  # type: ignore[index]
    assert api.upsert(body) == "unchanged"
    assert kibana.count(RULES, "PUT") == 0
    assert kibana.rule(rule_id=body["rule_id"], space="sec")["revision"] == revision  # type: ignore[index]


def test_update_keeps_an_analysts_enabled_choice(kibana: KibanaDouble) -> None:
    api = rules_api(kibana)
    body = body_for(3)
    assert body["enabled"] is False
    api.upsert(body)
    # the analyst reviews the rule and switches it on in Kibana
    api.client.patch(
        "/s/sec/api/detection_engine/rules", json={"rule_id": body["rule_id"], "enabled": True}
    ).raise_for_status()
    assert api.upsert(body_for(3, "[file:name = 'c.exe' AND file:size > 3]")) == "updated"
    assert kibana.rule(rule_id=body["rule_id"], space="sec")["enabled"] is True  # type: ignore[index]


def test_delete_and_delete_missing(kibana: KibanaDouble) -> None:
    api = rules_api(kibana)
    body = body_for(4)
    api.upsert(body)
    assert api.delete(body["rule_id"]) is True
    assert kibana.rule(rule_id=body["rule_id"], space="sec") is None
    assert api.delete(body["rule_id"]) is False
    assert api.delete("opencti-indicator--00000000-0000-4000-8000-999999999999") is False


def test_managed_rule_ids_pages_through_find(kibana: KibanaDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kibana_rules, "FIND_PAGE_SIZE", 3)
    api = rules_api(kibana)
    wanted = set()
    for number in range(10, 18):
        body = body_for(number)
        api.upsert(body)
        wanted.add(body["rule_id"])
    foreign = {**body_for(99), "rule_id": "someone-elses-rule", "tags": ["OpenCTI"]}
    api.upsert(foreign)
    assert api.managed_rule_ids() == wanted
    finds = kibana.requests_to(r"/_find$", "GET")
    assert len(finds) == 3 and [r.query["page"] for r in finds] == [["1"], ["2"], ["3"]]
    assert all(r.query["filter"] == [f'alert.attributes.tags:"{MANAGED_TAG}"'] for r in finds)


def test_delete_many_uses_bulk_action_and_spares_foreign_rules(kibana: KibanaDouble) -> None:
    api = rules_api(kibana)
    ids = []
    for number in range(20, 25):
        body = body_for(number)
        api.upsert(body)
        ids.append(body["rule_id"])
    api.upsert({**body_for(26), "rule_id": "foreign", "tags": ["OpenCTI"]})
    assert (
        api.delete_many([*ids[:3], "opencti-indicator--00000000-0000-4000-8000-000000000777", "foreign"]) == 3
    )
    left = {r["rule_id"] for r in kibana.rules("sec")}
    assert left == {*ids[3:], "foreign"}
    assert kibana.count(r"/_bulk_action$", "POST") == 1


def test_429_with_retry_after_is_retried(kibana: KibanaDouble) -> None:
    sleeps = Sleeps()
    api = rules_api(kibana, sleep=sleeps)
    kibana.inject(429, path=RULES, method="POST", times=2, retry_after=7)
    assert api.upsert(body_for(30)) == "created"
    assert sleeps.calls == [7.0, 7.0]
    assert len(kibana.rules("sec")) == 1


def test_persistent_5xx_and_validation_errors_raise(kibana: KibanaDouble) -> None:
    sleeps = Sleeps()
    api = rules_api(kibana, sleep=sleeps, attempts=2)
    kibana.inject(503, path=r"/_find$", times=None)
    with pytest.raises(RemoteError) as failure:
        api.managed_rule_ids()
    assert failure.value.status == 503 and len(sleeps.calls) == 2
    kibana.clear_faults()

    bad = {**body_for(31), "risk_score": 500}
    with pytest.raises(RemoteError) as invalid:
        rules_api(kibana, sleep=sleeps).upsert(bad)
    assert invalid.value.status == 400 and "risk_score" in str(invalid.value)


def test_kbn_xsrf_on_every_call_even_with_a_bare_client(kibana: KibanaDouble) -> None:
    bare = httpx.Client(base_url=kibana.url, headers={"Authorization": f"ApiKey {kibana.api_key}"})
    api = KibanaRules(bare, "sec")
    body = body_for(40)
    api.upsert(body)
    api.upsert(body_for(40, "[file:name = 'z.exe' AND file:size > 9]"))
    api.managed_rule_ids()
    api.delete(body["rule_id"])
    sent = kibana.requests_to(r"/api/detection_engine/")
    assert {r.method for r in sent} == {"GET", "POST", "PUT", "DELETE"}
    assert all(r.headers.get("kbn-xsrf") == "true" for r in sent)
    assert all(r.path.startswith("/s/sec/") for r in sent)


def test_spaces_are_kept_apart_and_a_scoped_client_is_not_prefixed_twice(kibana: KibanaDouble) -> None:
    in_default = rules_api(kibana, "default")
    in_default.upsert(body_for(50))
    assert kibana.requests_to(RULES)[0].path == "/api/detection_engine/rules"
    settings = settings_for(kibana, "sec")
    scoped = KibanaRules(build_kibana_client(settings, scoped_to_space=True), "sec")
    scoped.upsert(body_for(51))
    assert [r["rule_id"] for r in kibana.rules("default")] == [body_for(50)["rule_id"]]
    assert [r["rule_id"] for r in kibana.rules("sec")] == [body_for(51)["rule_id"]]
    assert in_default.managed_rule_ids() == {body_for(50)["rule_id"]}
    assert not kibana.requests_to(r"^/s/sec/s/sec/")


def test_ensure_installs_indicator_match_rules_idempotently(kibana: KibanaDouble) -> None:
    builder = RuleBuilder(settings_for(kibana), "https://opencti.example")
    api = rules_api(kibana)
    bodies = builder.indicator_match_rules()
    first = api.ensure(bodies)
    assert set(first.values()) == {"created"} and len(first) == len(bodies)
    assert {r["type"] for r in kibana.rules("sec")} == {"threat_match"}
    assert kibana.validation_failures == []
    writes = kibana.count(RULES, "POST") + kibana.count(RULES, "PUT")

    assert set(api.ensure(bodies).values()) == {"unchanged"}
    assert kibana.count(RULES, "POST") + kibana.count(RULES, "PUT") == writes

    # someone edits one rule in Kibana and enables it: ensure restores our query, keeps it enabled
    target = bodies[0]["rule_id"]
    api.client.patch(
        "/s/sec/api/detection_engine/rules",
        json={"rule_id": target, "threat_query": "*:*", "enabled": True},
    ).raise_for_status()
    again = api.ensure(bodies)
    assert again[target] == "updated" and list(again.values()).count("unchanged") == len(bodies) - 1
    stored = kibana.rule(rule_id=target, space="sec")
    assert stored is not None and stored["threat_query"] == bodies[0]["threat_query"] and stored["enabled"]
    assert len(kibana.rules("sec")) == len(bodies)


def test_mutual_tls_and_ca_from_settings() -> None:
    with ElasticDouble(tls=True, require_client_cert=True) as elastic:
        assert elastic.tls is not None
        base = {"url": elastic.es.url, "kibana_url": elastic.kibana.url, "api_key": elastic.api_key}
        settings = ElasticIntelSettings(
            **base,
            ca_cert=str(elastic.tls.ca_path),
            client_cert=str(elastic.tls.client_cert_path),
            client_key=str(elastic.tls.client_key_path),
        )
        api = KibanaRules(build_kibana_client(settings), "default")
        assert api.upsert(body_for(60)) == "created"
        without_cert = ElasticIntelSettings(**base, ca_cert=str(elastic.tls.ca_path))
        with pytest.raises(RemoteError):
            KibanaRules(build_kibana_client(without_cert), "default", sleep=Sleeps(), attempts=1).delete("x")
