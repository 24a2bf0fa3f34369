"""ECS lookups across flat dotted keys, nested objects and arrays."""

import pytest

from ctibridge.siem.ecs import first, objects, values

DOC = {
    "kibana.alert.rule.name": "flat",
    "host": {"ip": ["10.0.0.1", "10.0.0.2"], "os": {"name": "Linux"}},
    "process.parent": {"pid": 4},
    "process": {"parent.command_line": "init"},
    "related": {"ip": "10.0.0.9"},
    "threat": {"enrichments": [{"matched": {"atomic": "1.2.3.4"}}, {"matched": {"atomic": "5.6.7.8"}}]},
    "nulls": {"x": None},
}


def test_flat_nested_and_mixed_paths() -> None:
    assert first(DOC, "kibana.alert.rule.name") == "flat"
    assert values(DOC, "host.ip") == ["10.0.0.1", "10.0.0.2"]
    assert first(DOC, "host.os.name") == "Linux"
    assert first(DOC, "process.parent.pid") == 4
    assert first(DOC, "process.parent.command_line") == "init"
    assert values(DOC, "threat.enrichments.matched.atomic") == ["1.2.3.4", "5.6.7.8"]
    assert len(objects(DOC, "threat.enrichments")) == 2


def test_absent_and_null() -> None:
    assert first(DOC, "nope.nothing") is None
    assert values(DOC, "nulls.x") == []
    assert values(DOC, "host") == [], "an object is not a scalar value"


def test_document_with_a_field_set_indexes_exactly_those_paths() -> None:
    from ctibridge.siem.ecs import EcsDocument, FieldSet

    source = {
        "host": {"ip": ["10.0.0.1", "10.0.0.2"], "os": {"name": "Linux"}, "mac": ["aa"]},
        "host.ip": "10.0.0.3",
        "threat": {"enrichments": [{"matched": {"atomic": "a"}}, {"matched": {"atomic": ["b", None]}}]},
        "kibana.alert.rule.name": "Rule",
        "event": {"kind": "signal"},
        "count": 0,
        "flag": False,
    }
    fields = FieldSet(
        ["host.ip", "host.os.name", "threat.enrichments.matched.atomic", "kibana.alert.rule.name", "count",
         "flag", "absent.path"]
    )  # fmt: skip
    only = EcsDocument(source, only=fields, strict=True)
    full = EcsDocument(source)
    for path in fields.paths:
        assert only.values(path) == full.values(path), path
        assert only.first(path) == full.first(path), path
    assert only.values("host.ip") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert only.first("count") == 0 and only.first("flag") is False
    # A path outside the set is a mapping bug, not an absent field.
    with pytest.raises(KeyError):
        only.first("event.kind")
    with pytest.raises(KeyError):
        only.values("host.mac")
    with pytest.raises(KeyError):
        only.present(("host.ip", "host.mac"))
    with pytest.raises(KeyError):
        only.has_any(frozenset({"event.kind"}))
    # Without strict, the production setting, the same reads are plain lookups: absent means None.
    lenient = EcsDocument(source, only=fields)
    assert lenient.first("event.kind") is None and lenient.values("host.mac") == []
    assert lenient.values("host.ip") == only.values("host.ip")
