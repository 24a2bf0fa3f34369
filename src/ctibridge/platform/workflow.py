"""A SIEM's own alert and case statuses, mapped onto the OpenCTI workflow of the objects they become.

OpenCTI keeps a status as the id of a Status node (a template such as NEW or CLOSED placed in the
workflow of one entity type), and it upserts `x_opencti_workflow_id`, so an object re-sent after its
status changed in the SIEM moves in OpenCTI too. Ids differ between platforms: they are looked up by
template name at every run, so a workflow edited in OpenCTI is picked up without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ctibridge.errors import RemoteError
from ctibridge.platform.base import Platform

log = logging.getLogger(__name__)

# STIX type of the object -> the OpenCTI entity type whose workflow it follows.
ENTITY_TYPES = {"incident": "Incident", "case-incident": "Case-Incident"}
WORKFLOW_STATUS_LIMIT = 200  # a workflow has a handful of statuses; OpenCTI pages at 500 at most
WORKFLOW_STATUSES_QUERY = """
query WorkflowStatuses(
  $first: Int, $orderBy: StatusOrdering, $orderMode: OrderingMode, $filters: FilterGroup
) {
  statuses(first: $first, orderBy: $orderBy, orderMode: $orderMode, filters: $filters) {
    edges { node { id type order disabled scope template { id name } } }
  }
}
"""


def workflow_variables(entity_type: str) -> dict[str, Any]:
    """The `statuses` query's variables for one entity type's workflow, in workflow order."""
    return {
        "first": WORKFLOW_STATUS_LIMIT,
        "orderBy": "order",
        "orderMode": "asc",
        "filters": {
            "mode": "and",
            "filters": [{"key": ["type"], "values": [entity_type]}],
            "filterGroups": [],
        },
    }


def statuses_of(edges: Any, entity_type: str) -> dict[str, str]:
    """Status id by template name (upper case) from a `statuses` answer's edges, in their order.

    Statuses of another scope (request access) or disabled ones are left out, and so is anything
    malformed: a workflow is read as far as it makes sense, never fatally.
    """
    statuses: dict[str, str] = {}
    for edge in edges if isinstance(edges, list) else []:
        node = edge.get("node") if isinstance(edge, dict) else None
        if not isinstance(node, dict):
            continue
        template = node.get("template")
        name = template.get("name") if isinstance(template, dict) else None
        status_id = node.get("id")
        if (
            isinstance(name, str)
            and name.strip()
            and isinstance(status_id, str)
            and node.get("type") == entity_type
            and node.get("scope") in (None, "GLOBAL")
            and not node.get("disabled")
        ):
            statuses.setdefault(name.strip().upper(), status_id)
    return statuses


class WorkflowResolver:
    """Turns `{stix type: {siem status: OpenCTI status name}}` into status ids, telling each gap once."""

    def __init__(self, platform: Platform, mappings: Mapping[str, Mapping[str, str]]) -> None:
        self.platform = platform
        self.mappings = {stix_type: dict(m) for stix_type, m in mappings.items() if m}
        self._told: set[str] = set()

    def resolve(self) -> dict[str, dict[str, str]]:
        """Status ids by STIX type and SIEM status; a lookup that fails costs the statuses, not the run."""
        resolved: dict[str, dict[str, str]] = {}
        for stix_type, mapping in self.mappings.items():
            entity_type = ENTITY_TYPES[stix_type]
            try:
                statuses = self.platform.workflow_statuses(entity_type)
            except RemoteError as exc:
                log.warning("statuses not set this run: %s", exc)
                continue
            if statuses is None:  # a platform without workflows (a dry run): nothing to tell
                continue
            if not statuses:
                self._tell(
                    f"OpenCTI has no workflow for {entity_type}: objects keep the platform's default status"
                )
                continue
            ids: dict[str, str] = {}
            for siem_status, name in mapping.items():
                status_id = statuses.get(name.upper())
                if status_id is None:
                    self._tell(
                        f"the {entity_type} workflow has no status {name!r} (it has "
                        f"{', '.join(statuses)}): objects in SIEM status {siem_status!r} get none"
                    )
                    continue
                ids[siem_status] = status_id
            resolved[stix_type] = ids
        return resolved

    def _tell(self, message: str) -> None:
        if message not in self._told:
            self._told.add(message)
            log.warning(message)
