"""The streaming bundle writer: each object once within its window, memory bounded, a valid bundle."""

from __future__ import annotations

import io
import json

from ctibridge.convert import BundleWriter, Stats


def _obj(n: int) -> dict[str, str]:
    return {"type": "x-test", "id": f"x-test--{n:08d}", "name": f"object {n}"}


def _written(writer_output: str) -> list[str]:
    bundle = json.loads(writer_output)
    assert bundle["type"] == "bundle" and bundle["id"].startswith("bundle--")
    return [obj["id"] for obj in bundle["objects"]]


def test_an_object_seen_again_within_the_window_is_written_once() -> None:
    out, stats = io.StringIO(), Stats()
    writer = BundleWriter(out, stats, window=10)
    writer.write([_obj(1), _obj(2), _obj(1)])  # a repeat inside one group
    writer.write([_obj(2), _obj(3)])  # and across groups
    writer.close()
    assert _written(out.getvalue()) == [_obj(n)["id"] for n in (1, 2, 3)]
    assert stats.written == {"x-test": 3}


def test_a_recurring_object_stays_suppressed_however_long_the_stream() -> None:
    out = io.StringIO()
    writer = BundleWriter(out, Stats(), window=10)
    for n in range(100):
        writer.write([_obj(-1), _obj(n)])  # the author-like object recurs in every group
    writer.close()
    ids = _written(out.getvalue())
    assert ids.count(_obj(-1)["id"]) == 1
    assert len(ids) == 101


def test_memory_is_bounded_and_old_objects_may_be_written_again() -> None:
    out = io.StringIO()
    window = 10
    writer = BundleWriter(out, Stats(), window=window)
    for n in range(1000):
        writer.write([_obj(n)])
        assert len(writer._recent) + len(writer._older) <= 2 * window + 1
    writer.write([_obj(0)])  # a thousand distinct ids later: out of the window, so written again
    writer.close()
    ids = _written(out.getvalue())
    assert ids.count(_obj(0)["id"]) == 2


def test_an_object_is_suppressed_for_at_least_a_full_window() -> None:
    window = 10
    for gap in range(window):  # 0..window-1 distinct ids between the two sightings
        out = io.StringIO()
        writer = BundleWriter(out, Stats(), window=window)
        for n in range(25):  # fill generations so the object lands at every phase of a roll
            writer.write([_obj(1000 + n)])
        writer.write([_obj(0)])
        for n in range(gap):
            writer.write([_obj(n + 1)])
        writer.write([_obj(0)])
        writer.close()
        assert _written(out.getvalue()).count(_obj(0)["id"]) == 1, gap


def test_the_bundle_id_follows_the_content() -> None:
    def bundle_id(objects: list[dict[str, str]]) -> str:
        out = io.StringIO()
        writer = BundleWriter(out, Stats())
        writer.write(objects)
        writer.close()
        return str(json.loads(out.getvalue())["id"])

    assert bundle_id([_obj(1), _obj(2)]) == bundle_id([_obj(1), _obj(2)])
    assert bundle_id([_obj(1), _obj(2)]) != bundle_id([_obj(1), _obj(3)])
