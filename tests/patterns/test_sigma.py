"""Sigma rules through pySigma: right pipeline per target, offline, errors typed."""

from __future__ import annotations

import socket
from typing import Any

import eql
import pytest

from ctibridge.patterns import PatternError, Untranslatable, translate

WINDOWS_RULE = """
title: Suspicious cmd
id: 5f4c2d7e-1e2b-4c3d-9a8b-123456789abc
status: test
logsource:
  product: windows
  category: process_creation
detection:
  selection:
    Image|endswith: '\\cmd.exe'
    CommandLine|contains: 'a"b'
  condition: selection
level: high
"""
LINUX_RULE = """
title: Shell
logsource: {product: linux, category: process_creation}
detection:
  selection: {Image: /bin/sh}
  condition: selection
"""
UNMAPPED_FIELD_RULE = """
title: Unmapped
logsource: {product: windows, category: process_creation}
detection:
  selection: {DestinationIp: 10.0.0.1}
  condition: selection
"""
KEYWORD_RULE = """
title: Keywords
logsource: {product: windows, category: process_creation}
detection:
  keywords: [evil]
  condition: keywords
"""


def test_lucene_uses_the_ecs_windows_pipeline() -> None:
    assert translate(WINDOWS_RULE, source="sigma", target="lucene") == (
        'process.executable.caseless:*\\\\cmd.exe AND process.command_line:*a\\"b*'
    )


def test_eql_output_is_valid_elasticsearch_eql() -> None:
    query = translate(WINDOWS_RULE, source="sigma", target="eql")
    assert query == 'any where process.executable.caseless:"*\\\\cmd.exe" and process.command_line:"*a\\"b*"'
    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        eql.parse_query(query)


def test_esql_takes_the_index_from_the_argument() -> None:
    query = translate(WINDOWS_RULE, source="sigma", target="esql", index="logs-endpoint.events.*")
    assert isinstance(query, str)
    assert query.startswith("from logs-endpoint.events.* metadata _id, _index, _version | where ")
    assert 'ends_with(process.executable.caseless, "\\\\cmd.exe")' in query


def test_opensearch_returns_a_dsl_clause() -> None:
    clause: Any = translate(WINDOWS_RULE, source="sigma", target="opensearch")
    query_string = clause["bool"]["must"][0]["query_string"]
    assert (
        query_string["query"] == 'process.executable.caseless:*\\\\cmd.exe AND process.command_line:*a\\"b*'
    )


def test_kusto_uses_the_defender_xdr_pipeline_and_index_as_table() -> None:
    query = translate(WINDOWS_RULE, source="sigma", target="kusto")
    assert isinstance(query, str) and query.startswith("DeviceProcessEvents\n| where ")
    assert 'FolderPath endswith "\\\\cmd.exe"' in query and "ProcessCommandLine" in query
    assert translate(WINDOWS_RULE, source="sigma", target="kusto", index="MyTable").startswith("MyTable")


def test_one_rule_text_converts_for_every_target_in_turn() -> None:
    """Pipelines mutate parsed rules: converting for a second backend must still work."""
    results = [translate(WINDOWS_RULE, source="sigma", target=t) for t in ("lucene", "eql", "esql", "lucene")]
    assert results[0] == results[3]


def test_conversion_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("network access during Sigma conversion")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for target in ("lucene", "eql", "esql", "opensearch", "kusto"):
        assert translate(WINDOWS_RULE, source="sigma", target=target)


def test_kql_has_no_sigma_backend() -> None:
    with pytest.raises(Untranslatable, match="no Kibana KQL backend"):
        translate(WINDOWS_RULE, source="sigma", target="kql")


@pytest.mark.parametrize("target", ["lucene", "eql", "esql", "opensearch"])
def test_rules_without_an_ecs_mapping_are_refused(target: str) -> None:
    with pytest.raises(Untranslatable, match="no ECS field mapping for Sigma logsource product 'linux'"):
        translate(LINUX_RULE, source="sigma", target=target)


def test_backend_errors_become_untranslatable() -> None:
    with pytest.raises(Untranslatable, match="invalid query"):
        translate(KEYWORD_RULE, source="sigma", target="eql")  # the backend emits `any where "evil"`
    with pytest.raises(Untranslatable, match="cannot be converted to esql"):
        translate(KEYWORD_RULE, source="sigma", target="esql")
    with pytest.raises(Untranslatable, match="cannot be converted to kusto"):
        translate(UNMAPPED_FIELD_RULE, source="sigma", target="kusto")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("title: x\ndetection: [", "invalid Sigma rule"),
        ("title: x\nlogsource: {product: windows}\ndetection: {condition: sel}\n", "invalid Sigma rule"),
        (WINDOWS_RULE + "\n---\n" + LINUX_RULE, "expected exactly one Sigma detection rule"),
        ("just text", "invalid Sigma rule"),
    ],
)
def test_invalid_rules_are_pattern_errors(text: str, message: str) -> None:
    with pytest.raises(PatternError, match=message) as raised:
        translate(text, source="sigma", target="lucene")
    assert not isinstance(raised.value, Untranslatable)
