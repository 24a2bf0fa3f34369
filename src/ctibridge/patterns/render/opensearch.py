"""OpenSearch / Elasticsearch query DSL clause (a JSON-able dict; default map: Wazuh alerts).

Values travel as JSON strings, so `term`/`terms` need no escaping. Only `wildcard` (`* ? \\` escaped with
`\\`) and `regexp` (Lucene regexp syntax) give characters meaning. The result is a query clause
(`{"term": ...}`, `{"bool": ...}`): put it under `"query"` or inside your own bool filter.
"""

from __future__ import annotations

from typing import Any

from ctibridge.patterns.ast import Op
from ctibridge.patterns.lowering import All, AnyOf, Cidr, Compare, Equals, Exists, Not, Regex, Value, Wildcard
from ctibridge.patterns.regex import ANY_CHARS, lucene_regex
from ctibridge.patterns.render.base import Renderer

_RANGE_KEYS = {Op.GT: "gt", Op.GE: "gte", Op.LT: "lt", Op.LE: "lte"}
_WILDCARD_SPECIAL = frozenset("*?\\")

Clause = dict[str, Any]


def escape_wildcard(text: str) -> str:
    """The one escaping function for `wildcard` query values."""
    return "".join("\\" + char if char in _WILDCARD_SPECIAL else char for char in text)


def _json_value(value: Value) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else value.text


class OpenSearchRenderer(Renderer):
    language = "opensearch"
    default_field_map = "wazuh"

    def query(self, condition: Any) -> Clause:
        result: Clause = condition
        return result

    def equals(self, node: Equals) -> Clause:
        if len(node.values) == 1:
            return {"term": {node.field.name: _json_value(node.values[0])}}
        return {"terms": {node.field.name: [_json_value(value) for value in node.values]}}

    def compare(self, node: Compare) -> Clause:
        return {"range": {node.field.name: {_RANGE_KEYS[node.op]: _json_value(node.value)}}}

    def wildcard(self, node: Wildcard) -> Clause:
        pattern = "".join(
            escape_wildcard(part) if isinstance(part, str) else "*" if part is ANY_CHARS else "?"
            for part in node.parts
        )
        return {"wildcard": {node.field.name: {"value": pattern}}}

    def regex(self, node: Regex) -> Clause:
        return {"regexp": {node.field.name: {"value": lucene_regex(node.pattern)}}}

    def cidr(self, node: Cidr) -> Clause:
        return {"term": {node.field.name: node.network}}

    def exists(self, node: Exists) -> Clause:
        return {"exists": {"field": node.field.name}}

    def negate(self, node: Not) -> Clause:
        return {"bool": {"must_not": [self.predicate(node.operand)]}}

    def conjunction(self, node: All) -> Clause:
        positives = [self.predicate(op) for op in node.operands if not isinstance(op, Not)]
        negatives = [self.predicate(op.operand) for op in node.operands if isinstance(op, Not)]
        clause: Clause = {}
        if positives:
            clause["filter"] = positives
        if negatives:
            clause["must_not"] = negatives
        return {"bool": clause}

    def disjunction(self, node: AnyOf) -> Clause:
        return {"bool": {"should": [self.predicate(op) for op in node.operands], "minimum_should_match": 1}}
