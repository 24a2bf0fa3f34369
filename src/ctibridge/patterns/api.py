"""`translate`: one entry point from an indicator pattern to a SIEM query."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from ctibridge.patterns.fieldmap import FieldMap, FieldMapSource
from ctibridge.patterns.render import RENDERERS, Renderer
from ctibridge.patterns.stix import parse_stix

__all__ = ["SOURCES", "TARGETS", "Source", "Target", "renderer_for", "translate"]

Source = Literal["stix", "sigma", "kql", "lucene", "eql", "esql"]
Target = Literal["kql", "lucene", "eql", "esql", "opensearch", "kusto"]
SOURCES: tuple[str, ...] = ("stix", "sigma", "kql", "lucene", "eql", "esql")
TARGETS: tuple[str, ...] = tuple(RENDERERS)


def translate(
    pattern: str,
    *,
    source: str = "stix",
    target: str,
    field_map: FieldMap | FieldMapSource | None = None,
    index: str | None = None,
) -> str | dict[str, Any]:
    """Translate an indicator pattern into a `target` query (a dict for opensearch, else a string).

    `field_map` (STIX only): a `FieldMap` replaces the target's default table (ecs for kql/lucene/eql/esql,
    wazuh for opensearch, microsoft for kusto); a mapping or YAML/JSON path overrides entries of it. Build a
    `FieldMap` once when translating many patterns with the same overrides.
    `index`: the ES|QL FROM pattern (default logs-*) or the Kusto table; other targets ignore it.
    Raises PatternError for an invalid pattern, Untranslatable when the target cannot express it exactly,
    ValueError for unknown source/target names or a bad field map or index.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if source == "stix":
        result: str | dict[str, Any] = renderer_for(target, field_map, index).render(parse_stix(pattern))
        return result
    # pySigma, eql and luqum take most of the import time: load them only for the patterns that need them
    if source == "sigma":
        from ctibridge.patterns.sigma import convert_sigma

        return convert_sigma(pattern, target, index=index)
    from ctibridge.patterns.native import pass_through

    return pass_through(pattern, source, target)


def renderer_for(
    target: str, field_map: FieldMap | FieldMapSource | None = None, index: str | None = None
) -> Renderer:
    """The renderer `translate` uses; reuse it (with `parse_stix`) to translate many patterns quickly."""
    renderer_class = RENDERERS.get(target)
    if renderer_class is None:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if field_map is None or isinstance(field_map, FieldMap):
        return _cached_renderer(target, field_map, index)
    resolved = FieldMap.builtin(renderer_class.default_field_map).with_overrides(field_map)
    return renderer_class(resolved, index=index)


@lru_cache(maxsize=64)
def _cached_renderer(target: str, field_map: FieldMap | None, index: str | None) -> Renderer:
    return RENDERERS[target](field_map, index=index)
