"""Kibana 9 test double: Cases and Security detection-engine rules, per space, enforced like Kibana.

Contract rules enforced:

* Auth ``Authorization: ApiKey ...`` (or basic) else 401 ``{"statusCode":401,"error":"Unauthorized",...}``;
  then every non-GET needs ``kbn-xsrf`` (or ``kbn-version``), else Kibana's exact 400 body
  ``{"statusCode":400,"error":"Bad Request","message":"Request must contain a kbn-xsrf header."}``.
* ``/s/<space>/api/...`` addresses a space (data kept apart per space; no prefix = ``default``); an
  unknown space is a 404. ``elastic-api-version``, when sent, must be ``2023-10-31``.
* Cases ``_find``: ``perPage`` at most 100 and ``page * perPage`` at most 10,000 (Kibana's messages);
  unknown query keys are refused (Kibana decodes with exact io-ts types: ``per_page`` is not
  ``perPage``); ``from``/``to`` filter on creation time (ISO or date math); sort ``createdAt`` (default),
  ``updatedAt``, ``closedAt``, ``title``, ``category``, ``status``, ``severity`` with missing values last;
  counts per status ignore the status filter. ``comments/_find`` returns user comments only (alerts
  come from ``/alerts`` or the case itself). ``PATCH`` needs the current ``version`` (else 409).
* Rules: create/update bodies validated against the Kibana OpenAPI spec when it is present (the
  ``type`` discriminator first, then the variant's schema, OpenAPI 3.0 ``nullable`` honoured); failures
  are 400 ``[request body]: ...`` and recorded in :attr:`KibanaDouble.validation_failures`. Duplicate
  ``rule_id`` is 409 ``rule_id: "x" already exists``; unknown ``id``/``rule_id`` 404; PUT replaces the rule
  (unspecified fields back to defaults), PATCH merges. ``_find`` understands a KQL subset over
  ``alert.attributes.*``; ``_bulk_action`` does delete/enable/disable/duplicate/edit (tags, index
  patterns, schedule) by saved-object ``ids`` or ``query``, answering 500 on partial failure as Kibana does.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import fnmatch
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.doubles.elastic_http import (
    LoopbackServer,
    RecordedRequest,
    Response,
    collect_routes,
    match_route,
    route,
)
from tests.doubles.elastic_query import format_millis, parse_date_math, parse_iso, to_millis
from tests.support.shared import shared_file

DEFAULT_SPEC_PATH = Path(
    os.environ.get("CTIBRIDGE_KIBANA_OAS") or shared_file("specs/kibana/kibana-oas-filtered.yaml")
)
API_VERSION = "2023-10-31"
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
CASE_STATUSES = ("open", "in-progress", "closed")
CASE_SEVERITIES = ("low", "medium", "high", "critical")
CASE_OWNERS = ("securitySolution", "observability", "cases")
OBSERVABLE_TYPES = tuple(
    f"observable-type-{t}"
    for t in (
        "ipv4",
        "ipv6",
        "url",
        "hostname",
        "domain",
        "email",
        "file-hash",
        "file-path",
        "agent-id",
        "user",
        "process",
        "registry",
        "service",
    )
)
RULE_TYPES = (
    "eql",
    "query",
    "saved_query",
    "threshold",
    "threat_match",
    "machine_learning",
    "new_terms",
    "esql",
)
RULE_TYPE_IDS = {
    "eql": "siem.eqlRule",
    "query": "siem.queryRule",
    "saved_query": "siem.savedQueryRule",
    "threshold": "siem.thresholdRule",
    "threat_match": "siem.indicatorRule",
    "machine_learning": "siem.mlRule",
    "new_terms": "siem.newTermsRule",
    "esql": "siem.esqlRule",
}
RULE_REQUIRED = {
    "query": (),
    "eql": ("query", "language"),
    "esql": ("query", "language"),
    "saved_query": ("saved_id",),
    "threshold": ("query", "threshold"),
    "threat_match": ("query", "threat_query", "threat_mapping", "threat_index"),
    "machine_learning": ("anomaly_threshold", "machine_learning_job_id"),
    "new_terms": ("query", "new_terms_fields", "history_window_start"),
}
RULE_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "interval": "5m",
    "from": "now-6m",
    "to": "now",
    "max_signals": 100,
    "tags": [],
    "references": [],
    "threat": [],
    "false_positives": [],
    "author": [],
    "exceptions_list": [],
    "actions": [],
    "risk_score_mapping": [],
    "severity_mapping": [],
    "setup": "",
    "related_integrations": [],
    "required_fields": [],
    "version": 1,
}
RULE_SORT_FIELDS = {
    "created_at": "created_at",
    "createdAt": "created_at",
    "enabled": "enabled",
    "name": "name",
    "risk_score": "risk_score",
    "riskScore": "risk_score",
    "severity": "severity",
    "updated_at": "updated_at",
    "updatedAt": "updated_at",
}
KQL_FIELDS = {
    "name": "name",
    "tags": "tags",
    "enabled": "enabled",
    "createdBy": "created_by",
    "updatedBy": "updated_by",
    "interval": "interval",
    "schedule.interval": "interval",
    "params.ruleId": "rule_id",
    "params.type": "type",
    "params.immutable": "immutable",
    "alertTypeId": "_rule_type_id",
    "params.severity": "severity",
    "params.riskScore": "risk_score",
}


def now_iso(moment: float | None = None) -> str:
    return format_millis(int((moment if moment is not None else time.time()) * 1000))


class KibanaError(Exception):
    """A Kibana error answer; ``style`` ``boom`` (platform/cases) or ``siem`` (detection engine)."""

    def __init__(
        self, status: int, message: str, style: str = "boom", extra: Mapping[str, Any] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.style = style
        self.extra = dict(extra or {})

    def response(self) -> Response:
        if self.style == "siem":
            body: dict[str, Any] = {"message": self.message, "status_code": self.status, **self.extra}
        else:
            body = {
                "statusCode": self.status,
                "error": REASONS.get(self.status, "Error"),
                "message": self.message,
                **self.extra,
            }
        return Response.json(self.status, body)


# --------------------------------------------------------------------------------------------------
# OpenAPI spec validation (loaded once per process: the file is 3.7 MB)

_SPEC_LOCK = threading.Lock()
_SPECS: dict[str, KibanaSpec] = {}


def _nullable_siblings(node: Any) -> Any:
    """Make ``nullable: true`` next to ``$ref``/``oneOf``/``anyOf`` accept null.

    OpenAPI 3.0.3 gives ``nullable`` meaning only beside ``type`` (and JSON Schema draft 4 ignores the
    siblings of ``$ref``), so a strict validator would refuse ``null`` where Kibana's generated spec marks
    a referenced schema nullable (e.g. an action's ``frequency.throttle``). Kibana itself (zod
    ``.nullable()``) accepts null there; so does the double.
    """
    if isinstance(node, list):
        return [_nullable_siblings(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_siblings(v) for k, v in node.items()}
    if out.get("nullable") is True and "type" not in out:
        inner = {k: v for k, v in out.items() if k not in ("nullable", "description", "x-omitempty")}
        if inner:
            return {"anyOf": [inner, {"enum": [None]}], **{k: out[k] for k in ("description",) if k in out}}
    return out


class KibanaSpec:
    """The Kibana OpenAPI document with validators for its component schemas (OpenAPI 3.0 rules)."""

    def __init__(self, path: Path) -> None:
        import yaml
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(path, encoding="utf-8") as handle:
            self.document = yaml.load(handle, Loader=loader)
        self.path = path
        self.document = _nullable_siblings(self.document)
        self.schemas: dict[str, Any] = self.document["components"]["schemas"]
        self._registry = Registry().with_resource(
            "urn:kibana-oas", Resource.from_contents(self.document, default_specification=DRAFT4)
        )
        self._validators: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | str | None = None) -> KibanaSpec | None:
        """The cached spec for ``path`` (default: the shared specs folder), or None when absent."""
        target = Path(path) if path is not None else DEFAULT_SPEC_PATH
        if not target.is_file():
            return None
        key = str(target.resolve())
        with _SPEC_LOCK:
            if key not in _SPECS:
                _SPECS[key] = cls(target)
            return _SPECS[key]

    def validator(self, schema: str, mode: str = "write") -> Any:
        from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

        with self._lock:
            key = (schema, mode)
            if key not in self._validators:
                cls = OAS30WriteValidator if mode == "write" else OAS30ReadValidator
                self._validators[key] = cls(
                    {"$ref": f"urn:kibana-oas#/components/schemas/{schema}"}, registry=self._registry
                )
            return self._validators[key]

    def errors(self, schema: str, instance: Any, mode: str = "write") -> list[str]:
        """Readable ``path: message`` reasons, most relevant first (empty when valid)."""
        found = sorted(
            self.validator(schema, mode).iter_errors(instance),
            key=lambda e: (list(e.absolute_path), e.message),
        )
        out = []
        for err in found:
            where = ".".join(str(p) for p in err.absolute_path)
            out.append(f"{where}: {err.message}" if where else err.message)
        return out

    def properties(self, schema: str) -> set[str]:
        """Property names a schema declares, following ``$ref`` and ``allOf``."""
        names: set[str] = set()

        def walk(node: Any) -> None:
            if not isinstance(node, dict):
                return
            if "$ref" in node:
                walk(self.schemas[node["$ref"].rsplit("/", 1)[-1]])
                return
            for sub in node.get("allOf", []):
                walk(sub)
            names.update(node.get("properties", {}))

        walk(self.schemas[schema])
        return names

    def discriminated(self, union: str, type_value: Any) -> str | None:
        mapping = self.schemas[union].get("discriminator", {}).get("mapping", {})
        target = mapping.get(type_value) if isinstance(type_value, str) else None
        return target.rsplit("/", 1)[-1] if target else None


# --------------------------------------------------------------------------------------------------
# KQL subset for rules _find / _bulk_action


class _Kql:
    """``field:value``, ``field:(a or b)``, quoted values, ``*`` wildcards, AND/OR/NOT, parentheses."""

    TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|(:)|([^\s():"]+))')

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = self.TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"Invalid KQL at position {pos}: {text[pos : pos + 20]}")
            pos = m.end()
            if m.group(1):
                self.tokens.append(("(", "("))
            elif m.group(2):
                self.tokens.append((")", ")"))
            elif m.group(3):
                self.tokens.append(("value", json.loads(m.group(3))))
            elif m.group(4):
                self.tokens.append((":", ":"))
            else:
                word = m.group(5)
                kind = word.upper() if word.upper() in ("AND", "OR", "NOT") else "word"
                self.tokens.append((kind, word))
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind is not None and tok[0] != kind):
            raise ValueError(f"Expected {kind or 'a token'} but found {tok[1] if tok else 'end of input'}")
        self.pos += 1
        return tok

    def parse(self) -> Any:
        if not self.tokens:
            return ("all",)
        node = self._or()
        if self.peek() is not None:
            raise ValueError(f"Unexpected {self.peek()[1]}")  # type: ignore[index]
        return node

    def _or(self) -> Any:
        node = self._and()
        while self.peek() and self.peek()[0] == "OR":  # type: ignore[index]
            self.take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> Any:
        node = self._not()
        while self.peek() and self.peek()[0] == "AND":  # type: ignore[index]
            self.take()
            node = ("and", node, self._not())
        return node

    def _not(self) -> Any:
        if self.peek() and self.peek()[0] == "NOT":  # type: ignore[index]
            self.take()
            return ("not", self._not())
        return self._primary()

    def _primary(self) -> Any:
        tok = self.peek()
        if tok and tok[0] == "(":
            self.take()
            node = self._or()
            self.take(")")
            return node
        field = self.take("word")[1]
        self.take(":")
        if self.peek() and self.peek()[0] == "(":  # type: ignore[index]
            self.take()
            values = [self._value()]
            ops: list[str] = []
            while self.peek() and self.peek()[0] in ("OR", "AND"):  # type: ignore[index]
                ops.append(self.take()[0])
                values.append(self._value())
            self.take(")")
            joiner = "and" if ops and all(o == "AND" for o in ops) else "or"
            return (joiner + "_values", field, values)
        return ("eq", field, self._value())

    def _value(self) -> tuple[str, bool]:
        kind, text = self.take()
        if kind == "value":
            return text, True
        if kind in ("word", "AND", "OR", "NOT"):
            return text, False
        raise ValueError(f"Expected a value but found {text}")


def _kql_predicate(text: str | None):
    if not text:
        return lambda rule: True
    try:
        tree = _Kql(text).parse()
    except ValueError as exc:
        raise KibanaError(400, f"Invalid filter: {exc}", "siem") from exc

    def attr(field: str) -> str:
        name = field[len("alert.attributes.") :] if field.startswith("alert.attributes.") else None
        if name is None or name not in KQL_FIELDS:
            raise KibanaError(
                400,
                f"This key '{field}' does NOT exist in alert saved object index patterns: {field}",
                "siem",
            )
        return KQL_FIELDS[name]

    def value_matches(rule: dict[str, Any], key: str, value: tuple[str, bool]) -> bool:
        text, quoted = value
        raw = RULE_TYPE_IDS.get(rule.get("type", ""), "") if key == "_rule_type_id" else rule.get(key)
        items = raw if isinstance(raw, list) else [raw]
        for item in items:
            if item is None:
                continue
            candidate = ("true" if item else "false") if isinstance(item, bool) else str(item)
            if key == "name":
                if not quoted and "*" in text:
                    if fnmatch.fnmatch(candidate.lower(), text.lower()):
                        return True
                elif text.lower() in candidate.lower():
                    return True
            elif not quoted and "*" in text:
                if fnmatch.fnmatchcase(candidate, text):
                    return True
            elif candidate == text:
                return True
        return False

    def check(node: Any) -> None:
        if node[0] in ("eq", "or_values", "and_values"):
            attr(node[1])
        elif node[0] in ("and", "or"):
            check(node[1])
            check(node[2])
        elif node[0] == "not":
            check(node[1])

    check(tree)

    def evaluate(node: Any, rule: dict[str, Any]) -> bool:
        kind = node[0]
        if kind == "all":
            return True
        if kind == "and":
            return evaluate(node[1], rule) and evaluate(node[2], rule)
        if kind == "or":
            return evaluate(node[1], rule) or evaluate(node[2], rule)
        if kind == "not":
            return not evaluate(node[1], rule)
        key = attr(node[1])
        if kind == "eq":
            return value_matches(rule, key, node[2])
        results = [value_matches(rule, key, v) for v in node[2]]
        return all(results) if kind == "and_values" else any(results)

    return lambda rule: evaluate(tree, rule)


# --------------------------------------------------------------------------------------------------
# State


class Space:
    def __init__(self, space_id: str) -> None:
        self.id = space_id
        self.cases: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.rules: dict[str, dict[str, Any]] = {}


class KibanaDouble(LoopbackServer):
    """In-memory Kibana (cases, detection rules) on loopback; see the module docstring for the contract.

    Test-side helpers: :meth:`add_space`, :meth:`seed_case` (a case in Kibana's response shape, with
    ``comments`` and ``observables``), :meth:`cases`, :meth:`case`, :meth:`rules`, :meth:`rule`,
    :attr:`validation_failures`, :attr:`spec`; plus ``inject``/``requests``/``count``.
    """

    product = "kibana"

    def __init__(
        self,
        *,
        version: str = "9.1.5",
        spaces: Iterable[str] = ("default",),
        spec_path: Path | str | None = None,
        validate_spec: bool = True,
        username: str = "elastic",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.username = username
        self.spaces: dict[str, Space] = {}
        for space in spaces:
            self.add_space(space)
        self.spec: KibanaSpec | None = KibanaSpec.load(spec_path) if validate_spec else None
        self.validation_failures: list[dict[str, Any]] = []
        self._routes = collect_routes(self)
        self._version_seq = 0
        self._clock_offset = 0.0

    # helpers ----------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self._clock_offset += seconds

    def add_space(self, space_id: str) -> None:
        if not re.fullmatch(r"[a-z0-9_\-]+", space_id):
            raise ValueError(f"invalid space id {space_id!r}")
        with self.lock:
            self.spaces.setdefault(space_id, Space(space_id))

    def _space(self, space_id: str) -> Space:
        if space_id not in self.spaces:
            raise KeyError(f"no space {space_id!r}; call add_space first")
        return self.spaces[space_id]

    def _next_version(self) -> str:
        self._version_seq += 1
        return base64.b64encode(json.dumps([self._version_seq, 1], separators=(",", ":")).encode()).decode()

    def seed_case(self, case: Mapping[str, Any], space: str = "default") -> dict[str, Any]:
        """Store a case given in Kibana's response shape (``comments``/``observables`` included) as is.

        Missing fields get Kibana's defaults; ``id`` and ``version`` are generated when absent.
        """
        with self.lock:
            target = self._space(space)
            stored = self._case_defaults(dict(copy.deepcopy(case)))
            comments = stored.pop("comments", []) or []
            for comment in comments:
                comment.setdefault("id", str(uuid.uuid4()))
                comment.setdefault("version", self._next_version())
                comment.setdefault("owner", stored["owner"])
                comment.setdefault("created_at", stored["created_at"])
                comment.setdefault("created_by", stored["created_by"])
                for key in ("pushed_at", "pushed_by", "updated_at", "updated_by"):
                    comment.setdefault(key, None)
            target.cases[stored["id"]] = stored
            target.comments[stored["id"]] = comments
            return self._case_view(target, stored["id"])

    def cases(self, space: str = "default") -> list[dict[str, Any]]:
        with self.lock:
            target = self._space(space)
            return [self._case_view(target, cid) for cid in target.cases]

    def case(self, case_id: str, space: str = "default") -> dict[str, Any] | None:
        with self.lock:
            target = self._space(space)
            return self._case_view(target, case_id) if case_id in target.cases else None

    def rules(self, space: str = "default") -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(r) for r in self._space(space).rules.values()]

    def rule(
        self,
        *,
        rule_id: str | None = None,
        id: str | None = None,
        space: str = "default",
    ) -> dict[str, Any] | None:
        with self.lock:
            for rule in self._space(space).rules.values():
                if (id is not None and rule["id"] == id) or (
                    rule_id is not None and rule["rule_id"] == rule_id
                ):
                    return copy.deepcopy(rule)
        return None

    @property
    def spec_available(self) -> bool:
        return self.spec is not None

    # product hooks ----------------------------------------------------------------------------------

    def fault_body(self, status: int, request: RecordedRequest) -> Any:
        message = {429: "Too Many Requests", 503: "Service Unavailable"}.get(
            status, f"injected error {status}"
        )
        return {"statusCode": status, "error": REASONS.get(status, "Error"), "message": message}

    def decorate(self, response: Response, request: RecordedRequest) -> None:
        if response.header("Content-Type") == "application/json":
            response.set_header("Content-Type", "application/json; charset=utf-8")
        response.set_header("kbn-name", "kibana-double")
        response.set_header("cache-control", "private, no-cache, no-store, must-revalidate")

    def internal_error(self, exc: Exception) -> Response:
        return KibanaError(500, f"bug in the Kibana double: {exc!r}").response()

    def handle(self, request: RecordedRequest) -> Response:
        try:
            outcome, principal = self.credentials.check(request.header("authorization"))
            if outcome != "ok":
                response = KibanaError(401, "Unauthorized").response()
                response.set_header("WWW-Authenticate", 'Basic realm="kibana", charset="UTF-8", ApiKey')
                return response
            if request.method not in ("GET", "HEAD", "OPTIONS") and not (
                request.header("kbn-xsrf") is not None or request.header("kbn-version") is not None
            ):
                return KibanaError(400, "Request must contain a kbn-xsrf header.").response()
            path = request.path
            space_id = "default"
            m = re.match(r"^/s/([^/]+)(/.*)$", path)
            if m:
                space_id, path = m.group(1), m.group(2)
            if space_id not in self.spaces:
                return KibanaError(404, "Not Found").response()
            version = request.header("elastic-api-version")
            if version is not None and version != API_VERSION:
                return KibanaError(
                    400,
                    f'Please specify a valid version via elastic-api-version header. Version "{version}" is '
                    f"not supported; valid versions: [{API_VERSION}]",
                ).response()
            fn, params, _ = match_route(self._routes, request.method, path)
            if fn is None:
                return KibanaError(404, "Not Found").response()
            return fn(request, self.spaces[space_id], principal or self.username, **params)
        except KibanaError as exc:
            return exc.response()

    @staticmethod
    def _body(request: RecordedRequest) -> Any:
        if not request.body.strip():
            return None
        try:
            return json.loads(request.body)
        except ValueError as exc:
            raise KibanaError(400, f"Invalid JSON in request body: {exc}") from exc

    def _user(self, principal: str) -> dict[str, Any]:
        return {"username": principal, "full_name": None, "email": None}

    def _record_failure(self, request: RecordedRequest, schema: str, reasons: list[str]) -> None:
        self.validation_failures.append(
            {
                "method": request.method,
                "path": request.path,
                "schema": schema,
                "reasons": reasons,
                "body": request.json,
            }
        )

    # spaces / status --------------------------------------------------------------------------------

    @route("GET", "/api/status")
    def _status(self, request: RecordedRequest, space: Space, user: str) -> Response:
        return Response.json(
            200,
            {
                "name": "kibana-double",
                "uuid": "00000000-0000-4000-8000-000000000000",
                "version": {
                    "number": self.version,
                    "build_hash": "0" * 40,
                    "build_number": 1,
                    "build_snapshot": False,
                },
                "status": {"overall": {"level": "available", "summary": "All services are available"}},
            },
        )

    @route("GET", "/api/spaces/space")
    def _list_spaces(self, request: RecordedRequest, space: Space, user: str) -> Response:
        return Response.json(
            200,
            [
                {"id": s, "name": s.title(), "disabledFeatures": [], "_reserved": s == "default"}
                for s in self.spaces
            ],
        )

    @route("GET", "/api/spaces/space/{space_id}")
    def _get_space(self, request: RecordedRequest, space: Space, user: str, space_id: str) -> Response:
        if space_id not in self.spaces:
            raise KibanaError(404, "Not Found")
        return Response.json(200, {"id": space_id, "name": space_id.title(), "disabledFeatures": []})

    # cases ------------------------------------------------------------------------------------------

    def _case_defaults(self, case: dict[str, Any]) -> dict[str, Any]:
        created = case.get("created_at") or now_iso(self.now())
        defaults: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "version": None,
            "title": "",
            "description": "",
            "status": "open",
            "severity": "low",
            "tags": [],
            "owner": "securitySolution",
            "assignees": [],
            "category": None,
            "customFields": [],
            "connector": {"id": "none", "name": "none", "type": ".none", "fields": None},
            "settings": {"syncAlerts": True},
            "created_at": created,
            "created_by": self._user(self.username),
            "updated_at": None,
            "updated_by": None,
            "closed_at": None,
            "closed_by": None,
            "duration": None,
            "external_service": None,
            "observables": [],
            "comments": [],
            "totalComment": 0,
            "totalAlerts": 0,
        }
        for key, value in defaults.items():
            case.setdefault(key, value)
        for key in (
            "id",
            "title",
            "description",
            "status",
            "severity",
            "owner",
            "connector",
            "settings",
            "created_by",
            "tags",
            "assignees",
            "customFields",
            "observables",
        ):
            if case[key] is None:
                case[key] = defaults[key]
        if not case.get("version"):
            case["version"] = self._next_version()
        return case

    def _case_view(self, space: Space, case_id: str, with_comments: bool = True) -> dict[str, Any]:
        case = copy.deepcopy(space.cases[case_id])
        comments = space.comments.get(case_id, [])
        case["comments"] = copy.deepcopy(comments) if with_comments else []
        case["totalComment"] = sum(1 for c in comments if c.get("type") == "user")
        alert_ids: list[str] = []
        for c in comments:
            if c.get("type") == "alert":
                ids = c.get("alertId")
                alert_ids.extend(ids if isinstance(ids, list) else [ids])
        case["totalAlerts"] = len(dict.fromkeys(alert_ids))
        return case

    def _validate_case_body(
        self, request: RecordedRequest, body: Any, schema: str, allowed: set[str]
    ) -> None:
        if not isinstance(body, dict):
            raise KibanaError(400, "[request body]: expected an object")
        extra = sorted(set(body) - allowed)
        if extra:
            raise KibanaError(400, f'invalid keys "{",".join(extra)}"')
        if self.spec is not None:
            reasons = self.spec.errors(schema, body)
            if reasons:
                self._record_failure(request, schema, reasons)
                raise KibanaError(400, "[request body]: " + "; ".join(reasons))

    @route("POST", "/api/cases")
    def _create_case(self, request: RecordedRequest, space: Space, user: str) -> Response:
        body = self._body(request)
        allowed = {
            "title",
            "description",
            "owner",
            "tags",
            "connector",
            "settings",
            "severity",
            "assignees",
            "category",
            "customFields",
        }
        self._validate_case_body(request, body, "Cases_create_case_request", allowed)
        missing = [
            k for k in ("title", "description", "owner", "tags", "connector", "settings") if k not in body
        ]
        if missing:
            raise KibanaError(
                400, "".join(f'Invalid value "undefined" supplied to "{k}",' for k in missing).rstrip(",")
            )
        if len(body["title"]) > 160:
            raise KibanaError(400, "The length of the title is too long. The maximum length is 160.")
        if len(body["description"]) > 30000:
            raise KibanaError(400, "The length of the description is too long. The maximum length is 30000.")
        if body["owner"] not in CASE_OWNERS:
            raise KibanaError(403, f'Unauthorized to create case with owners: "{body["owner"]}"')
        case = self._case_defaults(
            {
                **body,
                "id": str(uuid.uuid4()),
                "created_by": self._user(user),
                "created_at": now_iso(self.now()),
            }
        )
        case.pop("comments", None)
        space.cases[case["id"]] = case
        space.comments[case["id"]] = []
        return Response.json(200, self._case_view(space, case["id"]))

    @route("PATCH", "/api/cases")
    def _update_cases(self, request: RecordedRequest, space: Space, user: str) -> Response:
        body = self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("cases"), list) or not body["cases"]:
            raise KibanaError(400, 'Invalid value "undefined" supplied to "cases"')
        extra = sorted(set(body) - {"cases"})
        if extra:
            raise KibanaError(400, f'invalid keys "{",".join(extra)}"')
        if self.spec is not None:
            reasons = self.spec.errors("Cases_update_case_request", body)
            if reasons:
                self._record_failure(request, "Cases_update_case_request", reasons)
                raise KibanaError(400, "[request body]: " + "; ".join(reasons))
        missing = [c.get("id") for c in body["cases"] if c.get("id") not in space.cases]
        if missing:
            raise KibanaError(
                404,
                f"These cases {', '.join(map(str, missing))} do not exist. Please check you "
                "have the correct ids.",
            )
        stale = [c["id"] for c in body["cases"] if c.get("version") != space.cases[c["id"]]["version"]]
        if stale:
            raise KibanaError(
                409,
                f"These cases {', '.join(stale)} has been updated. Please refresh before saving "
                "additional updates.",
            )
        out = []
        stamp = now_iso(self.now())
        for patch in body["cases"]:
            case = space.cases[patch["id"]]
            changes = {k: v for k, v in patch.items() if k not in ("id", "version")}
            if not changes:
                raise KibanaError(406, "All update fields are identical to current version.")
            if changes.get("status") == "closed" and case["status"] != "closed":
                case["closed_at"] = stamp
                case["closed_by"] = self._user(user)
                created = parse_iso(case["created_at"])
                if created is not None:
                    case["duration"] = max(0, int((self.now() * 1000 - to_millis(created)) / 1000))
            elif "status" in changes and changes["status"] != "closed":
                case["closed_at"] = case["closed_by"] = case["duration"] = None
            case.update(copy.deepcopy(changes))
            case["updated_at"] = stamp
            case["updated_by"] = self._user(user)
            case["version"] = self._next_version()
            out.append(self._case_view(space, case["id"], with_comments=False))
        return Response.json(200, out)

    @route("DELETE", "/api/cases")
    def _delete_cases(self, request: RecordedRequest, space: Space, user: str) -> Response:
        ids = request.query.get("ids", [])
        if len(ids) == 1 and ids[0].startswith("["):
            ids = json.loads(ids[0])
        if not ids:
            raise KibanaError(400, 'Invalid value "undefined" supplied to "ids"')
        for cid in ids:
            if cid not in space.cases:
                raise KibanaError(404, f"Saved object [cases/{cid}] not found")
        for cid in ids:
            space.cases.pop(cid)
            space.comments.pop(cid, None)
        return Response(204)

    def _find_params(self, request: RecordedRequest, allowed: set[str], what: str) -> dict[str, list[str]]:
        extra = sorted(set(request.query) - allowed)
        if extra:
            shown = json.dumps({k: v[-1] if len(v) == 1 else v for k, v in request.query.items()})
            raise KibanaError(400, f'Failed to find {what}: {shown}: Error: invalid keys "{",".join(extra)}"')
        return request.query

    @staticmethod
    def _paging(params: dict[str, list[str]], max_per_page: int) -> tuple[int, int]:
        try:
            page = int(params.get("page", ["1"])[-1])
            per_page = int(params.get("perPage", ["20"])[-1])
        except ValueError as exc:
            raise KibanaError(400, f"Invalid value supplied to page or perPage: {exc}") from exc
        if page < 1 or per_page < 0:
            raise KibanaError(400, f'Invalid value "{page if page < 1 else per_page}" supplied to "page"')
        if per_page > max_per_page:
            raise KibanaError(
                400,
                f"The provided perPage value was too high. The maximum allowed perPage value is "
                f"{max_per_page}.",
            )
        if page * per_page > 10000:
            raise KibanaError(
                400,
                "The number of documents is too high. Paginating through more than 10,000 "
                "documents is not possible.",
            )
        return page, per_page

    @staticmethod
    def _multi(params: dict[str, list[str]], key: str) -> list[str]:
        out: list[str] = []
        for value in params.get(key, []):
            if value.startswith("["):
                try:
                    out.extend(json.loads(value))
                    continue
                except ValueError:
                    pass
            out.append(value)
        return out

    @route("GET", "/api/cases/_find")
    def _find_cases(self, request: RecordedRequest, space: Space, user: str) -> Response:
        params = self._find_params(
            request,
            {
                "assignees",
                "category",
                "defaultSearchOperator",
                "from",
                "owner",
                "page",
                "perPage",
                "reporters",
                "search",
                "searchFields",
                "severity",
                "sortField",
                "sortOrder",
                "status",
                "tags",
                "to",
                "customFields",
            },
            "cases",
        )
        page, per_page = self._paging(params, 100)
        statuses = self._multi(params, "status")
        severities = self._multi(params, "severity")
        for value in statuses:
            if value not in CASE_STATUSES:
                raise KibanaError(400, f'Invalid value "{value}" supplied to "status"')
        for value in severities:
            if value not in CASE_SEVERITIES:
                raise KibanaError(400, f'Invalid value "{value}" supplied to "severity"')
        owners = self._multi(params, "owner")
        for value in owners:
            if value not in CASE_OWNERS:
                raise KibanaError(400, f'Invalid value "{value}" supplied to "owner"')
        sort_field = params.get("sortField", ["createdAt"])[-1]
        sort_order = params.get("sortOrder", ["desc"])[-1]
        sort_keys = {
            "createdAt": "created_at",
            "created_at": "created_at",
            "updatedAt": "updated_at",
            "updated_at": "updated_at",
            "closedAt": "closed_at",
            "closed_at": "closed_at",
            "title": "title",
            "category": "category",
            "status": "status",
            "severity": "severity",
        }
        if sort_field not in sort_keys:
            raise KibanaError(400, f'Invalid value "{sort_field}" supplied to "sortField"')
        if sort_order not in ("asc", "desc"):
            raise KibanaError(400, f'Invalid value "{sort_order}" supplied to "sortOrder"')
        now_ms = int(self.now() * 1000)
        bounds = {}
        for key in ("from", "to"):
            if key in params:
                ms = parse_date_math(params[key][-1], now_ms, round_up=key == "to")
                if ms is None:
                    raise KibanaError(400, f'Invalid date supplied to "{key}": {params[key][-1]}')
                bounds[key] = ms
        tags = set(self._multi(params, "tags"))
        assignees = set(self._multi(params, "assignees"))
        reporters = set(self._multi(params, "reporters"))
        categories = set(self._multi(params, "category"))
        search = params.get("search", [None])[-1]
        search_fields = self._multi(params, "searchFields") or ["title", "description"]

        def keep(case: dict[str, Any], with_status: bool) -> bool:
            if owners and case["owner"] not in owners:
                return False
            if with_status and statuses and case["status"] not in statuses:
                return False
            if severities and case["severity"] not in severities:
                return False
            if tags and not tags & set(case.get("tags") or []):
                return False
            if categories and case.get("category") not in categories:
                return False
            if reporters and (case.get("created_by") or {}).get("username") not in reporters:
                return False
            if assignees:
                uids = {a.get("uid") for a in case.get("assignees") or []}
                if not (("none" in assignees and not uids) or uids & assignees):
                    return False
            created = parse_iso(case["created_at"])
            created_ms = to_millis(created) if created else 0
            if "from" in bounds and created_ms < bounds["from"]:
                return False
            if "to" in bounds and created_ms > bounds["to"]:
                return False
            if search:
                needle = search.lower().strip('"')
                if not any(needle in str(case.get(f) or "").lower() for f in search_fields):
                    return False
            return True

        base = [c for c in space.cases.values() if keep(c, with_status=False)]
        matched = [c for c in base if not statuses or c["status"] in statuses]
        key = sort_keys[sort_field]
        rank = {
            "status": {s: i for i, s in enumerate(CASE_STATUSES)},
            "severity": {s: i for i, s in enumerate(CASE_SEVERITIES)},
        }

        def sort_value(case: dict[str, Any]) -> Any:
            value = case.get(key)
            if key in rank:
                return rank[key].get(value, 0)
            if key.endswith("_at") and value is not None:
                parsed = parse_iso(value)
                return to_millis(parsed) if parsed else 0
            return value

        present = [c for c in matched if sort_value(c) is not None]
        absent = [c for c in matched if sort_value(c) is None]
        present.sort(key=lambda c: (sort_value(c), c["id"]), reverse=sort_order == "desc")
        absent.sort(key=lambda c: c["id"])
        ordered = present + absent
        chosen = ordered[(page - 1) * per_page : page * per_page]
        return Response.json(
            200,
            {
                "page": page,
                "per_page": per_page,
                "total": len(ordered),
                "cases": [self._case_view(space, c["id"], with_comments=False) for c in chosen],
                "count_open_cases": sum(1 for c in base if c["status"] == "open"),
                "count_in_progress_cases": sum(1 for c in base if c["status"] == "in-progress"),
                "count_closed_cases": sum(1 for c in base if c["status"] == "closed"),
            },
        )

    def _case_or_404(self, space: Space, case_id: str) -> dict[str, Any]:
        if case_id not in space.cases:
            raise KibanaError(404, f"Saved object [cases/{case_id}] not found")
        return space.cases[case_id]

    @route("GET", "/api/cases/{case_id}")
    def _get_case(self, request: RecordedRequest, space: Space, user: str, case_id: str) -> Response:
        self._case_or_404(space, case_id)
        extra = sorted(set(request.query) - {"includeComments"})
        if extra:
            raise KibanaError(400, f'invalid keys "{",".join(extra)}"')
        with_comments = request.param("includeComments", "true") != "false"
        return Response.json(200, self._case_view(space, case_id, with_comments=with_comments))

    @route("GET", "/api/cases/{case_id}/comments/_find")
    def _find_comments(self, request: RecordedRequest, space: Space, user: str, case_id: str) -> Response:
        self._case_or_404(space, case_id)
        params = self._find_params(request, {"page", "perPage", "sortOrder"}, "comments")
        page, per_page = self._paging(params, 100)
        order = params.get("sortOrder", ["desc"])[-1]
        if order not in ("asc", "desc"):
            raise KibanaError(400, f'Invalid value "{order}" supplied to "sortOrder"')
        comments = [c for c in space.comments.get(case_id, []) if c.get("type") == "user"]
        comments.sort(key=lambda c: (c.get("created_at") or "", c["id"]), reverse=order == "desc")
        chosen = comments[(page - 1) * per_page : page * per_page]
        return Response.json(
            200,
            {"comments": copy.deepcopy(chosen), "page": page, "per_page": per_page, "total": len(comments)},
        )

    @route("POST", "/api/cases/{case_id}/comments")
    def _add_comment(self, request: RecordedRequest, space: Space, user: str, case_id: str) -> Response:
        case = self._case_or_404(space, case_id)
        body = self._body(request)
        if not isinstance(body, dict) or body.get("type") not in ("user", "alert"):
            raise KibanaError(400, f'Invalid value "{(body or {}).get("type")}" supplied to "type"')
        allowed = {
            "user": {"type", "comment", "owner"},
            "alert": {"type", "alertId", "index", "rule", "owner"},
        }
        extra = sorted(set(body) - allowed[body["type"]])
        if extra:
            raise KibanaError(400, f'invalid keys "{",".join(extra)}"')
        if self.spec is not None:
            reasons = self.spec.errors("Cases_add_case_comment_request", body)
            if reasons:
                self._record_failure(request, "Cases_add_case_comment_request", reasons)
                raise KibanaError(400, "[request body]: " + "; ".join(reasons))
        if body.get("owner") != case["owner"]:
            raise KibanaError(
                400, f'The owner field of the comment must match the case owner "{case["owner"]}"'
            )
        comment = {
            **copy.deepcopy(body),
            "id": str(uuid.uuid4()),
            "version": self._next_version(),
            "created_at": now_iso(self.now()),
            "created_by": self._user(user),
            "pushed_at": None,
            "pushed_by": None,
            "updated_at": None,
            "updated_by": None,
        }
        space.comments.setdefault(case_id, []).append(comment)
        case["updated_at"] = comment["created_at"]
        case["updated_by"] = self._user(user)
        case["version"] = self._next_version()
        return Response.json(200, self._case_view(space, case_id))

    @route("GET", "/api/cases/{case_id}/alerts")
    def _case_alerts(self, request: RecordedRequest, space: Space, user: str, case_id: str) -> Response:
        self._case_or_404(space, case_id)
        out: list[dict[str, Any]] = []
        for comment in space.comments.get(case_id, []):
            if comment.get("type") != "alert":
                continue
            ids = comment.get("alertId")
            indices = comment.get("index")
            ids = ids if isinstance(ids, list) else [ids]
            indices = indices if isinstance(indices, list) else [indices] * len(ids)
            for alert_id, index in zip(ids, indices, strict=False):
                out.append({"id": alert_id, "index": index, "attached_at": comment.get("created_at")})
        return Response.json(200, out)

    @route("GET", "/api/cases/alerts/{alert_id}")
    def _cases_of_alert(self, request: RecordedRequest, space: Space, user: str, alert_id: str) -> Response:
        out = []
        for cid, comments in space.comments.items():
            for comment in comments:
                ids = comment.get("alertId")
                if comment.get("type") == "alert" and alert_id in (ids if isinstance(ids, list) else [ids]):
                    view = self._case_view(space, cid, with_comments=False)
                    out.append(
                        {
                            "id": cid,
                            "title": view["title"],
                            "description": view["description"],
                            "status": view["status"],
                            "createdAt": view["created_at"],
                            "totals": {"alerts": view["totalAlerts"], "userComments": view["totalComment"]},
                        }
                    )
                    break
        return Response.json(200, out)

    @route("POST", "/api/cases/{case_id}/observables")
    def _add_observable(self, request: RecordedRequest, space: Space, user: str, case_id: str) -> Response:
        case = self._case_or_404(space, case_id)
        body = self._body(request)
        obs = (body or {}).get("observable") if isinstance(body, dict) else None
        if not isinstance(obs, dict) or not obs.get("typeKey") or not obs.get("value"):
            raise KibanaError(400, 'Invalid value "undefined" supplied to "observable"')
        if obs["typeKey"] not in OBSERVABLE_TYPES:
            raise KibanaError(400, f"Invalid observable type, key does not exist: {obs['typeKey']}")
        stamp = now_iso(self.now())
        case.setdefault("observables", []).append(
            {
                "id": str(uuid.uuid4()),
                "typeKey": obs["typeKey"],
                "value": obs["value"],
                "description": obs.get("description"),
                "createdAt": stamp,
                "updatedAt": stamp,
            }
        )
        case["updated_at"] = stamp
        case["updated_by"] = self._user(user)
        case["version"] = self._next_version()
        return Response.json(200, self._case_view(space, case_id))

    # detection rules ------------------------------------------------------------------------------

    def _validate_rule(
        self, request: RecordedRequest, body: Any, union: str, existing_type: str | None = None
    ) -> set[str] | None:
        """Validate a rule body; return the allowed property names (None without the spec)."""
        if not isinstance(body, dict):
            raise KibanaError(400, "[request body]: Expected object, received " + type(body).__name__)
        rule_type = body.get("type", existing_type)
        if self.spec is None:
            if union != "Security_Detections_API_RulePatchProps":
                missing = [
                    k for k in ("name", "description", "risk_score", "severity", "type") if k not in body
                ]
                if rule_type in RULE_REQUIRED:
                    missing += [k for k in RULE_REQUIRED[rule_type] if k not in body]
                if missing:
                    raise KibanaError(400, "[request body]: " + ", ".join(f"{k}: Required" for k in missing))
            if rule_type not in RULE_TYPES:
                raise KibanaError(
                    400,
                    "[request body]: type: Invalid discriminator value. Expected "
                    + " | ".join(f"'{t}'" for t in RULE_TYPES),
                )
            if "risk_score" in body and not (
                isinstance(body["risk_score"], int) and 0 <= body["risk_score"] <= 100
            ):
                raise KibanaError(400, "[request body]: risk_score: Number must be between 0 and 100")
            if "severity" in body and body["severity"] not in CASE_SEVERITIES:
                raise KibanaError(
                    400,
                    "[request body]: severity: Invalid enum value. Expected 'low' | 'medium' | "
                    "'high' | 'critical'",
                )
            return None
        if union == "Security_Detections_API_RulePatchProps":
            create = self.spec.discriminated("Security_Detections_API_RuleCreateProps", rule_type)
            schema = create.replace("CreateProps", "PatchProps") if create else None
        else:
            schema = self.spec.discriminated(union, rule_type)
        if schema is None or schema not in self.spec.schemas:
            reason = "type: Invalid discriminator value. Expected " + " | ".join(f"'{t}'" for t in RULE_TYPES)
            self._record_failure(request, union, [reason])
            raise KibanaError(400, f"[request body]: {reason}")
        reasons = self.spec.errors(schema, body)
        if reasons:
            self._record_failure(request, schema, reasons)
            raise KibanaError(400, "[request body]: " + "; ".join(reasons))
        return self.spec.properties(schema)

    def _rule_response(
        self,
        body: dict[str, Any],
        allowed: set[str] | None,
        *,
        rule_id: str,
        rule_uuid: str,
        user: str,
        created: tuple[str, str] | None = None,
        revision: int = 0,
    ) -> dict[str, Any]:
        stamp = now_iso(self.now())
        kept = {
            k: copy.deepcopy(v) for k, v in body.items() if (allowed is None or k in allowed) and k != "id"
        }
        rule: dict[str, Any] = {**copy.deepcopy(RULE_DEFAULTS), **kept}
        rtype = rule["type"]
        if rtype in ("query", "saved_query", "threshold", "threat_match", "new_terms"):
            rule.setdefault("language", "kuery")
            rule.setdefault("query", "")
        if rtype == "threat_match":
            rule.setdefault("threat_indicator_path", "threat.indicator")
        rule.update(
            {
                "id": rule_uuid,
                "rule_id": rule_id,
                "immutable": False,
                "rule_source": {"type": "internal"},
                "created_at": created[0] if created else stamp,
                "created_by": created[1] if created else user,
                "updated_at": stamp,
                "updated_by": user,
                "revision": revision,
            }
        )
        return rule

    def _find_rule(self, space: Space, rule_id: str | None, rule_uuid: str | None) -> dict[str, Any]:
        if rule_uuid is not None:
            for rule in space.rules.values():
                if rule["id"] == rule_uuid:
                    return rule
            raise KibanaError(404, f'id: "{rule_uuid}" not found', "siem")
        if rule_id is not None:
            for rule in space.rules.values():
                if rule["rule_id"] == rule_id:
                    return rule
            raise KibanaError(404, f'rule_id: "{rule_id}" not found', "siem")
        raise KibanaError(400, 'either "id" or "rule_id" must be set', "siem")

    @route("POST", "/api/detection_engine/rules")
    def _create_rule(self, request: RecordedRequest, space: Space, user: str) -> Response:
        body = self._body(request)
        allowed = self._validate_rule(request, body, "Security_Detections_API_RuleCreateProps")
        rule_id = body.get("rule_id") or str(uuid.uuid4())
        if any(r["rule_id"] == rule_id for r in space.rules.values()):
            raise KibanaError(409, f'rule_id: "{rule_id}" already exists', "siem")
        rule = self._rule_response(body, allowed, rule_id=rule_id, rule_uuid=str(uuid.uuid4()), user=user)
        space.rules[rule["id"]] = rule
        return Response.json(200, copy.deepcopy(rule))

    @route("GET", "/api/detection_engine/rules")
    def _read_rule(self, request: RecordedRequest, space: Space, user: str) -> Response:
        rule = self._find_rule(space, request.param("rule_id"), request.param("id"))
        return Response.json(200, copy.deepcopy(rule))

    @route("PUT", "/api/detection_engine/rules")
    def _update_rule(self, request: RecordedRequest, space: Space, user: str) -> Response:
        body = self._body(request)
        if not isinstance(body, dict):
            raise KibanaError(400, "[request body]: Expected object")
        existing = self._find_rule(space, body.get("rule_id"), body.get("id"))
        allowed = self._validate_rule(request, body, "Security_Detections_API_RuleUpdateProps")
        rule = self._rule_response(
            body,
            allowed,
            rule_id=existing["rule_id"],
            rule_uuid=existing["id"],
            user=user,
            created=(existing["created_at"], existing["created_by"]),
            revision=existing["revision"] + 1,
        )
        space.rules[rule["id"]] = rule
        return Response.json(200, copy.deepcopy(rule))

    @route("PATCH", "/api/detection_engine/rules")
    def _patch_rule(self, request: RecordedRequest, space: Space, user: str) -> Response:
        body = self._body(request)
        if not isinstance(body, dict):
            raise KibanaError(400, "[request body]: Expected object")
        existing = self._find_rule(space, body.get("rule_id"), body.get("id"))
        allowed = self._validate_rule(
            request, body, "Security_Detections_API_RulePatchProps", existing["type"]
        )
        changes = {
            k: copy.deepcopy(v)
            for k, v in body.items()
            if k not in ("id", "rule_id") and (allowed is None or k in allowed)
        }
        existing.update(changes)
        existing["updated_at"] = now_iso(self.now())
        existing["updated_by"] = user
        existing["revision"] += 1
        return Response.json(200, copy.deepcopy(existing))

    @route("DELETE", "/api/detection_engine/rules")
    def _delete_rule(self, request: RecordedRequest, space: Space, user: str) -> Response:
        rule = self._find_rule(space, request.param("rule_id"), request.param("id"))
        del space.rules[rule["id"]]
        return Response.json(200, copy.deepcopy(rule))

    @route("GET", "/api/detection_engine/rules/_find")
    def _find_rules(self, request: RecordedRequest, space: Space, user: str) -> Response:
        extra = sorted(
            set(request.query)
            - {
                "fields",
                "filter",
                "sort_field",
                "sort_order",
                "page",
                "per_page",
                "gaps_range_start",
                "gaps_range_end",
            }
        )
        if extra:
            raise KibanaError(400, f"[request query]: Unrecognized key(s) in object: '{extra[0]}'")
        try:
            page = int(request.param("page", "1") or 1)
            per_page = int(request.param("per_page", "20") or 20)
        except ValueError as exc:
            raise KibanaError(400, f"[request query]: {exc}") from exc
        if page < 1:
            raise KibanaError(400, "[request query]: page: Number must be greater than or equal to 1")
        if per_page < 0:
            raise KibanaError(400, "[request query]: per_page: Number must be greater than or equal to 0")
        sort_field = request.param("sort_field")
        sort_order = request.param("sort_order", "asc")
        if sort_field is not None and sort_field not in RULE_SORT_FIELDS:
            raise KibanaError(
                400, f"[request query]: sort_field: Invalid enum value. Received '{sort_field}'"
            )
        if sort_order not in ("asc", "desc"):
            raise KibanaError(
                400, f"[request query]: sort_order: Invalid enum value. Received '{sort_order}'"
            )
        predicate = _kql_predicate(request.param("filter"))
        rules = [r for r in space.rules.values() if predicate(r)]
        key = RULE_SORT_FIELDS.get(sort_field or "created_at", "created_at")
        severity_rank = {s: i for i, s in enumerate(CASE_SEVERITIES)}
        rules.sort(
            key=lambda r: (severity_rank.get(r[key], 0) if key == "severity" else r.get(key), r["id"]),
            reverse=sort_order == "desc",
        )
        chosen = rules[(page - 1) * per_page : page * per_page]
        return Response.json(
            200, {"page": page, "perPage": per_page, "total": len(rules), "data": copy.deepcopy(chosen)}
        )

    @route("POST", "/api/detection_engine/rules/_bulk_action")
    def _bulk_action(self, request: RecordedRequest, space: Space, user: str) -> Response:
        body = self._body(request)
        actions = ("delete", "enable", "disable", "duplicate", "edit", "export", "run", "fill_gaps")
        if not isinstance(body, dict) or body.get("action") not in actions:
            raise KibanaError(
                400,
                "[request body]: action: Invalid discriminator value. Expected "
                + " | ".join(f"'{a}'" for a in actions),
            )
        action = body["action"]
        if action in ("export", "run", "fill_gaps"):
            raise KibanaError(400, f"bulk action [{action}] is not implemented by the test double", "siem")
        if "ids" in body and "query" in body:
            raise KibanaError(
                400, "Both query and ids are sent. Define either ids or query in request payload.", "siem"
            )
        dry_run = request.param("dry_run") == "true"
        errors: list[dict[str, Any]] = []
        if "ids" in body:
            ids = body["ids"]
            if not isinstance(ids, list) or not ids:
                raise KibanaError(400, "[request body]: ids: Array must contain at least 1 element(s)")
            if action == "edit" and len(ids) > 100:
                raise KibanaError(400, "More than 100 ids sent for bulk edit action.", "siem")
            targets = []
            for rid in ids:
                rule = next((r for r in space.rules.values() if r["id"] == rid), None)
                if rule is None:
                    errors.append({"message": "Rule not found", "status_code": 404, "rules": [{"id": rid}]})
                else:
                    targets.append(rule)
        else:
            predicate = _kql_predicate(body.get("query"))
            targets = [r for r in space.rules.values() if predicate(r)]
        results: dict[str, list[Any]] = {"updated": [], "created": [], "deleted": [], "skipped": []}
        stamp = now_iso(self.now())
        for rule in targets:
            if action == "delete":
                results["deleted"].append(copy.deepcopy(rule))
                if not dry_run:
                    del space.rules[rule["id"]]
            elif action in ("enable", "disable"):
                wanted = action == "enable"
                if rule["enabled"] == wanted:
                    results["skipped"].append(
                        {"id": rule["id"], "name": rule["name"], "skip_reason": "RULE_NOT_MODIFIED"}
                    )
                    continue
                updated = {
                    **copy.deepcopy(rule),
                    "enabled": wanted,
                    "updated_at": stamp,
                    "updated_by": user,
                    "revision": rule["revision"] + 1,
                }
                if not dry_run:
                    space.rules[rule["id"]] = updated
                results["updated"].append(copy.deepcopy(updated))
            elif action == "duplicate":
                copy_rule = {
                    **copy.deepcopy(rule),
                    "id": str(uuid.uuid4()),
                    "rule_id": str(uuid.uuid4()),
                    "name": f"{rule['name']} [Duplicate]",
                    "enabled": False,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "created_by": user,
                    "updated_by": user,
                    "revision": 0,
                }
                if not dry_run:
                    space.rules[copy_rule["id"]] = copy_rule
                results["created"].append(copy.deepcopy(copy_rule))
            else:
                updated = copy.deepcopy(rule)
                for edit in body.get("edit") or []:
                    self._apply_edit(updated, edit)
                if updated == rule:
                    results["skipped"].append(
                        {"id": rule["id"], "name": rule["name"], "skip_reason": "RULE_NOT_MODIFIED"}
                    )
                    continue
                updated.update({"updated_at": stamp, "updated_by": user, "revision": rule["revision"] + 1})
                if not dry_run:
                    space.rules[rule["id"]] = updated
                results["updated"].append(copy.deepcopy(updated))
        succeeded = sum(len(results[k]) for k in ("updated", "created", "deleted"))
        summary = {
            "failed": len(errors),
            "skipped": len(results["skipped"]),
            "succeeded": succeeded,
            "total": len(errors) + len(results["skipped"]) + succeeded,
        }
        attributes: dict[str, Any] = {"results": results, "summary": summary}
        if errors:
            attributes["errors"] = errors
            message = "Bulk edit partially failed" if succeeded else "Bulk edit failed"
            return Response.json(500, {"message": message, "status_code": 500, "attributes": attributes})
        return Response.json(
            200, {"success": True, "rules_count": summary["total"], "attributes": attributes}
        )

    @staticmethod
    def _apply_edit(rule: dict[str, Any], edit: Mapping[str, Any]) -> None:
        kind, value = edit.get("type"), edit.get("value")
        if kind in ("add_tags", "delete_tags", "set_tags"):
            field_name, current = "tags", list(rule.get("tags") or [])
        elif kind in ("add_index_patterns", "delete_index_patterns", "set_index_patterns"):
            field_name, current = "index", list(rule.get("index") or [])
        elif kind == "set_schedule":
            rule["interval"] = value["interval"]
            lookback = value.get("lookback")
            if lookback:
                rule["from"] = f"now-{lookback}"
            return
        else:
            raise KibanaError(400, f"bulk edit type [{kind}] is not implemented by the test double", "siem")
        if kind.startswith("add_"):
            current += [v for v in value if v not in current]
        elif kind.startswith("delete_"):
            current = [v for v in current if v not in value]
        else:
            current = list(value)
        rule[field_name] = current


def iso(moment: dt.datetime) -> str:
    """Kibana's timestamp format (millisecond precision, ``Z``)."""
    return format_millis(to_millis(moment))
