"""Reading Wazuh alert documents defensively: any field may be missing, mistyped or oddly formatted.

Every accessor returns None (or an empty value) instead of raising, so one bad field never costs the
rest of an alert, and one bad alert never costs the hunt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ctibridge.model.alerts import Severity, Technique

MANAGER_AGENT_ID = "000"

# Wazuh rule level -> OpenCTI severity, per the dashboard's bands (4.14: low 0-6, medium 7-11, high 12-14,
# critical >= 15). Written out for every level Wazuh defines so no level falls through a gap.
LEVEL_SEVERITY: dict[int, Severity] = {
    0: Severity.LOW,
    1: Severity.LOW,
    2: Severity.LOW,
    3: Severity.LOW,
    4: Severity.LOW,
    5: Severity.LOW,
    6: Severity.LOW,
    7: Severity.MEDIUM,
    8: Severity.MEDIUM,
    9: Severity.MEDIUM,
    10: Severity.MEDIUM,
    11: Severity.MEDIUM,
    12: Severity.HIGH,
    13: Severity.HIGH,
    14: Severity.HIGH,
    15: Severity.CRITICAL,
    16: Severity.CRITICAL,
}


def severity_of_level(level: int | None) -> Severity:
    """Severity of a rule level; below 0 (or unknown) is low, above 16 critical."""
    if level is None or level < 0:
        return Severity.LOW
    return LEVEL_SEVERITY.get(level, Severity.CRITICAL)


def get(source: Mapping[str, Any] | None, path: str) -> Any:
    """`data.win.eventdata.image` from nested objects; also accepts dotted keys stored flat."""
    if type(source) is Paths:
        return source.get(path)
    # `type(...) is dict` first: alerts are plain dicts, and ABC isinstance checks dominate the profile.
    if type(source) is not dict and not isinstance(source, Mapping):
        return None
    flat = source.get(path)
    if flat is not None:
        return flat
    parts = _PARTS.get(path)
    if parts is None:
        parts = _PARTS[path] = tuple(path.split("."))
    node: Any = source
    for part in parts:
        if type(node) is not dict and not isinstance(node, Mapping):
            return None
        node = node.get(part)
        if node is None:
            return None
    return node


_PARTS: dict[str, tuple[str, ...]] = {}


class Paths(dict[str, Any]):
    """Every node of a document under its dotted path: one dict lookup per field, a miss is a miss."""


def index_paths(source: Mapping[str, Any]) -> Paths:
    """Index a document once when many fields will be read from it (the enrichment reads ~80)."""
    out = Paths()

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.setdefault(path, value)
            if isinstance(value, dict):
                walk(path, value)

    walk("", source)
    return out


def text(source: Mapping[str, Any] | None, path: str, limit: int = 8192) -> str | None:
    value = get(source, path)
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    out = str(value).strip()
    return out if out and len(out) <= limit else None


def texts(source: Mapping[str, Any] | None, path: str) -> list[str]:
    """A field that may hold one value or a list of values."""
    value = get(source, path)
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item is None or isinstance(item, (dict, list, bool)):
            continue
        item_text = str(item).strip()
        if item_text:
            out.append(item_text)
    return out


def parse_time(value: Any) -> datetime | None:
    """Wazuh's `2022-05-11T12:29:19.905+0000`, ISO-8601 with `Z`, or epoch milliseconds; else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        try:
            parsed = datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def to_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def is_manager(agent_id: str | None) -> bool:
    """Agent 000 (the manager) or an unknown agent: both stand for the SIEM itself."""
    if not agent_id:
        return True
    number = to_int(agent_id)
    return number == 0 if number is not None else False


@dataclass(frozen=True, slots=True)
class AlertView:
    """The parts of one hit every mapping step needs, read once."""

    doc_id: str
    index: str | None
    source: Mapping[str, Any]
    alert_id: str
    time: datetime | None
    rule_id: str | None
    rule_level: int | None
    rule_description: str | None
    agent_id: str | None
    agent_name: str | None
    cluster: str | None

    @property
    def agent_key(self) -> tuple[str | None, str | None]:
        return (self.cluster, self.agent_id)


def view(hit: Mapping[str, Any]) -> AlertView:
    source = hit.get("_source")
    if not isinstance(source, Mapping):
        source = {}
    doc_id = str(hit.get("_id") or "")
    return AlertView(
        doc_id=doc_id,
        index=str(hit["_index"]) if hit.get("_index") else None,
        source=source,
        alert_id=text(source, "id", 256) or doc_id,
        time=parse_time(get(source, "@timestamp")) or parse_time(get(source, "timestamp")),
        rule_id=text(source, "rule.id", 64),
        rule_level=to_int(get(source, "rule.level")),
        rule_description=text(source, "rule.description", 1024),
        agent_id=text(source, "agent.id", 64),
        agent_name=text(source, "agent.name", 256),
        cluster=text(source, "cluster.name", 256),
    )


def techniques(source: Mapping[str, Any]) -> Iterator[Technique]:
    """Every MITRE technique of the alert's rule; names and tactics from the parallel lists when aligned."""
    ids = get(source, "rule.mitre.id")
    if not isinstance(ids, list):
        ids = [ids] if ids is not None else []
    names = get(source, "rule.mitre.technique")
    names = names if isinstance(names, list) and len(names) == len(ids) else []
    tactics = get(source, "rule.mitre.tactic")
    tactic_list = [t for t in tactics if isinstance(t, str)] if isinstance(tactics, list) else []
    for n, raw in enumerate(ids):
        if not isinstance(raw, str):
            continue
        mitre_id = raw.strip().upper()
        if not _valid_mitre_id(mitre_id):
            continue
        name = names[n].strip() if names and isinstance(names[n], str) and names[n].strip() else None
        # With several ids the tactic list is per alert, not per technique: only use it for one id.
        yield Technique(mitre_id, name, tuple(tactic_list) if len(ids) == 1 else ())


def _valid_mitre_id(value: str) -> bool:
    head, _, sub = value.partition(".")
    if not (head.startswith("T") and head[1:].isdigit() and len(head) == 5):
        return False
    return not sub or (sub.isdigit() and len(sub) == 3)
