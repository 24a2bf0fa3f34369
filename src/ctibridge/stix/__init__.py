"""STIX 2.1 building: deterministic ids, markings, the builder and chunked bundles."""

from ctibridge.stix.builder import Built, StixBuilder
from ctibridge.stix.bundle import chunk_groups, make_bundle
from ctibridge.stix.ids import format_time
from ctibridge.stix.markings import Tlp, parse_tlp

__all__ = ["Built", "StixBuilder", "Tlp", "chunk_groups", "format_time", "make_bundle", "parse_tlp"]
