"""Loopback HTTP plumbing shared by the Elasticsearch and Kibana doubles.

A threaded ``http.server`` speaking HTTP/1.1 with keep-alive (the official clients pool connections),
optional TLS with a throw-away CA (and optional client-certificate check), a request log, and scripted
fault injection. Product behaviour lives in ``elastic_es`` and ``elastic_kibana``; nothing here knows
about Elasticsearch or Kibana beyond the hooks they override.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

JsonBody = Any


# --------------------------------------------------------------------------------------------------
# Requests, responses, log


@dataclass
class RecordedRequest:
    """One request as the double saw it, kept for assertions (headers lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    fault: bool = False
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or a list of objects for NDJSON, or None when empty."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return [json.loads(line) for line in self.body.splitlines() if line.strip()]

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False

    @classmethod
    def json(cls, status: int, payload: JsonBody, headers: Iterable[tuple[str, str]] = ()) -> Response:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, [("Content-Type", "application/json"), *headers])

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Fault:
    """A scripted answer that pre-empts the real handler.

    ``path`` is a regular expression searched in the request path (for Kibana the path includes any
    ``/s/<space>`` prefix); ``method`` None matches any method; ``times`` None means forever.
    ``body`` None produces the product's own error body for ``status``. ``close_connection`` drops
    the socket without answering (a reset as the client sees it); ``delay`` sleeps first.
    """

    status: int = 503
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    retry_after: float | int | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: JsonBody = None
    delay: float = 0.0
    close_connection: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


# --------------------------------------------------------------------------------------------------
# TLS material


@dataclass(frozen=True)
class TlsMaterial:
    """A throw-away CA, a server certificate for localhost/127.0.0.1/::1, and a client certificate."""

    directory: Path
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    client_cert_path: Path
    client_key_path: Path

    @classmethod
    def generate(cls, directory: Path | None = None) -> TlsMaterial:
        """Generate fresh EC P-256 keys (fast) with the ``cryptography`` package."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        directory = Path(directory or tempfile.mkdtemp(prefix="elastic-double-tls-"))
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name("ctibridge test CA"))
            .issuer_name(name("ctibridge test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None):
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(cn))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
                )
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            return key, builder.sign(ca_key, hashes.SHA256())

        server_key, server_cert = leaf(
            "localhost",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ],
        )
        client_key, client_cert = leaf("ctibridge-test-client", ExtendedKeyUsageOID.CLIENT_AUTH, None)

        paths = {
            "ca_path": ("ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM)),
            "server_cert_path": ("server.pem", server_cert.public_bytes(serialization.Encoding.PEM)),
            "server_key_path": ("server.key", pem_key(server_key)),
            "client_cert_path": ("client.pem", client_cert.public_bytes(serialization.Encoding.PEM)),
            "client_key_path": ("client.key", pem_key(client_key)),
        }
        out: dict[str, Path] = {}
        for attr, (filename, data) in paths.items():
            target = directory / filename
            target.write_bytes(data)
            out[attr] = target
        return cls(directory=directory, **out)

    def server_context(self, require_client_cert: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert_path, self.server_key_path)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(self.ca_path))
        return ctx

    def client_context(self, with_client_cert: bool = False) -> ssl.SSLContext:
        """An SSLContext trusting the throw-away CA (handy for httpx ``verify=``)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        if with_client_cert:
            ctx.load_cert_chain(self.client_cert_path, self.client_key_path)
        return ctx


# --------------------------------------------------------------------------------------------------
# Auth


@dataclass
class Credentials:
    """Accepted credentials: API keys (as the encoded ``base64(id:key)`` value) and basic users."""

    api_keys: set[str] = field(default_factory=set)
    basic_users: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def encode_api_key(key_id: str, secret: str) -> str:
        return base64.b64encode(f"{key_id}:{secret}".encode()).decode()

    def add_api_key(self, key: str | tuple[str, str]) -> str:
        encoded = self.encode_api_key(*key) if isinstance(key, tuple) else key
        self.api_keys.add(encoded)
        return encoded

    def check(self, authorization: str | None) -> tuple[str, str | None]:
        """Return (outcome, principal): outcome is ``ok``, ``missing`` or ``invalid``."""
        if not authorization:
            return "missing", None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "apikey":
            if value in self.api_keys:
                try:
                    return "ok", base64.b64decode(value).decode().partition(":")[0]
                except (ValueError, UnicodeDecodeError):
                    return "ok", value
            return "invalid", None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return "invalid", None
            if user in self.basic_users and self.basic_users[user] == password:
                return "ok", user
            return "invalid", None
        return "invalid", None


# --------------------------------------------------------------------------------------------------
# Server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline().split(b";")[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip" and body:
            body = gzip.decompress(body)
        return body

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        request = RecordedRequest(
            method=self.command.upper(),
            path=unquote(split.path) or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=body,
        )
        response = self.server.owner._serve(request)
        if response is None or response.close:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = b"" if request.method == "HEAD" else response.body
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # TLS handshake failures and client resets are expected in tests


