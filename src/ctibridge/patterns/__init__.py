"""Indicator patterns (STIX 2.1, Sigma, native queries) -> KQL, Lucene, EQL, ES|QL, OpenSearch DSL, Kusto.

translate("[ipv4-addr:value = '198.51.100.7']", target="kql")
parse_stix(pattern) -> Pattern;  atomic_values(ast) -> list[Atom];  is_atomic(ast) -> bool
"""

from __future__ import annotations

from ctibridge.patterns.api import SOURCES, TARGETS, Source, Target, renderer_for, translate
from ctibridge.patterns.ast import Atom, Pattern
from ctibridge.patterns.errors import PatternError, Untranslatable
from ctibridge.patterns.fieldmap import BUILTIN_MAPS, FieldMap, TargetField
from ctibridge.patterns.stix import atomic_values, is_atomic, parse_stix, to_stix

__all__ = [
    "BUILTIN_MAPS",
    "SOURCES",
    "TARGETS",
    "Atom",
    "FieldMap",
    "Pattern",
    "PatternError",
    "Source",
    "Target",
    "TargetField",
    "Untranslatable",
    "atomic_values",
    "is_atomic",
    "parse_stix",
    "renderer_for",
    "to_stix",
    "translate",
]
