"""Field maps: built-in coverage, data validation and user overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctibridge.patterns import FieldMap, Untranslatable, parse_stix, translate
from ctibridge.patterns.ast import ObjectPath
from ctibridge.patterns.fieldmap import BUILTIN_MAPS, TargetField

ECS_REQUIRED = [
    "ipv4-addr:value",
    "ipv6-addr:value",
    "domain-name:value",
    "url:value",
    "email-addr:value",
    "file:hashes.MD5",
    "file:hashes.'SHA-1'",
    "file:hashes.'SHA-256'",
    "file:hashes.'SHA-512'",
    "file:name",
    "file:parent_directory_ref.path",
    "directory:path",
    "process:command_line",
    "process:name",
    "process:pid",
    "process:image_ref.name",
    "user-account:user_id",
    "user-account:account_login",
    "windows-registry-key:key",
    "network-traffic:src_port",
    "network-traffic:dst_port",
    "network-traffic:protocols[*]",
    "x509-certificate:serial_number",
    "x509-certificate:hashes.'SHA-256'",
    "autonomous-system:number",
]
IOC_PATHS = ["ipv4-addr:value", "domain-name:value", "url:value", "file:hashes.'SHA-256'", "file:name"]


def path(key: str) -> ObjectPath:
    comparison = parse_stix(f"[EXISTS {key}]").expression.expression  # type: ignore[union-attr]
    return comparison.path  # type: ignore[union-attr]


@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_builtin_maps_load_with_canonical_keys(name: str) -> None:
    field_map = FieldMap.builtin(name)
    assert field_map is FieldMap.builtin(name)
    assert field_map.timestamp_field is not None and field_map.timestamp_field.type == "date"
    for key in field_map.paths():
        assert path(key).key == key
    for key in IOC_PATHS:
        assert field_map.fields_for(path(key))


def test_ecs_covers_the_paths_the_issue_lists() -> None:
    ecs = FieldMap.builtin("ecs")
    assert not [key for key in ECS_REQUIRED if key not in ecs.paths()]
    ip_fields = {field.name for field in ecs.fields_for(path("ipv4-addr:value"))}
    assert {"source.ip", "destination.ip", "client.ip", "server.ip", "host.ip", "related.ip"} <= ip_fields
    assert all(field.type == "ip" for field in ecs.fields_for(path("ipv4-addr:value")))
    hashes = {field.name for field in ecs.fields_for(path("file:hashes.'SHA-256'"))}
    assert {"file.hash.sha256", "process.hash.sha256", "dll.hash.sha256"} <= hashes


def test_registry_key_uses_registry_path_not_the_hive_relative_key() -> None:
    fields = FieldMap.builtin("ecs").fields_for(path("windows-registry-key:key"))
    assert fields == (TargetField("registry.path", "keyword", "hive_aliases"),)


def test_wazuh_ip_fields_are_mostly_keyword() -> None:
    fields = FieldMap.builtin("wazuh").fields_for(path("ipv4-addr:value"))
    assert TargetField("data.srcip") in fields and TargetField("data.aws.srcaddr", "ip") in fields


def test_microsoft_fields_are_table_columns() -> None:
    microsoft = FieldMap.builtin("microsoft")
    for key in microsoft.paths():
        for field in microsoft.fields_for(path(key)):
            table, _, column = field.name.partition(".")
            assert table[0].isupper() and column and "." not in column, field


def test_overrides_replace_add_and_remove_entries() -> None:
    ecs = FieldMap.builtin("ecs")
    custom = ecs.with_overrides({"url:value": ["my.url"], "x-custom:thing": "my.thing", "file:name": []})
    assert custom.fields_for(path("url:value")) == (TargetField("my.url"),)
    assert custom.fields_for(path("x-custom:thing")) == (TargetField("my.thing"),)
    with pytest.raises(Untranslatable, match="no ecs\\+overrides field is mapped for file:name"):
        custom.fields_for(path("file:name"))
    assert custom.fields_for(path("domain-name:value")) == ecs.fields_for(path("domain-name:value"))
    assert ecs.fields_for(path("url:value")) != custom.fields_for(path("url:value"))  # builtin untouched


def test_structured_overrides_with_types_and_timestamp() -> None:
    custom = FieldMap.builtin("ecs").with_overrides(
        {
            "fields": {"ipv4-addr:value": ["net.peer"]},
            "types": {"ip": ["net.peer"]},
            "timestamp_field": "event.ts",
        }
    )
    assert custom.fields_for(path("ipv4-addr:value")) == (TargetField("net.peer", "ip"),)
    assert custom.timestamp_field == TargetField("event.ts", "date")


@pytest.mark.parametrize("suffix", [".yml", ".json"])
def test_overrides_from_files(tmp_path: Path, suffix: str) -> None:
    data = {"fields": {"url:value": ["web.url"]}}
    file = tmp_path / f"map{suffix}"
    file.write_text(json.dumps(data))  # JSON is valid YAML too
    assert translate("[url:value = 'x']", target="kql", field_map=file) == 'web.url: "x"'
    assert translate("[url:value = 'x']", target="kql", field_map=str(file)) == 'web.url: "x"'


def test_field_map_instance_replaces_the_default() -> None:
    wazuh = FieldMap.builtin("wazuh")
    assert (
        translate("[url:value = 'x']", target="kql", field_map=wazuh)
        == 'data.url: "x" or data.office365.MessageURLs: "x"'
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": {"url:value": ["bad name"]}}, "invalid field name"),
        ({"fields": {"url:value": ['x"y']}}, "invalid field name"),
        ({"fields": {"url:value": ["a|shout"]}}, "unknown transform"),
        ({"fields": {"not a path": ["a"]}}, "invalid STIX object path"),
        ({"fields": {"url:value] OR [url:value": ["a"]}}, "invalid STIX object path"),
        ({"fields": {"url:value": [1]}}, "must be a field name or a list"),
        ({"types": {"string": ["a"]}}, "unknown field type"),
        ({"fields": ["url:value"]}, "must map STIX object paths"),
        ({"timestamp_field": "a b"}, "invalid timestamp_field"),
        ({"types": {}, "url:value": ["a"]}, "unknown field map keys"),
    ],
)
def test_invalid_map_data_is_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FieldMap.from_data(data)


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read field map"):
        FieldMap.builtin("ecs").with_overrides(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("fields: [")
    with pytest.raises(ValueError, match="cannot be parsed"):
        FieldMap.builtin("ecs").with_overrides(broken)
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("just text")
    with pytest.raises(ValueError, match="must hold a mapping"):
        FieldMap.builtin("ecs").with_overrides(scalar)


def test_unknown_builtin() -> None:
    with pytest.raises(ValueError, match="unknown field map"):
        FieldMap.builtin("splunk")
