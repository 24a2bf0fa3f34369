"""The Wazuh hunt -> STIX mapper: sightings, incidents per mode, the case, enrichment, notes, inspection.

Hunt results are built here from generated alerts, with the aggregations computed independently over all
documents (as the indexer does) and the hits cut at a limit, so truncation is exercised honestly.
"""

from __future__ import annotations

import copy
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ctibridge.model.alerts import Severity
from ctibridge.siem.wazuh.alertdoc import parse_time, severity_of_level
from ctibridge.siem.wazuh.enrich import Mapped, WazuhEnrichmentMapper, summary_note_id
from ctibridge.siem.wazuh.hunt import AgentHits, HuntResult, RuleHits
from ctibridge.siem.wazuh.inspection import Inspection
from ctibridge.siem.wazuh.notes import escape, fenced
from ctibridge.siem.wazuh.observables import AlertObservables, parse_sysmon_hashes
from ctibridge.siem.wazuh.options import EnrichmentOptions, IncidentMode
from ctibridge.stix import ids
from ctibridge.stix.bundle import make_bundle
from ctibridge.stix.markings import Tlp
from tests.fixtures.wazuh_alerts import generate_alerts, make_agents, plant
from tests.support.stix_validation import assert_valid_bundle

IP = "45.33.32.156"
IPV4 = {
    "type": "ipv4-addr",
    "spec_version": "2.1",
    "id": ids.sco_id("ipv4-addr", {"value": IP}),
    "value": IP,
}
INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": ids.indicator_id(f"[ipv4-addr:value = '{IP}']"),
    "created": "2024-01-01T00:00:00.000Z",
    "modified": "2024-01-01T00:00:00.000Z",
    "name": IP,
    "pattern": f"[ipv4-addr:value = '{IP}']",
    "pattern_type": "stix",
    "valid_from": "2024-01-01T00:00:00.000Z",
}
BASE = EnrichmentOptions(
    app_url="https://wazuh.example",
    require_indicator_for_incidents=False,
    bundle_abort_limit=None,
    hits_abort_limit=None,
)


# ---------------------------------------------------------------------------------------- test data


def as_hits(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "_id": f"doc-{n}",
            "_index": "wazuh-alerts-4.x-" + d["timestamp"][:10].replace("-", "."),
            "_source": d,
        }
        for n, d in enumerate(docs)
    ]


def hunt_result(
    docs: Sequence[dict[str, Any]], *, limit: int | None = None, entity_id: str = IPV4["id"]
) -> HuntResult:
    """A HuntResult as the hunter returns it: aggregations over every doc, hits newest first up to limit."""
    hits = as_hits(docs)
    hits.sort(key=lambda h: (h["_source"]["@timestamp"], h["_id"]), reverse=True)
    agents: dict[tuple[str | None, str], list[dict[str, Any]]] = defaultdict(list)
    rules: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        agents[((doc.get("cluster") or {}).get("name"), doc["agent"]["id"])].append(doc)
        rules[str(doc["rule"]["id"])].append(doc)

    def times(group: list[dict[str, Any]]) -> list[datetime]:
        return sorted(t for d in group if (t := parse_time(d["@timestamp"])))

    agent_hits = tuple(
        AgentHits(
            agent_id=agent_id,
            agent_name=group[-1]["agent"].get("name"),
            agent_ip=group[-1]["agent"].get("ip"),
            cluster=cluster,
            count=len(group),
            first_seen=times(group)[0],
            last_seen=times(group)[-1],
        )
        for (cluster, agent_id), group in agents.items()
    )
    rule_hits = tuple(
        RuleHits(
            rule_id=rule_id,
            level=max(int(d["rule"]["level"]) for d in group),
            description=group[-1]["rule"].get("description"),
            count=len(group),
            first_seen=times(group)[0],
            last_seen=times(group)[-1],
        )
        for rule_id, group in rules.items()
    )
    all_times = times(list(docs))
    kept = hits[:limit] if limit is not None else hits
    return HuntResult(
        entity_id=entity_id,
        query={"query": {"bool": {"filter": [{"term": {"data.srcip": IP}}]}}, "size": 50},
        total=len(docs),
        first_seen=all_times[0] if all_times else None,
        last_seen=all_times[-1] if all_times else None,
        agents=agent_hits,
        rules=rule_hits,
        hits=tuple(kept),
        truncated=len(kept) < len(docs),
    )


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    """24 alerts with the address over agents 000-004, from four rules (levels 7, 5, 3, 3)."""
    return plant(IP, "ipv4", 24, agents=5, seed=3)


def run(
    result: HuntResult,
    entity: dict[str, Any] = IPV4,
    related: Sequence[dict[str, Any]] = (),
    **options: Any,
) -> Mapped:
    mapper = WazuhEnrichmentMapper(replace(BASE, **options))
    inspection = mapper.inspect(entity, related)
    assert inspection.skip is None, inspection.skip
    mapped = mapper.map(entity, result, inspection)
    if mapped.objects:
        assert_valid_bundle(make_bundle(mapped.objects))
    return mapped


def of_type(mapped: Mapped, stix_type: str) -> list[dict[str, Any]]:
    return [o for o in mapped.objects if o["type"] == stix_type]


def alert_notes(mapped: Mapped) -> list[dict[str, Any]]:
    return [n for n in of_type(mapped, "note") if n["id"] != summary_note_id(IPV4["id"])]


