"""`ctibridge check --connect`: reach every endpoint a connector is configured for, report each.

Each probe asks the cheapest authenticated question the product answers, so a wrong URL, a wrong
product behind the URL, a TLS problem and a rejected credential are told apart.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ctibridge.config.base import ConnectorConfig, OpenCTISettings
from ctibridge.config.elastic import ElasticConnection
from ctibridge.config.sentinel import SentinelIncidentsSettings
from ctibridge.config.wazuh import WazuhOpenSearchSettings
from ctibridge.logs import redact
from ctibridge.net import tls_options


@dataclass(frozen=True)
class ProbeResult:
    name: str
    url: str
    ok: bool
    reason: str = ""


Probe = Callable[[httpx.Client], httpx.Response]


def _run(
    name: str, url: str, probe: Probe, check: Callable[[httpx.Response], str | None], **tls: Any
) -> ProbeResult:
    try:
        with httpx.Client(timeout=10.0, **tls) as client:
            response = probe(client)
    except httpx.HTTPError as exc:
        return ProbeResult(name, url, False, redact(f"{type(exc).__name__}: {exc}"))
    except OSError as exc:  # a CA bundle or client certificate that cannot be read
        return ProbeResult(name, url, False, f"TLS files: {exc.strerror or exc}")
    if response.status_code in (401, 403):
        return ProbeResult(name, url, False, f"credentials rejected (HTTP {response.status_code})")
    if response.status_code >= 400:
        hint = check(response)  # often says why: another product answers at this URL
        return ProbeResult(name, url, False, f"HTTP {response.status_code}" + (f"; {hint}" if hint else ""))
    problem = check(response)
    return ProbeResult(name, url, problem is None, problem or "")


def _json_has(*keys: str) -> Callable[[httpx.Response], str | None]:
    def check(response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            return "answered, but not with JSON: is this the right product?"
        node = body
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return f"answered without {'.'.join(keys)}: is this the right product?"
            node = node[key]
        return None

    return check


def probe_opencti(settings: OpenCTISettings) -> ProbeResult:
    url = f"{settings.url}/graphql"
    headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
    query = {"query": "query healthCheck { about { version } }"}

    def check(response: httpx.Response) -> str | None:
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        if body.get("errors"):
            return redact(str(body["errors"][0].get("message", "GraphQL error")))
        return _json_has("data", "about", "version")(response)

    return _run(
        "opencti", url, lambda c: c.post(url, json=query, headers=headers), check, verify=settings.ssl_verify
    )


def probe_elastic(settings: ElasticConnection) -> Iterator[ProbeResult]:
    headers = elastic_auth_headers(settings)
    tls = tls_options(settings.verify_ssl, settings.ca_cert, settings.client_cert, settings.client_key)
    yield _run(
        "elasticsearch", settings.url, lambda c: c.get(settings.url + "/", headers=headers), _es_check, **tls
    )
    kibana = settings.kibana_base_url
    space = "" if settings.kibana_space == "default" else f"/s/{settings.kibana_space}"
    status_url = f"{kibana}{space}/api/status"
    yield _run("kibana", kibana, lambda c: c.get(status_url, headers=headers), _json_has("status"), **tls)


def _es_check(response: httpx.Response) -> str | None:
    if response.headers.get("x-elastic-product") != "Elasticsearch":
        return "no X-Elastic-Product: Elasticsearch header: is this Elasticsearch (and not Kibana)?"
    return _json_has("version", "number")(response)


def elastic_auth_headers(settings: ElasticConnection) -> dict[str, str]:
    if settings.api_key is not None:
        return {"Authorization": f"ApiKey {settings.api_key.get_secret_value()}"}
    if settings.username and settings.password is not None:
        pair = f"{settings.username}:{settings.password.get_secret_value()}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
    return {}


def probe_graph(settings: SentinelIncidentsSettings) -> ProbeResult:
    url = f"{settings.login_url}/{settings.tenant_id}/v2.0/.well-known/openid-configuration"
    tls = tls_options(settings.verify_ssl, settings.ca_cert)
    return _run("microsoft-login", url, lambda c: c.get(url), _json_has("token_endpoint"), **tls)


def probe_opensearch(settings: WazuhOpenSearchSettings) -> ProbeResult:
    auth = None
    if settings.username and settings.password is not None:
        auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
    tls = tls_options(settings.verify_tls, settings.ca_cert, settings.client_cert, settings.client_key)
    return _run(
        "wazuh-indexer",
        settings.url,
        lambda c: c.get(settings.url + "/", auth=auth),
        _json_has("version"),
        **tls,
    )


def probe_endpoints(config: ConnectorConfig) -> Iterator[ProbeResult]:
    yield probe_opencti(config.opencti)
    for field_name in config.groups():
        group = getattr(config, field_name)
        if isinstance(group, ElasticConnection):
            yield from probe_elastic(group)
        elif isinstance(group, SentinelIncidentsSettings):
            yield probe_graph(group)
        elif isinstance(group, WazuhOpenSearchSettings):
            yield probe_opensearch(group)
