"""The bounded store every recurring-value cache goes through."""

from ctibridge.memo import keep


def test_keep_stores_returns_and_never_exceeds_the_limit() -> None:
    cache: dict[int, str] = {}
    assert [keep(cache, n, f"v{n}", 3) for n in range(3)] == ["v0", "v1", "v2"]
    assert cache == {0: "v0", 1: "v1", 2: "v2"}
    assert keep(cache, 3, "v3", 3) == "v3"  # full: emptied first, then stored
    assert cache == {3: "v3"}
    for n in range(100):
        keep(cache, n, str(n), 3)
        assert len(cache) <= 3
    assert keep(cache, 99, "again", 3) == "again" and cache[99] == "again"
