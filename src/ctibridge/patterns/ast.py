"""Typed, immutable STIX 2.1 pattern tree.

The OASIS parser's ANTLR tree is tied to grammar rule shapes and keeps STIX escapes in string tokens;
renderers need decoded values and the AND / OR / FOLLOWEDBY structure, so `stix.parse_stix` builds this.
Frozen dataclasses make parsed patterns safe to cache and share between threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED_WORDS = frozenset(
    "AND OR NOT FOLLOWEDBY LIKE MATCHES ISSUPERSET ISSUBSET EXISTS LAST IN START STOP SECONDS "  # noqa: SIM905
    "true false WITHIN REPEATS TIMES".split()
)


def quote_string(value: str) -> str:
    """A STIX string literal: escape `\\` then `'`, wrap in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A `t'...'` literal, kept as the RFC 3339 text every query language accepts."""

    text: str


Scalar = str | int | float | bool | bytes | Timestamp


@dataclass(frozen=True, slots=True)
class Index:
    """A list step in an object path; `position` None is `[*]`."""

    position: int | None


PathStep = str | Index


@dataclass(frozen=True, slots=True)
class ObjectPath:
    object_type: str
    steps: tuple[PathStep, ...]
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self._stix_text())

    def _stix_text(self) -> str:
        """The path in STIX syntax (`file:hashes.'SHA-256'`): field-map key and error-message form."""
        text = self.object_type + ":"
        for position, step in enumerate(self.steps):
            if isinstance(step, Index):
                text += "[*]" if step.position is None else f"[{step.position}]"
                continue
            key = step if _PLAIN_KEY.match(step) and step not in _RESERVED_WORDS else quote_string(step)
            text += key if position == 0 else "." + key
        return text

    @property
    def property_path(self) -> str:
        """Readable dotted path without STIX quoting (`hashes.SHA-256`, `to_refs[*].value`)."""
        parts: list[str] = []
        for step in self.steps:
            if isinstance(step, Index):
                parts.append("[*]" if step.position is None else f"[{step.position}]")
            else:
                parts.append(("." if parts else "") + step)
        return "".join(parts)


class Op(StrEnum):
    EQ = "="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    IN = "IN"
    LIKE = "LIKE"
    MATCHES = "MATCHES"
    ISSUBSET = "ISSUBSET"
    ISSUPERSET = "ISSUPERSET"
    EXISTS = "EXISTS"


class Connective(StrEnum):
    AND = "AND"
    OR = "OR"
    FOLLOWEDBY = "FOLLOWEDBY"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One property test; `!=` is stored as a negated `=` so renderers handle one form of negation.

    `value` is a tuple for IN and None for EXISTS.
    """

    path: ObjectPath
    op: Op
    value: Scalar | tuple[Scalar, ...] | None
    negated: bool = False


@dataclass(frozen=True, slots=True)
class BooleanComparison:
    """Comparisons joined by AND or OR inside one observation (nested same operators are flattened)."""

    connective: Connective
    operands: tuple[ComparisonExpression, ...]


ComparisonExpression = Comparison | BooleanComparison


@dataclass(frozen=True, slots=True)
class Observation:
    """`[ ... ]`: the comparisons hold on one observed-data instance."""

    expression: ComparisonExpression


@dataclass(frozen=True, slots=True)
class Within:
    seconds: Decimal


@dataclass(frozen=True, slots=True)
class Repeats:
    times: int


@dataclass(frozen=True, slots=True)
class StartStop:
    """Observations must fall in [start, stop): the OASIS matcher excludes the stop instant."""

    start: Timestamp
    stop: Timestamp


Qualifier = Within | Repeats | StartStop


@dataclass(frozen=True, slots=True)
class Qualified:
    expression: ObservationExpression
    qualifier: Qualifier


@dataclass(frozen=True, slots=True)
class CompoundObservation:
    """Observation expressions joined by AND, OR or FOLLOWEDBY (flattened, order kept)."""

    connective: Connective
    operands: tuple[ObservationExpression, ...]


ObservationExpression = Observation | Qualified | CompoundObservation


@dataclass(frozen=True, slots=True)
class Pattern:
    expression: ObservationExpression


@dataclass(frozen=True, slots=True)
class Atom:
    """An observable value a pattern tests for equality, e.g. ('file', 'hashes.SHA-256', '<hex>')."""

    type: str
    path: str
    value: Scalar
