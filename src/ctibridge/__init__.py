"""ctibridge: OpenCTI <-> SIEM bridge (Elastic Security, Microsoft Sentinel / Defender, Wazuh)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ctibridge")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
