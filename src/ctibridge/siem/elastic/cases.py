"""Kibana cases (Security owner) to the normalised model.

A case's attached alerts become the very Incidents the alert import makes (same mapper, same ids),
when their documents are at hand; otherwise their ids are kept in the description so nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from ctibridge.config.types import parse_datetime
from ctibridge.errors import InputError
from ctibridge.model import observables as o
from ctibridge.model.alerts import Alert, Case, Comment, Link, parse_severity
from ctibridge.siem.elastic.alerts import SOURCE, AlertMapper

log = logging.getLogger(__name__)

# Kibana case observable type keys (8.18+/9.x) to model constructors.
OBSERVABLE_TYPES = {
    "observable-type-ipv4": o.make_ip,
    "observable-type-ipv6": o.make_ip,
    "observable-type-url": o.make_url,
    "observable-type-hostname": o.make_hostname,
    "observable-type-domain": o.make_domain,
    "observable-type-email": o.make_email,
    "observable-type-file-hash": lambda value: _hash_file(value),
    "observable-type-file-path": lambda value: o.make_file(path=value),
    "observable-type-user": lambda value: o.make_user(login=value),
    "observable-type-registry": o.make_registry_key,
}


def _hash_file(value: Any) -> o.File | None:
    text = str(value or "").strip()
    algorithm = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}.get(len(text))
    return o.make_file(hashes={algorithm: text}) if algorithm else None


def _user_name(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    return entry.get("full_name") or entry.get("username") or entry.get("email")


def alert_ids_of(
    case: Mapping[str, Any], comments: list[Mapping[str, Any]] | None = None
) -> list[tuple[str, str | None]]:
    """(alert id, index) pairs attached to a case through its alert comments."""
    pairs: dict[str, str | None] = {}
    for comment in comments if comments is not None else case.get("comments") or []:
        if comment.get("type") != "alert":
            continue
        ids, indices = comment.get("alertId"), comment.get("index")
        ids = ids if isinstance(ids, list) else [ids]
        indices = indices if isinstance(indices, list) else [indices] * len(ids)
        for alert_id, index in zip(ids, indices, strict=False):
            if alert_id:
                pairs.setdefault(str(alert_id), index)
    return list(pairs.items())


class CaseMapper:
    def __init__(
        self, kibana_url: str | None = None, space: str = "default", alert_mapper: AlertMapper | None = None
    ):
        self.kibana_url = kibana_url.rstrip("/") if kibana_url else None
        self.space_prefix = "" if space in ("", "default") else f"/s/{space}"
        self.alert_mapper = alert_mapper or AlertMapper(kibana_url, space)

    def __call__(
        self,
        case: Mapping[str, Any],
        comments: list[Mapping[str, Any]] | None = None,
        alert_documents: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Case:
        case_id = case.get("id")
        title = case.get("title")
        if not case_id or not title:
            raise InputError("a case needs 'id' and 'title'")
        try:
            created = parse_datetime(case.get("created_at"))
        except (ValueError, TypeError):
            raise InputError(f"case {case_id} has no readable created_at") from None
        updated_text = case.get("updated_at") or case.get("created_at")
        comments = comments if comments is not None else list(case.get("comments") or [])
        alerts, missing = self._alerts(case, comments, alert_documents or {})
        severity = parse_severity(case.get("severity"))
        return Case(
            source=SOURCE,
            id=str(case_id),
            name=str(title),
            created=created,
            updated=parse_datetime(updated_text),
            description=self._description(case, missing),
            status=case.get("status"),
            severity=severity,
            priority=severity.priority if severity else None,
            tags=[str(tag) for tag in case.get("tags") or []],
            assignees=[str(a.get("uid")) for a in case.get("assignees") or [] if isinstance(a, Mapping)],
            comments=list(self._comments(comments)),
            alerts=alerts,
            observables=list(self._observables(case)),
            links=[Link(SOURCE, self._case_url(str(case_id)), str(case_id), "Kibana case")],
        )

    def _alerts(
        self,
        case: Mapping[str, Any],
        comments: list[Mapping[str, Any]],
        documents: Mapping[str, Mapping[str, Any]],
    ) -> tuple[list[Alert], list[str]]:
        alerts, missing = [], []
        for alert_id, index in alert_ids_of(case, comments):
            document = documents.get(alert_id)
            if document is None:
                missing.append(alert_id)
                continue
            try:
                alerts.append(self.alert_mapper(document, index))
            except InputError as exc:
                log.warning("case %s: skipped attached alert %s: %s", case.get("id"), alert_id, exc)
                missing.append(alert_id)
        return alerts, missing

    @staticmethod
    def _description(case: Mapping[str, Any], missing_alerts: list[str]) -> str:
        parts = [str(case.get("description") or "")]
        facts = [f"status {case.get('status')}"] if case.get("status") else []
        assignees = [
            str(a.get("uid")) for a in case.get("assignees") or [] if isinstance(a, Mapping) and a.get("uid")
        ]
        if assignees:
            facts.append("assignees " + ", ".join(assignees))
        creator = _user_name(case.get("created_by"))
        if creator:
            facts.append(f"opened by {creator}")
        if facts:
            parts.append("Kibana case: " + "; ".join(facts) + ".")
        if missing_alerts:
            parts.append("Attached alerts not found in Elasticsearch: " + ", ".join(missing_alerts))
        return "\n\n".join(part for part in parts if part)

    @staticmethod
    def _comments(comments: list[Mapping[str, Any]]) -> Iterator[Comment]:
        for comment in comments:
            if comment.get("type") != "user" or not str(comment.get("comment") or "").strip():
                continue
            try:
                created = parse_datetime(comment.get("created_at"))
            except (ValueError, TypeError):
                log.debug("skipped comment %s without a readable time", comment.get("id"))
                continue
            yield Comment(
                str(comment["comment"]), created, _user_name(comment.get("created_by")), comment.get("id")
            )

    @staticmethod
    def _observables(case: Mapping[str, Any]) -> Iterator[o.Observable]:
        found = o.ObservableSet()
        for entry in case.get("observables") or []:
            if not isinstance(entry, Mapping):
                continue
            make = OBSERVABLE_TYPES.get(str(entry.get("typeKey")))
            if make is None:
                log.debug("skipped case observable of type %s", entry.get("typeKey"))
                continue
            found.add(make(entry.get("value")))
        yield from found

    def _case_url(self, case_id: str) -> str | None:
        if not self.kibana_url:
            return None
        return f"{self.kibana_url}{self.space_prefix}/app/security/cases/{quote(case_id)}"


def unwrap_cases(document: Any) -> Iterator[Any]:
    """Cases from a `_find` response, a JSON array, NDJSON lines, or a single case."""
    if isinstance(document, list):
        yield from document
    elif isinstance(document, Mapping) and isinstance(document.get("cases"), list):
        yield from document["cases"]
    else:
        yield document
