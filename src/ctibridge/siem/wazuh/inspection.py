"""Before hunting: is this entity ours to look up, and what may a hunt for it create?

An entity is skipped (with the reason logged by the caller) when it is marked above the TLP ceiling,
carries an ignored label, is a private address (option), was created by this connector (option), or
when nothing could be created for it because a qualifying indicator is required and missing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctibridge.siem.wazuh.options import EnrichmentOptions
from ctibridge.stix.markings import tlp_of

OCTI_EXTENSION = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"
OCTI_SCO_EXTENSION = "extension-definition--f93e2c80-4231-4f9a-af8b-95c9bd566a82"
# Entities that carry no indicator of their own and are not gated by one.
_NO_INDICATOR_TYPES = frozenset({"vulnerability"})
# Asks the platform for the indicators `based-on` an entity (`Platform.indicators_based_on`).
IndicatorLookup = Callable[[str], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Inspection:
    """The verdict: `skip` (a reason) or what the hunt may create and which indicators qualify."""

    skip: str | None = None
    indicators: tuple[str, ...] = ()
    sightings: bool = True
    incidents: bool = True


def attribute(entity: Mapping[str, Any], key: str) -> Any:
    """An OpenCTI attribute wherever it is put: root, `x_opencti_<key>`, or either OpenCTI extension."""
    if key in entity:
        return entity[key]
    if f"x_opencti_{key}" in entity:
        return entity[f"x_opencti_{key}"]
    extensions = entity.get("extensions")
    if isinstance(extensions, Mapping):
        for name in (OCTI_EXTENSION, OCTI_SCO_EXTENSION):
            ext = extensions.get(name)
            if isinstance(ext, Mapping) and key in ext:
                return ext[key]
    return None


def labels_of(entity: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in (entity.get("labels"), entity.get("x_opencti_labels"), attribute(entity, "labels")):
        if isinstance(value, list):
            found.update(str(v).strip().lower() for v in value if str(v).strip())
    return found


def indicator_qualifies(indicator: Mapping[str, Any], options: EnrichmentOptions) -> str | None:
    """None when the indicator counts; else why not (revoked, not for detection, score too low)."""
    if options.ignore_revoked_indicators and indicator.get("revoked") is True:
        return "the indicator is revoked"
    if options.require_indicator_detection and attribute(indicator, "detection") is not True:
        return "the indicator is not marked for detection"
    if options.indicator_score_threshold is not None:
        score = attribute(indicator, "score")
        if not isinstance(score, (int, float)) or score < options.indicator_score_threshold:
            return f"the indicator score is below {options.indicator_score_threshold}"
    return None


def related_indicators(entity_id: str, objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Indicators `based-on` the entity among the objects that came with the request."""
    objects = list(objects)
    indicators = {o.get("id"): o for o in objects if o.get("type") == "indicator"}
    found = []
    for obj in objects:
        if (
            obj.get("type") == "relationship"
            and obj.get("relationship_type") == "based-on"
            and obj.get("target_ref") == entity_id
            and obj.get("source_ref") in indicators
        ):
            found.append(indicators[obj["source_ref"]])
    return found


def _qualifying(indicators: Iterable[Mapping[str, Any]], options: EnrichmentOptions) -> tuple[str, ...]:
    found = (str(i["id"]) for i in indicators if i.get("id") and indicator_qualifies(i, options) is None)
    return tuple(dict.fromkeys(found))


def _private_address(entity: Mapping[str, Any]) -> bool:
    if entity.get("type") not in ("ipv4-addr", "ipv6-addr"):
        return False
    try:
        network = ipaddress.ip_network(str(entity.get("value", "")).strip(), strict=False)
    except ValueError:
        return False
    # The same test as the search side (`SearchBuilder.skip_reason`), so both agree on what is private.
    return network.is_private or network.is_loopback or network.is_link_local or network.is_multicast


def inspect(
    entity: Mapping[str, Any],
    related: Sequence[Mapping[str, Any]],
    options: EnrichmentOptions,
    *,
    author_id: str,
    lookup: IndicatorLookup | None = None,
) -> Inspection:
    """The verdict on `entity`. Qualifying indicators come from `related` (the request's objects) first;
    only when none qualifies is `lookup` asked, since OpenCTI's requests do not carry them for observables.
    """
    entity_type = str(entity.get("type") or "")
    entity_id = str(entity.get("id") or "")
    tlp = tlp_of(entity.get("object_marking_refs") or attribute(entity, "object_marking_refs"))
    if tlp is not None and tlp > options.max_tlp:
        return Inspection(
            skip=f"marked {tlp.label}, above the ceiling {options.max_tlp.label} (WAZUH_MAX_TLP)"
        )
    ignored = sorted(labels_of(entity) & {label.lower() for label in options.label_ignore_list})
    if ignored:
        return Inspection(skip=f"has the ignored label(s) {', '.join(ignored)} (WAZUH_LABEL_IGNORE_LIST)")
    if options.ignore_own_entities:
        creator = entity.get("created_by_ref") or attribute(entity, "created_by_ref")
        if creator == author_id:
            return Inspection(skip="created by this connector (WAZUH_IGNORE_OWN_ENTITIES)")
    if options.ignore_private_addrs and _private_address(entity):
        return Inspection(skip="a private address (WAZUH_SEARCH_IGNORE_PRIVATE_ADDRS)")

    if entity_type == "indicator":
        reason = indicator_qualifies(entity, options)
        if reason:
            return Inspection(skip=f"{reason}; only qualifying indicators are looked up")
        return Inspection(indicators=(entity_id,))
    if entity_type in _NO_INDICATOR_TYPES:
        return Inspection()
    indicators = _qualifying(related_indicators(entity_id, related), options)
    if not indicators and lookup is not None:
        indicators = _qualifying(lookup(entity_id), options)
    sightings = bool(indicators) or options.create_obs_sightings
    incidents = bool(indicators) or not options.require_indicator_for_incidents
    if not sightings and not incidents:
        return Inspection(
            skip="no qualifying indicator is based on it, and one is required for sightings "
            "(WAZUH_CREATE_OBS_SIGHTINGS) and incidents (WAZUH_REQUIRE_INDICATOR_FOR_INCIDENTS)"
        )
    return Inspection(indicators=indicators, sightings=sightings, incidents=incidents)
