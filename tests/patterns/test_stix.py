"""STIX parsing: structure, literal decoding, validation parity with the OASIS validator, printing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from ctibridge.patterns import Atom, PatternError, atomic_values, is_atomic, parse_stix, to_stix
from ctibridge.patterns.ast import (
    BooleanComparison,
    Comparison,
    CompoundObservation,
    Connective,
    Index,
    ObjectPath,
    Observation,
    Op,
    Pattern,
    Qualified,
    Repeats,
    StartStop,
    Timestamp,
    Within,
)
from tests.patterns.generators import patterns

SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"


def only_comparison(pattern: str) -> Comparison:
    expression = parse_stix(pattern).expression
    assert isinstance(expression, Observation) and isinstance(expression.expression, Comparison)
    return expression.expression


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r"'a\\b'", "a\\b"),
        (r"'it\'s'", "it's"),
        (r"'\\\''", "\\'"),
        (r"'\\\\'", "\\\\"),
        ("'tab\there'", "tab\there"),
        ("''", ""),
    ],
)
def test_string_escapes_are_decoded_exactly_once(literal: str, value: str) -> None:
    assert only_comparison(f"[file:name = {literal}]").value == value


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("5", 5),
        ("-5", -5),
        ("1.5", 1.5),
        ("true", True),
        ("false", False),
        ("h'0aff'", b"\n\xff"),
        ("b'aGVsbG8='", b"hello"),
        ("t'2016-06-01T00:00:00.123Z'", Timestamp("2016-06-01T00:00:00.123Z")),
    ],
)
def test_literal_types(literal: str, value: object) -> None:
    assert only_comparison(f"[x:y = {literal}]").value == value


@pytest.mark.parametrize("key", ["hashes.'SHA-256'", "hashes.SHA256", "hashes.sha256", "hashes.'sha-256'"])
def test_hash_names_are_normalised(key: str) -> None:
    assert only_comparison(f"[file:{key} = '{SHA256}']").path.key == "file:hashes.'SHA-256'"


def test_object_paths_with_quoted_keys_and_indexes() -> None:
    path = only_comparison("[email-message:to_refs[*].value = 'a@b.c']").path
    assert path == ObjectPath("email-message", ("to_refs", Index(None), "value"))
    assert path.key == "email-message:to_refs[*].value"
    path = only_comparison("[x-a:'key with.dot'[2] = 1]").path
    assert path.steps == ("key with.dot", Index(2))


def test_negation_forms() -> None:
    assert only_comparison("[a:b != 'x']") == Comparison(ObjectPath("a", ("b",)), Op.EQ, "x", negated=True)
    assert only_comparison("[a:b NOT != 'x']").negated is False
    assert only_comparison("[a:b NOT LIKE 'x%']") == Comparison(ObjectPath("a", ("b",)), Op.LIKE, "x%", True)
    assert only_comparison("[NOT EXISTS a:b]") == Comparison(ObjectPath("a", ("b",)), Op.EXISTS, None, True)
    assert only_comparison("[a:b NOT IN ('x', 'y')]").value == ("x", "y")


def test_comparison_and_binds_tighter_than_or() -> None:
    expression = parse_stix("[a:b = 1 OR a:c = 2 AND a:d = 3 OR a:e = 4]").expression
    assert isinstance(expression, Observation)
    top = expression.expression
    assert isinstance(top, BooleanComparison) and top.connective is Connective.OR
    assert [type(op).__name__ for op in top.operands] == ["Comparison", "BooleanComparison", "Comparison"]
    assert top.operands[1].connective is Connective.AND


def test_observation_precedence_and_over_or_over_followedby() -> None:
    expression = parse_stix("[a:b = 1] FOLLOWEDBY [a:b = 2] OR [a:b = 3] AND [a:b = 4]").expression
    assert isinstance(expression, CompoundObservation) and expression.connective is Connective.FOLLOWEDBY
    second = expression.operands[1]
    assert isinstance(second, CompoundObservation) and second.connective is Connective.OR
    assert second.operands[1].connective is Connective.AND


def test_qualifiers() -> None:
    expression = parse_stix(
        "([a:b = 1] FOLLOWEDBY [a:b = 2]) WITHIN 1.5 SECONDS REPEATS 2 TIMES "
        "START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'"
    ).expression
    assert isinstance(expression, Qualified)
    assert expression.qualifier == StartStop(
        Timestamp("2016-06-01T00:00:00Z"), Timestamp("2016-07-01T00:00:00Z")
    )
    assert expression.expression.qualifier == Repeats(2)
    assert expression.expression.expression.qualifier == Within(Decimal("1.5"))


@pytest.mark.parametrize(
    "pattern",
    [
        "[file:name = 'a\\b']",
        '[file:name = "x"]',
        "[file:hashes.MD5 = 'aa']",
        f"[file:hashes.'SHA-256' = '{SHA256[:-1]}']",
        "[a:b = 1] REPEATS 2 TIMES REPEATS 3 TIMES",
        "[a:b = 1",
        "a:b = 1",
        "[a:b = 1] WITHIN -5 SECONDS",
        "[a:b LIKE 5]",
    ],
)
def test_invalid_patterns_raise_with_the_validator_message(pattern: str) -> None:
    messages = run_validator(pattern, stix_version="2.1")
    assert messages
    with pytest.raises(PatternError) as raised:
        parse_stix(pattern)
    assert messages[0].removeprefix("FAIL: ") in raised.value.reason


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value = '198.51.100.1']",
        f"[file:hashes.'SHA-256' = '{SHA256}'] OR [file:name LIKE '%.exe']",
        "([a:b = 1] FOLLOWEDBY [a:c MATCHES '^x']) WITHIN 5 SECONDS",
        "(([a:b = 1])) REPEATS 2 TIMES WITHIN 3 SECONDS",
        "[a:b ISSUBSET '10.0.0.0/8' AND a:c NOT ISSUPERSET '1.2.3.4']",
    ],
)
def test_valid_patterns_agree_with_the_validator(pattern: str) -> None:
    assert run_validator(pattern, stix_version="2.1") == []
    assert isinstance(parse_stix(pattern), Pattern)


def test_stop_must_follow_start() -> None:
    with pytest.raises(PatternError, match="must be later"):
        parse_stix("[a:b = 1] START t'2016-06-01T00:00:00Z' STOP t'2016-06-01T00:00:00Z'")


def test_non_string_empty_and_oversized_input() -> None:
    with pytest.raises(PatternError):
        parse_stix(None)  # type: ignore[arg-type]
    with pytest.raises(PatternError, match="empty"):
        parse_stix("  ")
    with pytest.raises(PatternError, match="longer than"):
        parse_stix("[a:b = '" + "x" * 1_000_001 + "']")


def test_parsed_patterns_are_cached_and_immutable() -> None:
    first = parse_stix("[a:b = 'cached']")
    assert parse_stix("[a:b = 'cached']") is first
    with pytest.raises(AttributeError):
        first.expression = None  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(pattern=patterns())
def test_printing_round_trips(pattern: Pattern) -> None:
    text = to_stix(pattern)
    assert run_validator(text, stix_version="2.1") == []
    assert parse_stix(text) == pattern


def test_atomic_values_and_is_atomic() -> None:
    pattern = parse_stix(
        f"[file:hashes.sha256 = '{SHA256}' OR file:name IN ('a.exe', 'b.exe')] OR [url:value = 'u']"
    )
    assert is_atomic(pattern)
    assert atomic_values(pattern) == [
        Atom("file", "hashes.SHA-256", SHA256),
        Atom("file", "name", "a.exe"),
        Atom("file", "name", "b.exe"),
        Atom("url", "value", "u"),
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        "[file:name = 'a' AND file:size = 5]",
        "[file:name = 'a'] AND [url:value = 'u']",
        "[file:name = 'a'] FOLLOWEDBY [url:value = 'u']",
        "[file:name = 'a'] WITHIN 5 SECONDS",
        "[file:name != 'a']",
        "[file:name LIKE 'a%']",
        "[file:name IN ()]",
        "[ipv4-addr:value ISSUBSET '10.0.0.0/8']",
    ],
)
def test_not_atomic(pattern: str) -> None:
    assert not is_atomic(parse_stix(pattern))


def test_atomic_values_skip_negated_and_non_equality_tests() -> None:
    pattern = parse_stix("[file:name = 'a' AND file:name != 'b' AND file:size > 3] REPEATS 2 TIMES")
    assert atomic_values(pattern) == [Atom("file", "name", "a")]


# Reasons we reject on top of the OASIS validator (semantics its grammar checks do not cover).
OUR_EXTRA_REASONS = ("must be later than START", "REPEATS needs a count", "invalid timestamp", "invalid hex")


@settings(max_examples=300, deadline=None)
@given(
    pattern=patterns(),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(["", "'", "\\", "]", "[", " ", "(", "AND", "x"])),
        min_size=1,
        max_size=3,
    ),
)
def test_acceptance_matches_the_oasis_validator(pattern: Pattern, edits: list[tuple[int, str]]) -> None:
    """Mutated patterns: whatever run_validator rejects we reject; what it accepts we parse, unless one
    of our documented extra checks (STOP before START, ...) applies."""
    text = to_stix(pattern)
    for position, insert in edits:
        position %= len(text) + 1
        text = text[:position] + insert + text[position + (insert == "") :]
    if not text.strip():
        return
    validator_errors = run_validator(text, stix_version="2.1")
    try:
        parse_stix(text)
    except PatternError as exc:
        assert validator_errors or any(reason in exc.reason for reason in OUR_EXTRA_REASONS), exc.reason
    else:
        assert not validator_errors, validator_errors


# ----------------------------------------------------------------- the fast parse is the OASIS parse

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from antlr4 import CommonTokenStream, InputStream  # noqa: E402
from stix2patterns.exceptions import ParseException  # noqa: E402
from stix2patterns.v21.grammars.STIXPatternLexer import STIXPatternLexer  # noqa: E402
from stix2patterns.v21.pattern import Pattern as OasisPattern  # noqa: E402

from ctibridge.patterns import stix as stix_module  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_patterns import corpus  # noqa: E402

sys.path.pop(0)


def _tokens(text: str, fast: bool) -> list[tuple[object, ...]]:
    lexer = STIXPatternLexer(InputStream(text))
    if fast:
        lexer._interp = stix_module._LexerSimulator(
            lexer, lexer.atn, lexer.decisionsToDFA, stix_module.PredictionContextCache()
        )
    lexer.removeErrorListeners()
    stream = CommonTokenStream(lexer)
    stream.fill()
    return [(t.type, t.text, t.start, t.stop, t.line, t.column, t.channel) for t in stream.tokens]


def _oasis_tree(text: str) -> str | None:
    try:
        tree = OasisPattern(text).visit(stix_module._Tree())
    except ParseException:
        return None
    return tree.toStringTree(recog=tree.parser)


def _fast_tree(text: str) -> str | None:
    tree = stix_module._FAST.parse(text)
    return None if tree is None else tree.toStringTree(recog=tree.parser)


def _tree_tokens(text: str) -> list[tuple[object, ...]] | None:
    """The tokens the fast parse tree holds, as the OASIS lexer describes tokens."""
    tree = stix_module._FAST.parse(text)
    if tree is None:
        return None
    found: dict[int, tuple[object, ...]] = {}

    def collect(node: object) -> None:
        for child in getattr(node, "children", None) or ():
            symbol = getattr(child, "symbol", None)
            if symbol is None:
                collect(child)
            else:
                t = symbol
                found[t.tokenIndex] = (t.type, t.text, t.start, t.stop, t.line, t.column, t.channel)

    collect(tree)
    return [found[index] for index in sorted(found)]


def _assert_same_parse(text: str) -> None:
    oasis_tokens = _tokens(text, fast=False)
    assert _tokens(text, fast=True) == oasis_tokens
    scanned = stix_module.scan_tokens(text)
    if scanned is not None:
        assert scanned == [(t[0], t[2], t[3], t[1]) for t in oasis_tokens]
    # A tree remembered by shape carries this pattern's tokens, positions and lines, not the last one's.
    in_tree = _tree_tokens(text)
    if in_tree is not None:
        assert in_tree == oasis_tokens
    fast, oasis = _fast_tree(text), _oasis_tree(text)
    # SLL either gives the full-LL tree or gives up (then parse_stix falls back to the OASIS parse).
    assert fast is None or fast == oasis
    if oasis is None:
        assert fast is None


def test_fast_parse_equals_oasis_parse_on_the_benchmark_corpus() -> None:
    texts = corpus(1500, seed=7)
    for text in texts:
        _assert_same_parse(text)
    assert sum(_fast_tree(text) is not None for text in texts) == len(texts)  # SLL suffices for all
    # The scanner reads every corpus pattern itself (the corpus has no hex, binary or float literals).
    assert all(stix_module.scan_tokens(text) is not None for text in texts)


@pytest.mark.parametrize(
    "text",
    [
        "[a:b = 'x']\n AND\r\n[c:d = 'y'\n]",
        "[a-b:c.'d'[*] == 1] START t'2020-01-01T00:00:60.123Z' STOP t'2020-02-31T23:59:59Z'",
        "[a:b = t'2020-13-01T00:00:00Z']",
        "[a:b = h'0a'] OR [a:b = b'AA=='] OR [a:b = b''] OR [a:b = h'']",
        "[a:b = 1.5] OR [a:b = .5] OR [a:b = -1] OR [a:b = +1] OR [a:b = 01]",
        "[a:b = 'x'] /* c */ OR [c:d = 'y'] // e",
        "[a:b = 'x\\'y\\\\'] AND [a:b <> 'z'] AND [a:b != 'é\x00✓']",
        "[ANDx:ORy = true] AND [a:b = false] AND [a:b IN ('x', 'y')]",
        "[a:b = 'x']\f\v\x85 OR [a:b = 'y']",
        "([a:b = 'x'] FOLLOWEDBY [a:b = 'y']) WITHIN 300 SECONDS",
        "[a:b = 'x'] REPEATS 5 TIMES",
    ],
)
def test_scanner_and_remembered_trees_agree_with_the_oasis_lexer(text: str) -> None:
    _assert_same_parse(text)
    _assert_same_parse(text)  # the second time through, the tree comes from the shape memory


def test_patterns_of_one_shape_parsed_in_threads_give_their_own_asts() -> None:
    texts = [
        f"[ipv4-addr:value = '10.0.{i // 250}.{i % 250}'] AND [domain-name:value = 'd{i}.example']"
        for i in range(2000)
    ]
    expected = [parse_stix(text) for text in texts]
    stix_module._parse_cached.cache_clear()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(parse_stix, texts))
    assert results == expected
    assert len({to_stix(result) for result in results}) == len(texts)


_PATTERN_CHARS = st.sampled_from(
    [*"[]():.,=!<>'\\*-+^/ \t\n\r\"%_ab019xyzAZé✓\x00",
     "AND", "OR", "NOT", "IN", "LIKE", "MATCHES", "ISSUBSET", "EXISTS", "FOLLOWEDBY", "WITHIN", "REPEATS",
     "TIMES", "SECONDS", "START", "STOP", "true", "false", "t'2024-01-01T00:00:00Z'", "h'0a'", "b'AAAA'",
     "ipv4-addr", "file:hashes.'SHA-256'", "1.5", "-3", "/*", "*/", "//", "t'", "h'", "b'", "2024-01-01",
     "T23:59:60", ".5Z'", "\f", "\x85"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PATTERN_CHARS, max_size=40).map("".join))
def test_fast_parse_equals_oasis_parse_on_arbitrary_text(text: str) -> None:
    _assert_same_parse(text)


@settings(max_examples=200, deadline=None)
@given(patterns())
def test_fast_parse_equals_oasis_parse_on_generated_patterns(pattern: Pattern) -> None:
    _assert_same_parse(to_stix(pattern))
