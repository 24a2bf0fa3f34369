"""Which incidents a hunt makes, per `WAZUH_CREATE_INCIDENT`, and what each covers.

Ids come from name and `created`. Names carry the entity and agent, rule or alert id; `created` is the
alert's own time for per-alert incidents and otherwise the entity's own creation time (`anchor_time`),
never the run's time nor the oldest alert in the look-back window: a later hunt of the same entity, with
the window moved past its oldest alerts, updates the same incidents. First and last seen stay the real
times of the matching alerts.

An alert qualifies when its rule level reaches the threshold and its rule is not excluded; alerts of a
vulnerability additionally need a CVSS3 score at the threshold and, optionally, to be still active.
Per-agent detail of rules exists only for the retrieved alerts: when the search was truncated, an agent
without retrieved alerts gets a per-sighting incident if any rule qualifies (the aggregations cannot
tell which of its alerts did).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctibridge.config.types import parse_datetime
from ctibridge.model.alerts import Link, Severity
from ctibridge.siem.wazuh.alertdoc import AlertView, severity_of_level
from ctibridge.siem.wazuh.inspection import attribute
from ctibridge.siem.wazuh.observables import cvss_score
from ctibridge.siem.wazuh.options import EnrichmentOptions, IncidentMode
from ctibridge.siem.wazuh.sightings import AgentKey, Systems, alert_link, newest_per_rule, rule_link

if TYPE_CHECKING:
    from ctibridge.siem.wazuh.hunt import HuntResult, RuleHits

# Vulnerability detector rules (4.x): found (low/medium/high/critical) and resolved.
VULN_ACTIVE_RULES = frozenset({"23503", "23504", "23505", "23506"})
VULN_RESOLVED_RULES = frozenset({"23502", "23507"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NAME_LABEL = 120


@dataclass(slots=True)
class IncidentPlan:
    name: str
    created: datetime
    severity: Severity
    level: int
    first_seen: datetime | None
    last_seen: datetime | None
    systems: list[str]
    alerts: list[AlertView]
    description: str
    links: list[Link] = field(default_factory=list)


def short(label: str, limit: int = MAX_NAME_LABEL) -> str:
    label = " ".join(label.split())
    return label if len(label) <= limit else label[: limit - 1] + "…"


def anchor_time(entity: Mapping[str, Any]) -> datetime:
    """A `created` that never moves for this entity: its STIX `created` (SDOs), OpenCTI's `created_at`
    (exported in its extension, also for observables), else the epoch (names then tell incidents apart)."""
    for value in (entity.get("created"), attribute(entity, "created_at")):
        if isinstance(value, str) and value.strip():
            try:
                return parse_datetime(value)
            except ValueError:
                continue
    return _EPOCH


class IncidentPlanner:
    def __init__(
        self,
        options: EnrichmentOptions,
        *,
        entity_label: str,
        entity_type: str,
        anchor: datetime = _EPOCH,
    ) -> None:
        self.options = options
        self.label = short(entity_label)
        self.vulnerability = entity_type == "vulnerability"
        self.anchor = anchor

    # ------------------------------------------------------------------ qualification

    def rule_qualifies(self, rule_id: str | None, level: int | None) -> bool:
        o = self.options
        return (level or 0) >= o.incident_threshold and (rule_id or "") not in o.incident_rule_exclude_list

    def qualifying(self, alerts: Sequence[AlertView]) -> list[AlertView]:
        chosen = [a for a in alerts if self.rule_qualifies(a.rule_id, a.rule_level)]
        if not self.vulnerability:
            return chosen
        threshold = self.options.vulnerability_cvss3_threshold
        if threshold is None:
            return []
        resolved = _resolved_agents(alerts) if self.options.vulnerability_active_only else set()
        out = []
        for alert in chosen:
            score = cvss_score(alert.source)
            if score is None or score < threshold:
                continue
            if self.options.vulnerability_active_only and (
                alert.rule_id not in VULN_ACTIVE_RULES or alert.agent_key in resolved
            ):
                continue
            out.append(alert)
        return out

    def qualifying_rules(self, result: HuntResult, qualified: Sequence[AlertView]) -> list[RuleHits]:
        rules = [r for r in result.rules if self.rule_qualifies(r.rule_id, r.level)]
        if self.vulnerability:
            seen = {a.rule_id for a in qualified}
            rules = [r for r in rules if r.rule_id in seen]
        return rules

    # ------------------------------------------------------------------ plans

    def plan(self, result: HuntResult, alerts: Sequence[AlertView], systems: Systems) -> list[IncidentPlan]:
        mode = self.options.incident_mode
        if mode is IncidentMode.NEVER or result.total == 0:
            return []
        qualified = self.qualifying(alerts)
        rules = self.qualifying_rules(result, qualified)
        if not rules:
            return []
        if mode is IncidentMode.PER_QUERY:
            return [self._per_query(result, alerts, rules, systems)]
        if mode is IncidentMode.PER_SIGHTING:
            return self._per_sighting(result, alerts, qualified, rules, systems)
        if mode is IncidentMode.PER_ALERT_RULE:
            return self._per_rule(alerts, rules, systems)
        return self._per_alert(result, qualified, systems)

    def _per_query(
        self, result: HuntResult, alerts: Sequence[AlertView], rules: Sequence[RuleHits], systems: Systems
    ) -> IncidentPlan:
        level = max(r.level for r in rules)
        first = min(r.first_seen for r in rules)
        last = max(r.last_seen for r in rules)
        count = sum(r.count for r in rules)
        return IncidentPlan(
            name=f"Wazuh alerts matching {self.label}",
            created=self.anchor,
            severity=severity_of_level(level),
            level=level,
            first_seen=first,
            last_seen=last,
            systems=list(systems.groups),
            alerts=list(alerts),
            description=(
                f"{count} Wazuh alerts from {len(rules)} rules (level {self.options.incident_threshold} or "
                f"above) matched {self.label}, on {len(systems.groups)} systems; highest rule level {level}."
            ),
        )

    def _per_sighting(
        self,
        result: HuntResult,
        alerts: Sequence[AlertView],
        qualified: Sequence[AlertView],
        rules: Sequence[RuleHits],
        systems: Systems,
    ) -> list[IncidentPlan]:
        by_system: defaultdict[str, list[AlertView]] = defaultdict(list)
        for alert in alerts:
            by_system[systems.system_of(alert.agent_key)].append(alert)
        qualified_by_system: defaultdict[str, list[AlertView]] = defaultdict(list)
        for alert in qualified:
            qualified_by_system[systems.system_of(alert.agent_key)].append(alert)
        plans = []
        for system_id, group in systems.groups.items():
            levels = [a.rule_level or 0 for a in qualified_by_system.get(system_id, [])]
            if not levels and result.truncated and not by_system.get(system_id) and not self.vulnerability:
                levels = [max(r.level for r in rules)]  # not retrieved: the aggregations' best guess
            if not levels or group.first_seen is None:
                continue
            level = max(levels)
            plans.append(
                IncidentPlan(
                    name=f"Wazuh: {self.label} on {group.name}",
                    created=self.anchor,
                    severity=severity_of_level(level),
                    level=level,
                    first_seen=group.first_seen,
                    last_seen=group.last_seen,
                    systems=[system_id],
                    alerts=by_system.get(system_id, []),
                    description=(
                        f"{group.count} Wazuh alerts matched {self.label} on {group.name}; "
                        f"highest qualifying rule level {level}."
                    ),
                )
            )
        return plans

    def _per_rule(
        self, alerts: Sequence[AlertView], rules: Sequence[RuleHits], systems: Systems
    ) -> list[IncidentPlan]:
        by_rule: defaultdict[str, list[AlertView]] = defaultdict(list)
        for alert in alerts:
            by_rule[alert.rule_id or ""].append(alert)
        plans = []
        o = self.options
        for rule in rules:
            scope = by_rule.get(rule.rule_id, [])
            targets = list(dict.fromkeys(systems.system_of(a.agent_key) for a in scope)) or [
                systems.siem["id"]
            ]
            what = f" ({rule.description})" if rule.description else ""
            links = [
                link
                for a in newest_per_rule(scope, o.max_extrefs_per_alert_rule, o.max_extrefs_per_alert_rule)
                if (link := alert_link(o, a))
            ]
            if link := rule_link(o, rule.rule_id, rule.description):
                links.append(link)
            plans.append(
                IncidentPlan(
                    name=f"Wazuh rule {rule.rule_id}{short(what, 80)}: {self.label}",
                    created=self.anchor,
                    severity=severity_of_level(rule.level),
                    level=rule.level,
                    first_seen=rule.first_seen,
                    last_seen=rule.last_seen,
                    systems=targets,
                    alerts=scope,
                    description=f"{rule.count} alerts of Wazuh rule {rule.rule_id} (level {rule.level}) "
                    f"matched {self.label}.",
                    links=links,
                )
            )
        return plans

    def _per_alert(
        self, result: HuntResult, qualified: Sequence[AlertView], systems: Systems
    ) -> list[IncidentPlan]:
        plans = []
        for alert in qualified:
            level = alert.rule_level or 0
            when = alert.time or self.anchor
            what = f": {short(alert.rule_description, 80)}" if alert.rule_description else ""
            links = [link for link in (alert_link(self.options, alert),) if link]
            if alert.rule_id and (link := rule_link(self.options, alert.rule_id, alert.rule_description)):
                links.append(link)
            agent = alert.agent_name or alert.agent_id or "unknown agent"
            plans.append(
                IncidentPlan(
                    name=f"Wazuh alert {alert.alert_id}{what}",
                    created=when,
                    severity=severity_of_level(level),
                    level=level,
                    first_seen=alert.time,
                    last_seen=alert.time,
                    systems=[systems.system_of(alert.agent_key)],
                    alerts=[alert],
                    description=f"Wazuh alert {alert.alert_id} (rule {alert.rule_id}, level {level}) on "
                    f"{agent} matched {self.label}.",
                    links=links,
                )
            )
        return plans


def _resolved_agents(alerts: Sequence[AlertView]) -> set[AgentKey]:
    """Agents whose newest vulnerability alert says resolved (a newer detection re-activates it)."""
    newest_active: dict[AgentKey, datetime] = {}
    newest_resolved: dict[AgentKey, datetime] = {}
    for alert in alerts:
        when = alert.time or _EPOCH
        target = (
            newest_active
            if alert.rule_id in VULN_ACTIVE_RULES
            else newest_resolved
            if alert.rule_id in VULN_RESOLVED_RULES
            else None
        )
        if target is not None and when >= target.get(alert.agent_key, _EPOCH):
            target[alert.agent_key] = when
    return {key for key, when in newest_resolved.items() if when > newest_active.get(key, _EPOCH)}
