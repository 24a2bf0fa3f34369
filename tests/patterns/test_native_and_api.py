"""Native SIEM-language indicators pass through unchanged after a syntax check; API argument handling."""

from __future__ import annotations

import re

import pytest

from ctibridge.patterns import (
    SOURCES,
    TARGETS,
    PatternError,
    Untranslatable,
    parse_stix,
    renderer_for,
    translate,
)


@pytest.mark.parametrize(
    ("query", "language"),
    [
        ('process.name: "cmd.exe" and not user.name: (a or "b c")', "kql"),
        ('process.name:"cmd.exe" AND NOT user.name:(a OR "b c") AND x:/re\\/x/', "lucene"),
        (
            'sequence by host.id [process where process.name : "x*"] [network where ?destination.port == 4]',
            "eql",
        ),
        ('FROM logs-* | WHERE process.name == "a(" AND `odd-name` == """raw "x" (""" | LIMIT 5', "esql"),
    ],
)
def test_native_queries_pass_through_unchanged(query: str, language: str) -> None:
    assert translate(query, source=language, target=language) == query


def test_lucene_can_run_as_an_opensearch_query_string() -> None:
    assert translate("a:b AND c:d", source="lucene", target="opensearch") == {
        "query_string": {"query": "a:b AND c:d"}
    }


@pytest.mark.parametrize(
    ("query", "language", "message"),
    [
        ("a:(b", "lucene", "invalid Lucene query"),
        ('a:"b', "lucene", "invalid Lucene query"),
        ('any where "x"', "eql", "invalid EQL query"),
        ("process where x ==", "eql", "invalid EQL query"),
        ('a: "b', "kql", "unterminated string"),
        ("a: (b or c", "kql", "unclosed '('"),
        ("a: b)", "kql", "unbalanced ')'"),
        ("a: b\x00", "kql", "control characters"),
        ("  ", "kql", "empty kql query"),
        ('FROM x | WHERE a == "b', "esql", "unterminated string"),
        ("FROM x | WHERE `a == 1", "esql", "unterminated backtick"),
        ('FROM x | WHERE a == """b', "esql", "unterminated triple-quoted"),
        ("ROW a = 1", "esql", "must start with FROM"),
    ],
)
def test_invalid_native_queries(query: str, language: str, message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)) as raised:
        translate(query, source=language, target=language)
    assert not isinstance(raised.value, Untranslatable)


def test_native_queries_are_not_converted_between_languages() -> None:
    with pytest.raises(Untranslatable, match="passed through unchanged, it is not converted to kusto"):
        translate("a: b", source="kql", target="kusto")


def test_unknown_source_or_target() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        translate("x", source="splunk", target="kql")
    with pytest.raises(ValueError, match="unknown target"):
        translate("[url:value = 'x']", target="splunk")
    assert SOURCES == ("stix", "sigma", "kql", "lucene", "eql", "esql")
    assert TARGETS == ("kql", "lucene", "eql", "esql", "opensearch", "kusto")


def test_result_types() -> None:
    assert isinstance(translate("[url:value = 'x']", target="opensearch"), dict)
    for target in ("kql", "lucene", "eql", "esql", "kusto"):
        assert isinstance(translate("[url:value = 'x']", target=target), str)


def test_renderers_are_shared_for_the_same_configuration() -> None:
    assert renderer_for("kql") is renderer_for("kql")
    assert renderer_for("esql", index="a-*") is not renderer_for("esql", index="b-*")
    overridden = renderer_for("kql", {"url:value": ["u"]})
    assert overridden.render(parse_stix("[url:value = 'x']")) == 'u: "x"'
    assert renderer_for("kql").render(parse_stix("[url:value = 'x']")) == 'url.original: "x" or url.full: "x"'


def test_index_is_ignored_where_the_language_has_no_index() -> None:
    assert (
        translate("[url:value = 'x']", target="kql", index="whatever") == 'url.original: "x" or url.full: "x"'
    )
