"""Microsoft Graph security incidents: an msal client-credentials token and OData paging over httpx.

msal caches the token and fetches a new one shortly before it expires; a 401 anyway (revoked, clock
skew, expired server-side) drops the cached token and re-authenticates once per request. Throttling
(429) and server errors (5xx) are retried through `net.retry`, honouring Retry-After.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import msal
import requests

from ctibridge.config.sentinel import SentinelIncidentsSettings
from ctibridge.errors import ConfigurationError, InputError, RemoteError
from ctibridge.net import RETRYABLE_STATUS, Retryable, retry, retry_after_seconds, tls_options

log = logging.getLogger(__name__)
SERVICE = "microsoft-graph"
LOGIN = "microsoft-login"

# Graph's DateTimeOffset literal (7 fractional digits at most); unquoted in $filter, so validated here.
_GRAPH_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})$")
# Entra error codes that mean a setting is wrong rather than the service being down.
_LOGIN_SETTING = {
    "invalid_tenant": "TENANT_ID",
    "invalid_client": "CLIENT_SECRET",
    "unauthorized_client": "CLIENT_ID",
    "invalid_scope": "API_BASE_URL",
    "invalid_request": "TENANT_ID",
}


def graph_ticks(value: str) -> int:
    """A Graph timestamp as 100 ns ticks: exact for 7 fractional digits, which datetime truncates."""
    match = _GRAPH_TIME.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise InputError(f"not a Graph DateTimeOffset: {str(value)[:60]!r}")
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(moment.timestamp()) * 10_000_000 + int((fraction or "0").ljust(7, "0"))


def graph_literal(value: str | datetime) -> str:
    """A DateTimeOffset literal safe to put unquoted in `$filter` (validated, never passed through raw)."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        return text + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"
    graph_ticks(value)
    return value.strip()


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """One page of incidents with alerts expanded; `next_link` is Graph's opaque continuation."""

    incidents: list[dict[str, Any]]
    next_link: str | None


def _requests_session(settings: SentinelIncidentsSettings) -> requests.Session:
    """msal's HTTP client with our TLS options bound per request.

    Bound per request because requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's
    `verify`, which would silently ignore SENTINEL_INCIDENTS_CA_CERT.
    """
    session = requests.Session()
    verify: bool | str = (settings.ca_cert or True) if settings.verify_ssl else False
    options: dict[str, Any] = {"verify": verify, "timeout": settings.request_timeout}
    if settings.client_cert:
        options["cert"] = (
            (settings.client_cert, settings.client_key) if settings.client_key else settings.client_cert
        )
    session.request = functools.partial(session.request, **options)  # type: ignore[method-assign]
    return session