class LoopbackServer:
    """Base for a product double: lifecycle, request log, faults, auth bookkeeping.

    Subclasses implement :meth:`handle` (the product) and :meth:`fault_body` (the product's error body).
    Usable as a context manager; ``start()`` binds an ephemeral port on 127.0.0.1.
    """

    product = "generic"

    def __init__(
        self,
        *,
        api_keys: Iterable[str | tuple[str, str]] | None = None,
        basic_users: Mapping[str, str] | None = None,
        tls: TlsMaterial | bool | None = None,
        require_client_cert: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.lock = threading.RLock()
        self.credentials = Credentials(basic_users=dict(basic_users or {}))
        if api_keys is None:
            api_keys = [("ctibridge-test", "s3cr3t-" + self.product)]
        self.api_key = ""
        for key in api_keys:
            encoded = self.credentials.add_api_key(key)
            self.api_key = self.api_key or encoded
        if tls is True:
            tls = TlsMaterial.generate()
        self.tls: TlsMaterial | None = tls or None
        self.require_client_cert = require_client_cert
        self._host = host
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    # lifecycle ------------------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        if self._server is not None:
            return self
        server = _Server((self._host, 0), self)
        if self.tls is not None:
            ctx = self.tls.server_context(self.require_client_cert)
            server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"{self.product}-double",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._conn_lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("double not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = "localhost" if self.tls is not None else self._host
        return f"{scheme}://{host}:{self.port}"

    @property
    def auth_header(self) -> dict[str, str]:
        """``Authorization`` header carrying the default API key, for httpx callers."""
        return {"Authorization": f"ApiKey {self.api_key}"}

    # request log ----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def requests_to(self, path: str | None = None, method: str | None = None) -> list[RecordedRequest]:
        """Logged requests whose path matches the regex ``path`` (searched) and ``method``."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path is None or re.search(path, r.path) is not None)
        ]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return len(self.requests_to(path, method))

    # faults ---------------------------------------------------------------------------------------

    def inject(
        self,
        status: int = 503,
        *,
        path: str | None = None,
        method: str | None = None,
        times: int | None = 1,
        retry_after: float | int | str | None = None,
        headers: Mapping[str, str] | None = None,
        body: JsonBody = None,
        delay: float = 0.0,
        close_connection: bool = False,
    ) -> Fault:
        """Script the next ``times`` matching requests to answer ``status`` (see :class:`Fault`)."""
        fault = Fault(
            status=status,
            method=method,
            path=path,
            times=times,
            retry_after=retry_after,
            headers=dict(headers or {}),
            body=body,
            delay=delay,
            close_connection=close_connection,
        )
        with self.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self.lock:
            return list(self._faults)

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(request.method, request.path):
                    fault.hits += 1
                    return fault
        return None

    # dispatch -------------------------------------------------------------------------------------

    def _serve(self, request: RecordedRequest) -> Response | None:
        with self.lock:
            self._requests.append(request)
        fault = self._take_fault(request)
        if fault is not None:
            request.fault = True
            if fault.delay:
                time.sleep(fault.delay)
            if fault.close_connection:
                request.status = 0
                return None
            response = self.fault_response(fault, request)
        else:
            try:
                with self.lock:
                    response = self.handle(request)
            except Exception as exc:  # a bug in the double must surface as a 500, not a hang
                response = self.internal_error(exc)
        self.decorate(response, request)
        request.status = response.status
        return response

    def fault_response(self, fault: Fault, request: RecordedRequest) -> Response:
        body = fault.body if fault.body is not None else self.fault_body(fault.status, request)
        response = Response.json(fault.status, body)
        if fault.retry_after is not None:
            response.set_header("Retry-After", str(fault.retry_after))
        for name, value in fault.headers.items():
            response.set_header(name, value)
        return response

    # hooks for products ---------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        raise NotImplementedError

    def fault_body(self, status: int, request: RecordedRequest) -> JsonBody:
        return {"status": status}

    def decorate(self, response: Response, request: RecordedRequest) -> None:
        """Add headers every response of the product carries."""

    def internal_error(self, exc: Exception) -> Response:
        return Response.json(500, {"error": f"double bug: {exc!r}", "status": 500})


Route = tuple[str, re.Pattern[str], Callable[..., Response]]


def route(method: str, pattern: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Mark a handler method with (method, path regex); ``{name}`` segments become groups."""
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"

    def mark(fn: Callable[..., Response]) -> Callable[..., Response]:
        fn.__dict__.setdefault("_routes", []).append((method, re.compile(regex)))
        return fn

    return mark


def collect_routes(obj: object) -> list[Route]:
    routes: list[Route] = []
    for name in dir(type(obj)):
        fn = getattr(type(obj), name, None)
        for method, regex in getattr(fn, "_routes", []):
            routes.append((method, regex, getattr(obj, name)))
    # literal segments first so that /_search beats /{index}
    routes.sort(key=lambda r: (r[1].pattern.count("(?P<"), -len(r[1].pattern)))
    return routes


def match_route(
    routes: list[Route], method: str, path: str
) -> tuple[Callable[..., Response] | None, dict[str, str], list[str]]:
    """Return (handler, path params, methods allowed on the path).

    Only routes as specific as the first one matching the path compete, so ``PUT /_search`` is a
    405 rather than an attempt to create an index called ``_search``.
    """
    allowed: list[str] = []
    level: int | None = None
    for verb, regex, fn in routes:
        groups = regex.pattern.count("(?P<")
        if level is not None and groups != level:
            break
        m = regex.match(path)
        if m is None:
            continue
        level = groups
        if verb == method:
            return fn, {k: unquote(v) for k, v in m.groupdict().items()}, allowed
        allowed.append(verb)
    return None, {}, allowed
