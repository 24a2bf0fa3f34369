"""Query-DSL evaluation for the OpenSearch double, with the Wazuh 4.x alert mapping.

Why a real evaluator: the Wazuh connector's correctness rests on keyword exactness, escaping, totals
and aggregations. A double that returns canned hits would let wrong queries pass, so every clause the
connector sends is evaluated over stored documents, and anything not implemented fails loudly with a
400 ``parsing_exception`` instead of silently matching.

Field types follow the Wazuh 4.x template (facts in ``shared/reference/wazuh.md``): strings are
``keyword`` (dynamic template ``string_as_keyword``), a handful of fields are text, date, long or ip
(see ``WAZUH_TYPED_FIELDS``); unmapped non-string values get OpenSearch's dynamic types.
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import functools
import ipaddress
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------------------
# Mapping

TEXT, KEYWORD, LONG, FLOAT, DATE, IP, BOOLEAN, GEO = (
    "text", "keyword", "long", "float", "date", "ip", "boolean", "geo_point",
)  # fmt: skip
NUMERIC = {LONG, FLOAT}

#: Non-keyword fields of the Wazuh 4.x alerts template that the connector may touch (field names and
#: types are facts; the template itself is not copied). Everything else that is a string is keyword.
WAZUH_TYPED_FIELDS: dict[str, str] = {
    "@timestamp": DATE,
    "timestamp": DATE,
    "full_log": TEXT,
    "previous_log": TEXT,
    "message": TEXT,
    "rule.level": LONG,
    "rule.frequency": LONG,
    "rule.firedtimes": LONG,
    "rule.mail": BOOLEAN,
    "decoder.fts": LONG,
    "decoder.accumulate": LONG,
    "syscheck.size_after": LONG,
    "syscheck.size_before": LONG,
    "syscheck.mtime_after": DATE,
    "syscheck.mtime_before": DATE,
    "data.timestamp": DATE,
    "data.vulnerability.published": DATE,
    "data.vulnerability.updated": DATE,
    "data.aws.srcaddr": IP,
    "data.aws.dstaddr": IP,
    "data.aws.source_ip_address": IP,
    "data.aws.bytes": LONG,
    "data.aws.start": DATE,
    "data.aws.end": DATE,
    "data.aws.createdAt": DATE,
    "data.aws.updatedAt": DATE,
    "data.aws.service.action.networkConnectionAction.remoteIpDetails.ipAddressV4": IP,
    "data.aws.resource.instanceDetails.networkInterfaces.privateIpAddress": IP,
    "data.aws.resource.instanceDetails.networkInterfaces.publicIp": IP,
    "data.aws.resource.instanceDetails.launchTime": DATE,
    "data.port.local_ip": IP,
    "data.port.remote_ip": IP,
    "data.port.local_port": LONG,
    "data.port.remote_port": LONG,
    "data.process.pid": LONG,
    "data.process.ppid": LONG,
    "data.sca.score": LONG,
    "GeoLocation.location": GEO,
}

METADATA_FIELDS = ("_id", "_index")
LONG_MAX, LONG_MIN = 2**63 - 1, -(2**63)


class QueryError(Exception):
    """A request OpenSearch would refuse; rendered as an OpenSearch error body by the server."""

    def __init__(self, status: int, type_: str, reason: str, **extra: Any) -> None:
        super().__init__(f"{status} {type_}: {reason}")
        self.status, self.type, self.reason, self.extra = status, type_, reason, extra

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def unsupported(what: str) -> QueryError:
    """The double does not implement ``what``: fail loudly so no test passes by accident."""
    return QueryError(
        400, "parsing_exception", f"unsupported query: {what} is not implemented by the test double"
    )


def bad_request(reason: str, type_: str = "illegal_argument_exception") -> QueryError:
    return QueryError(400, type_, reason)


# --------------------------------------------------------------------------------------------------
# Value conversion (what a field "indexes")


_TOKEN = re.compile(r"\w+(?:(?:(?<=[^\W\d])[.:'\u2019](?=[^\W\d])|(?<=\d)[.,;'\u2019](?=\d))\w+)*")


def analyze(text: str) -> list[str]:
    """Standard-analyzer approximation (UAX#29 word breaks, lower-cased): ``172.17.1.1`` and
    ``wazuh.com`` stay single tokens as in OpenSearch, ``user@host`` splits at ``@``."""
    return _TOKEN.findall(text.lower())


_DATE_MATH = re.compile(r"([+-])(\d+)([yMwdhHms])|/([yMwdhHms])")


def _to_dt(millis: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)


def _to_millis(value: dt.datetime) -> int:
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_millis(millis: int) -> str:
    """OpenSearch's ``strict_date_optional_time`` rendering in UTC, e.g. ``2024-05-11T12:29:19.905Z``."""
    return _to_dt(millis).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(text: str, tz: dt.tzinfo) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"failed to parse date field [{text}]", "parse_exception") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _add(value: dt.datetime, sign: int, amount: int, unit: str) -> dt.datetime:
    if unit in "yM":
        months = value.month - 1 + sign * amount * (12 if unit == "y" else 1)
        year, month = value.year + months // 12, months % 12 + 1
        day = min(value.day, calendar.monthrange(year, month)[1])
        return value.replace(year=year, month=month, day=day)
    seconds = {"w": 604_800, "d": 86_400, "h": 3600, "H": 3600, "m": 60, "s": 1}[unit]
    return value + dt.timedelta(seconds=sign * amount * seconds)


