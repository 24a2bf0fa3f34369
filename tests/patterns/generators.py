"""Hypothesis strategies for whole STIX pattern trees, with hostile values, and a map covering them."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal

from hypothesis import strategies as st

from ctibridge.patterns import FieldMap
from ctibridge.patterns.ast import (
    BooleanComparison,
    Comparison,
    ComparisonExpression,
    CompoundObservation,
    Connective,
    ObjectPath,
    Observation,
    ObservationExpression,
    Op,
    Pattern,
    Qualified,
    Repeats,
    StartStop,
    Timestamp,
    Within,
)
from tests.patterns.helpers import hostile_text, like_pattern

GENERATED_FIELDS = {
    "url:value": ["url.a", "url.b"],
    "file:name": ["file.name"],
    "domain-name:value": ["dns.name"],
    "ipv4-addr:value": ["ip.typed", "ip.text"],
    "network-traffic:dst_port": ["port"],
    "x-flag:on": ["flag"],
}
GENERATED_TYPES = {"ip": ["ip.typed"], "long": ["port"], "boolean": ["flag"], "date": ["@timestamp"]}
GENERATED_MAP = FieldMap.from_data(
    {"timestamp_field": "@timestamp", "types": GENERATED_TYPES, "fields": GENERATED_FIELDS}, name="generated"
)
KUSTO_GENERATED_MAP = FieldMap.from_data(
    {
        "timestamp_field": "Timestamp",
        "types": {"ip": ["Net.Typed"], "long": ["Net.Port"], "boolean": ["Flags.On"], "date": ["Timestamp"]},
        "fields": {
            "url:value": ["Web.UrlA", "Web.UrlB"],
            "file:name": ["Files.Name"],
            "domain-name:value": ["Dns.Query"],
            "ipv4-addr:value": ["Net.Typed", "Net.Text"],
            "network-traffic:dst_port": ["Net.Port"],
            "x-flag:on": ["Flags.On"],
        },
    },
    name="generated-kusto",
)

STRING_PATHS = [
    ObjectPath("url", ("value",)),
    ObjectPath("file", ("name",)),
    ObjectPath("domain-name", ("value",)),
]
IP_PATH = ObjectPath("ipv4-addr", ("value",))
PORT_PATH = ObjectPath("network-traffic", ("dst_port",))
FLAG_PATH = ObjectPath("x-flag", ("on",))

ip_host = st.ip_addresses(v=4).map(str)
ip_network = st.tuples(st.ip_addresses(v=4), st.sampled_from([8, 16, 24])).map(
    lambda pair: str(ipaddress.ip_network(f"{pair[0]}/{pair[1]}", strict=False))
)
ports = st.integers(min_value=0, max_value=65535)
timestamps = st.datetimes(
    min_value=__import__("datetime").datetime(2000, 1, 1),
    max_value=__import__("datetime").datetime(2030, 1, 1),
).map(lambda moment: Timestamp(moment.strftime("%Y-%m-%dT%H:%M:%S") + "Z"))


@st.composite
def string_comparisons(draw: st.DrawFn) -> Comparison:
    path = draw(st.sampled_from(STRING_PATHS))
    negated = draw(st.booleans())
    op = draw(st.sampled_from([Op.EQ, Op.EQ, Op.IN, Op.LIKE, Op.MATCHES, Op.GT, Op.LE, Op.EXISTS]))
    if op is Op.IN:
        return Comparison(
            path, op, tuple(draw(st.lists(hostile_text, min_size=1, max_size=3, unique=True))), negated
        )
    if op is Op.LIKE:
        return Comparison(path, op, "".join(draw(like_pattern)), negated)
    if op is Op.MATCHES:
        regex = draw(
            st.one_of(hostile_text.map(re.escape), st.sampled_from(["^a.*b$", "x[0-9]+", "(ab|cd)?e"]))
        )
        return Comparison(path, op, regex, negated)
    if op is Op.EXISTS:
        return Comparison(path, op, None, negated)
    return Comparison(path, op, draw(hostile_text), negated)


@st.composite
def ip_comparisons(draw: st.DrawFn) -> Comparison:
    negated = draw(st.booleans())
    op = draw(st.sampled_from([Op.EQ, Op.IN, Op.ISSUBSET, Op.ISSUPERSET]))
    if op is Op.IN:
        return Comparison(
            IP_PATH, op, tuple(draw(st.lists(ip_host, min_size=1, max_size=3, unique=True))), negated
        )
    if op is Op.ISSUBSET:
        return Comparison(IP_PATH, op, draw(ip_network), negated)
    if op is Op.ISSUPERSET:
        return Comparison(IP_PATH, op, draw(ip_host), negated)
    return Comparison(IP_PATH, op, draw(st.one_of(ip_host, ip_network)), negated)


@st.composite
def port_comparisons(draw: st.DrawFn) -> Comparison:
    op = draw(st.sampled_from([Op.EQ, Op.GT, Op.GE, Op.LT, Op.LE, Op.IN]))
    if op is Op.IN:
        return Comparison(PORT_PATH, op, tuple(draw(st.lists(ports, min_size=1, max_size=3, unique=True))))
    return Comparison(PORT_PATH, op, draw(ports), draw(st.booleans()))


comparisons = st.one_of(
    string_comparisons(),
    string_comparisons(),
    ip_comparisons(),
    port_comparisons(),
    st.booleans().map(lambda flag: Comparison(FLAG_PATH, Op.EQ, flag)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda number: Comparison(PORT_PATH, Op.LT, number)),
)


def _flat(connective: Connective, operands: list[ComparisonExpression]) -> BooleanComparison:
    flat: list[ComparisonExpression] = []
    for operand in operands:
        if isinstance(operand, BooleanComparison) and operand.connective is connective:
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    return BooleanComparison(connective, tuple(flat))


comparison_expressions: st.SearchStrategy[ComparisonExpression] = st.recursive(
    comparisons,
    lambda inner: st.tuples(
        st.sampled_from([Connective.AND, Connective.OR]), st.lists(inner, min_size=2, max_size=3)
    ).map(lambda pair: _flat(pair[0], pair[1])),
    max_leaves=4,
)
observations = comparison_expressions.map(Observation)


def _flat_observations(connective: Connective, operands: list[ObservationExpression]) -> CompoundObservation:
    flat: list[ObservationExpression] = []
    for operand in operands:
        if isinstance(operand, CompoundObservation) and operand.connective is connective:
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    return CompoundObservation(connective, tuple(flat))


@st.composite
def start_stop(draw: st.DrawFn) -> StartStop:
    first, second = draw(timestamps), draw(timestamps)
    if first.text == second.text:
        second = Timestamp("2031-01-01T00:00:00Z")
    return StartStop(*sorted((first, second), key=lambda stamp: stamp.text))


qualifiers = st.one_of(
    st.sampled_from([Decimal(1), Decimal(300), Decimal("1.5")]).map(Within),
    st.integers(min_value=1, max_value=3).map(Repeats),
    start_stop(),
)


def patterns(connectives: tuple[Connective, ...] = tuple(Connective)) -> st.SearchStrategy[Pattern]:
    expressions: st.SearchStrategy[ObservationExpression] = st.recursive(
        observations,
        lambda inner: st.one_of(
            st.tuples(st.sampled_from(connectives), st.lists(inner, min_size=2, max_size=3)).map(
                lambda pair: _flat_observations(pair[0], pair[1])
            ),
            st.tuples(inner, qualifiers).map(lambda pair: Qualified(*pair)),
        ),
        max_leaves=3,
    )
    return expressions.map(Pattern)
