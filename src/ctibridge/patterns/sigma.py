"""Sigma rules -> target queries through pySigma backends, offline.

- Pipelines mutate the rules they process, so the YAML is parsed afresh for every conversion.
- Elastic targets use the ECS pipeline for the rule's logsource product; a rule no pipeline maps would
  keep raw Sigma field names (`Image`, `CommandLine`) and silently match nothing, so it is refused.
- Only the default output formats are used: the `siem_rule*` formats download MITRE ATT&CK data.
- EQL and Lucene output is parsed again (eql, luqum): some backends emit invalid queries (EQL bare
  strings for keyword detections) instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from sigma.backends.elasticsearch import EqlBackend, ESQLBackend, LuceneBackend
from sigma.backends.kusto import KustoBackend
from sigma.backends.opensearch import OpensearchLuceneBackend
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.pipelines.elasticsearch import ecs_kubernetes, ecs_macos_esf, ecs_windows, ecs_zeek_beats
from sigma.pipelines.microsoftxdr import microsoft_xdr_pipeline
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import SetStateTransformation
from sigma.rule import SigmaRule

from ctibridge.patterns.errors import PatternError, Untranslatable
from ctibridge.patterns.native import check_native
from ctibridge.patterns.render.esql import DEFAULT_INDEX as ESQL_DEFAULT_INDEX

__all__ = ["convert_sigma"]

_ECS_PIPELINES: dict[str, Callable[[], ProcessingPipeline]] = {
    "windows": ecs_windows,
    "macos": ecs_macos_esf,
    "zeek": ecs_zeek_beats,
    "kubernetes": ecs_kubernetes,
}


def convert_sigma(rule_text: str, target: str, *, index: str | None = None) -> str | dict[str, Any]:
    if target == "kql":
        raise Untranslatable("pySigma has no Kibana KQL backend; convert Sigma rules to lucene instead")
    collection = _parse(rule_text)
    rule = collection.rules[0]
    assert isinstance(rule, SigmaRule)
    try:
        if target == "kusto":
            queries = KustoBackend(microsoft_xdr_pipeline(query_table=index)).convert(collection)
            return str(_single(queries))
        pipeline = _ecs_pipeline(rule)
        if target == "lucene":
            return _checked(_single(LuceneBackend(pipeline).convert(collection)), "lucene")
        if target == "eql":
            return _checked(_single(EqlBackend(pipeline).convert(collection)), "eql")
        if target == "esql":
            state = ProcessingItem(SetStateTransformation("index", index or ESQL_DEFAULT_INDEX))
            return str(_single(ESQLBackend(pipeline + ProcessingPipeline(items=[state])).convert(collection)))
        if target == "opensearch":
            bodies = OpensearchLuceneBackend(pipeline).convert(collection, "dsl_lucene")
            body = _single(bodies)
            clause: dict[str, Any] = body["query"]
            return clause
    except (SigmaError, NotImplementedError) as exc:
        raise Untranslatable(f"Sigma rule cannot be converted to {target}: {exc}") from None
    raise ValueError(f"unknown target {target!r}")


def _parse(rule_text: str) -> SigmaCollection:
    try:
        collection = SigmaCollection.from_yaml(rule_text)
    except (SigmaError, yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
        raise PatternError(f"invalid Sigma rule: {exc}") from None
    rules = [rule for rule in collection.rules if isinstance(rule, SigmaRule)]
    if len(rules) != 1 or len(collection.rules) != 1:
        raise PatternError(f"expected exactly one Sigma detection rule, found {len(collection.rules)} rules")
    return collection


def _ecs_pipeline(rule: SigmaRule) -> ProcessingPipeline:
    product = rule.logsource.product
    factory = _ECS_PIPELINES.get(product or "")
    if factory is None:
        raise Untranslatable(
            f"no ECS field mapping for Sigma logsource product {product!r} "
            f"(mapped: {', '.join(sorted(_ECS_PIPELINES))}); its raw field names would match nothing"
        )
    return factory()


def _single(queries: list[Any]) -> Any:
    if len(queries) != 1:
        raise Untranslatable(f"the Sigma rule converts to {len(queries)} queries, expected one")
    return queries[0]


def _checked(query: str, language: str) -> str:
    try:
        check_native(query, language)
    except PatternError as exc:
        raise Untranslatable(
            f"the pySigma {language} backend produced an invalid query: {exc.reason}"
        ) from None
    return query
