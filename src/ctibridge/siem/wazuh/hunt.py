"""Hunt one OpenCTI entity in the Wazuh alert indices.

Totals, per-agent and per-rule counts and first/last seen come from the index (`track_total_hits: true`
and aggregations over every match), never from the page of hits; the hits themselves are paged with
`search_after` up to the configured limit, and `truncated` says when more matched than were returned.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctibridge.config.wazuh import WazuhOpenSearchSettings, WazuhSearchSettings
from ctibridge.errors import ConfigurationError, RemoteError
from ctibridge.siem.wazuh.client import build_opensearch
from ctibridge.siem.wazuh.search import SearchBuilder, Unsearchable, exact, load_field_table

if TYPE_CHECKING:
    import opensearchpy

__all__ = ["AgentHits", "HuntResult", "RuleHits", "Unsearchable", "WazuhHunter", "build_opensearch"]

log = logging.getLogger(__name__)

# Buckets per aggregation level: more agents or rules than this are reported as incomplete.
AGG_SIZE = 10_000
NO_CLUSTER = ""  # `missing` key for alerts of a manager outside a cluster
TIEBREAKER = {"_id": {"order": "asc"}}


@dataclass(frozen=True)
class AgentHits:
    """One agent (cluster + agent id), from aggregations over all matches."""

    agent_id: str
    agent_name: str | None
    agent_ip: str | None
    cluster: str | None
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class RuleHits:
    """One rule id, from aggregations over all matches."""

    rule_id: str
    level: int
    description: str | None
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class HuntResult:
    entity_id: str
    query: dict[str, Any]  # request body sent (first page, with the aggregations)
    total: int  # exact (track_total_hits: true)
    first_seen: datetime | None
    last_seen: datetime | None
    agents: tuple[AgentHits, ...]
    rules: tuple[RuleHits, ...]
    hits: tuple[dict[str, Any], ...]  # {"_id", "_index", "_source"}, in configured order, up to limit
    truncated: bool  # total > len(hits)
    # Added: False when more agents or rules matched than one aggregation lists (AGG_SIZE).
    aggregations_complete: bool = True


def _utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """UTC, millisecond precision, `Z`: what OpenSearch's strict_date_optional_time takes."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _millis_to_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=float(value))
    except (TypeError, ValueError, OverflowError):
        return None


