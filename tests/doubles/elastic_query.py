"""Query DSL evaluation, sorting and ``_source`` filtering over stored ``_source`` documents.

Semantics follow Elasticsearch where connectors can observe them:

* a field path is resolved across dotted-flat keys and nested objects (``{"host": {"ip": [...]}}`` and
  ``{"kibana.alert.uuid": ...}`` both resolve), arrays are flattened, ``null`` is no value;
* values are compared in the field's mapped type: dates as epoch milliseconds (ISO-8601 strings, epoch
  millis numbers and date math such as ``now-7d/d`` accepted), numbers numerically, ``ip`` fields by
  address with CIDR terms, everything else as exact keyword strings (no analysis: ``match`` is exact);
* sorting uses the ES defaults: ``asc`` except ``_score``; ``missing: _last``; multi-valued fields sort
  by ``min`` ascending and ``max`` descending; missing numeric/date values report ``Long.MAX_VALUE`` /
  ``Long.MIN_VALUE`` in ``sort`` (keywords report ``null``); ``search_after`` skips every document equal
  to the given values on all sort keys.
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import functools
import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)
DOUBLE_MAX = 1.7976931348623157e308

NUMERIC_TYPES = {
    "long",
    "integer",
    "short",
    "byte",
    "unsigned_long",
    "double",
    "float",
    "half_float",
    "scaled_float",
}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
DATE_TYPES = {"date", "date_nanos"}
KEYWORD_TYPES = {"keyword", "constant_keyword", "wildcard", "text", "match_only_text", "version", "flattened"}


class QueryError(Exception):
    """A request the real Elasticsearch would refuse; carries the ES error type and status."""

    def __init__(self, type_: str, reason: str, status: int = 400, *, shard_level: bool = False) -> None:
        super().__init__(reason)
        self.type = type_
        self.reason = reason
        self.status = status
        self.shard_level = shard_level


class Doc(Protocol):
    id: str
    index: str
    ordinal: int
    source: dict[str, Any]
    cache: dict[tuple[str, str], list[Any]]


# --------------------------------------------------------------------------------------------------
# Dates

_ISO_RE = re.compile(
    r"^(?P<y>[+-]?\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2})(?::?(?P<mi>\d{2})(?::?(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?)?)?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_iso(value: str) -> dt.datetime | None:
    m = _ISO_RE.match(value.strip())
    if m is None:
        return None
    try:
        frac = (m["f"] or "0").ljust(6, "0")[:6]
        tz = dt.UTC
        if m["tz"] and m["tz"] not in ("Z", "z"):
            sign = -1 if m["tz"][0] == "-" else 1
            digits = m["tz"][1:].replace(":", "")
            tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
        return dt.datetime(
            int(m["y"]),
            int(m["mo"] or 1),
            int(m["d"] or 1),
            int(m["h"] or 0),
            int(m["mi"] or 0),
            int(m["s"] or 0),
            int(frac),
            tzinfo=tz,
        )
    except ValueError:
        return None


def to_millis(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_millis(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def format_millis(ms: int, nanos: bool = False) -> str:
    moment = from_millis(ms)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{moment.microsecond // 1000:03d}{'000000' if nanos else ''}Z"


def parse_date_millis(value: Any, fmt: str | None = None) -> int | None:
    """Epoch millis for an ES date value (``strict_date_optional_time||epoch_millis`` by default)."""
    if isinstance(value, str):
        return _parse_date_text(value, fmt)
    return _parse_date_value(value, fmt)


@functools.lru_cache(maxsize=65536)
def _parse_date_text(value: str, fmt: str | None) -> int | None:
    return _parse_date_value(value, fmt)


def _parse_date_value(value: Any, fmt: str | None) -> int | None:
    formats = [f.strip() for f in (fmt or "strict_date_optional_time||epoch_millis").split("||")]
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if math.isnan(value) or math.isinf(value):
            return None
        if "epoch_second" in formats and "epoch_millis" not in formats:
            return int(value * 1000)
        return int(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    for f in formats:
        if f in ("epoch_millis", "epoch_second"):
            if re.fullmatch(r"-?\d+(\.\d+)?", text):
                number = float(text) if "." in text else int(text)
                return int(number * 1000) if f == "epoch_second" else int(number)
            continue
        parsed = parse_iso(text)
        if parsed is not None:
            return to_millis(parsed)
    return None


_MATH_RE = re.compile(r"([+-])(\d+)([yMwdhHms])|/([yMwdhHms])")


def _add(moment: dt.datetime, amount: int, unit: str) -> dt.datetime:
    if unit in ("y", "M"):
        months = moment.month - 1 + amount * (12 if unit == "y" else 1)
        year, month = moment.year + months // 12, months % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day)
    seconds = {"w": 604_800, "d": 86_400, "h": 3600, "H": 3600, "m": 60, "s": 1}[unit]
    return moment + dt.timedelta(seconds=amount * seconds)


def _round(moment: dt.datetime, unit: str, up: bool) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    if unit == "y":
        start = moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "M":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "w":
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - dt.timedelta(days=day.weekday())
    elif unit == "d":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit in ("h", "H"):
        start = moment.replace(minute=0, second=0, microsecond=0)
    elif unit == "m":
        start = moment.replace(second=0, microsecond=0)
    else:
        start = moment.replace(microsecond=0)
    if not up:
        return start
    return _add(start, 1, unit) - dt.timedelta(milliseconds=1)


def parse_date_math(value: Any, now_ms: int, *, round_up: bool = False, fmt: str | None = None) -> int | None:
    """Resolve an ES date-math expression (``now-1d/d``, ``2024-01-01||+1M``) or a plain date."""
    if not isinstance(value, str):
        return parse_date_millis(value, fmt)
    text = value.strip()
    if text.startswith("now"):
        anchor, rest = from_millis(now_ms), text[3:]
    elif "||" in text and not (fmt and "||" in fmt):
        base, _, rest = text.partition("||")
        ms = parse_date_millis(base, fmt)
        if ms is None:
            return None
        anchor = from_millis(ms)
    else:
        return parse_date_millis(text, fmt)
    pos = 0
    while pos < len(rest):
        m = _MATH_RE.match(rest, pos)
        if m is None:
            return None
        if m.group(4):
            anchor = _round(anchor, m.group(4), round_up)
        else:
            amount = int(m.group(2)) * (-1 if m.group(1) == "-" else 1)
            anchor = _add(anchor, amount, m.group(3))
        pos = m.end()
    return to_millis(anchor)


def looks_like_date(value: str) -> bool:
    """ES dynamic date detection (``strict_date_optional_time``); needs at least ``yyyy-MM-dd``."""
    return len(value) >= 10 and value[4:5] == "-" and value[7:8] == "-" and parse_iso(value) is not None


# --------------------------------------------------------------------------------------------------
# Field values


def resolve_path(source: Any, path: str) -> list[Any]:
    """Every value at ``path``, trying each dotted/nested split; lists flattened, nulls dropped."""
    out: list[Any] = []
    _collect(source, path.split("."), 0, out)
    return out


def _collect(obj: Any, parts: list[str], i: int, out: list[Any]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _collect(item, parts, i, out)
        return
    if i == len(parts):
        if obj is not None:
            out.append(obj)
        return
    if not isinstance(obj, dict):
        return
    key = parts[i]
    for j in range(i + 1, len(parts) + 1):
        if j > i + 1:
            key = key + "." + parts[j - 1]
        if key in obj:
            _collect(obj[key], parts, j, out)


def ip_key(value: Any) -> int | None:
    """An address as a 128-bit integer with IPv4 mapped into IPv6 space (Lucene's ordering)."""
    if not isinstance(value, str):
        return None
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        return int(ipaddress.IPv6Address(f"::ffff:{addr}"))
    return int(addr)


def normalise(value: Any, ftype: str | None) -> Any:
    """A stored value in its field type's comparable form, or None when it cannot be indexed."""
    if value is None or isinstance(value, dict):
        return None
    if ftype in DATE_TYPES:
        return parse_date_millis(value)
    if ftype in NUMERIC_TYPES:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return int(value) if ftype in INTEGER_TYPES and float(value).is_integer() else value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return None
            return int(number) if ftype in INTEGER_TYPES and number.is_integer() else number
        return None
    if ftype == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        if value == "":
            return False
        return None
    if ftype == "ip":
        return ip_key(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def field_values(doc: Doc, path: str, ftype: str | None) -> list[Any]:
    key = (path, ftype or "")
    cached = doc.cache.get(key)
    if cached is None:
        raw = resolve_path(doc.source, path)
        if not raw and path.endswith(".keyword"):
            raw = resolve_path(doc.source, path[: -len(".keyword")])
        cached = [n for n in (normalise(v, ftype) for v in raw) if n is not None]
        doc.cache[key] = cached
    return cached


# --------------------------------------------------------------------------------------------------
# Queries


@dataclass
class QueryContext:
    """``field_type`` maps a path to its leaf type, ``"object"`` for object paths, None if unmapped."""

    field_type: Callable[[str], str | None]
    now_ms: int

    def type_of(self, path: str) -> str | None:
        """The leaf type, or None: as in ES, a query on an unmapped field matches nothing."""
        ftype = self.field_type(path)
        return None if ftype in (None, "object", "nested") else ftype


def _never(doc: Doc) -> bool:
    return False


Predicate = Callable[[Doc], bool]

_UNSUPPORTED = {
    "query_string",
    "simple_query_string",
    "multi_match",
    "has_child",
    "has_parent",
    "script",
    "script_score",
    "function_score",
    "geo_distance",
    "geo_bounding_box",
    "geo_shape",
    "more_like_this",
    "percolate",
    "fuzzy",
    "span_term",
    "combined_fields",
    "knn",
    "semantic",
    "terms_set",
    "intervals",
    "rank_feature",
    "distance_feature",
    "pinned",
    "match_bool_prefix",
    "match_phrase_prefix",
}


def compile_query(query: Any, ctx: QueryContext) -> Predicate:
    """Compile a query DSL object into a predicate over stored documents."""
    if query is None:
        return lambda doc: True
    if not isinstance(query, dict) or len(query) != 1:
        raise QueryError("parsing_exception", "[_na] query malformed, must start with start_object")
    ((kind, body),) = query.items()
    builder = _BUILDERS.get(kind)
    if builder is None:
        if kind in _UNSUPPORTED:
            raise QueryError(
                "double_unsupported_exception",
                f"query [{kind}] is valid but not implemented by the test double",
            )
        raise QueryError("parsing_exception", f"unknown query [{kind}]")
    return builder(body, ctx)


def _single_field(kind: str, body: Any) -> tuple[str, Any]:
    if not isinstance(body, dict):
        raise QueryError("parsing_exception", f"[{kind}] query malformed, no start_object after query name")
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        if not fields:
            raise QueryError("parsing_exception", f"[{kind}] query requires a field")
        raise QueryError(
            "parsing_exception",
            f"[{kind}] query doesn't support multiple fields, found [{fields[0]}] and [{fields[1]}]",
        )
    return fields[0], body[fields[0]]


def _query_value(ftype: str, value: Any, ctx: QueryContext) -> Any:
    if ftype in DATE_TYPES:
        return parse_date_math(value, ctx.now_ms)
    return normalise(value, ftype)


def _term_matcher(path: str, raw: Any, ctx: QueryContext, case_insensitive: bool = False) -> Predicate:
    ftype = ctx.type_of(path)
    if path == "_id":
        wanted = str(raw)
        return lambda doc: doc.id == wanted
    if path == "_index":
        wanted = str(raw)
        return lambda doc: doc.index == wanted
    if isinstance(raw, dict | list):
        raise QueryError(
            "parsing_exception", f"[term] query does not support array or object values for [{path}]"
        )
    if ftype is None:
        return _never
    if ftype == "ip" and isinstance(raw, str) and "/" in raw:
        try:
            net = ipaddress.ip_network(raw, strict=False)
        except ValueError as exc:
            raise QueryError(
                "query_shard_exception", f"failed to create query: {exc}", shard_level=True
            ) from exc
        low = ip_key(str(net.network_address))
        high = ip_key(str(net.broadcast_address))
        return lambda doc: any(low <= v <= high for v in field_values(doc, path, ftype))  # type: ignore[operator]
    wanted = _query_value(ftype, raw, ctx)
    if wanted is None:
        if ftype in NUMERIC_TYPES | DATE_TYPES | {"ip", "boolean"}:
            raise QueryError(
                "query_shard_exception",
                f'failed to create query: For input string: "{raw}"',
                shard_level=True,
            )
        return lambda doc: False
    if case_insensitive and isinstance(wanted, str):
        low_wanted = wanted.lower()
        return lambda doc: any(
            isinstance(v, str) and v.lower() == low_wanted for v in field_values(doc, path, ftype)
        )
    return lambda doc: wanted in field_values(doc, path, ftype)


def _q_term(body: Any, ctx: QueryContext) -> Predicate:
    path, spec = _single_field("term", body)
    if isinstance(spec, dict):
        if "value" not in spec:
            raise QueryError("parsing_exception", "[term] query requires a [value]")
        return _term_matcher(path, spec["value"], ctx, bool(spec.get("case_insensitive")))
    return _term_matcher(path, spec, ctx)


def _q_terms(body: Any, ctx: QueryContext) -> Predicate:
    path, spec = _single_field("terms", body)
    if not isinstance(spec, list):
        raise QueryError(
            "parsing_exception", f"[terms] query does not support [{path}] without an array of values"
        )
    matchers = [_term_matcher(path, v, ctx) for v in spec]
    return lambda doc: any(m(doc) for m in matchers)


def _q_match(body: Any, ctx: QueryContext) -> Predicate:
    path, spec = _single_field("match", body)
    if isinstance(spec, dict):
        if "query" not in spec:
            raise QueryError("parsing_exception", "[match] requires query value")
        return _term_matcher(path, spec["query"], ctx)
    return _term_matcher(path, spec, ctx)


def _q_range(body: Any, ctx: QueryContext) -> Predicate:
    path, spec = _single_field("range", body)
    if not isinstance(spec, dict):
        raise QueryError("parsing_exception", "[range] query malformed, no start_object after field name")
    ftype = ctx.type_of(path)
    if ftype is None:
        return _never
    fmt = spec.get("format")
    bounds: list[tuple[str, Any]] = []
    for op in ("gt", "gte", "lt", "lte"):
        if spec.get(op) is not None:
            bounds.append((op, spec[op]))
    if spec.get("from") is not None:
        bounds.append(("gte" if spec.get("include_lower", True) else "gt", spec["from"]))
    if spec.get("to") is not None:
        bounds.append(("lte" if spec.get("include_upper", True) else "lt", spec["to"]))
    unknown = set(spec) - {
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
        "boost",
        "relation",
        "_name",
    }
    if unknown:
        raise QueryError("parsing_exception", f"[range] query does not support [{sorted(unknown)[0]}]")
    checks: list[tuple[str, Any]] = []
    for op, raw in bounds:
        if ftype in DATE_TYPES:
            value = parse_date_math(raw, ctx.now_ms, round_up=op in ("gt", "lte"), fmt=fmt)
        else:
            value = normalise(raw, ftype)
        if value is None:
            raise QueryError(
                "parse_exception",
                f"failed to parse date field [{raw}] with format "
                f"[{fmt or 'strict_date_optional_time||epoch_millis'}]"
                if ftype in DATE_TYPES
                else f"failed to parse [{raw}] for field [{path}] of type [{ftype}]",
                shard_level=True,
            )
        checks.append((op, value))

    def in_range(v: Any) -> bool:
        for op, bound in checks:
            try:
                if (op == "gt" and not v > bound) or (op == "gte" and not v >= bound):
                    return False
                if (op == "lt" and not v < bound) or (op == "lte" and not v <= bound):
                    return False
            except TypeError:
                return False
        return True

    return lambda doc: any(in_range(v) for v in field_values(doc, path, ftype))


def _q_exists(body: Any, ctx: QueryContext) -> Predicate:
    if not isinstance(body, dict) or not isinstance(body.get("field"), str):
        raise QueryError("parsing_exception", "[exists] must be provided with a [field]")
    path = body["field"]
    if ctx.field_type(path) is None:
        return _never

    def exists(doc: Doc) -> bool:
        values = resolve_path(doc.source, path)
        if not values and path.endswith(".keyword"):
            values = resolve_path(doc.source, path[: -len(".keyword")])
        return any(v != {} for v in values)

    return exists


def _q_ids(body: Any, ctx: QueryContext) -> Predicate:
    values = body.get("values") if isinstance(body, dict) else None
    if not isinstance(values, list):
        raise QueryError("parsing_exception", "[ids] query malformed, [values] must be an array")
    wanted = {str(v) for v in values}
    return lambda doc: doc.id in wanted


def _pattern_matcher(kind: str, body: Any, ctx: QueryContext, to_regex: Callable[[str], str]) -> Predicate:
    path, spec = _single_field(kind, body)
    case_insensitive = False
    if isinstance(spec, dict):
        value = spec.get("value", spec.get(kind))
        case_insensitive = bool(spec.get("case_insensitive"))
    else:
        value = spec
    if not isinstance(value, str):
        raise QueryError("parsing_exception", f"[{kind}] query requires a string value")
    regex = re.compile(to_regex(value), re.DOTALL | (re.IGNORECASE if case_insensitive else 0))
    ftype = ctx.type_of(path)
    if path == "_id":
        return lambda doc: regex.fullmatch(doc.id) is not None
    if ftype is None:
        return _never
    return lambda doc: any(
        isinstance(v, str) and regex.fullmatch(v) is not None for v in field_values(doc, path, ftype)
    )


def _q_prefix(body: Any, ctx: QueryContext) -> Predicate:
    return _pattern_matcher("prefix", body, ctx, lambda v: re.escape(v) + ".*")


def _q_wildcard(body: Any, ctx: QueryContext) -> Predicate:
    def convert(value: str) -> str:
        out = []
        escaped = False
        for ch in value:
            if escaped:
                out.append(re.escape(ch))
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "*":
                out.append(".*")
            elif ch == "?":
                out.append(".")
            else:
                out.append(re.escape(ch))
        return "".join(out)

    return _pattern_matcher("wildcard", body, ctx, convert)


def _q_regexp(body: Any, ctx: QueryContext) -> Predicate:
    return _pattern_matcher("regexp", body, ctx, lambda v: v)


def _clauses(body: dict[str, Any], key: str, ctx: QueryContext) -> list[Predicate]:
    value = body.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [compile_query(item, ctx) for item in items]


def _minimum_should_match(spec: Any, optional: int) -> int:
    if spec is None:
        return 0
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            pct = int(text[:-1])
            count = math.floor(optional * abs(pct) / 100)
            result = count if pct >= 0 else optional - count
        else:
            number = int(text)
            result = number if number >= 0 else optional + number
    except ValueError as exc:
        raise QueryError(
            "parsing_exception", f"[bool] failed to parse minimum_should_match [{spec}]"
        ) from exc
    return max(0, min(result, optional))


def _q_bool(body: Any, ctx: QueryContext) -> Predicate:
    if not isinstance(body, dict):
        raise QueryError("parsing_exception", "[bool] query malformed, no start_object after query name")
    unknown = set(body) - {"must", "filter", "should", "must_not", "minimum_should_match", "boost", "_name"}
    if unknown:
        raise QueryError("parsing_exception", f"[bool] query does not support [{sorted(unknown)[0]}]")
    must = _clauses(body, "must", ctx) + _clauses(body, "filter", ctx)
    should = _clauses(body, "should", ctx)
    must_not = _clauses(body, "must_not", ctx)
    spec = body.get("minimum_should_match")
    # ES default: with no must/filter clause at least one should clause must match
    needed = (1 if should and not must else 0) if spec is None else _minimum_should_match(spec, len(should))

    def evaluate(doc: Doc) -> bool:
        if not all(m(doc) for m in must):
            return False
        if any(m(doc) for m in must_not):
            return False
        if needed:
            hits = 0
            for m in should:
                if m(doc):
                    hits += 1
                    if hits >= needed:
                        break
            return hits >= needed
        return True

    return evaluate


def _q_match_all(body: Any, ctx: QueryContext) -> Predicate:
    return lambda doc: True


def _q_match_none(body: Any, ctx: QueryContext) -> Predicate:
    return lambda doc: False


def _q_constant_score(body: Any, ctx: QueryContext) -> Predicate:
    if not isinstance(body, dict) or "filter" not in body:
        raise QueryError("parsing_exception", "[constant_score] requires a 'filter' element")
    return compile_query(body["filter"], ctx)


def _q_dis_max(body: Any, ctx: QueryContext) -> Predicate:
    queries = [compile_query(q, ctx) for q in (body or {}).get("queries", [])]
    return lambda doc: any(q(doc) for q in queries)


def _q_boosting(body: Any, ctx: QueryContext) -> Predicate:
    return compile_query((body or {}).get("positive"), ctx)


@dataclass
class _SubDoc:
    id: str
    index: str
    ordinal: int
    source: dict[str, Any]
    cache: dict[tuple[str, str], list[Any]] = field(default_factory=dict)


def _q_nested(body: Any, ctx: QueryContext) -> Predicate:
    if not isinstance(body, dict) or "path" not in body or "query" not in body:
        raise QueryError("parsing_exception", "[nested] requires 'path' and 'query' fields")
    path = body["path"]
    inner = compile_query(body["query"], ctx)

    def evaluate(doc: Doc) -> bool:
        for obj in resolve_path(doc.source, path):
            if isinstance(obj, dict) and inner(_SubDoc(doc.id, doc.index, doc.ordinal, {path: obj})):
                return True
        return False

    return evaluate


_BUILDERS: dict[str, Callable[[Any, QueryContext], Predicate]] = {
    "bool": _q_bool,
    "term": _q_term,
    "terms": _q_terms,
    "range": _q_range,
    "exists": _q_exists,
    "ids": _q_ids,
    "match": _q_match,
    "match_phrase": _q_match,
    "prefix": _q_prefix,
    "wildcard": _q_wildcard,
    "regexp": _q_regexp,
    "match_all": _q_match_all,
    "match_none": _q_match_none,
    "constant_score": _q_constant_score,
    "dis_max": _q_dis_max,
    "boosting": _q_boosting,
    "nested": _q_nested,
}


# --------------------------------------------------------------------------------------------------
# Sorting


class _Rev(str):
    """A string that sorts in reverse, so descending keyword sorts fit in an ascending key tuple."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return str.__gt__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        return str.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        return str.__ge__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        return str.__le__(self, other)  # type: ignore[operator]


@dataclass
class SortField:
    field: str
    order: str = "asc"
    missing: Any = "_last"
    mode: str | None = None
    format: str | None = None
    unmapped_type: str | None = None
    ftype: str | None = None  # resolved by the caller against the mappings
    implicit: bool = False

    @property
    def desc(self) -> bool:
        return self.order == "desc"

    @property
    def special(self) -> bool:
        return self.field in ("_doc", "_shard_doc", "_score")

    @property
    def numeric(self) -> bool:
        return self.ftype in NUMERIC_TYPES | DATE_TYPES | {"boolean"} or self.special


def parse_sort(spec: Any) -> list[SortField]:
    """Parse every ES sort syntax: ``"f"``, ``"f:desc"`` (URL), ``{"f": "desc"}``, ``{"f": {...}}``."""
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out: list[SortField] = []
    for item in items:
        if isinstance(item, str):
            name, _, order = (
                item.partition(":") if ":" in item and not item.startswith("_") else (item, "", "")
            )
            out.append(SortField(name, order or ("desc" if name == "_score" else "asc")))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise QueryError(
                "parsing_exception",
                "malformed sort format, within the sort array, an object, or an actual string are allowed",
            )
        ((name, options),) = item.items()
        if isinstance(options, str):
            if options not in ("asc", "desc"):
                raise QueryError("illegal_argument_exception", f"Unknown SortOrder [{options}]")
            out.append(SortField(name, options))
            continue
        if not isinstance(options, dict):
            raise QueryError("parsing_exception", f"[{name}] sort options must be an object")
        order = options.get("order", "desc" if name == "_score" else "asc")
        if order not in ("asc", "desc"):
            raise QueryError("illegal_argument_exception", f"Unknown SortOrder [{order}]")
        unknown = set(options) - {
            "order",
            "missing",
            "mode",
            "format",
            "unmapped_type",
            "numeric_type",
            "nested",
        }
        if unknown:
            raise QueryError("parsing_exception", f"[field_sort] unknown field [{sorted(unknown)[0]}]")
        out.append(
            SortField(
                name,
                order,
                options.get("missing", "_last"),
                options.get("mode"),
                options.get("format"),
                options.get("unmapped_type"),
            )
        )
    return out


def _missing_numeric(sf: SortField) -> float | int:
    big = DOUBLE_MAX if sf.ftype in ("double", "float", "half_float", "scaled_float") else LONG_MAX
    small = -DOUBLE_MAX if big == DOUBLE_MAX else LONG_MIN
    last = sf.missing == "_last"
    if sf.missing not in ("_last", "_first"):
        value = normalise(sf.missing, sf.ftype)
        if sf.ftype in DATE_TYPES:
            value = parse_date_millis(sf.missing)
        if value is None:
            raise QueryError("illegal_argument_exception", f"failed to parse missing value [{sf.missing}]")
        return value
    # _last: the sentinel that sorts last in the requested direction
    if sf.desc:
        return small if last else big
    return big if last else small


def _pick(values: list[Any], sf: SortField) -> Any:
    mode = sf.mode or ("max" if sf.desc else "min")
    if mode == "max":
        return max(values)
    if mode in ("sum", "avg", "median") and all(isinstance(v, int | float) for v in values):
        if mode == "sum":
            return sum(values)
        if mode == "avg":
            return sum(values) / len(values)
        ordered = sorted(values)
        return ordered[len(ordered) // 2]
    return min(values)


def sort_entry(doc: Doc, fields: list[SortField], score: float) -> tuple[tuple[Any, ...], list[Any]]:
    """(comparable key, ``sort`` values as ES reports them) for one document."""
    key: list[Any] = []
    shown: list[Any] = []
    for sf in fields:
        if sf.field in ("_doc", "_shard_doc"):
            key.append(-doc.ordinal if sf.desc else doc.ordinal)
            shown.append(doc.ordinal)
            continue
        if sf.field == "_score":
            key.append(-score if sf.desc else score)
            shown.append(score)
            continue
        values = field_values(doc, sf.field, sf.ftype)
        if sf.numeric:
            if values:
                raw = _pick([int(v) if isinstance(v, bool) else v for v in values], sf)
            else:
                raw = _missing_numeric(sf)
            key.append(-raw if sf.desc else raw)
            if sf.ftype in DATE_TYPES and sf.format and values:
                shown.append(format_millis(int(raw), nanos=sf.ftype == "date_nanos" or "nanos" in sf.format))
            else:
                shown.append(raw)
            continue
        # keyword-like (and ip, whose key is an int)
        if values:
            raw = _pick(values, sf)
            if sf.ftype == "ip":
                key.append((0, -raw if sf.desc else raw))
                addr = ipaddress.IPv6Address(raw)
                shown.append(str(addr.ipv4_mapped or addr))
            else:
                key.append((0, _Rev(raw) if sf.desc else raw))
                shown.append(raw)
        else:
            flag = 1 if sf.missing != "_first" else -1
            key.append((flag, 0 if sf.ftype == "ip" else (_Rev("") if sf.desc else "")))
            shown.append(None)
    return tuple(key), shown


def after_key(values: list[Any], fields: list[SortField]) -> tuple[Any, ...]:
    """The comparable key of a ``search_after`` array (as produced by :func:`sort_entry`)."""
    if not fields:
        raise QueryError(
            "illegal_argument_exception", "Sort must contain at least one field.", shard_level=True
        )
    if len(values) != len(fields):
        raise QueryError(
            "illegal_argument_exception",
            f"search_after has {len(values)} value(s) but sort has {len(fields)}.",
            shard_level=True,
        )
    key: list[Any] = []
    for value, sf in zip(values, fields, strict=True):
        try:
            if sf.field in ("_doc", "_shard_doc", "_score") or sf.numeric:
                if value is None:
                    number: Any = _missing_numeric(sf)
                elif sf.ftype in DATE_TYPES and isinstance(value, str) and not re.fullmatch(r"-?\d+", value):
                    number = parse_date_millis(value, sf.format)
                    if number is None:
                        raise ValueError(value)
                elif isinstance(value, bool):
                    number = int(value)
                elif isinstance(value, str):
                    number = float(value) if "." in value or "e" in value.lower() else int(value)
                else:
                    number = value
                if not isinstance(number, int | float):
                    raise ValueError(value)
                key.append(-number if sf.desc else number)
            elif sf.ftype == "ip":
                if value is None:
                    key.append((1 if sf.missing != "_first" else -1, 0))
                else:
                    ipk = ip_key(str(value))
                    if ipk is None:
                        raise ValueError(value)
                    key.append((0, -ipk if sf.desc else ipk))
            elif value is None:
                key.append((1 if sf.missing != "_first" else -1, _Rev("") if sf.desc else ""))
            else:
                text = normalise(value, "keyword")
                key.append((0, _Rev(text) if sf.desc else text))
        except (ValueError, TypeError) as exc:
            raise QueryError(
                "illegal_argument_exception",
                f"Failed to parse search_after value for field [{sf.field}].",
                shard_level=True,
            ) from exc
    return tuple(key)


# --------------------------------------------------------------------------------------------------
# _source filtering


def _compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(fnmatch.translate(p)) for p in patterns]


def source_filter(spec: Any, includes: list[str] | None = None, excludes: list[str] | None = None):
    """Return a function filtering a ``_source`` dict, or None for "no _source", or identity."""
    inc: list[str] = list(includes or [])
    exc: list[str] = list(excludes or [])
    if spec is False:
        return None
    if isinstance(spec, str):
        inc.append(spec)
    elif isinstance(spec, list):
        inc.extend(spec)
    elif isinstance(spec, dict):
        raw_inc = spec.get("includes", spec.get("include", []))
        raw_exc = spec.get("excludes", spec.get("exclude", []))
        inc.extend([raw_inc] if isinstance(raw_inc, str) else raw_inc)
        exc.extend([raw_exc] if isinstance(raw_exc, str) else raw_exc)
    if not inc and not exc:
        return lambda src: src
    inc_re, exc_re = _compile_patterns(inc), _compile_patterns(exc)
    inc_prefixes = [p.split("*", 1)[0] for p in inc]
    decisions: dict[str, tuple[bool, bool, bool]] = {}

    def decide(path: str) -> tuple[bool, bool, bool]:
        """(excluded, included, may hold included descendants), cached per path."""
        found = decisions.get(path)
        if found is None:
            excluded = any(r.match(path) for r in exc_re)
            included = not inc_re or any(r.match(path) for r in inc_re)
            deeper = not inc_re or any(
                pre.startswith(path + ".") or path.startswith(pre) or pre == "" for pre in inc_prefixes
            )
            found = decisions[path] = (excluded, included, deeper)
        return found

    def walk(obj: dict[str, Any], prefix: str, parent_included: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            path = prefix + key
            excluded, included, deeper = decide(path)
            if excluded:
                continue
            here = parent_included or included
            if isinstance(value, dict):
                if not (here or deeper):
                    continue
                sub = walk(value, path + ".", here)
                if sub or (here and not value):
                    out[key] = sub
            elif isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
                if not (here or deeper):
                    continue
                items = [walk(v, path + ".", here) if isinstance(v, dict) else v for v in value]
                items = [v for v in items if v != {} or here]
                if items:
                    out[key] = items
            elif here:
                out[key] = value
        return out

    return lambda src: walk(src, "", False)