def _round(value: dt.datetime, unit: str, up: bool) -> dt.datetime:
    if unit == "y":
        floor = value.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "M":
        floor = value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "w":
        floor = value.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=value.weekday())
    elif unit == "d":
        floor = value.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit in "hH":
        floor = value.replace(minute=0, second=0, microsecond=0)
    elif unit == "m":
        floor = value.replace(second=0, microsecond=0)
    else:
        floor = value.replace(microsecond=0)
    if not up:
        return floor
    return _add(floor, 1, 1, unit) - dt.timedelta(milliseconds=1)


def parse_date(
    value: Any,
    *,
    round_up: bool = False,
    time_zone: str | None = None,
    now_millis: int | None = None,
    fmt: str | None = None,
) -> int:
    """Date (ISO incl. ``+0000``, epoch millis, ``now-30d/d`` and ``x||+1d`` math) to epoch millis."""
    tz: dt.tzinfo = dt.UTC
    if time_zone:
        tz = (
            _parse_iso(
                f"2000-01-01T00:00:00{time_zone if time_zone not in ('Z', 'UTC') else '+00:00'}", dt.UTC
            ).tzinfo
            or dt.UTC
        )
    if isinstance(value, bool):
        raise bad_request(f"failed to parse date field [{value}]", "parse_exception")
    if isinstance(value, int | float):
        return int(value * 1000) if fmt == "epoch_second" else int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text) and (fmt is None or "epoch" in fmt or len(text) > 8):
        number = float(text)
        return int(number * 1000) if fmt == "epoch_second" else int(number)
    if text.startswith("now"):
        base = _to_dt(now_millis if now_millis is not None else int(time.time() * 1000)).astimezone(tz)
        math_part = text[3:]
    elif "||" in text:
        anchor, math_part = text.split("||", 1)
        base = _parse_iso(anchor, tz)
    else:
        return _to_millis(_parse_iso(text, tz))
    pos = 0
    while pos < len(math_part):
        m = _DATE_MATH.match(math_part, pos)
        if not m:
            raise bad_request(f"failed to parse date field [{text}]: bad date math", "parse_exception")
        if m.group(4):
            base = _round(base, m.group(4), round_up)
        else:
            base = _add(base, 1 if m.group(1) == "+" else -1, int(m.group(2)), m.group(3))
        pos = m.end()
    return _to_millis(base)


def _parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise bad_request(f"'{value}' is not an IP string literal.") from None


def keyword_of(value: Any) -> str:
    """What a keyword field indexes for a JSON value (numbers and booleans as their JSON text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def to_indexed(ftype: str, value: Any) -> Any:
    """Convert a source value to the form the field indexes; raises like a mapper_parsing_exception."""
    if ftype == KEYWORD:
        return keyword_of(value)
    if ftype == TEXT:
        return analyze(keyword_of(value))
    if ftype in NUMERIC:
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise bad_request(f"failed to parse numeric value [{value}]", "mapper_parsing_exception")
        return int(number) if ftype == LONG else number
    if ftype == DATE:
        return parse_date(value)
    if ftype == IP:
        return _parse_ip(value)
    if ftype == BOOLEAN:
        if value in (True, "true"):
            return True
        if value in (False, "false"):
            return False
        raise bad_request(f"failed to parse boolean [{value}]", "mapper_parsing_exception")
    return value


def dynamic_type(value: Any) -> str:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return LONG
    if isinstance(value, float):
        return FLOAT
    return KEYWORD


def flatten(source: Mapping[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """Leaf paths to raw values; arrays (also of objects) and dotted keys flatten as OpenSearch does."""
    out: dict[str, list[Any]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list | tuple):
            for child in node:
                walk(child, path)
        elif node is not None and path:
            out.setdefault(path, []).append(node)

    walk(source, prefix)
    return out


@dataclass
class Doc:
    """A stored document: source, and per-field indexed values (lists, as fields are multi-valued)."""

    index: str
    id: str
    source: dict[str, Any]
    seq: int
    fields: dict[str, list[Any]] = field(default_factory=dict)


class Mapping_:
    """Field → type for a set of indices: the Wazuh typed fields plus dynamically mapped ones."""

    def __init__(self, types: Mapping[str, str] | None = None) -> None:
        self.types: dict[str, str] = dict(WAZUH_TYPED_FIELDS if types is None else types)

    def type_of(self, path: str) -> str | None:
        if path in METADATA_FIELDS:
            return KEYWORD
        return self.types.get(path)

    def learn(self, raw: Mapping[str, list[Any]]) -> None:
        for path, values in raw.items():
            if path not in self.types:
                self.types[path] = dynamic_type(values[0])

    def expand(self, pattern: str) -> list[str]:
        """Mapped leaf fields matching a glob field name (metadata fields never match a glob)."""
        if "*" not in pattern:
            return [pattern]
        return sorted(p for p, t in self.types.items() if fnmatch.fnmatchcase(p, pattern) and t != GEO)

    def merged(self, other: Mapping_) -> Mapping_:
        result = Mapping_(self.types)
        for path, ftype in other.types.items():
            result.types.setdefault(path, ftype)
        return result


def index_document(doc: Doc, mapping: Mapping_) -> None:
    raw = flatten(doc.source)
    mapping.learn(raw)
    doc.fields = {path: [to_indexed(mapping.types[path], v) for v in values] for path, values in raw.items()}
    doc.fields["_id"] = [doc.id]
    doc.fields["_index"] = [doc.index]


# --------------------------------------------------------------------------------------------------
# Lucene wildcard and regexp → Python re


def wildcard_to_re(pattern: str) -> str:
    """Lucene WildcardQuery: ``*`` any run, ``?`` one char, ``\\`` escapes the next char (a trailing
    lone backslash is a literal backslash)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return "".join(out)


