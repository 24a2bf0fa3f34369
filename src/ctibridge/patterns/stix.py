"""STIX 2.1 patterns: parse with the OASIS grammar into our AST, print back, and pick out IOC values.

Validation runs the OASIS checks (syntax, hash formats, duplicate qualifiers) on the single parse tree we
also build the AST from: the ANTLR parser is the cost of translation, so we do not parse twice. When a
check fails we ask `run_validator` itself for the messages, so users see exactly the OASIS wording.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import threading
from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from antlr4 import CommonTokenStream, InputStream, ParseTreeWalker, Token
from antlr4.atn.LexerATNSimulator import LexerATNSimulator
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.dfa.DFAState import DFAState
from antlr4.error.Errors import ParseCancellationException, RecognitionException
from antlr4.error.ErrorStrategy import BailErrorStrategy
from antlr4.PredictionContext import PredictionContextCache
from stix2patterns.exceptions import ParseException
from stix2patterns.helpers import brackets_check
from stix2patterns.v21 import object_validator
from stix2patterns.v21.grammars.STIXPatternLexer import STIXPatternLexer
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as P
from stix2patterns.v21.inspector import InspectionListener
from stix2patterns.v21.pattern import Pattern as AntlrPattern
from stix2patterns.v21.validator import DuplicateQualifierTypeError, ValidationListener
from stix2patterns.validator import run_validator

from ctibridge.memo import keep
from ctibridge.patterns.ast import (
    Atom,
    BooleanComparison,
    Comparison,
    ComparisonExpression,
    CompoundObservation,
    Connective,
    Index,
    ObjectPath,
    Observation,
    ObservationExpression,
    Op,
    PathStep,
    Pattern,
    Qualified,
    Repeats,
    Scalar,
    StartStop,
    Timestamp,
    Within,
    quote_string,
)
from ctibridge.patterns.errors import PatternError

__all__ = ["atomic_values", "is_atomic", "parse_stix", "quote_string", "to_stix"]

_T = TypeVar("_T")

MAX_PATTERN_LENGTH = 1_000_000

# STIX hash-algorithm vocabulary; patterns in the wild write `hashes.MD5`, `hashes.'SHA-1'` or `hashes.SHA1`.
_HASH_VOCABULARY = (
    "MD5 MD6 SHA-1 SHA-224 SHA-256 SHA-384 SHA-512 SHA3-224 SHA3-256 SHA3-384 SHA3-512 "  # noqa: SIM905
    "SSDEEP TLSH WHIRLPOOL RIPEMD-160".split()
)
_HASH_NAMES = {name.replace("-", "").upper(): name for name in _HASH_VOCABULARY}
_STIX_ESCAPE = re.compile(r"\\(['\\])")


def parse_stix(pattern: str) -> Pattern:
    """Parse and validate a STIX 2.1 pattern; raises PatternError with the OASIS validator's messages."""
    if not isinstance(pattern, str):
        raise PatternError("a STIX pattern must be a string")
    if not pattern.strip():
        raise PatternError("empty STIX pattern")  # run_validator itself crashes on ""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    return _parse_cached(pattern)


@lru_cache(maxsize=4096)
def _parse_cached(pattern: str) -> Pattern:
    built = _FAST.build(pattern, _validated_ast)
    if built is not None:
        return built
    # SLL could not parse it: stix2-patterns' own full-LL parse decides, with its own messages.
    try:
        tree = AntlrPattern(pattern).visit(_Tree())
    except ParseException as exc:
        raise PatternError(_validator_reason(pattern) or str(exc)) from None
    return _validated_ast(tree, pattern)


def _validated_ast(tree: P.PatternContext, pattern: str) -> Pattern:
    if not brackets_check(pattern) or not _passes_semantic_checks(tree, pattern):
        raise PatternError(_validator_reason(pattern) or "invalid STIX pattern")
    return Pattern(_Builder().visit(tree))


class _Tree:
    """A visitor that hands back the root parse tree of an `AntlrPattern`."""

    def visit(self, tree: P.PatternContext) -> P.PatternContext:
        return tree


