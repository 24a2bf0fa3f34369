"""The Graph incidents client against the Graph double, driven by the real msal and httpx over TLS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctibridge.config.sentinel import SentinelIncidentsSettings
from ctibridge.errors import ConfigurationError, InputError, RemoteError
from ctibridge.siem.microsoft.client import GraphIncidents, graph_literal, graph_ticks
from tests.doubles.graph import GraphDouble
from tests.fixtures.graph_incidents import generate_incidents, load_into


class Sleeps(list[float]):
    """Records the waits instead of sleeping, so Retry-After is checked without waiting for it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def settings_for(graph: GraphDouble, **overrides: Any) -> SentinelIncidentsSettings:
    values: dict[str, Any] = {
        "tenant_id": graph.tenant,
        "client_id": graph.client_id,
        "client_secret": graph.client_secret,
        "login_url": graph.login_url,
        "api_base_url": graph.graph_url,
        "ca_cert": graph.ca_path,
        "import_start_date": "2024-01-01",
        "target_product": "",
        "page_size": 50,
        **overrides,
    }
    return SentinelIncidentsSettings(**values)


def client_for(graph: GraphDouble, sleep: Sleeps | None = None, **overrides: Any) -> GraphIncidents:
    return GraphIncidents(settings_for(graph, **overrides), sleep=sleep if sleep is not None else Sleeps())


@pytest.fixture
def graph() -> Iterator[GraphDouble]:
    with GraphDouble() as double:
        load_into(double, generate_incidents(120, seed=31, alerts_per_incident=1, evidence_per_alert=2))
        yield double


def all_ids(client: GraphIncidents, since: str = "2024-01-01T00:00:00Z") -> list[str]:
    return [str(i["id"]) for page in client.pages(since) for i in page.incidents]


def test_pages_follow_next_link_with_a_cached_token(graph: GraphDouble) -> None:
    client = client_for(graph)
    ids = all_ids(client)
    assert sorted(ids) == sorted(str(i["id"]) for i in graph.incidents) and len(set(ids)) == 120
    requests = graph.requests_to("incidents")
    assert len(requests) == 3 and len(graph.requests_to("token")) == 1, "one token for every page"
    first = requests[0].params
    assert first["$filter"] == "lastUpdateDateTime ge 2024-01-01T00:00:00Z"
    assert first["$orderby"] == "lastUpdateDateTime asc" and first["$expand"] == "alerts"
    assert first["$top"] == "50" and "$skip" in requests[1].params, "the nextLink was followed"
    headers = {k.lower(): v for k, v in requests[0].headers.items()}
    assert headers["authorization"].startswith("Bearer ")
    assert "include-unknown-enum-members" in headers["prefer"]
    form = graph.requests_to("token")[0].form
    assert form["scope"] == f"{graph.graph_url}/.default" and form["grant_type"] == "client_credentials"


def test_incidents_come_oldest_update_first_with_alerts(graph: GraphDouble) -> None:
    incidents = [i for page in client_for(graph).pages("2024-01-01T00:00:00Z") for i in page.incidents]
    ticks = [graph_ticks(i["lastUpdateDateTime"]) for i in incidents]
    assert ticks == sorted(ticks) and all("alerts" in i for i in incidents)


def test_401_reauthenticates_once(graph: GraphDouble) -> None:
    client = client_for(graph)
    client.first_page("2024-01-01T00:00:00Z")
    graph.expire_tokens()
    page = client.first_page("2024-01-01T00:00:00Z")
    assert len(page.incidents) == 50
    assert client.reauthentications == 1 and len(graph.requests_to("token")) == 2


def test_a_second_401_is_an_error_not_a_loop(graph: GraphDouble) -> None:
    graph.inject("incidents", 401, times=5)
    client = client_for(graph)
    with pytest.raises(RemoteError) as info:
        client.first_page("2024-01-01T00:00:00Z")
    assert info.value.status == 401
    assert client.reauthentications == 1 and len(graph.requests_to("incidents")) == 2


