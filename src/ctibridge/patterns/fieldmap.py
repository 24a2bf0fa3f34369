"""STIX object paths -> SIEM fields, kept as data so sites can adapt them without code changes.

Built-in tables live next to this module (`ecs.yml`, `wazuh.yml`, `microsoft.yml`). A table file has:

    timestamp_field: "@timestamp"          # used for START/STOP qualifiers
    types: {ip: [source.ip, ...], long: [...], date: [...], double: [...], boolean: [...]}
    fields:
      "ipv4-addr:value": [source.ip, destination.ip]
      "file:hashes.'SHA-256'": [file.hash.sha256|lowercase]

Fields not listed under `types` are keyword (exact, case-sensitive strings). A `|transform` suffix adapts
STIX values to how the SIEM stores them: `lowercase` / `uppercase` (hex hashes), `hive_aliases` (registry
keys written `HKEY_LOCAL_MACHINE\\...` or `HKLM\\...`), `basename` (the field holds a full path, STIX gives a
file name), `mac_dashes` (ECS writes MAC addresses `AA-BB-CC-DD-EE-FF`, STIX `aa:bb:cc:dd:ee:ff`).

Overrides (a mapping or a YAML/JSON file with the same layout, or just the `fields` mapping) replace whole
entries and add new ones; an empty list removes an entry.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from ctibridge.patterns.ast import ObjectPath
from ctibridge.patterns.errors import PatternError, Untranslatable
from ctibridge.patterns.stix import parse_stix

__all__ = ["BUILTIN_MAPS", "FieldMap", "FieldMapSource", "FieldType", "TargetField", "Transform"]

FieldType = Literal["keyword", "ip", "long", "double", "date", "boolean"]
Transform = Literal["lowercase", "uppercase", "hive_aliases", "basename", "mac_dashes"]

FIELD_TYPES: frozenset[str] = frozenset(("keyword", "ip", "long", "double", "date", "boolean"))
TRANSFORMS: frozenset[str] = frozenset(("lowercase", "uppercase", "hive_aliases", "basename", "mac_dashes"))
BUILTIN_MAPS = ("ecs", "wazuh", "microsoft")

_FIELD_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_@-]*(?:\.[A-Za-z0-9_@-]+)*\Z")

FieldMapSource = Mapping[str, Any] | str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class TargetField:
    name: str
    type: FieldType = "keyword"
    transform: Transform | None = None


class FieldMap:
    """An immutable lookup table; build variants with `with_overrides`."""

    __slots__ = ("_entries", "_types", "name", "timestamp_field")

    def __init__(
        self,
        name: str,
        entries: Mapping[str, tuple[TargetField, ...]],
        types: Mapping[str, FieldType],
        timestamp_field: str | None,
    ) -> None:
        self.name = name
        self._entries = dict(entries)
        self._types = dict(types)
        self.timestamp_field = (
            TargetField(timestamp_field, self._types.get(timestamp_field, "date"))
            if timestamp_field
            else None
        )

    def __repr__(self) -> str:
        return f"FieldMap({self.name!r}, {len(self._entries)} paths)"

    @classmethod
    def builtin(cls, name: str) -> FieldMap:
        if name not in BUILTIN_MAPS:
            raise ValueError(f"unknown field map {name!r}; built-in maps: {', '.join(BUILTIN_MAPS)}")
        return _load_builtin(name)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, name: str = "custom") -> FieldMap:
        """Build a complete map from the file layout described in the module docstring."""
        _check_layout(data)
        types = _parse_types(data.get("types") or {})
        entries = _parse_entries(data.get("fields") or {}, types)
        timestamp = data.get("timestamp_field")
        if timestamp is not None and not (isinstance(timestamp, str) and _FIELD_NAME.match(timestamp)):
            raise ValueError(f"invalid timestamp_field {timestamp!r}")
        return cls(name, entries, types, timestamp)

    def with_overrides(self, overrides: FieldMapSource) -> FieldMap:
        """Return a copy where the given entries replace or extend ours (types merge the same way)."""
        data = _read_source(overrides)
        if _LAYOUT_KEYS.isdisjoint(data):
            data = {"fields": data}
        _check_layout(data)
        types = {**self._types, **_parse_types(data.get("types") or {})}
        entries = {
            key: tuple(TargetField(f.name, types.get(f.name, "keyword"), f.transform) for f in fields)
            for key, fields in self._entries.items()
        }
        entries.update(_parse_entries(data.get("fields") or {}, types))
        entries = {key: fields for key, fields in entries.items() if fields}
        current_timestamp = self.timestamp_field.name if self.timestamp_field else None
        return FieldMap(
            f"{self.name}+overrides", entries, types, data.get("timestamp_field", current_timestamp)
        )

    def fields_for(self, path: ObjectPath) -> tuple[TargetField, ...]:
        fields = self._entries.get(path.key)
        if not fields:
            raise Untranslatable(f"no {self.name} field is mapped for {path.key}")
        return fields

    def paths(self) -> list[str]:
        return sorted(self._entries)

    def field_type(self, name: str) -> FieldType:
        return self._types.get(name, "keyword")


_LAYOUT_KEYS = frozenset(("fields", "types", "timestamp_field"))


def _check_layout(data: Mapping[str, Any]) -> None:
    unknown = sorted(str(key) for key in data if key not in _LAYOUT_KEYS)
    if unknown:
        raise ValueError(
            f"unknown field map keys {unknown}: expected {sorted(_LAYOUT_KEYS)}, or only path entries"
        )


@cache
def _load_builtin(name: str) -> FieldMap:
    text = resources.files("ctibridge.patterns").joinpath(f"{name}.yml").read_text(encoding="utf-8")
    return FieldMap.from_data(yaml.safe_load(text), name=name)


def _read_source(source: FieldMapSource) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read field map {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"field map {path} is not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"field map {path} cannot be parsed: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"field map {path} must hold a mapping")
    return dict(data)


def _parse_types(raw: Any) -> dict[str, FieldType]:
    if not isinstance(raw, Mapping):
        raise ValueError("field map `types` must map a type name to a list of fields")
    types: dict[str, FieldType] = {}
    for type_name, names in raw.items():
        if type_name not in FIELD_TYPES:
            raise ValueError(f"unknown field type {type_name!r}; known: {', '.join(sorted(FIELD_TYPES))}")
        for name in _as_list(names, f"types.{type_name}"):
            types[_checked_name(name)] = cast(FieldType, type_name)
    return types


def _parse_entries(raw: Any, types: Mapping[str, FieldType]) -> dict[str, tuple[TargetField, ...]]:
    if not isinstance(raw, Mapping):
        raise ValueError("field map `fields` must map STIX object paths to lists of fields")
    entries: dict[str, tuple[TargetField, ...]] = {}
    for stix_path, names in raw.items():
        key = _canonical_path(stix_path)
        fields: list[TargetField] = []
        for spec in _as_list(names, stix_path):
            name, _, transform = spec.partition("|")
            name = _checked_name(name)
            if transform and transform not in TRANSFORMS:
                raise ValueError(
                    f"unknown transform {transform!r} in {stix_path}; known: {sorted(TRANSFORMS)}"
                )
            fields.append(TargetField(name, types.get(name, "keyword"), cast(Transform, transform or None)))
        entries[key] = tuple(fields)
    return entries


def _as_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"field map entry {where} must be a field name or a list of field names")


def _checked_name(name: str) -> str:
    if not _FIELD_NAME.match(name):
        raise ValueError(f"invalid field name {name!r}")
    return name


@cache
def _canonical_path(stix_path: str) -> str:
    """Normalise a path through the STIX grammar so `hashes.'SHA-1'` and `hashes.SHA1` are one key."""
    if not isinstance(stix_path, str):
        raise ValueError(f"field map keys must be STIX object paths, got {stix_path!r}")
    try:
        pattern = parse_stix(f"[EXISTS {stix_path}]")
    except PatternError:
        raise ValueError(f"invalid STIX object path {stix_path!r} in field map") from None
    observation = pattern.expression
    comparison = getattr(observation, "expression", None)
    path = getattr(comparison, "path", None)
    if not isinstance(path, ObjectPath):
        raise ValueError(f"invalid STIX object path {stix_path!r} in field map")
    return path.key
