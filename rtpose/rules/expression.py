"""The trigger language: Python's expression grammar cut down to what a trigger needs, never ``eval``.

Protocol files are written by people and read by a process that drives an LED into an
animal's brain, so the language can do only what a trigger needs: numbers, feature
names, ``+ - * /``, unary minus, parentheses, ``abs(x)``, ``min(a, b, ...)``,
``max(a, b, ...)``, comparisons ``< <= > >= == !=`` (chainable, ``0.5 < d < 2``), and
``and``/``or``/``not``. There is no attribute access, no strings, and no other calls, so
``__import__('os')`` is a parse error, not a security review. Python's own parser
(``ast.parse(text, mode="eval")``) reads the grammar, precedence and chained comparisons;
only the node types above are accepted, and the tree is compiled by us, never run by
Python. Errors name the rule's own words and a 1-based column.

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

import ast
import keyword
import math
import re
from typing import Callable, Collection, Iterator, Mapping, Sequence

import attrs

from rtpose.config import did_you_mean
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


# --- tokens ---------------------------------------------------------------------------
#
# Python's own parser (``ast.parse(text, mode="eval")``) gives the grammar: precedence,
# chained comparisons, columns. Two small passes around it keep what Python does not
# give: this scan, which refuses any character outside the language and checks the
# order of tokens, so every error names the rule's own words and column ("expected ')'
# to close 'max(' at column 1, found '1'"), and ``_Converter``, which accepts only the
# whitelisted node types and checks types while it builds the tree below.

_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|\*\*|//|[<>+\-*/(),])"
)
_BINARY = frozenset(COMPARISONS + ("+", "-", "*", "/"))


@attrs.frozen
class Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    column: int


_CHARACTER_HINTS = {
    "=": " (write '==' to compare)",
    "&": " (write 'and')",
    "|": " (write 'or')",
    "!": " (write 'not', or '!=' to compare)",
    ".": " (a rule names the protocol's features; body parts such as male.thorax go under features:)",
}


def tokenize(text: str) -> list[Token]:
    """The rule's tokens with their 1-based columns, ending with an ``end`` token.

    Raises:
        ExpressionError: A character outside the language, or a rule over ``MAX_LENGTH``.
    """
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"rule is longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            hint = _CHARACTER_HINTS.get(char, "")
            raise ExpressionError(f"unexpected character {char!r}{hint}", position + 1)
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), position + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _check_order(tokens: list[Token], known_features: Collection[str] | None) -> None:
    """Each token may follow the one before it; parentheses match; nesting stays within ``MAX_NESTING``;
    with ``known_features``, every feature name is one of them.

    Raises:
        ExpressionError: At the first token out of place.
    """
    expect_operand = True
    opened: list[tuple[Token, Token | None, int]] = []  # "(", its function name, prefixes pending before it
    prefixes = level = 0  # unary operators and "not" waiting for their operand; all nesting
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else None
        following = tokens[i + 1] if token.kind != "end" else token
        if expect_operand:
            if token.kind == "number" or (token.kind == "name" and token.text not in RESERVED_WORDS):
                if following.text == "(" and following.kind == "op":
                    if token.kind == "name":
                        raise ExpressionError(f"unknown function '{token.text}' (only {', '.join(FUNCTIONS)})",
                                              token.column)
                if token.kind == "name" and known_features is not None and token.text not in known_features:
                    raise ExpressionError(f"unknown feature '{token.text}'{did_you_mean(token.text, known_features)}",
                                          token.column)
                expect_operand, level, prefixes = False, level - prefixes, 0
            elif token.text in FUNCTIONS and following.text == "(" and following.kind == "op":
                pass  # the "(" comes next
            elif token.text in ("-", "+") and token.kind == "op" or token.text == "not":
                if token.text == "not" and previous is not None and previous.text not in ("(", ",", "and", "or", "not"):
                    raise ExpressionError("'not' cannot stand here", token.column)
                prefixes, level = prefixes + 1, level + 1
            elif token.text == "(" and token.kind == "op":
                function = previous if previous is not None and previous.text in FUNCTIONS else None
                opened.append((token, function, prefixes))
                prefixes, level = 0, level + 1
            elif token.kind == "name":
                raise ExpressionError(f"'{token.text}' cannot stand here", token.column)
            else:  # "**" and "//" are two tokens of ours: the first is the one out of place
                found = f"'{token.text[0]}'" if token.text in ("**", "//") else _describe(token)
                raise ExpressionError(f"expected a number, a feature name or '(', found {found}", token.column)
            if level > MAX_NESTING:
                raise ExpressionError(f"nested deeper than {MAX_NESTING} levels", token.column)
            continue
        if token.kind == "op" and token.text == ")" and opened:
            _, _, pending = opened.pop()
            level -= 1 + pending
        elif token.kind == "op" and token.text == "," and opened and opened[-1][1] is not None:
            expect_operand = True
        elif token.kind == "op" and token.text in _BINARY or token.text in ("and", "or"):
            expect_operand = True
        elif token.text in ("**", "//"):
            raise ExpressionError(f"expected a number, a feature name or '(', found '{token.text[1]}'",
                                  token.column + 1)
        elif opened:
            paren, function, _ = opened[-1]
            context = (f"to close '{function.text}(' at column {function.column}" if function is not None
                       else f"to close the '(' at column {paren.column}")
            raise ExpressionError(f"expected ')' {context}, found {_describe(token)}", token.column)
        elif token.kind != "end":
            raise ExpressionError(f"unexpected {_describe(token)}", token.column)


def _python_text(text: str, tokens: list[Token]) -> str:
    """``text`` as Python reads it, column for column: our names that are Python keywords become
    placeholders of the same length (``_Converter`` reads names from the tokens), integers lose
    leading zeros Python refuses, and every kind of white space is a plain space."""
    chars = [" " if c.isspace() else c for c in text]
    for token in tokens:
        replacement = None
        if token.kind == "name" and keyword.iskeyword(token.text) and token.text not in LOGIC_WORDS:
            replacement = "_" * len(token.text)
        elif token.kind == "number" and token.text.isdigit() and len(token.text) > 1 and token.text[0] == "0":
            digits = token.text.lstrip("0") or "0"
            replacement = (digits + ".").ljust(len(token.text))
        if replacement is not None:
            chars[token.column - 1:token.column - 1 + len(token.text)] = replacement
    return "".join(chars)


class _Converter:
    """Python's tree of a rule -> ours, accepting only the whitelisted node types, checking types.

    Columns follow the rule's words: a leaf, ``not``, a unary sign and a call have their own;
    an operation takes its left operand's, so an error points inside parentheses.
    """

    def __init__(self, tokens: list[Token], indent: int, known_features: Collection[str] | None):
        self.by_column = {token.column: token for token in tokens}
        self.indent = indent  # leading spaces Python did not see
        self.known_features = known_features
        self.depth = 0

    def column(self, node: ast.expr) -> int:
        return node.col_offset + 1 + self.indent

    def convert(self, node: ast.expr) -> Node:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ExpressionError(f"unexpected {_describe(self.by_column.get(self.column(node)))}", self.column(node))
        return method(node)

    def _Constant(self, node: ast.Constant) -> Node:
        token = self.by_column[self.column(node)]
        return Number(float(token.text), token.column)

    def _Name(self, node: ast.Name) -> Node:
        token = self.by_column[self.column(node)]  # the rule's word, not Python's placeholder
        if token.text in RESERVED_WORDS:
            raise ExpressionError(f"'{token.text}' cannot stand here", token.column)
        if self.known_features is not None and token.text not in self.known_features:
            raise ExpressionError(f"unknown feature '{token.text}'{did_you_mean(token.text, self.known_features)}",
                                  token.column)
        return FeatureRef(token.text, token.column)

    def _UnaryOp(self, node: ast.UnaryOp) -> Node:
        column = self.column(node)
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"nested deeper than {MAX_NESTING} levels", column)
        operand = self.convert(node.operand)
        self.depth -= 1
        if isinstance(node.op, ast.Not):
            _require(operand, CONDITION, "'not' negates a condition")
            return Not(operand, column)
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        _require(operand, NUMBER, f"unary '{sign}' applies to a number")
        return Negate(operand, column) if sign == "-" else operand

    def _BinOp(self, node: ast.BinOp) -> Node:
        operator = _ARITHMETIC.get(type(node.op))
        left = self.convert(node.left)
        right = self.convert(node.right)
        if operator is None:  # the scan lets no other operator through
            raise ExpressionError("unexpected operator", left.column)
        return _arithmetic(operator, left, right)

    def _Compare(self, node: ast.Compare) -> Node:
        left = self.convert(node.left)
        comparisons: list[Node] = []
        for op, comparator in zip(node.ops, node.comparators):
            operator = _COMPARE.get(type(op))
            right = self.convert(comparator)
            if operator is None:
                raise ExpressionError("unexpected comparison", right.column)
            _require(left, NUMBER, f"'{operator}' compares numbers")
            _require(right, NUMBER, f"'{operator}' compares numbers")
            comparisons.append(Compare(operator, left, right, left.column))
            left = right
        if len(comparisons) == 1:
            return comparisons[0]
        return Logic("and", tuple(comparisons), comparisons[0].column)  # a < b < c

    def _BoolOp(self, node: ast.BoolOp) -> Node:
        word = "and" if isinstance(node.op, ast.And) else "or"
        operands = [self.convert(value) for value in node.values]
        for operand in operands:
            _require(operand, CONDITION, f"'{word}' joins conditions")
        return Logic(word, tuple(operands), operands[0].column)

    def _Call(self, node: ast.Call) -> Node:
        name = self.by_column.get(self.column(node.func))
        if not isinstance(node.func, ast.Name) or name is None or name.text not in FUNCTIONS or node.keywords:
            raise ExpressionError(f"unexpected {_describe(name)}", self.column(node))
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"nested deeper than {MAX_NESTING} levels", name.column)
        arguments = [self.convert(argument) for argument in node.args]
        self.depth -= 1
        for argument in arguments:
            _require(argument, NUMBER, f"'{name.text}' takes numbers")
        if name.text == "abs" and len(arguments) != 1:
            raise ExpressionError("'abs' takes exactly one number", name.column)
        if name.text in ("min", "max") and len(arguments) < 2:
            raise ExpressionError(f"'{name.text}' takes two or more numbers", name.column)
        return Call(name.text, tuple(arguments), name.column)


_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def _parse(text: str, known_features: Collection[str] | None) -> Node:
    """Our tree of a rule: scan, check the order of tokens, ``ast.parse``, convert.

    Raises:
        ExpressionError: The first problem, with its 1-based column.
    """
    tokens = tokenize(text)
    _check_order(tokens, known_features)
    python = _python_text(text, tokens)
    body = python.lstrip(" ")
    indent = len(python) - len(body)
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:  # the scan should have caught it; say what Python says
        raise ExpressionError(f"not a rule ({exc.msg})", (exc.offset or len(body) + 1) + indent) from None
    try:
        return _Converter(tokens, indent, known_features).convert(tree)
    except RecursionError:
        raise ExpressionError(f"nested deeper than {MAX_NESTING} levels", 1) from None


def _arithmetic(operator: str, left: Node, right: Node) -> Node:
    _require(left, NUMBER, f"'{operator}' works on numbers")
    _require(right, NUMBER, f"'{operator}' works on numbers")
    return Arithmetic(operator, left, right, left.column)


def _require(node: Node, kind: str, why: str) -> None:
    if node.kind == kind:
        return
    found = "a condition" if node.kind == CONDITION else "a number"
    raise ExpressionError(f"{why}, but this is {found}", node.column)


def _describe(token: Token | None) -> str:
    if token is None:
        return "expression"
    return "the end of the rule" if token.kind == "end" else f"'{token.text}'"


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
        tree = _parse(text, known_features)
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
