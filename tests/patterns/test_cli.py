"""`ctibridge translate` through click's CliRunner on a stand-in group (the real group is elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

from ctibridge.patterns.cli import translate


@click.group()
def cli() -> None:
    """Stand-in for the main ctibridge group."""


cli.add_command(translate)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["translate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_prints_the_query() -> None:
    code, out, err = run("--to", "kql", "[domain-name:value = 'evil.com']")
    assert code == 0 and err == ""
    assert out.startswith('dns.question.name: "evil.com" or url.domain: "evil.com"')
    assert out.endswith("\n")


def test_opensearch_prints_json() -> None:
    code, out, _ = run("--to", "opensearch", "[url:value = 'x']")
    assert code == 0
    assert json.loads(out) == {
        "bool": {
            "should": [{"term": {"data.url": "x"}}, {"term": {"data.office365.MessageURLs": "x"}}],
            "minimum_should_match": 1,
        }
    }


def test_reads_the_pattern_from_a_file(tmp_path: Path) -> None:
    rule = tmp_path / "rule.yml"
    rule.write_text(
        "title: t\nlogsource: {product: windows, category: process_creation}\n"
        "detection:\n  sel: {Image|endswith: '\\\\evil.exe'}\n  condition: sel\n"
    )
    code, out, _ = run("--from", "sigma", "--to", "lucene", f"@{rule}")
    assert (code, out) == (0, "process.executable.caseless:*\\\\evil.exe\n")


def test_index_schema_and_field_map_options(tmp_path: Path) -> None:
    code, out, _ = run("--to", "esql", "--index", "logs-x-*", "[url:value = 'x']")
    assert (
        out == 'FROM logs-x-* METADATA _id, _index, _version | WHERE url.original == "x" OR url.full == "x"\n'
    )
    code, out, _ = run("--to", "opensearch", "--schema", "ecs", "[url:value = 'x']")
    assert json.loads(out)["bool"]["should"][0] == {"term": {"url.original": "x"}}
    overrides = tmp_path / "map.yml"
    overrides.write_text("url:value: [my.url]\n")
    code, out, _ = run("--to", "kql", "--field-map", str(overrides), "[url:value = 'x']")
    assert (code, out) == (0, 'my.url: "x"\n')
    code, out, _ = run("--to", "kql", "--schema", "wazuh", "--field-map", str(overrides), "[url:value = 'x']")
    assert (code, out) == (0, 'my.url: "x"\n')


def test_untranslatable_pattern_exits_2_with_the_reason() -> None:
    code, out, err = run("--to", "kql", "[process:command_line MATCHES '^a']")
    assert code == 2 and out == ""
    assert err.startswith("error: KQL has no regular expressions")


def test_invalid_pattern_exits_2_with_the_validator_reason() -> None:
    code, out, err = run("--to", "eql", "[file:name = 'unterminated]")
    assert code == 2 and out == ""
    assert err.startswith("error: Error found at line 1:")


def test_missing_file_and_bad_index_exit_2(tmp_path: Path) -> None:
    code, _, err = run("--to", "kql", f"@{tmp_path / 'nope'}")
    assert code == 2 and err.startswith("error: cannot read")
    code, _, err = run("--to", "esql", "--index", "x | DROP y", "[url:value = 'x']")
    assert code == 2 and "invalid ES|QL index" in err


def test_usage_errors_are_clicks() -> None:
    code, _, err = run("--to", "splunk", "[url:value = 'x']")
    assert code == 2 and "Invalid value for '--to'" in err
