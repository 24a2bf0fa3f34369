"""Hostile values survive every language as one literal: decoded back exactly, nothing leaking out.

Each language is checked with an independent decoder from helpers.py, and additionally with the real
parser where one exists offline (eql in Elasticsearch mode, luqum, json).
"""

from __future__ import annotations

import json
import re
from typing import Any

import eql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from luqum.parser import parser as luqum_parser
from luqum.tree import Phrase, Regex, SearchField, Word

from ctibridge.patterns import PatternError, Untranslatable, translate
from tests.patterns.helpers import (
    KUSTO_SINGLE_FIELD_MAP,
    ONE,
    QUOTE_ESCAPES,
    SINGLE_FIELD_MAP,
    WILD,
    c_style_string,
    expected_like_tokens,
    hostile_text,
    kql_quoted,
    kql_unquoted,
    like_pattern,
    like_tokens,
    lucene_term_tokens,
    lucene_unescape,
    stix_string,
)

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# What JavaScript's String.prototype.trim removes (Kibana trims unquoted KQL values): ECMA-262 WhiteSpace
# and LineTerminator code points.
JS_TRIM = frozenset(" \t\n\r\v\f\u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(code) for code in range(0x2000, 0x200B)
}
ESQL_PREFIX = "FROM logs-* METADATA _id, _index, _version | WHERE "


def render(pattern: str, target: str) -> Any:
    field_map = KUSTO_SINGLE_FIELD_MAP if target == "kusto" else SINGLE_FIELD_MAP
    return translate(pattern, target=target, field_map=field_map)


def parse_eql(query: str) -> eql.ast.PipedQuery:
    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        return eql.parse_query(query)


def eql_condition(query: str) -> eql.ast.Expression:
    return parse_eql(query).first.query


# --- equality -------------------------------------------------------------------------------------


@SETTINGS
@given(value=hostile_text)
def test_equality_round_trips_in_every_language(value: str) -> None:
    pattern = f"[url:value = {stix_string(value)}]"

    kql = render(pattern, "kql")
    match = re.fullmatch(r'f: "(.*)"', kql, re.S)
    assert match, kql
    assert kql_quoted(match.group(1)) == value

    lucene = render(pattern, "lucene")
    tree = luqum_parser.parse(lucene)
    assert isinstance(tree, SearchField) and tree.name == "f" and isinstance(tree.expr, Phrase)
    assert lucene_unescape(tree.expr.value[1:-1]) == value
    assert tree.expr.unescaped_value[1:-1] == value

    condition = eql_condition(render(pattern, "eql"))
    assert isinstance(condition, eql.ast.Comparison) and condition.comparator == "=="
    assert condition.left == eql.ast.Field("f") and condition.right == eql.ast.String(value)
    eql_text = render(pattern, "eql")
    decoded, end = c_style_string(eql_text, len("any where ?f == "), QUOTE_ESCAPES)
    assert (decoded, eql_text[end:]) == (value, "")

    esql = render(pattern, "esql")
    assert esql.startswith(ESQL_PREFIX + "f == ")
    decoded, end = c_style_string(esql, len(ESQL_PREFIX + "f == "), QUOTE_ESCAPES)
    assert (decoded, esql[end:]) == (value, "")

    opensearch = render(pattern, "opensearch")
    assert json.loads(json.dumps(opensearch)) == {"term": {"f": value}}

    kusto = render(pattern, "kusto")
    decoded, end = c_style_string(kusto, len("T | where f == "), QUOTE_ESCAPES)
    assert (kusto[: len("T | where f == ")], decoded, kusto[end:]) == ("T | where f == ", value, "")


@SETTINGS
@given(values=st.lists(hostile_text, min_size=2, max_size=4, unique=True))
def test_in_lists_keep_every_value_separate(values: list[str]) -> None:
    pattern = "[url:value IN (" + ", ".join(stix_string(v) for v in values) + ")]"

    kql = render(pattern, "kql")
    bodies = re.findall(r'"((?:[^"\\]|\\.)*)"', kql, re.S)
    assert [kql_quoted(body) for body in bodies] == values
    assert re.sub(r'"(?:[^"\\]|\\.)*"', "V", kql, flags=re.S) == "f: (" + " or ".join("V" * len(values)) + ")"

    tree = luqum_parser.parse(render(pattern, "lucene"))
    phrases = [node for node in tree.expr.expr.children]
    assert [lucene_unescape(p.value[1:-1]) for p in phrases] == values

    condition = eql_condition(render(pattern, "eql"))
    assert isinstance(condition, eql.ast.InSet)
    assert [item.value for item in condition.container] == values

    assert render(pattern, "opensearch") == {"terms": {"f": values}}

    kusto = render(pattern, "kusto")
    position, decoded = len("T | where f in ("), []
    for index in range(len(values)):
        value, position = c_style_string(kusto, position, QUOTE_ESCAPES)
        decoded.append(value)
        separator = ")" if index == len(values) - 1 else ", "
        assert kusto[position : position + len(separator)] == separator
        position += len(separator)
    assert decoded == values and position == len(kusto)


@SETTINGS
@given(value=hostile_text)
def test_negated_equality_parses_and_keeps_value(value: str) -> None:
    pattern = f"[url:value != {stix_string(value)}]"
    condition = eql_condition(render(pattern, "eql"))
    assert isinstance(condition, eql.ast.And)
    assert condition.terms[1] == eql.ast.Comparison(eql.ast.Field("f"), "!=", eql.ast.String(value))
    tree = luqum_parser.parse(render(pattern, "lucene"))
    assert lucene_unescape(tree.children[1].a.expr.value[1:-1]) == value
    clause = json.loads(json.dumps(render(pattern, "opensearch")))
    assert clause == {"bool": {"filter": [{"exists": {"field": "f"}}], "must_not": [{"term": {"f": value}}]}}


