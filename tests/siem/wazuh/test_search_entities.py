"""Per entity type: the query sent through opensearch-py finds the planted alerts and none of the decoys.

Every case runs against the OpenSearch double with Wazuh 4.x keyword semantics (exact, case-sensitive
unless `case_insensitive`), so a query that relied on analysis, missed a spelling or over-matched fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ctibridge.siem.wazuh.search import Unsearchable
from tests.doubles.opensearch import OpenSearchDouble
from tests.siem.wazuh.search_support import Hunting, doc

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
OTHER_SHA256 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
MD5 = "098f6bcd4621d373cade4e832627b4f6"


@pytest.fixture(scope="module")
def hunting() -> Iterator[Hunting]:
    with OpenSearchDouble() as double:
        yield Hunting(double)


def win(**eventdata: Any) -> dict[str, Any]:
    return doc({"data": {"win": {"eventdata": eventdata}}})


# ------------------------------------------------------------------ addresses


def test_ipv4_exact_fields_globs_and_ip_typed(hunting: Hunting) -> None:
    docs = {
        "srcip": doc({"data": {"srcip": "8.8.4.4"}}),
        "aws-ip-typed": doc({"data": {"aws": {"srcaddr": "8.8.4.4"}}}),
        "nested-glob": doc({"data": {"suricata": {"dest_ip": "8.8.4.4"}}}),
        "sysmon": win(destinationIp="8.8.4.4"),
        "agent-ip": doc({"agent": {"ip": "8.8.4.4"}}),
        "longer": doc({"data": {"srcip": "8.8.4.44"}}),
        "in-text-only": doc({"full_log": "connection from 8.8.4.4 refused"}),
    }
    entity = {"type": "ipv4-addr", "value": "8.8.4.4"}
    assert hunting.matched(docs, entity) == {"srcip", "aws-ip-typed", "nested-glob", "sysmon"}
    with_agent = hunting.matched(docs, entity, search={"lookup_agent_ip": True})
    assert with_agent == {"srcip", "aws-ip-typed", "nested-glob", "sysmon", "agent-ip"}


@pytest.mark.parametrize(
    ("cidr", "inside", "outside"),
    [
        ("8.8.0.0/16", ["8.8.0.1", "8.8.255.254"], ["8.80.1.1", "8.9.0.1", "18.8.0.1"]),
        ("203.0.112.0/20", ["203.0.112.1", "203.0.127.254"], ["203.0.111.9", "203.0.128.1", "203.0.1.1"]),
        (
            "198.51.100.4/30",
            ["198.51.100.4", "198.51.100.7"],
            ["198.51.100.8", "198.51.100.3", "198.51.100.40"],
        ),
    ],
)
def test_ipv4_cidr(hunting: Hunting, cidr: str, inside: list[str], outside: list[str]) -> None:
    docs = {f"in-{ip}": doc({"data": {"srcip": ip}}) for ip in inside}
    docs |= {f"out-{ip}": doc({"data": {"dstip": ip}}) for ip in outside}
    docs["typed-in"] = doc({"data": {"aws": {"dstaddr": inside[0]}}})
    docs["typed-out"] = doc({"data": {"aws": {"dstaddr": outside[0]}}})
    matched = hunting.matched(docs, {"type": "ipv4-addr", "value": cidr})
    assert matched == {f"in-{ip}" for ip in inside} | {"typed-in"}


def test_ipv6_textual_forms_and_cidr(hunting: Hunting) -> None:
    docs = {
        "compressed": doc({"data": {"srcip": "2001:db8::1"}}),
        "exploded": doc({"data": {"srcip": "2001:0db8:0000:0000:0000:0000:0000:0001"}}),
        "upper": doc({"data": {"dstip": "2001:DB8::1"}}),
        "glob-upper": doc({"data": {"fw": {"src_ip": "2001:DB8::1"}}}),
        "other": doc({"data": {"srcip": "2001:db8::10"}}),
        "v4": doc({"data": {"srcip": "32.1.13.184"}}),
    }
    assert hunting.matched(docs, {"type": "ipv6-addr", "value": "2001:DB8:0::1"}) == {
        "compressed",
        "exploded",
        "upper",
        "glob-upper",
    }
    net = {
        "in": doc({"data": {"srcip": "2001:db8:1:2::5"}}),
        "in-exploded": doc({"data": {"srcip": "2001:0db8:0001:ffff:0000:0000:0000:0001"}}),
        "out": doc({"data": {"srcip": "2001:db8:2::5"}}),
        "out-near": doc({"data": {"srcip": "2001:db8:10::5"}}),
    }
    assert hunting.matched(net, {"type": "ipv6-addr", "value": "2001:db8:1::/48"}) == {"in", "in-exploded"}


def test_private_addresses_are_skipped_by_default(hunting: Hunting) -> None:
    index = hunting.index({"a": doc({"data": {"srcip": "10.1.2.3"}})})
    hunter = hunting.hunter(index, search={"ignore_private_addrs": True})
    for value in ("10.1.2.3", "192.168.0.0/16", "127.0.0.1", "fe80::1"):
        kind = "ipv6-addr" if ":" in value else "ipv4-addr"
        assert hunter.hunt({"type": kind, "value": value}) is None
        assert "WAZUH_SEARCH_IGNORE_PRIVATE_ADDRS" in (
            hunter.skip_reason({"type": kind, "value": value}) or ""
        )
    assert hunter.skip_reason({"type": "ipv4-addr", "value": "8.8.8.8"}) is None
    assert hunting.hunter(index).hunt({"type": "ipv4-addr", "value": "10.1.2.3"}) is not None


def test_invalid_and_too_broad_addresses_are_unsearchable(hunting: Hunting) -> None:
    hunter = hunting.hunter(hunting.index({}))
    for entity in (
        {"type": "ipv4-addr", "value": "8.8.8.256"},
        {"type": "ipv4-addr", "value": "2001:db8::1"},
        {"type": "ipv6-addr", "value": "8.8.8.8"},
        {"type": "ipv4-addr", "value": "0.0.0.0/0"},
        {"type": "ipv4-addr", "value": "8.0.0.0/5"},
        {"type": "ipv4-addr"},
    ):
        with pytest.raises(Unsearchable):
            hunter.build(entity)
        assert hunter.request_body(entity) is None


# ------------------------------------------------------------------ names


def test_domain_case_insensitive_and_excluded_fields(hunting: Hunting) -> None:
    docs = {
        "sysmon-dns": win(queryName="Evil.Example.COM"),
        "dns": doc({"data": {"dns": {"question": {"name": "evil.example.com"}}}}),
        "glob": doc({"data": {"proxy": {"hostname": "evil.example.com"}}}),
        "suffix": doc({"data": {"dns": {"question": {"name": "evil.example.com.au"}}}}),
        "sub": doc({"data": {"dns": {"question": {"name": "www.evil.example.com"}}}}),
        "predecoder": doc({"predecoder": {"hostname": "evil.example.com"}}),
        "agent-name": doc({"agent": {"name": "evil.example.com"}}),
        "cmdline": win(commandLine="curl https://EVIL.example.com/x"),
    }
    entity = {"type": "domain-name", "value": "evil.example.com."}
    assert hunting.matched(docs, entity) == {"sysmon-dns", "dns", "glob"}
    assert hunting.matched(
        docs, entity, search={"lookup_agent_name": True, "lookup_hostnames_in_cmd_line": True}
    ) == {
        "sysmon-dns",
        "dns",
        "glob",
        "agent-name",
        "cmdline",
    }
    assert hunting.matched(docs, entity, search={"case_insensitive_domains": False}) == {"dns", "glob"}
    assert hunting.matched(docs, {"type": "hostname", "value": "evil.example.com"}) == {
        "sysmon-dns",
        "dns",
        "glob",
    }


def test_url_exact_trailing_slash_and_path_options(hunting: Hunting) -> None:
    url = "https://evil.example/a/b.php?x=1"
    docs = {
        "exact": doc({"data": {"url": url}}),
        "o365": doc({"data": {"office365": {"MessageURLs": [url, "https://ok.example/"]}}}),
        "slash": doc({"data": {"url": url + "/"}}),
        "path": doc({"data": {"url": "/a/b.php?x=1"}}),
        "case": doc({"data": {"url": url.upper()}}),
        "longer": doc({"data": {"url": url + "&y=2"}}),
    }
    entity = {"type": "url", "value": url}
    assert hunting.matched(docs, entity) == {"exact", "o365"}
    assert hunting.matched(docs, entity, search={"lookup_url_ignore_trailing_slash": True}) == {
        "exact",
        "o365",
        "slash",
    }
    assert hunting.matched(docs, entity, search={"lookup_url_without_host": True}) == {
        "exact",
        "o365",
        "path",
    }


def test_email_and_user_account(hunting: Hunting) -> None:
    docs = {
        "o365": doc({"data": {"office365": {"UserId": "Alice@Corp.Example"}}}),
        "glob": doc({"data": {"gcp": {"principalEmail": "alice@corp.example"}}}),
        "other": doc({"data": {"office365": {"UserId": "malice@corp.example"}}}),
    }
    assert hunting.matched(docs, {"type": "email-addr", "value": "alice@corp.example"}) == {"o365", "glob"}
    users = {
        "ssh": doc({"data": {"srcuser": "root"}}),
        "win": win(targetUserName="root"),
        "upper": doc({"data": {"srcuser": "ROOT"}}),
        "uid": doc({"data": {"audit": {"uid": "0"}}}),
        "uid-other": doc({"data": {"audit": {"uid": "1000"}}}),
        "fim": doc({"syscheck": {"uname_after": "root"}}),
        "agent": doc({"agent": {"name": "root"}}),
    }
    assert hunting.matched(users, {"type": "user-account", "account_login": "root"}) == {"ssh", "win", "fim"}
    assert hunting.matched(
        users, {"type": "user-account", "account_login": "root"}, search={"case_insensitive_users": True}
    ) == {"ssh", "win", "fim", "upper"}
    assert hunting.matched(users, {"type": "user-account", "user_id": "0", "account_login": "root"}) == {
        "ssh",
        "win",
        "fim",
        "uid",
    }


def test_mac_spellings(hunting: Hunting) -> None:
    spellings = [
        "aa:bb:cc:0d:ee:ff",
        "AA:BB:CC:0D:EE:FF",
        "aa-bb-cc-0d-ee-ff",
        "AA-BB-CC-0D-EE-FF",
        "aabbcc0deeff",
        "AABBCC0DEEFF",
        "aabb.cc0d.eeff",
        "AABB.CC0D.EEFF",
    ]
    docs = {f"m{n}": doc({"data": {"dhcp": {"mac": s}}}) for n, s in enumerate(spellings)}
    docs["other"] = doc({"data": {"mac": "aa:bb:cc:0d:ee:fe"}})
    docs["mixed"] = doc({"data": {"mac": "Aa:bB:cc:0d:ee:ff"}})
    entity = {"type": "mac-addr", "value": "AA:bb:cc:0d:EE:ff"}
    assert hunting.matched(docs, entity) == {f"m{n}" for n in range(8)}
    assert hunting.matched(docs, entity, search={"lookup_mac_variants": False}) == {"m0"}
    with pytest.raises(Unsearchable):
        hunting.hunter(hunting.index({})).build({"type": "mac-addr", "value": "aa:bb:cc"})


# ------------------------------------------------------------------ files


def sysmon_hashes(sha256: str, md5: str = "0" * 32) -> str:
    return f"SHA1={'1' * 40},MD5={md5.upper()},SHA256={sha256.upper()},IMPHASH={'2' * 32}"


def test_file_hashes_fim_sysmon_and_integrations(hunting: Hunting) -> None:
    docs = {
        "fim": doc({"syscheck": {"path": "/tmp/x", "sha256_after": SHA256}}),
        "fim-before": doc({"syscheck": {"path": "/tmp/x", "sha256_before": SHA256}}),
        "sysmon": win(image="C:\\x.exe", hashes=sysmon_hashes(SHA256)),
        "sysmon-last": win(image="C:\\x.exe", hashes=f"MD5={'0' * 32},SHA256={SHA256.upper()}"),
        "osquery": doc({"data": {"osquery": {"columns": {"sha256": SHA256}}}}),
        "other": doc({"syscheck": {"path": "/tmp/x", "sha256_after": OTHER_SHA256}}),
        "sysmon-other": win(image="C:\\x.exe", hashes=sysmon_hashes(OTHER_SHA256)),
        "md5-as-imphash": win(hashes=f"SHA256={OTHER_SHA256.upper()},IMPHASH={MD5.upper()}"),
        "md5": doc({"data": {"virustotal": {"source": {"md5": MD5}}}}),
    }
    entity = {"type": "file", "hashes": {"SHA-256": SHA256.upper()}}
    assert hunting.matched(docs, entity) == {"fim", "fim-before", "sysmon", "sysmon-last", "osquery"}
    assert hunting.matched(docs, entity, search={"lookup_hashes_in_sysmon": False}) == {
        "fim",
        "fim-before",
        "osquery",
    }
    assert hunting.matched(docs, {"type": "file", "hashes": {"MD5": MD5}}) == {"md5"}
    assert hunting.matched(docs, {"type": "artifact", "hashes": {"SHA256": SHA256}}) == {
        "fim",
        "fim-before",
        "sysmon",
        "sysmon-last",
        "osquery",
    }


def test_file_bad_hashes_and_name_fallback(hunting: Hunting) -> None:
    hunter = hunting.hunter(hunting.index({}))
    with pytest.raises(Unsearchable, match="hash"):
        hunter.build({"type": "file", "hashes": {"SHA-256": "abc"}})
    with pytest.raises(Unsearchable):
        hunting.hunter(hunting.index({}), search={"filesearch_options": "search-size"}).build(
            {"type": "file", "name": "evil.exe"}
        )


def test_file_names_basenames_backslash_forms_and_case(hunting: Hunting) -> None:
    docs = {
        "sysmon": win(image="C:\\Windows\\Temp\\Evil.exe"),
        "doubled": win(targetFilename="C:\\\\Windows\\\\Temp\\\\evil.exe"),
        "linux": doc({"data": {"audit": {"exe": "/tmp/evil.exe"}}}),
        "original": win(originalFileName="EVIL.EXE"),
        "bare": doc({"data": {"smbd": {"filename": "evil.exe"}}}),
        "prefixed": win(image="C:\\Windows\\Temp\\notevil.exe"),
        "suffixed": doc({"syscheck": {"path": "/tmp/evil.exe.bak"}}),
        "dir-named": doc({"syscheck": {"path": "/tmp/evil.exe/readme"}}),
    }
    entity = {"type": "file", "name": "evil.exe"}
    assert hunting.matched(docs, entity) == {"sysmon", "doubled", "linux", "original", "bare"}
    exact_case = hunting.matched(
        docs, entity, search={"filesearch_options": "search-filename-only,match-basename"}
    )
    assert exact_case == {"doubled", "linux", "bare"}
    no_wildcard = hunting.matched(
        docs, entity, search={"filesearch_options": "search-filename-only,case-insensitive"}
    )
    assert no_wildcard == {"original", "bare"}
    regexp = hunting.matched(docs, entity, search={"filesearch_options": "search-filename-only,allow-regexp"})
    assert regexp == {"doubled", "linux", "bare"}


def test_file_absolute_paths_parent_directory_and_additional_names(hunting: Hunting) -> None:
    docs = {
        "single": win(image="C:\\Windows\\Temp\\evil.exe"),
        "doubled": win(image="C:\\\\Windows\\\\Temp\\\\evil.exe"),
        "other-dir": win(image="C:\\Windows\\evil.exe"),
        "alias": doc({"syscheck": {"path": "c:\\windows\\temp\\EVIL2.exe"}}),
    }
    assert hunting.matched(docs, {"type": "file", "name": "C:\\Windows\\Temp\\evil.exe"}) == {
        "single",
        "doubled",
    }
    entity = {
        "type": "file",
        "name": "evil.exe",
        "parent_directory_ref": "directory--1",
        "x_opencti_additional_names": ["evil2.exe"],
    }
    related = [{"type": "directory", "id": "directory--1", "path": "C:\\Windows\\Temp\\"}]
    assert hunting.matched(docs, entity, related) == {"single", "doubled", "alias"}
    regexp = hunting.matched(
        docs,
        {"type": "file", "name": "C:\\Windows\\Temp\\evil.exe"},
        search={"filesearch_options": "search-filename-only,allow-regexp,require-abs-path"},
    )
    assert regexp == {"single", "doubled"}
    with pytest.raises(Unsearchable):
        hunting.hunter(
            hunting.index({}), search={"filesearch_options": "search-filename-only,require-abs-path"}
        ).build({"type": "file", "name": "evil.exe"})


def test_file_size_must_agree_when_present(hunting: Hunting) -> None:
    docs = {
        "fim-same": doc({"syscheck": {"path": "/opt/evil.bin", "size_after": 4096}}),
        "fim-other": doc({"syscheck": {"path": "/opt/evil.bin", "size_after": 12}}),
        "sysmon-no-size": win(image="C:\\evil.bin"),
    }
    entity = {"type": "file", "name": "evil.bin", "size": 4096}
    assert hunting.matched(docs, entity) == {"fim-same", "sysmon-no-size"}
    no_size = {"filesearch_options": "search-filename-only,match-basename"}
    assert hunting.matched(docs, entity, search=no_size) == {"fim-same", "fim-other", "sysmon-no-size"}


def test_file_name_and_hash_option(hunting: Hunting) -> None:
    docs = {
        "both": doc({"syscheck": {"path": "/opt/evil.bin", "sha256_after": SHA256}}),
        "hash-only": doc({"syscheck": {"path": "/opt/other.bin", "sha256_after": SHA256}}),
    }
    entity = {"type": "file", "name": "evil.bin", "hashes": {"SHA-256": SHA256}}
    assert hunting.matched(docs, entity) == {"both", "hash-only"}
    options = {"filesearch_options": "search-name-and-hash,match-basename"}
    assert hunting.matched(docs, entity, search=options) == {"both"}


def test_directory_subdirs_files_and_trailing_slash(hunting: Hunting) -> None:
    docs = {
        "audit": doc({"data": {"audit": {"directory": {"name": "/var/www"}}}}),
        "slash": doc({"data": {"audit": {"directory": {"name": "/var/www/"}}}}),
        "sub": doc({"data": {"audit": {"directory": {"name": "/var/www/html"}}}}),
        "file": doc({"syscheck": {"path": "/var/www/html/shell.php"}}),
        "sibling": doc({"syscheck": {"path": "/var/wwwroot/x.php"}}),
        "win-doubled": win(currentDirectory="C:\\\\Users\\\\Public\\\\"),
        "win-file": win(image="c:\\users\\public\\x.exe"),
        "win-sibling": win(image="C:\\Users\\PublicX\\x.exe"),
    }
    assert hunting.matched(docs, {"type": "directory", "path": "/var/www/"}) == {
        "audit",
        "slash",
        "sub",
        "file",
    }
    exact_only = hunting.matched(
        docs, {"type": "directory", "path": "/var/www"}, search={"dirsearch_options": "none"}
    )
    assert exact_only == {"audit"}
    assert hunting.matched(docs, {"type": "directory", "path": "C:\\Users\\Public"}) == {
        "win-doubled",
        "win-file",
    }
    regexp = hunting.matched(
        docs,
        {"type": "directory", "path": "C:\\Users\\Public"},
        search={"dirsearch_options": "allow-regexp,search-filenames,case-insensitive"},
    )
    assert regexp == {"win-doubled", "win-file"}


# ------------------------------------------------------------------ processes, registry


def test_process_command_line_and_auditd_arguments(hunting: Hunting) -> None:
    command = 'powershell.exe -enc "SQBFAFgA" -w hidden'
    docs = {
        "sysmon": win(commandLine=command),
        "parent": win(parentCommandLine=command.upper()),
        "doubled": win(commandLine="C:\\\\Tools\\\\x.exe /q"),
        "audit": doc(
            {
                "data": {
                    "audit": {
                        "execve": {
                            "a0": "powershell.exe",
                            "a1": "-enc",
                            "a2": "SQBFAFgA",
                            "a3": "-w",
                            "a4": "hidden",
                        }
                    }
                }
            }
        ),
        "audit-partial": doc(
            {"data": {"audit": {"execve": {"a0": "powershell.exe", "a1": "-enc", "a2": "other"}}}}
        ),
        "longer": win(commandLine=command + " -nop"),
    }
    assert hunting.matched(docs, {"type": "process", "command_line": command}) == {
        "sysmon",
        "parent",
        "audit",
    }
    assert hunting.matched(
        docs, {"type": "process", "command_line": command}, search={"procsearch_options": "none"}
    ) == {"sysmon", "audit"}
    assert hunting.matched(docs, {"type": "process", "command_line": "C:\\Tools\\x.exe /q"}) == {"doubled"}
    with pytest.raises(Unsearchable):
        hunting.hunter(hunting.index({})).build({"type": "process", "pid": 4})


def test_registry_keys_hive_aliases_subkeys_and_values(hunting: Hunting) -> None:
    run = "Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    docs = {
        "fim": doc({"syscheck": {"path": f"HKEY_LOCAL_MACHINE\\{run}", "value_name": "evil"}}),
        "sysmon": win(targetObject=f"HKLM\\{run}\\evil"),
        "sysmon-doubled": win(targetObject="HKLM\\\\" + run.replace("\\", "\\\\")),
        "case": win(targetObject=f"hklm\\{run.lower()}"),
        "runonce": win(targetObject=f"HKLM\\{run}Once\\evil"),
        "hkcu": win(targetObject=f"HKCU\\{run}"),
    }
    entity = {"type": "windows-registry-key", "key": f"HKEY_LOCAL_MACHINE\\{run}\\"}
    assert hunting.matched(docs, entity) == {"fim", "sysmon", "sysmon-doubled", "case"}
    strict = {"regkeysearch_options": "none"}
    assert (
        hunting.matched(docs, {"type": "windows-registry-key", "key": f"HKLM\\{run}"}, search=strict) == set()
    )
    assert hunting.matched(
        docs, {"type": "windows-registry-key", "key": f"HKEY_LOCAL_MACHINE\\{run}"}, search=strict
    ) == {"fim"}
    values = {"type": "windows-registry-key", "key": f"HKLM\\{run}", "values": [{"name": "evil"}]}
    assert hunting.matched(docs, values, search={"regkeysearch_options": "search-hive-aliases"}) == {
        "fim",
        "sysmon",
    }
    sid_docs = {
        "user1": win(targetObject=f"HKU\\S-1-5-21-1-2-3-1001\\{run}\\x"),
        "user2": doc({"syscheck": {"path": f"HKEY_USERS\\S-1-5-21-9-9-9-500\\{run}"}}),
        "other": win(targetObject=f"HKU\\S-1-5-21-1-2-3-1001\\{run}Once"),
    }
    sid_entity = {"type": "windows-registry-key", "key": f"HKU\\S-1-5-21-1-2-3-1001\\{run}"}
    options = {"regkeysearch_options": "ignore-sid,allow-regexp,search-hive-aliases,match-subdirs"}
    assert hunting.matched(sid_docs, sid_entity, search=options) == {"user1", "user2"}
    with pytest.raises(Unsearchable):
        hunting.hunter(hunting.index({}), search={"regkeysearch_options": "require-abs-path"}).build(
            {"type": "windows-registry-key", "key": "Software\\Run"}
        )


# ------------------------------------------------------------------ the rest


def test_user_agent_network_traffic_software_vulnerability(hunting: Hunting) -> None:
    ua = "Mozilla/5.0 (evil; rv:1.0)"
    docs = {
        "ua": doc({"data": {"http": {"http_user_agent": ua}}}),
        "ua-glob": doc({"data": {"aws": {"userAgent": ua}}}),
        "ua-other": doc({"data": {"http": {"http_user_agent": ua + " x"}}}),
        "flow": doc({"data": {"srcip": "8.8.4.4", "dstip": "1.1.1.1", "dstport": "443"}}),
        "flow-port": doc({"data": {"srcip": "8.8.4.4", "dstip": "1.1.1.1", "dstport": "80"}}),
        "flow-reverse": doc({"data": {"srcip": "1.1.1.1", "dstip": "8.8.4.4", "dstport": "443"}}),
        "vuln": doc(
            {
                "data": {
                    "vulnerability": {
                        "cve": "CVE-2024-3094",
                        "package": {"name": "xz-utils", "version": "5.6.0"},
                    }
                }
            }
        ),
        "vuln-other": doc(
            {
                "data": {
                    "vulnerability": {
                        "cve": "CVE-2024-30940",
                        "package": {"name": "xz-utils", "version": "5.6.1"},
                    }
                }
            }
        ),
    }
    assert hunting.matched(docs, {"type": "user-agent", "value": ua}) == {"ua", "ua-glob"}
    traffic = {
        "type": "network-traffic",
        "src_ref": "ipv4-addr--s",
        "dst_ref": "ipv4-addr--d",
        "dst_port": 443,
    }
    related = [
        {"type": "ipv4-addr", "id": "ipv4-addr--s", "value": "8.8.4.4"},
        {"type": "ipv4-addr", "id": "ipv4-addr--d", "value": "1.1.1.1"},
    ]
    assert hunting.matched(docs, traffic, related) == {"flow"}
    with pytest.raises(Unsearchable, match="related"):
        hunting.hunter(hunting.index({})).build(traffic)
    assert hunting.matched(docs, {"type": "vulnerability", "name": "cve-2024-3094"}) == {"vuln"}
    assert hunting.matched(docs, {"type": "software", "name": "XZ-Utils"}) == {"vuln", "vuln-other"}
    assert hunting.matched(docs, {"type": "software", "name": "xz-utils", "version": "5.6.0"}) == {"vuln"}


def test_indicator_patterns(hunting: Hunting) -> None:
    docs = {
        "dns": win(queryName="evil.example"),
        "ip": doc({"data": {"srcip": "8.8.4.4"}}),
        "other": win(queryName="good.example"),
    }
    pattern = "[domain-name:value = 'evil.example'] OR [ipv4-addr:value = '8.8.4.4']"
    assert hunting.matched(docs, {"type": "indicator", "pattern_type": "stix", "pattern": pattern}) == {
        "dns",
        "ip",
    }
    hunter = hunting.hunter(hunting.index({}))
    for entity in (
        {"type": "indicator", "pattern_type": "sigma", "pattern": "title: x"},
        {"type": "indicator", "pattern_type": "stix", "pattern": "[domain-name:value = "},
        {"type": "indicator", "pattern_type": "stix", "pattern": "[x-unknown:value = 'a']"},
    ):
        with pytest.raises(Unsearchable):
            hunter.build(entity)
        assert hunter.hunt(entity) is None


def test_unsearchable_types_and_shapes(hunting: Hunting) -> None:
    hunter = hunting.hunter(hunting.index({}))
    odd = [{"type": name, "value": "x"} for name in ("cidr", "addresses", "hash-clause", "name-clause", "ip")]
    for entity in ({"type": "threat-actor", "name": "x"}, {"value": "x"}, {"type": "url", "value": ""}, *odd):
        with pytest.raises(Unsearchable):
            hunter.build(entity)