_REGEXP_FLAGS = {
    "INTERSECTION": 1,
    "COMPLEMENT": 2,
    "EMPTY": 4,
    "ANYSTRING": 8,
    "INTERVAL": 16,
    "ALL": 0xFFFF,
    "NONE": 0,
}
_SHORTHAND = {"d": r"\d", "D": r"\D", "s": r"\s", "S": r"\S", "w": r"\w", "W": r"\W"}


def parse_regexp_flags(flags: str | int | None) -> int:
    if flags is None:
        return _REGEXP_FLAGS["ALL"]
    if isinstance(flags, int):
        return flags
    value = 0
    for name in str(flags).split("|"):
        name = name.strip().upper()
        if name not in _REGEXP_FLAGS:
            raise bad_request(f"Unknown regexp flag [{name}]")
        value |= _REGEXP_FLAGS[name]
    return value


class _LuceneRegexp:
    """Recursive-descent translation of Lucene's RegExp grammar (anchored to the whole term)."""

    def __init__(self, pattern: str, flags: int) -> None:
        self.s, self.pos, self.flags = pattern, 0, flags

    def fail(self, why: str) -> QueryError:
        return QueryError(400, "query_shard_exception", f"failed to create query: {why} in regexp [{self.s}]")

    def more(self) -> bool:
        return self.pos < len(self.s)

    def peek(self, chars: str) -> bool:
        return self.more() and self.s[self.pos] in chars

    def next(self) -> str:
        if not self.more():
            raise self.fail("unexpected end-of-string")
        ch = self.s[self.pos]
        self.pos += 1
        return ch

    def on(self, flag: str) -> bool:
        return bool(self.flags & _REGEXP_FLAGS[flag])

    def translate(self) -> str:
        result = self.union()
        if self.more():
            raise self.fail(f"end-of-string expected at position {self.pos}")
        return result

    def union(self) -> str:
        left = self.inter()
        if self.peek("|"):
            self.pos += 1
            return f"(?:{left}|{self.union()})"
        return left

    def inter(self) -> str:
        left = self.concat()
        if self.on("INTERSECTION") and self.peek("&"):
            raise unsupported("regexp intersection operator '&' (escape it as \\& or use flags NONE)")
        return left

    def concat(self) -> str:
        parts = [self.repeat()]
        while self.more() and not self.peek(")|") and not (self.on("INTERSECTION") and self.peek("&")):
            parts.append(self.repeat())
        return "".join(parts)

    def repeat(self) -> str:
        atom = self.compl()
        while self.peek("?*+{"):
            op = self.next()
            if op != "{":
                atom = f"(?:{atom}){op}"
                continue
            m = re.compile(r"(\d+)(,(\d*))?\}").match(self.s, self.pos)
            if not m:
                raise self.fail(f"integer expected at position {self.pos}")
            self.pos = m.end()
            atom = f"(?:{atom}){{{m.group(1)}{m.group(2) or ''}}}"
        return atom

    def compl(self) -> str:
        if self.on("COMPLEMENT") and self.peek("~"):
            raise unsupported("regexp complement operator '~' (escape it as \\~ or use flags NONE)")
        return self.charclass()

    def charclass(self) -> str:
        if not self.peek("["):
            return self.simple()
        self.pos += 1
        negate = self.peek("^")
        if negate:
            self.pos += 1
        items = []
        while self.more() and not self.peek("]"):
            low = self.charexp(in_class=True)
            if self.peek("-") and self.pos + 1 < len(self.s) and self.s[self.pos + 1] != "]":
                self.pos += 1
                high = self.charexp(in_class=True)
                items.append(f"{low}-{high}")
            else:
                items.append(low)
        if not self.peek("]"):
            raise self.fail(f"expected ']' at position {self.pos}")
        self.pos += 1
        if not items:
            raise self.fail("empty character class")
        return f"[{'^' if negate else ''}{''.join(items)}]"

    def charexp(self, in_class: bool = False) -> str:
        ch = self.next()
        if ch == "\\":
            escaped = self.next()
            if escaped in _SHORTHAND:
                return _SHORTHAND[escaped]
            return (
                re.escape(escaped) if not in_class else "\\" + escaped if not escaped.isalnum() else escaped
            )
        if in_class:
            return "\\" + ch if ch in "\\]^-[&~|" else ch
        return re.escape(ch)

    def simple(self) -> str:
        if not self.more():
            raise self.fail("unexpected end-of-string")
        ch = self.s[self.pos]
        if ch == ".":
            self.pos += 1
            return "."
        if ch == "#" and self.on("EMPTY"):
            self.pos += 1
            return "(?!)"
        if ch == "@" and self.on("ANYSTRING"):
            self.pos += 1
            return ".*"
        if ch == "<" and self.on("INTERVAL"):
            raise unsupported("regexp numeric interval '<n-m>' (escape '<' as \\< or use flags NONE)")
        if ch == '"':
            end = self.s.find('"', self.pos + 1)
            if end < 0:
                raise self.fail("expected '\"'")
            literal = self.s[self.pos + 1 : end]
            self.pos = end + 1
            return re.escape(literal)
        if ch == "(":
            self.pos += 1
            if self.peek(")"):
                self.pos += 1
                return ""
            inner = self.union()
            if not self.peek(")"):
                raise self.fail(f"expected ')' at position {self.pos}")
            self.pos += 1
            return f"(?:{inner})"
        return self.charexp()


