"""Build the platform a run talks to: OpenCTI through pycti, or a directory for dry runs."""

from __future__ import annotations

from pathlib import Path

from ctibridge.config.base import ConnectorConfig
from ctibridge.platform.base import Platform
from ctibridge.platform.files import FilePlatform


def file_platform(directory: Path, events: Path | None = None) -> Platform:
    return FilePlatform(directory, stream_events=events, enrichment_requests=events)


def opencti_platform(config: ConnectorConfig) -> Platform:
    from ctibridge.platform.opencti import OpenCTIPlatform

    return OpenCTIPlatform.from_config(config)
