"""Elasticsearch ES|QL: `FROM <index> METADATA _id, _index, _version | WHERE ...`.

`METADATA _id, _index, _version` is what Elastic Security needs to deduplicate alerts of a non-aggregating
ES|QL rule, and harmless in a hunt. Strings are double-quoted with `\\\\ \\" \\n \\r \\t` escapes (the only
escapes ES|QL decodes; other characters are literal). LIKE uses `*`/`?` with `\\` escapes, RLIKE Lucene
regexps. IPs and dates are converted explicitly (TO_IP, TO_DATETIME). Note: ES|QL comparisons against a
multi-valued field yield null (no match, with a warning); ECS fields such as `host.ip` can be multi-valued.
"""

from __future__ import annotations

import re

from ctibridge.patterns.fieldmap import FieldMap, TargetField
from ctibridge.patterns.lowering import Cidr, Compare, Equals, Exists, Not, Regex, Value, Wildcard
from ctibridge.patterns.regex import ANY_CHARS, lucene_regex
from ctibridge.patterns.render.base import RANGE_OPERATORS, TextRenderer

DEFAULT_INDEX = "logs-*"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PLAIN_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_INDEX = re.compile(r"[A-Za-z0-9_.*:+-]+(?:,[A-Za-z0-9_.*:+-]+)*\Z")
_LIKE_SPECIAL = frozenset("*?\\")


def quote(value: str) -> str:
    """The one escaping function for ES|QL string literals."""
    return '"' + "".join(_ESCAPES.get(char, char) for char in value) + '"'


def escape_like(text: str) -> str:
    """The one escaping function for literal text inside a LIKE pattern (quoted afterwards)."""
    return "".join("\\" + char if char in _LIKE_SPECIAL else char for char in text)


class EsqlRenderer(TextRenderer):
    language = "esql"
    and_word = "AND"
    or_word = "OR"

    def __init__(self, field_map: FieldMap | None = None, *, index: str | None = None) -> None:
        super().__init__(field_map, index=index or DEFAULT_INDEX)
        if not _INDEX.match(self.index or ""):
            raise ValueError(f"invalid ES|QL index pattern {self.index!r}")

    def query(self, condition: object) -> str:
        return f"FROM {self.index} METADATA _id, _index, _version | WHERE {condition}"

    def name(self, field: TargetField) -> str:
        return field.name if _PLAIN_NAME.match(field.name) else f"`{field.name}`"

    def value(self, field: TargetField, value: Value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if not isinstance(value, str):
            return f"TO_DATETIME({quote(value.text)})"
        if field.type == "ip":
            return f"TO_IP({quote(value)})"
        return quote(value)

    def equals(self, node: Equals) -> str:
        values = [self.value(node.field, value) for value in node.values]
        if len(values) == 1:
            return f"{self.name(node.field)} == {values[0]}"
        return f"{self.name(node.field)} IN ({', '.join(values)})"

    def compare(self, node: Compare) -> str:
        return f"{self.name(node.field)} {RANGE_OPERATORS[node.op]} {self.value(node.field, node.value)}"

    def wildcard(self, node: Wildcard) -> str:
        pattern = "".join(
            escape_like(part) if isinstance(part, str) else "*" if part is ANY_CHARS else "?"
            for part in node.parts
        )
        return f"{self.name(node.field)} LIKE {quote(pattern)}"

    def regex(self, node: Regex) -> str:
        return f"{self.name(node.field)} RLIKE {quote(lucene_regex(node.pattern))}"

    def cidr(self, node: Cidr) -> str:
        return f"CIDR_MATCH({self.name(node.field)}, {quote(node.network)})"

    def exists(self, node: Exists) -> str:
        return f"{self.name(node.field)} IS NOT NULL"

    def negate(self, node: Not) -> str:
        return f"NOT ({self.predicate(node.operand)})"
