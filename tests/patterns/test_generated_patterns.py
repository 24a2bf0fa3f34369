"""Whole random patterns (every operator, nesting, qualifiers, hostile values) in every language:
EQL parses with `eql` (Elasticsearch mode), Lucene with luqum, OpenSearch is JSON whose term leaves are
the input values, and the other languages are structurally sound (strings close, brackets balance)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import eql
from hypothesis import HealthCheck, given, settings
from luqum.parser import parser as luqum_parser

from ctibridge.patterns import Untranslatable, renderer_for, to_stix, translate
from ctibridge.patterns.ast import Connective, Op, Pattern
from ctibridge.patterns.stix import _comparisons
from tests.patterns.generators import GENERATED_MAP, KUSTO_GENERATED_MAP, patterns
from tests.patterns.helpers import QUOTE_ESCAPES, c_style_string, kql_quoted

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SINGLE_EVENT = (Connective.OR,)


def _translate(pattern: Pattern, target: str) -> Any:
    field_map = KUSTO_GENERATED_MAP if target == "kusto" else GENERATED_MAP
    try:
        return translate(to_stix(pattern), target=target, field_map=field_map)
    except Untranslatable as exc:
        return exc


def _term_leaves(clause: Any) -> Iterator[Any]:
    if isinstance(clause, dict):
        for key, value in clause.items():
            if key == "term":
                yield from value.values()
            elif key == "terms":
                for values in value.values():
                    yield from values
            else:
                yield from _term_leaves(value)
    elif isinstance(clause, list):
        for item in clause:
            yield from _term_leaves(item)


def _input_values(pattern: Pattern) -> set[Any]:
    values: set[Any] = set()
    for comparison in _comparisons(pattern.expression):
        if comparison.op in (Op.EQ, Op.IN, Op.ISSUBSET, Op.ISSUPERSET):
            items = comparison.value if isinstance(comparison.value, tuple) else (comparison.value,)
            values.update(items)
    return values


def _structure_ok(query: str, read_string: Any) -> None:
    """Skip string literals with the language's decoder (and KQL's backslash escapes outside strings);
    brackets outside them must balance."""
    depth, position = 0, 0
    while position < len(query):
        char = query[position]
        if char == "\\":
            position += 2
            continue
        if char == '"':
            _, position = read_string(query, position)
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0, query
        position += 1
    assert depth == 0, query


def _kql_string(query: str, start: int) -> tuple[str, int]:
    position = start + 1
    while query[position] != '"':
        position += 2 if query[position] == "\\" else 1
    return kql_quoted(query[start + 1 : position]), position + 1


@SETTINGS
@given(pattern=patterns(SINGLE_EVENT))
def test_single_event_patterns_render_valid_queries(pattern: Pattern) -> None:
    outcomes = {
        target: _translate(pattern, target)
        for target in ("kql", "lucene", "eql", "esql", "opensearch", "kusto")
    }

    eql_query = outcomes["eql"]
    if not isinstance(eql_query, Untranslatable):
        with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
            eql.parse_query(eql_query)

    lucene = outcomes["lucene"]
    if not isinstance(lucene, Untranslatable):
        luqum_parser.parse(lucene)

    clause = outcomes["opensearch"]
    if not isinstance(clause, Untranslatable):
        assert json.loads(json.dumps(clause)) == clause
        allowed = _input_values(pattern)
        for leaf in _term_leaves(clause):
            assert leaf in allowed or str(leaf) in {str(value) for value in allowed}, leaf

    if not isinstance(outcomes["kql"], Untranslatable):
        _structure_ok(outcomes["kql"], _kql_string)
    for target in ("esql", "kusto"):
        if not isinstance(outcomes[target], Untranslatable):
            _structure_ok(outcomes[target], lambda query, start: c_style_string(query, start, QUOTE_ESCAPES))


@SETTINGS
@given(pattern=patterns((Connective.OR, Connective.FOLLOWEDBY)))
def test_eql_sequences_parse(pattern: Pattern) -> None:
    query = _translate(pattern, "eql")
    if isinstance(query, Untranslatable):
        return
    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        eql.parse_query(query)


def test_generated_patterns_are_mostly_translatable() -> None:
    """Guard against the property tests above passing vacuously."""
    sample = [
        "[url:value = 'a' OR file:name LIKE '%x_'] OR [ipv4-addr:value ISSUBSET '10.1.0.0/16']",
        "[network-traffic:dst_port NOT IN (1, 2) AND x-flag:on = true]",
        "[domain-name:value MATCHES '^a.*b$'] START t'2020-01-01T00:00:00Z' STOP t'2021-01-01T00:00:00Z'",
    ]
    for text in sample:
        for target in ("lucene", "esql", "opensearch", "kusto"):
            field_map = KUSTO_GENERATED_MAP if target == "kusto" else GENERATED_MAP
            assert translate(text, target=target, field_map=field_map)
    assert renderer_for("eql", GENERATED_MAP) is renderer_for("eql", GENERATED_MAP)
