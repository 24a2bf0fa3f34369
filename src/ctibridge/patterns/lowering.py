"""STIX semantics, decided once for every language: AST + field map -> predicates over one event.

Renderers only spell what this module decides:
- a comparison on a path mapped to several fields holds when any field holds it (OR);
- a negated comparison (`!=`, `NOT LIKE`, ...) needs the property to exist, as in the OASIS matcher:
  `exists(f) AND NOT test(f)` per field;
- values are coerced to the field type (ip, long, date, ...) or rejected, and field transforms applied;
- CIDR values and ISSUBSET on ip fields become CIDR tests, on keyword IP fields whole-octet prefixes;
- observations joined by OR stay one event predicate; FOLLOWEDBY and REPEATS become a `Sequence`
  (only EQL renders it); observation AND correlates separate unordered events and is rejected;
- WITHIN on a single-event expression always holds; START/STOP is a time range on every event.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from ctibridge.patterns.ast import (
    BooleanComparison,
    Comparison,
    ComparisonExpression,
    Connective,
    ObjectPath,
    Observation,
    ObservationExpression,
    Op,
    Pattern,
    Qualified,
    Repeats,
    Scalar,
    StartStop,
    Timestamp,
    Within,
)
from ctibridge.patterns.errors import PatternError, Untranslatable
from ctibridge.patterns.fieldmap import FieldMap, TargetField
from ctibridge.patterns.regex import ANY_CHARS, WildcardPart, parse_like, re2_regex

__all__ = [
    "All",
    "AnyOf",
    "Cidr",
    "Compare",
    "Equals",
    "Exists",
    "Lowered",
    "Not",
    "Predicate",
    "Regex",
    "Sequence",
    "Value",
    "Wildcard",
    "lower",
]

Value = str | int | float | bool | Timestamp
MAX_SEQUENCE_STEPS = 100  # REPEATS is expanded into sequence steps; ES caps sequence size

FOLLOWEDBY_REASON = (
    "FOLLOWEDBY needs an ordered sequence of separate events, which only EQL sequences express"
)
REPEATS_REASON = "REPEATS needs several separate events, which only EQL sequences express"
OBSERVATION_AND_REASON = (
    "observation-level AND correlates separate events in any order, which no single query expresses; "
    "translate each observation as its own query"
)


@dataclass(frozen=True, slots=True)
class Equals:
    """The field holds one of `values` (one value: equality, several: IN)."""

    field: TargetField
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    field: TargetField
    op: Op  # GT, GE, LT or LE
    value: Value


@dataclass(frozen=True, slots=True)
class Wildcard:
    """Whole-value match where parts are literals, ANY_CHARS (`%`) or ONE_CHAR (`_`)."""

    field: TargetField
    parts: tuple[WildcardPart, ...]


@dataclass(frozen=True, slots=True)
class Regex:
    """A PCRE with search semantics (STIX MATCHES); renderers convert it with `regex`."""

    field: TargetField
    pattern: str


@dataclass(frozen=True, slots=True)
class Cidr:
    field: TargetField
    network: str


@dataclass(frozen=True, slots=True)
class Exists:
    field: TargetField


@dataclass(frozen=True, slots=True)
class Not:
    operand: Predicate


@dataclass(frozen=True, slots=True)
class All:
    operands: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    operands: tuple[Predicate, ...]


Predicate = Equals | Compare | Wildcard | Regex | Cidr | Exists | Not | All | AnyOf


@dataclass(frozen=True, slots=True)
class Sequence:
    """Events matching `steps` in this order, all within `maxspan` seconds when given."""

    steps: tuple[Predicate, ...]
    maxspan: Decimal | None
    reason: str  # why a single-event language cannot express it


Lowered = Predicate | Sequence


def all_of(predicates: Iterable[Predicate]) -> Predicate:
    flat: list[Predicate] = []
    for predicate in predicates:
        for item in predicate.operands if isinstance(predicate, All) else (predicate,):
            if item not in flat:
                flat.append(item)
    return flat[0] if len(flat) == 1 else All(tuple(flat))


def any_of(predicates: Iterable[Predicate]) -> Predicate:
    flat: list[Predicate] = []
    for predicate in predicates:
        for item in predicate.operands if isinstance(predicate, AnyOf) else (predicate,):
            if item not in flat:
                flat.append(item)
    return flat[0] if len(flat) == 1 else AnyOf(tuple(flat))


@lru_cache(maxsize=4096)
def lower(pattern: Pattern, field_map: FieldMap) -> Lowered:
    """Cached: one indicator is commonly translated for several targets sharing a field map."""
    return _Lowering(field_map).observation(pattern.expression)


class _Lowering:
    def __init__(self, field_map: FieldMap) -> None:
        self._map = field_map

    # observation level
    def observation(self, node: ObservationExpression) -> Lowered:
        if isinstance(node, Observation):
            return self.comparison_expression(node.expression)
        if isinstance(node, Qualified):
            return self._qualified(node)
        if node.connective is Connective.AND:
            raise Untranslatable(OBSERVATION_AND_REASON)
        parts = [self.observation(operand) for operand in node.operands]
        if node.connective is Connective.OR:
            if any(isinstance(part, Sequence) for part in parts):
                raise Untranslatable("OR between event sequences has no single-query equivalent")
            return any_of(part for part in parts if not isinstance(part, Sequence))
        steps: list[Predicate] = []
        reason = FOLLOWEDBY_REASON
        for part in parts:
            if isinstance(part, Sequence):
                if part.maxspan is not None:
                    raise Untranslatable("WITHIN on part of a FOLLOWEDBY chain has no EQL equivalent")
                steps.extend(part.steps)
            else:
                steps.append(part)
        return _sequence(steps, None, reason)

    def _qualified(self, node: Qualified) -> Lowered:
        inner = self.observation(node.expression)
        qualifier = node.qualifier
        if isinstance(qualifier, Within):
            if not isinstance(inner, Sequence):
                return inner  # one event is always within any time span of itself
            span = qualifier.seconds if inner.maxspan is None else min(inner.maxspan, qualifier.seconds)
            return Sequence(inner.steps, span, inner.reason)
        if isinstance(qualifier, Repeats):
            if isinstance(inner, Sequence):
                raise Untranslatable(
                    "REPEATS of a sequence lets repetitions interleave; no query expresses it"
                )
            if qualifier.times == 1:
                return inner
            return _sequence([inner] * qualifier.times, None, REPEATS_REASON)
        return self._time_window(inner, qualifier)

    def _time_window(self, inner: Lowered, qualifier: StartStop) -> Lowered:
        timestamp = self._map.timestamp_field
        if timestamp is None:
            raise Untranslatable(f"the {self._map.name} field map names no timestamp field for START/STOP")
        window = (Compare(timestamp, Op.GE, qualifier.start), Compare(timestamp, Op.LT, qualifier.stop))
        if isinstance(inner, Sequence):
            return Sequence(
                tuple(all_of((step, *window)) for step in inner.steps), inner.maxspan, inner.reason
            )
        return all_of((inner, *window))

    # comparison level
    def comparison_expression(self, node: ComparisonExpression) -> Predicate:
        if isinstance(node, BooleanComparison):
            parts = [self.comparison_expression(operand) for operand in node.operands]
            return all_of(parts) if node.connective is Connective.AND else any_of(parts)
        return self._comparison(node)

    def _comparison(self, comparison: Comparison) -> Predicate:
        fields = self._map.fields_for(comparison.path)
        if comparison.op is Op.EXISTS:
            exists = any_of(Exists(field) for field in fields)
            return Not(exists) if comparison.negated else exists
        tests = [(field, self._field_test(field, comparison)) for field in fields]
        if not comparison.negated:
            return any_of(test for _, test in tests)
        return any_of(all_of((Exists(field), Not(test))) for field, test in tests)

    def _field_test(self, field: TargetField, comparison: Comparison) -> Predicate:
        op, value = comparison.op, comparison.value
        if value is None:
            raise PatternError(f"{op} needs a value")
        if op in (Op.EQ, Op.IN):
            values = value if isinstance(value, tuple) else (value,)
            if not values:
                raise Untranslatable("IN () matches nothing")
            return self._equality(field, values, comparison.path)
        if isinstance(value, tuple):
            raise PatternError(f"{op} needs a single value")
        if op in (Op.GT, Op.GE, Op.LT, Op.LE):
            if field.transform == "basename":
                raise Untranslatable(
                    f"{field.name} holds full paths; a {op} comparison on names is not exact"
                )
            if field.type == "ip":
                return Compare(field, op, _ip_host(value, field))
            return Compare(field, op, _coerce(field, value))
        if not isinstance(value, str):
            raise PatternError(f"{op} needs a string literal")
        if op is Op.LIKE:
            return self._like(field, value, comparison.path)
        if op is Op.MATCHES:
            return self._regex(field, value)
        network = _network(value, op)
        if op is Op.ISSUBSET:
            return self._network_test(field, network)
        if network.prefixlen != network.max_prefixlen:
            raise Untranslatable(f"ISSUPERSET '{value}': event fields hold single addresses, never a network")
        return self._network_test(field, network)

    def _equality(self, field: TargetField, values: SequenceOf[Scalar], path: ObjectPath) -> Predicate:
        if field.type == "ip" or (field.type == "keyword" and _holds_ip(path)):
            return self._ip_equality(field, values)
        if field.type != "keyword":
            return Equals(field, _unique(_coerce(field, value) for value in values))
        strings = [_transform_value(field, _coerce(field, value)) for value in values]
        if field.transform == "hive_aliases":
            strings = [variant for text in strings for variant in _hive_variants(str(text))]
        equals = Equals(field, _unique(strings))
        if field.transform != "basename":
            return equals
        suffixes = [
            Wildcard(field, (ANY_CHARS, separator + str(text)))
            for text in equals.values
            for separator in ("\\", "/")
        ]
        return any_of((equals, *suffixes))

    def _ip_equality(self, field: TargetField, values: SequenceOf[Scalar]) -> Predicate:
        hosts: list[Value] = []
        networks: list[Predicate] = []
        for value in values:
            if field.type == "keyword" and isinstance(value, str) and "/" not in value:
                hosts.append(value)  # keyword fields: compare the text as written
                continue
            network = _network(value, "=", field)
            if network.prefixlen == network.max_prefixlen:
                hosts.append(value.split("/")[0] if isinstance(value, str) else str(value))
            else:
                networks.append(self._network_test(field, network))
        tests: list[Predicate] = [Equals(field, _unique(hosts))] if hosts else []
        return any_of((*tests, *networks))

    def _network_test(
        self, field: TargetField, network: ipaddress.IPv4Network | ipaddress.IPv6Network
    ) -> Predicate:
        if network.prefixlen == network.max_prefixlen:
            return Equals(field, (str(network.network_address),))
        if field.type == "ip":
            return Cidr(field, str(network))
        if (
            field.type == "keyword"
            and network.version == 4
            and network.prefixlen % 8 == 0
            and network.prefixlen
        ):
            octets = str(network.network_address).split(".")[: network.prefixlen // 8]
            return Wildcard(field, (".".join(octets) + ".", ANY_CHARS))
        raise Untranslatable(
            f"{network} cannot be matched on {field.type} field {field.name}: "
            "only IPv4 prefixes of whole octets (/8, /16, /24) can be written as a text prefix"
        )

    def _like(self, field: TargetField, pattern: str, path: ObjectPath) -> Predicate:
        if field.type != "keyword":
            raise Untranslatable(f"LIKE cannot be applied to {field.type} field {field.name}")
        parts = parse_like(pattern)
        if all(isinstance(part, str) for part in parts):
            return self._equality(field, (pattern,), path)
        if field.transform == "basename":
            raise Untranslatable(f"{field.name} holds full paths; a LIKE on names cannot be made exact there")
        parts = tuple(_transform_text(field, part) if isinstance(part, str) else part for part in parts)
        if field.transform == "hive_aliases":
            return any_of(Wildcard(field, variant) for variant in _hive_like_variants(pattern))
        return Wildcard(field, parts)

    def _regex(self, field: TargetField, pattern: str) -> Predicate:
        if field.type != "keyword":
            raise Untranslatable(f"MATCHES cannot be applied to {field.type} field {field.name}")
        if field.transform == "basename":
            raise Untranslatable(
                f"{field.name} holds full paths; MATCHES on names cannot be made exact there"
            )
        re2_regex(pattern)  # raises PatternError for an invalid regex, whatever the target
        return Regex(field, pattern)


def _sequence(steps: list[Predicate], maxspan: Decimal | None, reason: str) -> Sequence:
    if len(steps) > MAX_SEQUENCE_STEPS:
        raise Untranslatable(f"a sequence of {len(steps)} events exceeds the {MAX_SEQUENCE_STEPS}-step limit")
    return Sequence(tuple(steps), maxspan, reason)


def _unique(values: Iterable[Value]) -> tuple[Value, ...]:
    seen: list[Value] = []
    for value in values:
        if not any(type(value) is type(other) and value == other for other in seen):
            seen.append(value)
    return tuple(seen)


_IP_PATHS = frozenset(("network-traffic:src_ref.value", "network-traffic:dst_ref.value"))


def _holds_ip(path: ObjectPath) -> bool:
    return path.object_type in ("ipv4-addr", "ipv6-addr") or path.key in _IP_PATHS


def _network(
    value: Scalar, op: str, field: TargetField | None = None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        if not isinstance(value, str):
            raise ValueError
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        where = f" for ip field {field.name}" if field else ""
        raise Untranslatable(f"{op} needs an IP address or CIDR{where}, got {value!r}") from None


def _ip_host(value: Scalar, field: TargetField) -> str:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
    raise Untranslatable(f"{value!r} is not an IP address and cannot be compared with ip field {field.name}")


_INTEGER = re.compile(r"[+-]?\d+\Z")


def _coerce(field: TargetField, value: Scalar) -> Value:
    """Convert a STIX literal to the field's type, or explain why the comparison cannot be exact."""
    if isinstance(value, bytes):
        raise Untranslatable(f"binary/hex literals cannot be compared with {field.type} field {field.name}")
    kind = field.type
    if kind == "keyword":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Timestamp):
            return value.text
        return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if kind == "long":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.match(value):
            return int(value)
    elif kind == "double":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    elif kind == "date":
        if isinstance(value, Timestamp):
            return value
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
                return Timestamp(value)
            except ValueError:
                pass
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
    elif kind == "ip":
        return _ip_host(value, field)
    raise Untranslatable(f"{value!r} cannot be compared with {kind} field {field.name}")


_HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKEY_USERS": "HKU",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKEY_CURRENT_CONFIG": "HKCC",
}
_HIVE_FULL_NAMES = {short: full for full, short in _HIVES.items()}


def _transform_value(field: TargetField, value: Value) -> Value:
    return _transform_text(field, value) if isinstance(value, str) else value


def _transform_text(field: TargetField, value: str) -> str:
    if field.transform == "lowercase":
        return value.lower()
    if field.transform == "uppercase":
        return value.upper()
    if field.transform == "mac_dashes":
        return value.replace(":", "-").upper()
    return value


def _hive_like_variants(pattern: str) -> list[tuple[WildcardPart, ...]]:
    """LIKE twin of `_hive_variants`. The hive is read from the raw pattern because full hive names
    contain `_`, a LIKE wildcard; the alias is inserted as a literal (it needs no wildcard)."""
    head, separator, rest = pattern.partition("\\")
    alias = _HIVES.get(head.upper()) or _HIVE_FULL_NAMES.get(head.upper()) if separator else None
    original = parse_like(pattern)
    if not alias:
        return [original]
    rest_parts = parse_like(rest)
    if rest_parts and isinstance(rest_parts[0], str):
        return [original, (alias + separator + rest_parts[0], *rest_parts[1:])]
    return [original, (alias + separator, *rest_parts)]


def _hive_variants(text: str) -> list[str]:
    """The key as written plus the other spelling of its hive (`HKEY_LOCAL_MACHINE\\x` <-> `HKLM\\x`)."""
    head, separator, rest = text.partition("\\")
    if not separator:
        return [text]
    upper = head.upper()
    alias = _HIVES.get(upper) or _HIVE_FULL_NAMES.get(upper)
    return [text, alias + separator + rest] if alias else [text]
