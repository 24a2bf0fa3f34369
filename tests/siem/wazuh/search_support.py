"""Shared helpers for the Wazuh search tests: one loopback OpenSearch double, an index per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch

from ctibridge.config.wazuh import WazuhOpenSearchSettings, WazuhSearchSettings
from ctibridge.siem.wazuh.hunt import HuntResult, WazuhHunter
from tests.doubles.opensearch import OpenSearchDouble

_COUNTER = itertools.count()
CLOCK_NOW = datetime(2024, 6, 1, tzinfo=UTC)
STAMP = "2024-05-11T12:29:19.905+0000"


def doc(source: Mapping[str, Any], stamp: str = STAMP, agent: str = "001") -> dict[str, Any]:
    """An alert document with the fields every Wazuh alert has, plus `source`."""
    base: dict[str, Any] = {
        "@timestamp": stamp,
        "timestamp": stamp,
        "rule": {"id": "100001", "level": 5, "description": "test rule"},
        "agent": {"id": agent, "name": f"host-{agent}", "ip": "192.0.2.1"},
        "cluster": {"name": "wazuh"},
    }
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


class Hunting:
    """Load documents into a fresh index of the shared double and hunt through the real client."""

    def __init__(self, double: OpenSearchDouble) -> None:
        self.double = double
        self.client = OpenSearch(double.url, http_auth=double.auth, timeout=30, max_retries=0)

    def index(self, docs: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]]) -> str:
        name = f"wazuh-test-{next(_COUNTER)}"
        if isinstance(docs, Mapping):
            ids: list[str] | None = list(docs)
            documents = [dict(v) for v in docs.values()]
        else:
            documents = [dict(v) for v in docs]
            ids = None
        if documents:
            self.double.add_documents(name + "-a", documents, ids=ids)
        else:
            self.double.create_index(name + "-a")
        return name + "-*"

    def hunter(self, index: str, search: Mapping[str, Any] | None = None, **opensearch: Any) -> WazuhHunter:
        exclude = opensearch.pop("exclude_rule_ids", ())
        settings = WazuhOpenSearchSettings(
            url=self.double.url, index=index, **{"search_after": None, "limit": 1000, **opensearch}
        )
        return WazuhHunter(
            self.client,
            settings,
            WazuhSearchSettings(**{"ignore_private_addrs": False, **(search or {})}),
            exclude_rule_ids=exclude,
            clock=lambda: CLOCK_NOW,
        )

    def matched(
        self,
        docs: Mapping[str, Mapping[str, Any]],
        entity: dict[str, Any],
        related: Sequence[dict[str, Any]] = (),
        search: Mapping[str, Any] | None = None,
    ) -> set[str]:
        result = self.hunt(docs, entity, related, search)
        assert result is not None, f"entity not searchable: {entity}"
        return {hit["_id"] for hit in result.hits}

    def hunt(
        self,
        docs: Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
        entity: dict[str, Any],
        related: Sequence[dict[str, Any]] = (),
        search: Mapping[str, Any] | None = None,
        **opensearch: Any,
    ) -> HuntResult | None:
        index = self.index(docs)
        try:
            return self.hunter(index, search, **opensearch).hunt(entity, related)
        finally:
            self.double.delete_index(index[:-2] + "-a")