def rels(mapped: Mapped, kind: str) -> list[tuple[str, str]]:
    return [
        (o["source_ref"], o["target_ref"])
        for o in of_type(mapped, "relationship")
        if o["relationship_type"] == kind
    ]


# ---------------------------------------------------------------------------------------- severity


def _band(level: int) -> Severity:
    if level <= 6:
        return Severity.LOW
    if level <= 11:
        return Severity.MEDIUM
    if level <= 14:
        return Severity.HIGH
    return Severity.CRITICAL


@pytest.mark.parametrize("level", range(0, 21))
def test_every_rule_level_maps_to_the_dashboard_band(level: int) -> None:
    assert severity_of_level(level) is _band(level)


def test_levels_the_old_connector_got_wrong_and_out_of_range() -> None:
    assert [severity_of_level(lv) for lv in (10, 13, 15)] == [
        Severity.MEDIUM,
        Severity.HIGH,
        Severity.CRITICAL,
    ]
    assert severity_of_level(-3) is Severity.LOW and severity_of_level(None) is Severity.LOW
    assert severity_of_level(99) is Severity.CRITICAL


# ---------------------------------------------------------------------------------------- incident modes


def expected(docs: Sequence[dict[str, Any]], threshold: int = 1) -> dict[str, int]:
    qualifying = [d for d in docs if int(d["rule"]["level"]) >= threshold]
    return {
        "agents": len({d["agent"]["id"] for d in docs}),
        "agent_systems": len({d["agent"]["id"] for d in docs if d["agent"]["id"] != "000"}),
        "rules": len({d["rule"]["id"] for d in qualifying}),
        "alerts": len(qualifying),
        "agents_qualifying": len({d["agent"]["id"] for d in qualifying}),
        "rule_ids": len({d["rule"]["id"] for d in docs}),
    }


@pytest.mark.parametrize(
    ("mode", "incidents"),
    [
        (IncidentMode.NEVER, lambda e: 0),
        (IncidentMode.PER_QUERY, lambda e: 1),
        (IncidentMode.PER_SIGHTING, lambda e: e["agents_qualifying"]),
        (IncidentMode.PER_ALERT_RULE, lambda e: e["rules"]),
        (IncidentMode.PER_ALERT, lambda e: e["alerts"]),
    ],
)
def test_each_mode_makes_the_expected_objects(
    docs: list[dict[str, Any]], mode: IncidentMode, incidents: Any
) -> None:
    e = expected(docs)
    mapped = run(hunt_result(docs), incident_mode=mode)
    made = len(of_type(mapped, "incident"))
    assert made == incidents(e) and made == mapped.counts["incidents"]
    # one sighting per agent system plus the SIEM (agent 000), whatever the mode
    assert len(of_type(mapped, "sighting")) == e["agent_systems"] + 1
    assert len(of_type(mapped, "case-incident")) == (1 if made else 0)
    # summary + alert notes: 2 per rule, 10 at most
    assert len(of_type(mapped, "note")) == 1 + min(10, 2 * e["rule_ids"])
    if made:
        assert mapped.counts["enrichment objects"] > 0
    else:
        assert not of_type(mapped, "attack-pattern") and "enrichment objects" not in mapped.counts


@pytest.mark.parametrize(
    ("mode", "count"),
    [
        (IncidentMode.PER_QUERY, lambda e: 1),
        (IncidentMode.PER_SIGHTING, lambda e: e["agents_qualifying"]),
        (IncidentMode.PER_ALERT_RULE, lambda e: e["rules"]),
        (IncidentMode.PER_ALERT, lambda e: e["alerts"]),
    ],
)
def test_rule_level_threshold_gates_incidents(
    docs: list[dict[str, Any]], mode: IncidentMode, count: Any
) -> None:
    e = expected(docs, threshold=6)
    assert 0 < e["alerts"] < len(docs)
    mapped = run(hunt_result(docs), incident_mode=mode, incident_threshold=6)
    assert len(of_type(mapped, "incident")) == count(e)
    assert {i["severity"] for i in of_type(mapped, "incident")} == {"medium"}  # only level 7 qualifies


def test_excluded_rules_make_no_incident_and_no_case(docs: list[dict[str, Any]]) -> None:
    top_rule = max(docs, key=lambda d: d["rule"]["level"])["rule"]["id"]
    mapped = run(
        hunt_result(docs), incident_mode=IncidentMode.PER_ALERT_RULE, incident_threshold=6,
        incident_rule_exclude_list=frozenset({top_rule}),
    )  # fmt: skip
    assert not of_type(mapped, "incident") and not of_type(mapped, "case-incident")
    assert of_type(mapped, "sighting")  # sightings stay


def test_incident_relations_and_deterministic_ids(docs: list[dict[str, Any]]) -> None:
    result = hunt_result(docs)
    first = run(result, incident_mode=IncidentMode.PER_SIGHTING)
    again = run(copy.deepcopy(result), incident_mode=IncidentMode.PER_SIGHTING)
    assert [o["id"] for o in first.objects] == [o["id"] for o in again.objects]
    assert first.objects == again.objects
    incidents = {i["id"] for i in of_type(first, "incident")}
    systems = {i["id"] for i in of_type(first, "identity") if i["identity_class"] == "system"}
    assert {(s, t) for s, t in rels(first, "related-to") if s in incidents} == {
        (i, IPV4["id"]) for i in incidents
    }
    targets = rels(first, "targets")
    assert {s for s, _ in targets} == incidents and {t for _, t in targets} <= systems
    for incident in of_type(first, "incident"):
        assert incident["incident_type"] == "alert" and incident["source"] == "Wazuh"
        # `created` is the entity's (none here: the epoch), never the run's; first/last seen are the alerts'
        assert incident["created"] == "1970-01-01T00:00:00.000Z"
        assert incident["first_seen"] <= incident["last_seen"] and incident["first_seen"] > "2000"


