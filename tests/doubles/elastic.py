"""Elasticsearch + Kibana test doubles for the Elastic connectors (issues 4 and 5).

Two loopback HTTP servers on ephemeral ports, because Elasticsearch and Kibana are different URLs::

    from tests.doubles.elastic import ElasticDouble

    with ElasticDouble() as elastic:          # or ElasticDouble(tls=True, require_client_cert=True)
        es = Elasticsearch(elastic.es.url, api_key=elastic.es.api_key)     # the real elasticsearch-py 9
        kb = httpx.Client(base_url=elastic.kibana.url, headers=elastic.kibana.auth_header)
        load_into(elastic, ".alerts-security.alerts-default", docs)    # tests/fixtures/elastic_alerts.py
        elastic.es.inject(429, path=r"/_search$", times=2, retry_after=1)  # scripted faults
        elastic.es.requests_to(r"/_pit$")                                   # request log

* :class:`~tests.doubles.elastic_es.ElasticsearchDouble` (``elastic.es``): documents, templates, data
  streams, ``_bulk`` with per-item failures (:meth:`fail_bulk_items`), ``_search`` with the query subset
  connectors send, point in time and ``search_after``, ``_count``, ``_mget``, ``_delete_by_query``.
* :class:`~tests.doubles.elastic_kibana.KibanaDouble` (``elastic.kibana``): Cases and detection-engine
  rules per space, ``kbn-xsrf`` enforced, rule bodies validated against the Kibana OpenAPI spec when
  ``/work/shared/specs/kibana/kibana-oas-filtered.yaml`` exists (override: ``CTIBRIDGE_KIBANA_OAS``).

Both share :class:`~tests.doubles.elastic_http.LoopbackServer`: ``inject(status, path=, method=,
times=, retry_after=, delay=, close_connection=)``, ``requests`` / ``requests_to(path_regex, method)`` /
``count(...)`` / ``clear_requests()``, ``api_key`` (the accepted ``base64(id:key)``), ``auth_header``,
``url``, and TLS material (``tls.ca_path``, ``tls.client_cert_path``, ``tls.client_key_path``).

Facts relied on (from Elastic's sources and docs; details in each module's docstring): the
elasticsearch-py 9 client sends ``Accept``/``Content-Type: application/vnd.elasticsearch+json;
compatible-with=9``, raises ``UnsupportedProductError`` on a 2xx without ``X-Elastic-Product:
Elasticsearch``, and by default retries 429/502/503/504 up to 3 times without honouring ``Retry-After``
(``max_retries=0`` surfaces the 429 with its headers in ``ApiError.meta.headers``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.doubles.elastic_es import BulkItem, ElasticsearchDouble, EsError
from tests.doubles.elastic_http import Fault, RecordedRequest, TlsMaterial
from tests.doubles.elastic_kibana import DEFAULT_SPEC_PATH, KibanaDouble, KibanaError, KibanaSpec

__all__ = [
    "DEFAULT_SPEC_PATH",
    "BulkItem",
    "ElasticDouble",
    "ElasticsearchDouble",
    "EsError",
    "Fault",
    "KibanaDouble",
    "KibanaError",
    "KibanaSpec",
    "RecordedRequest",
    "TlsMaterial",
]


class ElasticDouble:
    """An Elasticsearch double and a Kibana double sharing credentials and (optionally) one test CA.

    ``tls=True`` generates a CA and server/client certificates (``self.tls``); ``require_client_cert``
    makes both servers demand a client certificate signed by that CA (mTLS).
    """

    def __init__(
        self,
        *,
        api_keys: list[str | tuple[str, str]] | None = None,
        basic_users: dict[str, str] | None = None,
        tls: TlsMaterial | bool | None = None,
        require_client_cert: bool = False,
        spaces: tuple[str, ...] = ("default",),
        kibana_spec_path: Path | str | None = None,
        validate_spec: bool = True,
        es_options: dict[str, Any] | None = None,
        kibana_options: dict[str, Any] | None = None,
    ) -> None:
        if tls is True:
            tls = TlsMaterial.generate()
        self.tls: TlsMaterial | None = tls or None
        keys = api_keys if api_keys is not None else [("ctibridge-test", "s3cr3t")]
        common: dict[str, Any] = {
            "api_keys": keys,
            "basic_users": basic_users,
            "tls": self.tls,
            "require_client_cert": require_client_cert,
        }
        self.es = ElasticsearchDouble(**common, **(es_options or {}))
        self.kibana = KibanaDouble(
            **common,
            spaces=spaces,
            spec_path=kibana_spec_path,
            validate_spec=validate_spec,
            **(kibana_options or {}),
        )

    @property
    def api_key(self) -> str:
        """The encoded API key both servers accept (``Authorization: ApiKey <this>``)."""
        return self.es.api_key

    def start(self) -> ElasticDouble:
        self.es.start()
        self.kibana.start()
        return self

    def stop(self) -> None:
        self.kibana.stop()
        self.es.stop()

    def __enter__(self) -> ElasticDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
