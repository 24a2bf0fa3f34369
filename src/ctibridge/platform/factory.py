"""Build the platform a run talks to: OpenCTI through pycti, or a directory for dry runs."""

from __future__ import annotations

from pathlib import Path

from ctibridge.config.base import ConnectorConfig
from ctibridge.errors import DeliveryError
from ctibridge.platform.base import Platform
from ctibridge.platform.files import FilePlatform


def file_platform(directory: Path, events: Path | None = None) -> Platform:
    return FilePlatform(directory, stream_events=events, enrichment_requests=events)


def opencti_platform(config: ConnectorConfig) -> Platform:
    """Register with OpenCTI through pycti's helper; a refused registration is a runtime failure."""
    from pycti import OpenCTIConnectorHelper

    from ctibridge.platform.opencti import OpenCTIPlatform, build_helper_config

    connector = config.connector
    helper_config = build_helper_config(
        url=config.opencti.url,
        token=config.opencti.token.get_secret_value(),
        connector_id=connector.id,
        connector_type=connector.type or config.connector_type,
        connector_name=connector.name or connector.id,
        ssl_verify=config.opencti.ssl_verify,
        scope=connector.scope or None,
        log_level="warning" if connector.log_level == "warn" else connector.log_level,
        duration_period=connector.duration_period,
        live_stream_id=connector.live_stream_id,
        auto=connector.auto,
        queue_protocol=connector.queue_protocol,
        run_and_terminate=connector.run_and_terminate,
    )
    try:
        helper = OpenCTIConnectorHelper(helper_config, playbook_compatible=True)
    except (ValueError, ConnectionError, OSError) as exc:
        raise DeliveryError(f"cannot register with OpenCTI at {config.opencti.url}: {exc}") from exc
    return OpenCTIPlatform(helper)
