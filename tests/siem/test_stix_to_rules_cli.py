"""`ctibridge convert stix-to-rules`: a JSON array of Kibana rule bodies, one per rule-worthy indicator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ctibridge.stix.ids import identity_id, indicator_id
from tests.doubles.elastic_kibana import DEFAULT_SPEC_PATH, KibanaSpec
from tests.support.stix_validation import findings
from tests.test_cli import ctibridge

SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
WORTHY = {
    "compound": ("stix", f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'a.exe']"),
    "sequence": ("stix", "[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']"),
    "kql": ("kql", 'process.name: "cmd.exe"'),
    "eql": ("eql", 'process where process.name == "cmd.exe"'),
}
NOT_WORTHY = {
    "ip": ("stix", "[ipv4-addr:value = '198.51.100.7']"),
    "observation-and": ("stix", "[domain-name:value = 'a.example'] AND [file:name = 'x.exe']"),
    "yara": ("yara", "rule x { condition: true }"),
}


def indicator(name: str, pattern_type: str, pattern: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": indicator_id(pattern),
        "created": "2025-01-01T00:00:00.000Z",
        "modified": "2025-01-01T00:00:00.000Z",
        "name": name,
        "description": f"{name} indicator",
        "pattern": pattern,
        "pattern_type": pattern_type,
        "valid_from": "2025-01-01T00:00:00Z",
        **extra,
    }


def write_bundle(path: Path) -> dict[str, dict[str, Any]]:
    objects = {name: indicator(name, *spec) for name, spec in {**WORTHY, **NOT_WORTHY}.items()}
    objects["compound"]["labels"] = ["loader"]
    bundle = {
        "type": "bundle",
        "id": "bundle--5b0e0b8a-7d3c-4e4c-9a55-000000000001",
        "objects": [
            *objects.values(),
            {
                "type": "identity",
                "spec_version": "2.1",
                "id": identity_id("x", "organization"),
                "created": "2025-01-01T00:00:00.000Z",
                "modified": "2025-01-01T00:00:00.000Z",
                "name": "x",
                "identity_class": "organization",
            },
        ],
    }
    # kql/eql are OpenCTI pattern types outside STIX's vocabulary: the validator warns (245), nothing else
    native = {o["id"] for o in objects.values() if o["pattern_type"] in ("kql", "eql")}
    problems = findings(bundle)
    assert len(problems) == len(native)
    assert all("{245}" in p and p.split(":")[0] in native for p in problems), problems
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return objects


def test_bundle_to_rule_bodies(tmp_path: Path) -> None:
    source = tmp_path / "bundle.json"
    objects = write_bundle(source)
    out = tmp_path / "rules.json"
    env = {
        "OPENCTI_URL": "https://opencti.example",
        "ELASTIC_SECURITY_RULE_INDEX_PATTERNS": "logs-*,endgame-*",
    }
    result = ctibridge("convert", "stix-to-rules", str(source), "-o", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "read 8 record(s), skipped 4" in result.stdout
    bodies = json.loads(out.read_text(encoding="utf-8"))
    by_name = {b["name"].removeprefix("OpenCTI: "): b for b in bodies}
    assert set(by_name) == set(WORTHY)
    assert {name: by_name[name]["rule_id"] for name in WORTHY} == {
        name: "opencti-" + objects[name]["id"] for name in WORTHY
    }
    assert [(by_name[n]["type"], by_name[n]["language"]) for n in WORTHY] == [
        ("query", "kuery"),
        ("eql", "eql"),
        ("query", "kuery"),
        ("eql", "eql"),
    ]
    assert by_name["compound"]["index"] == ["logs-*", "endgame-*"]
    assert by_name["compound"]["tags"][0] == "loader"
    assert by_name["kql"]["references"] == [
        f"https://opencti.example/dashboard/observations/indicators/{objects['kql']['id']}"
    ]
    assert "observation-level AND" in result.stderr, "the untranslatable indicator is reported"

    spec = KibanaSpec.load() if DEFAULT_SPEC_PATH.is_file() else None
    if spec is not None:
        for body in bodies:
            schema = spec.discriminated("Security_Detections_API_RuleCreateProps", body["type"])
            assert schema and spec.errors(schema, body) == []

    again = tmp_path / "again.json"
    assert ctibridge("convert", "stix-to-rules", str(source), "-o", str(again), env=env).returncode == 0
    assert again.read_bytes() == out.read_bytes(), "conversions are deterministic"


@pytest.mark.parametrize(("setting", "value"), [("ELASTIC_SECURITY_RULE_INTERVAL", "often")])
def test_bad_settings_are_reported_without_traceback(tmp_path: Path, setting: str, value: str) -> None:
    source = tmp_path / "bundle.json"
    write_bundle(source)
    result = ctibridge("convert", "stix-to-rules", str(source), env={setting: value})
    assert result.returncode == 2 and setting in result.stderr and "Traceback" not in result.stderr
