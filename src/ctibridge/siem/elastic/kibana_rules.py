"""The Kibana detection-engine rules API, as the intel connector uses it: upsert, delete, reconcile.

- Rules are addressed by our deterministic `rule_id`, never by Kibana's saved-object `id`, so a rerun or a
  replayed stream event finds the rule it made before instead of creating a duplicate.
- `upsert` creates, and on 409 (the rule exists) reads it and replaces it with PUT only when something we
  manage changed. PUT replaces the whole rule, so the body is always complete; the rule's current
  `enabled` is kept, so a rule an analyst reviewed and switched on stays on after an indicator update.
- 429 and 5xx are retried honouring Retry-After; other errors raise `RemoteError` with Kibana's message.
- `kbn-xsrf` goes on every call (Kibana refuses non-GET calls without it), whatever client is passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from ctibridge.errors import RemoteError
from ctibridge.net import RETRYABLE_STATUS, Retryable, retry, retry_after_seconds
from ctibridge.siem.elastic.client import space_prefix
from ctibridge.siem.elastic.rules import MANAGED_TAG

log = logging.getLogger(__name__)

RULES_PATH = "/api/detection_engine/rules"
HEADERS = {"kbn-xsrf": "true", "elastic-api-version": "2023-10-31"}
FIND_PAGE_SIZE = 500
BULK_CHUNK = 100
# Fields Kibana fills in or owns: never compared when deciding whether a rule needs an update.
_SERVER_FIELDS = frozenset({"enabled", "id", "rule_id"})


class KibanaRules:
    """Detection rules of one Kibana space.

    `client` is an httpx client on Kibana's root URL (see `build_kibana_client`); a client already scoped
    to `/s/<space>` works too: the prefix is added only when its base URL lacks it.
    """

    def __init__(
        self,
        client: httpx.Client,
        space: str,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 5,
    ) -> None:
        self.client = client
        self.space = space or "default"
        self.sleep = sleep
        self.attempts = attempts
        prefix = space_prefix(self.space)
        base_path = client.base_url.path.rstrip("/")
        self.prefix = "" if not prefix or base_path.endswith(prefix) else prefix

    # ------------------------------------------------------------------ HTTP

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        allow: Iterable[int] = (),
    ) -> httpx.Response:
        """One API call with retries; statuses in `allow` are returned instead of raised."""
        allowed = set(allow)

        def attempt() -> httpx.Response:
            try:
                response = self.client.request(
                    method, f"{self.prefix}{path}", params=params, json=body, headers=HEADERS
                )
            except httpx.TransportError as exc:
                raise Retryable(f"unreachable: {exc}") from None
            if response.status_code < 400 or response.status_code in allowed:
                return response
            reason = _reason(response)
            if response.status_code in RETRYABLE_STATUS:
                raise Retryable(
                    reason, response.status_code, retry_after_seconds(response.headers.get("retry-after"))
                )
            raise RemoteError("kibana", reason, response.status_code)

        return retry(attempt, service="kibana", attempts=self.attempts, sleep=self.sleep)

    # ------------------------------------------------------------------ single rules

    def get(self, rule_id: str) -> dict[str, Any] | None:
        response = self._call("GET", RULES_PATH, params={"rule_id": rule_id}, allow=(404,))
        if response.status_code == 404:
            return None
        rule: dict[str, Any] = response.json()
        return rule

    def upsert(self, body: dict[str, Any]) -> str:
        """Create the rule, or bring the rule with the same `rule_id` up to date.

        Returns "created", "updated" or "unchanged".
        """
        rule_id = body.get("rule_id")
        if not rule_id:
            raise ValueError("a managed rule needs a rule_id")
        response = self._call("POST", RULES_PATH, body=body, allow=(409,))
        if response.status_code != 409:
            log.debug("rule created", extra={"rule_id": rule_id})
            return "created"
        existing = self.get(rule_id)
        if existing is None:  # deleted between our calls: create again
            self._call("POST", RULES_PATH, body=body)
            return "created"
        return self._replace(existing, body)

    def _replace(self, existing: Mapping[str, Any], body: dict[str, Any]) -> str:
        if _same(existing, body):
            return "unchanged"
        replacement = {**body, "enabled": bool(existing.get("enabled", body.get("enabled", False)))}
        self._call("PUT", RULES_PATH, body=replacement)
        log.debug("rule updated", extra={"rule_id": body["rule_id"]})
        return "updated"

    def delete(self, rule_id: str) -> bool:
        """Delete by `rule_id`; a rule that is already gone is fine. True when one was deleted."""
        response = self._call("DELETE", RULES_PATH, params={"rule_id": rule_id}, allow=(404,))
        return response.status_code != 404

    def ensure(self, bodies: list[dict[str, Any]]) -> dict[str, str]:
        """Install rules idempotently (the indicator-match rules at start): create missing ones, update
        those whose managed fields drifted, leave the rest (and every rule's `enabled`) alone."""
        outcome: dict[str, str] = {}
        for body in bodies:
            existing = self.get(body["rule_id"])
            if existing is None:
                self._call("POST", RULES_PATH, body=body)
                outcome[body["rule_id"]] = "created"
            else:
                outcome[body["rule_id"]] = self._replace(existing, body)
        return outcome

    # ------------------------------------------------------------------ many rules

    def managed_rule_ids(self) -> set[str]:
        """`rule_id` of every rule carrying our tag, read page by page through `_find`."""
        found: set[str] = set()
        page = 1
        while True:
            params = {
                "filter": f'alert.attributes.tags:"{MANAGED_TAG}"',
                "page": page,
                "per_page": FIND_PAGE_SIZE,
                "sort_field": "created_at",
                "sort_order": "asc",
            }
            answer = self._call("GET", f"{RULES_PATH}/_find", params=params).json()
            rules = answer.get("data") or []
            found.update(str(rule["rule_id"]) for rule in rules if rule.get("rule_id"))
            if not rules or page * FIND_PAGE_SIZE >= int(answer.get("total") or 0):
                return found
            page += 1

    def delete_many(self, rule_ids: Iterable[str]) -> int:
        """Delete rules by `rule_id` with `_bulk_action` (which takes saved-object ids or a query, so a
        query on `params.ruleId`, always limited to our tag); returns how many were deleted."""
        pending = sorted(set(rule_ids))
        deleted = 0
        for start in range(0, len(pending), BULK_CHUNK):
            chunk = pending[start : start + BULK_CHUNK]
            wanted = " or ".join(_kql_string(rule_id) for rule_id in chunk)
            query = f'alert.attributes.tags:"{MANAGED_TAG}" and alert.attributes.params.ruleId:({wanted})'
            answer = self._call(
                "POST", f"{RULES_PATH}/_bulk_action", body={"action": "delete", "query": query}
            ).json()
            deleted += int(((answer.get("attributes") or {}).get("summary") or {}).get("succeeded") or 0)
        return deleted


def _same(existing: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Does the stored rule already hold every field we send (other than the ones Kibana owns)?"""
    return all(existing.get(key) == value for key, value in body.items() if key not in _SERVER_FIELDS)


def _kql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, Mapping) and body.get("message"):
        return str(body["message"])
    return response.reason_phrase
