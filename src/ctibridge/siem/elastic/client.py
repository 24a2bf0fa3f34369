"""Elasticsearch and Kibana clients for the Elastic connectors.

Elasticsearch goes through the official client with its own retries switched off: ours honour
Retry-After on 429 and 5xx, which the transport's do not. Kibana goes through httpx, with `kbn-xsrf` on
every call (Kibana refuses a non-GET call without it) and the space in the path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import httpx
from elasticsearch import ApiError, Elasticsearch, TransportError

from ctibridge.checks import elastic_auth_headers
from ctibridge.config.elastic import ElasticConnection
from ctibridge.config.types import parse_datetime
from ctibridge.errors import RemoteError
from ctibridge.net import RETRYABLE_STATUS, Retryable, retry, retry_after_seconds, tls_options

log = logging.getLogger(__name__)
_T = TypeVar("_T")
ALERT_SORT = [{"@timestamp": {"order": "asc"}}, {"kibana.alert.uuid": {"order": "asc"}}]


def build_elasticsearch(settings: ElasticConnection) -> Elasticsearch:
    auth: dict[str, Any] = {}
    if settings.api_key is not None:
        auth["api_key"] = settings.api_key.get_secret_value()
    elif settings.username and settings.password is not None:
        auth["basic_auth"] = (settings.username, settings.password.get_secret_value())
    return Elasticsearch(
        settings.url,
        **auth,
        verify_certs=settings.verify_ssl,
        ssl_show_warn=settings.verify_ssl,
        ca_certs=settings.ca_cert,
        client_cert=settings.client_cert,
        client_key=settings.client_key,
        request_timeout=settings.request_timeout,
        max_retries=0,
        retry_on_status=(),
    )


def with_retries(
    call: Callable[[], _T], *, service: str, attempts: int, sleep: Callable[[float], None] = time.sleep
) -> _T:
    """Run an Elasticsearch client call, retrying 429/5xx and connection errors (see `net.retry`)."""

    def attempt() -> _T:
        try:
            return call()
        except ApiError as exc:
            reason = _reason(exc.body, exc.message)
            if exc.meta.status == 404 and "search_context_missing_exception" in _error_types(exc.body):
                raise PointInTimeGone(service, reason, 404) from None
            if exc.meta.status not in RETRYABLE_STATUS:
                raise RemoteError(service, reason, exc.meta.status) from None
            wait = retry_after_seconds(exc.meta.headers.get("retry-after"))
            raise Retryable(reason, exc.meta.status, wait) from None
        except TransportError as exc:
            raise Retryable(f"unreachable: {exc.message}") from None

    return retry(attempt, service=service, attempts=attempts, sleep=sleep)


class PointInTimeGone(RemoteError):
    """The point in time expired (its keep-alive passed between two pages) or its node went away."""


def _error_types(body: Any) -> set[str]:
    """Every `type` in an Elasticsearch error body: the error, its root causes, causes and failed shards."""
    found: set[str] = set()
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if isinstance(item.get("type"), str):
                found.add(item["type"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _reason(body: Any, default: str) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("reason") or error.get("type") or default)
        if body.get("message"):
            return str(body["message"])
    return default


PIT_KEEP_ALIVE = "5m"  # renewed by every page; it must outlast the delivery of one page to OpenCTI
PIT_REOPENINGS = 3  # in a row without a page in between: then the run fails and resumes next time


@dataclass(frozen=True)
class AlertPage:
    hits: list[dict[str, Any]]
    last_sort: list[Any] | None


class AlertReader:
    """Pages through alerts in (time, uuid) order with a point in time and `search_after`.

    No 10,000-hit ceiling and no full scan: each run starts after the checkpoint of the previous one.
    """

    def __init__(
        self,
        es: Elasticsearch,
        index: str,
        *,
        page_size: int = 500,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.es = es
        self.index = index
        self.page_size = page_size
        self.attempts = attempts
        self.sleep = sleep

    def _retry(self, call: Callable[[], _T]) -> _T:
        return with_retries(call, service="elasticsearch", attempts=self.attempts, sleep=self.sleep)

    @staticmethod
    def query(
        *,
        since: datetime | None = None,
        statuses: Sequence[str] = (),
        rule_tags: Sequence[str] = (),
        status_changed_since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """The alert filter. `until` bounds `@timestamp` (and, in a status pass, the status change time)
        from above, so a run leaves the newest moments alone until everything stamped in them is visible."""
        filters: list[dict[str, Any]] = []
        stamped: dict[str, str] = {"gte": since.isoformat()} if since is not None else {}
        changed: dict[str, str] = (
            {"gt": status_changed_since.isoformat()} if status_changed_since is not None else {}
        )
        if until is not None:  # bounds the time the pass walks: status changes, else alert stamps
            if changed:
                changed["lte"] = until.isoformat()
            else:
                stamped["lt"] = until.isoformat()
        if stamped:
            filters.append({"range": {"@timestamp": stamped}})
        if changed:
            filters.append({"range": {"kibana.alert.workflow_status_updated_at": changed}})
        if statuses:
            filters.append({"terms": {"kibana.alert.workflow_status": list(statuses)}})
        if rule_tags:
            filters.append({"terms": {"kibana.alert.rule.tags": list(rule_tags)}})
        return {"bool": {"filter": filters}} if filters else {"match_all": {}}

    def pages(self, query: Mapping[str, Any], search_after: list[Any] | None = None) -> Iterator[AlertPage]:
        """Pages after `search_after` (our own sort keys). A point in time that expires between pages (the
        caller took longer than its keep-alive to deliver one) is reopened, and paging goes on after the
        last page yielded: a newer snapshot, the same order, nothing skipped."""
        resume_after = search_after
        pit_id = self._open_pit()
        reopened = 0
        try:
            while True:
                try:
                    response = self._retry(partial(self._search_page, query, pit_id, search_after))
                except PointInTimeGone:
                    if reopened >= PIT_REOPENINGS:
                        raise
                    reopened += 1
                    log.warning(
                        "point in time expired between two pages; reopened, resuming after the last page"
                    )
                    pit_id = self._open_pit()
                    search_after = resume_after
                    continue
                pit_id = response.get("pit_id") or pit_id
                hits = response["hits"]["hits"]
                if not hits:
                    return
                documents = [
                    {**hit["_source"], "_id": hit["_id"], "_index": hit.get("_index")} for hit in hits
                ]
                # Within this PIT, page on everything Elasticsearch sorted by (it appends an implicit
                # `_shard_doc`); the checkpoint keeps only our own keys, as `_shard_doc` values mean
                # nothing to the next run's PIT.
                search_after = hits[-1]["sort"]
                resume_after = search_after[: len(ALERT_SORT)]
                reopened = 0
                yield AlertPage(documents, resume_after)
                if len(hits) < self.page_size:
                    return
        finally:
            try:
                self.es.close_point_in_time(id=pit_id)
            except (ApiError, TransportError):
                log.debug("could not close point in time", exc_info=True)

    def _open_pit(self) -> str:
        answer = self._retry(lambda: self.es.open_point_in_time(index=self.index, keep_alive=PIT_KEEP_ALIVE))
        return str(answer["id"])

    def _search_page(self, query: Mapping[str, Any], pit_id: str, search_after: list[Any] | None) -> Any:
        return self.es.search(
            query=query,
            sort=ALERT_SORT,
            size=self.page_size,
            pit={"id": pit_id, "keep_alive": PIT_KEEP_ALIVE},
            search_after=search_after,
            track_total_hits=False,
        )

    def by_refs(self, refs: Sequence[tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
        """Alert documents for (alert id, index) pairs, as Kibana case attachments record them.

        Pairs with a concrete index are fetched with one `_mget` (direct gets, no search); `_mget` takes no
        patterns, so pairs without an index or with a pattern, and any alert `_mget` did not find there
        (moved, or an index that is gone), are searched by id across the alerts index pattern.
        """
        found: dict[str, dict[str, Any]] = {}
        docs = [
            {"_index": index, "_id": alert_id}
            for alert_id, index in dict(refs).items()
            if index and not any(char in index for char in "*,")
        ]
        if docs:
            response = self._retry(lambda: self.es.mget(docs=docs))
            for doc in response["docs"]:
                if doc.get("found"):
                    found[doc["_id"]] = {
                        **doc.get("_source", {}),
                        "_id": doc["_id"],
                        "_index": doc.get("_index"),
                    }
        found.update(self.by_ids([alert_id for alert_id in dict(refs) if alert_id not in found]))
        return found

    def by_ids(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Alert documents by id (for cases' attached alerts), searched across the alerts index pattern."""
        if not ids:
            return {}
        response = self._retry(
            lambda: self.es.search(index=self.index, query={"ids": {"values": list(ids)}}, size=len(ids))
        )
        return {
            hit["_id"]: {**hit["_source"], "_id": hit["_id"], "_index": hit.get("_index")}
            for hit in response["hits"]["hits"]
        }


