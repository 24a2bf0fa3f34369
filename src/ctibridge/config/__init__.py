"""Configuration models, one per connector, read from the environment and `config.yml`."""

from ctibridge.config.base import ConnectorConfig, ConnectorSettings, OpenCTISettings, SettingsGroup
from ctibridge.config.elastic import ElasticIncidentsConfig, ElasticIntelConfig
from ctibridge.config.sentinel import SentinelIncidentsConfig
from ctibridge.config.wazuh import WazuhEnrichmentConfig

CONNECTOR_CONFIGS: dict[str, type[ConnectorConfig]] = {
    "elastic-incidents": ElasticIncidentsConfig,
    "elastic-intel": ElasticIntelConfig,
    "sentinel-incidents": SentinelIncidentsConfig,
    "wazuh-enrichment": WazuhEnrichmentConfig,
}

__all__ = [
    "CONNECTOR_CONFIGS",
    "ConnectorConfig",
    "ConnectorSettings",
    "ElasticIncidentsConfig",
    "ElasticIntelConfig",
    "OpenCTISettings",
    "SentinelIncidentsConfig",
    "SettingsGroup",
    "WazuhEnrichmentConfig",
]
