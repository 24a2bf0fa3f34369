"""STIX MATCHES (PCRE, search semantics) and LIKE patterns -> Lucene regexp and RE2 syntax.

Lucene regexps (ES `regexp`, query_string `/../`, EQL `regex`, ES|QL `RLIKE`) must match the whole value
and give `# @ & < > ~` operator meaning; RE2 (Kusto `matches regex`) searches like PCRE but its `$` only
matches at the very end. So a pattern cannot be copied: we parse it with Python's regex parser (its syntax
tree for the PCRE subset both targets share), reject what has no equivalent (look-around, back-references,
word boundaries, inline flags, possessive/atomic groups, anchors inside the expression), and print it
again with each literal escaped for the target dialect.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from ctibridge.patterns.errors import PatternError, Untranslatable

# The parser behind `re` (private, but the only stdlib parser of regex syntax); the public
# `sre_parse`/`sre_constants` aliases emit DeprecationWarning since Python 3.11.
sre: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")

__all__ = [
    "ANY_CHARS",
    "ONE_CHAR",
    "WildcardPart",
    "like_to_lucene",
    "like_to_re2",
    "lucene_regex",
    "parse_like",
    "re2_regex",
]


class _Wildcard:
    __slots__ = ("symbol",)

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol

    def __repr__(self) -> str:
        return self.symbol


ANY_CHARS = _Wildcard("%")
ONE_CHAR = _Wildcard("_")
WildcardPart = str | _Wildcard

_DIGIT = ((48, 57),)
_WORD = ((97, 122), (65, 90), (48, 57), (95, 95))
_SPACE = ((32, 32), (9, 13))  # space, \t \n \v \f \r: PCRE's \s
_CATEGORIES: dict[Any, tuple[tuple[tuple[int, int], ...], bool]] = {
    sre.CATEGORY_DIGIT: (_DIGIT, False),
    sre.CATEGORY_NOT_DIGIT: (_DIGIT, True),
    sre.CATEGORY_WORD: (_WORD, False),
    sre.CATEGORY_NOT_WORD: (_WORD, True),
    sre.CATEGORY_SPACE: (_SPACE, False),
    sre.CATEGORY_NOT_SPACE: (_SPACE, True),
}
_PUNCTUATION = frozenset(string.punctuation)
_START_ANCHORS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)
_END_ANCHORS = (sre.AT_END, sre.AT_END_STRING)


def parse_like(pattern: str) -> tuple[WildcardPart, ...]:
    """Split a STIX LIKE pattern (`%` any run, `_` one character; STIX defines no escape) into parts."""
    parts: list[WildcardPart] = []
    literal: list[str] = []
    for char in pattern:
        if char in "%_":
            if literal:
                parts.append("".join(literal))
                literal.clear()
            wildcard = ANY_CHARS if char == "%" else ONE_CHAR
            if not (wildcard is ANY_CHARS and parts and parts[-1] is ANY_CHARS):  # `%%` == `%`
                parts.append(wildcard)
        else:
            literal.append(char)
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def lucene_literal(char: str) -> str:
    """Lucene regexp: escaping every ASCII punctuation character also covers the optional operators
    (`# @ & < > ~`) and the query_string delimiter `/`; letters are never escaped (`\\d` is a class)."""
    return "\\" + char if char in _PUNCTUATION else char


def re2_literal(char: str) -> str:
    """RE2 accepts a backslash before ASCII punctuation only (before a letter it is a class or an error)."""
    return "\\" + char if char in _PUNCTUATION else char


def like_to_lucene(parts: Sequence[WildcardPart]) -> str:
    return "".join(_wildcard_regex(part, lucene_literal) for part in parts)


def like_to_re2(parts: Sequence[WildcardPart]) -> str:
    """Whole-value match; `(?s)` because LIKE's `%` and `_` also match newlines."""
    return "(?s)^" + "".join(_wildcard_regex(part, re2_literal) for part in parts) + "$"


def _wildcard_regex(part: WildcardPart, literal: Callable[[str], str]) -> str:
    if part is ANY_CHARS:
        return ".*"
    if part is ONE_CHAR:
        return "."
    assert isinstance(part, str)
    return "".join(literal(char) for char in part)


@lru_cache(maxsize=2048)
def lucene_regex(pcre: str) -> str:
    """A Lucene regexp matching a whole value exactly when the PCRE finds a match in it."""
    return _Printer(lucene_literal, any_char="[^\n]", all_chars=".", keep_anchors=False).top(_parse(pcre))


@lru_cache(maxsize=2048)
def re2_regex(pcre: str) -> str:
    """An RE2 regex with the PCRE's search semantics."""
    return _Printer(re2_literal, any_char=".", all_chars="(?s:.)", keep_anchors=True).top(_parse(pcre))


def _parse(pcre: str) -> Any:
    try:
        tree = sre_parse.parse(pcre)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PatternError(f"invalid regular expression {pcre!r}: {exc}") from None
    if tree.state.flags & ~sre.SRE_FLAG_UNICODE:
        raise Untranslatable("inline regex flags such as (?i) have no equivalent in the target language")
    return tree


