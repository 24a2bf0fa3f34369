"""Elasticsearch 9 test double: the REST subset the Elastic connectors use, enforced like the real thing.

Contract rules enforced (each from Elasticsearch's behaviour or source; see ``tests/doubles/elastic.py``):

* ``X-Elastic-Product: Elasticsearch`` on every response; the elasticsearch-py 9 client refuses a 2xx
  answer without it. Responses to ``compatible-with`` requests use the vendor media type; a
  ``compatible-with`` other than 8 or 9, or on only one of Accept/Content-Type, is a 400
  ``media_type_header_exception``. A body with a non-JSON content type is a 406.
* Authentication: ``Authorization: ApiKey <base64(id:key)>`` (or basic, when users are configured);
  otherwise 401 ``security_exception`` with ``WWW-Authenticate`` challenges.
* Point in time: ``POST /<index>/_pit?keep_alive=`` (keep_alive required, at most 24h), searches with
  ``pit`` must not name an index, ``routing`` or ``preference``; unknown or expired ids are 404
  ``search_context_missing_exception`` (root cause); the PIT is a snapshot; a sorted PIT search gets the
  implicit ``_shard_doc`` tie-breaker (reported in ``sort``) unless ``search_after`` has exactly as many
  values as the explicit sort (``SearchRequest#rewrite``); ``_shard_doc`` without a PIT is refused.
* ``from + size`` above ``index.max_result_window`` (10,000) is a 400 whose root cause is
  ``illegal_argument_exception``; ``search_after`` needs a sort with as many values and ``from: 0``;
  ``hits.total`` is capped at 10,000 (``gte``) unless ``track_total_hits`` says otherwise; sorting on an
  unmapped field without ``unmapped_type`` is refused; unknown search body keys are refused.
* Writes: index names validated; ``op_type=create`` conflicts are 409; documents are checked against
  the mapping (explicit, from templates, or dynamic on first sight) and bad values are 400
  ``document_parsing_exception`` unless ``ignore_malformed``; names matching a template with
  ``data_stream`` (the built-in ``logs-*-*`` / ``metrics-*-*`` at priority 100) become data streams:
  append-only, ``create`` only, ``@timestamp`` required; ``_bulk`` needs the trailing newline and
  answers per item (``errors: true``), with an injectable per-item failure hook.

Unimplemented-but-valid requests (aggregations, scroll, ``query_string`` ...) answer 400
``double_unsupported_exception`` so a test never mistakes a gap in the double for ES behaviour.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import json
import os
import re
import time
import uuid
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.elastic_http import (
    LoopbackServer,
    RecordedRequest,
    Response,
    collect_routes,
    match_route,
    route,
)
from tests.doubles.elastic_query import (
    DATE_TYPES,
    NUMERIC_TYPES,
    QueryContext,
    QueryError,
    SortField,
    after_key,
    compile_query,
    ip_key,
    looks_like_date,
    normalise,
    parse_date_millis,
    parse_sort,
    sort_entry,
    source_filter,
)

DEFAULT_MAX_RESULT_WINDOW = 10_000
DEFAULT_TRACK_TOTAL_HITS = 10_000
MAX_KEEP_ALIVE_MS = 24 * 3600 * 1000
SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
WRITE_SHARDS = {"total": 2, "successful": 1, "failed": 0}
VENDOR_JSON = "application/vnd.elasticsearch+json;compatible-with=9"
_INVALID_NAME_CHARS = ["\\", "/", "*", "?", '"', "<", ">", "|", " ", ",", "#", ":"]
_SEARCH_KEYS_IGNORED = {
    "timeout",
    "version",
    "seq_no_primary_term",
    "track_scores",
    "explain",
    "profile",
    "stats",
    "terminate_after",
    "stored_fields",
    "highlight",
    "indices_boost",
    "min_score",
    "_name",
}
_SEARCH_KEYS_UNSUPPORTED = {
    "aggs",
    "aggregations",
    "collapse",
    "runtime_mappings",
    "docvalue_fields",
    "script_fields",
    "rescore",
    "slice",
    "suggest",
    "knn",
    "retriever",
    "rank",
    "ext",
}
_SEARCH_KEYS = (
    {
        "query",
        "size",
        "from",
        "sort",
        "search_after",
        "pit",
        "_source",
        "track_total_hits",
        "post_filter",
        "fields",
    }
    | _SEARCH_KEYS_IGNORED
    | _SEARCH_KEYS_UNSUPPORTED
)


# --------------------------------------------------------------------------------------------------
# Errors


class EsError(Exception):
    """An Elasticsearch error answer: ``{"error": {root_cause, type, reason, ...}, "status"}``."""

    def __init__(
        self,
        status: int,
        type_: str,
        reason: str,
        *,
        extra: Mapping[str, Any] | None = None,
        caused_by: Mapping[str, Any] | None = None,
        root: Mapping[str, Any] | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.type = type_
        self.reason = reason
        self.extra = dict(extra or {})
        self.caused_by = dict(caused_by) if caused_by else None
        self.root = dict(root) if root else None
        self.headers = list(headers)

    def cause(self) -> dict[str, Any]:
        """The error object as it appears inside bulk items or ``_mget`` docs."""
        out = {"type": self.type, "reason": self.reason, **self.extra}
        if self.caused_by:
            out["caused_by"] = self.caused_by
        return out

    def body(self) -> dict[str, Any]:
        root = self.root or {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [root], **self.cause()}, "status": self.status}

    def response(self) -> Response:
        return Response.json(self.status, self.body(), self.headers)


def index_not_found(name: str) -> EsError:
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        extra={"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_", "index": name},
    )


def validation_error(*messages: str) -> EsError:
    text = "Validation Failed: " + "".join(f"{i}: {m};" for i, m in enumerate(messages, 1))
    return EsError(400, "action_request_validation_exception", text)


def search_phase_error(inner: EsError | QueryError, index: str = "_na_") -> EsError:
    """Shard-level failures reach the caller wrapped, as ``all shards failed``."""
    status = inner.status
    cause = {"type": inner.type, "reason": inner.reason}
    return EsError(
        status,
        "search_phase_execution_exception",
        "all shards failed",
        extra={
            "phase": "query",
            "grouped": True,
            "failed_shards": [{"shard": 0, "index": index, "node": "double-node", "reason": cause}],
        },
        caused_by=cause,
        root=cause,
    )


def _rejected_cause() -> dict[str, Any]:
    return {
        "type": "es_rejected_execution_exception",
        "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
        "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=2048, "
        "max_coordinating_and_primary_bytes=0]",
    }


def es_fault_body(status: int) -> dict[str, Any]:
    """Error bodies Elasticsearch sends for the statuses tests inject."""
    if status == 429:
        cause = _rejected_cause()
    elif status == 503:
        cause = {
            "type": "cluster_block_exception",
            "reason": "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];",
        }
    elif status == 401:
        cause = {"type": "security_exception", "reason": "unable to authenticate with provided credentials"}
    elif status == 404:
        cause = {"type": "resource_not_found_exception", "reason": "injected not found"}
    elif status >= 500:
        cause = {"type": "exception", "reason": f"injected server error {status}"}
    else:
        cause = {"type": "illegal_argument_exception", "reason": f"injected error {status}"}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


# --------------------------------------------------------------------------------------------------
# State


@dataclass(eq=False)
class StoredDoc:
    id: str
    index: str
    ordinal: int
    source: dict[str, Any]
    version: int = 1
    seq_no: int = 0
    primary_term: int = 1
    ignored: tuple[str, ...] = ()
    cache: dict[tuple[str, str], list[Any]] = field(default_factory=dict)


@dataclass(eq=False)
class EsIndex:
    name: str
    uuid: str
    settings: dict[str, Any]
    mappings: dict[str, Any]
    fields: dict[str, str] = field(default_factory=dict)
    objects: set[str] = field(default_factory=set)
    ignore_malformed_fields: set[str] = field(default_factory=set)
    docs: dict[str, StoredDoc] = field(default_factory=dict)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_stream: str | None = None
    seq_no: int = -1
    generation: int = 0
    created_ms: int = 0

    @property
    def dynamic(self) -> str:
        return str(self.mappings.get("dynamic", "true")).lower()

    @property
    def hidden(self) -> bool:
        return self.name.startswith(".") or str(self.settings.get("index.hidden", "false")).lower() == "true"

    @property
    def max_result_window(self) -> int:
        return int(self.settings.get("index.max_result_window", DEFAULT_MAX_RESULT_WINDOW))

    @property
    def ignore_malformed(self) -> bool:
        return str(self.settings.get("index.mapping.ignore_malformed", "false")).lower() == "true"


@dataclass
class DataStream:
    name: str
    indices: list[str]
    template: str
    generation: int = 1


@dataclass
class PitContext:
    id: str
    indices: list[str]
    docs: list[StoredDoc]
    fields: dict[str, str]
    objects: set[str]
    max_result_window: int
    keep_alive_ms: int
    expires_at: float
    cache: OrderedDict[str, Any] = field(default_factory=OrderedDict)


@dataclass
class BulkItem:
    """What a bulk failure hook sees: ``position`` counts items from 0 within one ``_bulk`` request."""

    request_number: int
    position: int
    action: str
    index: str
    id: str | None
    source: dict[str, Any] | None


BulkHook = Callable[[BulkItem], "EsError | None"]


def _clone(value: Any) -> Any:
    """Copy a JSON document (much faster than ``copy.deepcopy`` for 25k-document loads)."""
    return json.loads(json.dumps(value))


def _flatten_settings(settings: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_settings(value, path + "."))
        else:
            out[path] = value
    return {(k if k.startswith("index.") else f"index.{k}"): v for k, v in out.items()}


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _flatten_mapping(
    props: Mapping[str, Any], prefix: str, fields: dict[str, str], objects: set[str], malformed: set[str]
) -> None:
    for name, spec in props.items():
        path = prefix + name
        parts = path.split(".")
        for i in range(1, len(parts)):
            objects.add(".".join(parts[:i]))
        if not isinstance(spec, Mapping):
            continue
        ftype = spec.get("type")
        if "properties" in spec and ftype in (None, "object", "nested"):
            objects.add(path)
            if ftype == "nested":
                fields[path] = "nested"
            _flatten_mapping(spec["properties"], path + ".", fields, objects, malformed)
        elif ftype in (None, "object"):
            objects.add(path)
        else:
            fields[path] = ftype
            if spec.get("ignore_malformed"):
                malformed.add(path)
            for sub, sub_spec in (spec.get("fields") or {}).items():
                if isinstance(sub_spec, Mapping) and sub_spec.get("type"):
                    fields[f"{path}.{sub}"] = sub_spec["type"]


def _insert_mapping(tree: dict[str, Any], path: str, ftype: str) -> None:
    node = tree.setdefault("properties", {})
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {}).setdefault("properties", {})
    spec: dict[str, Any] = {"type": ftype}
    if ftype == "text":
        spec["fields"] = {"keyword": {"type": "keyword", "ignore_above": 256}}
    node.setdefault(parts[-1], spec)


def _preview(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) < 100 else text[:97] + "..."


def _value_error(path: str, ftype: str, value: Any, doc_id: str | None) -> EsError:
    if ftype == "ip":
        caused = {"type": "illegal_argument_exception", "reason": f"'{value}' is not an IP string literal."}
    elif ftype in DATE_TYPES:
        caused = {
            "type": "illegal_argument_exception",
            "reason": f"failed to parse date field [{value}] with format "
            "[strict_date_optional_time||epoch_millis]",
        }
    elif ftype in NUMERIC_TYPES:
        caused = {"type": "number_format_exception", "reason": f'For input string: "{value}"'}
    else:
        caused = {
            "type": "illegal_argument_exception",
            "reason": f"Can't parse [{ftype}] value [{_preview(value)}]",
        }
    reason = (
        f"[1:2] failed to parse field [{path}] of type [{ftype}] in document with id '{doc_id}'. "
        f"Preview of field's value: '{_preview(value)}'"
    )
    return EsError(400, "document_parsing_exception", reason, caused_by=caused)


_KEYWORDISH = {"keyword", "text", "match_only_text", "wildcard", "constant_keyword", "version"}


def _valid_for(value: Any, ftype: str) -> bool:
    if ftype in _KEYWORDISH:
        return isinstance(value, str | int | float | bool)
    if ftype in DATE_TYPES:
        return parse_date_millis(value) is not None
    if ftype in NUMERIC_TYPES or ftype == "boolean":
        return normalise(value, ftype) is not None
    if ftype == "ip":
        return ip_key(value) is not None
    if ftype in ("geo_point", "geo_shape", "flattened", "binary", "object", "nested"):
        return True
    return isinstance(value, str | int | float | bool)


def _infer(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "date" if looks_like_date(value) else "text"
    return None


_KEEP_ALIVE_RE = re.compile(r"^(\d+)(nanos|micros|ms|s|m|h|d)$")


def parse_keep_alive(value: str | None) -> int:
    if not value:
        raise validation_error("[keep_alive] is not specified")
    m = _KEEP_ALIVE_RE.match(value.strip())
    if m is None:
        raise EsError(
            400,
            "illegal_argument_exception",
            f"failed to parse setting [keep_alive] with value [{value}] as a time value: unit is missing or "
            "unrecognized",
        )
    scale = {"nanos": 1e-6, "micros": 1e-3, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    ms = int(int(m.group(1)) * scale[m.group(2)])
    if ms > MAX_KEEP_ALIVE_MS:
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Keep alive for request ({value}) is too large. It must be less than (1d). This limit can be "
            "set "
            "by changing the [search.max_keep_alive] cluster level setting.",
        )
    return ms


# --------------------------------------------------------------------------------------------------
# The double


class ElasticsearchDouble(LoopbackServer):
    """In-memory Elasticsearch 9 on loopback. See the module docstring for the enforced contract.

    Test-side helpers (no HTTP): :meth:`create_index`, :meth:`load`, :meth:`source`, :meth:`docs`,
    :meth:`put_index_template`, :meth:`fail_bulk_items`, :meth:`add_bulk_hook`, :meth:`expire_pits`,
    :meth:`advance_clock`; plus ``inject``/``requests``/``count`` from :class:`LoopbackServer`.
    """

    product = "elasticsearch"

    def __init__(
        self,
        *,
        version: str = "9.1.5",
        builtin_templates: bool = True,
        rotate_pit_ids: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.rotate_pit_ids = rotate_pit_ids
        self.indices: dict[str, EsIndex] = {}
        self.data_streams: dict[str, DataStream] = {}
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self._pits: dict[str, PitContext] = {}
        self._pit_aliases: dict[str, str] = {}
        self._ordinal = 0
        self._clock_offset = 0.0
        self._bulk_hooks: list[BulkHook] = []
        self._bulk_requests = 0
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._routes = collect_routes(self)
        self.cluster_uuid = uuid.uuid4().hex[:22]
        if builtin_templates:
            for name, pattern in (("logs", "logs-*-*"), ("metrics", "metrics-*-*")):
                self.index_templates[name] = {
                    "index_patterns": [pattern],
                    "priority": 100,
                    "data_stream": {"hidden": False},
                    "template": {"mappings": {"properties": {"@timestamp": {"type": "date"}}}},
                    "_meta": {"managed": True, "description": f"built-in {name} template"},
                    "allow_auto_create": True,
                }

    # clock ----------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the double's clock (PIT expiry, ``now`` in date math) without sleeping."""
        with self.lock:
            self._clock_offset += seconds

    # product hooks --------------------------------------------------------------------------------

    def fault_body(self, status: int, request: RecordedRequest) -> Any:
        return es_fault_body(status)

    def decorate(self, response: Response, request: RecordedRequest) -> None:
        response.set_header("X-Elastic-Product", "Elasticsearch")
        if response.header("Content-Type") == "application/json" and "vnd.elasticsearch" in (
            request.header("accept") or ""
        ):
            response.set_header("Content-Type", VENDOR_JSON)

    def internal_error(self, exc: Exception) -> Response:
        return EsError(500, "double_internal_error", f"bug in the Elasticsearch double: {exc!r}").response()

    def handle(self, request: RecordedRequest) -> Response:
        try:
            self._check_media_types(request)
            self._authenticate(request)
            fn, params, allowed = match_route(self._routes, request.method, request.path)
            if fn is None:
                if allowed:
                    return Response.json(
                        405,
                        {
                            "error": f"Incorrect HTTP method for uri [{request.path}] and method "
                            f"[{request.method}], "
                            f"allowed: [{', '.join(sorted(set(allowed)))}]",
                            "status": 405,
                        },
                    )
                return Response.json(
                    400,
                    {
                        "error": f"no handler found for uri [{request.path}] and method [{request.method}]",
                        "status": 400,
                    },
                )
            return fn(request, **params)
        except _Answer as answer:
            return answer.response
        except EsError as exc:
            return exc.response()
        except QueryError as exc:
            inner = EsError(exc.status, exc.type, exc.reason)
            return (search_phase_error(inner) if exc.shard_level else inner).response()

    # headers and auth ------------------------------------------------------------------------------

    @staticmethod
    def _compat(value: str | None) -> str | None:
        if not value:
            return None
        m = re.search(r"compatible-with\s*=\s*(\d+)", value)
        return m.group(1) if m else None

    def _check_media_types(self, request: RecordedRequest) -> None:
        accept, ctype = request.header("accept"), request.header("content-type")
        a_v, c_v = self._compat(accept), self._compat(ctype)
        has_body = bool(request.body)
        bad = [v for v in (a_v, c_v) if v is not None and v not in ("8", "9")]
        mismatch = has_body and (a_v is not None or c_v is not None) and a_v != c_v and accept is not None
        if bad or mismatch:
            raise EsError(
                400,
                "media_type_header_exception",
                "Invalid media-type value on headers [Accept, Content-Type]",
                caused_by={
                    "type": "status_exception",
                    "reason": "A compatible version is required on both Content-Type and Accept headers if "
                    "either "
                    "one has requested a compatible version and the compatible versions must match. "
                    f"Accept={accept}, Content-Type={ctype}",
                },
            )
        if has_body:
            base = (ctype or "").split(";")[0].strip().lower()
            if base not in (
                "application/json",
                "application/x-ndjson",
                "application/vnd.elasticsearch+json",
                "application/vnd.elasticsearch+x-ndjson",
                "application/yaml",
                "application/cbor",
                "application/smile",
            ):
                raise _Answer(
                    Response.json(
                        406,
                        {
                            "error": f"Content-Type header [{ctype or ''}] is not supported",
                            "status": 406,
                        },
                    )
                )

    def _authenticate(self, request: RecordedRequest) -> None:
        outcome, _ = self.credentials.check(request.header("authorization"))
        if outcome == "ok":
            return
        target = request.path + (
            ("?" + "&".join(f"{k}={v[-1]}" for k, v in request.query.items())) if request.query else ""
        )
        if outcome == "missing":
            reason = f"missing authentication credentials for REST request [{target}]"
        else:
            reason = (
                "unable to authenticate with provided credentials and anonymous access is not allowed for "
                "this request"
            )
        challenges = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
        raise EsError(
            401,
            "security_exception",
            reason,
            extra={"header": {"WWW-Authenticate": challenges}},
            headers=[("WWW-Authenticate", ", ".join(challenges))],
        )

    @staticmethod
    def _json(request: RecordedRequest, required: bool = False) -> Any:
        if not request.body.strip():
            if required:
                raise EsError(400, "parse_exception", "request body is required")
            return None
        try:
            return json.loads(request.body)
        except ValueError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] Unexpected character: {exc}") from exc

    # index resolution ------------------------------------------------------------------------------

    def _validate_index_name(self, name: str) -> None:
        def invalid(why: str) -> EsError:
            return EsError(
                400,
                "invalid_index_name_exception",
                f"Invalid index name [{name}], {why}",
                extra={"index_uuid": "_na_", "index": name},
            )

        if name != name.lower():
            raise invalid("must be lowercase")
        if name.startswith(("_", "-", "+")):
            raise invalid("must not start with '_', '-', or '+'")
        bad = [c for c in _INVALID_NAME_CHARS if c in name]
        if bad:
            raise invalid(
                "must not contain the following characters " + str(_INVALID_NAME_CHARS).replace("'", "")
            )
        if name in (".", ".."):
            raise invalid("must not be '.' or '..'")
        if len(name.encode()) > 255:
            raise invalid("index name is too long, (" + str(len(name.encode())) + " > 255)")

    def _names(self) -> dict[str, list[str]]:
        """Every name a request can use -> concrete indices (indices, aliases, data streams)."""
        names: dict[str, list[str]] = {n: [n] for n in self.indices}
        for idx in self.indices.values():
            for alias in idx.aliases:
                names.setdefault(alias, []).append(idx.name)
        for ds in self.data_streams.values():
            names[ds.name] = list(ds.indices)
        return names

    def resolve(
        self, expression: str | None, *, ignore_unavailable: bool = False, allow_no_indices: bool = True
    ) -> list[EsIndex]:
        """Concrete indices for a read expression (comma lists, wildcards, ``-`` exclusions, aliases)."""
        names = self._names()
        parts = [p.strip() for p in (expression or "_all").split(",") if p.strip()]
        chosen: list[str] = []
        for part in parts:
            if part.startswith("-") and chosen:
                drop = {
                    c
                    for name, targets in names.items()
                    if fnmatch.fnmatchcase(name, part[1:])
                    for c in targets
                }
                chosen = [c for c in chosen if c not in drop]
                continue
            if part in ("_all", "*") or any(ch in part for ch in "*?"):
                pattern = "*" if part == "_all" else part
                for name, targets in sorted(names.items()):
                    if name.startswith(".") and not pattern.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, pattern):
                        chosen.extend(t for t in targets if t not in chosen)
                if not chosen and not allow_no_indices:
                    raise index_not_found(part)
                continue
            if part not in names:
                if ignore_unavailable:
                    continue
                raise index_not_found(part)
            chosen.extend(t for t in names[part] if t not in chosen)
        return [self.indices[c] for c in chosen]

    def _template_for(self, name: str) -> tuple[str, dict[str, Any]] | None:
        best: tuple[int, str, dict[str, Any]] | None = None
        for tname, tpl in self.index_templates.items():
            patterns = tpl.get("index_patterns", [])
            patterns = [patterns] if isinstance(patterns, str) else patterns
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                prio = int(tpl.get("priority", 0) or 0)
                if best is None or prio > best[0]:
                    best = (prio, tname, tpl)
        return (best[1], best[2]) if best else None

    def _composed(self, tpl: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for comp in tpl.get("composed_of", []) or []:
            body = self.component_templates.get(comp)
            if body is None:
                if comp in (tpl.get("ignore_missing_component_templates") or []):
                    continue
                raise EsError(
                    400,
                    "invalid_index_template_exception",
                    f"index template [{comp}] specifies component templates [{comp}] that do not exist",
                )
            merged = _deep_merge(merged, body.get("template", {}))
        return _deep_merge(merged, tpl.get("template", {}) or {})

    def _new_index(
        self,
        name: str,
        body: Mapping[str, Any] | None = None,
        *,
        apply_templates: bool = True,
        data_stream: str | None = None,
    ) -> EsIndex:
        body = dict(body or {})
        base: dict[str, Any] = {}
        if apply_templates:
            found = self._template_for(data_stream or name)
            if found is not None:
                base = self._composed(found[1])
        merged = _deep_merge(
            base, {k: v for k, v in body.items() if k in ("settings", "mappings", "aliases")}
        )
        settings = _flatten_settings(merged.get("settings"))
        if data_stream:
            settings["index.hidden"] = True
        mappings = copy.deepcopy(merged.get("mappings") or {})
        idx = EsIndex(
            name=name,
            uuid=base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="),
            settings=settings,
            mappings=mappings,
            data_stream=data_stream,
            created_ms=int(self.now() * 1000),
        )
        _flatten_mapping(
            mappings.get("properties", {}), "", idx.fields, idx.objects, idx.ignore_malformed_fields
        )
        if not data_stream:
            for alias, spec in (merged.get("aliases") or {}).items():
                idx.aliases[alias] = dict(spec or {})
        self.indices[name] = idx
        return idx

    def _auto_create(self, name: str) -> EsIndex:
        self._validate_index_name(name)
        found = self._template_for(name)
        if found is not None and found[1].get("data_stream") is not None:
            stamp = time.strftime("%Y.%m.%d", time.gmtime(self.now()))
            backing = f".ds-{name}-{stamp}-000001"
            idx = self._new_index(backing, data_stream=name)
            self.data_streams[name] = DataStream(name, [backing], found[0])
            return idx
        return self._new_index(name)

    def _write_index(self, name: str, *, op: str, has_id: bool, create_missing: bool = True) -> EsIndex:
        """The concrete index a single-document write lands in (auto-creating it like ES)."""
        found = None if name in self._names() else self._template_for(name)
        would_stream = found is not None and found[1].get("data_stream") is not None
        if name in self.data_streams or would_stream:
            allowed = op == "create" or (op == "index" and not has_id)
            if not allowed:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams",
                )
            if name in self.data_streams:
                return self.indices[self.data_streams[name].indices[-1]]
        if name in self.indices:
            return self.indices[name]
        holders = [i for i in self.indices.values() if name in i.aliases]
        if holders:
            if len(holders) == 1:
                return holders[0]
            writers = [i for i in holders if i.aliases[name].get("is_write_index")]
            if len(writers) == 1:
                return writers[0]
            raise EsError(
                400,
                "illegal_argument_exception",
                f"no write index is defined for alias [{name}]. The write index may be explicitly disabled "
                "using "
                "is_write_index=false or the alias points to multiple indices without one being designated "
                "as a "
                "write index",
            )
        if not create_missing:
            raise index_not_found(name)
        return self._auto_create(name)

    def _single_index(self, name: str) -> EsIndex:
        """The index a get/delete by id addresses (an alias must point to exactly one index)."""
        if name in self.data_streams:
            return self.indices[self.data_streams[name].indices[-1]]
        if name in self.indices:
            return self.indices[name]
        holders = [i for i in self.indices.values() if name in i.aliases]
        if len(holders) == 1:
            return holders[0]
        if holders:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"alias [{name}] has more than one index associated with it "
                f"[{', '.join(sorted(h.name for h in holders))}], can't execute a single index op",
            )
        raise index_not_found(name)

    # documents ------------------------------------------------------------------------------------

    def _map_document(
        self, idx: EsIndex, source: Any, doc_id: str | None
    ) -> tuple[dict[str, str], list[str]]:
        """Check ``source`` against ``idx``'s mapping; return (new dynamic fields, ignored fields)."""
        if not isinstance(source, dict):
            raise EsError(
                400,
                "document_parsing_exception",
                "[1:1] failed to parse: Malformed content, must start with an object",
            )
        new_fields: dict[str, str] = {}
        new_objects: set[str] = set()
        ignored: list[str] = []
        dynamic = idx.dynamic

        def add_object(path: str) -> None:
            if path in idx.objects or path in new_objects:
                return
            leaf = idx.fields.get(path) or new_fields.get(path)
            if leaf is not None and leaf not in ("object", "nested"):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] Could not dynamically add mapping for field [{path}.*]. Existing mapping for "
                    f"[{path}] "
                    f"must be of type object but found [{leaf}].",
                )
            new_objects.add(path)

        def leaf(path: str, value: Any) -> None:
            if value is None:
                return
            ftype = idx.fields.get(path) or new_fields.get(path)
            if ftype is None:
                if path in idx.objects or path in new_objects:
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"[1:2] object mapping for [{path}] tried to parse field [{path}] as object, but "
                        "found a "
                        "concrete value",
                    )
                if dynamic == "strict":
                    parent = path.rpartition(".")[0] or "_doc"
                    raise EsError(
                        400,
                        "strict_dynamic_mapping_exception",
                        f"[1:2] mapping set to strict, dynamic introduction of [{path.rpartition('.')[2]}] "
                        "within "
                        f"[{parent}] is not allowed",
                    )
                if dynamic in ("false", "runtime"):
                    return
                inferred = _infer(value)
                if inferred is None:
                    return
                parts = path.split(".")
                for i in range(1, len(parts)):
                    add_object(".".join(parts[:i]))
                new_fields[path] = inferred
                if inferred == "text":
                    new_fields[path + ".keyword"] = "keyword"
                return
            if ftype in ("object", "nested"):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] object mapping for [{path}] tried to parse field [{path}] as object, but found a "
                    "concrete value",
                )
            if not _valid_for(value, ftype):
                if idx.ignore_malformed or path in idx.ignore_malformed_fields:
                    ignored.append(path)
                    return
                raise _value_error(path, ftype, value, doc_id)

        fields = idx.fields
        objects = idx.objects

        def visit(obj: dict[str, Any], prefix: str) -> None:
            for key, value in obj.items():
                if not key or ((key[0] in ". " or key[-1] in ". ") and not key.strip(". ")):
                    raise EsError(
                        400, "document_parsing_exception", "[1:2] field name cannot be an empty string"
                    )
                path = prefix + key
                if type(value) is str:  # fast path: the bulk of alert fields are mapped strings
                    ftype = fields.get(path)
                    if ftype in _KEYWORDISH:
                        continue
                    leaf(path, value)
                    continue
                if isinstance(value, dict):
                    ftype = fields.get(path) or new_fields.get(path)
                    if ftype == "flattened":
                        continue
                    if ftype is not None and ftype not in ("object", "nested"):
                        if idx.ignore_malformed or path in idx.ignore_malformed_fields:
                            ignored.append(path)
                            continue
                        raise _value_error(path, ftype, value, doc_id)
                    if path not in objects:
                        parts = path.split(".")
                        for i in range(1, len(parts) + 1):
                            add_object(".".join(parts[:i]))
                    visit(value, path + ".")
                elif isinstance(value, list):
                    stack = list(value)
                    while stack:
                        item = stack.pop(0)
                        if isinstance(item, list):
                            stack[0:0] = item
                        elif isinstance(item, dict):
                            ftype = fields.get(path) or new_fields.get(path)
                            if ftype == "flattened":
                                continue
                            if path not in objects:
                                parts = path.split(".")
                                for i in range(1, len(parts) + 1):
                                    add_object(".".join(parts[:i]))
                            visit(item, path + ".")
                        else:
                            leaf(path, item)
                else:
                    leaf(path, value)

        visit(source, "")
        if idx.data_stream is not None:
            ts = source.get("@timestamp")
            if ts is None:
                raise EsError(
                    400,
                    "document_parsing_exception",
                    "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing",
                    caused_by={
                        "type": "illegal_argument_exception",
                        "reason": "data stream timestamp field [@timestamp] is missing",
                    },
                )
        for path in new_objects:
            idx.objects.add(path)
        return new_fields, ignored

    def _store(
        self, idx: EsIndex, doc_id: str, source: dict[str, Any], *, op: str, fresh: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """Index one document; return (status, result body)."""
        if len(doc_id.encode()) > 512:
            raise validation_error(
                f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id.encode())}"
            )
        existing = idx.docs.get(doc_id)
        if existing is not None and op == "create":
            raise EsError(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version "
                f"[{existing.version}])",
                extra={"index_uuid": idx.uuid, "shard": "0", "index": idx.name},
            )
        new_fields, ignored = self._map_document(idx, source, doc_id)
        for path, ftype in new_fields.items():
            idx.fields.setdefault(path, ftype)
            if not (path.endswith(".keyword") and path[: -len(".keyword")] in new_fields):
                _insert_mapping(idx.mappings, path, ftype)
        idx.seq_no += 1
        idx.generation += 1
        self._ordinal += 1
        version = existing.version + 1 if existing else 1
        idx.docs[doc_id] = StoredDoc(
            id=doc_id,
            index=idx.name,
            ordinal=self._ordinal,
            source=source if fresh else _clone(source),
            version=version,
            seq_no=idx.seq_no,
            ignored=tuple(ignored),
        )
        result = "updated" if existing else "created"
        return (200 if existing else 201), {
            "_index": idx.name,
            "_id": doc_id,
            "_version": version,
            "result": result,
            "_shards": dict(WRITE_SHARDS),
            "_seq_no": idx.seq_no,
            "_primary_term": 1,
        }

    def _delete(self, idx: EsIndex, doc_id: str) -> tuple[int, dict[str, Any]]:
        existing = idx.docs.pop(doc_id, None)
        idx.seq_no += 1
        idx.generation += 1
        version = existing.version + 1 if existing else 1
        body = {
            "_index": idx.name,
            "_id": doc_id,
            "_version": version,
            "result": "deleted" if existing else "not_found",
            "_shards": dict(WRITE_SHARDS),
            "_seq_no": idx.seq_no,
            "_primary_term": 1,
        }
        return (200 if existing else 404), body

    def _update(self, idx: EsIndex, doc_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise validation_error("script or doc is missing")
        if "script" in body:
            raise EsError(
                400, "double_unsupported_exception", "scripted updates are not implemented by the double"
            )
        doc = body.get("doc")
        if doc is None and "upsert" not in body:
            raise validation_error("script or doc is missing")
        existing = idx.docs.get(doc_id)
        if existing is None:
            if body.get("doc_as_upsert") and doc is not None:
                return self._store(idx, doc_id, doc, op="index")
            if "upsert" in body:
                return self._store(idx, doc_id, body["upsert"], op="index")
            raise EsError(
                404,
                "document_missing_exception",
                f"[{doc_id}]: document missing",
                extra={"index_uuid": idx.uuid, "shard": "0", "index": idx.name},
            )
        merged = _deep_merge(existing.source, doc or {})
        if merged == existing.source and body.get("detect_noop", True):
            return 200, {
                "_index": idx.name,
                "_id": doc_id,
                "_version": existing.version,
                "result": "noop",
                "_shards": {"total": 0, "successful": 0, "failed": 0},
                "_seq_no": existing.seq_no,
                "_primary_term": 1,
            }
        _, result = self._store(idx, doc_id, merged, op="index")
        result["result"] = "updated"
        return 200, result

    # test-side helpers -----------------------------------------------------------------------------

    def create_index(
        self,
        name: str,
        *,
        mappings: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        aliases: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Create an index directly (templates apply, as with ``PUT /<index>``)."""
        with self.lock:
            self._validate_index_name(name)
            if name in self.indices or name in self._names():
                raise ValueError(f"index or alias [{name}] already exists")
            body: dict[str, Any] = {}
            if mappings is not None:
                body["mappings"] = mappings
            if settings is not None:
                body["settings"] = settings
            if aliases is not None:
                body["aliases"] = aliases
            self._new_index(name, body)

    def load(
        self,
        index: str,
        docs: Iterable[Mapping[str, Any]],
        *,
        id_field: str | Callable[[Mapping[str, Any]], str] | None = "_id",
        clone: bool = True,
    ) -> int:
        """Index many documents without HTTP (fast, for 25k-doc fixtures); returns the count.

        ``clone=False`` stores the given dicts themselves (faster; the caller must not mutate them).

        ``id_field`` names the source key holding the id (``"_id"`` is removed from the source, any other
        dotted/flat path is read and kept), or is a callable, or None for generated ids. Mapping errors
        raise ``ValueError``. ``index`` may be an alias or data stream; it is auto-created if missing.
        """
        from tests.doubles.elastic_query import resolve_path

        count = 0
        with self.lock:
            for raw in docs:
                source = dict(raw)
                if callable(id_field):
                    doc_id = str(id_field(source))
                elif id_field == "_id":
                    doc_id = str(source.pop("_id")) if "_id" in source else self._auto_id()
                elif id_field is None:
                    doc_id = self._auto_id()
                else:
                    found = resolve_path(source, id_field)
                    if not found:
                        raise ValueError(f"document has no [{id_field}]")
                    doc_id = str(found[0])
                try:
                    op = "create" if index in self.data_streams else "index"
                    idx = self._write_index(index, op=op, has_id=op == "index")
                    self._store(idx, doc_id, source, op=op, fresh=not clone)
                except EsError as exc:
                    raise ValueError(
                        f"cannot index [{doc_id}] into [{index}]: {exc.type}: {exc.reason}"
                    ) from exc
                count += 1
        return count

    def source(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The stored ``_source`` of one document (``index`` may be an alias/pattern), or None."""
        with self.lock:
            try:
                targets = self.resolve(index)
            except EsError:
                return None
            for idx in targets:
                if doc_id in idx.docs:
                    return _clone(idx.docs[doc_id].source)
        return None

    def docs(self, index: str = "_all") -> dict[str, dict[str, Any]]:
        """``{_id: _source}`` over an expression (later indices win on duplicate ids)."""
        with self.lock:
            try:
                targets = self.resolve(index)
            except EsError:
                return {}
            return {d.id: _clone(d.source) for idx in targets for d in idx.docs.values()}

    def doc_count(self, index: str = "_all") -> int:
        with self.lock:
            try:
                return sum(len(i.docs) for i in self.resolve(index))
            except EsError:
                return 0

    def put_index_template(self, name: str, body: Mapping[str, Any]) -> None:
        with self.lock:
            self._validate_template(name, body)
            self.index_templates[name] = copy.deepcopy(dict(body))

    def field_type(self, index: str, path: str) -> str | None:
        with self.lock:
            for idx in self.resolve(index):
                if path in idx.fields:
                    return idx.fields[path]
        return None

    def add_bulk_hook(self, hook: BulkHook) -> None:
        """Call ``hook(BulkItem)`` for every bulk item; an ``EsError`` it returns fails that item."""
        with self.lock:
            self._bulk_hooks.append(hook)

    def clear_bulk_hooks(self) -> None:
        with self.lock:
            self._bulk_hooks.clear()

    def fail_bulk_items(
        self,
        *,
        positions: Iterable[int] | None = None,
        ids: Iterable[str] | None = None,
        status: int = 429,
        error: EsError | None = None,
        times: int | None = 1,
        request_number: int | None = None,
    ) -> None:
        """Fail bulk items by position within a request and/or by ``_id``, ``times`` times each.

        Default error: 429 ``es_rejected_execution_exception``; ``status=400`` gives a
        ``document_parsing_exception`` (a mapper error); pass ``error`` for anything else.
        """
        wanted_pos = set(positions) if positions is not None else None
        wanted_ids = {str(i) for i in ids} if ids is not None else None
        remaining: dict[Any, int | None] = {}

        def hook(item: BulkItem) -> EsError | None:
            if request_number is not None and item.request_number != request_number:
                return None
            if wanted_pos is not None and item.position not in wanted_pos:
                return None
            if wanted_ids is not None and item.id not in wanted_ids:
                return None
            key = item.id if wanted_ids is not None else item.position
            left = remaining.setdefault(key, times)
            if left is not None and left <= 0:
                return None
            if left is not None:
                remaining[key] = left - 1
            if error is not None:
                return error
            if status == 429:
                cause = _rejected_cause()
                return EsError(429, cause["type"], cause["reason"])
            if status == 400:
                return EsError(
                    400,
                    "document_parsing_exception",
                    f"[1:2] failed to parse field [threat.indicator.ip] of type [ip] in document with id "
                    f"'{item.id}'. Preview of field's value: 'not-an-ip'",
                    caused_by={
                        "type": "illegal_argument_exception",
                        "reason": "'not-an-ip' is not an IP string literal.",
                    },
                )
            body = es_fault_body(status)["error"]
            return EsError(status, body["type"], body["reason"])

        self.add_bulk_hook(hook)

    @property
    def open_pits(self) -> int:
        with self.lock:
            self._purge_pits()
            return len(self._pits)

    def expire_pits(self) -> None:
        """Expire every open point in time now (as if keep_alive elapsed)."""
        with self.lock:
            self._pits.clear()
            self._pit_aliases.clear()

    def _auto_id(self) -> str:
        return base64.urlsafe_b64encode(os.urandom(15)).decode()

    # routes: cluster ------------------------------------------------------------------------------

    @route("GET", "/")
    def _info(self, request: RecordedRequest) -> Response:
        return Response.json(
            200,
            {
                "name": "double-node",
                "cluster_name": "ctibridge-double",
                "cluster_uuid": self.cluster_uuid,
                "version": {
                    "number": self.version,
                    "build_flavor": "default",
                    "build_type": "docker",
                    "build_hash": "0" * 40,
                    "build_date": "2025-09-01T00:00:00.000Z",
                    "build_snapshot": False,
                    "lucene_version": "10.2.2",
                    "minimum_wire_compatibility_version": "8.19.0",
                    "minimum_index_compatibility_version": "8.0.0",
                },
                "tagline": "You Know, for Search",
            },
        )

    @route("HEAD", "/")
    def _ping(self, request: RecordedRequest) -> Response:
        return Response(200, b"", [("Content-Type", "application/json")])

    @route("GET", "/_cluster/health")
    def _health(self, request: RecordedRequest) -> Response:
        return Response.json(
            200,
            {
                "cluster_name": "ctibridge-double",
                "status": "green",
                "timed_out": False,
                "number_of_nodes": 1,
                "number_of_data_nodes": 1,
                "active_primary_shards": len(self.indices),
                "active_shards": len(self.indices),
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": 0,
                "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0,
            },
        )

    @route("GET", "/_security/_authenticate")
    def _whoami(self, request: RecordedRequest) -> Response:
        _, principal = self.credentials.check(request.header("authorization"))
        api = (request.header("authorization") or "").lower().startswith("apikey")
        body: dict[str, Any] = {
            "username": principal if not api else "ctibridge-test-user",
            "roles": [],
            "full_name": None,
            "email": None,
            "metadata": {},
            "enabled": True,
            "authentication_realm": {
                "name": "_es_api_key" if api else "default_native",
                "type": "_es_api_key" if api else "native",
            },
            "lookup_realm": {
                "name": "_es_api_key" if api else "default_native",
                "type": "_es_api_key" if api else "native",
            },
            "authentication_type": "api_key" if api else "realm",
        }
        if api:
            body["api_key"] = {
                "id": principal,
                "name": "ctibridge-test",
                "managed_by": "elasticsearch",
                "internal": False,
            }
        return Response.json(200, body)

    # routes: indices ------------------------------------------------------------------------------

    @route("PUT", "/{index}")
    def _create_index(self, request: RecordedRequest, index: str) -> Response:
        self._validate_index_name(index)
        if index in self._names():
            existing = self.indices.get(index)
            raise EsError(
                400,
                "resource_already_exists_exception",
                f"index [{index}/{existing.uuid if existing else '_na_'}] already exists",
                extra={"index_uuid": existing.uuid if existing else "_na_", "index": index},
            )
        body = self._json(request) or {}
        unknown = set(body) - {"settings", "mappings", "aliases"}
        if unknown:
            raise EsError(
                400, "illegal_argument_exception", f"unknown key [{sorted(unknown)[0]}] for create index"
            )
        self._new_index(index, body)
        return Response.json(200, {"acknowledged": True, "shards_acknowledged": True, "index": index})

    @route("HEAD", "/{index}")
    def _index_exists(self, request: RecordedRequest, index: str) -> Response:
        try:
            found = self.resolve(index, allow_no_indices=False)
        except EsError:
            return Response(404, b"", [("Content-Type", "application/json")])
        return Response(200 if found else 404, b"", [("Content-Type", "application/json")])

    @route("GET", "/{index}")
    def _get_index(self, request: RecordedRequest, index: str) -> Response:
        out = {}
        for idx in self.resolve(index, allow_no_indices=False):
            out[idx.name] = {
                "aliases": idx.aliases,
                "mappings": idx.mappings,
                "settings": {
                    "index": {k[len("index.") :]: v for k, v in idx.settings.items()}
                    | {"uuid": idx.uuid, "provided_name": idx.name, "creation_date": str(idx.created_ms)}
                },
            }
            if idx.data_stream:
                out[idx.name]["data_stream"] = idx.data_stream
        if not out:
            raise index_not_found(index)
        return Response.json(200, out)

    @route("DELETE", "/{index}")
    def _delete_index(self, request: RecordedRequest, index: str) -> Response:
        if any(ch in index for ch in "*?") or index in ("_all",):
            raise EsError(
                400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed"
            )
        for part in index.split(","):
            if part in self.data_streams:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"index [{part}] is a data stream; use the delete data stream API",
                )
            if part not in self.indices:
                if any(part in i.aliases for i in self.indices.values()):
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        f"The provided expression [{part}] matches an alias, specify the corresponding "
                        "concrete indices instead.",
                    )
                raise index_not_found(part)
        for part in index.split(","):
            self.indices.pop(part, None)
        return Response.json(200, {"acknowledged": True})

    @route("GET", "/_mapping")
    def _all_mappings(self, request: RecordedRequest) -> Response:
        return self._get_mapping(request, "_all")

    @route("GET", "/{index}/_mapping")
    def _get_mapping(self, request: RecordedRequest, index: str) -> Response:
        return Response.json(200, {i.name: {"mappings": i.mappings} for i in self.resolve(index)})

    @route("PUT", "/{index}/_mapping")
    def _put_mapping(self, request: RecordedRequest, index: str) -> Response:
        body = self._json(request, required=True)
        for idx in self.resolve(index, allow_no_indices=False):
            fields: dict[str, str] = {}
            objects: set[str] = set()
            malformed: set[str] = set()
            _flatten_mapping(body.get("properties", {}), "", fields, objects, malformed)
            for path, ftype in fields.items():
                if path in idx.fields and idx.fields[path] != ftype:
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        f"mapper [{path}] cannot be changed from type [{idx.fields[path]}] to [{ftype}]",
                    )
            idx.mappings = _deep_merge(idx.mappings, body)
            idx.fields.update(fields)
            idx.objects |= objects
            idx.ignore_malformed_fields |= malformed
        return Response.json(200, {"acknowledged": True})

    @route("POST", "/_refresh")
    @route("GET", "/_refresh")
    def _refresh_all(self, request: RecordedRequest) -> Response:
        return self._refresh(request, "_all")

    @route("POST", "/{index}/_refresh")
    @route("GET", "/{index}/_refresh")
    def _refresh(self, request: RecordedRequest, index: str) -> Response:
        n = len(self.resolve(index))
        return Response.json(200, {"_shards": {"total": n * 2, "successful": n, "failed": 0}})

    # routes: templates ----------------------------------------------------------------------------

    def _validate_template(self, name: str, body: Mapping[str, Any]) -> None:
        patterns = body.get("index_patterns")
        if not patterns:
            raise validation_error("index patterns are missing")
        unknown = set(body) - {
            "index_patterns",
            "template",
            "composed_of",
            "priority",
            "version",
            "_meta",
            "data_stream",
            "allow_auto_create",
            "ignore_missing_component_templates",
            "deprecated",
        }
        if unknown:
            raise EsError(
                400,
                "x_content_parse_exception",
                f"[1:2] [index_template] unknown field [{sorted(unknown)[0]}]",
            )
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        prio = int(body.get("priority", 0) or 0)
        for other, tpl in self.index_templates.items():
            if other == name or int(tpl.get("priority", 0) or 0) != prio:
                continue
            theirs = tpl.get("index_patterns", [])
            theirs = [theirs] if isinstance(theirs, str) else theirs
            overlap = [
                p for p in patterns for q in theirs if fnmatch.fnmatchcase(p, q) or fnmatch.fnmatchcase(q, p)
            ]
            if overlap:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"index template [{name}] has index patterns {patterns} matching patterns from existing "
                    f"templates [{other}] with patterns ({other} => {theirs}) that have the same priority "
                    f"[{prio}], "
                    "multiple index templates may not match during index creation, please use a different "
                    "priority",
                )
        for comp in body.get("composed_of", []) or []:
            if comp not in self.component_templates and comp not in (
                body.get("ignore_missing_component_templates") or []
            ):
                raise EsError(
                    400,
                    "invalid_index_template_exception",
                    f"index_template [{name}] invalid, cause [index template [{name}] specifies component "
                    f"templates [{comp}] that do not exist]",
                )

    @route("PUT", "/_index_template/{name}")
    @route("POST", "/_index_template/{name}")
    def _put_template(self, request: RecordedRequest, name: str) -> Response:
        body = self._json(request, required=True)
        if request.param("create") == "true" and name in self.index_templates:
            raise EsError(400, "illegal_argument_exception", f"index template [{name}] already exists")
        self._validate_template(name, body)
        self.index_templates[name] = body
        return Response.json(200, {"acknowledged": True})

    @route("GET", "/_index_template")
    def _list_templates(self, request: RecordedRequest) -> Response:
        return self._get_template(request, "*")

    @route("GET", "/_index_template/{name}")
    def _get_template(self, request: RecordedRequest, name: str) -> Response:
        found = [n for n in sorted(self.index_templates) if fnmatch.fnmatchcase(n, name)]
        if not found and not any(c in name for c in "*?"):
            raise EsError(404, "resource_not_found_exception", f"index template matching [{name}] not found")
        return Response.json(
            200, {"index_templates": [{"name": n, "index_template": self.index_templates[n]} for n in found]}
        )

    @route("HEAD", "/_index_template/{name}")
    def _template_exists(self, request: RecordedRequest, name: str) -> Response:
        ok = any(fnmatch.fnmatchcase(n, name) for n in self.index_templates)
        return Response(200 if ok else 404, b"", [("Content-Type", "application/json")])

    @route("DELETE", "/_index_template/{name}")
    def _delete_template(self, request: RecordedRequest, name: str) -> Response:
        if name not in self.index_templates:
            raise EsError(404, "resource_not_found_exception", f"index_template [{name}] missing")
        del self.index_templates[name]
        return Response.json(200, {"acknowledged": True})

    @route("PUT", "/_component_template/{name}")
    @route("POST", "/_component_template/{name}")
    def _put_component(self, request: RecordedRequest, name: str) -> Response:
        body = self._json(request, required=True)
        if "template" not in body:
            raise validation_error("template is missing")
        self.component_templates[name] = body
        return Response.json(200, {"acknowledged": True})

    @route("GET", "/_component_template/{name}")
    def _get_component(self, request: RecordedRequest, name: str) -> Response:
        found = [n for n in sorted(self.component_templates) if fnmatch.fnmatchcase(n, name)]
        if not found:
            raise EsError(
                404, "resource_not_found_exception", f"component template matching [{name}] not found"
            )
        return Response.json(
            200,
            {
                "component_templates": [
                    {"name": n, "component_template": self.component_templates[n]} for n in found
                ]
            },
        )

    @route("HEAD", "/_component_template/{name}")
    def _component_exists(self, request: RecordedRequest, name: str) -> Response:
        ok = any(fnmatch.fnmatchcase(n, name) for n in self.component_templates)
        return Response(200 if ok else 404, b"", [("Content-Type", "application/json")])

    @route("DELETE", "/_component_template/{name}")
    def _delete_component(self, request: RecordedRequest, name: str) -> Response:
        if name not in self.component_templates:
            raise EsError(
                404, "resource_not_found_exception", f"component template matching [{name}] not found"
            )
        users = [t for t, body in self.index_templates.items() if name in (body.get("composed_of") or [])]
        if users:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"component templates [{name}] cannot be removed as they are still in use by index "
                f"templates [{', '.join(users)}]",
            )
        del self.component_templates[name]
        return Response.json(200, {"acknowledged": True})

    # routes: data streams and aliases -------------------------------------------------------------

    @route("GET", "/_data_stream")
    def _list_streams(self, request: RecordedRequest) -> Response:
        return self._get_stream(request, "*")

    @route("GET", "/_data_stream/{name}")
    def _get_stream(self, request: RecordedRequest, name: str) -> Response:
        found = [ds for n, ds in sorted(self.data_streams.items()) if fnmatch.fnmatchcase(n, name)]
        if not found and not any(c in name for c in "*?"):
            raise index_not_found(name)
        return Response.json(
            200,
            {
                "data_streams": [
                    {
                        "name": ds.name,
                        "timestamp_field": {"name": "@timestamp"},
                        "indices": [
                            {"index_name": i, "index_uuid": self.indices[i].uuid} for i in ds.indices
                        ],
                        "generation": ds.generation,
                        "status": "GREEN",
                        "template": ds.template,
                        "hidden": False,
                        "system": False,
                    }
                    for ds in found
                ]
            },
        )

    @route("PUT", "/_data_stream/{name}")
    def _create_stream(self, request: RecordedRequest, name: str) -> Response:
        self._validate_index_name(name)
        if name in self._names():
            raise EsError(400, "resource_already_exists_exception", f"data_stream [{name}] already exists")
        found = self._template_for(name)
        if found is None or found[1].get("data_stream") is None:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"no matching index template with data stream enabled found for data stream [{name}]",
            )
        self._auto_create(name)
        return Response.json(200, {"acknowledged": True})

    @route("DELETE", "/_data_stream/{name}")
    def _delete_stream(self, request: RecordedRequest, name: str) -> Response:
        found = [n for n in self.data_streams if fnmatch.fnmatchcase(n, name)]
        if not found:
            raise index_not_found(name)
        for n in found:
            for backing in self.data_streams.pop(n).indices:
                self.indices.pop(backing, None)
        return Response.json(200, {"acknowledged": True})

    @route("POST", "/_aliases")
    def _aliases(self, request: RecordedRequest) -> Response:
        body = self._json(request, required=True)
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise validation_error("no actions specified")
        for action in actions:
            ((kind, spec),) = action.items()
            targets = spec.get("indices") or [spec.get("index")]
            aliases = spec.get("aliases") or [spec.get("alias")]
            for target in targets:
                for idx in self.resolve(target, allow_no_indices=False):
                    for alias in aliases:
                        if kind == "add":
                            opts = {
                                k: v
                                for k, v in spec.items()
                                if k in ("is_write_index", "filter", "is_hidden")
                            }
                            idx.aliases[alias] = opts
                        elif kind == "remove":
                            if alias not in idx.aliases and spec.get("must_exist") is not False:
                                raise EsError(
                                    404,
                                    "aliases_not_found_exception",
                                    f"aliases [{alias}] missing",
                                    extra={"resource.type": "aliases", "resource.id": alias},
                                )
                            idx.aliases.pop(alias, None)
                        elif kind == "remove_index":
                            self.indices.pop(idx.name, None)
                        else:
                            raise EsError(400, "illegal_argument_exception", f"unknown alias action [{kind}]")
        return Response.json(200, {"acknowledged": True, "errors": False})

    @route("PUT", "/{index}/_alias/{name}")
    @route("POST", "/{index}/_alias/{name}")
    def _put_alias(self, request: RecordedRequest, index: str, name: str) -> Response:
        spec = self._json(request) or {}
        for idx in self.resolve(index, allow_no_indices=False):
            idx.aliases[name] = {
                k: v for k, v in spec.items() if k in ("is_write_index", "filter", "is_hidden")
            }
        return Response.json(200, {"acknowledged": True})

    @route("DELETE", "/{index}/_alias/{name}")
    def _delete_alias(self, request: RecordedRequest, index: str, name: str) -> Response:
        removed = False
        for idx in self.resolve(index, allow_no_indices=False):
            for alias in [a for a in idx.aliases if fnmatch.fnmatchcase(a, name)]:
                del idx.aliases[alias]
                removed = True
        if not removed:
            raise EsError(404, "aliases_not_found_exception", f"aliases [{name}] missing")
        return Response.json(200, {"acknowledged": True})

    @route("GET", "/_alias")
    def _get_aliases(self, request: RecordedRequest) -> Response:
        return Response.json(
            200, {i.name: {"aliases": i.aliases} for i in self.indices.values() if i.aliases}
        )

    @route("GET", "/_alias/{name}")
    @route("HEAD", "/_alias/{name}")
    def _get_alias(self, request: RecordedRequest, name: str) -> Response:
        out = {}
        for idx in self.indices.values():
            hits = {a: spec for a, spec in idx.aliases.items() if fnmatch.fnmatchcase(a, name)}
            if hits:
                out[idx.name] = {"aliases": hits}
        if not out:
            if request.method == "HEAD":
                return Response(404, b"", [("Content-Type", "application/json")])
            return Response.json(404, {"error": f"alias [{name}] missing", "status": 404})
        if request.method == "HEAD":
            return Response(200, b"", [("Content-Type", "application/json")])
        return Response.json(200, out)

    # routes: single documents ---------------------------------------------------------------------

    @route("PUT", "/{index}/_doc/{doc_id}")
    @route("POST", "/{index}/_doc/{doc_id}")
    def _index_doc(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        op = request.param("op_type", "index")
        if op not in ("index", "create"):
            raise EsError(
                400, "illegal_argument_exception", f"opType must be 'create' or 'index', found: [{op}]"
            )
        body = self._json(request, required=True)
        idx = self._write_index(index, op=op, has_id=True)
        status, result = self._store(idx, doc_id, body, op=op)
        return Response.json(status, result)

    @route("POST", "/{index}/_doc")
    def _index_auto_id(self, request: RecordedRequest, index: str) -> Response:
        body = self._json(request, required=True)
        idx = self._write_index(index, op="create", has_id=False)
        status, result = self._store(idx, self._auto_id(), body, op="create")
        return Response.json(status, result)

    @route("PUT", "/{index}/_create/{doc_id}")
    @route("POST", "/{index}/_create/{doc_id}")
    def _create_doc(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        body = self._json(request, required=True)
        idx = self._write_index(index, op="create", has_id=True)
        status, result = self._store(idx, doc_id, body, op="create")
        return Response.json(status, result)

    def _get_common(self, index: str, doc_id: str) -> tuple[EsIndex, StoredDoc | None]:
        idx = self._single_index(index)
        return idx, idx.docs.get(doc_id)

    @route("GET", "/{index}/_doc/{doc_id}")
    def _get_doc(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        idx, doc = self._get_common(index, doc_id)
        if doc is None:
            return Response.json(404, {"_index": idx.name, "_id": doc_id, "found": False})
        body: dict[str, Any] = {
            "_index": idx.name,
            "_id": doc_id,
            "_version": doc.version,
            "_seq_no": doc.seq_no,
            "_primary_term": doc.primary_term,
            "found": True,
        }
        flt = self._source_filter_from_params(request, None)
        if flt is not None:
            body["_source"] = flt(doc.source)
        return Response.json(200, body)

    @route("HEAD", "/{index}/_doc/{doc_id}")
    def _doc_exists(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        try:
            _, doc = self._get_common(index, doc_id)
        except EsError:
            return Response(404, b"", [("Content-Type", "application/json")])
        return Response(200 if doc else 404, b"", [("Content-Type", "application/json")])

    @route("GET", "/{index}/_source/{doc_id}")
    def _get_source(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        idx, doc = self._get_common(index, doc_id)
        if doc is None:
            raise EsError(404, "resource_not_found_exception", f"Document not found [{idx.name}]/[{doc_id}]")
        return Response.json(200, doc.source)

    @route("DELETE", "/{index}/_doc/{doc_id}")
    def _delete_doc(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        if index in self.data_streams:
            raise EsError(
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            )
        idx = self._write_index(index, op="delete", has_id=True, create_missing=False)
        status, body = self._delete(idx, doc_id)
        return Response.json(status, body)

    @route("POST", "/{index}/_update/{doc_id}")
    def _update_doc(self, request: RecordedRequest, index: str, doc_id: str) -> Response:
        if index in self.data_streams:
            raise EsError(
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            )
        body = self._json(request, required=True)
        idx = self._write_index(
            index,
            op="update",
            has_id=True,
            create_missing=bool(body.get("doc_as_upsert") or "upsert" in body),
        )
        status, result = self._update(idx, doc_id, body)
        return Response.json(status, result)

    @route("GET", "/_mget")
    @route("POST", "/_mget")
    def _mget_all(self, request: RecordedRequest) -> Response:
        return self._mget(request, None)

    @route("GET", "/{index}/_mget")
    @route("POST", "/{index}/_mget")
    def _mget(self, request: RecordedRequest, index: str | None) -> Response:
        body = self._json(request, required=True)
        if "docs" in body:
            specs = body["docs"]
        elif "ids" in body:
            specs = [{"_id": i} for i in body["ids"]]
        else:
            raise validation_error("no documents to get")
        if not specs:
            raise validation_error("no documents to get")
        out = []
        default_filter = self._source_filter_from_params(request, None)
        for spec in specs:
            name = spec.get("_index", index)
            doc_id = str(spec.get("_id"))
            if name is None:
                raise validation_error("index is missing for doc 0")
            try:
                idx = self._single_index(name)
            except EsError as exc:
                out.append({"_index": name, "_id": doc_id, "error": exc.cause()})
                continue
            doc = idx.docs.get(doc_id)
            if doc is None:
                out.append({"_index": idx.name, "_id": doc_id, "found": False})
                continue
            entry: dict[str, Any] = {
                "_index": idx.name,
                "_id": doc_id,
                "_version": doc.version,
                "_seq_no": doc.seq_no,
                "_primary_term": 1,
                "found": True,
            }
            flt = source_filter(spec["_source"]) if "_source" in spec else default_filter
            if flt is not None:
                entry["_source"] = flt(doc.source)
            out.append(entry)
        return Response.json(200, {"docs": out})

    # routes: bulk -----------------------------------------------------------------------------------

    @route("POST", "/_bulk")
    @route("PUT", "/_bulk")
    def _bulk_all(self, request: RecordedRequest) -> Response:
        return self._bulk(request, None)

    @route("POST", "/{index}/_bulk")
    @route("PUT", "/{index}/_bulk")
    def _bulk(self, request: RecordedRequest, index: str | None) -> Response:
        started = time.perf_counter()
        raw = request.body
        if not raw.strip():
            raise validation_error("no requests added")
        if not raw.endswith(b"\n"):
            raise EsError(
                400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
            )
        lines = raw.split(b"\n")[:-1]
        ops: list[tuple[str, dict[str, Any], Any]] = []
        i = 0
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            try:
                action = json.loads(lines[i])
            except ValueError as exc:
                raise EsError(
                    400, "x_content_parse_exception", f"[{i + 1}:1] Unexpected character: {exc}"
                ) from exc
            if not isinstance(action, dict) or len(action) != 1:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}], expected "
                    "START_OBJECT or END_OBJECT but found [VALUE_STRING]",
                )
            ((kind, meta),) = action.items()
            if kind not in ("index", "create", "update", "delete"):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}], "
                    f"expected one of [create, delete, index, update] but found [{kind}]",
                )
            meta = meta or {}
            unknown = set(meta) - {
                "_index",
                "_id",
                "routing",
                "if_seq_no",
                "if_primary_term",
                "version",
                "version_type",
                "pipeline",
                "require_alias",
                "retry_on_conflict",
                "dynamic_templates",
                "require_data_stream",
                "list_executed_pipelines",
                "_source",
            }
            if unknown:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Action/metadata line [{i + 1}] contains an unknown parameter [{sorted(unknown)[0]}]",
                )
            if meta.get("_index", index) is None:
                raise validation_error("index is missing")
            source: Any = None
            if kind != "delete":
                if i + 1 >= len(lines):
                    raise validation_error("source is missing")
                try:
                    source = json.loads(lines[i + 1])
                except ValueError as exc:
                    raise EsError(
                        400, "x_content_parse_exception", f"[{i + 2}:1] Unexpected character: {exc}"
                    ) from exc
                i += 2
            else:
                i += 1
            ops.append((kind, meta, source))
        self._bulk_requests += 1
        items = []
        errors = False
        for position, (kind, meta, source) in enumerate(ops):
            name = meta.get("_index", index)
            doc_id = meta.get("_id")
            doc_id = str(doc_id) if doc_id is not None else None
            item = BulkItem(
                self._bulk_requests, position, kind, name, doc_id, source if kind != "delete" else None
            )
            try:
                for hook in self._bulk_hooks:
                    failure = hook(item)
                    if failure is not None:
                        raise failure
                status, result = self._bulk_one(kind, name, doc_id, source)
                result["status"] = status
                items.append({kind: result})
            except EsError as exc:
                errors = True
                entry: dict[str, Any] = {
                    "_index": name,
                    "_id": doc_id,
                    "status": exc.status,
                    "error": exc.cause(),
                }
                items.append({kind: entry})
        took = int((time.perf_counter() - started) * 1000)
        return Response.json(200, {"errors": errors, "took": took, "items": items})

    def _bulk_one(self, kind: str, name: str, doc_id: str | None, source: Any) -> tuple[int, dict[str, Any]]:
        if kind == "index":
            if doc_id is None:
                idx = self._write_index(name, op="create", has_id=False)
                return self._store(idx, self._auto_id(), source, op="create")
            idx = self._write_index(name, op="index", has_id=True)
            return self._store(idx, doc_id, source, op="index")
        if kind == "create":
            idx = self._write_index(name, op="create", has_id=doc_id is not None)
            return self._store(idx, doc_id or self._auto_id(), source, op="create")
        if doc_id is None:
            raise validation_error("id is missing")
        if kind == "delete":
            if name in self.data_streams:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams",
                )
            idx = self._write_index(name, op="delete", has_id=True, create_missing=False)
            return self._delete(idx, doc_id)
        if name in self.data_streams:
            raise EsError(
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            )
        upsert = isinstance(source, dict) and bool(source.get("doc_as_upsert") or "upsert" in source)
        idx = self._write_index(name, op="update", has_id=True, create_missing=upsert)
        return self._update(idx, doc_id, source)

    # routes: search -------------------------------------------------------------------------------

    def _source_filter_from_params(self, request: RecordedRequest, body_spec: Any):
        spec: Any = body_spec if body_spec is not None else True
        param = request.param("_source")
        if param is not None:
            spec = False if param == "false" else (True if param == "true" else param.split(","))
        inc = request.param("_source_includes")
        exc = request.param("_source_excludes")
        return source_filter(
            spec,
            inc.split(",") if inc else None,
            exc.split(",") if exc else None,
        )

    def _field_type_lookup(self, fields_list: list[dict[str, str]], objects_list: list[set[str]]):
        def lookup(path: str) -> str | None:
            for fields in fields_list:
                if path in fields:
                    return fields[path]
            for objects in objects_list:
                if path in objects:
                    return "object"
            return None

        return lookup

    @route("GET", "/_search")
    @route("POST", "/_search")
    def _search_all(self, request: RecordedRequest) -> Response:
        return self._search(request, None)

    @route("GET", "/{index}/_search")
    @route("POST", "/{index}/_search")
    def _search(self, request: RecordedRequest, index: str | None) -> Response:
        started = time.perf_counter()
        body = self._json(request) or {}
        if not isinstance(body, dict):
            raise EsError(400, "parsing_exception", "Unknown key for a VALUE_STRING in [body].")
        unknown = set(body) - _SEARCH_KEYS
        if unknown:
            raise EsError(
                400, "parsing_exception", f"Unknown key for a START_OBJECT in [{sorted(unknown)[0]}]."
            )
        for key in _SEARCH_KEYS_UNSUPPORTED & set(body):
            if body[key]:
                raise EsError(
                    400,
                    "double_unsupported_exception",
                    f"search option [{key}] is not implemented by the test double",
                )
        for param in ("scroll", "q"):
            if request.param(param) is not None:
                raise EsError(
                    400,
                    "double_unsupported_exception",
                    f"URL parameter [{param}] is not implemented by the test double; use PIT",
                )

        size = request.param("size")
        size = int(size) if size is not None else body.get("size", 10)
        from_ = request.param("from")
        from_ = int(from_) if from_ is not None else body.get("from", 0)
        sort_spec = body.get("sort")
        if request.param("sort"):
            sort_spec = request.param("sort").split(",")  # type: ignore[union-attr]
        search_after = body.get("search_after")
        pit = body.get("pit")
        problems: list[str] = []
        if not isinstance(size, int) or size < 0:
            problems.append(f"[size] parameter cannot be negative, found [{size}]")
        if not isinstance(from_, int) or from_ < 0:
            problems.append(f"[from] parameter cannot be negative, found [{from_}]")
        if search_after is not None and from_ not in (0, -1):
            problems.append("[from] parameter must be set to 0 when [search_after] is used")
        sort_fields = parse_sort(sort_spec)
        if pit is None and any(sf.field == "_shard_doc" for sf in sort_fields):
            problems.append("[_shard_doc] sort field cannot be used without [point in time]")
        if pit is not None:
            if index is not None:
                problems.append(
                    "[indices] cannot be used with point in time. Do not specify any index with point "
                    "in time."
                )
            if request.param("routing") is not None:
                problems.append("[routing] cannot be used with point in time")
            if request.param("preference") is not None:
                problems.append("[preference] cannot be used with point in time")
            if not isinstance(pit, dict) or not pit.get("id"):
                problems.append("[pit] requires an id")
        if problems:
            raise validation_error(*problems)

        if pit is not None:
            ctx = self._pit(pit["id"])
            if pit.get("keep_alive"):
                ctx.keep_alive_ms = parse_keep_alive(pit["keep_alive"])
            ctx.expires_at = self.now() + ctx.keep_alive_ms / 1000
            docs_source: list[StoredDoc] | list[EsIndex] = ctx.docs
            lookup = self._field_type_lookup([ctx.fields], [ctx.objects])
            window = ctx.max_result_window
            cache = ctx.cache
            snapshot_key = ctx.id
            index_label = ",".join(ctx.indices)
        else:
            targets = self.resolve(
                index,
                ignore_unavailable=request.param("ignore_unavailable") == "true",
                allow_no_indices=request.param("allow_no_indices") != "false",
            )
            docs_source = targets
            lookup = self._field_type_lookup([t.fields for t in targets], [t.objects for t in targets])
            window = min((t.max_result_window for t in targets), default=DEFAULT_MAX_RESULT_WINDOW)
            cache = self._cache
            snapshot_key = "|".join(f"{t.name}:{t.uuid}:{t.generation}" for t in targets)
            index_label = ",".join(t.name for t in targets) or "_na_"

        if from_ + size > window:
            raise search_phase_error(
                EsError(
                    400,
                    "illegal_argument_exception",
                    f"Result window is too large, from + size must be less than or equal to: [{window}] but "
                    "was "
                    f"[{from_ + size}]. See search after for a more efficient way to request large data "
                    "sets. This "
                    "limit can be set by changing the [index.max_result_window] index level setting.",
                ),
                index_label,
            )

        # implicit PIT tie-breaker (SearchRequest#rewrite)
        if (
            pit is not None
            and sort_fields
            and sort_fields[-1].field != "_shard_doc"
            and (search_after is None or len(search_after) == len(sort_fields) + 1)
        ):
            sort_fields.append(SortField("_shard_doc", "asc", implicit=True))
        for sf in sort_fields:
            if sf.special:
                continue
            if sf.field == "_id":
                raise search_phase_error(
                    EsError(
                        400,
                        "illegal_argument_exception",
                        "Fielddata access on the _id field is disallowed, you can re-enable it by updating "
                        "the dynamic "
                        "cluster setting: indices.id_field_data.enabled",
                    ),
                    index_label,
                )
            ftype = lookup(sf.field)
            if ftype is None and sf.field.endswith(".keyword"):
                ftype = None
            if ftype in (None, "object", "nested"):
                if sf.unmapped_type and ftype is None:
                    ftype = sf.unmapped_type
                else:
                    raise search_phase_error(
                        EsError(
                            400,
                            "query_shard_exception",
                            f"No mapping found for [{sf.field}] in order to sort on",
                            extra={"index": index_label},
                        ),
                        index_label,
                    )
            if ftype in ("text", "match_only_text"):
                raise search_phase_error(
                    EsError(
                        400,
                        "illegal_argument_exception",
                        "Text fields are not optimised for operations that require per-document field data "
                        "like "
                        "aggregations and sorting, so these operations are disabled by default. Please use "
                        "a keyword "
                        f"field instead. Alternatively, set fielddata=true on [{sf.field}] in order to load "
                        "field data "
                        "by uninverting the inverted index. Note that this can use significant memory.",
                    ),
                    index_label,
                )
            sf.ftype = ftype

        qctx = QueryContext(lookup, int(self.now() * 1000))
        predicate = compile_query(body.get("query"), qctx)
        post = compile_query(body.get("post_filter"), qctx) if body.get("post_filter") else None
        after = after_key(search_after, sort_fields) if search_after is not None else None

        cache_key = json.dumps(
            [
                snapshot_key,
                body.get("query"),
                body.get("post_filter"),
                [(s.field, s.order, s.missing, s.mode, s.format, s.ftype) for s in sort_fields],
                int(self.now() // 60) if "now" in json.dumps(body.get("query")) else 0,
            ],
            sort_keys=True,
            default=str,
        )
        entries = cache.get(cache_key)
        if entries is None:
            if isinstance(docs_source, list) and docs_source and isinstance(docs_source[0], EsIndex):
                candidates = [d for idx in docs_source for d in idx.docs.values()]  # type: ignore[union-attr]
            else:
                candidates = list(docs_source)  # type: ignore[arg-type]
            matched = [d for d in candidates if predicate(d) and (post is None or post(d))]
            if sort_fields:
                keyed = [(*sort_entry(d, sort_fields, 1.0), d) for d in matched]
                keyed.sort(key=lambda e: e[0])
                entries = ([e[0] for e in keyed], [(e[2], e[1]) for e in keyed])
            else:
                matched.sort(key=lambda d: d.ordinal)
                entries = ([], [(d, None) for d in matched])
            cache[cache_key] = entries
            while len(cache) > 8:
                cache.popitem(last=False)
        keys, rows = entries
        total = len(rows)
        start = bisect_right(keys, after) if after is not None else from_
        page = rows[start : start + size]

        flt = self._source_filter_from_params(request, body.get("_source"))
        fields_spec = body.get("fields")
        hits = []
        for doc, shown in page:
            hit: dict[str, Any] = {"_index": doc.index, "_id": doc.id, "_score": None if sort_fields else 1.0}
            if flt is not None:
                hit["_source"] = flt(doc.source)
            if fields_spec:
                hit["fields"] = self._fetch_fields(doc, fields_spec)
            if body.get("version"):
                hit["_version"] = doc.version
            if body.get("seq_no_primary_term"):
                hit["_seq_no"] = doc.seq_no
                hit["_primary_term"] = doc.primary_term
            if doc.ignored:
                hit["_ignored"] = list(doc.ignored)
            if shown is not None:
                hit["sort"] = shown
            hits.append(hit)

        track = request.param("track_total_hits")
        track_value: Any = body.get("track_total_hits", DEFAULT_TRACK_TOTAL_HITS)
        if track is not None:
            track_value = {"true": True, "false": False}.get(track, track)
        hits_body: dict[str, Any] = {}
        if track_value is not False and track_value != -1:
            limit = None if track_value is True else int(track_value)
            if limit is not None and total > limit:
                total_obj: Any = {"value": limit, "relation": "gte"}
            else:
                total_obj = {"value": total, "relation": "eq"}
            if request.param("rest_total_hits_as_int") == "true":
                total_obj = total_obj["value"]
            hits_body["total"] = total_obj
        hits_body["max_score"] = None if sort_fields or not hits else 1.0
        hits_body["hits"] = hits
        response: dict[str, Any] = {
            "took": int((time.perf_counter() - started) * 1000),
            "timed_out": False,
            "_shards": dict(SHARDS),
            "hits": hits_body,
        }
        if pit is not None:
            response["pit_id"] = self._pit_response_id(pit["id"])
        return Response.json(200, response)

    @staticmethod
    def _fetch_fields(doc: StoredDoc, spec: list[Any]) -> dict[str, list[Any]]:
        from tests.doubles.elastic_query import resolve_path

        out: dict[str, list[Any]] = {}
        patterns = [s["field"] if isinstance(s, dict) else s for s in spec]
        leaves: list[str] = []

        def walk(obj: Any, prefix: str) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(v, prefix + k + ".")
            elif isinstance(obj, list):
                for v in obj:
                    walk(v, prefix)
            else:
                leaves.append(prefix[:-1])

        walk(doc.source, "")
        for leaf in dict.fromkeys(leaves):
            if any(fnmatch.fnmatchcase(leaf, p) for p in patterns):
                values = [v for v in resolve_path(doc.source, leaf) if not isinstance(v, dict)]
                if values:
                    out[leaf] = values
        return out

    @route("GET", "/_count")
    @route("POST", "/_count")
    def _count_all(self, request: RecordedRequest) -> Response:
        return self._count(request, None)

    @route("GET", "/{index}/_count")
    @route("POST", "/{index}/_count")
    def _count(self, request: RecordedRequest, index: str | None) -> Response:
        body = self._json(request) or {}
        unknown = set(body) - {"query"}
        if unknown:
            raise EsError(400, "parsing_exception", f"request does not support [{sorted(unknown)[0]}]")
        targets = self.resolve(index, ignore_unavailable=request.param("ignore_unavailable") == "true")
        lookup = self._field_type_lookup([t.fields for t in targets], [t.objects for t in targets])
        predicate = compile_query(body.get("query"), QueryContext(lookup, int(self.now() * 1000)))
        n = sum(1 for t in targets for d in t.docs.values() if predicate(d))
        return Response.json(200, {"count": n, "_shards": dict(SHARDS)})

    @route("POST", "/{index}/_delete_by_query")
    def _delete_by_query(self, request: RecordedRequest, index: str) -> Response:
        started = time.perf_counter()
        body = self._json(request) or {}
        if "query" not in body:
            raise validation_error("query is missing")
        unknown = set(body) - {"query", "max_docs", "slice"}
        if unknown:
            raise EsError(400, "parsing_exception", f"[delete_by_query] unknown field [{sorted(unknown)[0]}]")
        targets = self.resolve(index, allow_no_indices=request.param("allow_no_indices") != "false")
        lookup = self._field_type_lookup([t.fields for t in targets], [t.objects for t in targets])
        predicate = compile_query(body["query"], QueryContext(lookup, int(self.now() * 1000)))
        limit = body.get("max_docs") or request.param("max_docs")
        deleted = 0
        for idx in targets:
            for doc in [d for d in idx.docs.values() if predicate(d)]:
                if limit is not None and deleted >= int(limit):
                    break
                self._delete(idx, doc.id)
                deleted += 1
        return Response.json(
            200,
            {
                "took": int((time.perf_counter() - started) * 1000),
                "timed_out": False,
                "total": deleted,
                "deleted": deleted,
                "batches": 1 if deleted else 0,
                "version_conflicts": 0,
                "noops": 0,
                "retries": {"bulk": 0, "search": 0},
                "throttled_millis": 0,
                "requests_per_second": -1.0,
                "throttled_until_millis": 0,
                "failures": [],
            },
        )

    # routes: point in time ------------------------------------------------------------------------

    def _purge_pits(self) -> None:
        now = self.now()
        for pid in [p for p, ctx in self._pits.items() if ctx.expires_at <= now]:
            del self._pits[pid]
        self._pit_aliases = {a: p for a, p in self._pit_aliases.items() if p in self._pits}

    def _pit(self, pit_id: str) -> PitContext:
        self._purge_pits()
        real = self._pit_aliases.get(pit_id)
        if real is None:
            try:
                base64.urlsafe_b64decode(pit_id + "=" * (-len(pit_id) % 4))
            except (ValueError, TypeError):
                raise EsError(400, "illegal_argument_exception", "invalid id [" + pit_id + "]") from None
            cause = EsError(
                404,
                "search_context_missing_exception",
                f"No search context found for id [{abs(hash(pit_id)) % 100000}]",
            )
            raise search_phase_error(cause)
        return self._pits[real]

    def _pit_response_id(self, requested: str) -> str:
        real = self._pit_aliases[requested]
        if not self.rotate_pit_ids:
            return real
        new = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        self._pit_aliases[new] = real
        return new

    @route("POST", "/{index}/_pit")
    def _open_pit(self, request: RecordedRequest, index: str) -> Response:
        keep_alive = parse_keep_alive(request.param("keep_alive"))
        targets = self.resolve(
            index,
            ignore_unavailable=request.param("ignore_unavailable") == "true",
            allow_no_indices=request.param("allow_no_indices") != "false",
        )
        fields: dict[str, str] = {}
        objects: set[str] = set()
        for t in targets:
            for path, ftype in t.fields.items():
                fields.setdefault(path, ftype)
            objects |= t.objects
        docs = [d for t in targets for d in t.docs.values()]
        pit_id = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        self._pits[pit_id] = PitContext(
            id=pit_id,
            indices=[t.name for t in targets],
            docs=docs,
            fields=fields,
            objects=objects,
            max_result_window=min((t.max_result_window for t in targets), default=DEFAULT_MAX_RESULT_WINDOW),
            keep_alive_ms=keep_alive,
            expires_at=self.now() + keep_alive / 1000,
        )
        self._pit_aliases[pit_id] = pit_id
        n = len(targets)
        return Response.json(
            200, {"id": pit_id, "_shards": {"total": n, "successful": n, "skipped": 0, "failed": 0}}
        )

    @route("DELETE", "/_pit")
    def _close_pit(self, request: RecordedRequest) -> Response:
        body = self._json(request) or {}
        pit_id = body.get("id")
        if not pit_id:
            raise validation_error("point in time id must be specified")
        self._purge_pits()
        real = self._pit_aliases.get(pit_id)
        if real is None:
            return Response.json(404, {"succeeded": True, "num_freed": 0})
        del self._pits[real]
        self._pit_aliases = {a: p for a, p in self._pit_aliases.items() if p != real}
        return Response.json(200, {"succeeded": True, "num_freed": 1})


class _Answer(Exception):
    """Short-circuit with a ready response (used for non-standard error shapes such as 406)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response
