"""Lucene syntax as used by Elasticsearch / OpenSearch `query_string` (Kibana "lucene" queries).

Values are always quoted phrases (escape `\\\\` and `"`): inside quotes wildcards and operators are
literal. LIKE needs wildcards, so it is written unquoted with every reserved character and all whitespace
backslash-escaped; `<` and `>` cannot be escaped in query_string, so such values (and line feeds) use a
`/regexp/`.
A purely negative group matches nothing in Lucene, so negations are always paired with a positive clause.
"""

from __future__ import annotations

from ctibridge.patterns.ast import Op
from ctibridge.patterns.fieldmap import TargetField
from ctibridge.patterns.lowering import All, Cidr, Compare, Equals, Exists, Not, Regex, Value, Wildcard
from ctibridge.patterns.regex import ANY_CHARS, like_to_lucene, lucene_regex
from ctibridge.patterns.render.base import TextRenderer

# query_string reserved characters, plus `'` which some Lucene tooling (luqum) treats as a quote.
_RESERVED = frozenset("+-=&|!(){}[]^\"~*?:\\/'")
# `<`/`>` cannot be escaped in query_string; an escaped line feed is valid Lucene but trips other parsers
# (luqum, used to validate), so values with any of these use the /regexp/ form.
_REGEX_ONLY = frozenset("<>\n")


def quote(value: str) -> str:
    """The one escaping function for Lucene phrases."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_term(text: str) -> str:
    """The one escaping function for unquoted Lucene terms (field names, wildcard values)."""
    return "".join("\\" + char if char in _RESERVED or char.isspace() else char for char in text)


class LuceneRenderer(TextRenderer):
    language = "lucene"
    and_word = "AND"
    or_word = "OR"

    def value(self, value: Value) -> str:
        if isinstance(value, bool):
            return quote("true" if value else "false")
        if isinstance(value, int | float):
            return quote(repr(value))
        return quote(value if isinstance(value, str) else value.text)

    def name(self, field: TargetField) -> str:
        return escape_term(field.name)

    def equals(self, node: Equals) -> str:
        values = [self.value(value) for value in node.values]
        joined = values[0] if len(values) == 1 else "(" + " OR ".join(values) + ")"
        return f"{self.name(node.field)}:{joined}"

    def compare(self, node: Compare) -> str:
        value = self.value(node.value)
        bounds = {
            Op.GT: f"{{{value} TO *]",
            Op.GE: f"[{value} TO *]",
            Op.LT: f"[* TO {value}}}",
            Op.LE: f"[* TO {value}]",
        }
        return f"{self.name(node.field)}:{bounds[node.op]}"

    def wildcard(self, node: Wildcard) -> str:
        if any(isinstance(part, str) and not _REGEX_ONLY.isdisjoint(part) for part in node.parts):
            return f"{self.name(node.field)}:/{like_to_lucene(node.parts)}/"
        pieces = [
            escape_term(part) if isinstance(part, str) else "*" if part is ANY_CHARS else "?"
            for part in node.parts
        ]
        return f"{self.name(node.field)}:{''.join(pieces)}"

    def regex(self, node: Regex) -> str:
        return f"{self.name(node.field)}:/{lucene_regex(node.pattern)}/"

    def cidr(self, node: Cidr) -> str:
        return f"{self.name(node.field)}:{quote(node.network)}"

    def exists(self, node: Exists) -> str:
        return f"_exists_:{self.name(node.field)}"

    def negate(self, node: Not) -> str:
        return f"(*:* AND NOT {self.operand(node.operand)})"

    def conjunction(self, node: All) -> str:
        positives = [self.operand(op) for op in node.operands if not isinstance(op, Not)]
        negatives = [self.operand(op.operand) for op in node.operands if isinstance(op, Not)]
        if not positives:
            positives = ["*:*"]
        return " AND ".join(positives + [f"NOT {text}" for text in negatives])
