"""Kusto (KQL for Microsoft Sentinel and Defender XDR advanced hunting).

Map fields are `Table.Column`; without an `index` (table or function) the query reads
`union isfuzzy=true <tables>` so one indicator can hit process, file and network tables at once.
Strings are double-quoted; the lexer (Kusto.Language LexicalGrammar) forbids raw CR/LF and decodes
`\\\\ \\" \\n \\r \\t`, which we escape. `==`, `in`, `*_cs` operators are case-sensitive like STIX; string
ordering uses strcmp(); CIDR uses ipv4_is_in_range / ipv6_is_in_range; regexes are RE2.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import replace

from ctibridge.patterns.errors import Untranslatable
from ctibridge.patterns.fieldmap import FieldMap, TargetField
from ctibridge.patterns.lowering import (
    All,
    AnyOf,
    Cidr,
    Compare,
    Equals,
    Exists,
    Not,
    Predicate,
    Regex,
    Sequence,
    Value,
    Wildcard,
    all_of,
    any_of,
)
from ctibridge.patterns.regex import ANY_CHARS, like_to_re2, re2_regex
from ctibridge.patterns.render.base import RANGE_OPERATORS, TextRenderer

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS = frozenset(
    "and or not in has contains where project extend union let datetime timespan true false null by on as "  # noqa: SIM905
    "between matches regex startswith endswith".split()
)


def quote(value: str) -> str:
    """The one escaping function for Kusto string literals."""
    return '"' + "".join(_ESCAPES.get(char, char) for char in value) + '"'


class KustoRenderer(TextRenderer):
    language = "kusto"
    default_field_map = "microsoft"
    and_word = "and"
    or_word = "or"

    def __init__(self, field_map: FieldMap | None = None, *, index: str | None = None) -> None:
        super().__init__(field_map, index=index)
        if index is not None and not _IDENTIFIER.match(index):
            raise ValueError(f"invalid Kusto table name {index!r}")

    def render_lowered(self, lowered: Predicate | Sequence) -> str:
        if isinstance(lowered, Sequence):
            return str(self.sequence(lowered))
        tables = list(dict.fromkeys(table for table in map(_table, _fields(lowered)) if table))
        condition = self.predicate(_by_column(lowered))
        if self.index is not None:
            return f"{self.index} | where {condition}"
        if not tables:
            raise Untranslatable("Kusto needs a table: pass index, or map fields as Table.Column")
        if len(tables) == 1:
            return f"{tables[0]} | where {condition}"
        return f"union isfuzzy=true {', '.join(tables)} | where {condition}"

    def name(self, field: TargetField) -> str:
        column = field.name
        if _IDENTIFIER.match(column) and column.lower() not in _KEYWORDS:
            return column
        return "['" + column + "']"

    def value(self, value: Value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str):
            return quote(value)
        return f"datetime({value.text})"

    def equals(self, node: Equals) -> str:
        values = [self.value(value) for value in node.values]
        if len(values) == 1:
            return f"{self.name(node.field)} == {values[0]}"
        return f"{self.name(node.field)} in ({', '.join(values)})"

    def compare(self, node: Compare) -> str:
        if isinstance(node.value, str) and node.field.type != "ip":
            return f"strcmp({self.name(node.field)}, {self.value(node.value)}) {RANGE_OPERATORS[node.op]} 0"
        if node.field.type == "ip":
            raise Untranslatable("Kusto stores IP addresses as strings; ordering them is not exact")
        return f"{self.name(node.field)} {RANGE_OPERATORS[node.op]} {self.value(node.value)}"

    def wildcard(self, node: Wildcard) -> str:
        name, parts = self.name(node.field), node.parts
        if len(parts) == 2 and isinstance(parts[0], str) and parts[1] is ANY_CHARS:
            return f"{name} startswith_cs {quote(parts[0])}"
        if len(parts) == 2 and parts[0] is ANY_CHARS and isinstance(parts[1], str):
            return f"{name} endswith_cs {quote(parts[1])}"
        if len(parts) == 3 and parts[0] is ANY_CHARS and isinstance(parts[1], str) and parts[2] is ANY_CHARS:
            return f"{name} contains_cs {quote(parts[1])}"
        return f"{name} matches regex {quote(like_to_re2(parts))}"

    def regex(self, node: Regex) -> str:
        return f"{self.name(node.field)} matches regex {quote(re2_regex(node.pattern))}"

    def cidr(self, node: Cidr) -> str:
        function = (
            "ipv4_is_in_range" if ipaddress.ip_network(node.network).version == 4 else "ipv6_is_in_range"
        )
        return f"{function}({self.name(node.field)}, {quote(node.network)})"

    def exists(self, node: Exists) -> str:
        function = "isnotempty" if node.field.type in ("keyword", "ip") else "isnotnull"
        return f"{function}({self.name(node.field)})"

    def negate(self, node: Not) -> str:
        return f"not({self.predicate(node.operand)})"


def _table(field: TargetField) -> str | None:
    return _split_name(field.name)[0]


def _split_name(name: str) -> tuple[str | None, str]:
    """`Table.Column` or `Column`; anything else is an ECS-style name that would silently lose a part."""
    table, dot, column = name.rpartition(".")
    if (dot and not _IDENTIFIER.match(table)) or not _IDENTIFIER.match(column):
        raise ValueError(f"Kusto field {name!r} must be written Column or Table.Column")
    return (table or None), column


def _by_column(predicate: Predicate) -> Predicate:
    """Drop the table part of `Table.Column` names: tests of one column in several tables become one."""
    if isinstance(predicate, All):
        return all_of(_by_column(operand) for operand in predicate.operands)
    if isinstance(predicate, AnyOf):
        return any_of(_by_column(operand) for operand in predicate.operands)
    if isinstance(predicate, Not):
        return Not(_by_column(predicate.operand))
    field = predicate.field
    return replace(predicate, field=replace(field, name=_split_name(field.name)[1]))


def _fields(predicate: Predicate) -> Iterator[TargetField]:
    if isinstance(predicate, All | AnyOf):
        for operand in predicate.operands:
            yield from _fields(operand)
    elif isinstance(predicate, Not):
        yield from _fields(predicate.operand)
    else:
        yield predicate.field
