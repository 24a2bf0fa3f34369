"""Validate bundles with the OASIS stix2-validator, tolerating only OpenCTI's documented conventions.

The validator's PyPI build ships without the OASIS JSON schemas; `install_schemas` copies the vendored
copy (tests/vendor, BSD-3) to where the validator looks for them.

Tolerated, each an OpenCTI convention (../shared/reference/opencti.md):
- `severity` on incidents and case-incidents (a reserved name in STIX, OpenCTI's field);
- OpenCTI's custom types (`hostname`, `user-agent`, `case-incident`) and its top-level properties
  (`x_opencti_*`, `x_mitre_id`, incident `source`/`incident_type`/..., note `note_types`, case fields);
- deterministic uuid5 ids (warning 103): OpenCTI computes exactly these, which is what makes reruns safe;
- the relationship pairs OpenCTI itself uses (incident `uses` attack-pattern, `targets` identity);
- external references to SIEM pages without a hash (warning 302): a live web page has no fixed hash.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import stix2validator
from stix2validator import ValidationOptions, validate_instance

VENDORED = Path(__file__).resolve().parent.parent / "vendor" / "cti-stix2-json-schemas" / "schemas"

OPENCTI_CUSTOM_TYPES = {"hostname", "user-agent", "case-incident"}
OPENCTI_PROPERTIES = {
    "incident": {"source", "first_seen", "last_seen", "incident_type", "objective"},
    "case-incident": {"severity", "priority", "response_types"},
    "note": {"note_types"},
    "attack-pattern": {"x_mitre_id"},
}
OPENCTI_RELATIONSHIPS = {("incident", "uses"), ("incident", "targets")}
# software `has` vulnerability: OpenCTI's pair for a vulnerable package (../shared/reference/opencti.md).
OPENCTI_RELATIONSHIPS |= {("software", "has")}
# Targets OpenCTI documents beyond STIX's suggestions: an indicator `based-on` the observable it
# matches, an indicator `indicates` an incident (../shared/reference/opencti.md).
OPENCTI_RELATIONSHIP_TARGETS = {("indicator", "based-on"), ("indicator", "indicates")}

_CUSTOM_PROPERTY = re.compile(r"\{401\} Custom property '([^']+)'")
_CUSTOM_TYPE = re.compile(r"\{401\} Custom object type '([^']+)'")
_RESERVED_SEVERITY = "Contains a reserved property ('severity'"
_SUGGESTED_SOURCE = re.compile(
    r"\{202\} '([a-z-]+)' is permitted, but not a suggested relationship source object for the '([a-z-]+)'"
)
_SUGGESTED_TARGET = re.compile(
    r"\{202\} '[a-z0-9-]+' is permitted, but not a suggested relationship target object for '([a-z-]+)' "
    r"objects with the '([a-z-]+)' relationship"
)


def install_schemas() -> Path:
    target = Path(stix2validator.__file__).resolve().parent / "schemas-2.1" / "schemas"
    if not (target / "common" / "core.json").exists():
        shutil.copytree(VENDORED, target, dirs_exist_ok=True)
    return target


def _tolerated(obj_type: str, message: str) -> bool:
    if "{103}" in message or "{302}" in message:
        return True
    if _RESERVED_SEVERITY in message and obj_type in ("incident", "case-incident"):
        return True
    prop = _CUSTOM_PROPERTY.search(message)
    if prop:
        name = prop.group(1)
        return name.startswith("x_opencti_") or name in OPENCTI_PROPERTIES.get(obj_type, set())
    custom_type = _CUSTOM_TYPE.search(message)
    if custom_type:
        return custom_type.group(1) in OPENCTI_CUSTOM_TYPES
    target = _SUGGESTED_TARGET.search(message)
    if target:
        return (target.group(1), target.group(2)) in OPENCTI_RELATIONSHIP_TARGETS
    pair = _SUGGESTED_SOURCE.search(message)
    return bool(pair and (pair.group(1), pair.group(2)) in OPENCTI_RELATIONSHIPS)


def findings(bundle: dict[str, Any]) -> list[str]:
    """Errors and warnings left once the tolerated OpenCTI conventions are removed."""
    install_schemas()
    result = validate_instance(bundle, ValidationOptions(version="2.1"))
    types = {obj["id"]: obj["type"] for obj in bundle.get("objects", [])}
    out = []
    for item in [*result.errors, *result.warnings]:
        message = str(item)
        obj_id = message.split(":", 1)[0]
        if not _tolerated(types.get(obj_id, "?"), message):
            out.append(message)
    return out


def assert_valid_bundle(bundle: dict[str, Any]) -> None:
    problems = findings(bundle)
    assert not problems, "STIX validation findings:\n" + "\n".join(problems[:50])
