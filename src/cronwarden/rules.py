"""Metadata rules: ``records_processed == 0``, ``errors > 0 and not_done == true``.

Grammar (a tiny recursive-descent parser, no ``eval``)::

    rule    := or
    or      := and ("or" and)*
    and     := atom ("and" atom)*
    atom    := "(" or ")" | FIELD OP LITERAL
    OP      := == | != | < | <= | > | >=
    LITERAL := number | 'string' | "string" | true | false

A rule is tested against the top-level fields of a ping's JSON object. A field
the ping did not send never matches, and neither does a comparison between
values of different types (a string is never "less than" a number).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Union

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![A-Za-z_])
      | (?P<str>'[^']*'|"[^"]*")
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.-]*)
    )""",
    re.VERBOSE,
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class RuleError(ValueError):
    """A rule that does not parse; ``col`` is the 0-based offset in the rule text."""

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.col = col


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: str
    value: Union[bool, int, float, str]

    def matches(self, data: dict[str, Any]) -> bool:
        if self.field not in data:
            return False
        actual = data[self.field]
        if not _same_kind(actual, self.value):
            return False
        try:
            return bool(_OPS[self.op](actual, self.value))
        except TypeError:
            return False


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    parts: tuple["Node", ...]

    def matches(self, data: dict[str, Any]) -> bool:
        if self.op == "and":
            return all(p.matches(data) for p in self.parts)
        return any(p.matches(data) for p in self.parts)


Node = Union[Compare, BoolOp]


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    node: Node

    def matches(self, data: dict[str, Any]) -> bool:
        return self.node.matches(data)


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _tokenize(text: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            col = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise RuleError(f"unexpected character {text[col]!r} in rule {text!r}", col)
        kind = match.lastgroup
        assert kind is not None
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "num":
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "str":
            value = raw[1:-1]
        else:
            value = raw
        tokens.append((kind, value, start))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def fail(self, expected: str) -> RuleError:
        tok = self.peek()
        if tok is None:
            return RuleError(f"rule {self.text!r} ends early: expected {expected}", len(self.text))
        return RuleError(f"expected {expected} in rule {self.text!r}, found {tok[1]!r}", tok[2])

    def parse(self) -> Node:
        if not self.tokens:
            raise RuleError("empty rule", 0)
        node = self.parse_or()
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end of the rule")
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while (tok := self.peek()) and tok[0] == "word" and tok[1] == "or":
            self.i += 1
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def parse_and(self) -> Node:
        parts = [self.parse_atom()]
        while (tok := self.peek()) and tok[0] == "word" and tok[1] == "and":
            self.i += 1
            parts.append(self.parse_atom())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def parse_atom(self) -> Node:
        tok = self.peek()
        if tok and tok[0] == "paren" and tok[1] == "(":
            self.i += 1
            node = self.parse_or()
            tok = self.peek()
            if not tok or tok[1] != ")":
                raise self.fail("')'")
            self.i += 1
            return node
        if not tok or tok[0] != "word" or tok[1] in ("and", "or", "true", "false"):
            raise self.fail("a field name")
        field = tok[1]
        self.i += 1
        tok = self.peek()
        if not tok or tok[0] != "op":
            raise self.fail("a comparison (==, !=, <, <=, >, >=)")
        op = tok[1]
        self.i += 1
        tok = self.peek()
        if tok and tok[0] in ("num", "str"):
            value: Any = tok[1]
        elif tok and tok[0] == "word" and tok[1] in ("true", "false"):
            value = tok[1] == "true"
        else:
            raise self.fail("a number, a quoted string, true or false")
        self.i += 1
        return Compare(field, op, value)


def parse_rule(text: str) -> Rule:
    """Parse one rule; raises :class:`RuleError` with the column of the problem."""
    if not isinstance(text, str):
        raise RuleError("a rule must be a string", 0)
    return Rule(text, _Parser(text).parse())