# --- LIKE -----------------------------------------------------------------------------------------


def _lucene_regex_tokens(regex: str) -> list[str]:
    """Our LIKE -> Lucene regexp output only uses `\\x`, `.*` and `.`; decode it back to tokens."""
    tokens, i = [], 0
    while i < len(regex):
        if regex[i] == "\\":
            tokens.append(regex[i + 1])
            i += 2
        elif regex.startswith(".*", i):
            tokens.append(WILD)
            i += 2
        elif regex[i] == ".":
            tokens.append(ONE)
            i += 1
        else:
            assert regex[i] not in '?+*|{}[]()"#@&<>~/', regex
            tokens.append(regex[i])
            i += 1
    return tokens


@SETTINGS
@given(parts=like_pattern)
def test_like_keeps_literals_literal(parts: list[str]) -> None:
    value = "".join(parts)
    pattern = f"[url:value LIKE {stix_string(value)}]"
    expected = expected_like_tokens(value)
    literals = "".join(p for p in parts if p not in ("%", "_"))

    # KQL: unquoted, `*` only; no single-char wildcard; values are trimmed.
    trimmed_edge = (parts[0] not in ("%", "_") and parts[0][0] in JS_TRIM) or (
        parts[-1] not in ("%", "_") and parts[-1][-1] in JS_TRIM
    )
    if "_" in value or trimmed_edge:
        with pytest.raises(Untranslatable):
            render(pattern, "kql")
    else:
        kql = render(pattern, "kql")
        assert kql.startswith("f: ")
        assert kql_unquoted(kql[3:]) == expected

    lucene = render(pattern, "lucene")
    tree = luqum_parser.parse(lucene)
    assert isinstance(tree, SearchField) and tree.name == "f"
    if set("<>\n") & set(literals):
        assert isinstance(tree.expr, Regex)
        assert _lucene_regex_tokens(tree.expr.value[1:-1]) == expected
    else:
        assert isinstance(tree.expr, Word)
        assert lucene_term_tokens(lucene[2:]) == expected

    condition = eql_condition(render(pattern, "eql"))
    assert isinstance(condition, eql.ast.FunctionCall)
    if condition.name == "wildcard":
        assert not set("*?\\") & set(literals)
        assert like_tokens(condition.arguments[1].value, escape_char="\x00") == expected
    else:
        assert condition.name == "match"
        assert _lucene_regex_tokens(condition.arguments[1].value) == expected

    esql = render(pattern, "esql")
    decoded, end = c_style_string(esql, len(ESQL_PREFIX + "f LIKE "), QUOTE_ESCAPES)
    assert end == len(esql) and like_tokens(decoded) == expected

    clause = json.loads(json.dumps(render(pattern, "opensearch")))
    assert like_tokens(clause["wildcard"]["f"]["value"]) == expected

    kusto = render(pattern, "kusto")
    operator, _, rest = kusto.removeprefix("T | where f ").partition(" ")
    if operator == "matches":
        decoded, end = c_style_string(rest, len("regex "), QUOTE_ESCAPES)
        assert decoded.startswith("(?s)^") and decoded.endswith("$") and end == len(rest)
        assert _lucene_regex_tokens(decoded[5:-1]) == expected  # same escaping shape as the Lucene form
    else:
        decoded, end = c_style_string(rest, 0, QUOTE_ESCAPES)
        shapes = {
            "startswith_cs": [*decoded, WILD],
            "endswith_cs": [WILD, *decoded],
            "contains_cs": [WILD, *decoded, WILD],
        }
        assert shapes[operator] == expected and end == len(rest)


# --- MATCHES --------------------------------------------------------------------------------------


@SETTINGS
@given(literal=hostile_text)
def test_escaped_literal_regex_stays_literal(literal: str) -> None:
    """MATCHES with an escaped literal: every target regex matches the literal and nothing broader."""
    pcre = re.escape(literal)
    pattern = f"[url:value MATCHES {stix_string(pcre)}]"
    lucene_body = luqum_parser.parse(render(pattern, "lucene")).expr.value[1:-1]
    eql_body = eql_condition(render(pattern, "eql")).arguments[1].value
    opensearch_body = render(pattern, "opensearch")["regexp"]["f"]["value"]
    assert eql_body == opensearch_body == lucene_body
    esql = render(pattern, "esql")
    esql_body, _ = c_style_string(esql, len(ESQL_PREFIX + "f RLIKE "), QUOTE_ESCAPES)
    assert esql_body == opensearch_body
    kusto_body, _ = c_style_string(render(pattern, "kusto"), len("T | where f matches regex "), QUOTE_ESCAPES)
    # Python reads both dialects the same way for this output (escaped punctuation, classes, `.`).
    for subject in (literal, "x" + literal + "y", literal[:-1], literal + literal):
        expected = re.search(pcre, subject) is not None
        assert (re.fullmatch(opensearch_body, subject, re.S) is not None) == expected
        assert (re.search(kusto_body, subject) is not None) == expected


def test_invalid_regex_is_a_pattern_error() -> None:
    with pytest.raises(PatternError, match="invalid regular expression"):
        render("[url:value MATCHES 'a(b']", "lucene")
