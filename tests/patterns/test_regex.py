"""MATCHES translation keeps PCRE search semantics in Lucene regexps (whole-value) and RE2 (search).

Python's `re` reads both outputs the same way the targets do for the constructs we emit (escaped
punctuation, classes, groups, counted repeats), so it serves as the reference engine.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctibridge.patterns import PatternError, Untranslatable
from ctibridge.patterns.regex import (
    ANY_CHARS,
    ONE_CHAR,
    like_to_lucene,
    like_to_re2,
    lucene_regex,
    parse_like,
    re2_regex,
)

ALPHABET = 'ab-/#@<>~&" \n0_9'

atom = st.one_of(
    st.sampled_from(list(ALPHABET)).map(re.escape),
    st.sampled_from([".", "[ab]", "[^a]", "[a-c]", r"\d", r"\s", r"\w", r"\D", r"[\d_]", r"[^\W]"]),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, inner).map("".join),
        inner.map(lambda body: f"({body})"),
        inner.map(lambda body: f"(?:{body})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]}|{pair[1]})"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}", "{2}", "{0,}", "*?", "+?"])).map(
            lambda pair: f"(?:{pair[0]}){pair[1]}"
        ),
    )


body = st.recursive(atom, _extend, max_leaves=6)
pcre = st.tuples(st.sampled_from(["", "^", r"\A"]), body, st.sampled_from(["", "$", r"\Z"])).map("".join)
subjects = st.lists(st.text(alphabet=ALPHABET, max_size=8), min_size=4, max_size=8)


def _re2_in_python(regex: str) -> str:
    """RE2's `$` (without the m flag) only matches at the very end of the text: Python's `\\Z`."""
    return regex[:-1] + r"\Z" if regex.endswith("$") and not regex.endswith("\\$") else regex


@settings(max_examples=300, deadline=None)
@given(expression=pcre, texts=subjects)
def test_translations_match_exactly_what_pcre_finds(expression: str, texts: list[str]) -> None:
    lucene = lucene_regex(expression)
    re2 = _re2_in_python(re2_regex(expression))
    for text in texts:
        expected = re.search(expression, text, re.ASCII) is not None
        assert (re.fullmatch(lucene, text, re.ASCII | re.DOTALL) is not None) == expected, (lucene, text)
        assert (re.search(re2, text, re.ASCII) is not None) == expected, (re2, text)


@pytest.mark.parametrize(
    ("pcre_text", "lucene", "re2"),
    [
        ("evil", ".*evil.*", "evil"),
        ("^evil$", "evil\n?", "^evil\n?$"),
        (r"\Aevil\Z", "evil", "^evil$"),
        (r"a\.b", r".*a\.b.*", r"a\.b"),
        ("a#b@c<d>e~f&g", r".*a\#b\@c\<d\>e\~f\&g.*", r"a\#b\@c\<d\>e\~f\&g"),
        ("^a.c", "a[^\n]c.*", "^a.c"),
        (r"\d{2,}x", ".*[0-9]{2,}x.*", "[0-9]{2,}x"),
        (r"\W", ".*[^0-9A-Z\\_a-z].*", "[^0-9A-Z\\_a-z]"),
        (r"[\Da]", ".*[^0-9].*", "[^0-9]"),
        (r"[^\D5]", ".*[0-46-9].*", "[0-46-9]"),
        (r"[\d\D]", ".*..*", "(?s:.)"),
        ("(?:ab|cd)+", ".*(ab|cd)+.*", "(ab|cd)+"),
        ("", ".*", ""),
    ],
)
def test_known_translations(pcre_text: str, lucene: str, re2: str) -> None:
    assert lucene_regex(pcre_text) == lucene
    assert re2_regex(pcre_text) == re2


@pytest.mark.parametrize(
    ("pcre_text", "reason"),
    [
        ("(?i)evil", "inline regex flags"),
        ("(?i:evil)", "scoped regex flags"),
        (r"\bevil", "anchors and word boundaries"),
        ("a^b", "anchors and word boundaries"),
        ("(?=a)b", "look-ahead"),
        (r"(a)\1", "back-references"),
        ("a++", "POSSESSIVE_REPEAT"),
        ("(?>a)", "ATOMIC_GROUP"),
    ],
)
def test_constructs_without_equivalent_are_untranslatable(pcre_text: str, reason: str) -> None:
    with pytest.raises(Untranslatable, match=re.escape(reason)):
        lucene_regex(pcre_text)
    with pytest.raises(Untranslatable, match=re.escape(reason)):
        re2_regex(pcre_text)


@pytest.mark.parametrize("pcre_text", ["a(b", "[a", "a{2,1}", "*a"])
def test_invalid_regex_is_pattern_error_not_untranslatable(pcre_text: str) -> None:
    with pytest.raises(PatternError, match="invalid regular expression") as raised:
        lucene_regex(pcre_text)
    assert not isinstance(raised.value, Untranslatable)


def test_parse_like_splits_wildcards_and_merges_runs() -> None:
    assert parse_like("a%%b_c%") == ("a", ANY_CHARS, "b", ONE_CHAR, "c", ANY_CHARS)
    assert parse_like("plain") == ("plain",)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.text(alphabet=ALPHABET, min_size=1, max_size=3), st.sampled_from(["%", "_"]))
    ),
    texts=subjects,
)
def test_like_regexes_match_like_semantics(parts: list[str], texts: list[str]) -> None:
    like = "".join(parts)
    reference = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in like)
    lucene = like_to_lucene(parse_like(like))
    re2 = _re2_in_python(like_to_re2(parse_like(like)))
    for text in texts:
        expected = re.fullmatch(reference, text, re.DOTALL) is not None
        assert (re.fullmatch(lucene, text, re.DOTALL) is not None) == expected
        assert (re.search(re2, text) is not None) == expected
