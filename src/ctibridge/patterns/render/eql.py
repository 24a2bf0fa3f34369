"""Elasticsearch EQL: `any where ...` for one event, `sequence [..] [..]` for FOLLOWEDBY / REPEATS.

Strings are double-quoted with `\\\\ \\" \\n \\r \\t` escapes. `==` and `in` are exact and case-sensitive
(`:` would make `*` a wildcard). Fields are written `?field` (optional field syntax), because a mapping
usually names fields that some indices lack and plain EQL rejects unknown fields. `like` has no escape
for a literal `*` or `?`, so such LIKE values go through `regex` (Lucene regexp syntax) instead.
Date comparisons (START/STOP, timestamp literals) are not expressible: use the EQL search's time filter.
"""

from __future__ import annotations

import re
from decimal import Decimal

from ctibridge.patterns.errors import Untranslatable
from ctibridge.patterns.fieldmap import FieldMap, TargetField
from ctibridge.patterns.lowering import Cidr, Compare, Equals, Exists, Not, Regex, Sequence, Value, Wildcard
from ctibridge.patterns.regex import ANY_CHARS, like_to_lucene, lucene_regex
from ctibridge.patterns.render.base import RANGE_OPERATORS, TextRenderer

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_LIKE_WILDCARDS = frozenset("*?\\")


def quote(value: str) -> str:
    """The one escaping function for EQL string literals."""
    return '"' + "".join(_ESCAPES.get(char, char) for char in value) + '"'


class EqlRenderer(TextRenderer):
    language = "eql"
    and_word = "and"
    or_word = "or"

    def __init__(
        self, field_map: FieldMap | None = None, *, index: str | None = None, optional_fields: bool = True
    ) -> None:
        super().__init__(field_map, index=index)
        self.optional_fields = optional_fields

    def query(self, condition: object) -> str:
        return f"any where {condition}"

    def sequence(self, sequence: Sequence) -> str:
        steps = " ".join(f"[any where {self.predicate(step)}]" for step in sequence.steps)
        if sequence.maxspan is None:
            return f"sequence {steps}"
        return f"sequence with maxspan={_maxspan(sequence.maxspan)} {steps}"

    def name(self, field: TargetField) -> str:
        name = field.name if _PLAIN_NAME.match(field.name) else f"`{field.name}`"
        return f"?{name}" if self.optional_fields else name

    def value(self, value: Value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str):
            return quote(value)
        raise Untranslatable("EQL cannot compare dates with literals; use the search's time range filter")

    def equals(self, node: Equals) -> str:
        values = [self.value(value) for value in node.values]
        if len(values) == 1:
            return f"{self.name(node.field)} == {values[0]}"
        return f"{self.name(node.field)} in ({', '.join(values)})"

    def compare(self, node: Compare) -> str:
        return f"{self.name(node.field)} {RANGE_OPERATORS[node.op]} {self.value(node.value)}"

    def wildcard(self, node: Wildcard) -> str:
        if any(isinstance(part, str) and not _LIKE_WILDCARDS.isdisjoint(part) for part in node.parts):
            return f"{self.name(node.field)} regex {quote(like_to_lucene(node.parts))}"
        pattern = "".join(
            part if isinstance(part, str) else "*" if part is ANY_CHARS else "?" for part in node.parts
        )
        return f"{self.name(node.field)} like {quote(pattern)}"

    def regex(self, node: Regex) -> str:
        return f"{self.name(node.field)} regex {quote(lucene_regex(node.pattern))}"

    def cidr(self, node: Cidr) -> str:
        return f"cidrMatch({self.name(node.field)}, {quote(node.network)})"

    def exists(self, node: Exists) -> str:
        return f"{self.name(node.field)} != null"

    def negate(self, node: Not) -> str:
        return f"not ({self.predicate(node.operand)})"


def _maxspan(seconds: Decimal) -> str:
    if seconds <= 0:
        raise Untranslatable("WITHIN 0 SECONDS has no EQL maxspan equivalent")
    if seconds == seconds.to_integral_value():
        return f"{int(seconds)}s"
    milliseconds = seconds * 1000
    if milliseconds == milliseconds.to_integral_value():
        return f"{int(milliseconds)}ms"
    raise Untranslatable(f"WITHIN {seconds} SECONDS is finer than EQL's millisecond maxspan")
