"""The Microsoft Graph double and the incident fixtures, checked with msal and httpx.

These pin the contract the Sentinel incidents connector (issue 6) is tested against: token flow as msal
drives it, OData paging and filtering, auth failures and throttling. If the double drifts from Graph,
a connector test could pass here and fail in production.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]

import httpx  # noqa: E402
import msal  # noqa: E402

from tests.doubles.graph import ENUMS, GraphDouble, to_ticks  # noqa: E402
from tests.fixtures.graph_incidents import (  # noqa: E402
    EVIDENCE_TYPES,
    MAPPED_EVIDENCE,
    NS,
    evidence_types,
    generate_incidents,
    load_into,
)

METADATA = ROOT / "tests" / "vendor" / "msgraph" / "security-incidents-v1.0.xml"
START = "2024-03-01T00:00:00Z"


@pytest.fixture(scope="module")
def incidents() -> list[dict[str, Any]]:
    return generate_incidents(2000, seed=7, alerts_per_incident=1, evidence_per_alert=3)


@pytest.fixture
def graph(incidents: list[dict[str, Any]]) -> Iterator[GraphDouble]:
    """A double with the first 120 incidents: enough for paging, cheap to load per test."""
    with GraphDouble() as double:
        load_into(double, incidents[:120])
        yield double


@pytest.fixture
def big_graph(incidents: list[dict[str, Any]]) -> Iterator[GraphDouble]:
    with GraphDouble() as double:
        load_into(double, incidents)
        yield double


def token(double: GraphDouble) -> str:
    result = double.msal_app().acquire_token_for_client([double.scope])
    return result["access_token"]


def client(double: GraphDouble, tok: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.Client(verify=double.ssl_context(), headers=headers, timeout=10)


# -- token flow ---------------------------------------------------------------------------------------------
def test_msal_gets_a_token_without_leaving_loopback(graph: GraphDouble) -> None:
    result = graph.msal_app().acquire_token_for_client([graph.scope])
    assert result["token_type"] == "Bearer" and result["access_token"] in graph.issued_tokens()
    assert [r.route for r in graph.requests] == ["openid", "token"]  # no instance discovery
    form = graph.requests_to("token")[0].form
    assert form["grant_type"] == "client_credentials" and form["scope"] == graph.scope


def test_msal_verify_param_works_when_ca_env_is_unset(graph: GraphDouble, monkeypatch: Any) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = msal.ConfidentialClientApplication(
        graph.client_id, client_credential=graph.client_secret, authority=graph.authority,
        verify=graph.ca_path, validate_authority=False,
    )  # fmt: skip
    assert "access_token" in app.acquire_token_for_client(["https://graph.microsoft.com/.default"])


def test_bad_secret_is_an_aadsts_401(graph: GraphDouble) -> None:
    result = graph.msal_app(client_secret="wrong").acquire_token_for_client([graph.scope])
    assert result["error"] == "invalid_client" and 7000215 in result["error_codes"]
    assert result["error_description"].startswith("AADSTS7000215")
    assert graph.requests_to("token")[-1].status == 401


def test_scope_without_default_suffix_is_rejected(graph: GraphDouble) -> None:
    result = graph.msal_app().acquire_token_for_client([f"{graph.graph_url}/SecurityIncident.Read.All"])
    assert result["error"] == "invalid_scope"


def test_unknown_tenant_fails_discovery(graph: GraphDouble) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            graph.client_id, client_credential=graph.client_secret, authority=f"{graph.login_url}/nope",
            http_client=graph.requests_session(), instance_discovery=False,
        )  # fmt: skip
    assert graph.requests_to("openid")[-1].status == 400


def test_expired_token_gets_401_until_msal_cache_is_dropped(graph: GraphDouble) -> None:
    app = graph.msal_app()
    first = app.acquire_token_for_client([graph.scope])["access_token"]
    with client(graph, first) as c:
        assert c.get(graph.incidents_url, params={"$top": "1"}).status_code == 200
    graph.expire_tokens()
    with client(graph, first) as c:
        resp = c.get(graph.incidents_url, params={"$top": "1"})
    assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]
    assert app.acquire_token_for_client([graph.scope])["access_token"] == first  # msal still caches it
    app.remove_tokens_for_client()
    second = app.acquire_token_for_client([graph.scope])["access_token"]
    assert second != first
    with client(graph, second) as c:
        assert c.get(graph.incidents_url, params={"$top": "1"}).status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer not-a-token", "{token}", "Basic {token}"],
    ids=["none", "bad", "no-bearer", "basic"],
)
def test_graph_needs_a_bearer_token(graph: GraphDouble, header: str | None) -> None:
    headers = {"Authorization": header.format(token=token(graph))} if header else {}
    with httpx.Client(verify=graph.ssl_context()) as c:
        resp = c.get(graph.incidents_url, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"


# -- paging and OData ---------------------------------------------------------------------------------------
def test_2000_incidents_page_once_each_in_order(
    big_graph: GraphDouble, incidents: list[dict[str, Any]]
) -> None:
    graph = big_graph
    params = {
        "$filter": f"lastUpdateDateTime ge {START}", "$orderby": "lastUpdateDateTime asc",
        "$expand": "alerts", "$top": "500",
    }  # fmt: skip
    seen: list[dict[str, Any]] = []
    with client(graph, token(graph)) as c:
        resp = c.get(graph.incidents_url, params=params)
        while True:
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert len(body["value"]) <= graph.max_top  # $top=500 is capped
            seen += body["value"]
            link = body.get("@odata.nextLink")
            if not link:
                break
            assert link.startswith(f"{graph.incidents_url}?")  # absolute, followed verbatim
            resp = c.get(link)
    assert len(graph.requests_to("incidents")) == 2000 // graph.max_top
    assert [i["id"] for i in seen] == [i["id"] for i in sorted(
        incidents, key=lambda i: (to_ticks(i["lastUpdateDateTime"]), i["id"]))]  # fmt: skip
    assert len({i["id"] for i in seen}) == 2000
    assert all("alerts" in i for i in seen)


def test_gt_and_combined_filters_match_the_data(
    big_graph: GraphDouble, incidents: list[dict[str, Any]]
) -> None:
    graph = big_graph
    lo, hi = incidents[500]["lastUpdateDateTime"], incidents[900]["lastUpdateDateTime"]
    flt = f"lastUpdateDateTime gt {lo} and lastUpdateDateTime le {hi} and status eq 'Active'"
    expected = {
        i["id"] for i in incidents
        if to_ticks(lo) < to_ticks(i["lastUpdateDateTime"]) <= to_ticks(hi)
        and i["status"].lower() == "active"
    }  # fmt: skip
    got: set[str] = set()
    with client(graph, token(graph)) as c:
        url: str | None = graph.incidents_url
        params: dict[str, str] | None = {
            "$filter": flt,
            "$orderby": "lastUpdateDateTime desc",
            "$count": "true",
        }
        while url:
            body = c.get(url, params=params).json()
            assert body["@odata.count"] == len(expected)
            got |= {i["id"] for i in body["value"]}
            assert "alerts" not in body["value"][0]  # no $expand, no alerts
            url, params = body.get("@odata.nextLink"), None
    assert got == expected and expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 119), top=st.integers(7, 60), desc=st.booleans(), op=st.sampled_from(["ge", "gt"]))
def test_any_checkpoint_pages_exactly_the_newer_incidents(
    graph: GraphDouble, incidents: list[dict[str, Any]], cut: int, top: int, desc: bool, op: str
) -> None:
    mark = to_ticks(incidents[cut]["lastUpdateDateTime"])
    keep = [
        i for i in incidents[:120] if (to_ticks(i["lastUpdateDateTime"]) - mark) >= (0 if op == "ge" else 1)
    ]
    sign = -1 if desc else 1  # ties stay in id order either way
    expected = [
        i["id"] for i in sorted(keep, key=lambda i: (sign * to_ticks(i["lastUpdateDateTime"]), i["id"]))
    ]
    params: dict[str, str] | None = {
        "$filter": f"lastUpdateDateTime {op} {incidents[cut]['lastUpdateDateTime']}",
        "$orderby": f"lastUpdateDateTime {'desc' if desc else 'asc'}",
        "$top": str(top),
    }
    got: list[str] = []
    url: str | None = graph.incidents_url
    with client(graph, token(graph)) as c:
        while url:
            body = c.get(url, params=params).json()
            assert len(body["value"]) <= top
            got += [i["id"] for i in body["value"]]
            url, params = body.get("@odata.nextLink"), None
    assert got == expected


def test_update_moves_an_incident_past_the_checkpoint(
    graph: GraphDouble, incidents: list[dict[str, Any]]
) -> None:
    newest = max(to_ticks(i["lastUpdateDateTime"]) for i in incidents[:120])
    changed = graph.update_incident(incidents[0]["id"], status="resolved")
    assert to_ticks(changed["lastUpdateDateTime"]) > newest and len(changed["lastUpdateDateTime"]) == 28
    mark = incidents[119]["lastUpdateDateTime"]
    with client(graph, token(graph)) as c:
        body = c.get(graph.incidents_url, params={"$filter": f"lastUpdateDateTime gt {mark}"}).json()
    assert incidents[0]["id"] in [i["id"] for i in body["value"]]


def test_default_order_is_newest_first(graph: GraphDouble) -> None:
    with client(graph, token(graph)) as c:
        body = c.get(graph.incidents_url).json()
    created = [to_ticks(i["createdDateTime"]) for i in body["value"]]
    assert created == sorted(created, reverse=True) and len(created) == graph.max_top
    assert "$skip=50" in body["@odata.nextLink"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"$foo": "1"}, "'$foo' is not allowed"),
        ({"$search": "x"}, "'$search' is not allowed"),
        ({"$filter": "lastUpdateDateTime ge '2024-03-01T00:00:00Z'"}, "incompatible types"),
        ({"$filter": "lastUpdateDateTime ge 2024-03-01T00:00:00 00:00"}, "percent-encode"),
        ({"$filter": "title eq 'x'"}, "not filterable"),
        ({"$filter": "severity eq high"}, "quoted string"),
        ({"$filter": "severity eq 'high' or severity eq 'low'"}, "only 'and'"),
        ({"$orderby": "lastUpdateDateTime sideways"}, "$orderby"),
        ({"$expand": "evidence"}, "could not find a property"),
        ({"$top": "-1"}, "'$top'"),
    ],
)
def test_bad_odata_is_a_400(graph: GraphDouble, params: dict[str, str], fragment: str) -> None:
    with client(graph, token(graph)) as c:
        resp = c.get(graph.incidents_url, params=params)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BadRequest"
    assert fragment in resp.json()["error"]["message"]


def test_offset_literal_must_be_percent_encoded(graph: GraphDouble) -> None:
    flt = "lastUpdateDateTime ge 2024-03-01T00:00:00+00:00"
    with client(graph, token(graph)) as c:
        assert c.get(graph.incidents_url, params={"$filter": flt}).status_code == 200  # httpx sends %2B
        assert c.get(f"{graph.incidents_url}?$filter={flt}").status_code == 400  # raw '+' means a space


def test_repeated_option_is_a_400(graph: GraphDouble) -> None:
    with client(graph, token(graph)) as c:
        resp = c.get(f"{graph.incidents_url}?$top=5&$top=6")
    assert resp.status_code == 400


def test_single_incident_and_404(graph: GraphDouble, incidents: list[dict[str, Any]]) -> None:
    with client(graph, token(graph)) as c:
        body = c.get(f"{graph.incidents_url}/{incidents[3]['id']}", params={"$expand": "alerts"}).json()
        assert body["id"] == incidents[3]["id"]
        assert [a["id"] for a in body["alerts"]] == [a["id"] for a in incidents[3]["alerts"]]
        assert c.get(f"{graph.incidents_url}/nope").status_code == 404


# -- connections and TLS ------------------------------------------------------------------------------------
def test_a_silent_connection_does_not_hold_up_others(graph: GraphDouble) -> None:
    """TLS handshakes run per connection: a peer that connects and says nothing blocks nobody else."""
    port = int(graph.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as silent:
        with httpx.Client(verify=graph.ssl_context(), timeout=5) as c:
            assert c.get(graph.incidents_url).status_code == 401
        assert silent.fileno() >= 0


def test_client_certificate_required_when_asked() -> None:
    with GraphDouble(require_client_cert=True) as double:
        assert double.client_cert_path and double.client_key_path
        assert "access_token" in double.msal_app().acquire_token_for_client([double.scope])
        with httpx.Client(verify=double.ssl_context(), timeout=10) as c:  # presents the client cert
            assert c.get(double.incidents_url).status_code == 401
        refused = (httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)
        no_cert = ssl.create_default_context(cafile=double.ca_path)  # trusts the CA, presents nothing
        with pytest.raises(refused), httpx.Client(verify=no_cert, timeout=10) as c:
            c.get(double.incidents_url)
        assert [r.route for r in double.requests] == ["openid", "token", "incidents"]


# -- faults -------------------------------------------------------------------------------------------------
def test_429_with_retry_after_then_recovers(graph: GraphDouble) -> None:
    tok = token(graph)
    graph.inject("incidents", 429, times=2, retry_after=7, after=1)
    with client(graph, tok) as c:
        statuses = [c.get(graph.incidents_url, params={"$top": "1"}) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 429, 429, 200]
    assert statuses[1].headers["Retry-After"] == "7"
    assert statuses[1].json()["error"]["code"] == "TooManyRequests"
    assert [r.status for r in graph.requests_to("incidents")] == [200, 429, 429, 200]


def test_rate_limit_window(graph: GraphDouble) -> None:
    tok = token(graph)
    graph.throttle("incidents", 3, 0.3)
    with client(graph, tok) as c:
        codes = [c.get(graph.incidents_url, params={"$top": "1"}) for _ in range(5)]
        time.sleep(0.35)
        after = c.get(graph.incidents_url, params={"$top": "1"})
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429] and after.status_code == 200
    assert int(codes[3].headers["Retry-After"]) >= 1


def test_5xx_and_token_faults(graph: GraphDouble) -> None:
    graph.inject("token", 503, retry_after=3)
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):  # msal raises on 5xx, not a dict
        graph.msal_app().acquire_token_for_client([graph.scope])
    graph.inject("incidents", 503)
    with client(graph, token(graph)) as c:
        first, second = c.get(graph.incidents_url), c.get(graph.incidents_url)
    assert (first.status_code, first.json()["error"]["code"], second.status_code) == (
        503,
        "ServiceUnavailable",
        200,
    )


# -- enums --------------------------------------------------------------------------------------------------
def test_enum_spellings_and_evolvable_members(graph: GraphDouble) -> None:
    graph.add_incidents([{**generate_incidents(1, seed=1, first_id=1)[0], "status": "awaitingAction"}])
    url = f"{graph.incidents_url}/1"
    with client(graph, token(graph)) as c:
        assert c.get(url).json()["status"] == "unknownFutureValue"
        assert (
            c.get(url, headers={"Prefer": "include-unknown-enum-members"}).json()["status"]
            == "awaitingAction"
        )
        graph.pascal_enums = True
        body = c.get(url, params={"$expand": "alerts"}).json()
    assert body["status"] == "UnknownFutureValue"
    assert all(a["severity"][0].isupper() for a in body["alerts"])
    assert all(ev["verdict"][0].isupper() for a in body["alerts"] for ev in a["evidence"])


# -- fixtures -----------------------------------------------------------------------------------------------
def test_fixtures_are_deterministic_and_varied(incidents: list[dict[str, Any]]) -> None:
    assert generate_incidents(20, seed=7, alerts_per_incident=1, evidence_per_alert=3) == incidents[:20]
    assert generate_incidents(5, seed=8) != generate_incidents(5, seed=7)
    later = generate_incidents(1, seed=7, start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))[0]
    assert later["createdDateTime"] > "2025-06-01T00:00:00" and len(later["alerts"][0]["evidence"]) == 6
    assert len(evidence_types(incidents) & set(MAPPED_EVIDENCE)) == 15
    assert evidence_types(incidents) == set(EVIDENCE_TYPES)
    alerts = [a for i in incidents for a in i["alerts"]]
    evidence = [e for a in alerts for e in a["evidence"]]
    assert {a["productName"] for a in alerts} >= {"Microsoft Sentinel", "Microsoft Defender for Endpoint"}
    verdicts = {e["verdict"] for e in evidence}
    assert {"malicious", "Malicious", "unknownFutureValue"} <= verdicts  # both spellings, evolvable sentinel
    redirected = [i for i in incidents if i["status"].lower() == "redirected"]
    assert redirected and all(i["redirectIncidentId"] for i in redirected)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", i["lastUpdateDateTime"]) for i in incidents
    )
    stamps = [i["lastUpdateDateTime"] for i in incidents]
    assert len(set(stamps)) < len(stamps)  # shared timestamps: `ge` checkpoints must dedupe
    assert any(e.get("ipAddress") == "999.12.1.300" for e in evidence)
    assert any(e.get("algorithm", "").lower() == "sha256" and len(e["value"]) != 64 for e in evidence)
    proc = next(e for e in evidence if e["@odata.type"] == f"{NS}processEvidence")
    assert (
        proc["imageFile"]["fileName"]
        and proc["parentProcessImageFile"]["fileName"]
        and proc["parentProcessId"]
    )


@pytest.fixture(scope="module")
def security_schema() -> str:
    return METADATA.read_text()


def test_double_enums_match_the_metadata(security_schema: str) -> None:
    for name, members in ENUMS.items():
        m = re.search(rf'<EnumType Name="{name}"[^>]*>(.*?)</EnumType>', security_schema, re.S)
        assert m and re.findall(r'Member Name="(\w+)"', m.group(1)) == members, name


def test_fixture_properties_exist_in_the_metadata(
    incidents: list[dict[str, Any]], security_schema: str
) -> None:
    def props(name: str) -> set[str]:
        m = re.search(rf'<(EntityType|ComplexType) Name="{name}"[^>]*>(.*?)</\1>', security_schema, re.S)
        assert m, name
        found = set(re.findall(r'<(?:Navigation)?Property Name="(\w+)"', m.group(2)))
        base = re.search(r'BaseType="self\.(\w+)"', m.group(0).split(">", 1)[0])
        return found | (props(base.group(1)) if base else set()) | {"id", "@odata.type"}

    assert set(incidents[0]) <= props("incident")
    assert set(incidents[0]["alerts"][0]) <= props("alert")
    for ev in (ev for inc in incidents[:60] for alert in inc["alerts"] for ev in alert["evidence"]):
        kind = ev["@odata.type"].removeprefix(NS)
        assert set(ev) <= props(kind), kind
