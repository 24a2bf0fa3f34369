"""Test-side tools written independently of the renderers: hostile inputs and tiny per-language decoders.

Each decoder reads exactly one `<field> <operator> <literal>` query and returns the literal it decodes,
so a test proves both that the value round-trips and that nothing else (operator, wildcard, second
term) leaked out of it.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

from ctibridge.patterns import FieldMap

HOSTILE_CHARS = "\"'\\*?:()[]{}<>/^~!+-=&|% _#@.,;`$\t\n\r \u00a0\u2028\u3000aZ09éß中😀\x01\x7f"
HOSTILE_WORDS = ("and", "or", "not", "AND", "OR", "NOT", "null", "true", "to", "TO", "*:*", "_exists_")

hostile_text = st.one_of(
    st.text(alphabet=HOSTILE_CHARS, min_size=1, max_size=30),
    st.lists(st.sampled_from(HOSTILE_WORDS + tuple(HOSTILE_CHARS)), min_size=1, max_size=8).map(" ".join),
    st.text(min_size=1, max_size=20).filter(lambda text: "\x00" not in text),
)

# LIKE patterns: hostile literal chunks separated by wildcards (STIX LIKE has no escape for % and _).
like_literal = hostile_text.map(lambda text: text.replace("%", "").replace("_", "")).filter(bool)
like_pattern = st.lists(st.one_of(like_literal, st.sampled_from(["%", "_"])), min_size=2, max_size=5).filter(
    lambda parts: any(p in ("%", "_") for p in parts) and any(p not in ("%", "_") for p in parts)
)

SINGLE_FIELD_MAP = FieldMap.from_data({"fields": {"url:value": ["f"], "file:name": ["f"]}}, name="single")
KUSTO_SINGLE_FIELD_MAP = FieldMap.from_data(
    {"fields": {"url:value": ["T.f"], "file:name": ["T.f"]}}, name="single-kusto"
)


def stix_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- KQL (Kibana kuery grammar) -------------------------------------------------------------------


def kql_quoted(text: str) -> str:
    """Decode a KQL quoted string body: \\t \\r \\n \\uXXXX \\\\ \\" are escapes, all else literal."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == '"':
            raise AssertionError(f"unescaped quote in KQL string at {i}: {text!r}")
        if char == "\\":
            nxt = text[i + 1]
            if nxt in "trn":
                out.append({"t": "\t", "r": "\r", "n": "\n"}[nxt])
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
            elif nxt in '\\"':
                out.append(nxt)
                i += 2
            else:
                out.append("\\")
                i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def kql_unquoted(text: str) -> list[str]:
    """Decode a KQL unquoted value into literal characters and '*' wildcard tokens (as the object WILD)."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            nxt = text[i + 1]
            if nxt in "trn":
                tokens.append({"t": "\t", "r": "\r", "n": "\n"}[nxt])
                i += 2
            elif nxt == "u":
                tokens.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
            elif nxt in '\\():<>"*{}':
                tokens.append(nxt)
                i += 2
            else:
                raise AssertionError(f"unknown KQL escape \\{nxt}")
        elif char == "*":
            tokens.append(WILD)
            i += 1
        elif char in '():<>"{}' or char in " \t\r\n\u00a0":
            raise AssertionError(f"unescaped {char!r} in KQL unquoted value {text!r}")
        else:
            tokens.append(char)
            i += 1
    return tokens


# --- Lucene (query_string) ------------------------------------------------------------------------

WILD = "\x00WILD"
ONE = "\x00ONE"


def lucene_unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def lucene_term_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            tokens.append(text[i + 1])
            i += 2
        elif char == "*":
            tokens.append(WILD)
            i += 1
        elif char == "?":
            tokens.append(ONE)
            i += 1
        elif char in '+-=&|!(){}[]^"~:/<>' or char.isspace():
            raise AssertionError(f"unescaped {char!r} in Lucene term {text!r}")
        else:
            tokens.append(char)
            i += 1
    return tokens


# --- ES|QL / EQL / Kusto double-quoted strings ----------------------------------------------------


def c_style_string(query: str, start: int, escapes: dict[str, str]) -> tuple[str, int]:
    """Decode a double-quoted string starting at `start`; return the value and the index after it."""
    assert query[start] == '"', query[start:]
    out: list[str] = []
    i = start + 1
    while True:
        char = query[i]
        if char == '"':
            return "".join(out), i + 1
        if char in "\r\n":
            raise AssertionError("raw line break inside a string literal")
        if char == "\\":
            nxt = query[i + 1]
            if nxt not in escapes:
                raise AssertionError(f"unknown escape \\{nxt}")
            out.append(escapes[nxt])
            i += 2
        else:
            out.append(char)
            i += 1


QUOTE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def like_tokens(pattern: str, escape_char: str = "\\") -> list[str]:
    """`*`/`?` wildcard pattern with backslash escapes (ES|QL LIKE, OpenSearch wildcard)."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == escape_char:
            tokens.append(pattern[i + 1])
            i += 2
        elif char == "*":
            tokens.append(WILD)
            i += 1
        elif char == "?":
            tokens.append(ONE)
            i += 1
        else:
            tokens.append(char)
            i += 1
    return tokens


def expected_like_tokens(pattern: str) -> list[str]:
    tokens: list[str] = []
    for char in pattern:
        if char == "%":
            if not tokens or tokens[-1] is not WILD:
                tokens.append(WILD)
        elif char == "_":
            tokens.append(ONE)
        else:
            tokens.append(char)
    return tokens