class WazuhHunter:
    """Builds the request body for an entity and runs it (paging, aggregations) against the indexer."""

    def __init__(
        self,
        client: opensearchpy.OpenSearch | None,
        opensearch: WazuhOpenSearchSettings,
        search: WazuhSearchSettings,
        *,
        exclude_rule_ids: Sequence[str] = (),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.client = client
        self.opensearch = opensearch
        self.search = search
        self.exclude_rule_ids = [str(r) for r in exclude_rule_ids if str(r).strip()]
        self.clock = clock
        try:
            table = load_field_table(search.fields_version, search.fields_file)
        except ValueError as exc:
            name = "WAZUH_SEARCH_FIELDS_FILE" if search.fields_file else "WAZUH_SEARCH_FIELDS_VERSION"
            raise ConfigurationError({name: str(exc)}) from None
        self.builder = SearchBuilder(search, table)

    # -- request
    def skip_reason(self, entity: Mapping[str, Any], related: Sequence[Mapping[str, Any]] = ()) -> str | None:
        """Why the search settings say not to hunt this entity (e.g. a private address), else None."""
        return self.builder.skip_reason(entity)

    def build(self, entity: Mapping[str, Any], related: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The first-page request body; raises Unsearchable (an InputError) with the reason."""
        clause = self.builder.clause(entity, related)
        filters: list[dict[str, Any]] = [clause]
        window = self.window_start()
        if window is not None:
            filters.append({"range": {"@timestamp": {"gte": format_time(window)}}})
        include: dict[str, list[str]] = {}
        for match in self.opensearch.include_match:
            include.setdefault(match.field, []).append(match.query)
        filters.extend(c for field, values in include.items() if (c := exact([field], values)))
        filters.extend(copy.deepcopy(self.opensearch.filter))
        must_not = [c for m in self.opensearch.exclude_match if (c := exact([m.field], [m.query]))]
        if self.exclude_rule_ids:
            must_not.append({"terms": {"rule.id": list(self.exclude_rule_ids)}})
        query: dict[str, Any] = {"bool": {"filter": filters}}
        if must_not:
            query["bool"]["must_not"] = must_not
        return {
            "query": query,
            "track_total_hits": True,
            "size": min(self.opensearch.limit, self.opensearch.page_size),
            "sort": self.sort(),
            "aggs": _aggregations(),
        }

    def request_body(
        self, entity: dict[str, Any], related: Sequence[dict[str, Any]] = ()
    ) -> dict[str, Any] | None:
        """The request body, or None (reason logged) when the entity is not searchable."""
        try:
            return self.build(entity, related)
        except Unsearchable as exc:
            log.info(
                "not hunting %s: %s",
                entity.get("id", "entity") if isinstance(entity, Mapping) else "entity",
                exc,
            )
            return None

    def window_start(self) -> datetime | None:
        look_back = self.opensearch.search_after
        if look_back is None:
            return None
        if isinstance(look_back, timedelta):
            now = self.clock()
            if now.tzinfo is None:
                raise ValueError("the hunter's clock must return timezone-aware datetimes")
            return now - look_back
        return look_back

    def sort(self) -> list[dict[str, Any]]:
        sort = [{o.field: {"order": o.order}} for o in self.opensearch.order_by]
        if not any("_id" in item for item in sort):
            sort.append(dict(TIEBREAKER))
        return sort

    # -- run
    def hunt(self, entity: dict[str, Any], related: Sequence[dict[str, Any]] = ()) -> HuntResult | None:
        body = self.request_body(entity, related)
        if body is None:
            return None
        if self.client is None:
            raise RuntimeError("WazuhHunter.hunt needs an OpenSearch client")
        first = self._search(body)
        total = _total(first)
        hits = [_hit(h) for h in first.get("hits", {}).get("hits", [])]
        last_sort = (first.get("hits", {}).get("hits") or [{}])[-1].get("sort")
        limit = self.opensearch.limit
        page_size = min(limit, self.opensearch.page_size)
        page_len = len(hits)
        while len(hits) < limit and page_len >= page_size and last_sort is not None and len(hits) < total:
            size = min(page_size, limit - len(hits))
            page_body = {
                "query": body["query"],
                "size": size,
                "sort": body["sort"],
                "search_after": last_sort,
                "track_total_hits": False,
            }
            response = self._search(page_body)
            page = response.get("hits", {}).get("hits", [])
            hits.extend(_hit(h) for h in page)
            page_len = len(page)
            if page_len < size:
                break
            last_sort = page[-1].get("sort")
            page_size = size
        aggs = first.get("aggregations", {})
        agents, agents_complete = _agents(aggs)
        rules, rules_complete = _rules(aggs)
        hits = hits[:limit]
        entity_id = str(entity.get("id", ""))
        if not (agents_complete and rules_complete):
            log.warning(
                "hunt for %s: more than %d agents or rules; counts cover the largest", entity_id, AGG_SIZE
            )
        return HuntResult(
            entity_id=entity_id,
            query=body,
            total=total,
            first_seen=_millis_to_datetime(aggs.get("first_seen", {}).get("value")),
            last_seen=_millis_to_datetime(aggs.get("last_seen", {}).get("value")),
            agents=tuple(agents),
            rules=tuple(rules),
            hits=tuple(hits),
            truncated=total > len(hits),
            aggregations_complete=agents_complete and rules_complete,
        )

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        from opensearchpy.exceptions import OpenSearchException, TransportError

        assert self.client is not None
        try:
            response = self.client.search(index=self.opensearch.index, body=body)
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            raise RemoteError("wazuh-indexer", _error_reason(exc), status) from None
        except OpenSearchException as exc:
            raise RemoteError("wazuh-indexer", type(exc).__name__) from None
        if not isinstance(response, dict):
            raise RemoteError("wazuh-indexer", "search answered with something other than a JSON object")
        return response


def _aggregations() -> dict[str, Any]:
    seen = {"first_seen": {"min": {"field": "@timestamp"}}, "last_seen": {"max": {"field": "@timestamp"}}}
    latest = {"sort": [{"@timestamp": {"order": "desc"}}], "size": 1}
    return {
        **copy.deepcopy(seen),
        "clusters": {
            "terms": {"field": "cluster.name", "size": AGG_SIZE, "missing": NO_CLUSTER},
            "aggs": {
                "agents": {
                    "terms": {"field": "agent.id", "size": AGG_SIZE},
                    "aggs": {
                        **copy.deepcopy(seen),
                        "latest": {
                            "top_hits": {**latest, "_source": {"includes": ["agent.name", "agent.ip"]}}
                        },
                    },
                }
            },
        },
        "rules": {
            "terms": {"field": "rule.id", "size": AGG_SIZE},
            "aggs": {
                **copy.deepcopy(seen),
                "level": {"max": {"field": "rule.level"}},
                "latest": {"top_hits": {**latest, "_source": {"includes": ["rule.description"]}}},
            },
        },
    }


def _total(response: Mapping[str, Any]) -> int:
    total = response.get("hits", {}).get("total")
    if isinstance(total, Mapping):
        if total.get("relation", "eq") != "eq":
            raise RemoteError("wazuh-indexer", "total hit count is a lower bound despite track_total_hits")
        return int(total.get("value", 0))
    return int(total or 0)


def _hit(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"_id": raw.get("_id"), "_index": raw.get("_index"), "_source": raw.get("_source") or {}}


def _latest_source(bucket: Mapping[str, Any]) -> Mapping[str, Any]:
    hits = bucket.get("latest", {}).get("hits", {}).get("hits") or [{}]
    source = hits[0].get("_source")
    return source if isinstance(source, Mapping) else {}


def _dig(source: Mapping[str, Any], path: str) -> Any:
    node: Any = source
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Mapping) and path in node:
            return node[path]
        else:
            return None
    return node


def _str_or_none(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value).strip() else None


def _agents(aggs: Mapping[str, Any]) -> tuple[list[AgentHits], bool]:
    out = []
    clusters = aggs.get("clusters", {})
    complete = not clusters.get("sum_other_doc_count")
    for cluster_bucket in clusters.get("buckets", []):
        cluster = str(cluster_bucket.get("key", "")) or None
        agents = cluster_bucket.get("agents", {})
        complete = complete and not agents.get("sum_other_doc_count")
        for bucket in agents.get("buckets", []):
            first = _millis_to_datetime(bucket.get("first_seen", {}).get("value"))
            last = _millis_to_datetime(bucket.get("last_seen", {}).get("value"))
            if first is None or last is None:
                log.warning("agent %s: alerts without a usable @timestamp; skipped", bucket.get("key"))
                continue
            source = _latest_source(bucket)
            out.append(
                AgentHits(
                    agent_id=str(bucket.get("key")),
                    agent_name=_str_or_none(_dig(source, "agent.name")),
                    agent_ip=_str_or_none(_dig(source, "agent.ip")),
                    cluster=cluster,
                    count=int(bucket.get("doc_count", 0)),
                    first_seen=first,
                    last_seen=last,
                )
            )
    return out, complete


def _rules(aggs: Mapping[str, Any]) -> tuple[list[RuleHits], bool]:
    out = []
    rules = aggs.get("rules", {})
    for bucket in rules.get("buckets", []):
        first = _millis_to_datetime(bucket.get("first_seen", {}).get("value"))
        last = _millis_to_datetime(bucket.get("last_seen", {}).get("value"))
        if first is None or last is None:
            log.warning("rule %s: alerts without a usable @timestamp; skipped", bucket.get("key"))
            continue
        level = bucket.get("level", {}).get("value")
        description = _dig(_latest_source(bucket), "rule.description")
        out.append(
            RuleHits(
                rule_id=str(bucket.get("key")),
                level=int(level) if isinstance(level, int | float) else 0,
                description=description if isinstance(description, str) else None,
                count=int(bucket.get("doc_count", 0)),
                first_seen=first,
                last_seen=last,
            )
        )
    return out, not rules.get("sum_other_doc_count")


def _error_reason(exc: Any) -> str:
    """The indexer's own reason (type and text), never request data or credentials."""
    info = getattr(exc, "info", None)
    if isinstance(info, Mapping):
        error = info.get("error")
        if isinstance(error, Mapping):
            kind, reason = error.get("type"), error.get("reason")
            return f"{kind}: {reason}" if kind else str(reason)
        if isinstance(error, str):
            return error
    return str(getattr(exc, "error", type(exc).__name__))
