"""Kibana Query Language (KQL / kuery).

Literal syntax (Kibana kuery grammar.peggy): a quoted value decodes `\\\\`, `\\"`, `\\t`, `\\r`, `\\n`
and `\\uXXXX`, everything else is literal, and wildcards are literal too. Unquoted values are the only
place for the `*` wildcard; there `\\():<>"*{}` must be escaped, spaces next to `and`/`or`/`not` turn
them into operators, and the value is trimmed. KQL has no single-character wildcard and no regex.
"""

from __future__ import annotations

from ctibridge.patterns.errors import Untranslatable
from ctibridge.patterns.fieldmap import TargetField
from ctibridge.patterns.lowering import Cidr, Compare, Equals, Exists, Not, Regex, Value, Wildcard
from ctibridge.patterns.regex import ANY_CHARS
from ctibridge.patterns.render.base import RANGE_OPERATORS, TextRenderer

_UNQUOTED_SPECIAL = frozenset('\\():<>"*{}')
_NAMED_WHITESPACE = {"\t": "\\t", "\r": "\\r", "\n": "\\n"}
_TRIMMED = frozenset(" \t\n\r\v\f\u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | frozenset(
    chr(code) for code in range(0x2000, 0x200B)
)


def quote(value: str) -> str:
    """The one escaping function for KQL quoted values."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_unquoted(text: str) -> str:
    """The one escaping function for KQL unquoted (wildcard) values: every whitespace character is written
    as an escape, so no raw space can make `and`/`or`/`not` an operator."""
    out: list[str] = []
    for char in text:
        if char in _UNQUOTED_SPECIAL:
            out.append("\\" + char)
        elif char in _NAMED_WHITESPACE:
            out.append(_NAMED_WHITESPACE[char])
        elif char.isspace() or char in _TRIMMED:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


class KqlRenderer(TextRenderer):
    language = "kql"
    and_word = "and"
    or_word = "or"

    def value(self, value: Value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        return quote(value if isinstance(value, str) else value.text)

    def name(self, field: TargetField) -> str:
        return escape_unquoted(field.name)

    def equals(self, node: Equals) -> str:
        values = [self.value(value) for value in node.values]
        joined = values[0] if len(values) == 1 else "(" + " or ".join(values) + ")"
        return f"{self.name(node.field)}: {joined}"

    def compare(self, node: Compare) -> str:
        return f"{self.name(node.field)} {RANGE_OPERATORS[node.op]} {self.value(node.value)}"

    def wildcard(self, node: Wildcard) -> str:
        pieces: list[str] = []
        for part in node.parts:
            if isinstance(part, str):
                pieces.append(escape_unquoted(part))
            elif part is ANY_CHARS:
                pieces.append("*")
            else:
                raise Untranslatable("KQL has no single-character wildcard for LIKE '_'")
        first, last = node.parts[0], node.parts[-1]
        if (isinstance(first, str) and first[0] in _TRIMMED) or (
            isinstance(last, str) and last[-1] in _TRIMMED
        ):
            raise Untranslatable(
                "KQL trims unquoted values, so a LIKE starting or ending with whitespace cannot be written"
            )
        return f"{self.name(node.field)}: {''.join(pieces)}"

    def regex(self, node: Regex) -> str:
        raise Untranslatable("KQL has no regular expressions (MATCHES); use lucene, eql, esql or opensearch")

    def cidr(self, node: Cidr) -> str:
        return f"{self.name(node.field)}: {quote(node.network)}"

    def exists(self, node: Exists) -> str:
        return f"{self.name(node.field)}: *"

    def negate(self, node: Not) -> str:
        return f"not {self.operand(node.operand)}"