def space_prefix(space: str) -> str:
    """`/s/<space>` in front of Kibana API paths; nothing for the default space."""
    return "" if not space or space == "default" else f"/s/{space}"


def build_kibana_client(
    settings: ElasticConnection,
    *,
    transport: httpx.BaseTransport | None = None,
    scoped_to_space: bool = False,
) -> httpx.Client:
    """An httpx client for Kibana: TLS verification on unless disabled, CA bundle and client certificate
    (mTLS) when given, API key or basic auth, `kbn-xsrf` (Kibana refuses non-GET calls without it) and the
    API version on every call. The base URL is Kibana's root unless `scoped_to_space`, then `/s/<space>`.
    """
    options: dict[str, Any] = (
        {}
        if transport
        else tls_options(settings.verify_ssl, settings.ca_cert, settings.client_cert, settings.client_key)
    )
    space = space_prefix(settings.kibana_space) if scoped_to_space else ""
    return httpx.Client(
        base_url=f"{settings.kibana_base_url}{space}",
        headers={
            **elastic_auth_headers(settings),
            "kbn-xsrf": "true",
            "elastic-api-version": "2023-10-31",
        },
        timeout=settings.request_timeout,
        transport=transport,
        **options,
    )


class KibanaCases:
    """The Cases API for one space and owner; newest updates first, as the API sorts them."""

    def __init__(
        self,
        settings: ElasticConnection,
        *,
        transport: httpx.BaseTransport | None = None,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.attempts = attempts
        self.sleep = sleep
        self.http = build_kibana_client(settings, transport=transport, scoped_to_space=True)

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        def attempt() -> Any:
            try:
                response = self.http.get(path, params=params)
            except httpx.TransportError as exc:
                raise Retryable(f"unreachable: {exc}") from None
            if response.status_code < 400:
                return response.json()
            reason = _kibana_reason(response)
            if response.status_code not in RETRYABLE_STATUS:
                raise RemoteError("kibana", reason, response.status_code)
            raise Retryable(
                reason, response.status_code, retry_after_seconds(response.headers.get("retry-after"))
            )

        return retry(attempt, service="kibana", attempts=self.attempts, sleep=self.sleep)

    def updated_since(
        self, checkpoint: datetime | None, statuses: Sequence[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """Cases changed after `checkpoint`: updated ones newest first, then never-updated ones.

        Kibana leaves `updated_at` null until a case is first changed and sorts nulls last, so one walk
        by update time stops at the first older updated case before it reaches cases opened since and
        never touched; those come from a second walk by creation time.
        """
        seen: set[str] = set()
        for case in self._find("updatedAt", statuses):
            stamp = case.get("updated_at")
            if stamp is None:  # never updated: the walk by creation time decides (wherever nulls sort)
                continue
            if checkpoint is not None and parse_datetime(stamp) <= checkpoint:
                break
            seen.add(str(case.get("id")))
            yield case
        for case in self._find("createdAt", statuses):
            stamp = case.get("created_at")
            if checkpoint is not None and stamp and parse_datetime(stamp) <= checkpoint:
                return
            if case.get("updated_at") is None and str(case.get("id")) not in seen:
                yield case

    def _find(self, sort_field: str, statuses: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every Security case, newest first by `sort_field`, a page at a time."""
        page = 1
        while True:
            params: dict[str, Any] = {
                "owner": "securitySolution",
                "sortField": sort_field,
                "sortOrder": "desc",
                "page": page,
                "perPage": 100,
            }
            if statuses:
                params["status"] = list(statuses)
            body = self._get("/api/cases/_find", params)
            cases = body.get("cases") or []
            yield from cases
            if page * 100 >= int(body.get("total") or 0) or not cases:
                return
            page += 1

    def comments(self, case_id: str) -> list[dict[str, Any]]:
        comments, page = [], 1
        while True:
            body = self._get(
                f"/api/cases/{case_id}/comments/_find", {"page": page, "perPage": 100, "sortOrder": "asc"}
            )
            batch = body.get("comments") or []
            comments.extend(batch)
            if page * 100 >= int(body.get("total") or 0) or not batch:
                return comments
            page += 1

    def alert_attachments(self, case_id: str) -> list[dict[str, Any]]:
        """The case's attached alerts, in the shape of alert comments (`type`, `alertId`, `index`).

        `comments/_find` returns user comments only, so attachments come from `GET /api/cases/{id}/alerts`
        (`[{id, index, attached_at}]`). That endpoint is a technical preview: where Kibana lacks it (404),
        the case itself (`GET /api/cases/{id}`) carries the alert comments.
        """
        try:
            body = self._get(f"/api/cases/{case_id}/alerts")
        except RemoteError as exc:
            if exc.status != 404:
                raise
            case = self._get(f"/api/cases/{case_id}")
            return [
                c for c in case.get("comments") or [] if isinstance(c, Mapping) and c.get("type") == "alert"
            ]
        return [
            {
                "type": "alert",
                "alertId": item["id"],
                "index": item.get("index"),
                "created_at": item.get("attached_at"),
            }
            for item in body or []
            if isinstance(item, Mapping) and item.get("id")
        ]

    def close(self) -> None:
        self.http.close()


def _kibana_reason(response: httpx.Response) -> str:
    try:
        return _reason(response.json(), response.reason_phrase)
    except ValueError:
        return response.reason_phrase
