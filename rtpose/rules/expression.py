"""The trigger language: a tiny grammar of its own, parsed once, never Python ``eval``.

Protocol files are written by people and read by a process that drives an LED into an
animal's brain, so the language can do only what a trigger needs: numbers, feature
names, ``+ - * /``, unary minus, parentheses, ``abs(x)``, ``min(a, b, ...)``,
``max(a, b, ...)``, comparisons ``< <= > >= == !=`` (chainable, ``0.5 < d < 2``), and
``and``/``or``/``not``. There is no attribute access, no strings, and no other calls, so
``__import__('os')`` is a parse error, not a security review.

Missing data. A feature is NaN when a node or an animal was not found. Conditions use
three-valued (Kleene) logic: a comparison with NaN on either side is *unknown*;
``not unknown`` is unknown; ``false and unknown`` is false; ``true or unknown`` is true;
anything else involving unknown stays unknown. A rule holds only when it comes out
*true*, so an unknown rule is false. In words: a rule never fires because of missing
data, and ``not (d < 2)`` does not become true when ``d`` is missing. Arithmetic with NaN
gives NaN, and so does division by zero (a trigger must not crash the loop).

Types are checked at parse time: comparisons take numbers, ``and``/``or``/``not`` take
conditions, and a rule must be a condition, so ``d and 2`` or ``d + (a < 1)`` are errors
with a column rather than surprises at run time.

Evaluation is a tree of closures built once per rule; each reads feature values from a
list by slot index. Truth values travel as floats: 1.0 true, 0.0 false, NaN unknown.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Callable, Collection, Iterator, Mapping, Sequence

import attrs

from rtpose.errors import RtposeError

NAN = float("nan")
FUNCTIONS = ("abs", "min", "max")
LOGIC_WORDS = ("and", "or", "not")
RESERVED_WORDS = frozenset(FUNCTIONS + LOGIC_WORDS)
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
MAX_LENGTH = 2000
MAX_NESTING = 64

Evaluator = Callable[[Sequence[float]], float]
"""A compiled expression: feature values by slot -> number, or 1.0/0.0/NaN for a condition."""


class ExpressionError(RtposeError):
    """A rule that does not parse or does not make sense; ``column`` is 1-based."""

    def __init__(self, message: str, column: int):
        self.message = message
        self.column = column
        super().__init__(f"{message} at column {column}")


# --- tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|[<>+\-*/(),])"
)


@attrs.frozen
class Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    column: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"rule is longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            hint = " (write '==' to compare)" if char == "=" else ""
            raise ExpressionError(f"unexpected character {char!r}{hint}", position + 1)
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), position + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# --- syntax tree ----------------------------------------------------------------------

NUMBER, CONDITION = "number", "condition"


@attrs.frozen
class Number:
    value: float
    column: int
    kind = NUMBER


@attrs.frozen
class FeatureRef:
    name: str
    column: int
    kind = NUMBER


@attrs.frozen
class Negate:
    operand: "Node"
    column: int
    kind = NUMBER


@attrs.frozen
class Arithmetic:
    operator: str  # + - * /
    left: "Node"
    right: "Node"
    column: int
    kind = NUMBER


@attrs.frozen
class Call:
    function: str  # one of FUNCTIONS
    arguments: tuple["Node", ...]
    column: int
    kind = NUMBER


@attrs.frozen
class Compare:
    operator: str  # one of COMPARISONS
    left: "Node"
    right: "Node"
    column: int
    kind = CONDITION


@attrs.frozen
class Logic:
    operator: str  # "and" or "or"
    operands: tuple["Node", ...]
    column: int
    kind = CONDITION


@attrs.frozen
class Not:
    operand: "Node"
    column: int
    kind = CONDITION


Node = Number | FeatureRef | Negate | Arithmetic | Call | Compare | Logic | Not


# --- parser ---------------------------------------------------------------------------


class _Parser:
    """Recursive descent, lowest precedence first: or, and, not, comparison, + -, * /, unary."""

    def __init__(self, text: str, known_features: Collection[str] | None):
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.known_features = known_features

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, *texts: str) -> bool:
        return self.token.kind == kind and (not texts or self.token.text in texts)

    def expect_op(self, text: str, context: str) -> Token:
        if not self.at("op", text):
            raise ExpressionError(f"expected {text!r} {context}, found {_describe(self.token)}", self.token.column)
        return self.advance()

    def parse(self) -> Node:
        node = self.parse_or()
        if self.token.kind != "end":
            raise ExpressionError(f"unexpected {_describe(self.token)}", self.token.column)
        return node

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"nested deeper than {MAX_NESTING} levels", self.token.column)

    def parse_or(self) -> Node:
        return self.parse_logic("or", self.parse_and)

    def parse_and(self) -> Node:
        return self.parse_logic("and", self.parse_not)

    def parse_logic(self, word: str, parse_operand: Callable[[], Node]) -> Node:
        first = parse_operand()
        operands = [first]
        while self.at("name", word):
            self.advance()
            operands.append(parse_operand())
        if len(operands) == 1:
            return first
        for operand in operands:
            _require(operand, CONDITION, f"'{word}' joins conditions")
        return Logic(word, tuple(operands), first.column)

    def parse_not(self) -> Node:
        if self.at("name", "not"):
            column = self.advance().column
            self.nested()
            operand = self.parse_not()
            self.depth -= 1
            _require(operand, CONDITION, "'not' negates a condition")
            return Not(operand, column)
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_sum()
        comparisons: list[Node] = []
        while self.at("op", *COMPARISONS):
            operator = self.advance().text
            right = self.parse_sum()
            _require(left, NUMBER, f"'{operator}' compares numbers")
            _require(right, NUMBER, f"'{operator}' compares numbers")
            comparisons.append(Compare(operator, left, right, left.column))
            left = right
        if not comparisons:
            return left
        if len(comparisons) == 1:
            return comparisons[0]
        return Logic("and", tuple(comparisons), comparisons[0].column)  # a < b < c

    def parse_sum(self) -> Node:
        node = self.parse_product()
        while self.at("op", "+", "-"):
            operator = self.advance().text
            right = self.parse_product()
            node = _arithmetic(operator, node, right)
        return node

    def parse_product(self) -> Node:
        node = self.parse_unary()
        while self.at("op", "*", "/"):
            operator = self.advance().text
            right = self.parse_unary()
            node = _arithmetic(operator, node, right)
        return node

    def parse_unary(self) -> Node:
        if self.at("op", "-", "+"):
            token = self.advance()
            self.nested()
            operand = self.parse_unary()
            self.depth -= 1
            _require(operand, NUMBER, f"unary '{token.text}' applies to a number")
            return Negate(operand, token.column) if token.text == "-" else operand
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.token
        if token.kind == "number":
            self.advance()
            return Number(float(token.text), token.column)
        if self.at("op", "("):
            self.advance()
            self.nested()
            node = self.parse_or()
            self.depth -= 1
            self.expect_op(")", f"to close the '(' at column {token.column}")
            return node
        if token.kind == "name":
            self.advance()
            if self.at("op", "("):
                return self.parse_call(token)
            if token.text in RESERVED_WORDS:
                raise ExpressionError(f"'{token.text}' cannot stand here", token.column)
            self.check_feature(token)
            return FeatureRef(token.text, token.column)
        raise ExpressionError(f"expected a number, a feature name or '(', found {_describe(token)}", token.column)

    def parse_call(self, name: Token) -> Node:
        if name.text not in FUNCTIONS:
            raise ExpressionError(f"unknown function '{name.text}' (only {', '.join(FUNCTIONS)})", name.column)
        self.expect_op("(", f"after '{name.text}'")
        self.nested()
        arguments = [self.parse_or()]
        while self.at("op", ","):
            self.advance()
            arguments.append(self.parse_or())
        self.depth -= 1
        self.expect_op(")", f"to close '{name.text}(' at column {name.column}")
        for argument in arguments:
            _require(argument, NUMBER, f"'{name.text}' takes numbers")
        if name.text == "abs" and len(arguments) != 1:
            raise ExpressionError("'abs' takes exactly one number", name.column)
        if name.text in ("min", "max") and len(arguments) < 2:
            raise ExpressionError(f"'{name.text}' takes two or more numbers", name.column)
        return Call(name.text, tuple(arguments), name.column)

    def check_feature(self, token: Token) -> None:
        if self.known_features is None or token.text in self.known_features:
            return
        raise ExpressionError(f"unknown feature '{token.text}'{did_you_mean(token.text, self.known_features)}",
                              token.column)


def _arithmetic(operator: str, left: Node, right: Node) -> Node:
    _require(left, NUMBER, f"'{operator}' works on numbers")
    _require(right, NUMBER, f"'{operator}' works on numbers")
    return Arithmetic(operator, left, right, left.column)


def _require(node: Node, kind: str, why: str) -> None:
    if node.kind == kind:
        return
    found = "a condition" if node.kind == CONDITION else "a number"
    raise ExpressionError(f"{why}, but this is {found}", node.column)


def _describe(token: Token) -> str:
    return "the end of the rule" if token.kind == "end" else f"'{token.text}'"


def did_you_mean(name: str, candidates: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else the list of choices, else nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if candidates and len(candidates) <= 20:
        return f" (known: {', '.join(sorted(candidates))})"
    return ""


# --- compiled form --------------------------------------------------------------------


@attrs.frozen
class Expression:
    """A parsed rule. ``features`` lists the feature names it reads."""

    text: str
    tree: Node
    features: frozenset[str]

    @classmethod
    def parse(cls, text: str, known_features: Collection[str] | None = None) -> "Expression":
        """Parse ``text``; with ``known_features``, names outside it are errors."""
        tree = _Parser(text, known_features).parse()
        return cls(text, tree, frozenset(_feature_names(tree)))

    @classmethod
    def parse_condition(cls, text: str, known_features: Collection[str] | None = None) -> "Expression":
        """Parse a rule: like ``parse``, but the whole must be a condition."""
        expression = cls.parse(text, known_features)
        if expression.tree.kind != CONDITION:
            raise ExpressionError("a rule must be a condition (a comparison, or conditions joined by "
                                  "and/or/not), but this is a number", expression.tree.column)
        return expression

    def compile(self, slots: Mapping[str, int]) -> Evaluator:
        """A closure reading feature values from a list at ``slots[name]``."""
        return _compile(self.tree, slots)


def holds(value: float) -> bool:
    """A condition's float value -> the rule's state (unknown is false)."""
    return value == 1.0


def _feature_names(node: Node) -> Iterator[str]:
    if isinstance(node, FeatureRef):
        yield node.name
    for child in _children(node):
        yield from _feature_names(child)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Negate, Not)):
        return (node.operand,)
    if isinstance(node, (Arithmetic, Compare)):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.arguments
    if isinstance(node, Logic):
        return node.operands
    return ()


def _compile(node: Node, slots: Mapping[str, int]) -> Evaluator:
    if isinstance(node, Number):
        constant = node.value
        return lambda values: constant
    if isinstance(node, FeatureRef):
        slot = slots[node.name]
        return lambda values: values[slot]
    if isinstance(node, Negate):
        operand = _compile(node.operand, slots)
        return lambda values: -operand(values)
    if isinstance(node, Arithmetic):
        return _compile_arithmetic(node.operator, _compile(node.left, slots), _compile(node.right, slots))
    if isinstance(node, Call):
        return _compile_call(node.function, [_compile(a, slots) for a in node.arguments])
    if isinstance(node, Compare):
        return _compile_compare(node.operator, _compile(node.left, slots), _compile(node.right, slots))
    if isinstance(node, Logic):
        return _compile_logic(node.operator, [_compile(o, slots) for o in node.operands])
    if isinstance(node, Not):
        operand = _compile(node.operand, slots)
        return lambda values: 1.0 - operand(values)  # NaN (unknown) stays NaN
    raise TypeError(f"not an expression node: {node!r}")


def _compile_arithmetic(operator: str, left: Evaluator, right: Evaluator) -> Evaluator:
    if operator == "+":
        return lambda values: left(values) + right(values)
    if operator == "-":
        return lambda values: left(values) - right(values)
    if operator == "*":
        return lambda values: left(values) * right(values)

    def divide(values: Sequence[float]) -> float:
        denominator = right(values)
        return left(values) / denominator if denominator != 0.0 else NAN

    return divide


def _compile_call(function: str, arguments: list[Evaluator]) -> Evaluator:
    if function == "abs":
        (operand,) = arguments
        return lambda values: abs(operand(values))
    pick = min if function == "min" else max

    def extreme(values: Sequence[float]) -> float:
        results = [argument(values) for argument in arguments]
        return NAN if any(math.isnan(r) for r in results) else pick(results)

    return extreme


def _compile_compare(operator: str, left: Evaluator, right: Evaluator) -> Evaluator:
    # Each returns 1.0/0.0, and NaN when either side is NaN (every IEEE test is False).
    if operator == "<":
        def compare(values):
            a, b = left(values), right(values)
            return 1.0 if a < b else (0.0 if a >= b else NAN)
    elif operator == "<=":
        def compare(values):
            a, b = left(values), right(values)
            return 1.0 if a <= b else (0.0 if a > b else NAN)
    elif operator == ">":
        def compare(values):
            a, b = left(values), right(values)
            return 1.0 if a > b else (0.0 if a <= b else NAN)
    elif operator == ">=":
        def compare(values):
            a, b = left(values), right(values)
            return 1.0 if a >= b else (0.0 if a < b else NAN)
    elif operator == "==":
        def compare(values):
            a, b = left(values), right(values)
            return 1.0 if a == b else (0.0 if a == a and b == b else NAN)
    elif operator == "!=":
        def compare(values):
            a, b = left(values), right(values)
            return 0.0 if a == b else (1.0 if a == a and b == b else NAN)
    else:
        raise ValueError(f"not a comparison: {operator}")
    return compare


def _compile_logic(operator: str, operands: list[Evaluator]) -> Evaluator:
    # Kleene logic: a deciding operand (false for and, true for or) wins over unknown.
    deciding, other = (0.0, 1.0) if operator == "and" else (1.0, 0.0)

    def combine(values: Sequence[float]) -> float:
        unknown = False
        for operand in operands:
            value = operand(values)
            if value == deciding:
                return deciding
            if value != other:
                unknown = True
        return NAN if unknown else other

    if len(operands) == 2:  # the common case, without the loop
        first, second = operands

        def combine_two(values: Sequence[float]) -> float:
            a = first(values)
            if a == deciding:
                return deciding
            b = second(values)
            if b == deciding:
                return deciding
            return other if (a == other and b == other) else NAN

        return combine_two
    return combine
