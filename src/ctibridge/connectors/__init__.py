"""Connectors: each wires a SIEM client, its mappings and a platform; this module finds them by name."""

from __future__ import annotations

import importlib
from typing import Protocol

from ctibridge.config.base import ConnectorConfig
from ctibridge.errors import CtiBridgeError
from ctibridge.platform.base import Platform


class Connector(Protocol):
    def run(self) -> None: ...


# name -> "module:factory"; a factory takes (config, platform) and returns a Connector.
CONNECTOR_FACTORIES: dict[str, str] = {"elastic-incidents": "ctibridge.connectors.elastic_incidents:build"}
CONNECTOR_FACTORIES["sentinel-incidents"] = "ctibridge.connectors.sentinel_incidents:build"
CONNECTOR_FACTORIES["wazuh-enrichment"] = "ctibridge.connectors.wazuh_enrichment:build"
CONNECTOR_FACTORIES["elastic-intel"] = "ctibridge.connectors.elastic_intel:build"
# Modules that register `ctibridge convert` kinds when imported.
CONVERTER_MODULES: list[str] = ["ctibridge.siem.elastic.convert", "ctibridge.siem.elastic.rules_convert"]
CONVERTER_MODULES.append("ctibridge.siem.microsoft.convert")
CONVERTER_MODULES.append("ctibridge.siem.elastic.intel_convert")


def build_connector(name: str, config: ConnectorConfig, platform: Platform) -> Connector:
    target = CONNECTOR_FACTORIES.get(name)
    if target is None:
        raise CtiBridgeError(f"connector {name!r} is not available in this version yet")
    module_name, _, factory = target.partition(":")
    return getattr(importlib.import_module(module_name), factory)(config, platform)  # type: ignore[no-any-return]


def load_converters() -> None:
    for module_name in CONVERTER_MODULES:
        importlib.import_module(module_name)