OCTI_SCO = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"


@pytest.mark.parametrize(
    "mode",
    [IncidentMode.PER_QUERY, IncidentMode.PER_SIGHTING, IncidentMode.PER_ALERT_RULE, IncidentMode.PER_ALERT],
)
def test_a_narrower_window_updates_the_same_incidents_and_case(
    docs: list[dict[str, Any]], mode: IncidentMode
) -> None:
    """A later hunt whose look-back window no longer reaches the oldest alerts (but still holds alerts of
    every agent and rule) must update, not duplicate: ids may not depend on the oldest alert in the window."""
    entity = {**IPV4, "extensions": {OCTI_SCO: {"created_at": "2025-03-04T05:06:07.890Z"}}}
    newest = defaultdict(str)
    for d in docs:
        for key in (f"agent {d['agent']['id']}", f"rule {d['rule']['id']}"):
            newest[key] = max(newest[key], d["@timestamp"])
    cutoff = min(newest.values())  # every agent and rule keeps its newest alert
    narrow_docs = [d for d in docs if d["@timestamp"] >= cutoff]
    assert len(narrow_docs) < len(docs)
    wide = run(hunt_result(docs), entity, incident_mode=mode)
    narrow = run(hunt_result(narrow_docs), entity, incident_mode=mode)

    def by_id(mapped: Mapped, kind: str) -> dict[str, dict[str, Any]]:
        return {o["id"]: o for o in of_type(mapped, kind)}

    wide_incidents, narrow_incidents = by_id(wide, "incident"), by_id(narrow, "incident")
    if mode is IncidentMode.PER_ALERT:  # one per alert: the alerts still in the window keep theirs
        assert set(narrow_incidents) < set(wide_incidents) and len(narrow_incidents) == len(narrow_docs)
    else:
        assert set(narrow_incidents) == set(wide_incidents) and narrow_incidents
        moved = [
            i for i in narrow_incidents if narrow_incidents[i]["first_seen"] > wide_incidents[i]["first_seen"]
        ]
        assert moved  # the window did move past some incident's oldest alert, and the id held
        for incident in narrow_incidents.values():
            assert incident["created"] == "2025-03-04T05:06:07.890Z"
    assert set(by_id(narrow, "case-incident")) == set(by_id(wide, "case-incident")) != set()
    narrow_first = min(i["first_seen"] for i in narrow_incidents.values())
    oldest_in_window = min(t for d in narrow_docs if (t := parse_time(d["@timestamp"])))
    assert narrow_first == ids.format_time(oldest_in_window)  # the real window value, not the anchor

    # Distinct entities stay distinct even when their names coincide: their creation times differ.
    # (Per alert, one alert is one incident, whichever entities it matched.)
    twin = {**entity, "extensions": {OCTI_SCO: {"created_at": "2025-03-04T05:06:07.891Z"}}}
    other = run(hunt_result(narrow_docs), twin, incident_mode=mode)
    if mode is not IncidentMode.PER_ALERT:
        assert not set(by_id(other, "incident")) & set(narrow_incidents)
    assert not set(by_id(other, "case-incident")) & set(by_id(narrow, "case-incident"))


def test_indicator_entity_is_sighted_and_indicates_incidents(docs: list[dict[str, Any]]) -> None:
    mapped = run(
        hunt_result(docs, entity_id=INDICATOR["id"]), entity=INDICATOR, incident_mode=IncidentMode.PER_QUERY
    )
    assert {s["sighting_of_ref"] for s in of_type(mapped, "sighting")} == {INDICATOR["id"]}
    [incident] = of_type(mapped, "incident")
    assert rels(mapped, "indicates") == [(INDICATOR["id"], incident["id"])]
    assert not [r for r in rels(mapped, "related-to") if r[1] == INDICATOR["id"]]


def test_observable_sightings_use_the_opencti_reference(docs: list[dict[str, Any]]) -> None:
    mapped = run(hunt_result(docs))
    assert {s["x_opencti_sighting_of_ref"] for s in of_type(mapped, "sighting")} == {IPV4["id"]}
    assert IPV4["id"] not in {o["id"] for o in mapped.objects}  # the entity itself is never re-sent


# ---------------------------------------------------------------------------------------- sightings


def test_sighting_counts_come_from_aggregations_not_the_page(docs: list[dict[str, Any]]) -> None:
    result = hunt_result(docs, limit=5)
    assert result.truncated
    mapped = run(result)
    sightings = of_type(mapped, "sighting")
    assert sum(s["count"] for s in sightings) == len(docs)
    by_agent = {a.agent_name if a.agent_id != "000" else "Wazuh SIEM": a for a in result.agents}
    names = {i["id"]: i["name"] for i in of_type(mapped, "identity")}
    for s in sightings:
        agent = by_agent[names[s["where_sighted_refs"][0]]]
        assert s["count"] == agent.count
        assert parse_time(s["first_seen"]) == agent.first_seen.replace(
            microsecond=agent.first_seen.microsecond // 1000 * 1000
        )
        assert "of them retrieved" in s["description"]  # truncation said where it applies