@functools.lru_cache(maxsize=512)
def regexp_to_re(pattern: str, flags: int = 0xFFFF, case_insensitive: bool = False) -> re.Pattern[str]:
    """Compile a Lucene regexp (``flags`` as in OpenSearch, default ALL) to an anchored Python regex."""
    body = _LuceneRegexp(pattern, flags).translate()
    return re.compile(body, re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


# --------------------------------------------------------------------------------------------------
# Query compilation: DSL → predicate over Doc

Predicate = Callable[[Doc], bool]


def _params(spec: Any, clause: str, allowed: Iterable[str]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise QueryError(
            400, "parsing_exception", f"[{clause}] query malformed, no start_object after query name"
        )
    extra = set(spec) - set(allowed) - {"boost", "_name"}
    if extra:
        raise QueryError(400, "parsing_exception", f"[{clause}] query does not support [{sorted(extra)[0]}]")
    return dict(spec)


def _single_field(spec: Any, clause: str, value_key: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping) or not spec:
        raise QueryError(400, "parsing_exception", f"[{clause}] query malformed, no field")
    fields = [k for k in spec if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise QueryError(
            400,
            "parsing_exception",
            f"[{clause}] query doesn't support multiple fields, found [{fields[0]}] and [{fields[-1]}]",
        )
    name = fields[0]
    body = spec[name]
    return name, dict(body) if isinstance(body, Mapping) else {value_key: body}


def _any(doc: Doc, path: str, test: Callable[[Any], bool]) -> bool:
    return any(test(v) for v in doc.fields.get(path, ()))


@dataclass
class Compiler:
    """Compiles one request's query against the merged mapping of the searched indices."""

    mapping: Mapping_
    now_millis: int = field(default_factory=lambda: int(time.time() * 1000))

    def compile(self, query: Any) -> Predicate:
        if query is None:
            return lambda doc: True
        if not isinstance(query, Mapping) or len(query) != 1:
            raise QueryError(
                400, "parsing_exception", "[_na] query malformed, must have exactly one query name"
            )
        ((name, spec),) = query.items()
        handler = getattr(self, f"q_{name}", None)
        if handler is None:
            raise unsupported(f"query [{name}]")
        return handler(spec)

    def _ftype(self, path: str) -> str:
        return self.mapping.type_of(path) or KEYWORD

    # -- compound
    def q_bool(self, spec: Any) -> Predicate:
        spec = _params(
            spec,
            "bool",
            ("must", "filter", "should", "must_not", "minimum_should_match", "adjust_pure_negative"),
        )

        def clauses(key: str) -> list[Predicate]:
            value = spec.get(key, [])
            return [self.compile(c) for c in (value if isinstance(value, list) else [value])]

        must = clauses("must") + clauses("filter")
        must_not, should = clauses("must_not"), clauses("should")
        msm = self._minimum_should_match(spec.get("minimum_should_match"), len(should), bool(must))

        def run(doc: Doc) -> bool:
            if not all(p(doc) for p in must) or any(p(doc) for p in must_not):
                return False
            if msm <= 0:
                return True
            hits = 0
            for p in should:
                hits += p(doc)
                if hits >= msm:
                    return True
            return False

        return run

    @staticmethod
    def _minimum_should_match(value: Any, n: int, has_required: bool) -> int:
        if value is None:
            return 1 if n and not has_required else 0
        text = str(value).strip()
        if text.endswith("%"):
            pct = int(text[:-1])
            count = math.floor(n * abs(pct) / 100)
            result = count if pct >= 0 else n - count
        else:
            number = int(text)
            result = number if number >= 0 else n + number
        if result > n:
            return n + 1  # more than available: nothing matches, as in Lucene
        return max(result, 0)

    def q_constant_score(self, spec: Any) -> Predicate:
        spec = _params(spec, "constant_score", ("filter",))
        return self.compile(spec.get("filter"))

    def q_match_all(self, spec: Any) -> Predicate:
        _params(spec, "match_all", ())
        return lambda doc: True

    def q_match_none(self, spec: Any) -> Predicate:
        _params(spec, "match_none", ())
        return lambda doc: False

    def q_ids(self, spec: Any) -> Predicate:
        spec = _params(spec, "ids", ("values",))
        wanted = {str(v) for v in spec.get("values", [])}
        return lambda doc: doc.id in wanted

    # -- term level
    def _term_value(self, path: str, value: Any, lenient: bool = False) -> Any:
        ftype = self._ftype(path)
        if isinstance(value, Mapping | list):
            raise QueryError(
                400, "parsing_exception", f"[term] query does not support array or object value for [{path}]"
            )
        try:
            if ftype == TEXT:
                return keyword_of(value)
            if ftype == IP and "/" in str(value):
                return ipaddress.ip_network(str(value), strict=False)
            return to_indexed(ftype, value)
        except (QueryError, ValueError) as exc:
            if lenient:
                return _NO_MATCH
            reason = exc.reason if isinstance(exc, QueryError) else str(exc)
            raise QueryError(400, "query_shard_exception", f"failed to create query: {reason}") from None

    def _equals(
        self, path: str, value: Any, case_insensitive: bool = False, lenient: bool = False
    ) -> Predicate:
        ftype = self._ftype(path)
        target = self._term_value(path, value, lenient)
        if target is _NO_MATCH:
            return lambda doc: False
        if ftype == TEXT:
            return lambda doc: _any(doc, path, lambda tokens: target in tokens)
        if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return lambda doc: _any(doc, path, lambda ip: ip.version == target.version and ip in target)
        if case_insensitive and ftype == KEYWORD:
            lowered = target.lower()
            return lambda doc: _any(doc, path, lambda v: v.lower() == lowered)
        return lambda doc: _any(doc, path, lambda v: v == target)

    def q_term(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "term", "value")
        body = _params(body, "term", ("value", "case_insensitive"))
        if "value" not in body:
            raise QueryError(400, "parsing_exception", "[term] query requires a value")
        ftype = self.mapping.type_of(path)
        if body.get("case_insensitive") and ftype not in (None, KEYWORD, TEXT):
            # Only string fields implement case-insensitive term queries; the shard refuses the rest.
            raise QueryError(
                400,
                "query_shard_exception",
                f"failed to create query: Field [{path}] of type [{ftype}] does not support case "
                "insensitive term queries",
            )
        return self._equals(path, body["value"], bool(body.get("case_insensitive", False)))

    def q_terms(self, spec: Any) -> Predicate:
        if not isinstance(spec, Mapping):
            raise QueryError(400, "parsing_exception", "[terms] query malformed")
        fields = [k for k in spec if k not in ("boost", "_name")]
        if len(fields) != 1 or not isinstance(spec[fields[0]], list):
            raise unsupported("terms query without exactly one field with a list of values (terms lookup)")
        path = fields[0]
        preds = [self._equals(path, v) for v in spec[path]]
        if self._ftype(path) == KEYWORD:
            wanted = {keyword_of(v) for v in spec[path]}
            return lambda doc: any(v in wanted for v in doc.fields.get(path, ()))
        return lambda doc: any(p(doc) for p in preds)

    def _pattern(self, clause: str, path: str, regex: re.Pattern[str]) -> Predicate:
        ftype = self._ftype(path)
        if ftype == KEYWORD:
            return lambda doc: _any(doc, path, lambda v: regex.fullmatch(v) is not None)
        if ftype == TEXT:
            return lambda doc: _any(doc, path, lambda toks: any(regex.fullmatch(t) for t in toks))
        raise QueryError(
            400,
            "query_shard_exception",
            f"failed to create query: Can only use {clause} queries on "
            f"keyword and text fields - not on [{path}] which is of type [{ftype}]",
        )

    def q_wildcard(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "wildcard", "value")
        body = _params(body, "wildcard", ("value", "wildcard", "case_insensitive", "rewrite"))
        pattern = str(body.get("value", body.get("wildcard", "")))
        if self._ftype(path) == TEXT:
            pattern = pattern.lower()
        flags = re.DOTALL | (re.IGNORECASE if body.get("case_insensitive") else 0)
        return self._pattern("wildcard", path, re.compile(wildcard_to_re(pattern), flags))

    def q_prefix(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "prefix", "value")
        body = _params(body, "prefix", ("value", "case_insensitive", "rewrite"))
        flags = re.DOTALL | (re.IGNORECASE if body.get("case_insensitive") else 0)
        return self._pattern(
            "prefix", path, re.compile(re.escape(keyword_of(body.get("value", ""))) + ".*", flags)
        )

    def q_regexp(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "regexp", "value")
        body = _params(
            body,
            "regexp",
            ("value", "flags", "flags_value", "case_insensitive", "max_determinized_states", "rewrite"),
        )
        flags = parse_regexp_flags(body.get("flags_value", body.get("flags")))
        regex = regexp_to_re(keyword_of(body.get("value", "")), flags, bool(body.get("case_insensitive")))
        return self._pattern("regexp", path, regex)

    def q_exists(self, spec: Any) -> Predicate:
        spec = _params(spec, "exists", ("field",))
        name = str(spec.get("field", ""))
        paths = set(self.mapping.expand(name)) if "*" in name else {name}
        if "*" not in name:
            paths |= {p for p in self.mapping.types if p.startswith(name + ".")}
        return lambda doc: any(doc.fields.get(p) for p in paths)

    def q_range(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "range", "value")
        body = _params(
            body,
            "range",
            (
                "gt",
                "gte",
                "lt",
                "lte",
                "from",
                "to",
                "include_lower",
                "include_upper",
                "format",
                "time_zone",
                "relation",
            ),
        )
        if "from" in body:
            body["gte" if body.get("include_lower", True) else "gt"] = body.pop("from")
        if "to" in body:
            body["lte" if body.get("include_upper", True) else "lt"] = body.pop("to")
        ftype = self._ftype(path)
        bounds: list[tuple[str, Any]] = []
        for op in ("gt", "gte", "lt", "lte"):
            if body.get(op) is None:
                continue
            raw = body[op]
            try:
                if ftype == DATE:
                    value: Any = parse_date(
                        raw,
                        round_up=op in ("gt", "lte"),
                        time_zone=body.get("time_zone"),
                        now_millis=self.now_millis,
                        fmt=body.get("format"),
                    )
                elif ftype == TEXT:
                    raise unsupported(f"range on text field [{path}]")
                else:
                    value = to_indexed(ftype, raw)
            except QueryError as exc:
                if exc.type == "parsing_exception":
                    raise
                raise QueryError(
                    400, "query_shard_exception", f"failed to create query: {exc.reason}"
                ) from None
            bounds.append((op, value))
        checks = {
            "gt": lambda v, b: v > b,
            "gte": lambda v, b: v >= b,
            "lt": lambda v, b: v < b,
            "lte": lambda v, b: v <= b,
        }

        def ok(value: Any) -> bool:
            try:
                return all(checks[op](value, bound) for op, bound in bounds)
            except TypeError:  # e.g. IPv4 vs IPv6
                return False

        return lambda doc: _any(doc, path, ok)

    # -- full text
    def _match_field(self, path: str, query: Any, operator: str, lenient: bool, phrase: bool) -> Predicate:
        ftype = self._ftype(path)
        if ftype != TEXT:
            return self._equals(path, query, lenient=lenient)
        tokens = analyze(keyword_of(query))
        if not tokens:
            return lambda doc: False
        if phrase:
            n = len(tokens)
            return lambda doc: _any(
                doc, path, lambda toks: any(toks[i : i + n] == tokens for i in range(len(toks) - n + 1))
            )
        if operator == "and":
            return lambda doc: _any(doc, path, lambda toks: all(t in toks for t in tokens))
        wanted = set(tokens)
        return lambda doc: _any(doc, path, lambda toks: not wanted.isdisjoint(toks))

    def q_match(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "match", "query")
        body = _params(body, "match", ("query", "operator", "lenient", "auto_generate_synonyms_phrase_query"))
        operator = str(body.get("operator", "or")).lower()
        return self._match_field(path, body.get("query"), operator, bool(body.get("lenient")), False)

    def q_match_phrase(self, spec: Any) -> Predicate:
        path, body = _single_field(spec, "match_phrase", "query")
        body = _params(body, "match_phrase", ("query",))
        return self._match_field(path, body.get("query"), "or", False, True)

    def q_multi_match(self, spec: Any) -> Predicate:
        spec = _params(
            spec,
            "multi_match",
            (
                "query",
                "fields",
                "type",
                "operator",
                "lenient",
                "tie_breaker",
                "auto_generate_synonyms_phrase_query",
            ),
        )
        kind = spec.get("type", "best_fields")
        if kind not in ("best_fields", "most_fields", "phrase", "cross_fields"):
            raise unsupported(f"multi_match type [{kind}]")
        names = spec.get("fields") or ["*"]
        lenient = bool(spec.get("lenient")) or names == ["*"]
        paths: list[str] = []
        for name in names:
            name = str(name).split("^", 1)[0]
            for path in self.mapping.expand(name):
                if path not in paths:
                    paths.append(path)
        operator = str(spec.get("operator", "or")).lower()
        preds = [self._match_field(p, spec.get("query"), operator, lenient, kind == "phrase") for p in paths]
        return lambda doc: any(p(doc) for p in preds)


_NO_MATCH = object()


# --------------------------------------------------------------------------------------------------
# Sorting


@dataclass
class SortSpec:
    field: str
    order: str
    missing: str
    ftype: str
    mode: str


def parse_sort(sort: Any, mapping: Mapping_) -> list[SortSpec]:
    items = sort if isinstance(sort, list) else [sort]
    specs = []
    for item in items:
        if isinstance(item, str):
            name, opts = item, {}
            if ":" in item:
                name, order = item.split(":", 1)
                opts = {"order": order}
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, opts),) = item.items()
            opts = {"order": opts} if isinstance(opts, str) else dict(opts)
        else:
            raise QueryError(400, "parsing_exception", f"malformed sort [{item}]")
        extra = set(opts) - {"order", "missing", "unmapped_type", "mode", "format", "numeric_type"}
        if extra:
            raise unsupported(f"sort option [{sorted(extra)[0]}]")
        default_order = "desc" if name == "_score" else "asc"
        order = str(opts.get("order", default_order)).lower()
        ftype = "score" if name == "_score" else "doc" if name == "_doc" else mapping.type_of(name) or ""
        if not ftype:
            if "unmapped_type" not in opts:
                raise QueryError(
                    400, "query_shard_exception", f"No mapping found for [{name}] in order to sort on"
                )
            ftype = str(opts["unmapped_type"])
        if ftype == TEXT:
            raise bad_request(
                f"Text fields are not optimised for operations that require per-document field "
                f"data like aggregations and sorting, so these operations are disabled by default. "
                f"Please use a keyword field instead. Alternatively, set fielddata=true on "
                f"[{name}] in order to load field data by uninverting the inverted index."
            )
        mode = str(opts.get("mode", "min" if order == "asc" else "max"))
        specs.append(SortSpec(name, order, str(opts.get("missing", "_last")), ftype, mode))
    return specs


def sort_value(doc: Doc, spec: SortSpec) -> Any:
    """The value OpenSearch returns in a hit's ``sort`` array (dates as epoch millis)."""
    if spec.ftype == "doc":
        return doc.seq
    if spec.ftype == "score":
        return 1.0
    values = doc.fields.get(spec.field, [])
    if not values:
        if spec.ftype in NUMERIC or spec.ftype in (DATE, BOOLEAN):
            first = spec.missing == "_first"
            return LONG_MIN if (spec.order == "asc") == first else LONG_MAX
        return None
    pick = min(values) if spec.mode == "min" else max(values)
    if spec.ftype == IP:
        return str(pick)
    if spec.ftype == BOOLEAN:
        return int(pick)
    return pick


def coerce_after(value: Any, spec: SortSpec) -> Any:
    if value is None:
        return None
    if spec.ftype == DATE and isinstance(value, str) and not value.lstrip("-").isdigit():
        return parse_date(value)
    if spec.ftype in NUMERIC | {DATE, BOOLEAN, "doc"}:
        try:
            return int(value) if spec.ftype != FLOAT else float(value)
        except (TypeError, ValueError):
            raise bad_request(
                f"Failed to parse search_after value [{value}] for field [{spec.field}]"
            ) from None
    if spec.ftype == "score":
        return float(value)
    return keyword_of(value)


def compare(a: list[Any], b: list[Any], specs: list[SortSpec]) -> int:
    for x, y, spec in zip(a, b, specs, strict=True):
        if x == y:
            continue
        if x is None or y is None:  # missing keyword values: position by `missing`
            first = spec.missing == "_first"
            return (-1 if first else 1) if x is None else (1 if first else -1)
        result = -1 if x < y else 1
        return result if spec.order == "asc" else -result
    return 0


def sort_value_list(doc: Doc, specs: list[Any]) -> list[Any]:
    return [sort_value(doc, s) for s in specs]


def sort_in_place(keyed: list[tuple[list[Any], Doc]], specs: list[Any]) -> None:
    """Stable multi-pass sort, last key first (fast: no comparison function on 10,000+ hits)."""
    for i in range(len(specs) - 1, -1, -1):
        spec = specs[i]
        missing = -1 if (spec.missing == "_first") == (spec.order == "asc") else 1

        def key(item: tuple[list[Any], Doc], i: int = i, missing: int = missing) -> tuple[int, Any]:
            value = item[0][i]
            return (missing, "") if value is None else (0, value)

        keyed.sort(key=key, reverse=spec.order == "desc")


# --------------------------------------------------------------------------------------------------
# Aggregations


def run_aggregations(aggs: Any, docs: list[Doc], mapping: Mapping_) -> dict[str, Any]:
    if not isinstance(aggs, Mapping):
        raise QueryError(400, "parsing_exception", "aggregations must be an object")
    result = {}
    for name, body in aggs.items():
        if not isinstance(body, Mapping):
            raise QueryError(400, "parsing_exception", f"aggregation [{name}] malformed")
        subs = body.get("aggs", body.get("aggregations"))
        kinds = [k for k in body if k not in ("aggs", "aggregations", "meta")]
        if len(kinds) != 1:
            raise QueryError(400, "parsing_exception", f"Expected exactly one aggregation type in [{name}]")
        kind = kinds[0]
        if kind == "terms":
            result[name] = _terms_agg(body[kind], subs, docs, mapping)
        elif kind == "top_hits":
            if subs:
                raise bad_request(f"Aggregator [{name}] of type [top_hits] cannot accept sub-aggregations")
            result[name] = _top_hits(body[kind], docs, mapping)
        elif kind in ("min", "max", "value_count", "cardinality", "sum", "avg"):
            if subs:
                raise bad_request(
                    f"Aggregator [{name}] of type [{kind}] cannot accept sub-aggregations",
                    "aggregation_initialization_exception",
                )
            result[name] = _metric_agg(kind, body[kind], docs, mapping)
        else:
            raise unsupported(f"aggregation type [{kind}]")
    return result


def _agg_field(
    spec: Any, kind: str, mapping: Mapping_, allowed: Iterable[str]
) -> tuple[str, str, dict[str, Any]]:
    spec = _params(spec, kind, ("field", *allowed))
    path = spec.get("field")
    if not path:
        raise unsupported(f"[{kind}] aggregation without a field (scripts)")
    ftype = mapping.type_of(path) or ""
    if ftype == TEXT:
        raise bad_request(
            f"Text fields are not optimised for operations that require per-document field data "
            f"like aggregations and sorting, so these operations are disabled by default. Please "
            f"use a keyword field instead. Alternatively, set fielddata=true on [{path}] in order "
            f"to load field data by uninverting the inverted index."
        )
    return path, ftype, spec


def _metric_agg(kind: str, spec: Any, docs: list[Doc], mapping: Mapping_) -> dict[str, Any]:
    path, ftype, _ = _agg_field(
        spec, kind, mapping, ("format", "missing") if kind != "cardinality" else ("precision_threshold",)
    )
    if kind == "value_count":
        return {"value": sum(len(d.fields.get(path, ())) for d in docs)}
    if kind == "cardinality":
        return {"value": len({v for d in docs for v in d.fields.get(path, ())})}
    if ftype and ftype not in NUMERIC | {DATE, BOOLEAN}:
        raise bad_request(f"Field [{path}] of type [{ftype}] is not supported for aggregation [{kind}]")
    values = [float(v) for d in docs for v in d.fields.get(path, ())]
    if kind == "sum":
        return {"value": float(sum(values))}
    if kind == "avg":
        return {"value": sum(values) / len(values) if values else None}
    if not values:
        return {"value": None}
    value = min(values) if kind == "min" else max(values)
    out: dict[str, Any] = {"value": value}
    if ftype == DATE:
        out["value_as_string"] = format_millis(int(value))
    return out


def _terms_agg(spec: Any, subs: Any, docs: list[Doc], mapping: Mapping_) -> dict[str, Any]:
    path, ftype, spec = _agg_field(
        spec,
        "terms",
        mapping,
        ("size", "order", "min_doc_count", "shard_size", "show_term_doc_count_error", "missing"),
    )
    size = int(spec.get("size", 10))
    groups: dict[Any, list[Doc]] = {}
    missing = to_indexed(ftype, spec["missing"]) if "missing" in spec and ftype else spec.get("missing")
    for doc in docs:
        values = doc.fields.get(path, ())
        if not values and "missing" in spec:
            groups.setdefault(missing, []).append(doc)
        for value in dict.fromkeys(values):
            groups.setdefault(value, []).append(doc)
    buckets = []
    for key, members in groups.items():
        bucket: dict[str, Any] = {"key": key, "doc_count": len(members)}
        if ftype == DATE:
            bucket["key_as_string"] = format_millis(key)
        elif ftype == BOOLEAN:
            bucket = {"key": int(key), "key_as_string": "true" if key else "false", "doc_count": len(members)}
        elif ftype == IP:
            bucket["key"] = str(key)
        if subs:
            bucket.update(run_aggregations(subs, members, mapping))
        buckets.append(bucket)
    order = spec.get("order", [{"_count": "desc"}, {"_key": "asc"}])
    orders = [
        (k, str(v).lower())
        for item in (order if isinstance(order, list) else [order])
        for k, v in item.items()
    ]
    if not any(k == "_key" for k, _ in orders):
        orders.append(("_key", "asc"))

    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        for key, direction in orders:
            if key == "_count":
                x, y = a["doc_count"], b["doc_count"]
            elif key in ("_key", "_term"):
                x, y = a["key"], b["key"]
            else:
                metric, _, prop = key.partition(".")
                if metric not in a:
                    raise bad_request(
                        f"Invalid aggregator order path [{key}]", "aggregation_execution_exception"
                    )
                x, y = a[metric].get(prop or "value"), b[metric].get(prop or "value")
                if x is None or y is None:
                    if x is y:
                        continue
                    return 1 if x is None else -1
            if x != y:
                return (-1 if x < y else 1) * (1 if direction == "asc" else -1)
        return 0

    buckets.sort(key=functools.cmp_to_key(cmp))
    min_count = int(spec.get("min_doc_count", 1))
    buckets = [b for b in buckets if b["doc_count"] >= min_count]
    shown = buckets[:size]
    return {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": sum(b["doc_count"] for b in buckets[size:]),
        "buckets": shown,
    }


# --------------------------------------------------------------------------------------------------
# _source filtering


def filter_source(source: Any, spec: Any) -> Any:
    """Apply ``_source`` (bool, pattern, list, or includes/excludes) as OpenSearch does, with globs."""
    if spec is None or spec is True:
        return source
    if spec is False:
        return None
    if isinstance(spec, str):
        includes, excludes = [spec], []
    elif isinstance(spec, list):
        includes, excludes = [str(s) for s in spec], []
    elif isinstance(spec, Mapping):
        extra = set(spec) - {"includes", "excludes", "include", "exclude"}
        if extra:
            raise QueryError(400, "parsing_exception", f"unknown _source key [{sorted(extra)[0]}]")
        includes = _as_list(spec.get("includes", spec.get("include", [])))
        excludes = _as_list(spec.get("excludes", spec.get("exclude", [])))
    else:
        raise QueryError(400, "parsing_exception", "malformed _source")

    def matches(path: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in patterns)

    def partial(path: str) -> bool:  # could a descendant of `path` be included?
        return any(
            fnmatch.fnmatchcase(path, p.split(".")[0])
            or p.startswith(path + ".")
            or p.startswith("*")
            or fnmatch.fnmatchcase(path + ".", p[: len(path) + 1])
            for p in includes
        )

    def walk(node: Any, path: str, included: bool) -> Any:
        if isinstance(node, Mapping):
            out = {}
            for key, child in node.items():
                child_path = f"{path}.{key}" if path else key
                if matches(child_path, excludes):
                    continue
                now_in = included or not includes or matches(child_path, includes)
                if not now_in and not (isinstance(child, Mapping | list) and partial(child_path)):
                    continue
                value = walk(child, child_path, now_in)
                if value is not _DROP:
                    out[key] = value
            return out if out or included else _DROP
        if isinstance(node, list):
            items = [walk(child, path, included) for child in node]
            kept = [i for i in items if i is not _DROP]
            return kept if kept or included else _DROP
        return node if included else _DROP

    result = walk(source, "", False)
    return {} if result is _DROP else result


_DROP = object()


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _top_hits(spec: Any, docs: list[Doc], mapping: Mapping_) -> dict[str, Any]:
    """``top_hits`` (size, from, sort, _source): the newest alerts per rule or agent for links."""
    spec = _params(spec, "top_hits", ("size", "from", "sort", "_source"))
    specs = parse_sort(spec["sort"], mapping) if spec.get("sort") else []
    keyed = sorted(((sort_value_list(d, specs), d) for d in docs), key=lambda item: item[1].seq)
    sort_in_place(keyed, specs)
    offset, size = int(spec.get("from", 0)), int(spec.get("size", 3))
    hits = []
    for values, doc in keyed[offset : offset + size]:
        hit: dict[str, Any] = {"_index": doc.index, "_id": doc.id, "_score": None if specs else 1.0}
        source = filter_source(doc.source, spec.get("_source"))
        if source is not None:
            hit["_source"] = source
        if specs:
            hit["sort"] = values
        hits.append(hit)
    total = {"value": len(docs), "relation": "eq"}
    return {"hits": {"total": total, "max_score": None if specs else 1.0, "hits": hits}}
