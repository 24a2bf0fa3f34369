"""Where an entity was seen: system identities for agents and the SIEM, sightings, dashboard links.

Agents are keyed by cluster + agent id (ids repeat across clusters). Agent 000 (the manager) and, with
`agents_as_systems` off, every agent stand for the single Wazuh system identity. Counts and first/last
seen come from the hunt's aggregations over all matches, never from the page of hits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from ctibridge.model.alerts import Link
from ctibridge.model.observables import make_hostname, make_ip
from ctibridge.siem.wazuh.alertdoc import AlertView, is_manager
from ctibridge.siem.wazuh.options import EnrichmentOptions
from ctibridge.stix.builder import StixBuilder, StixDict

if TYPE_CHECKING:
    from ctibridge.siem.wazuh.hunt import AgentHits

SOURCE_NAME = "Wazuh"
MAX_STIX_COUNT = 999_999_999
AgentKey = tuple[str | None, str | None]


@dataclass(slots=True)
class SystemGroup:
    """One system identity and the agents it stands for, with their aggregated counts."""

    id: str
    name: str
    is_siem: bool
    keys: set[AgentKey] = field(default_factory=set)
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    def add(self, agent: AgentHits) -> None:
        self.keys.add((agent.cluster, agent.agent_id))
        self.count += agent.count
        self.first_seen = (
            agent.first_seen if self.first_seen is None else min(self.first_seen, agent.first_seen)
        )
        self.last_seen = agent.last_seen if self.last_seen is None else max(self.last_seen, agent.last_seen)


@dataclass(slots=True)
class Systems:
    siem: StixDict
    groups: dict[str, SystemGroup]
    by_key: dict[AgentKey, str]
    objects: list[StixDict]

    def system_of(self, key: AgentKey) -> str:
        return self.by_key.get(key, self.siem["id"])


def agent_name(agent: AgentHits) -> str:
    return agent.agent_name or f"Wazuh agent {agent.agent_id}"


def build_systems(
    builder: StixBuilder, options: EnrichmentOptions, agents: Sequence[AgentHits], labels: Sequence[str] = ()
) -> Systems:
    """The SIEM identity, one identity per agent (unless off), and the agents' IP/hostname observables."""
    siem = builder.system(options.system_name, "Wazuh SIEM (manager and indexer)")
    objects: list[StixDict] = [siem]
    groups: dict[str, SystemGroup] = {}
    by_key: dict[AgentKey, str] = {}
    # Two agents with one name (e.g. in two clusters) must not merge into one identity.
    names: defaultdict[str, set[AgentKey]] = defaultdict(set)
    for agent in agents:
        if options.agents_as_systems and not is_manager(agent.agent_id):
            names[agent_name(agent).lower()].add((agent.cluster, agent.agent_id))
    for agent in sorted(agents, key=lambda a: (a.cluster or "", a.agent_id or "")):
        key = (agent.cluster, agent.agent_id)
        if not options.agents_as_systems or is_manager(agent.agent_id):
            group = groups.setdefault(siem["id"], SystemGroup(siem["id"], options.system_name, True))
        else:
            name = agent_name(agent)
            if len(names[name.lower()]) > 1:
                name = f"{name} ({agent.cluster or 'wazuh'}/{agent.agent_id})"
            where = f" in cluster {agent.cluster}" if agent.cluster else ""
            system = builder.system(name, f"Wazuh agent {agent.agent_id}{where}")
            if system["id"] not in groups:
                objects.append(system)
                objects.append(builder.relationship("related-to", system["id"], siem["id"]))
                objects.extend(_agent_observables(builder, options, agent, system["id"], labels))
            group = groups.setdefault(system["id"], SystemGroup(system["id"], name, False))
        group.add(agent)
        by_key[key] = group.id
    return Systems(siem, groups, by_key, objects)


