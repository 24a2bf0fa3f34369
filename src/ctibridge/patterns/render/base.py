"""Common shape of a renderer: lowered predicates in, one query in the target syntax out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from ctibridge.patterns.ast import Op, Pattern
from ctibridge.patterns.errors import Untranslatable
from ctibridge.patterns.fieldmap import FieldMap
from ctibridge.patterns.lowering import (
    All,
    AnyOf,
    Cidr,
    Compare,
    Equals,
    Exists,
    Lowered,
    Not,
    Predicate,
    Regex,
    Sequence,
    Wildcard,
    lower,
)

RANGE_OPERATORS = {Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}


class Renderer(ABC):
    """Subclasses spell each predicate; semantics were fixed by `lowering`, so they must not add any."""

    language: ClassVar[str]
    default_field_map: ClassVar[str] = "ecs"

    def __init__(self, field_map: FieldMap | None = None, *, index: str | None = None) -> None:
        self.field_map = field_map if field_map is not None else FieldMap.builtin(self.default_field_map)
        self.index = index
        self._dispatch: dict[type, Callable[[Any], Any]] = {
            Equals: self.equals,
            Compare: self.compare,
            Wildcard: self.wildcard,
            Regex: self.regex,
            Cidr: self.cidr,
            Exists: self.exists,
            Not: self.negate,
            All: self.conjunction,
            AnyOf: self.disjunction,
        }

    def render(self, pattern: Pattern) -> Any:
        return self.render_lowered(lower(pattern, self.field_map))

    def render_lowered(self, lowered: Lowered) -> Any:
        if isinstance(lowered, Sequence):
            return self.sequence(lowered)
        return self.query(self.predicate(lowered))

    def predicate(self, predicate: Predicate) -> Any:
        return self._dispatch[type(predicate)](predicate)

    def sequence(self, sequence: Sequence) -> Any:
        raise Untranslatable(f"{sequence.reason}; {self.language} queries match single events")

    @abstractmethod
    def query(self, condition: Any) -> Any:
        """Wrap a rendered condition into a complete query."""

    @abstractmethod
    def equals(self, node: Equals) -> Any: ...

    @abstractmethod
    def compare(self, node: Compare) -> Any: ...

    @abstractmethod
    def wildcard(self, node: Wildcard) -> Any: ...

    @abstractmethod
    def regex(self, node: Regex) -> Any: ...

    @abstractmethod
    def cidr(self, node: Cidr) -> Any: ...

    @abstractmethod
    def exists(self, node: Exists) -> Any: ...

    @abstractmethod
    def negate(self, node: Not) -> Any: ...

    @abstractmethod
    def conjunction(self, node: All) -> Any: ...

    @abstractmethod
    def disjunction(self, node: AnyOf) -> Any: ...


class TextRenderer(Renderer):
    """Infix text languages: parenthesise composite operands so no precedence rule is ever relied on."""

    and_word: ClassVar[str]
    or_word: ClassVar[str]

    def operand(self, predicate: Predicate) -> str:
        text: str = self.predicate(predicate)
        return f"({text})" if isinstance(predicate, All | AnyOf) else text

    def conjunction(self, node: All) -> str:
        return f" {self.and_word} ".join(self.operand(operand) for operand in node.operands)

    def disjunction(self, node: AnyOf) -> str:
        parts: list[str] = []
        for operand in node.operands:
            text = self.operand(operand)
            if text not in parts:  # e.g. one Kusto column shared by several tables
                parts.append(text)
        return f" {self.or_word} ".join(parts)

    def query(self, condition: Any) -> str:
        return str(condition)
