"""ECS lookups across flat dotted keys, nested objects and arrays."""

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