def test_throttling_and_server_errors_are_retried_honouring_retry_after(graph: GraphDouble) -> None:
    graph.inject("incidents", 429, times=2, retry_after=7)
    graph.inject("incidents", 503, times=1, retry_after=2)
    graph.inject("incidents", 502, times=1)
    sleeps = Sleeps()
    assert len(all_ids(client_for(graph, sleeps))) == 120
    # The fourth retry had no Retry-After: jittered exponential backoff (2**3 s, halved at most).
    assert sleeps[:3] == [7, 7, 2] and len(sleeps) == 4 and 4 <= sleeps[3] <= 8


def test_retries_run_out_into_a_remote_error(graph: GraphDouble) -> None:
    graph.inject("incidents", 503, times=100)
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as info:
        client_for(graph, sleeps, max_retries=2).first_page("2024-01-01T00:00:00Z")
    assert info.value.status == 503 and len(sleeps) == 2


def test_client_errors_are_not_retried(graph: GraphDouble) -> None:
    graph.inject("incidents", 403, times=1)
    sleeps = Sleeps()
    with pytest.raises(RemoteError) as info:
        client_for(graph, sleeps).first_page("2024-01-01T00:00:00Z")
    assert info.value.status == 403 and "SecurityIncident.Read.All" in str(info.value) and sleeps == []


def test_token_endpoint_outage_is_retried(graph: GraphDouble) -> None:
    """msal itself answers repeats of a throttled token request from its cache for Retry-After seconds
    (real time), so this one test waits for real, a second at most per retry."""
    graph.inject("token", 503, times=1, retry_after=1)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(min(seconds, 1.0))

    page = GraphIncidents(settings_for(graph), sleep=sleep).first_page("2024-01-01T00:00:00Z")
    assert len(page.incidents) == 50 and waits
    assert [r.status for r in graph.requests_to("token")] == [503, 200]


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"client_secret": "wrong-secret-value"}, "SENTINEL_INCIDENTS_CLIENT_SECRET"),
        ({"client_id": "00000000-0000-4000-8000-000000000000"}, "SENTINEL_INCIDENTS_CLIENT_ID"),
        ({"tenant_id": "not-our-tenant"}, "SENTINEL_INCIDENTS_TENANT_ID"),
    ],
)
def test_rejected_credentials_are_configuration_errors(
    graph: GraphDouble, override: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        client_for(graph, **override).first_page("2024-01-01T00:00:00Z")
    assert setting in info.value.problems
    assert "wrong-secret-value" not in str(info.value) and graph.client_secret not in str(info.value)


def test_tls_is_verified_by_default(graph: GraphDouble) -> None:
    with pytest.raises(RemoteError):
        client_for(graph, ca_cert=None, max_retries=0).first_page("2024-01-01T00:00:00Z")
    assert not graph.requests_to("incidents")


def test_filter_literals() -> None:
    assert graph_literal(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00Z"
    assert graph_literal(datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=UTC)) == "2024-01-02T03:04:05.000600Z"
    assert graph_literal("2024-03-01T08:10:38.4281234Z") == "2024-03-01T08:10:38.4281234Z"
    assert graph_ticks("2024-03-01T08:10:38.4281234Z") - graph_ticks("2024-03-01T08:10:38.4281233Z") == 1
    assert graph_ticks("2024-03-01T09:10:38+01:00") == graph_ticks("2024-03-01T08:10:38Z")


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=40))
def test_hostile_checkpoints_never_reach_the_filter(text: str) -> None:
    try:
        literal = graph_literal(text)
    except InputError:
        return
    # Only a well-formed DateTimeOffset gets through, and it is the only thing in the clause.
    assert literal == text.strip() and " " not in literal and "'" not in literal


def test_a_tampered_checkpoint_is_refused_before_any_request(graph: GraphDouble) -> None:
    with pytest.raises(InputError):
        client_for(graph).first_page("2024-01-01T00:00:00Z or status eq 'x'")
    assert not graph.requests_to("incidents")


def test_unreadable_tls_files_are_configuration_errors(graph: GraphDouble, tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        client_for(graph, ca_cert=str(tmp_path / "missing.pem"))
    assert "cannot load TLS files" in str(info.value)