class _LexerSimulator(LexerATNSimulator):
    """The ANTLR lexer simulator with its DFA loop written out: same DFA, same tokens, fewer calls.

    `execATN` is the runtime's own algorithm (`antlr4.atn.LexerATNSimulator.execATN`) with the edge
    lookup, `consume` and `captureSimState` inlined and the error state compared by identity (it is a
    singleton stored in the edge tables); lexing is about half of parsing a pattern in Python.
    """

    def execATN(self, input: InputStream, ds0: DFAState) -> int:
        prev = self.prevAccept
        if ds0.isAcceptState:
            self.captureSimState(prev, input, ds0)
        data, size = input.data, input._size
        index = input._index
        t = data[index] if index < size else Token.EOF
        s = ds0
        error = self.ERROR
        while True:
            edges = s.edges
            target = edges[t] if edges is not None and 0 <= t <= 127 else None
            if target is None:
                target = self.computeTargetState(input, s, t)
            if target is error:
                break
            if t != Token.EOF:
                if t == 10:
                    self.line += 1
                    self.column = 0
                else:
                    self.column += 1
                index = input._index = input._index + 1
            if target.isAcceptState:
                prev.index = index
                prev.line = self.line
                prev.column = self.column
                prev.dfaState = target
                if t == Token.EOF:
                    break
            t = data[index] if index < size else Token.EOF
            s = target
        return self.failOrAccept(prev, input, s.configs, t)


class _SllParser:
    """stix2-patterns' generated lexer and parser, built once per thread and reused for every pattern.

    The standard two-stage ANTLR strategy: SLL prediction (much cheaper than full LL) with a bail-out
    error strategy; a pattern SLL rejects returns None and is parsed again by stix2-patterns' own `Pattern`
    (full LL), so valid patterns get the same tree and invalid ones the same error as before. As in
    `Pattern`, the lexer has no error listeners. Trees are also remembered by token shape (see `build`):
    indicators mostly repeat a few shapes with different values, and rewriting a tree's tokens is far
    cheaper than the Python ANTLR runtime parsing it again.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        # Bounded; dict operations are atomic, so it is safe to share between threads.
        self._shapes: dict[tuple[int, ...], tuple[threading.Lock, P.PatternContext, list[Token]]] = {}

    def _parts(self) -> tuple[STIXPatternLexer, CommonTokenStream, P]:
        parts = getattr(self._local, "parts", None)
        if parts is None:
            lexer = STIXPatternLexer(InputStream(""))
            lexer._interp = _LexerSimulator(lexer, lexer.atn, lexer.decisionsToDFA, PredictionContextCache())
            lexer.removeErrorListeners()
            stream = CommonTokenStream(lexer)
            parser = P(stream)
            parser.removeErrorListeners()
            parser._errHandler = BailErrorStrategy()
            parser._interp.predictionMode = PredictionMode.SLL
            parts = self._local.parts = (lexer, stream, parser)
        return parts

    def parse(self, pattern: str) -> P.PatternContext | None:
        """The SLL parse tree of `pattern`, or None where SLL gives up; for tests, which compare it with
        OASIS' at once: a remembered tree changes with the next pattern of its shape."""
        return self.build(pattern, lambda tree, _: tree)

    def build(self, pattern: str, finish: Callable[[P.PatternContext, str], _T]) -> _T | None:
        """`finish(tree, pattern)` on the parse tree of `pattern`; None where SLL gives up.

        The parser's decisions depend on token types only (the grammar has no actions and only precedence
        predicates), so a pattern whose token types were parsed before has that parse's tree with its own
        token texts and positions: the remembered tree's tokens are rewritten in place and `finish` runs
        under the shape's lock (it must not keep the tree). Tokens come from `scan_tokens` where it can
        read the pattern, else from the ANTLR lexer. Only successful parses are remembered: errors always
        come from the parser.
        """
        scanned = scan_tokens(pattern)
        tokens = None
        if scanned is None:
            tokens = self._antlr_tokens(pattern)
            scanned = [(t.type, t.start, t.stop, t.text) for t in tokens]
        shape = tuple(token[0] for token in scanned)
        template = self._shapes.get(shape)
        if template is not None:
            lock, tree, template_tokens = template
            lines = _line_starts(pattern) if "\n" in pattern else None
            with lock:
                for token, (_, start, stop, text) in zip(template_tokens, scanned, strict=True):
                    token._text, token.start, token.stop = text, start, stop
                    if lines is None:
                        token.line, token.column = 1, start
                    else:
                        line = bisect_right(lines, start)
                        token.line, token.column = line, start - lines[line - 1]
                return finish(tree, pattern)
        if tokens is None:
            tokens = self._antlr_tokens(pattern)
        tree = self._sll_parse()
        if tree is None:
            return None
        if any(token.channel != Token.DEFAULT_CHANNEL for token in tokens):
            return finish(tree, pattern)
        entry = (threading.Lock(), tree, tokens)
        with entry[0]:
            result = finish(tree, pattern)
            keep(self._shapes, shape, entry, _SHAPES)
        return result

    def _antlr_tokens(self, pattern: str) -> list[Token]:
        lexer, stream, _ = self._parts()
        lexer.inputStream = InputStream(pattern)
        stream.setTokenSource(lexer)
        stream.fill()
        tokens: list[Token] = stream.tokens
        return tokens

    def _sll_parse(self) -> P.PatternContext | None:
        """Parses the tokens last read by `_antlr_tokens` on this thread."""
        _, stream, parser = self._parts()
        parser.setTokenStream(stream)
        try:
            tree: P.PatternContext = parser.pattern()
        except (ParseCancellationException, RecognitionException):
            return None
        return tree