class _Printer:
    def __init__(
        self, literal: Callable[[str], str], *, any_char: str, all_chars: str, keep_anchors: bool
    ) -> None:
        self._literal = literal
        self._any = any_char  # PCRE `.`: anything but a line feed
        self._all = all_chars  # a class such as [\d\D]: any character at all
        self._keep_anchors = keep_anchors

    def top(self, tree: Any) -> str:
        items = list(tree)
        starts = bool(items) and items[0] == (sre.AT, items[0][1]) and items[0][1] in _START_ANCHORS
        if starts:
            items = items[1:]
        end_anchor = (
            items[-1][1] if items and items[-1][0] is sre.AT and items[-1][1] in _END_ANCHORS else None
        )
        if end_anchor is not None:
            items = items[:-1]
        body = self._sequence(items)
        # PCRE's `$` also matches before a final newline; `\Z` (Python) only at the very end.
        newline = "\n?" if end_anchor is sre.AT_END else ""
        if self._keep_anchors:
            return ("^" if starts else "") + body + (newline + "$" if end_anchor is not None else "")
        if not starts and not body and end_anchor is None:
            return ".*"
        return ("" if starts else ".*") + body + (newline if end_anchor is not None else ".*")

    def _sequence(self, items: Sequence[Any]) -> str:
        return "".join(self._item(op, arg) for op, arg in items)

    def _item(self, op: Any, arg: Any) -> str:
        if op is sre.LITERAL:
            return self._literal(chr(arg))
        if op is sre.NOT_LITERAL:
            return "[^" + self._literal(chr(arg)) + "]"
        if op is sre.ANY:
            return self._any
        if op is sre.IN:
            return self._char_class(arg)
        if op is sre.BRANCH:
            return "(" + "|".join(self._sequence(list(branch)) or "()" for branch in arg[1]) + ")"
        if op is sre.SUBPATTERN:
            _group, add_flags, del_flags, pattern = arg
            if add_flags or del_flags:
                raise Untranslatable("scoped regex flags such as (?i:...) have no equivalent in the target")
            return "(" + self._sequence(list(pattern)) + ")"
        if op in (
            sre.MAX_REPEAT,
            sre.MIN_REPEAT,
        ):  # laziness changes what is captured, not whether it matches
            low, high, pattern = arg
            return self._atom(list(pattern)) + _quantifier(low, high)
        if op is sre.AT:
            raise Untranslatable(
                "regex anchors and word boundaries are only translatable at the start or end"
            )
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            raise Untranslatable("regex back-references have no equivalent in the target language")
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            raise Untranslatable("regex look-ahead/look-behind has no equivalent in the target language")
        raise Untranslatable(f"regex construct {op} has no equivalent in the target language")

    def _atom(self, items: list[Any]) -> str:
        if len(items) == 1 and items[0][0] in (
            sre.LITERAL,
            sre.NOT_LITERAL,
            sre.ANY,
            sre.IN,
            sre.SUBPATTERN,
            sre.BRANCH,
        ):
            return self._item(*items[0])
        return "(" + self._sequence(items) + ")"

    def _char_class(self, members: list[Any]) -> str:
        """Print a class; negated shorthands (`\\D` in `[a\\D]`) are folded with set arithmetic because
        neither target can nest a complement inside a class: P | ~C1 | ~C2 == ~((C1 & C2) - P)."""
        negated = bool(members) and members[0][0] is sre.NEGATE
        if negated:
            members = members[1:]
        positive: list[tuple[int, int]] = []
        complements: list[list[tuple[int, int]]] = []
        for op, arg in members:
            if op is sre.LITERAL:
                positive.append((arg, arg))
            elif op is sre.RANGE:
                positive.append(arg)
            elif op is sre.CATEGORY and arg in _CATEGORIES:
                category, inverted = _CATEGORIES[arg]
                (complements.append(list(category)) if inverted else positive.extend(category))
            else:
                raise Untranslatable(f"regex class member {op} {arg} has no equivalent in the target")
        ranges = _merge(positive)
        if complements:
            excluded = _merge(complements[0])
            for complement in complements[1:]:
                excluded = _intersect(excluded, _merge(complement))
            ranges, negated = _subtract(excluded, ranges), not negated
        if not ranges:
            if negated:
                return self._all
            raise Untranslatable("a character class that matches nothing has no equivalent in the target")
        literal = self._literal
        body = "".join(
            literal(chr(low)) if low == high else f"{literal(chr(low))}-{literal(chr(high))}"
            for low, high in ranges
        )
        return ("[^" if negated else "[") + body + "]"


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _intersect(left: list[tuple[int, int]], right: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [
        (max(a_low, b_low), min(a_high, b_high))
        for a_low, a_high in left
        for b_low, b_high in right
        if max(a_low, b_low) <= min(a_high, b_high)
    ]


def _subtract(base: list[tuple[int, int]], removed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    for low, high in base:
        start = low
        for cut_low, cut_high in removed:
            if cut_high < start or cut_low > high:
                continue
            if cut_low > start:
                result.append((start, cut_low - 1))
            start = max(start, cut_high + 1)
        if start <= high:
            result.append((start, high))
    return result


def _quantifier(low: int, high: int) -> str:
    unbounded = high is sre.MAXREPEAT or high == sre.MAXREPEAT
    if unbounded:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"
