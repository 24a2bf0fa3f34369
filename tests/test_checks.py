"""`check --connect` probes against the doubles: ok where the product answers, a reason where it does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ctibridge.checks import probe_elastic, probe_opencti
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