_SHAPES = 2048


def _line_starts(pattern: str) -> list[int]:
    """Offsets where each line begins, for ANTLR's 1-based line and 0-based column of a token."""
    return [0, *(match.end() for match in _NEWLINE.finditer(pattern))]


_NEWLINE = re.compile("\n")

# The OASIS lexer's rules for the tokens indicators are made of, as one scanner. Where a pattern holds
# anything else (numbers other than plain integers, hex / binary literals, comments, other whitespace,
# characters outside the grammar) or a literal prefix is ambiguous, `scan_tokens` gives up and the ANTLR
# lexer reads it; tests check token for token that both agree wherever the scanner answers.
_SCANNER = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
    |(?P<timestamp>t'[0-9]{4}-(?:0[1-9]|1[012])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3])
        :[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?Z')
    |(?P<prefix>[thb]')
    |(?P<string>'(?:[^'\\]|\\['\\])*')
    |(?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    |(?P<int>(?:0|[1-9][0-9]*)(?![0-9.]))
    |(?P<punct>==|!=|<>|<=|>=|[=<>\[\]():,*]|\.(?![0-9]))""",
    re.VERBOSE,
)
_KEYWORDS = {
    word: getattr(STIXPatternLexer, word)
    for word in (
        *("AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET", "EXISTS", "LAST"),
        *("IN", "START", "STOP", "SECONDS", "WITHIN", "REPEATS", "TIMES"),
    )
} | {"true": STIXPatternLexer.BoolLiteral, "false": STIXPatternLexer.BoolLiteral}
_PUNCTUATION = {
    "=": STIXPatternLexer.EQ, "==": STIXPatternLexer.EQ, "!=": STIXPatternLexer.NEQ,
    "<>": STIXPatternLexer.NEQ, "<": STIXPatternLexer.LT, "<=": STIXPatternLexer.LE,
    ">": STIXPatternLexer.GT, ">=": STIXPatternLexer.GE, "[": STIXPatternLexer.LBRACK,
    "]": STIXPatternLexer.RBRACK, "(": STIXPatternLexer.LPAREN, ")": STIXPatternLexer.RPAREN,
    ":": STIXPatternLexer.COLON, ",": STIXPatternLexer.COMMA, "*": STIXPatternLexer.ASTERISK,
    ".": STIXPatternLexer.DOT,
}  # fmt: skip


def scan_tokens(pattern: str) -> list[tuple[int, int, int, str]] | None:
    """The OASIS lexer's tokens of `pattern` as (type, start, stop, text), ending with EOF; None if unsure.

    The Python ANTLR lexer costs more than parsing itself; this scanner covers what indicators are made
    of and leaves everything else to it.
    """
    tokens: list[tuple[int, int, int, str]] = []
    append = tokens.append
    position, size = 0, len(pattern)
    match_at = _SCANNER.match
    while position < size:
        match = match_at(pattern, position)
        if match is None:
            return None
        kind, end = match.lastgroup, match.end()
        text = match.group()
        if kind == "name":
            if "-" in text:
                append((STIXPatternLexer.IdentifierWithHyphen, position, end - 1, text))
            else:
                append(
                    (_KEYWORDS.get(text, STIXPatternLexer.IdentifierWithoutHyphen), position, end - 1, text)
                )
        elif kind == "string":
            append((STIXPatternLexer.StringLiteral, position, end - 1, text))
        elif kind == "punct":
            append((_PUNCTUATION[text], position, end - 1, text))
        elif kind == "int":
            append((STIXPatternLexer.IntPosLiteral, position, end - 1, text))
        elif kind == "timestamp":
            append((STIXPatternLexer.TimestampLiteral, position, end - 1, text))
        elif kind == "prefix":
            return None  # h'..', b'..' or a t'..' that is no timestamp: the ANTLR lexer decides
        position = end
    append((Token.EOF, size, size - 1, "<EOF>"))
    return tokens


_FAST = _SllParser()


def _passes_semantic_checks(tree: P.PatternContext, pattern: str) -> bool:
    """The non-syntax checks `run_validator` performs (hash formats, duplicate qualifiers), on our tree.

    Each walk is skipped when its check cannot fail: the hash check only looks at `hashes` paths, the
    qualifier check only at qualifiers (a keyword inside a string literal merely costs a walk).
    """
    if "hashes" in pattern:
        inspector = InspectionListener()
        ParseTreeWalker.DEFAULT.walk(inspector, tree)
        if object_validator.verify_object(inspector.pattern_data()):
            return False
    if "WITHIN" in pattern or "REPEATS" in pattern or "START" in pattern:
        try:
            ParseTreeWalker.DEFAULT.walk(ValidationListener(), tree)
        except DuplicateQualifierTypeError:
            return False
    return True


def _validator_reason(pattern: str) -> str:
    messages = run_validator(pattern, stix_version="2.1")
    return "; ".join(message.removeprefix("FAIL: ") for message in messages)


def _decode_string(token: str) -> str:
    """Strip quotes and decode STIX's only escapes, `\\\\` and `\\'`, exactly once."""
    return _STIX_ESCAPE.sub(r"\1", token[1:-1])


class _Builder:
    """Turns the ANTLR parse tree into our AST; dispatches on context class, no reflection per node."""

    def __init__(self) -> None:
        self._observation_builders: dict[type, Any] = {
            P.ObservationExpressionSimpleContext: self._simple,
            P.ObservationExpressionCompoundContext: self._compound,
            P.ObservationExpressionWithinContext: self._within,
            P.ObservationExpressionRepeatedContext: self._repeated,
            P.ObservationExpressionStartStopContext: self._start_stop,
        }
        self._prop_builders: dict[type, Any] = {
            P.PropTestEqualContext: self._equal,
            P.PropTestOrderContext: self._order,
            P.PropTestSetContext: self._set,
            P.PropTestLikeContext: self._like,
            P.PropTestRegexContext: self._regex,
            P.PropTestIsSubsetContext: self._subset,
            P.PropTestIsSupersetContext: self._superset,
            P.PropTestExistsContext: self._exists,
            P.PropTestParenContext: lambda ctx: self._comparison_expression(ctx.comparisonExpression()),
        }

    def visit(self, ctx: P.PatternContext) -> ObservationExpression:
        return self._observation_expressions(ctx.observationExpressions())

    # observation level
    def _observation_expressions(self, ctx: P.ObservationExpressionsContext) -> ObservationExpression:
        if ctx.FOLLOWEDBY() is not None:
            return _join_observations(
                Connective.FOLLOWEDBY,
                self._observation_expressions(ctx.observationExpressions(0)),
                self._observation_expressions(ctx.observationExpressions(1)),
            )
        return self._observation_or(ctx.observationExpressionOr())

    def _observation_or(self, ctx: P.ObservationExpressionOrContext) -> ObservationExpression:
        if ctx.OR() is not None:
            return _join_observations(
                Connective.OR,
                self._observation_or(ctx.observationExpressionOr(0)),
                self._observation_or(ctx.observationExpressionOr(1)),
            )
        return self._observation_and(ctx.observationExpressionAnd())

    def _observation_and(self, ctx: P.ObservationExpressionAndContext) -> ObservationExpression:
        if ctx.AND() is not None:
            return _join_observations(
                Connective.AND,
                self._observation_and(ctx.observationExpressionAnd(0)),
                self._observation_and(ctx.observationExpressionAnd(1)),
            )
        return self._observation(ctx.observationExpression())

    def _observation(self, ctx: P.ObservationExpressionContext) -> ObservationExpression:
        result: ObservationExpression = self._observation_builders[type(ctx)](ctx)
        return result

    def _simple(self, ctx: P.ObservationExpressionSimpleContext) -> Observation:
        return Observation(self._comparison_expression(ctx.comparisonExpression()))

    def _compound(self, ctx: P.ObservationExpressionCompoundContext) -> ObservationExpression:
        return self._observation_expressions(ctx.observationExpressions())

    def _within(self, ctx: P.ObservationExpressionWithinContext) -> Qualified:
        qualifier = ctx.withinQualifier()
        token = qualifier.IntPosLiteral() or qualifier.FloatPosLiteral()
        return Qualified(self._observation(ctx.observationExpression()), Within(Decimal(token.getText())))

    def _repeated(self, ctx: P.ObservationExpressionRepeatedContext) -> Qualified:
        times = int(ctx.repeatedQualifier().IntPosLiteral().getText())
        if times < 1:
            raise PatternError("REPEATS needs a count of at least 1")
        return Qualified(self._observation(ctx.observationExpression()), Repeats(times))

    def _start_stop(self, ctx: P.ObservationExpressionStartStopContext) -> Qualified:
        qualifier = ctx.startStopQualifier()
        start = _timestamp(qualifier.TimestampLiteral(0).getText())
        stop = _timestamp(qualifier.TimestampLiteral(1).getText())
        if _instant(stop) <= _instant(start):
            raise PatternError(f"STOP {stop.text} must be later than START {start.text}")
        return Qualified(self._observation(ctx.observationExpression()), StartStop(start, stop))

    # comparison level
    def _comparison_expression(self, ctx: P.ComparisonExpressionContext) -> ComparisonExpression:
        if ctx.OR() is not None:
            return _join_comparisons(
                Connective.OR,
                self._comparison_expression(ctx.comparisonExpression(0)),
                self._comparison_expression(ctx.comparisonExpression(1)),
            )
        return self._comparison_and(ctx.comparisonExpressionAnd())

    def _comparison_and(self, ctx: P.ComparisonExpressionAndContext) -> ComparisonExpression:
        if ctx.AND() is not None:
            return _join_comparisons(
                Connective.AND,
                self._comparison_and(ctx.comparisonExpressionAnd(0)),
                self._comparison_and(ctx.comparisonExpressionAnd(1)),
            )
        prop = ctx.propTest()
        result: ComparisonExpression = self._prop_builders[type(prop)](prop)
        return result

    def _equal(self, ctx: P.PropTestEqualContext) -> Comparison:
        negated = (ctx.NOT() is not None) != (ctx.NEQ() is not None)
        return Comparison(_object_path(ctx.objectPath()), Op.EQ, _primitive(ctx.primitiveLiteral()), negated)

    def _order(self, ctx: P.PropTestOrderContext) -> Comparison:
        if ctx.GT() is not None:
            op = Op.GT
        elif ctx.GE() is not None:
            op = Op.GE
        elif ctx.LT() is not None:
            op = Op.LT
        else:
            op = Op.LE
        value = _literal(ctx.orderableLiteral().start)
        return Comparison(_object_path(ctx.objectPath()), op, value, ctx.NOT() is not None)

    def _set(self, ctx: P.PropTestSetContext) -> Comparison:
        values = tuple(_primitive(item) for item in ctx.setLiteral().primitiveLiteral())
        return Comparison(_object_path(ctx.objectPath()), Op.IN, values, ctx.NOT() is not None)

    def _like(self, ctx: P.PropTestLikeContext) -> Comparison:
        return self._string_test(ctx, Op.LIKE)

    def _regex(self, ctx: P.PropTestRegexContext) -> Comparison:
        return self._string_test(ctx, Op.MATCHES)

    def _subset(self, ctx: P.PropTestIsSubsetContext) -> Comparison:
        return self._string_test(ctx, Op.ISSUBSET)

    def _superset(self, ctx: P.PropTestIsSupersetContext) -> Comparison:
        return self._string_test(ctx, Op.ISSUPERSET)

    def _string_test(self, ctx: Any, op: Op) -> Comparison:
        value = _decode_string(ctx.StringLiteral().getText())
        return Comparison(_object_path(ctx.objectPath()), op, value, ctx.NOT() is not None)

    def _exists(self, ctx: P.PropTestExistsContext) -> Comparison:
        return Comparison(_object_path(ctx.objectPath()), Op.EXISTS, None, ctx.NOT() is not None)


def _join_observations(
    connective: Connective, left: ObservationExpression, right: ObservationExpression
) -> CompoundObservation:
    operands: list[ObservationExpression] = []
    for side in (left, right):
        if isinstance(side, CompoundObservation) and side.connective is connective:
            operands.extend(side.operands)
        else:
            operands.append(side)
    return CompoundObservation(connective, tuple(operands))


def _join_comparisons(
    connective: Connective, left: ComparisonExpression, right: ComparisonExpression
) -> BooleanComparison:
    operands: list[ComparisonExpression] = []
    for side in (left, right):
        if isinstance(side, BooleanComparison) and side.connective is connective:
            operands.extend(side.operands)
        else:
            operands.append(side)
    return BooleanComparison(connective, tuple(operands))


def _object_path(ctx: P.ObjectPathContext) -> ObjectPath:
    first = ctx.firstPathComponent()
    token = first.start
    steps: list[PathStep] = [_decode_string(token.text) if token.type == P.StringLiteral else token.text]
    component = ctx.objectPathComponent()
    if component is not None:
        _collect_steps(component, steps)
    return ObjectPath(ctx.objectType().getText(), tuple(steps))


def _collect_steps(ctx: P.ObjectPathComponentContext, steps: list[PathStep]) -> None:
    if isinstance(ctx, P.PathStepContext):
        for child in ctx.objectPathComponent():
            _collect_steps(child, steps)
    elif isinstance(ctx, P.KeyPathStepContext):
        token = ctx.StringLiteral()
        key = (
            _decode_string(token.getText()) if token is not None else ctx.IdentifierWithoutHyphen().getText()
        )
        if steps and steps[-1] == "hashes":
            key = _HASH_NAMES.get(key.replace("-", "").upper(), key)
        steps.append(key)
    else:
        if ctx.ASTERISK() is not None:
            steps.append(Index(None))
        else:
            steps.append(Index(int((ctx.IntPosLiteral() or ctx.IntNegLiteral()).getText())))


def _primitive(ctx: P.PrimitiveLiteralContext) -> Scalar:
    return _literal(ctx.start)


def _literal(token: Any) -> Scalar:
    kind: int = token.type
    text: str = token.text
    if kind == P.StringLiteral:
        return _decode_string(text)
    if kind in (P.IntPosLiteral, P.IntNegLiteral):
        return int(text)
    if kind in (P.FloatPosLiteral, P.FloatNegLiteral):
        return float(text)
    if kind == P.BoolLiteral:
        return text == "true"
    if kind == P.TimestampLiteral:
        return _timestamp(text)
    if kind == P.HexLiteral:
        try:
            return bytes.fromhex(text[2:-1])
        except ValueError:
            raise PatternError(f"invalid hex literal {text}") from None
    if kind == P.BinaryLiteral:
        try:
            return base64.b64decode(text[2:-1], validate=True)
        except binascii.Error:
            raise PatternError(f"invalid base64 literal {text}") from None
    raise PatternError(f"unexpected literal {text!r}")


def _timestamp(token_text: str) -> Timestamp:
    text = token_text[2:-1]
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise PatternError(f"invalid timestamp {text!r}") from None
    return Timestamp(text)


def _instant(timestamp: Timestamp) -> datetime:
    return datetime.fromisoformat(timestamp.text)


# printing


def to_stix(pattern: Pattern | ObservationExpression) -> str:
    """Print an AST as STIX pattern text; `parse_stix(to_stix(p)) == p` for every parsed pattern."""
    expression = pattern.expression if isinstance(pattern, Pattern) else pattern
    return _print_observation(expression)


def _print_observation(node: ObservationExpression) -> str:
    if isinstance(node, Observation):
        return f"[{_print_comparison(node.expression)}]"
    if isinstance(node, Qualified):
        qualifier = node.qualifier
        if isinstance(qualifier, Within):
            suffix = f"WITHIN {qualifier.seconds} SECONDS"
        elif isinstance(qualifier, Repeats):
            suffix = f"REPEATS {qualifier.times} TIMES"
        else:
            suffix = f"START t'{qualifier.start.text}' STOP t'{qualifier.stop.text}'"
        return f"({_print_observation(node.expression)}) {suffix}"
    joined = f" {node.connective} ".join(_print_observation(operand) for operand in node.operands)
    return f"({joined})"


def _print_comparison(node: ComparisonExpression) -> str:
    if isinstance(node, BooleanComparison):
        return "(" + f" {node.connective} ".join(_print_comparison(op) for op in node.operands) + ")"
    path = _print_path(node.path)
    if node.op is Op.EXISTS:
        return ("NOT " if node.negated else "") + f"EXISTS {path}"
    if node.op is Op.EQ:
        operator = "!=" if node.negated else "="
    else:
        operator = ("NOT " if node.negated else "") + node.op.value
    if isinstance(node.value, tuple):
        value = "(" + ", ".join(_print_literal(item) for item in node.value) + ")"
    else:
        value = _print_literal(node.value)
    return f"{path} {operator} {value}"


def _print_path(path: ObjectPath) -> str:
    return path.key


def _print_literal(value: Scalar | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _print_float(value)
    if isinstance(value, bytes):
        return f"h'{value.hex()}'"
    if isinstance(value, Timestamp):
        return f"t'{value.text}'"
    raise TypeError(f"cannot print {value!r} as a STIX literal")


def _print_float(value: float) -> str:
    """STIX floats have no exponent: write the shortest round-tripping digits in positional form."""
    if not math.isfinite(value):
        raise ValueError(f"STIX has no literal for {value!r}")
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


# indicator values


def atomic_values(pattern: Pattern) -> list[Atom]:
    """Every value the pattern tests with a positive `=` or IN, in pattern order, IN lists expanded.

    Values are collected anywhere in the pattern; use `is_atomic` to know whether the pattern is nothing
    more than these values (so it can be shipped as indicator documents instead of a rule).
    """
    atoms: list[Atom] = []
    for comparison in _comparisons(pattern.expression):
        if comparison.negated or comparison.op not in (Op.EQ, Op.IN):
            continue
        values = comparison.value if isinstance(comparison.value, tuple) else (comparison.value,)
        atoms.extend(
            Atom(comparison.path.object_type, comparison.path.property_path, value)
            for value in values
            if value is not None
        )
    return atoms


def is_atomic(pattern: Pattern) -> bool:
    """True when the pattern only ORs positive `=`/IN tests: no AND, FOLLOWEDBY, qualifier or other op."""
    return _is_atomic_observation(pattern.expression)


def _is_atomic_observation(node: ObservationExpression) -> bool:
    if isinstance(node, Observation):
        return _is_atomic_comparison(node.expression)
    if isinstance(node, CompoundObservation):
        return node.connective is Connective.OR and all(_is_atomic_observation(op) for op in node.operands)
    return False


def _is_atomic_comparison(node: ComparisonExpression) -> bool:
    if isinstance(node, BooleanComparison):
        return node.connective is Connective.OR and all(_is_atomic_comparison(op) for op in node.operands)
    if node.negated or node.op not in (Op.EQ, Op.IN):
        return False
    return node.op is Op.EQ or bool(node.value)  # `IN ()` matches nothing: not an IOC list


def _comparisons(node: ObservationExpression | ComparisonExpression) -> list[Comparison]:
    if isinstance(node, Comparison):
        return [node]
    if isinstance(node, Observation):
        return _comparisons(node.expression)
    if isinstance(node, Qualified):
        return _comparisons(node.expression)
    found: list[Comparison] = []
    for operand in node.operands:
        found.extend(_comparisons(operand))
    return found
