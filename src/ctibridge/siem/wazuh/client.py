"""The opensearch-py client for the Wazuh indexer: TLS verification on unless switched off."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch

from ctibridge.config.wazuh import WazuhOpenSearchSettings

RETRY_ON_STATUS = (429, 502, 503, 504)


def opensearch_options(settings: WazuhOpenSearchSettings) -> dict[str, Any]:
    """Keyword arguments for `OpenSearch(...)` (separate so the TLS choices can be checked)."""
    options: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": settings.timeout,
        "max_retries": settings.max_retries,
        "retry_on_timeout": True,
        "retry_on_status": RETRY_ON_STATUS,
    }
    if settings.username and settings.password is not None:
        options["http_auth"] = (settings.username, settings.password.get_secret_value())
    if settings.url.startswith("https://"):
        options["use_ssl"] = True
        options["verify_certs"] = settings.verify_tls
        if settings.verify_tls:
            if settings.ca_cert:
                options["ca_certs"] = settings.ca_cert
        else:
            options["ssl_assert_hostname"] = False
            options["ssl_show_warn"] = False
        if settings.client_cert:
            options["client_cert"] = settings.client_cert
            if settings.client_key:
                options["client_key"] = settings.client_key
    return options


def build_opensearch(settings: WazuhOpenSearchSettings) -> OpenSearch:
    return OpenSearch(**opensearch_options(settings))
