"""Observable validation: invalid values are dropped (with a debug line), valid ones normalised."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from ctibridge.model import Severity, parse_severity, severity_from_score
from ctibridge.model.observables import (
    make_asn,
    make_domain,
    make_email,
    make_file,
    make_hostname,
    make_ip,
    make_mac,
    make_network_traffic,
    make_process,
    make_registry_key,
    make_url,
    make_user,
    normalize_hash,
)


@pytest.mark.parametrize(
    ("raw", "value", "version"),
    [
        ("10.0.0.1", "10.0.0.1", 4),
        (" 192.168.1.0/24 ", "192.168.1.0/24", 4),
        ("10.1.2.3/32", "10.1.2.3", 4),
        ("2001:DB8::0:1", "2001:db8::1", 6),
        ("::ffff:10.0.0.9", "10.0.0.9", 4),
        ("fe80::1%eth0", "fe80::1", 6),
    ],
)
def test_ip_normalisation(raw: str, value: str, version: int) -> None:
    ip = make_ip(raw)
    assert ip is not None and (ip.value, ip.version) == (value, version)


@pytest.mark.parametrize(
    "raw", ["300.1.1.1", "10.0.0.1/24", "not-an-ip", "", None, "1.2.3", ["10.0.0.1"], "10.0.0.0/33"]
)
def test_invalid_ips_are_dropped(raw: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ctibridge.model.observables"):
        assert make_ip(raw) is None


def test_invalid_ip_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ctibridge.model.observables"):
        make_ip("999.1.1.1")
    assert any("dropped invalid ip" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize(
    ("algorithm", "value", "expected"),
    [
        ("md5", "D41D8CD98F00B204E9800998ECF8427E", ("MD5", "d41d8cd98f00b204e9800998ecf8427e")),
        ("sha1", "a" * 40, ("SHA-1", "a" * 40)),
        ("SHA-256", "b" * 64, ("SHA-256", "b" * 64)),
        ("sha512", "c" * 128, ("SHA-512", "c" * 128)),
        ("md5", "d41d8cd98f00b204e9800998ecf8427", None),
        ("sha256", "z" * 64, None),
        ("sha1", "0" * 40, None),
        ("crc32", "abcd1234", None),
    ],
)
def test_hashes(algorithm: str, value: str, expected: tuple[str, str] | None) -> None:
    assert normalize_hash(algorithm, value) == expected


def test_file_from_path_and_bad_hash() -> None:
    file = make_file(path="/usr/bin/curl", hashes={"md5": "bad", "sha256": "e" * 64}, size="1024")
    assert file is not None
    assert (file.name, file.directory.path if file.directory else None, file.size) == (
        "curl",
        "/usr/bin",
        1024,
    )
    assert file.hash_map == {"SHA-256": "e" * 64}
    assert make_file(hashes={"md5": "bad"}) is None, "nothing left to identify the file"
    win = make_file(path="C:\\Windows\\System32\\cmd.exe")
    assert win is not None and win.name == "cmd.exe" and win.directory is not None
    assert win.directory.path == "C:\\Windows\\System32"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Evil.Example.COM.", "evil.example.com"),
        ("bücher.example", "bücher.example"),
        ("a_b.example.org", "a_b.example.org"),
    ],
)
def test_domains(raw: str, expected: str) -> None:
    domain = make_domain(raw)
    assert domain is not None and domain.value == expected


@pytest.mark.parametrize(
    "raw", ["localhost", "10.0.0.1", "-bad.example", "a..b", "has space.example", "x" * 300]
)
def test_invalid_domains(raw: str) -> None:
    assert make_domain(raw) is None


def test_other_observables() -> None:
    assert make_mac("0011.2233.4455").value == "00:11:22:33:44:55"  # type: ignore[union-attr]
    assert make_mac("00:11:22:33:44") is None
    assert make_email("not an email") is None
    assert make_url("/relative/path") is None
    assert make_url("hxxp://defanged") is not None  # a scheme is a scheme
    assert make_hostname("two words") is None
    assert make_asn("AS4294967296") is None
    assert make_process(name="cmd.exe") is None, "OpenCTI keys processes on pid or command line"
    assert make_process(pid="12x") is None
    key = make_registry_key("hkcu\\Software\\Run")
    assert key is not None and key.key == "HKEY_CURRENT_USER\\Software\\Run"
    assert make_network_traffic("10.0.0.1", "10.0.0.2", 1, None) is None
    traffic = make_network_traffic("10.0.0.1", "10.0.0.2", "1025", 443, ["TCP", "tcp", " "])
    assert traffic is not None and traffic.protocols == ("tcp",)


def test_severity() -> None:
    assert [severity_from_score(s) for s in (0, 21, 22, 47, 48, 73, 74, 100)] == [
        Severity.LOW,
        Severity.LOW,
        Severity.MEDIUM,
        Severity.MEDIUM,
        Severity.HIGH,
        Severity.HIGH,
        Severity.CRITICAL,
        Severity.CRITICAL,
    ]
    assert parse_severity("Informational") is Severity.LOW
    assert parse_severity("HIGH") is Severity.HIGH
    assert parse_severity("bogus") is None
    assert [s.priority for s in Severity] == ["P4", "P3", "P2", "P1"]


# The fast paths in make_ip (canonical dotted quads, a cache of parsed texts) must agree with ipaddress.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ctibridge.model.observables import _parse_ip  # noqa: E402

_octet = st.one_of(
    st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "255", "256", "", "٣", "1a"])
)
_quads = st.lists(_octet, min_size=3, max_size=5).map(".".join)
_ipish = st.one_of(_quads, st.ip_addresses().map(str), st.text("0123456789abcdef:./%", max_size=24))


@settings(max_examples=500, deadline=None)
@given(_ipish, st.sampled_from(["", " ", "\n"]))
def test_make_ip_fast_paths_equal_the_ipaddress_parse(text: str, pad: str) -> None:
    raw = pad + text + pad
    stripped = raw.strip()
    expected = _parse_ip(raw, stripped) if stripped else None
    assert make_ip(raw) == expected
    assert make_ip(raw) == expected  # second call: from the cache when it was not a canonical quad


def test_file_hash_is_cached_but_not_carried_across_processes() -> None:
    import pickle

    from ctibridge.model.observables import Directory, File

    made = File("a.exe", (("MD5", "0" * 31 + "1"),), 10, Directory("C:\\t"))
    again = File("a.exe", (("MD5", "0" * 31 + "1"),), 10, Directory("C:\\t"))
    assert made == again and hash(made) == hash(again) and {made: 1}[again] == 1
    assert made != File("b.exe", made.hashes, 10, made.directory)
    copied = pickle.loads(pickle.dumps(made))
    assert copied == made and copied._hash is None  # recomputed where it is used
    assert "_hash" not in repr(made)


def test_a_process_known_only_by_its_pid_is_not_made() -> None:
    """A pid alone would be one object with every process of that pid on any host (its id is the pid's)."""
    assert make_process(pid=4) is None
    assert make_process(pid="4", cwd="C:\\", created=datetime(2025, 1, 1, tzinfo=UTC)) is None
    assert make_process(pid=4, command_line="svchost.exe -k netsvcs") is not None
    assert make_process(pid=4, name="System") is not None
    assert make_process(pid=4, image=make_file(path="C:\\Windows\\System32\\smss.exe")) is not None
    assert make_process(pid=4, user=make_user(login="SYSTEM")) is not None
    parent = make_process(pid=4, name="System")
    assert make_process(pid=8, parent=parent) is not None
    assert make_process(command_line="whoami") is not None