def test_one_system_when_agents_are_not_systems(docs: list[dict[str, Any]]) -> None:
    mapped = run(hunt_result(docs), agents_as_systems=False)
    [sighting] = of_type(mapped, "sighting")
    assert sighting["count"] == len(docs)
    assert sighting["where_sighted_refs"] == [ids.identity_id("Wazuh SIEM", "system")]
    assert [i["name"] for i in of_type(mapped, "identity") if i["identity_class"] == "system"] == [
        "Wazuh SIEM"
    ]


def test_agents_relate_to_the_siem_and_carry_their_ip_and_hostname(docs: list[dict[str, Any]]) -> None:
    mapped = run(hunt_result(docs))
    siem = ids.identity_id("Wazuh SIEM", "system")
    agents = [i for i in of_type(mapped, "identity") if i["identity_class"] == "system" and i["id"] != siem]
    assert {(a["id"], siem) for a in agents} <= set(rels(mapped, "related-to"))
    agent_ips = {d["agent"]["ip"] for d in docs if "ip" in d["agent"]}
    ips = {o["value"] for o in of_type(mapped, "ipv4-addr")}
    assert agent_ips <= ips
    assert {h["value"] for h in of_type(mapped, "hostname")} == {a["name"] for a in agents}
    assert all(o["x_opencti_labels"] == ["wazuh_ignore"] for o in of_type(mapped, "hostname"))
    off = run(hunt_result(docs), create_agent_ip_observable=False, create_agent_hostname_observable=False)
    assert not of_type(off, "hostname") and not agent_ips & {o["value"] for o in of_type(off, "ipv4-addr")}


def test_same_agent_id_in_two_clusters_gives_two_systems() -> None:
    agents = [{"id": "001", "name": "web", "ip": "10.0.0.1"}]
    one = plant(IP, "ipv4", 4, agents=agents, seed=1)
    two = copy.deepcopy(plant(IP, "ipv4", 4, agents=agents, seed=2))
    for doc in two:
        doc["cluster"] = {"name": "second", "node": "n"}
    mapped = run(hunt_result(one + two))
    systems = [
        i
        for i in of_type(mapped, "identity")
        if i["identity_class"] == "system" and i["name"] != "Wazuh SIEM"
    ]
    assert len(systems) == 2 and len({s["id"] for s in systems}) == 2
    assert sorted(s["count"] for s in of_type(mapped, "sighting")) == [4, 4]


def test_dashboard_links_within_limits(docs: list[dict[str, Any]]) -> None:
    mapped = run(hunt_result(docs), agents_as_systems=False, max_extrefs=3, max_extrefs_per_alert_rule=1)
    [sighting] = of_type(mapped, "sighting")
    refs = sighting["external_references"]
    alerts = [r for r in refs if "/app/discover#/context/wazuh-alerts-*/" in r["url"]]
    rules = [r for r in refs if "/app/rules#/manager/?tab=rules&redirectRule=" in r["url"]]
    assert len(alerts) == 3 and len(rules) == 3 and len(refs) == 6
    # one alert per rule, each the newest of its rule
    by_rule = defaultdict(list)
    for n, doc in enumerate(docs):
        by_rule[doc["rule"]["id"]].append((doc["@timestamp"], f"doc-{n}"))
    newest = {max(v)[1] for v in by_rule.values()}
    assert {r["url"].rsplit("/", 1)[1] for r in alerts} <= newest
    assert not [
        s for s in of_type(run(hunt_result(docs), app_url=None), "sighting") if "external_references" in s
    ]


# ---------------------------------------------------------------------------------------- case and enrichment


def test_case_holds_everything_and_takes_priority_from_the_worst_incident(docs: list[dict[str, Any]]) -> None:
    mapped = run(hunt_result(docs), incident_mode=IncidentMode.PER_ALERT_RULE)
    [case] = of_type(mapped, "case-incident")
    worst = max((Severity(i["severity"]) for i in of_type(mapped, "incident")), key=lambda s: s.rank)
    assert case["severity"] == worst.value and case["priority"] == worst.priority
    held = set(case["object_refs"])
    for obj in mapped.objects:
        if (
            obj["type"] not in ("marking-definition", "note", "case-incident")
            and obj["id"] != mapped.objects[0]["id"]
        ):
            assert obj["id"] in held, obj["type"]
    assert IPV4["id"] in held


def test_enrichment_processes_files_hashes_and_every_mitre_id() -> None:
    docs = generate_alerts(30, seed=5, categories=("sysmon_process", "sshd", "web", "registry", "fim"))
    mapped = run(hunt_result(docs), incident_mode=IncidentMode.PER_QUERY, bundle_abort_limit=None)
    processes = of_type(mapped, "process")
    by_id = {o["id"]: o for o in mapped.objects}
    children = [p for p in processes if "parent_ref" in p]
    sysmon = [d for d in docs if "sysmon_event1" in d["rule"]["groups"]]
    assert len(children) == len({d["data"]["win"]["eventdata"]["commandLine"] for d in sysmon}) > 0
    for child in children:
        assert by_id[child["parent_ref"]]["type"] == "process"
        image = by_id[child["image_ref"]]
        assert set(image["hashes"]) == {"MD5", "SHA-1", "SHA-256"}
        assert all(v == v.lower() for v in image["hashes"].values())
    mitre = {m for d in docs for m in d["rule"].get("mitre", {}).get("id", [])}
    assert {a["x_mitre_id"] for a in of_type(mapped, "attack-pattern")} == mitre and len(mitre) >= 3
    [incident] = of_type(mapped, "incident")
    assert {t for s, t in rels(mapped, "uses") if s == incident["id"]} == {
        a["id"] for a in of_type(mapped, "attack-pattern")
    }
    registry = [
        d["syscheck"]["path"] for d in docs if "syscheck_registry_value_modified" in d["rule"]["groups"]
    ]
    assert {k["key"] for k in of_type(mapped, "windows-registry-key")} == set(registry)
    fim_paths = {d["syscheck"]["path"] for d in docs if d["decoder"]["name"] == "syscheck_integrity_changed"}
    assert {d["path"] for d in of_type(mapped, "directory")} >= {p.rsplit("/", 1)[0] for p in fim_paths}
    for obs in mapped.objects:
        if obs["type"] in ("process", "file", "directory", "windows-registry-key", "user-account"):
            assert obs["x_opencti_labels"] == ["wazuh_ignore"]
    related = {s for s, t in rels(mapped, "related-to") if t == incident["id"]}
    assert {p["id"] for p in processes} & related