class GraphIncidents:
    """Reads `GET <api base><incident path>` with `$expand=alerts`, oldest update first."""

    def __init__(
        self,
        settings: SentinelIncidentsSettings,
        *,
        app: Any = None,
        transport: httpx.BaseTransport | None = None,
        attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.url = settings.api_base_url + settings.incident_path
        self.scope = f"{settings.api_base_url}/.default"
        self.attempts = settings.max_retries if attempts is None else attempts
        self.sleep = sleep
        self._app = app
        self.reauthentications = 0
        try:
            options: dict[str, Any] = (
                {}
                if transport
                else tls_options(
                    settings.verify_ssl, settings.ca_cert, settings.client_cert, settings.client_key
                )
            )
        except (OSError, ssl.SSLError) as exc:  # a CA bundle or client certificate that cannot be read
            reason = f"cannot load TLS files: {getattr(exc, 'strerror', None) or exc}"
            raise ConfigurationError({"SENTINEL_INCIDENTS_CA_CERT / _CLIENT_CERT": reason}) from None
        self.http = httpx.Client(
            timeout=settings.request_timeout,
            transport=transport,
            headers={
                "Accept": "application/json",
                # Without it Graph hides evolvable members (microsoftSentinel, awaitingAction) behind
                # unknownFutureValue; the mapping understands both.
                "Prefer": "include-unknown-enum-members",
            },
            **options,
        )

    # ------------------------------------------------------------------ token

    @property
    def app(self) -> Any:
        if self._app is None:
            s = self.settings
            try:
                self._app = msal.ConfidentialClientApplication(
                    s.client_id,
                    client_credential=s.client_secret.get_secret_value(),
                    authority=f"{s.login_url}/{s.tenant_id}",
                    http_client=_requests_session(s),
                    # Any login URL works (sovereign clouds, a local one in tests): no discovery call
                    # to login.microsoftonline.com.
                    instance_discovery=False,
                )
            except ValueError as exc:  # msal: the authority's OpenID configuration is unreadable
                reason = f"the login URL has no OpenID configuration for this tenant ({_first_line(exc)})"
                raise ConfigurationError({"SENTINEL_INCIDENTS_TENANT_ID": reason}) from None
            except requests.exceptions.SSLError as exc:
                raise RemoteError(LOGIN, _tls_reason(exc)) from None
            except requests.RequestException as exc:
                raise RemoteError(LOGIN, f"unreachable: {type(exc).__name__}") from None
        return self._app

    def token(self) -> str:
        """A valid access token; msal answers from its cache until shortly before expiry."""

        def attempt() -> str:
            try:
                result = self.app.acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as exc:
                raise Retryable(f"unreachable: {type(exc).__name__}") from None
            except msal.exceptions.MsalServiceError as exc:  # 429/5xx from the token endpoint
                raise Retryable(f"token endpoint error: {_first_line(exc)}") from None
            if result and "access_token" in result:
                return str(result["access_token"])
            error = str((result or {}).get("error") or "no token")
            description = _first_line((result or {}).get("error_description") or "")
            if error == "temporarily_unavailable":
                raise Retryable(f"{error}: {description}")
            setting = _LOGIN_SETTING.get(error)
            if setting:
                reason = f"rejected by the login service ({error}: {description})"
                raise ConfigurationError({f"SENTINEL_INCIDENTS_{setting}": reason})
            raise RemoteError(LOGIN, f"{error}: {description}")

        return retry(attempt, service=LOGIN, attempts=self.attempts, sleep=self.sleep)

    def _forget_token(self) -> None:
        self.app.remove_tokens_for_client()

    # ------------------------------------------------------------------ requests

    def get(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        """GET a Graph URL as JSON: retried on 429/5xx, one re-authentication on 401."""
        reauthenticated = False

        def attempt() -> Any:
            nonlocal reauthenticated
            while True:
                headers = {"Authorization": f"Bearer {self.token()}"}
                try:
                    response = self.http.get(url, params=params, headers=headers)
                except httpx.TransportError as exc:
                    raise Retryable(f"unreachable: {type(exc).__name__}") from None
                if response.status_code == 401 and not reauthenticated:
                    reauthenticated = True
                    self.reauthentications += 1
                    log.info("Graph refused the access token (401); re-authenticating once")
                    self._forget_token()
                    continue
                break
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    raise RemoteError(SERVICE, "answer is not JSON", response.status_code) from None
            reason = _graph_reason(response)
            if response.status_code in RETRYABLE_STATUS:
                raise Retryable(
                    reason, response.status_code, retry_after_seconds(response.headers.get("retry-after"))
                )
            if response.status_code == 403:
                reason += " (the app registration needs the SecurityIncident.Read.All application permission)"
            raise RemoteError(SERVICE, reason, response.status_code)

        return retry(attempt, service=SERVICE, attempts=self.attempts, sleep=self.sleep)

    def first_page(self, since: str | datetime, page_size: int | None = None) -> IncidentPage:
        """The oldest-updated incidents updated at or after `since`, with their alerts."""
        params = {
            "$filter": f"lastUpdateDateTime ge {graph_literal(since)}",
            "$orderby": "lastUpdateDateTime asc",
            "$expand": "alerts",
            "$top": str(page_size or self.settings.page_size),
        }
        return self._page(self.url, params)

    def follow(self, next_link: str) -> IncidentPage:
        """The page after this one: `@odata.nextLink` is followed verbatim, as Graph asks."""
        return self._page(next_link, None)

    def pages(self, since: str | datetime, page_size: int | None = None) -> Iterator[IncidentPage]:
        """Every page of one query, following `@odata.nextLink` to the end."""
        page = self.first_page(since, page_size)
        yield page
        while page.next_link:
            page = self.follow(page.next_link)
            yield page

    def _page(self, url: str, params: Mapping[str, str] | None) -> IncidentPage:
        body = self.get(url, params)
        if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
            raise RemoteError(SERVICE, "answer has no 'value' list")
        link = body.get("@odata.nextLink")
        return IncidentPage([i for i in body["value"] if isinstance(i, dict)], str(link) if link else None)

    def close(self) -> None:
        self.http.close()


_SSL_REASON = re.compile(r"\[SSL: [A-Z0-9_]+\] ([^(]+?)\s*\(|(EOF occurred in violation of protocol)")


def _tls_reason(exc: Exception) -> str:
    """A refused TLS handshake named as such: usually a CA bundle or client certificate setting."""
    match = _SSL_REASON.search(str(exc))
    reason = (match.group(1) or match.group(2)) if match else type(exc).__name__
    return (
        f"TLS handshake failed ({reason}); check SENTINEL_INCIDENTS_CA_CERT, "
        "SENTINEL_INCIDENTS_CLIENT_CERT and SENTINEL_INCIDENTS_CLIENT_KEY"
    )


def _first_line(value: Any) -> str:
    return str(value).strip().splitlines()[0][:300] if str(value).strip() else ""


def _graph_reason(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('code') or response.reason_phrase}: {_first_line(error.get('message') or '')}"
    except (ValueError, AttributeError):
        return response.reason_phrase
