"""`ctibridge check --connect`: reach every endpoint a connector is configured for, report each.

Each probe asks the cheapest authenticated question the product answers, so a wrong URL, a wrong
product behind the URL, a TLS problem and a rejected credential are told apart.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ctibridge.config.base import ConnectorConfig, OpenCTISettings
from ctibridge.config.elastic import ElasticConnection, ElasticIncidentsSettings
from ctibridge.config.sentinel import SentinelIncidentsSettings
from ctibridge.config.wazuh import WazuhOpenSearchSettings
from ctibridge.logs import redact
from ctibridge.net import tls_options
from ctibridge.platform.workflow import WORKFLOW_STATUSES_QUERY, statuses_of, workflow_variables


@dataclass(frozen=True)
class ProbeResult:
    name: str
    url: str
    ok: bool
    reason: str = ""


Probe = Callable[[httpx.Client], httpx.Response]


def _run(
    name: str,
    url: str,
    probe: Probe,
    check: Callable[[httpx.Response], str | None],
    describe: Callable[[httpx.Response], str] | None = None,
    **tls: Any,
) -> ProbeResult:
    """`check` names a problem with an answer; `describe` says what a good answer found, for the report."""
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
    if problem is None:
        return ProbeResult(name, url, True, describe(response) if describe else "")
    return ProbeResult(name, url, False, problem)


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


def _probe_graphql(
    settings: OpenCTISettings,
    name: str,
    query: dict[str, Any],
    keys: tuple[str, ...],
    describe: Callable[[httpx.Response], str] | None = None,
) -> ProbeResult:
    """One OpenCTI GraphQL query: its first error message is the reason, else `keys` must be there."""
    url = f"{settings.url}/graphql"
    headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}

    def check(response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            body = None  # _json_has says so
        if isinstance(body, dict) and body.get("errors"):
            return redact(str(body["errors"][0].get("message", "GraphQL error")))
        return _json_has(*keys)(response)

    return _run(
        name,
        url,
        lambda c: c.post(url, json=query, headers=headers),
        check,
        describe,
        verify=settings.ssl_verify,
    )


def probe_opencti(settings: OpenCTISettings) -> ProbeResult:
    query = {"query": "query healthCheck { about { version } }"}
    return _probe_graphql(settings, "opencti", query, ("data", "about", "version"))


def probe_workflow(settings: OpenCTISettings, entity_type: str, mapping: Mapping[str, str]) -> ProbeResult:
    """Which SIEM statuses will set a status in OpenCTI: the entity type's workflow against the mapping.

    A missing workflow is no failure (objects then keep OpenCTI's default status); the report says so.
    """
    query = {"query": WORKFLOW_STATUSES_QUERY, "variables": workflow_variables(entity_type)}

    def describe(response: httpx.Response) -> str:
        statuses = statuses_of(response.json()["data"]["statuses"]["edges"], entity_type)
        if not mapping:
            return "no status mapping configured"
        if not statuses:
            return f"no {entity_type} workflow: objects keep OpenCTI's default status"
        mapped = [f"{siem}→{name.upper()}" for siem, name in mapping.items() if name.upper() in statuses]
        missing = sorted({name.upper() for name in mapping.values()} - set(statuses))
        text = ", ".join(mapped) or "no mapped status"
        return text + (f"; not in the workflow: {', '.join(missing)}" if missing else "")

    return _probe_graphql(settings, f"workflow {entity_type}", query, ("data", "statuses", "edges"), describe)


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


def probe_graph_access(settings: SentinelIncidentsSettings) -> ProbeResult:
    """The connector's own first steps, once: a client-credentials token, then one incident asked for,
    so a wrong secret and a missing Graph permission show here rather than at the first run."""
    from datetime import UTC, datetime

    from ctibridge.errors import ConfigurationError, RemoteError
    from ctibridge.siem.microsoft.client import GraphIncidents

    url = settings.api_base_url + settings.incident_path
    try:
        client = GraphIncidents(settings, attempts=0)
    except ConfigurationError as exc:
        return ProbeResult("microsoft-graph", url, False, redact("; ".join(exc.problems.values())))
    try:
        client.token()
        client.first_page(datetime.now(UTC), page_size=1)
    except ConfigurationError as exc:
        reasons = [f"{name}: {reason}" for name, reason in exc.problems.items()]
        return ProbeResult("microsoft-graph", url, False, redact("; ".join(reasons)))
    except RemoteError as exc:
        return ProbeResult("microsoft-graph", url, False, redact(str(exc)))
    finally:
        client.close()
    return ProbeResult("microsoft-graph", url, True, "token issued; incidents readable")


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
    opencti = probe_opencti(config.opencti)
    yield opencti
    if opencti.ok:
        for entity_type, mapping in _status_mappings(config):
            yield probe_workflow(config.opencti, entity_type, mapping)
    for field_name in config.groups():
        group = getattr(config, field_name)
        if isinstance(group, ElasticConnection):
            yield from probe_elastic(group)
        elif isinstance(group, SentinelIncidentsSettings):
            login = probe_graph(group)
            yield login
            if login.ok:
                yield probe_graph_access(group)
        elif isinstance(group, WazuhOpenSearchSettings):
            yield probe_opensearch(group)


def _status_mappings(config: ConnectorConfig) -> list[tuple[str, Mapping[str, str]]]:
    """The workflows an import connector sets statuses in, with the mapping it uses for each."""
    found: list[tuple[str, Mapping[str, str]]] = []
    for field_name in config.groups():
        group = getattr(config, field_name)
        if isinstance(group, ElasticIncidentsSettings):
            found.append(("Incident", group.alert_status_mapping))
            if group.import_cases:
                found.append(("Case-Incident", group.case_status_mapping))
        elif isinstance(group, SentinelIncidentsSettings):
            found.append(("Case-Incident", group.incident_status_mapping))
            found.append(("Incident", group.alert_status_mapping))
    return found
