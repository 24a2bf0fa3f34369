"""A loopback stand-in for Microsoft Entra ID (login) and Microsoft Graph security incidents.

One HTTPS server plays both hosts: `login_url` answers OpenID discovery, instance discovery and the v2.0
client-credentials token endpoint; `graph_url` answers `GET /v1.0/security/incidents[/{id}]` the way the
Graph v1.0 metadata and the docs describe it (see /work/shared/reference/microsoft.md).

Why HTTPS: msal refuses any authority that is not `https://` (`msal.authority.canonicalize`), so the
double generates a throw-away CA and a leaf certificate for 127.0.0.1/localhost at start; `ca_path` is
the PEM to trust, `ssl_context()` an `ssl.SSLContext` for httpx, `requests_session()` an msal
`http_client` that trusts it. msal's own `verify=ca_path` works only when REQUESTS_CA_BUNDLE and
CURL_CA_BUNDLE are unset: requests lets those override a session's `verify` (psf/requests#3829).

What the connector must pass to msal (no network calls leave the loopback):

    msal.ConfidentialClientApplication(client_id, client_credential=secret,
        authority=f"{double.login_url}/{double.tenant}", http_client=double.requests_session(),
        instance_discovery=False)            # or validate_authority=False; see `msal_app()`

Without either flag msal asks https://login.microsoftonline.com/common/discovery/instance first (the
double serves `/common/discovery/instance` too, but msal's public API cannot be pointed at it).
Tokens expired on the server (`expire_tokens`) stay in msal's cache: on a 401 the connector must call
`app.remove_tokens_for_client()` (or keep its own token) before `acquire_token_for_client` again.
A 4xx from the token endpoint comes back from msal as an error dict; a 5xx/429 raises
`msal.exceptions.MsalServiceError`. The token endpoint accepts the scopes `{graph_url}/.default` and
`https://graph.microsoft.com/.default` (`extra_scopes`).

Test controls: `inject(route, status, times=, retry_after=, after=, body=)` scripts faults per route
(token, openid, discovery, incidents, incident, `*`); `throttle(route, limit, per_seconds)` is a sliding
window rate limit answering 429 + Retry-After; `requests` / `requests_to(route)` is the request log;
`expire_tokens()` invalidates every issued token; `pascal_enums = True` serves docs-style spellings;
`add_incidents` / `update_incident` / `clear_incidents` change the data (see the fixtures module).
`GraphDouble(require_client_cert=True)` accepts only TLS clients presenting `client_cert_path` /
`client_key_path` (signed by `ca_path`); `ssl_context()` and `requests_session()` then present it.

Contract rules enforced (each a 4xx, so a sloppy client fails in tests rather than in production):
`Authorization: Bearer <live token>` (no `Bearer` -> 401); unknown or repeated `$` options -> 400;
`$filter` only on the documented filterable properties, with `eq ne gt ge lt le` joined by `and`,
DateTimeOffset literals unquoted and fully qualified (a raw `+00:00` turned into a space -> 400);
`$orderby` only on incident properties, `asc|desc`; `$expand` only `alerts`; `$top` >= 1, capped at
`max_top` (50, Defender's documented page cap; Graph v1.0 states none, unverified); evolvable enum
members (after `unknownFutureValue`) served as `unknownFutureValue` unless
`Prefer: include-unknown-enum-members`.
Paging uses `$skip` in an absolute `@odata.nextLink`; the default order (no `$orderby`) is newest
`createdDateTime` first, ties broken by id.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import json
import math
import re
import secrets
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_TENANT = "8f0b4c38-5d43-4a0e-9c37-6ef2a1d1c0de"
DEFAULT_CLIENT_ID = "3c1f9e7a-0b6d-4f1e-8a52-2d9c7e4b5a10"
DEFAULT_CLIENT_SECRET = "s3cr3t~double"

FILTERABLE = {
    "assignedTo": "string",
    "classification": "enum",
    "createdDateTime": "datetime",
    "determination": "enum",
    "lastUpdateDateTime": "datetime",
    "severity": "enum",
    "status": "enum",
}
SORTABLE = set(FILTERABLE) | {"id", "displayName"}
QUERY_OPTIONS = {"$filter", "$orderby", "$expand", "$top", "$skip", "$count", "$select"}

# Enum members from the v1.0 CSDL; the ones after unknownFutureValue are evolvable additions.
ENUMS: dict[str, list[str]] = {
    "alertSeverity": ["unknown", "informational", "low", "medium", "high", "unknownFutureValue"],
    "incidentStatus": [
        "active",
        "resolved",
        "inProgress",
        "redirected",
        "unknownFutureValue",
        "awaitingAction",
    ],
    "alertStatus": ["unknown", "new", "inProgress", "resolved", "unknownFutureValue"],
    "alertClassification": [
        "unknown",
        "falsePositive",
        "truePositive",
        "informationalExpectedActivity",
        "unknownFutureValue",
    ],
    "alertDetermination": [
        "unknown",
        "apt",
        "malware",
        "securityPersonnel",
        "securityTesting",
        "unwantedSoftware",
        "other",
        "multiStagedAttack",
        "compromisedAccount",
        "phishing",
        "maliciousUserActivity",
        "notMalicious",
        "notEnoughDataToValidate",
        "confirmedActivity",
        "lineOfBusinessApplication",
        "unknownFutureValue",
    ],
    "serviceSource": [
        "unknown",
        "microsoftDefenderForEndpoint",
        "microsoftDefenderForIdentity",
        "microsoftDefenderForCloudApps",
        "microsoftDefenderForOffice365",
        "microsoft365Defender",
        "azureAdIdentityProtection",
        "microsoftAppGovernance",
        "dataLossPrevention",
        "unknownFutureValue",
        "microsoftDefenderForCloud",
        "microsoftSentinel",
        "microsoftInsiderRiskManagement",
        "microsoftThreatIntelligence",
        "microsoftSecurityForAI",
    ],
    "detectionSource": [
        "unknown",
        "microsoftDefenderForEndpoint",
        "antivirus",
        "smartScreen",
        "customTi",
        "microsoftDefenderForOffice365",
        "automatedInvestigation",
        "microsoftThreatExperts",
        "customDetection",
        "microsoftDefenderForIdentity",
        "cloudAppSecurity",
        "microsoft365Defender",
        "azureAdIdentityProtection",
        "manual",
        "microsoftDataLossPrevention",
        "appGovernancePolicy",
        "appGovernanceDetection",
        "unknownFutureValue",
        "microsoftDefenderForCloud",
        "microsoftDefenderForIoT",
        "microsoftDefenderForServers",
        "microsoftDefenderForStorage",
        "microsoftDefenderForDNS",
        "microsoftDefenderForDatabases",
        "microsoftDefenderForContainers",
        "microsoftDefenderForNetwork",
        "microsoftDefenderForAppService",
        "microsoftDefenderForKeyVault",
        "microsoftDefenderForResourceManager",
        "microsoftDefenderForApiManagement",
        "nrtAlerts",
        "scheduledAlerts",
        "microsoftDefenderThreatIntelligenceAnalytics",
        "builtInMl",
        "microsoftInsiderRiskManagement",
        "microsoftThreatIntelligence",
        "microsoftDefenderForAIServices",
        "securityCopilot",
        "microsoftSentinel",
    ],
    "evidenceVerdict": ["unknown", "suspicious", "malicious", "noThreatsFound", "unknownFutureValue"],
    "evidenceRole": [
        "unknown",
        "contextual",
        "scanned",
        "source",
        "destination",
        "created",
        "added",
        "compromised",
        "edited",
        "attacked",
        "attacker",
        "commandAndControl",
        "loaded",
        "suspicious",
        "policyViolator",
        "unknownFutureValue",
    ],
    "evidenceRemediationStatus": [
        "none",
        "remediated",
        "prevented",
        "blocked",
        "notFound",
        "unknownFutureValue",
        "active",
        "pendingApproval",
        "declined",
        "unremediated",
        "running",
        "partiallyRemediated",
    ],
}
INCIDENT_ENUMS = {
    "severity": "alertSeverity",
    "status": "incidentStatus",
    "classification": "alertClassification",
    "determination": "alertDetermination",
}
ALERT_ENUMS = {
    **INCIDENT_ENUMS,
    "status": "alertStatus",
    "serviceSource": "serviceSource",
    "detectionSource": "detectionSource",
}
EVIDENCE_ENUMS = {
    "verdict": "evidenceVerdict",
    "roles": "evidenceRole",
    "remediationStatus": "evidenceRemediationStatus",
}
_EVOLVABLE = {
    name: {m.lower() for m in members[members.index("unknownFutureValue") + 1 :]}
    for name, members in ENUMS.items()
}

_DT_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})$")
_CLAUSE_RE = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le)\s+(.+?)\s*$", re.IGNORECASE)


def to_ticks(value: str) -> int:
    """ISO-8601 -> 100 ns ticks since the epoch, exact for Graph's 7 fractional digits (datetime is not)."""
    m = _DT_RE.match(value)
    if not m:
        raise ValueError(f"not an ISO-8601 DateTimeOffset: {value!r}")
    base, frac, zone = m.groups()
    parsed = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(parsed.timestamp()) * 10_000_000 + int((frac or "0").ljust(7, "0"))


