"""`ctibridge hunt-query wazuh ENTITY_JSON`: prints the request body offline; exit 2 with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch

from ctibridge.cli import cli
from tests.doubles.opensearch import OpenSearchDouble
from tests.siem.wazuh.search_support import doc

ROOT = Path(__file__).resolve().parents[3]
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENCTI_", "CONNECTOR_", "WAZUH_")):
            monkeypatch.delenv(name)


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["hunt-query", *args], input=stdin, catch_exceptions=False)


def write(tmp_path: Path, document: Any, name: str = "entity.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_prints_a_body_that_finds_the_entity(tmp_path: Path) -> None:
    entity = {"type": "file", "spec_version": "2.1", "id": "file--1", "hashes": {"SHA-256": SHA256}}
    result = run("wazuh", str(write(tmp_path, entity)))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["track_total_hits"] is True and "aggs" in body and body["size"] == 50
    window = body["query"]["bool"]["filter"][1]["range"]["@timestamp"]["gte"]
    assert window.endswith("Z") and window[:4].isdigit()
    with OpenSearchDouble() as double:
        double.add_documents(
            "wazuh-alerts-4.x-2024.05.11",
            [
                doc({"syscheck": {"sha256_after": SHA256}}),
                doc({"data": {"win": {"eventdata": {"hashes": f"SHA256={SHA256.upper()}"}}}}),
                doc({"syscheck": {"sha256_after": "0" * 64}}),
            ],
            ids=["fim", "sysmon", "decoy"],
        )
        client = OpenSearch(double.url, http_auth=double.auth)
        del body["query"]["bool"]["filter"][1]  # the look-back window: the alerts are from 2024
        response = client.search(index="wazuh-alerts-*", body=body)
    assert {h["_id"] for h in response["hits"]["hits"]} == {"fim", "sysmon"}
    assert response["hits"]["total"] == {"value": 2, "relation": "eq"}


def test_bundle_at_file_and_stdin(tmp_path: Path) -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {
                "type": "network-traffic",
                "id": "network-traffic--1",
                "src_ref": "ipv4-addr--1",
                "dst_port": 4444,
            },
            {"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "8.8.4.4"},
        ],
    }
    path = write(tmp_path, bundle)
    by_at = run("wazuh", f"@{path}")
    by_stdin = run("wazuh", "-", stdin=json.dumps(bundle))
    assert by_at.exit_code == by_stdin.exit_code == 0
    first = json.loads(by_at.stdout)["query"]["bool"]
    assert first["filter"][0] == json.loads(by_stdin.stdout)["query"]["bool"]["filter"][0]
    text = by_at.stdout
    assert '"data.srcip": "8.8.4.4"' in text and '"data.dstport": "4444"' in text


def test_environment_settings_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"type": "domain-name", "value": "evil.example"})
    monkeypatch.setenv("WAZUH_OPENSEARCH_SEARCH_AFTER", "none")
    monkeypatch.setenv("WAZUH_OPENSEARCH_LIMIT", "7")
    monkeypatch.setenv("WAZUH_SEARCH_LOOKUP_HOSTNAMES_IN_CMD_LINE", "yes")
    monkeypatch.setenv("WAZUH_RULE_EXCLUDE_LIST", "5710,5712")
    body = json.loads(run("wazuh", str(path)).stdout)
    assert body["size"] == 7
    assert not any("range" in clause for clause in body["query"]["bool"]["filter"])
    assert {"terms": {"rule.id": ["5710", "5712"]}} in body["query"]["bool"]["must_not"]
    assert '"*evil.example*"' in json.dumps(body)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "STIX object or a bundle"),
        ('{"type": "bundle", "objects": []}', "no objects"),
        ('{"value": "x"}', "no STIX type"),
        ('{"type": "threat-actor", "name": "x"}', "not searchable"),
        ('{"type": "ipv4-addr", "value": "10.0.0.1"}', "WAZUH_SEARCH_IGNORE_PRIVATE_ADDRS"),
        ('{"type": "indicator", "pattern_type": "stix", "pattern": "[x"}', "indicator pattern"),
        ('{"type": "file", "hashes": {"MD5": "zz"}}', "hash"),
    ],
)
def test_invalid_input_exits_2_with_the_reason(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "entity.json"
    path.write_text(content, encoding="utf-8")
    result = run("wazuh", str(path))
    assert result.exit_code == 2
    assert reason in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_configuration_mistakes_exit_2_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, {"type": "domain-name", "value": "evil.example"})
    monkeypatch.setenv("WAZUH_SEARCH_DIRSEARCH_OPTIONS", "sideways")
    monkeypatch.setenv("WAZUH_OPENSEARCH_FILTER", "not-json-secret")
    result = run("wazuh", str(path))
    assert result.exit_code == 2
    assert "WAZUH_SEARCH_DIRSEARCH_OPTIONS" in result.stderr and "WAZUH_OPENSEARCH_FILTER" in result.stderr
    assert "not-json-secret" not in result.stderr
    missing = run("wazuh", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    assert run("elastic", str(path)).exit_code == 2


def test_works_in_an_empty_environment(tmp_path: Path) -> None:
    path = write(tmp_path, {"type": "url", "value": "https://evil.example/x"})
    result = subprocess.run(
        [sys.executable, "-m", "ctibridge.cli", "hunt-query", "wazuh", str(path)],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["query"]["bool"]["filter"][0]["bool"]["should"][0] == {
        "term": {"data.url": "https://evil.example/x"}
    }
