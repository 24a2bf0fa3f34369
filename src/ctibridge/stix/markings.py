"""TLP markings: fixed ids shared by OpenCTI and the STIX specification, and their ordering."""

from __future__ import annotations

import enum
from typing import Any


class Tlp(enum.IntEnum):
    """TLP levels, ordered as OpenCTI's `check_max_tlp` orders them (CLEAR = WHITE)."""

    CLEAR = 0
    GREEN = 1
    AMBER = 2
    AMBER_STRICT = 3
    RED = 4

    @property
    def label(self) -> str:
        return "TLP:" + self.name.replace("_", "+")

    @property
    def marking_id(self) -> str:
        return MARKING_IDS[self]

    @property
    def marking(self) -> dict[str, Any]:
        return MARKING_DEFINITIONS[self]


MARKING_IDS: dict[Tlp, str] = {
    Tlp.CLEAR: "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    Tlp.GREEN: "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    Tlp.AMBER: "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    Tlp.AMBER_STRICT: "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37",
    Tlp.RED: "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
TLP_BY_MARKING_ID: dict[str, Tlp] = {marking_id: tlp for tlp, marking_id in MARKING_IDS.items()}

_STIX_TLP_CREATED = "2017-01-20T00:00:00.000Z"


def _definition(tlp: Tlp) -> dict[str, Any]:
    if tlp is Tlp.AMBER_STRICT:
        # Not in the STIX specification: OpenCTI's own form of this marking.
        return {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": MARKING_IDS[tlp],
            "created": "2022-10-01T00:00:00.000Z",
            "definition_type": "statement",
            "definition": {"statement": "custom"},
            "name": "TLP:AMBER+STRICT",
            "x_opencti_definition_type": "TLP",
            "x_opencti_definition": "TLP:AMBER+STRICT",
        }
    stix_name = "white" if tlp is Tlp.CLEAR else tlp.name.lower()
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": MARKING_IDS[tlp],
        "created": _STIX_TLP_CREATED,
        "definition_type": "tlp",
        "name": f"TLP:{stix_name.upper()}",
        "definition": {"tlp": stix_name},
    }


MARKING_DEFINITIONS: dict[Tlp, dict[str, Any]] = {tlp: _definition(tlp) for tlp in Tlp}

_ALIASES = {
    "CLEAR": Tlp.CLEAR,
    "WHITE": Tlp.CLEAR,
    "GREEN": Tlp.GREEN,
    "AMBER": Tlp.AMBER,
    "AMBER+STRICT": Tlp.AMBER_STRICT,
    "AMBER_STRICT": Tlp.AMBER_STRICT,
    "AMBER-STRICT": Tlp.AMBER_STRICT,
    "RED": Tlp.RED,
}


def parse_tlp(value: Any) -> Tlp:
    """Accept `TLP:AMBER`, `amber`, `amber+strict`, `white`/`clear` (any case), or a Tlp."""
    if isinstance(value, Tlp):
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        text = text.removeprefix("TLP:").removeprefix("TLP ").strip()
        if text in _ALIASES:
            return _ALIASES[text]
    raise ValueError("expected a TLP level: CLEAR, WHITE, GREEN, AMBER, AMBER+STRICT or RED")


def tlp_of(marking_refs: list[str] | None) -> Tlp | None:
    """The highest TLP among an object's marking refs, None when it carries no TLP."""
    levels = [TLP_BY_MARKING_ID[ref] for ref in marking_refs or () if ref in TLP_BY_MARKING_ID]
    return max(levels) if levels else None
