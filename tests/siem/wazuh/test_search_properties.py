"""Hostile entity values (quotes, backslashes, `*`, `?`, regex operators, unicode) match only themselves.

Each property plants the value, and decoys built to match if any metacharacter leaked unescaped, into the
double, then hunts with the options that put the value into `wildcard`, `regexp` and `prefix` clauses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ctibridge.siem.wazuh.search import backslash_regexp, escape_regexp, escape_wildcard
from tests.doubles.opensearch import OpenSearchDouble
from tests.doubles.opensearch_query import regexp_to_re, wildcard_to_re
from tests.siem.wazuh.search_support import Hunting, doc

HOSTILE = [*"\"'\\*?.+|{}[]()#@&<>~^$/:=!- ,;%_", "a", "b", "Z", "é", "ß", "\u00a0", "字", "😀", "\t"]
RELAXED = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

hostile = st.text(alphabet=st.sampled_from(HOSTILE), min_size=1, max_size=16).filter(
    lambda v: v == v.strip() and not v.endswith(".")
)
no_separators = hostile.filter(lambda v: "/" not in v and "\\" not in v)


def mutations(value: str) -> list[str]:
    """Strings a leaked metacharacter would also match: the wildcard, regex and separator readings."""
    out = [
        value.replace("*", "XYZ"),
        value.replace("*", ""),
        value.replace("?", "Q"),
        value.replace(".", "x"),
        value.replace("\\", ""),
        value.replace("\\", "\\\\"),
        value.replace("+", "++"),
        value.replace("|", ""),
        value + "x",
        value[:-1],
        value[:-1] + "y" if value else "y",
        "q" + value[1:],
        value.replace('"', ""),
        value.replace("~", ""),
        value.replace("#", ""),
    ]
    return [m for m in dict.fromkeys(out) if m and m.strip() == m and differs(m, value)]


def differs(a: str, b: str) -> bool:
    return a.lower() != b.lower() and a.upper() != b.upper() and a.casefold() != b.casefold()


@pytest.fixture(scope="module")
def hunting() -> Iterator[Hunting]:
    with OpenSearchDouble() as double:
        yield Hunting(double)


# -------------------------------------------------------------- the escaping functions themselves


@settings(max_examples=300, deadline=None)
@given(value=st.text(min_size=1, max_size=30), other=st.text(max_size=30))
def test_escape_wildcard_and_regexp_match_only_the_value(value: str, other: str) -> None:
    wildcard = re.compile(wildcard_to_re(escape_wildcard(value)), re.DOTALL)
    lucene = regexp_to_re(escape_regexp(value))
    assert wildcard.fullmatch(value) and lucene.fullmatch(value)
    for decoy in [other, *mutations(value)]:
        if decoy != value:
            assert not wildcard.fullmatch(decoy) and not lucene.fullmatch(decoy)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.text(alphabet=st.sampled_from([*HOSTILE[:-8], "a"]), min_size=1, max_size=6),
        min_size=1,
        max_size=4,
    )
)
def test_backslash_regexp_allows_any_number_of_backslashes_only(parts: list[str]) -> None:
    parts = [p.strip("\\") for p in parts]
    assume(all(parts))
    path = "\\".join(parts)
    pattern = regexp_to_re(backslash_regexp(path))
    assert pattern.fullmatch(path)
    assert pattern.fullmatch("\\\\".join(parts))
    if len(parts) > 1:
        assert not pattern.fullmatch("".join(parts)) or "\\" in "".join(parts)
        assert not pattern.fullmatch("/".join(parts)) or "/".join(parts) == path


# -------------------------------------------------------------- through the double


@RELAXED
@given(value=hostile)
def test_domains_exact_and_in_command_lines(hunting: Hunting, value: str) -> None:
    decoys = mutations(value)
    docs = {
        "hit": doc({"data": {"win": {"eventdata": {"queryName": value}}}}),
        "hit-upper": doc({"data": {"dns": {"question": {"name": value.upper()}}}}),
        "hit-cmd": doc({"data": {"win": {"eventdata": {"commandLine": f"ping {value} -n 1"}}}}),
    }
    for n, decoy in enumerate(decoys):
        docs[f"decoy-{n}"] = doc({"data": {"win": {"eventdata": {"queryName": decoy}}}})
        command = f"ping {decoy} -n 1"
        if (
            re.search(re.escape(value), command, re.IGNORECASE) is None
            and value.upper() not in command.upper()
        ):
            docs[f"decoy-cmd-{n}"] = doc({"data": {"win": {"eventdata": {"commandLine": command}}}})
    if value.upper().lower() != value.lower():
        docs.pop("hit-upper")  # upper-casing is not reversible for this value (e.g. ß -> SS)
    matched = hunting.matched(
        docs, {"type": "domain-name", "value": value}, search={"lookup_hostnames_in_cmd_line": True}
    )
    assert matched == {k for k in docs if k.startswith("hit")}


@RELAXED
@given(value=no_separators)
def test_file_basenames_with_wildcard_and_regexp(hunting: Hunting, value: str) -> None:
    docs = {
        "hit-win": doc({"data": {"win": {"eventdata": {"image": f"C:\\Temp\\{value}"}}}}),
        "hit-doubled": doc({"data": {"win": {"eventdata": {"targetFilename": f"C:\\\\Temp\\\\{value}"}}}}),
        "hit-linux": doc({"data": {"audit": {"exe": f"/tmp/{value}"}}}),
        "prefixed": doc({"data": {"audit": {"exe": f"/tmp/x{value}"}}}),
    }
    for n, decoy in enumerate(mutations(value)):
        if "/" not in decoy and "\\" not in decoy:
            docs[f"decoy-{n}"] = doc({"data": {"win": {"eventdata": {"image": f"C:\\Temp\\{decoy}"}}}})
    options = {"filesearch_options": "search-filename-only,match-basename,allow-regexp,case-insensitive"}
    matched = hunting.matched(docs, {"type": "file", "name": value}, search=options)
    assert matched == {k for k in docs if k.startswith("hit")}


@RELAXED
@given(value=no_separators)
def test_registry_keys_with_regexp_and_prefix(hunting: Hunting, value: str) -> None:
    key = f"HKLM\\Software\\{value}"
    docs = {
        "hit": doc({"data": {"win": {"eventdata": {"targetObject": key}}}}),
        "hit-fim": doc({"syscheck": {"path": f"HKEY_LOCAL_MACHINE\\Software\\{value}"}}),
        "hit-sub": doc({"data": {"win": {"eventdata": {"targetObject": f"{key}\\Sub"}}}}),
        "hit-doubled": doc(
            {"data": {"win": {"eventdata": {"targetObject": f"HKLM\\\\Software\\\\{value}"}}}}
        ),
        "sibling": doc({"data": {"win": {"eventdata": {"targetObject": f"{key}x"}}}}),
    }
    for n, decoy in enumerate(mutations(value)):
        if "\\" not in decoy:
            docs[f"decoy-{n}"] = doc(
                {"data": {"win": {"eventdata": {"targetObject": f"HKLM\\Software\\{decoy}"}}}}
            )
    options = {"regkeysearch_options": "match-subdirs,search-hive-aliases,allow-regexp,case-insensitive"}
    matched = hunting.matched(docs, {"type": "windows-registry-key", "key": key}, search=options)
    assert matched == {k for k in docs if k.startswith("hit")}


@RELAXED
@given(value=no_separators)
def test_directories_with_prefix_and_regexp(hunting: Hunting, value: str) -> None:
    docs = {
        "hit": doc({"data": {"audit": {"directory": {"name": f"/srv/{value}"}}}}),
        "hit-file": doc({"syscheck": {"path": f"/srv/{value}/index.php"}}),
        "sibling": doc({"syscheck": {"path": f"/srv/{value}x/index.php"}}),
    }
    for n, decoy in enumerate(mutations(value)):
        if "/" not in decoy and "\\" not in decoy:
            docs[f"decoy-{n}"] = doc({"syscheck": {"path": f"/srv/{decoy}/index.php"}})
    options = {"dirsearch_options": "match-subdirs,search-filenames,allow-regexp,case-insensitive"}
    matched = hunting.matched(docs, {"type": "directory", "path": f"/srv/{value}"}, search=options)
    assert matched == {k for k in docs if k.startswith("hit")}


@RELAXED
@given(value=hostile)
def test_exact_values_urls_users_and_command_lines(hunting: Hunting, value: str) -> None:
    docs = {
        "hit-url": doc({"data": {"url": f"http://h/{value}"}}),
        "hit-user": doc({"data": {"srcuser": value}}),
        "hit-cmd": doc({"data": {"win": {"eventdata": {"commandLine": value}}}}),
    }
    for n, decoy in enumerate(mutations(value)):
        docs[f"decoy-{n}"] = doc(
            {
                "data": {
                    "url": f"http://h/{decoy}",
                    "srcuser": decoy,
                    "win": {"eventdata": {"commandLine": decoy}},
                }
            }
        )
    assert hunting.matched(docs, {"type": "url", "value": f"http://h/{value}"}) == {"hit-url"}
    assert hunting.matched(docs, {"type": "user-account", "account_login": value}) == {"hit-user"}
    process = {"type": "process", "command_line": value}
    expected = {"hit-cmd"}
    if "\\" in value:
        # normalise-backslashes: the given, single- and doubled-backslash spellings are the same command
        single = re.sub(r"\\+", lambda _: "\\", value)
        forms = {value, single, single.replace("\\", "\\\\")}
        expected |= {f"decoy-{n}" for n, d in enumerate(mutations(value)) if d in forms}
    assert hunting.matched(docs, process, search={"procsearch_options": "normalise-backslashes"}) == expected
