"""One renderer class per target language; `RENDERERS` maps the target name to it."""

from __future__ import annotations

from ctibridge.patterns.render.base import Renderer
from ctibridge.patterns.render.eql import EqlRenderer
from ctibridge.patterns.render.esql import EsqlRenderer
from ctibridge.patterns.render.kql import KqlRenderer
from ctibridge.patterns.render.kusto import KustoRenderer
from ctibridge.patterns.render.lucene import LuceneRenderer
from ctibridge.patterns.render.opensearch import OpenSearchRenderer

RENDERERS: dict[str, type[Renderer]] = {
    renderer.language: renderer
    for renderer in (
        KqlRenderer,
        LuceneRenderer,
        EqlRenderer,
        EsqlRenderer,
        OpenSearchRenderer,
        KustoRenderer,
    )
}

__all__ = [
    "RENDERERS",
    "EqlRenderer",
    "EsqlRenderer",
    "KqlRenderer",
    "KustoRenderer",
    "LuceneRenderer",
    "OpenSearchRenderer",
    "Renderer",
]
