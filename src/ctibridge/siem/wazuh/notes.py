"""Markdown notes about a hunt: one summary per entity and, optionally, one per alert.

Alert values are attacker-controlled, so every value is escaped (or fenced with a fence longer than any
backtick run in it) and nothing from an alert can add links, headings or HTML. Nothing here depends on
the time of the run, so a rerun over the same alerts produces the same notes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ctibridge.siem.wazuh.alertdoc import AlertView, get
from ctibridge.stix.ids import format_time

if TYPE_CHECKING:
    from ctibridge.siem.wazuh.hunt import HuntResult

# Every value lands mid-line (after a table pipe or a label), so list and heading markers (`-`, `+`, `.`,
# `#` at a line start) cannot trigger; these are the characters that can.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>~&])")
_WHITESPACE = re.compile(r"\s+")
_BACKTICKS = re.compile(r"`+")
MAX_CELL = 300
MAX_DATA_FIELDS = 40


def escape(value: Any, limit: int = MAX_CELL) -> str:
    """A value as inert inline markdown: one line, special characters backslash-escaped, bounded."""
    text = _WHITESPACE.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", text)


def fenced(text: str, language: str = "") -> str:
    """A code block no content can close early: the fence is longer than any backtick run inside."""
    longest = max((len(m.group(0)) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _time(value: datetime | None) -> str:
    return format_time(value) if value else "unknown"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def summary_content(
    result: HuntResult,
    *,
    entity_label: str,
    created: Mapping[str, int],
    max_rows: int = 200,
) -> str:
    """The summary: totals (exact), what was retrieved, per-agent and per-rule counts, the query."""
    parts = [f"## Wazuh hunt for {escape(entity_label)}", ""]
    parts.append(
        f"**{result.total}** matching alerts, first seen {escape(_time(result.first_seen))}, "
        f"last seen {escape(_time(result.last_seen))}."
    )
    if result.truncated:
        parts.append(
            f"\nOnly **{len(result.hits)}** of the **{result.total}** alerts were retrieved "
            "(the search limit). "
            "Alert and rule counts below cover all matches; links, alert notes, per-alert incidents and "
            "enrichment observables cover the retrieved alerts only."
        )
    else:
        parts.append(f"\nAll {len(result.hits)} matching alerts were retrieved.")
    if not getattr(result, "aggregations_complete", True):
        parts.append(
            "\nMore agents or rules matched than the aggregations list: the tables below are incomplete."
        )
    agents = sorted(result.agents, key=lambda a: (-a.count, a.cluster or "", a.agent_id))
    parts += ["", f"### Agents ({len(agents)})", ""]
    parts.append(
        table(
            ["Agent", "Name", "IP", "Cluster", "Alerts", "First seen", "Last seen"],
            [
                [
                    a.agent_id,
                    a.agent_name or "",
                    a.agent_ip or "",
                    a.cluster or "",
                    a.count,
                    _time(a.first_seen),
                    _time(a.last_seen),
                ]
                for a in agents[:max_rows]
            ],
        )
    )
    if len(agents) > max_rows:
        parts.append(f"\n{len(agents) - max_rows} more agents not listed.")
    rules = sorted(result.rules, key=lambda r: (-r.level, -r.count, r.rule_id))
    parts += ["", f"### Rules ({len(rules)})", ""]
    parts.append(
        table(
            ["Rule", "Level", "Description", "Alerts", "First seen", "Last seen"],
            [
                [r.rule_id, r.level, r.description or "", r.count, _time(r.first_seen), _time(r.last_seen)]
                for r in rules[:max_rows]
            ],
        )
    )
    if len(rules) > max_rows:
        parts.append(f"\n{len(rules) - max_rows} more rules not listed.")
    if created:
        parts += ["", "### Created", ""]
        parts.extend(f"- {escape(kind)}: {count}" for kind, count in created.items())
    parts += [
        "",
        "### Query",
        "",
        fenced(json.dumps(_query_of(result.query), indent=2, sort_keys=True, default=str), "json"),
    ]
    return "\n".join(parts)


def _query_of(body: Any) -> Any:
    """The query clause of the request body (the aggregations and paging are ours, not the entity's)."""
    return body.get("query", body) if isinstance(body, Mapping) else body


# Fields shown in an alert note, in order, as (label, path).
ALERT_FIELDS: tuple[tuple[str, str], ...] = (
    ("Rule groups", "rule.groups"),
    ("MITRE", "rule.mitre.id"),
    ("Location", "location"),
    ("Decoder", "decoder.name"),
    ("Manager", "manager.name"),
)


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), value[key])
    elif isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            yield prefix, ", ".join(str(v) for v in value)
        else:
            for n, item in enumerate(value):
                yield from _flatten(f"{prefix}[{n}]", item)
    elif value is not None and value != "":
        yield prefix, value


def alert_content(alert: AlertView, *, full_document: bool = False) -> str:
    """A readable subset of one alert; the whole document only when asked."""
    source = alert.source
    rule = f"{alert.rule_id or '?'} (level {alert.rule_level if alert.rule_level is not None else '?'})"
    rows: list[list[Any]] = [
        ["Time", _time(alert.time)],
        ["Agent", f"{alert.agent_name or '?'} ({alert.agent_id or '?'})"],
        ["Rule", rule],
        ["Description", alert.rule_description or ""],
    ]
    for label, path in ALERT_FIELDS:
        value = get(source, path)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value not in (None, ""):
            rows.append([label, value])
    parts = [f"## Wazuh alert {escape(alert.alert_id)}", "", table(["Field", "Value"], rows)]
    data = list(_flatten("data", get(source, "data")))
    data += list(_flatten("syscheck", get(source, "syscheck")))
    if data:
        parts += ["", "### Event data", ""]
        parts.append(table(["Field", "Value"], [[k, v] for k, v in data[:MAX_DATA_FIELDS]]))
        if len(data) > MAX_DATA_FIELDS:
            parts.append(f"\n{len(data) - MAX_DATA_FIELDS} more fields not shown.")
    full_log = get(source, "full_log")
    if isinstance(full_log, str) and full_log.strip():
        parts += ["", "### Log", "", fenced(full_log[:4000])]
    if full_document:
        parts += [
            "",
            "### Alert document",
            "",
            fenced(json.dumps(source, indent=2, sort_keys=True, default=str), "json"),
        ]
    return "\n".join(parts)
