"""ensure_vocabulary: pattern types registered once in OpenCTI (real pycti, double) and offline."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ctibridge.platform.files import FilePlatform
from tests.conftest import Connect
from tests.doubles.opencti import OpenCTIDouble

PATTERN_TYPES = ["kql", "lucene", "eql", "esql"]


def test_missing_pattern_types_are_created_once(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti, connector_type="STREAM")
    platform.ensure_vocabulary("pattern_type_ov", PATTERN_TYPES)
    created = opencti.created_vocabularies
    # eql is one of OpenCTI's default pattern types: read, not created again
    assert sorted(v["name"] for v in created) == ["esql", "kql", "lucene"]
    assert {v["category"] for v in created} == {"pattern_type_ov"}
    assert all(v["description"] for v in created)
    assert set(PATTERN_TYPES) <= set(opencti.vocabulary_names("pattern_type_ov"))

    platform.ensure_vocabulary("pattern_type_ov", [*PATTERN_TYPES, "KQL"])
    assert len(opencti.created_vocabularies) == 3, "a second start creates nothing"
    lookups = [c for c in opencti.calls if c.field == "vocabularies"]
    filters = lookups[0].variables["filters"]["filters"]
    assert {f["key"] for f in filters} == {"category", "name"}, "the read names the category too"


def test_a_name_known_in_another_category_is_still_created(opencti: OpenCTIDouble, connect: Connect) -> None:
    platform = connect(opencti, connector_type="STREAM")
    platform.ensure_vocabulary("note_types_ov", ["kql"])
    platform.ensure_vocabulary("pattern_type_ov", ["kql"])
    assert [(v["category"], v["name"]) for v in opencti.created_vocabularies] == [
        ("note_types_ov", "kql"),
        ("pattern_type_ov", "kql"),
    ]


def test_platform_errors_are_logged_not_raised(
    opencti: OpenCTIDouble, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    platform = connect(opencti, connector_type="STREAM")
    opencti.fail_next("vocabularyAdd", "access denied")
    with caplog.at_level(logging.WARNING, logger="ctibridge.platform.opencti"):
        platform.ensure_vocabulary("pattern_type_ov", ["kql", "lucene"])
    assert "access denied" in caplog.text and "'kql'" in caplog.text
    assert [v["name"] for v in opencti.created_vocabularies] == ["lucene"]


def test_file_platform_records_entries_idempotently(tmp_path: Path) -> None:
    platform = FilePlatform(tmp_path)
    platform.ensure_vocabulary("pattern_type_ov", PATTERN_TYPES)
    path = tmp_path / "vocabularies.json"
    first = path.read_text(encoding="utf-8")
    assert json.loads(first) == {"pattern_type_ov": sorted(PATTERN_TYPES)}
    platform.ensure_vocabulary("pattern_type_ov", ["KQL", "esql"])
    assert path.read_text(encoding="utf-8") == first
    platform.ensure_vocabulary("note_types_ov", ["internal"])
    assert json.loads(path.read_text(encoding="utf-8"))["note_types_ov"] == ["internal"]