def pascal(value: str) -> str:
    """Docs-style spelling of an enum member (`truePositive` -> `TruePositive`)."""
    return value[:1].upper() + value[1:]


class ODataError(Exception):
    """A Graph-shaped error response."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }


@dataclass
class Fault:
    """A scripted failure: the next `times` requests to `route` (after skipping `after`) get `status`."""

    route: str
    status: int
    times: int = 1
    retry_after: float | int | None = None
    after: int = 0
    body: Any = None


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the double saw it, for assertions (`route` is token/openid/incidents/...)."""

    method: str
    route: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    form: Mapping[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def params(self) -> dict[str, str]:
        return dict(self.query)


def _make_tls(directory: Path) -> dict[str, Path]:
    """A CA, a leaf for 127.0.0.1/localhost (msal's https-only rule holds on loopback) and a client leaf."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctibridge graph double CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
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

    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    server_key, server = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_key, client = leaf("ctibridge graph double client", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    pem = serialization.Encoding.PEM

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    files = {
        "ca": ("ca.pem", ca.public_bytes(pem)),
        "server_cert": ("server.pem", server.public_bytes(pem)),
        "server_key": ("server.key", key_pem(server_key)),
        "client_cert": ("client.pem", client.public_bytes(pem)),
        "client_key": ("client.key", key_pem(client_key)),
    }
    out: dict[str, Path] = {}
    for name, (filename, data) in files.items():
        out[name] = directory / filename
        out[name].write_bytes(data)
    return out


class GraphDouble:
    """Entra ID + Graph security incidents on 127.0.0.1:<ephemeral>; use as a context manager."""

    def __init__(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: int = 3599,
        max_top: int = 50,
        pascal_enums: bool = False,
        tls: bool = True,
        require_client_cert: bool = False,
    ) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.token_lifetime = token_lifetime
        self.max_top = max_top  # Defender's documented page cap; Graph v1.0 states none (unverified).
        self.pascal_enums = pascal_enums
        self.tls = tls
        self.require_client_cert = require_client_cert  # mTLS: only clients with `client_cert_path` get in
        self._lock = threading.RLock()
        self._incidents: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, float] = {}  # token -> expiry (time.monotonic)
        self._faults: list[Fault] = []
        self._limits: dict[str, tuple[int, float, int | None, list[float]]] = {}
        self._log: list[LoggedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_path: str | None = None
        self.client_cert_path: str | None = None  # signed by `ca_path`, for `require_client_cert`
        self.client_key_path: str | None = None
        self.extra_scopes: set[str] = {GRAPH_SCOPE}

    # lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> GraphDouble:
        """Bind an ephemeral port, create the TLS material and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="graph-double-")
            files = _make_tls(Path(self._tmp.name))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(files["server_cert"], files["server_key"])
            if self.require_client_cert:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cafile=str(files["ca"]))
            # The handshake runs in the connection's own thread (`_Handler.setup`), not in the accept
            # loop: there one slow or silent peer held up every other connection.
            self._server.socket = ctx.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.ca_path = str(files["ca"])
            self.client_cert_path, self.client_key_path = str(files["client_cert"]), str(files["client_key"])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="graph-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> GraphDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "double not started"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_address[1]}"

    login_url = base_url
    graph_url = base_url

    @property
    def authority(self) -> str:
        return f"{self.login_url}/{self.tenant}"

    @property
    def scope(self) -> str:
        """The scope a connector configured with `graph_url` would ask for."""
        return f"{self.graph_url}/.default"

    @property
    def incidents_url(self) -> str:
        return f"{self.graph_url}/v1.0/security/incidents"

    def requests_session(self) -> Any:
        """A requests.Session for msal's `http_client=` that trusts the double's CA.

        `verify` is bound per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a
        session-level `verify` (psf/requests#3829, #4726), which silently defeats msal's `verify=`.
        """
        import requests

        session = requests.Session()
        options: dict[str, Any] = {"verify": self.ca_path or True}
        if self.require_client_cert:
            options["cert"] = (self.client_cert_path, self.client_key_path)
        session.request = functools.partial(session.request, **options)  # type: ignore[method-assign]
        return session

    def msal_app(self, *, client_secret: str | None = None, **kwargs: Any) -> Any:
        """The ConfidentialClientApplication a connector would build against this double."""
        import msal

        kwargs.setdefault("http_client", self.requests_session())
        kwargs.setdefault("instance_discovery", False)
        return msal.ConfidentialClientApplication(
            self.client_id,
            client_credential=self.client_secret if client_secret is None else client_secret,
            authority=self.authority,
            **kwargs,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """Client context trusting the double's CA (httpx: `verify=double.ssl_context()`), with the
        client certificate when the double requires one."""
        ctx = ssl.create_default_context(cafile=self.ca_path)
        if self.require_client_cert and self.client_cert_path:
            ctx.load_cert_chain(self.client_cert_path, self.client_key_path)
        return ctx

    # data -----------------------------------------------------------------------------------------------
    def add_incidents(self, incidents: Iterable[Mapping[str, Any]]) -> None:
        """Store incidents (with their `alerts`) as served; a same id replaces the earlier one."""
        with self._lock:
            for inc in incidents:
                self._incidents[str(inc["id"])] = _copy(inc)

    def update_incident(self, incident_id: str, **changes: Any) -> dict[str, Any]:
        """Change an incident; `lastUpdateDateTime` moves to now unless given (so `ge` filters see it)."""
        with self._lock:
            inc = self._incidents[incident_id]
            changes.setdefault("lastUpdateDateTime", now_graph())
            inc.update(changes)
            return _copy(inc)

    def clear_incidents(self) -> None:
        with self._lock:
            self._incidents.clear()

    @property
    def incidents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_copy(i) for i in self._incidents.values()]

    # faults, tokens, log ------------------------------------------------------------------------------
    def inject(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | int | None = None,
        after: int = 0,
        body: Any = None,
    ) -> Fault:
        """Script `status` for `route` (token, openid, discovery, incidents, incident, or `*`)."""
        fault = Fault(route, status, times, retry_after, after, body)
        with self._lock:
            self._faults.append(fault)
        return fault

    def throttle(self, route: str, limit: int, per_seconds: float, *, retry_after: int | None = None) -> None:
        """Rate-limit `route` like Graph: past `limit` requests in a sliding window, 429 + Retry-After.

        Retry-After defaults to the whole seconds until the window frees a slot (at least 1).
        `limit=0` removes the limit.
        """
        with self._lock:
            if limit <= 0:
                self._limits.pop(route, None)
            else:
                self._limits[route] = (limit, per_seconds, retry_after, [])

    def _throttled(self, route: str) -> float | None:
        with self._lock:
            entry = self._limits.get(route)
            if entry is None:
                return None
            limit, window, retry_after, seen = entry
            now = time.monotonic()
            seen[:] = [t for t in seen if t > now - window]
            if len(seen) >= limit:
                return retry_after if retry_after is not None else max(1, math.ceil(seen[0] + window - now))
            seen.append(now)
            return None

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_tokens(self) -> None:
        """Expire every token issued so far, so the next Graph call gets 401 and must re-authenticate."""
        with self._lock:
            for tok in self._tokens:
                self._tokens[tok] = 0.0

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, route: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.route == route]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # internals used by the handler -------------------------------------------------------------------
    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.route not in (route, "*"):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _issue_token(self) -> str:
        tok = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[tok] = time.monotonic() + self.token_lifetime
        return tok

    def _check_bearer(self, header: str | None) -> None:
        if not header:
            raise ODataError(401, "InvalidAuthenticationToken", "Access token is empty.")
        scheme, _, tok = header.partition(" ")
        if scheme.lower() != "bearer" or not tok:
            raise ODataError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        with self._lock:
            expiry = self._tokens.get(tok.strip())
        if expiry is None:
            raise ODataError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if expiry <= time.monotonic():
            raise ODataError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )

    def _list(self, params: list[tuple[str, str]], prefer: str) -> dict[str, Any]:
        opts = _query_options(params)
        clauses = _parse_filter(opts["$filter"]) if "$filter" in opts else []
        order = _parse_orderby(opts.get("$orderby"))
        expand = _parse_expand(opts.get("$expand"))
        top = _int_option(opts, "$top", self.max_top, 1)
        skip = _int_option(opts, "$skip", 0, 0)
        page_size = min(top, self.max_top) if top else self.max_top
        count = opts.get("$count", "false").lower()
        if count not in ("true", "false"):
            raise ODataError(400, "BadRequest", f"'{opts['$count']}' is not a valid count option.")
        select = [s.strip() for s in opts["$select"].split(",")] if "$select" in opts else None
        with self._lock:
            items = [inc for inc in self._incidents.values() if all(c(inc) for c in clauses)]
            items = _sort(items, order)
            page = [self._render(inc, expand, prefer, select) for inc in items[skip : skip + page_size]]
        body: dict[str, Any] = {"@odata.context": f"{self.graph_url}/v1.0/$metadata#security/incidents"}
        if count == "true":
            body["@odata.count"] = len(items)
        body["value"] = page
        if skip + page_size < len(items):
            nxt = [(k, v) for k, v in params if k.lower() not in ("$skip", "$top", "skip", "top")]
            nxt += [("$top", str(page_size)), ("$skip", str(skip + page_size))]
            body["@odata.nextLink"] = f"{self.incidents_url}?" + "&".join(
                quote(k, safe="$") + "=" + quote(v, safe=":'(),") for k, v in nxt
            )
        return body

    def _get(self, incident_id: str, params: list[tuple[str, str]], prefer: str) -> dict[str, Any]:
        opts = _query_options(params, allowed={"$expand", "$select"})
        expand = _parse_expand(opts.get("$expand"))
        select = [s.strip() for s in opts["$select"].split(",")] if "$select" in opts else None
        with self._lock:
            inc = self._incidents.get(incident_id)
            if inc is None:
                raise ODataError(404, "NotFound", f"Incident {incident_id} was not found.")
            body = self._render(inc, expand, prefer, select)
        return {"@odata.context": f"{self.graph_url}/v1.0/$metadata#security/incidents/$entity", **body}

    def _render(
        self,
        inc: dict[str, Any],
        expand: bool,
        prefer: str,
        select: list[str] | None,
    ) -> dict[str, Any]:
        unknown_members = "include-unknown-enum-members" in prefer.lower()
        out = _copy(inc)
        alerts = out.pop("alerts", [])
        if select is not None:
            out = {k: v for k, v in out.items() if k in select or k == "id"}
        self._enums(out, INCIDENT_ENUMS, unknown_members)
        if expand:
            for alert in alerts:
                self._enums(alert, ALERT_ENUMS, unknown_members)
                for ev in alert.get("evidence") or []:
                    self._evidence_enums(ev, unknown_members)
            out["alerts"] = alerts
            out["alerts@odata.context"] = (
                f"{self.graph_url}/v1.0/$metadata#security/incidents('{inc['id']}')/alerts"
            )
        return out

    def _evidence_enums(self, ev: dict[str, Any], unknown_members: bool) -> None:
        self._enums(ev, EVIDENCE_ENUMS, unknown_members)
        for value in ev.values():
            nested = value if isinstance(value, list) else [value]
            for item in nested:
                if isinstance(item, dict) and "@odata.type" in item:
                    self._evidence_enums(item, unknown_members)

    def _enums(self, obj: dict[str, Any], fields: Mapping[str, str], unknown_members: bool) -> None:
        for name, enum in fields.items():
            if name not in obj or obj[name] is None:
                continue
            val = obj[name]
            obj[name] = (
                [self._enum(v, enum, unknown_members) for v in val]
                if isinstance(val, list)
                else (self._enum(val, enum, unknown_members))
            )

    def _enum(self, value: Any, enum: str, unknown_members: bool) -> Any:
        if not isinstance(value, str):
            return value
        if not unknown_members and value.lower() in _EVOLVABLE[enum]:
            value = "unknownFutureValue"
        return pascal(value) if self.pascal_enums else value


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Deep copy of JSON data; a JSON round trip is several times faster than copy.deepcopy."""
    return json.loads(json.dumps(obj))


def now_graph() -> str:
    """Now in Graph's wire format (7 fractional digits, `Z`)."""
    ns = time.time_ns()
    stamp = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{(ns // 100) % 10_000_000:07d}Z"


def _query_options(params: list[tuple[str, str]], allowed: set[str] = QUERY_OPTIONS) -> dict[str, str]:
    """Graph accepts options with or without `$`; unknown `$` options and repeats are 400s."""
    opts: dict[str, str] = {}
    for key, value in params:
        name = key if key.startswith("$") else f"${key}"
        if name.lower() not in {a.lower() for a in allowed}:
            if key.startswith("$"):
                raise ODataError(400, "BadRequest", f"Query option '{key}' is not allowed.")
            continue  # plain parameters (e.g. api-version) are ignored, as Graph does
        name = name.lower() if name.lower() != "$orderby" else "$orderby"
        if name in opts:
            raise ODataError(400, "BadRequest", f"Query option '{key}' was specified more than once.")
        opts[name] = value
    return opts


def _int_option(opts: dict[str, str], name: str, default: int, minimum: int) -> int:
    if name not in opts:
        return default
    try:
        value = int(opts[name])
    except ValueError:
        raise ODataError(
            400, "BadRequest", f"Invalid value '{opts[name]}' for query option '{name}'."
        ) from None
    if value < minimum:
        raise ODataError(400, "BadRequest", f"Invalid value '{value}' for query option '{name}'.")
    return value


def _parse_filter(text: str) -> list[Any]:
    """`prop op literal [and ...]`; types checked as Graph does, `or`/functions not modelled."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if not text:
        raise ODataError(400, "BadRequest", "Invalid filter clause: the filter is empty.")
    bare = re.sub(r"'(?:[^']|'')*'", "''", text)  # ignore keywords inside string literals
    if re.search(r"\s(or|not)\s|\w+\(", bare, flags=re.IGNORECASE):
        raise ODataError(400, "BadRequest", "Invalid filter clause: only 'and' of comparisons is modelled.")
    parts = re.split(r"\)?\s+and\s+\(?", text, flags=re.IGNORECASE)
    return [_clause(p.strip().strip("()")) for p in parts]


_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _clause(text: str) -> Any:
    m = _CLAUSE_RE.match(text)
    if not m:
        raise ODataError(400, "BadRequest", f"Invalid filter clause: syntax error in '{text}'.")
    prop, op, literal = m.group(1), m.group(2).lower(), m.group(3)
    kind = FILTERABLE.get(prop)
    if kind is None:
        raise ODataError(400, "BadRequest", f"Invalid filter clause: property '{prop}' is not filterable.")
    compare = _OPS[op]
    if kind == "datetime":
        if literal.startswith("'"):
            raise ODataError(
                400,
                "BadRequest",
                "A binary operator with incompatible types was detected. "
                "Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind "
                f"'{op}'.",
            )
        try:
            ref = to_ticks(literal)
        except ValueError:
            raise ODataError(
                400,
                "BadRequest",
                f"Invalid filter clause: '{literal}' is not a valid "
                "DateTimeOffset literal (percent-encode '+').",
            ) from None

        def check_dt(inc: Mapping[str, Any]) -> bool:
            val = inc.get(prop)
            return val is not None and compare(to_ticks(val), ref)

        return check_dt
    if literal.lower() == "null":
        return lambda inc: compare(inc.get(prop), None) if op in ("eq", "ne") else False
    if not re.fullmatch(r"'(?:[^']|'')*'", literal):
        raise ODataError(400, "BadRequest", f"Invalid filter clause: '{literal}' must be a quoted string.")
    ref_s = literal[1:-1].replace("''", "'")
    if kind == "enum":
        ref_s = ref_s.lower()  # Graph enums are case-insensitive on input

    def check_s(inc: Mapping[str, Any]) -> bool:
        val = inc.get(prop)
        if val is None:
            return op == "ne"
        return compare(val.lower() if kind == "enum" else val, ref_s)

    return check_s


def _parse_orderby(text: str | None) -> list[tuple[str, bool]]:
    if text is None:
        return [("createdDateTime", True)]
    keys = []
    for part in text.split(","):
        bits = part.split()
        if (
            not bits
            or len(bits) > 2
            or bits[0] not in SORTABLE
            or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc"))
        ):
            raise ODataError(400, "BadRequest", f"Invalid $orderby clause '{part.strip()}'.")
        keys.append((bits[0], len(bits) == 2 and bits[1].lower() == "desc"))
    return keys


def _sort(items: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort, id as the final tiebreak so `$skip` pages never overlap."""
    out = sorted(items, key=lambda i: str(i["id"]))
    for prop, desc in reversed(order):

        def key(inc: dict[str, Any], prop: str = prop) -> tuple[int, Any]:
            val = inc.get(prop)
            if val is None:
                return (0, 0)
            return (1, to_ticks(val)) if prop.endswith("DateTime") else (1, str(val).lower())

        out.sort(key=key, reverse=desc)
    return out


def _parse_expand(text: str | None) -> bool:
    if text is None:
        return False
    if [p.strip() for p in text.split(",")] != ["alerts"]:
        raise ODataError(
            400,
            "BadRequest",
            f"Parsing OData Select and Expand failed: could not find a "
            f"property named '{text}' on type 'microsoft.graph.security.incident'.",
        )
    return True


def _aad_error(status: int, error: str, code: int, description: str) -> tuple[int, dict[str, Any]]:
    trace = str(uuid.uuid4())
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
        "error_codes": [code],
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


class _Server(ThreadingHTTPServer):
    """One thread per connection; open connections are tracked so `stop()` can close them.

    The listen backlog is raised from socketserver's 5: when the accept thread falls behind (a loaded
    machine), a full queue makes the kernel drop new connection attempts, retried only after a second.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()

    def track(self, connection: Any, alive: bool) -> None:
        with self._open_lock:
            (self._open.add if alive else self._open.discard)(connection)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so their threads and sockets do not outlive the double."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a peer that left, or a TLS handshake refused (no client certificate): expected
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    double: GraphDouble
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    handshake_timeout = 60.0  # generous: a loaded machine must not turn a slow handshake into an EOF

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.handshake_timeout)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()
        self.server.track(self.request, True)

    def finish(self) -> None:
        self.server.track(self.request, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        d = self.double
        split = urlsplit(self.path)
        path, params = split.path, parse_qsl(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form = (
            dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            if ("x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""))
            else {}
        )
        route, status, body, headers = self._route(method, path, params, form)
        d._record(LoggedRequest(method, route, path, tuple(params), dict(self.headers.items()), form, status))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _route(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]],
        form: dict[str, str],
    ) -> tuple[str, int, Any, dict[str, str]]:
        d = self.double
        parts = [p for p in path.split("/") if p]
        route = "unknown"
        if method == "GET" and parts[-2:] == ["discovery", "instance"]:
            route = "discovery"
        elif method == "GET" and parts[-2:] == [".well-known", "openid-configuration"]:
            route = "openid"
        elif method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            route = "token"
        elif parts[:3] == ["v1.0", "security", "incidents"] and len(parts) in (3, 4):
            route = "incidents" if len(parts) == 3 else "incident"
        fault = d._take_fault(route)
        if fault is not None:
            return route, *self._fault_response(route, fault)
        wait = d._throttled(route)
        if wait is not None:
            return route, *self._fault_response(route, Fault(route, 429, retry_after=wait))
        try:
            if route == "discovery":
                return route, 200, self._discovery(params), {}
            if route == "openid":
                return route, *self._openid(parts)
            if route == "token":
                return route, *self._token(parts[0], form)
            if route in ("incidents", "incident"):
                d._check_bearer(self.headers.get("Authorization"))
                if method != "GET":
                    raise ODataError(405, "Request_BadRequest", "The double serves reads only.")
                prefer = self.headers.get("Prefer") or ""
                if route == "incidents":
                    return route, 200, d._list(params, prefer), {}
                return route, 200, d._get(parts[3], params, prefer), {}
            raise ODataError(400, "BadRequest", f"Resource not found for the segment '{parts[-1:]}'.")
        except ODataError as exc:
            return route, exc.status, exc.body(), exc.headers

    def _fault_response(self, route: str, fault: Fault) -> tuple[int, Any, dict[str, str]]:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.body is not None:
            return fault.status, fault.body, headers
        if route in ("token", "openid", "discovery"):
            return (
                fault.status,
                _aad_error(
                    fault.status, "temporarily_unavailable", 50196, "The server is temporarily unavailable."
                )[1],
                headers,
            )
        code = {
            429: "TooManyRequests",
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }.get(fault.status, "UnknownError")
        return (
            fault.status,
            ODataError(fault.status, code, "Scripted fault from the Graph double.").body(),
            headers,
        )

    def _discovery(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        """Answers msal's instance discovery if it is pointed here; real Entra would list aliases."""
        d = self.double
        host = urlsplit(d.login_url).netloc
        return {
            "tenant_discovery_endpoint": f"{d.login_url}/{d.tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }

    def _openid(self, parts: list[str]) -> tuple[int, Any, dict[str, str]]:
        d = self.double
        tenant = parts[0]
        if tenant not in (d.tenant, "organizations", "common"):
            return *_aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found."), {}
        base = f"{d.login_url}/{d.tenant}"
        if len(parts) >= 2 and parts[1] == "v2.0":
            cfg = {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{d.login_url}/{d.tenant}/discovery/v2.0/keys",
                "issuer": f"{base}/v2.0",
            }
        else:  # v1 shape; its /oauth2/token endpoint is not implemented (msal uses v2.0)
            cfg = {
                "token_endpoint": f"{base}/oauth2/token",
                "authorization_endpoint": f"{base}/oauth2/authorize",
                "jwks_uri": f"{d.login_url}/common/discovery/keys",
                "issuer": f"https://sts.windows.net/{d.tenant}/",
            }
        cfg |= {
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }
        return 200, cfg, {}

    def _token(self, tenant: str, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        d = self.double
        if tenant not in (d.tenant,):
            return *_aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found."), {}
        if form.get("grant_type") != "client_credentials":
            return *_aad_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            ), {}
        if form.get("client_id") != d.client_id:
            return *_aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the "
                f"directory '{d.tenant}'.",
            ), {}
        if form.get("client_secret") != d.client_secret:
            return *_aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID.",
            ), {}
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or scopes[0] not in {d.scope, *d.extra_scopes}:
            return *_aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope')} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            ), {}
        return (
            200,
            {
                "token_type": "Bearer",
                "expires_in": d.token_lifetime,
                "ext_expires_in": d.token_lifetime,
                "access_token": d._issue_token(),
            },
            {},
        )
