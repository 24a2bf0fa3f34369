"""SIEM statuses resolved against the platform's workflows: gaps told once, a failed lookup survived."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ctibridge.errors import RemoteError
from ctibridge.platform.workflow import WorkflowResolver


class Workflows:
    """The one platform call the resolver makes, answering from a dict (or failing)."""

    def __init__(self, workflows: dict[str, dict[str, str]] | None, fail: bool = False) -> None:
        self.workflows = workflows
        self.fail = fail
        self.asked: list[str] = []

    def workflow_statuses(self, entity_type: str) -> dict[str, str] | None:
        self.asked.append(entity_type)
        if self.fail:
            raise RemoteError("OpenCTI", "access denied")
        return None if self.workflows is None else self.workflows.get(entity_type, {})


MAPPINGS = {
    "incident": {"open": "new", "acknowledged": "In_Progress", "closed": "CLOSED"},
    "case-incident": {"open": "NEW", "closed": "CLOSED"},
}


def resolver(platform: Any, mappings: Any = MAPPINGS) -> WorkflowResolver:
    return WorkflowResolver(platform, mappings)


def test_names_match_in_any_case_and_gaps_are_told_once(caplog: pytest.LogCaptureFixture) -> None:
    platform = Workflows({"Incident": {"NEW": "s-new", "IN_PROGRESS": "s-prog"}})
    subject = resolver(platform)
    for _ in range(3):
        assert subject.resolve() == {"incident": {"open": "s-new", "acknowledged": "s-prog"}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # the missing CLOSED and the absent case workflow, once each
    assert any("no status 'CLOSED'" in w and "NEW, IN_PROGRESS" in w for w in warnings)
    assert any("no workflow for Case-Incident" in w for w in warnings)


def test_a_failed_lookup_costs_the_statuses_not_the_run(caplog: pytest.LogCaptureFixture) -> None:
    assert resolver(Workflows({}, fail=True)).resolve() == {}
    assert "statuses not set this run" in caplog.text


def test_a_platform_without_workflows_and_an_empty_mapping_ask_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = Workflows(None)
    assert resolver(files).resolve() == {}
    assert caplog.text == ""
    platform = Workflows({"Case-Incident": {"NEW": "s-new"}})
    mappings = {"incident": {}, "case-incident": {"open": "NEW", "closed": "CLOSED"}}
    assert resolver(platform, mappings).resolve() == {"case-incident": {"open": "s-new"}}
    assert platform.asked == ["Case-Incident"]  # a mapping of `none` is not looked up