def test_enrichment_types_limit_what_is_made() -> None:
    docs = generate_alerts(20, seed=5, categories=("sysmon_process", "sshd"))
    mapped = run(
        hunt_result(docs), incident_mode=IncidentMode.PER_QUERY, enrich_types=frozenset({"attack-pattern"})
    )
    assert (
        of_type(mapped, "attack-pattern")
        and not of_type(mapped, "process")
        and not of_type(mapped, "user-account")
    )


def test_sysmon_hash_string_and_bad_values_skipped_per_field() -> None:
    assert parse_sysmon_hashes("SHA1=AA,MD5=BB,SHA256=CC,IMPHASH=DD") == {
        "sha1": "AA",
        "md5": "BB",
        "sha256": "CC",
    }
    assert parse_sysmon_hashes(None) == {} and parse_sysmon_hashes("garbage") == {}
    source = {
        "data": {
            "srcip": "999.1.1.1",
            "dstip": "8.8.8.8",
            "srcport": "not-a-port",
            "url": "/relative/only",
            "win": {"eventdata": {"commandLine": "cmd.exe /c x", "processId": "oops", "hashes": "MD5=XYZ",
                                  "image": "C:\\Windows\\cmd.exe", "user": ["not", "text"]}},
        },
        "syscheck": {"path": "/etc/passwd", "md5_after": "0" * 32, "sha1_after": "zz", "size_after": "big"},
        "rule": {"mitre": {"id": ["T1059", "bogus", 5, "T1059.001"]}},
    }  # fmt: skip
    found = AlertObservables()(source)
    kinds = Counter(type(o).__name__ for o in found.observables)
    assert [o.value for o in found.observables if type(o).__name__ == "IPAddress"] == ["8.8.8.8"]
    assert "Url" not in kinds and "NetworkTraffic" not in kinds
    [process] = [o for o in found.observables if type(o).__name__ == "Process"]
    assert process.pid is None and process.command_line == "cmd.exe /c x" and process.image.hashes == ()
    [passwd] = [o for o in found.observables if type(o).__name__ == "File" and o.name == "passwd"]
    assert passwd.hashes == () and passwd.size is None
    assert [t.id for t in found.techniques] == ["T1059", "T1059.001"]