def _agent_observables(
    builder: StixBuilder, options: EnrichmentOptions, agent: AgentHits, system_id: str, labels: Sequence[str]
) -> list[StixDict]:
    found = []
    if options.create_agent_ip_observable and agent.agent_ip:
        found.append(make_ip(agent.agent_ip))
    if options.create_agent_hostname_observable and agent.agent_name:
        found.append(make_hostname(agent.agent_name))
    out: list[StixDict] = []
    for obs in found:
        if obs is None:
            continue
        built = builder.observable(obs)
        out.extend(labelled(o, labels) for o in built.objects)
        out.append(builder.relationship("related-to", built.id, system_id))
    return out


def labelled(obj: StixDict, labels: Sequence[str]) -> StixDict:
    """A labelled copy (the builder shares its objects between calls, so never label in place)."""
    if not labels:
        return obj
    key = "x_opencti_labels" if "created" not in obj else "labels"
    return {**obj, key: list(dict.fromkeys([*obj.get(key, []), *labels]))}


# ---------------------------------------------------------------------- dashboard links


def alert_link(options: EnrichmentOptions, alert: AlertView) -> Link | None:
    if not options.app_url or not alert.doc_id:
        return None
    url = (
        f"{options.app_url}/app/discover#/context/{quote(options.index_pattern_id, safe='*')}/"
        f"{quote(alert.doc_id, safe='')}"
    )
    rule = f"rule {alert.rule_id}" if alert.rule_id else "alert"
    when = f" at {alert.time.isoformat()}" if alert.time else ""
    return Link(SOURCE_NAME, url, alert.alert_id, f"Wazuh {rule}{when}")


def rule_link(options: EnrichmentOptions, rule_id: str, description: str | None = None) -> Link | None:
    if not options.app_url:
        return None
    url = f"{options.app_url}/app/rules#/manager/?tab=rules&redirectRule={quote(rule_id, safe='')}"
    return Link(SOURCE_NAME, url, f"rule-{rule_id}", description or f"Wazuh rule {rule_id}")


def newest_per_rule(alerts: Iterable[AlertView], total: int, per_rule: int) -> list[AlertView]:
    """The newest alerts of each rule, at most `per_rule` each and `total` in all.

    Rules take turns (newest alert first), so a noisy rule cannot use up the total on its own.
    """
    if total <= 0 or per_rule <= 0:
        return []
    by_rule: dict[str, list[AlertView]] = defaultdict(list)
    for alert in sorted(alerts, key=_newest_first, reverse=True):
        by_rule[alert.rule_id or ""].append(alert)
    queues = [items[:per_rule] for items in by_rule.values()]
    chosen: list[AlertView] = []
    depth = 0
    while len(chosen) < total and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(chosen) < total:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def _newest_first(alert: AlertView) -> tuple[datetime, str]:
    """Sort key, used with reverse=True (datetime comparisons are cheap, `timestamp()` is not)."""
    return (alert.time or _EPOCH, alert.doc_id)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def links_for(options: EnrichmentOptions, alerts: Sequence[AlertView]) -> list[Link]:
    """Links to the newest alerts per rule (within the limits), then one to each of those rules."""
    chosen = newest_per_rule(alerts, options.max_extrefs, options.max_extrefs_per_alert_rule)
    links = [link for alert in chosen if (link := alert_link(options, alert))]
    rules: dict[str, str | None] = {}
    for alert in chosen:
        if alert.rule_id and alert.rule_id not in rules:
            rules[alert.rule_id] = alert.rule_description
    links.extend(link for rule_id, desc in rules.items() if (link := rule_link(options, rule_id, desc)))
    return links


def sighting(
    builder: StixBuilder,
    options: EnrichmentOptions,
    *,
    entity_id: str,
    group: SystemGroup,
    alerts: Sequence[AlertView],
    truncated: bool,
) -> StixDict:
    assert group.first_seen is not None and group.last_seen is not None
    shown = f"; {len(alerts)} of them retrieved" if truncated else ""
    obj = builder.sighting(
        sighting_of_ref=entity_id,
        where_sighted_ref=group.id,
        first_seen=group.first_seen,
        last_seen=group.last_seen,
        count=min(group.count, MAX_STIX_COUNT),
        description=f"{group.count} Wazuh alerts on {group.name}{shown}",
    )
    links = links_for(options, alerts)
    if links:
        obj["external_references"] = [builder.external_reference(link) for link in links]
    return obj
