"""Indicators already written in a SIEM language: checked, never rewritten.

Lucene is parsed with luqum and EQL with the `eql` package in Elasticsearch mode. KQL and ES|QL have no
offline parser, so they get a structural check (balanced quotes, brackets and backticks, no control
characters). Passing this check says the text is well formed, not that it is safe to deploy: untrusted
query text should be reviewed before it becomes an enabled rule.
"""

from __future__ import annotations

import re
from typing import Any

import eql
from luqum.exceptions import ParseError
from luqum.parser import parser as luqum_parser

from ctibridge.patterns.errors import PatternError, Untranslatable

__all__ = ["NATIVE_LANGUAGES", "check_native", "pass_through"]

NATIVE_LANGUAGES = ("kql", "lucene", "eql", "esql")
MAX_QUERY_LENGTH = 100_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PAIRS = {")": "(", "]": "[", "}": "{"}


def pass_through(query: str, source: str, target: str) -> str | dict[str, Any]:
    """Return the query unchanged for its own language (Lucene may also run as an OpenSearch query_string)."""
    check_native(query, source)
    if source == target:
        return query
    if source == "lucene" and target == "opensearch":
        return {"query_string": {"query": query}}
    raise Untranslatable(f"a {source} query is passed through unchanged, it is not converted to {target}")


def check_native(query: str, language: str) -> None:
    if not isinstance(query, str) or not query.strip():
        raise PatternError(f"empty {language} query")
    if len(query) > MAX_QUERY_LENGTH:
        raise PatternError(f"{language} query longer than {MAX_QUERY_LENGTH} characters")
    if _CONTROL.search(query):
        raise PatternError(f"{language} query contains control characters")
    if language == "lucene":
        try:
            luqum_parser.parse(query)
        except (ParseError, ValueError, TypeError) as exc:
            raise PatternError(f"invalid Lucene query: {exc}") from None
    elif language == "eql":
        try:
            with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
                eql.parse_query(query)
        except eql.EqlError as exc:
            raise PatternError(f"invalid EQL query: {str(exc).strip()}") from None
    elif language == "kql":
        _check_structure(query, language, quotes='"', backticks=False)
    elif language == "esql":
        if not re.match(r"\s*(from|ts)\s", query, re.IGNORECASE):
            raise PatternError("an ES|QL detection query must start with FROM")
        _check_structure(query, language, quotes='"', backticks=True)
    else:
        raise ValueError(f"no native check for {language!r}")


def _check_structure(query: str, language: str, *, quotes: str, backticks: bool) -> None:
    """Quotes (with backslash escapes, and ES|QL triple quotes), backticks and brackets must balance."""
    stack: list[str] = []
    position, length = 0, len(query)
    while position < length:
        char = query[position]
        if char in quotes:
            if query.startswith('"""', position) and language == "esql":
                end = query.find('"""', position + 3)
                if end < 0:
                    raise PatternError(f"unterminated triple-quoted string in {language} query")
                position = end + 3
                continue
            position = _end_of_string(query, position, language)
            continue
        if backticks and char == "`":
            end = query.find("`", position + 1)
            if end < 0:
                raise PatternError(f"unterminated backtick identifier in {language} query")
            position = end + 1
            continue
        if char in "([{":
            stack.append(char)
        elif char in _PAIRS and (not stack or stack.pop() != _PAIRS[char]):
            raise PatternError(f"unbalanced '{char}' in {language} query at offset {position}")
        position += 1
    if stack:
        raise PatternError(f"unclosed '{stack[-1]}' in {language} query")


def _end_of_string(query: str, start: int, language: str) -> int:
    position = start + 1
    while position < len(query):
        char = query[position]
        if char == "\\":
            position += 2
            continue
        if char == query[start]:
            return position + 1
        position += 1
    raise PatternError(f"unterminated string in {language} query")