def test_broken_alerts_never_stop_the_mapping(docs: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(docs[:6])
    broken[0]["@timestamp"] = "yesterday-ish"
    broken[0]["timestamp"] = "not a time"
    broken[1]["rule"] = {"id": "5710", "level": "high?", "mitre": {"id": "T1110"}}
    broken[2]["data"] = ["not", "an", "object"]
    broken[3].pop("agent")
    broken[4]["syscheck"] = {"path": None, "md5_after": 12}
    broken[5]["_weird"] = {"nested": [{"x": object.__name__}]}
    result = hunt_result(docs)
    result = replace(result, hits=tuple(as_hits(broken)) + result.hits[6:])
    for mode in IncidentMode:
        mapped = run(result, incident_mode=mode)
        assert len(of_type(mapped, "sighting")) == expected(docs)["agent_systems"] + 1


# ---------------------------------------------------------------------------------------- notes


def test_summary_note_reports_totals_truncation_agents_and_rules(docs: list[dict[str, Any]]) -> None:
    result = hunt_result(docs, limit=7)
    mapped = run(result, incident_mode=IncidentMode.PER_QUERY)
    [summary] = [n for n in of_type(mapped, "note") if n["id"] == summary_note_id(IPV4["id"])]
    content = summary["content"]
    assert f"**{len(docs)}** matching alerts" in content
    assert f"Only **7** of the **{len(docs)}** alerts were retrieved" in content
    for agent in result.agents:
        assert f"| {agent.agent_id} | {escape(agent.agent_name)} |" in content
        assert f"| {agent.count} |" in content
    for rule in result.rules:
        assert f"| {rule.rule_id} | {rule.level} | {escape(rule.description)} | {rule.count} |" in content
    refs = set(summary["object_refs"])
    assert {s["id"] for s in of_type(mapped, "sighting")} | {
        i["id"] for i in of_type(mapped, "incident")
    } < refs
    full = run(hunt_result(docs), incident_mode=IncidentMode.PER_QUERY)
    [again] = [n for n in of_type(full, "note") if n["id"] == summary["id"]]
    assert f"All {len(docs)} matching alerts were retrieved" in again["content"]  # new content, same note id


def test_summary_follows_its_options(docs: list[dict[str, Any]]) -> None:
    off = run(hunt_result(docs), create_sighting_summary=False, create_incident_summary=False)
    assert summary_note_id(IPV4["id"]) not in {n["id"] for n in of_type(off, "note")}
    only_incidents = run(
        hunt_result(docs), incident_mode=IncidentMode.PER_QUERY, create_sighting_summary=False
    )
    [summary] = [n for n in of_type(only_incidents, "note") if n["id"] == summary_note_id(IPV4["id"])]
    assert not set(summary["object_refs"]) & {s["id"] for s in of_type(only_incidents, "sighting")}


@pytest.mark.parametrize(("total", "per_rule"), [(0, 0), (3, 1), (10, 2), (50, 50)])
def test_alert_notes_limited_per_rule_and_in_total(
    docs: list[dict[str, Any]], total: int, per_rule: int
) -> None:
    mapped = run(
        hunt_result(docs), max_notes=total, max_notes_per_alert_rule=per_rule, create_sighting_summary=False
    )
    notes = alert_notes(mapped)
    rules = Counter(n["abstract"].split("(rule ", 1)[1].split(")", 1)[0] for n in notes)
    rule_count = len({d["rule"]["id"] for d in docs})
    assert len(notes) == min(total, per_rule * rule_count, len(docs))
    assert all(count <= per_rule for count in rules.values())


def test_alert_note_is_a_readable_subset_unless_the_full_document_is_asked(
    docs: list[dict[str, Any]],
) -> None:
    subset = run(hunt_result(docs), max_notes=1, max_notes_per_alert_rule=1, create_sighting_summary=False)
    [note] = alert_notes(subset)
    assert "### Alert document" not in note["content"] and "| Rule |" in note["content"]
    full = run(hunt_result(docs), max_notes=1, max_notes_per_alert_rule=1, create_sighting_summary=False,
               alert_note_full_document=True)  # fmt: skip
    [note] = alert_notes(full)
    assert "### Alert document" in note["content"] and '"full_log"' in note["content"]


HOSTILE = "x](http://evil.example) <script>alert(1)</script> **bold** # head | pipe `tick` ```fence``` \\"


def test_markdown_from_alerts_is_escaped(docs: list[dict[str, Any]]) -> None:
    hostile = copy.deepcopy(docs)
    for doc in hostile:
        doc["agent"]["name"] = "win-" + HOSTILE[:20]
        doc["rule"]["description"] = HOSTILE
        doc["full_log"] = HOSTILE + "\n````\n# not a heading"
    mapped = run(hunt_result(hostile), incident_mode=IncidentMode.PER_QUERY, alert_note_full_document=True)
    for note in of_type(mapped, "note"):
        outside_fences = _outside_fences(note["content"])
        for unescaped in (r"(?<!\\)\]\(http", r"(?<!\\)<script", r"(?<!\\)\| pipe", r"\*\*bold"):
            assert not re.search(unescaped, outside_fences), unescaped
        headings = [line for line in outside_fences.split("\n") if line.startswith("#")]
        assert all(h.startswith(("## Wazuh", "### ")) and "not a heading" not in h for h in headings)
    assert escape("a|b\nc") == "a\\|b c"
    block = fenced("x ```` y")
    assert block.startswith("`````\n") and block.endswith("\n`````")


def _outside_fences(content: str) -> str:
    """The markdown outside code blocks, where escaping matters (a fence is closed by an equal run)."""
    out, fence = [], None
    for line in content.split("\n"):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            continue
        if fence is not None:
            if stripped == fence:
                fence = None
            continue
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- vulnerabilities


def test_vulnerability_incidents_need_the_cvss_threshold_and_an_active_finding() -> None:
    cve = "CVE-2024-12345"
    agents = make_agents(3, 0)
    docs = plant(cve, "cve", 12, agents=agents, seed=9)
    vuln = {"type": "vulnerability", "spec_version": "2.1", "id": ids.vulnerability_id(cve), "name": cve,
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z"}  # fmt: skip
    result = hunt_result(docs, entity_id=vuln["id"])
    assert not of_type(
        run(result, entity=vuln, incident_mode=IncidentMode.PER_ALERT), "incident"
    )  # no threshold
    mapped = run(result, entity=vuln, incident_mode=IncidentMode.PER_ALERT, vulnerability_cvss3_threshold=7.0)
    strong = [d for d in docs if float(d["data"]["vulnerability"]["cvss"]["cvss3"]["base_score"]) >= 7.0]
    assert len(of_type(mapped, "incident")) == len(strong) > 0
    assert {t for _, t in rels(mapped, "targets")} >= {vuln["id"]}
    packages = {o["id"]: o["name"] for o in of_type(mapped, "software")}
    assert {(packages[s], t) for s, t in rels(mapped, "has")} == {
        (d["data"]["vulnerability"]["package"]["name"], vuln["id"]) for d in strong
    }
    # resolved later on agent 001: no incident for that agent any more
    solved = copy.deepcopy(docs[0])
    solved["agent"] = dict(agents[1])
    solved["rule"] = {"id": "23502", "level": 3, "description": "solved"}
    solved["@timestamp"] = solved["timestamp"] = "2030-01-01T00:00:00.000+0000"
    mapped = run(hunt_result([*docs, solved], entity_id=vuln["id"]), entity=vuln,
                 incident_mode=IncidentMode.PER_ALERT, vulnerability_cvss3_threshold=7.0)  # fmt: skip
    remaining = [d for d in strong if d["agent"]["id"] != agents[1]["id"]]
    assert len(of_type(mapped, "incident")) == len(remaining)


# ------------------------------------------------------------------------------ limits and inspection


def test_abort_limits(docs: list[dict[str, Any]]) -> None:
    mapper = WazuhEnrichmentMapper(replace(BASE, hits_abort_limit=10))
    mapped = mapper.map(IPV4, hunt_result(docs), Inspection())
    assert mapped.objects == [] and "WAZUH_HITS_ABORT_LIMIT" in (mapped.aborted or "")
    mapper = WazuhEnrichmentMapper(replace(BASE, system_abort_limit=2))
    assert "WAZUH_SYSTEM_ABORT_LIMIT" in (mapper.map(IPV4, hunt_result(docs), Inspection()).aborted or "")
    mapper = WazuhEnrichmentMapper(replace(BASE, bundle_abort_limit=20))
    mapped = mapper.map(IPV4, hunt_result(docs), Inspection())
    assert mapped.objects == [] and "WAZUH_BUNDLE_ABORT_LIMIT" in (mapped.aborted or "")
    assert "nothing sent" in mapped.message


def test_markings_and_author(docs: list[dict[str, Any]]) -> None:
    mapped = run(hunt_result(docs), tlps=(Tlp.GREEN, Tlp.AMBER))
    markings = {m["id"] for m in of_type(mapped, "marking-definition")}
    assert markings == {Tlp.GREEN.marking_id, Tlp.AMBER.marking_id}
    author = ids.identity_id("Wazuh", "organization")
    for obj in mapped.objects:
        if obj["type"] in ("incident", "sighting", "note", "relationship"):
            assert obj["created_by_ref"] == author and set(obj["object_marking_refs"]) == markings


def _inspect(entity: dict[str, Any], related: Sequence[dict[str, Any]] = (), **options: Any) -> Inspection:
    mapper = WazuhEnrichmentMapper(replace(BASE, **options))
    return mapper.inspect(entity, related)


def test_inspection_skips_with_a_reason() -> None:
    red = {**IPV4, "object_marking_refs": [Tlp.RED.marking_id]}
    assert "above the ceiling" in (_inspect(red, max_tlp=Tlp.AMBER).skip or "")
    assert _inspect({**IPV4, "object_marking_refs": [Tlp.AMBER.marking_id]}, max_tlp=Tlp.AMBER).skip is None
    labelled = {**IPV4, "x_opencti_labels": ["Hygiene"]}
    assert "hygiene" in (_inspect(labelled).skip or "")
    ext = {
        **IPV4,
        "extensions": {
            "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82": {"labels": ["wazuh_ignore"]}
        },
    }
    assert "wazuh_ignore" in (_inspect(ext).skip or "")
    own = {**IPV4, "x_opencti_created_by_ref": ids.identity_id("Wazuh", "organization")}
    assert _inspect(own).skip is None
    assert "created by this connector" in (_inspect(own, ignore_own_entities=True).skip or "")
    private = {**IPV4, "value": "10.1.2.3"}
    assert "private" in (_inspect(private).skip or "")
    assert _inspect(private, ignore_private_addrs=False).skip is None
    assert "revoked" in (_inspect({**INDICATOR, "revoked": True}).skip or "")
    assert "detection" in (_inspect(INDICATOR, require_indicator_detection=True).skip or "")
    assert "score" in (
        _inspect({**INDICATOR, "x_opencti_score": 40}, indicator_score_threshold=50).skip or ""
    )
    assert _inspect({**INDICATOR, "x_opencti_score": 60}, indicator_score_threshold=50).indicators == (
        INDICATOR["id"],
    )


def test_indicator_requirement_for_observables() -> None:
    strict = {"create_obs_sightings": False, "require_indicator_for_incidents": True}
    assert "qualifying indicator" in (_inspect(IPV4, **strict).skip or "")
    based_on = {
        "type": "relationship",
        "id": "relationship--00000000-0000-4000-8000-000000000001",
        "relationship_type": "based-on",
        "source_ref": INDICATOR["id"],
        "target_ref": IPV4["id"],
    }
    found = _inspect(IPV4, [INDICATOR, based_on], **strict)
    assert (
        found.skip is None and found.indicators == (INDICATOR["id"],) and found.sightings and found.incidents
    )
    revoked = _inspect(IPV4, [{**INDICATOR, "revoked": True}, based_on], **strict)
    assert revoked.skip is not None
    sightings_only = _inspect(IPV4, create_obs_sightings=True, require_indicator_for_incidents=True)
    assert sightings_only.skip is None and sightings_only.sightings and not sightings_only.incidents


def test_platform_indicators_are_asked_only_when_the_request_has_none_that_qualifies() -> None:
    strict = replace(BASE, create_obs_sightings=False, require_indicator_for_incidents=True)
    mapper = WazuhEnrichmentMapper(strict)
    asked: list[str] = []

    def lookup(entity_id: str) -> list[dict[str, Any]]:
        asked.append(entity_id)
        return [{**INDICATOR, "revoked": True}, INDICATOR, INDICATOR]

    based_on = {
        "type": "relationship",
        "relationship_type": "based-on",
        "source_ref": INDICATOR["id"],
        "target_ref": IPV4["id"],
        "id": "relationship--00000000-0000-4000-8000-000000000001",
    }
    assert mapper.inspect(IPV4, [INDICATOR, based_on], lookup).indicators == (INDICATOR["id"],)
    assert asked == []
    red = {**IPV4, "object_marking_refs": [Tlp.RED.marking_id]}
    assert mapper.inspect(red, [], lookup).skip and asked == []  # skipped before any platform call
    found = mapper.inspect(IPV4, [{**INDICATOR, "revoked": True}, based_on], lookup)
    assert found.skip is None and found.indicators == (INDICATOR["id"],) and found.incidents
    assert asked == [IPV4["id"]]
    assert "qualifying indicator" in (mapper.inspect(IPV4, [], lambda _id: []).skip or "")


def test_no_incident_without_indicator_when_required(docs: list[dict[str, Any]]) -> None:
    mapper = WazuhEnrichmentMapper(replace(BASE, require_indicator_for_incidents=True))
    inspection = mapper.inspect(IPV4, [])
    mapped = mapper.map(IPV4, hunt_result(docs), inspection)
    assert of_type(mapped, "sighting") and not of_type(mapped, "incident")


def test_no_matches_make_nothing() -> None:
    empty = HuntResult(IPV4["id"], {}, 0, None, None, (), (), (), False)
    assert run(empty).objects == []
    assert parse_time("2022-05-11T12:29:19.905+0000") == datetime(2022, 5, 11, 12, 29, 19, 905000, tzinfo=UTC)


def test_options_from_the_wazuh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctibridge.config.wazuh import WazuhEnrichSettings, WazuhSearchSettings, WazuhSettings

    for name, value in {
        "WAZUH_MAX_TLP": "amber+strict",
        "WAZUH_TLPS": "green,amber",
        "WAZUH_CREATE_INCIDENT": "Per Alert Rule",
        "WAZUH_CREATE_INCIDENT_THRESHOLD": "7",
        "WAZUH_INCIDENT_RULE_EXCLUDE_LIST": "5710,5712",
        "WAZUH_ENRICH_LABELS": "Wazuh_Ignore,seen",
        "WAZUH_HITS_ABORT_LIMIT": "none",
        "WAZUH_SEARCH_IGNORE_PRIVATE_ADDRS": "false",
        "WAZUH_ENRICH_TYPES": "process,attack-pattern",
        "WAZUH_ENRICH_FILENAME_BEHAVIOUR": "create-dir",
    }.items():
        monkeypatch.setenv(name, value)
    options = EnrichmentOptions.from_settings(WazuhSettings(), WazuhSearchSettings(), WazuhEnrichSettings())
    assert options.max_tlp is Tlp.AMBER_STRICT and options.tlps == (Tlp.GREEN, Tlp.AMBER)
    assert options.incident_mode is IncidentMode.PER_ALERT_RULE and options.incident_threshold == 7
    assert options.incident_rule_exclude_list == {"5710", "5712"}
    assert options.enrich_labels == ("wazuh_ignore", "seen") and options.hits_abort_limit is None
    assert not options.ignore_private_addrs and options.enrich_types == {"process", "attack-pattern"}
    assert options.create_directories and not options.remove_path
    assert options.index_pattern_id == "wazuh-alerts-*"


def test_filename_behaviour() -> None:
    default = AlertObservables().file("C:\\Windows\\cmd.exe")
    assert default is not None and default.name == "cmd.exe" and default.directory.path == "C:\\Windows"
    whole = AlertObservables(remove_path=False, create_directories=False).file("/etc/passwd")
    assert whole is not None and whole.name == "/etc/passwd" and whole.directory is None
    assert AlertObservables().file(None) is None and AlertObservables().file("   ") is None


def test_network_traffic_urls_domains_users_and_software_from_alert_fields() -> None:
    source = {
        "data": {
            "win": {
                "system": {"eventID": "3"},
                "eventdata": {
                    "sourceIp": "10.0.0.5",
                    "destinationIp": "2001:db8::7",
                    "sourcePort": "50123",
                    "destinationPort": "443",
                    "protocol": "tcp",
                    "queryName": "C2.Example.COM",
                    "targetSid": "S-1-5-21-1-2-3-1001",
                },
            },
            "url": "https://c2.example.com/a?b=1",
            "office365": {"MessageURLs": ["http://x.example/1", "not a url"], "UserId": "eve@corp.example"},
            "srcuser": "CORP\\bob",
            "vulnerability": {"cve": "cve-2024-1", "package": {"name": "openssl", "version": "3.0.1"},
                              "score": {"base": "9.8"}},
        }
    }  # fmt: skip
    found = AlertObservables()(source)
    by_type = defaultdict(list)
    for obs in found.observables:
        by_type[type(obs).__name__].append(obs)
    [traffic] = by_type["NetworkTraffic"]
    assert (traffic.src.value, traffic.dst.value, traffic.src_port, traffic.dst_port, traffic.protocols) == (
        "10.0.0.5", "2001:db8::7", 50123, 443, ("tcp",),
    )  # fmt: skip
    assert [u.value for u in by_type["Url"]] == ["https://c2.example.com/a?b=1", "http://x.example/1"]
    assert [d.value for d in by_type["DomainName"]] == ["c2.example.com"]
    users = {(u.account_login, u.user_id, u.domain) for u in by_type["UserAccount"]}
    assert users == {
        ("bob", None, "CORP"),
        ("eve@corp.example", None, None),
        (None, "S-1-5-21-1-2-3-1001", None),
    }
    [vuln] = found.vulnerabilities
    assert (vuln.cve, vuln.score, vuln.software.name, vuln.software.version) == (
        "CVE-2024-1",
        9.8,
        "openssl",
        "3.0.1",
    )
