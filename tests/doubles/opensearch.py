"""OpenSearch test double on loopback, with Wazuh 4.x alert-index semantics.

Driven by the real opensearch-py client: basic auth, ``GET /`` info, ``_search`` and ``_count`` over
index patterns, evaluated by ``opensearch_query`` (which refuses anything it does not implement).
Faults can be scripted (429/503 with Retry-After) and every request is logged for assertions.

Usage::

    with OpenSearchDouble() as os_double:
        os_double.add_documents("wazuh-alerts-4.x-2024.05.11", alerts)
        client = OpenSearch(os_double.url, http_auth=os_double.auth)
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import json
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.doubles.elastic_http import TlsMaterial
from tests.doubles.opensearch_query import (
    Compiler,
    Doc,
    Mapping_,
    QueryError,
    coerce_after,
    compare,
    filter_source,
    index_document,
    parse_sort,
    run_aggregations,
    sort_in_place,
    sort_value_list,
)

MAX_RESULT_WINDOW = 10_000
DEFAULT_TRACK_TOTAL_HITS = 10_000
SHARDS_PER_INDEX = 3  # the Wazuh template's number_of_shards

_SEARCH_BODY_KEYS = {
    "query",
    "size",
    "from",
    "sort",
    "search_after",
    "track_total_hits",
    "_source",
    "aggs",
    "aggregations",
    "timeout",
    "track_scores",
}
_SEARCH_PARAMS = {
    "size",
    "from",
    "track_total_hits",
    "_source",
    "_source_includes",
    "_source_excludes",
    "rest_total_hits_as_int",
    "ignore_unavailable",
    "allow_no_indices",
    "expand_wildcards",
    "timeout",
    "request_timeout",
    "typed_keys",
    "sort",
    "q",
}


@dataclass
class RecordedRequest:
    """One request as the double saw it (headers lower-cased, JSON body decoded when possible)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Fault:
    """A scripted failure: answer ``status`` for the next ``times`` requests whose path contains ``path``."""

    status: int
    times: int = 1
    retry_after: int | None = None
    path: str = ""
    body: Any = None


@dataclass
class _Index:
    name: str
    mapping: Mapping_ = field(default_factory=Mapping_)
    docs: dict[str, Doc] = field(default_factory=dict)


