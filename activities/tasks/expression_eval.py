"""The checker and evaluator behind :func:`activities.tasks.expressions.compile_expression`.

A parsed expression's AST is checked and turned into nested closures in one pass; anything
outside the language is rejected with its column and the list of what is allowed.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

from activities.tasks.base import ExpressionError
from activities.tasks.expression_functions import (
    ALLOWED,
    FUNCTIONS,
    MAX_TEXT_LENGTH,
    check_size,
)

MAX_EXPONENT = 1000
"""Largest absolute exponent of ``**`` (``10 ** 10 ** 10`` would never finish)."""

MAX_RESULT_BITS = 64_000
"""Largest integer an expression may build with ``**`` or ``*`` (about 19,000 digits)."""

Evaluator = Callable[[Mapping[str, Any]], Any]


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"exponent {exponent} is larger than the allowed {MAX_EXPONENT}")
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base).bit_length() * exponent > MAX_RESULT_BITS
    ):
        raise ValueError(f"{base} ** {exponent} would be too large a number")
    return base**exponent


def _multiply(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if (
            isinstance(seq, str | list)
            and isinstance(count, int)
            and len(seq) * count > MAX_TEXT_LENGTH
        ):
            raise ValueError(f"result longer than {MAX_TEXT_LENGTH:,} items is not allowed")
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_RESULT_BITS
    ):
        raise ValueError("product would be too large a number")
    return left * right


def _modulo(left: Any, right: Any) -> Any:
    # On strings % is printf-style formatting, which can build huge strings ("%999999999s").
    if isinstance(left, str):
        raise TypeError("% works on numbers only; use concat() to build text")
    return left % right


def _add(left: Any, right: Any) -> Any:
    return check_size(left + right)


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: _add,
    ast.Sub: operator.sub,
    ast.Mult: _multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _modulo,
    ast.Pow: _power,
}

_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

_DESCRIPTIONS = {
    "Lambda": "lambda",
    "ListComp": "a comprehension",
    "SetComp": "a comprehension",
    "DictComp": "a comprehension",
    "GeneratorExp": "a generator expression",
    "NamedExpr": "assignment (:=)",
    "JoinedStr": "an f-string (use concat())",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
    "Starred": "* unpacking",
    "Set": "a set literal (use a list)",
    "BitAnd": "bitwise &",
    "BitOr": "bitwise |",
    "BitXor": "bitwise ^",
    "LShift": "<<",
    "RShift": ">>",
    "MatMult": "@",
    "Invert": "~",
}


class Compiler:
    """Turns a checked AST into nested closures (one pass: check and build)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def column(self, node: ast.AST) -> int:
        """1-based character column of ``node`` (ast offsets count UTF-8 bytes)."""
        offset = getattr(node, "col_offset", 0)
        return len(self.text.encode()[:offset].decode(errors="ignore")) + 1

    def error(self, node: ast.AST, what: str) -> ExpressionError:
        column = self.column(node)
        return ExpressionError(
            f"{what} at column {column} of expression {self.text!r}. {ALLOWED}",
            expression=self.text,
            column=column,
        )

    def guarded(self, node: ast.AST, func: Evaluator) -> Evaluator:
        """Report a runtime failure of ``func`` with the column of ``node``."""
        column = self.column(node)
        text = self.text

        def run(record: Mapping[str, Any]) -> Any:
            try:
                return func(record)
            except ExpressionError:
                raise
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise ExpressionError(
                    f"expression {text!r} failed at column {column}: {exc}",
                    expression=text,
                    column=column,
                ) from exc

        return run

    def compile(self, node: ast.AST) -> Evaluator:
        match node:
            case ast.Constant(value=value):
                if value is not None and not isinstance(value, bool | int | float | str):
                    raise self.error(node, f"the literal {value!r} is not allowed")
                return lambda _r: value
            case ast.Name(id="record"):
                return lambda r: dict(r)
            case ast.Name(id=name):
                if name.startswith("__"):
                    raise self.error(node, f"the name {name!r} is not allowed")
                return lambda r: r.get(name)
            case ast.List(elts=elts) | ast.Tuple(elts=elts):
                items = [self.compile(e) for e in elts]
                return lambda r: [item(r) for item in items]
            case ast.Dict(keys=keys, values=values):
                if any(k is None for k in keys):
                    raise self.error(node, "** unpacking in a dict is not allowed")
                pairs = [
                    (self.compile(k), self.compile(v))
                    for k, v in zip(keys, values, strict=True)
                    if k
                ]
                return lambda r: {k(r): v(r) for k, v in pairs}
            case ast.Attribute(value=value, attr=attr):
                if attr.startswith("_"):
                    raise self.error(node, f"the attribute {attr!r} is not allowed")
                return self._attribute(node, self.compile(value), attr)
            case ast.Subscript(value=value, slice=index):
                return self._subscript(node, self.compile(value), index)
            case ast.BinOp(left=left, op=op, right=right):
                if type(op) not in _BINARY:
                    raise self.error(node, f"the operator {_describe(op)} is not allowed")
                func = _BINARY[type(op)]
                lhs, rhs = self.compile(left), self.compile(right)

                def binop(r: Mapping[str, Any]) -> Any:
                    a, b = lhs(r), rhs(r)
                    return None if a is None or b is None else func(a, b)

                return self.guarded(node, binop)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                inner = self.compile(operand)
                return lambda r: not inner(r)
            case ast.UnaryOp(op=ast.USub() | ast.UAdd() as op, operand=operand):
                inner = self.compile(operand)
                sign = operator.neg if isinstance(op, ast.USub) else operator.pos

                def unary(r: Mapping[str, Any]) -> Any:
                    value = inner(r)
                    return None if value is None else sign(value)

                return self.guarded(node, unary)
            case ast.BoolOp(op=op, values=values):
                parts = [self.compile(v) for v in values]
                return _boolean(isinstance(op, ast.And), parts)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                return self._compare(node, left, ops, comparators)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                cond, then, other = self.compile(test), self.compile(body), self.compile(orelse)
                return lambda r: then(r) if cond(r) else other(r)
            case ast.Call():
                return self._call(node)
        raise self.error(node, f"{_describe(node)} is not allowed")

    def _attribute(self, node: ast.AST, target: Evaluator, attr: str) -> Evaluator:
        def attribute(r: Mapping[str, Any]) -> Any:
            value = target(r)
            if value is None:
                return None
            if not isinstance(value, Mapping):
                raise TypeError(
                    f".{attr} reads a key of an object, but the value is "
                    f"{type(value).__name__} {value!r:.40}"
                )
            return value.get(attr)

        return self.guarded(node, attribute)

    def _subscript(self, node: ast.AST, target: Evaluator, index: ast.expr) -> Evaluator:
        if isinstance(index, ast.Slice):
            bounds = [
                self.compile(b) if b else (lambda _r: None)
                for b in (index.lower, index.upper, index.step)
            ]

            def get_slice(r: Mapping[str, Any]) -> Any:
                value = target(r)
                if value is None:
                    return None
                if not isinstance(value, str | list):
                    raise TypeError(
                        f"only strings and lists can be sliced, not {type(value).__name__}"
                    )
                return value[slice(*(b(r) for b in bounds))]

            return self.guarded(node, get_slice)
        key_of = self.compile(index)

        def get_item(r: Mapping[str, Any]) -> Any:
            value, key = target(r), key_of(r)
            if value is None:
                return None
            if isinstance(value, Mapping):
                return value.get(key)
            if isinstance(value, str | list):
                if not isinstance(key, int) or isinstance(key, bool):
                    raise TypeError(
                        f"a {type(value).__name__} index must be an integer, got {key!r:.40}"
                    )
                return value[key] if -len(value) <= key < len(value) else None
            raise TypeError(f"cannot index {type(value).__name__} {value!r:.40}")

        return self.guarded(node, get_item)

    def _compare(
        self, node: ast.AST, left: ast.expr, ops: list[ast.cmpop], comparators: list[ast.expr]
    ) -> Evaluator:
        for op, right in zip(ops, comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) and not (
                isinstance(right, ast.Constant) and right.value in (None, True, False)
            ):
                raise self.error(node, "'is' only compares with None, True or False (use ==)")
        first = self.compile(left)
        steps = [
            (type(op), _COMPARE[type(op)], self.compile(c))
            for op, c in zip(ops, comparators, strict=True)
        ]

        def compare(r: Mapping[str, Any]) -> bool:
            a = first(r)
            for kind, func, get in steps:
                b = get(r)
                if issubclass(kind, _ORDERING) and (a is None or b is None):
                    return False
                if not func(a, b):
                    return False
                a = b
            return True

        return self.guarded(node, compare)

    def _call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name):
            raise self.error(
                node, "only the listed functions can be called, by name (e.g. lower(x))"
            )
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.error(node, f"unknown function {name!r}")
        if node.keywords:
            raise self.error(node, f"{name}() takes positional arguments only")
        func, least, most = FUNCTIONS[name]
        count = len(node.args)
        if count < least or (most is not None and count > most):
            wanted = f"{least}" if least == most else f"{least} to {most or 'any number of'}"
            raise self.error(node, f"{name}() takes {wanted} arguments, got {count}")
        args = [self.compile(a) for a in node.args]
        return self.guarded(node, lambda r: func(*(a(r) for a in args)))


def _boolean(is_and: bool, parts: list[Evaluator]) -> Evaluator:
    def evaluate(r: Mapping[str, Any]) -> Any:
        value: Any = None
        for part in parts:
            value = part(r)
            if bool(value) != is_and:
                return value
        return value

    return evaluate


def _describe(node: ast.AST) -> str:
    name = type(node).__name__
    return _DESCRIPTIONS.get(name, f"the syntax {name}")
