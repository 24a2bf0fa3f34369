"""`check --connect` probes against the doubles: ok where the product answers, a reason where it does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ctibridge.checks import probe_elastic, probe_opencti, probe_workflow
from ctibridge.config.base import OpenCTISettings
from ctibridge.config.elastic import ElasticConnection
from tests.doubles.elastic import ElasticDouble
from tests.doubles.opencti import OpenCTIDouble


@pytest.fixture
def elastic() -> Iterator[ElasticDouble]:
    with ElasticDouble() as double:
        yield double


def test_opencti_probe(opencti: OpenCTIDouble) -> None:
    good = probe_opencti(OpenCTISettings(url=opencti.url, token=opencti.token))
    assert good.ok, good.reason
    bad = probe_opencti(OpenCTISettings(url=opencti.url, token="wrong-token-value"))
    assert not bad.ok and "wrong-token-value" not in bad.reason


def test_elastic_probes(elastic: ElasticDouble) -> None:
    settings = ElasticConnection(url=elastic.es.url, kibana_url=elastic.kibana.url, api_key=elastic.api_key)
    results = {r.name: r for r in probe_elastic(settings)}
    assert results["elasticsearch"].ok, results["elasticsearch"].reason
    assert results["kibana"].ok, results["kibana"].reason

    swapped = ElasticConnection(url=elastic.kibana.url, kibana_url=elastic.es.url, api_key=elastic.api_key)
    results = {r.name: r for r in probe_elastic(swapped)}
    assert not results["elasticsearch"].ok and "is this Elasticsearch" in results["elasticsearch"].reason

    rejected = ElasticConnection(url=elastic.es.url, kibana_url=elastic.kibana.url, api_key="bm9wZTpub3Bl")
    results = {r.name: r for r in probe_elastic(rejected)}
    assert results["elasticsearch"].reason == "credentials rejected (HTTP 401)"


def test_tls_verification_is_on_by_default_and_a_ca_bundle_works() -> None:
    with ElasticDouble(tls=True) as double:
        assert double.tls is not None
        default = ElasticConnection(url=double.es.url, kibana_url=double.kibana.url, api_key=double.api_key)
        results = {r.name: r for r in probe_elastic(default)}
        assert not results["elasticsearch"].ok, "self-signed server refused without its CA"
        with_ca = default.model_copy(update={"ca_cert": str(double.tls.ca_path)})
        results = {r.name: r for r in probe_elastic(with_ca)}
        assert results["elasticsearch"].ok and results["kibana"].ok, [r.reason for r in results.values()]


def test_mutual_tls_with_a_client_certificate() -> None:
    with ElasticDouble(tls=True, require_client_cert=True) as double:
        assert double.tls is not None
        base = ElasticConnection(
            url=double.es.url,
            kibana_url=double.kibana.url,
            api_key=double.api_key,
            ca_cert=str(double.tls.ca_path),
        )
        assert not next(iter(probe_elastic(base))).ok, "no client certificate, no connection"
        mtls = base.model_copy(
            update={
                "client_cert": str(double.tls.client_cert_path),
                "client_key": str(double.tls.client_key_path),
            }
        )
        assert all(r.ok for r in probe_elastic(mtls))


def test_workflow_probe_reports_what_the_status_mapping_will_set(opencti: OpenCTIDouble) -> None:
    settings = OpenCTISettings(url=opencti.url, token=opencti.token)
    mapping = {"open": "NEW", "acknowledged": "In_Progress", "closed": "CLOSED"}
    none = probe_workflow(settings, "Incident", mapping)
    assert none.ok and "no Incident workflow" in none.reason
    opencti.add_workflow("Incident", ["NEW", "IN_PROGRESS"])
    some = probe_workflow(settings, "Incident", mapping)
    assert some.ok and some.reason == "open→NEW, acknowledged→IN_PROGRESS; not in the workflow: CLOSED"
    bad = probe_workflow(OpenCTISettings(url=opencti.url, token="wrong-token-value"), "Incident", mapping)
    assert not bad.ok and "wrong-token-value" not in bad.reason


def test_check_connect_lists_the_workflows_an_import_sets(
    opencti: OpenCTIDouble, elastic: ElasticDouble
) -> None:
    from tests.test_cli import ctibridge

    opencti.add_workflow("Case-Incident", ["NEW", "IN_PROGRESS", "CLOSED"])
    env = {
        "OPENCTI_URL": opencti.url,
        "OPENCTI_TOKEN": opencti.token,
        "CONNECTOR_ID": "5e2f2b0c-6a5e-4d8e-9d54-2f1f9f0e9a11",
        "ELASTIC_SECURITY_URL": elastic.es.url,
        "ELASTIC_SECURITY_KIBANA_URL": elastic.kibana.url,
        "ELASTIC_SECURITY_API_KEY": elastic.api_key,
    }
    result = ctibridge("check", "elastic-incidents", "--connect", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "workflow Incident " in result.stdout and "no Incident workflow" in result.stdout
    assert "open→NEW, in-progress→IN_PROGRESS, closed→CLOSED" in result.stdout


def test_graph_access_probe_tries_the_secret_and_the_permission() -> None:
    from ctibridge.checks import probe_graph_access
    from tests.doubles.graph import GraphDouble
    from tests.siem.microsoft.test_graph_client import settings_for

    with GraphDouble() as graph:
        good = probe_graph_access(settings_for(graph))
        assert good.ok and good.reason == "token issued; incidents readable", good.reason
        wrong = probe_graph_access(settings_for(graph, client_secret="not-the-secret-value"))
        assert not wrong.ok and "SENTINEL_INCIDENTS_CLIENT_SECRET" in wrong.reason
        assert "not-the-secret-value" not in wrong.reason
        graph.inject("incidents", 403)
        denied = probe_graph_access(settings_for(graph))
        assert not denied.ok and "SecurityIncident.Read.All" in denied.reason