class OpenSearchDouble:
    """Context manager serving an in-memory OpenSearch 2.x on ``127.0.0.1:<ephemeral>``."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        version: str = "2.19.1",
        now_millis: int | None = None,
        tls: TlsMaterial | bool | None = None,
        require_client_cert: bool = False,
    ) -> None:
        """``tls=True`` serves HTTPS with a throw-away CA (``self.tls``); ``require_client_cert``: mTLS."""
        self.tls: TlsMaterial | None = TlsMaterial.generate() if tls is True else (tls or None)
        self.require_client_cert = require_client_cert
        self.users = dict(users if users is not None else {"admin": "admin-secret"})
        self.version = version
        self.now_millis = now_millis  # fixed clock for `now` date math; None = wall clock
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._indices: dict[str, _Index] = {}
        self._seq = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def __enter__(self) -> OpenSearchDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        double = self

        class Handler(_Handler):
            owner = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            context = self.tls.server_context(self.require_client_cert)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="opensearch-double", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server, "double not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        """The first configured user's credentials, for ``http_auth=``."""
        return next(iter(self.users.items()))

    # -- data
    def add_documents(
        self, index: str, documents: Iterable[Mapping[str, Any]], ids: Iterable[str] | None = None
    ) -> list[str]:
        """Index documents (ids generated when absent); values are typed by the Wazuh mapping."""
        with self._lock:
            target = self._indices.setdefault(index, _Index(index))
            id_iter = iter(ids) if ids is not None else None
            created = []
            for source in documents:
                self._seq += 1
                doc_id = str(next(id_iter)) if id_iter is not None else f"doc-{self._seq:08d}"
                doc = Doc(index, doc_id, json.loads(json.dumps(source)), self._seq)
                index_document(doc, target.mapping)
                target.docs[doc_id] = doc
                created.append(doc_id)
            return created

    def create_index(self, index: str) -> None:
        with self._lock:
            self._indices.setdefault(index, _Index(index))

    def delete_index(self, index: str) -> None:
        with self._lock:
            self._indices.pop(index, None)

    def indices(self) -> list[str]:
        return sorted(self._indices)

    def fail(
        self, status: int, *, times: int = 1, retry_after: int | None = None, path: str = "", body: Any = None
    ) -> None:
        """Script ``times`` failures with ``status`` for requests whose path contains ``path``."""
        with self._lock:
            self.faults.append(Fault(status, times, retry_after, path, body))

    def searches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/_search")]

    # -- request handling (called from server threads)
    def _resolve(self, expression: str, ignore_unavailable: bool, allow_no_indices: bool) -> list[_Index]:
        names: list[str] = []
        for part in unquote(expression or "_all").split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith("-"):
                names = [n for n in names if not fnmatch.fnmatchcase(n, part[1:])]
                continue
            if part in ("_all", "*"):
                matched = sorted(self._indices)
            elif "*" in part:
                matched = sorted(n for n in self._indices if fnmatch.fnmatchcase(n, part))
            elif part in self._indices:
                matched = [part]
            elif ignore_unavailable:
                matched = []
            else:
                raise QueryError(
                    404,
                    "index_not_found_exception",
                    f"no such index [{part}]",
                    index=part,
                    **{"resource.type": "index_or_alias", "resource.id": part, "index_uuid": "_na_"},
                )
            names += [n for n in matched if n not in names]
        if not names and not allow_no_indices:
            raise QueryError(404, "index_not_found_exception", f"no such index [{expression}]")
        return [self._indices[n] for n in names]

    def search(self, index: str, body: Mapping[str, Any] | None, params: Mapping[str, str]) -> dict[str, Any]:
        """Evaluate one ``_search`` request (what the HTTP handler calls)."""
        started = time.perf_counter()
        body = dict(body or {})
        unknown = set(params) - _SEARCH_PARAMS
        if unknown:
            raise QueryError(
                400,
                "illegal_argument_exception",
                f"request [/{index}/_search] contains unrecognized parameter: [{sorted(unknown)[0]}]",
            )
        if "q" in params:
            raise QueryError(
                400, "parsing_exception", "unsupported query: URI search (q=) is not implemented"
            )
        extra = set(body) - _SEARCH_BODY_KEYS
        if extra:
            raise QueryError(
                400, "parsing_exception", f"Unknown key for a START_OBJECT in [{sorted(extra)[0]}]."
            )
        for key in ("size", "from", "track_total_hits"):
            if key in params:
                body[key] = _param_value(params[key])
        if "sort" in params:
            body["sort"] = params["sort"].split(",")
        if "_source" in params:
            body["_source"] = _param_value(params["_source"])
        if "_source_includes" in params or "_source_excludes" in params:
            body["_source"] = {
                "includes": _split(params.get("_source_includes")),
                "excludes": _split(params.get("_source_excludes")),
            }
        with self._lock:
            targets = self._resolve(
                index,
                _truthy(params.get("ignore_unavailable")),
                _truthy(params.get("allow_no_indices", "true")),
            )
            mapping = Mapping_()
            for target in targets:
                mapping = mapping.merged(target.mapping)
            docs = [d for t in targets for d in t.docs.values()]
        compiler = Compiler(
            mapping, self.now_millis if self.now_millis is not None else int(time.time() * 1000)
        )
        predicate = compiler.compile(body.get("query"))
        matched = [d for d in docs if predicate(d)]

        size, offset = int(body.get("size", 10)), int(body.get("from", 0))
        if size < 0 or offset < 0:
            raise QueryError(400, "illegal_argument_exception", "[from] and [size] must be non-negative")
        search_after = body.get("search_after")
        if offset + size > MAX_RESULT_WINDOW:
            raise QueryError(
                400,
                "illegal_argument_exception",
                f"Result window is too large, from + size must be less than or equal to: "
                f"[{MAX_RESULT_WINDOW}] but was [{offset + size}]. See the scroll api for a more "
                f"efficient way to request large data sets.",
            )
        specs = parse_sort(body["sort"], mapping) if body.get("sort") else []
        scored = not specs or any(s.ftype == "score" for s in specs) or bool(body.get("track_scores"))
        keyed = [(sort_value_list(d, specs), d) for d in matched]
        keyed.sort(key=lambda item: item[1].seq)
        sort_in_place(keyed, specs)
        if search_after is not None:
            if not specs:
                raise QueryError(400, "illegal_argument_exception", "Sort must contain at least one field.")
            if not isinstance(search_after, list) or len(search_after) != len(specs):
                raise QueryError(
                    400,
                    "illegal_argument_exception",
                    f"search_after has {len(search_after or [])} value(s) but sort has {len(specs)}.",
                )
            if offset > 0:
                raise QueryError(
                    400,
                    "illegal_argument_exception",
                    "`from` parameter must be set to 0 when `search_after` is used.",
                )
            after = [coerce_after(v, s) for v, s in zip(search_after, specs, strict=True)]
            keyed = [item for item in keyed if compare(item[0], after, specs) > 0]
        page = keyed[offset : offset + size]
        hits = []
        for values, doc in page:
            hit: dict[str, Any] = {"_index": doc.index, "_id": doc.id, "_score": 1.0 if scored else None}
            source = filter_source(doc.source, body.get("_source"))
            if source is not None:
                hit["_source"] = source
            if specs:
                hit["sort"] = values
            hits.append(hit)
        response: dict[str, Any] = {
            "took": max(1, int((time.perf_counter() - started) * 1000)),
            "timed_out": False,
            "_shards": {
                "total": SHARDS_PER_INDEX * len(targets),
                "successful": SHARDS_PER_INDEX * len(targets),
                "skipped": 0,
                "failed": 0,
            },
            "hits": {"max_score": (1.0 if matched else None) if scored else None, "hits": hits},
        }
        total = _total(len(matched), body.get("track_total_hits", DEFAULT_TRACK_TOTAL_HITS))
        if total is not None:
            rest_int = _truthy(params.get("rest_total_hits_as_int"))
            response["hits"] = {"total": total["value"] if rest_int else total, **response["hits"]}
        aggs = body.get("aggs", body.get("aggregations"))
        if aggs:
            response["aggregations"] = run_aggregations(aggs, matched, mapping)
        return response

    def count(self, index: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        body = dict(body or {})
        if set(body) - {"query"}:
            raise QueryError(400, "parsing_exception", f"request does not support [{sorted(set(body))[0]}]")
        with self._lock:
            targets = self._resolve(index, False, True)
            mapping = Mapping_()
            for target in targets:
                mapping = mapping.merged(target.mapping)
            docs = [d for t in targets for d in t.docs.values()]
        predicate = Compiler(mapping).compile(body.get("query"))
        shards = SHARDS_PER_INDEX * len(targets)
        return {
            "count": sum(1 for d in docs if predicate(d)),
            "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0},
        }

    def info(self) -> dict[str, Any]:
        return {
            "name": "opensearch-double",
            "cluster_name": "wazuh-indexer-double",
            "cluster_uuid": "double-0000",
            "version": {
                "distribution": "opensearch",
                "number": self.version,
                "build_type": "tar",
                "lucene_version": "9.12.1",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/",
        }

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path in path:
                    fault.times -= 1
                    return fault
        return None

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return self.users.get(user) == password


def _total(count: int, track: Any) -> dict[str, Any] | None:
    if track is False:
        return None
    if track is True:
        return {"value": count, "relation": "eq"}
    cap = int(track)
    if cap == -1:
        return None
    if cap < 0:
        raise QueryError(
            400,
            "illegal_argument_exception",
            "[track_total_hits] parameter must be positive or equals to -1, got " + str(cap),
        )
    return {"value": min(count, cap), "relation": "eq" if count <= cap else "gte"}


def _param_value(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        return _split(value) if "," in value else value


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _truthy(value: str | None) -> bool:
    return str(value).lower() in ("true", "1", "") if value is not None else False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: avoid 40 ms delayed-ACK stalls
    owner: OpenSearchDouble

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):  # handshake here, not in the accept loop
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if raw and (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            raw = gzip.decompress(raw)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        record = RecordedRequest(
            self.command, parts.path, params, {k.lower(): v for k, v in self.headers.items()}, body
        )
        self.owner.requests.append(record)
        status, payload, headers = self._dispatch(parts.path, params, body)
        record.status = status
        self._send(status, payload, headers)

    def _dispatch(self, path: str, params: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        owner = self.owner
        if not owner._authorized(self.headers.get("Authorization")):
            return 401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="OpenSearch Security"'}
        fault = owner._take_fault(path)
        if fault:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, fault.body if fault.body is not None else _fault_body(fault.status), headers
        segments = [s for s in path.split("/") if s]
        try:
            if body is not None and not isinstance(body, dict):
                raise QueryError(400, "parsing_exception", "request body is not a JSON object")
            if not segments and self.command in ("GET", "HEAD"):
                return 200, owner.info(), {}
            if (
                segments
                and segments[-1] == "_search"
                and self.command in ("GET", "POST")
                and len(segments) <= 2
            ):
                return 200, owner.search(segments[0] if len(segments) == 2 else "_all", body, params), {}
            if (
                segments
                and segments[-1] == "_count"
                and self.command in ("GET", "POST")
                and len(segments) <= 2
            ):
                return 200, owner.count(segments[0] if len(segments) == 2 else "_all", body), {}
            raise QueryError(
                400,
                "parsing_exception",
                f"unsupported query: endpoint [{self.command} {path}] is not implemented by the double",
            )
        except QueryError as exc:
            return exc.status, exc.body(), {}

    def _send(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=UTF-8"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json; charset=UTF-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        cause = {
            "type": "es_rejected_execution_exception",
            "reason": "rejected execution of search on the search thread pool (queue capacity 1000)",
        }
    elif status == 503:
        cause = {
            "type": "cluster_block_exception",
            "reason": "blocked by: [SERVICE_UNAVAILABLE/2/no cluster-manager];",
        }
    else:
        cause = {"type": "exception", "reason": f"scripted fault {status}"}
    return {"error": {"root_cause": [cause], **cause}, "status": status}
