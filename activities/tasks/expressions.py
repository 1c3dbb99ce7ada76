"""A small, safe expression language for the ``transform`` and ``validate`` tasks.

Expressions look like Python but are never handed to ``eval``: the text is parsed with
:mod:`ast` and only the constructs below are interpreted; anything else is rejected when the
expression is compiled, with the column and the list of what is allowed.

* Literals: numbers, strings, ``True``/``False``/``None``, lists, tuples (become lists), dicts.
* Names are record fields (``amount``); a field that is absent yields ``None``. ``record`` is
  the whole record. ``a.b`` and ``a["b"]`` read key ``b`` of the object ``a``; ``items[0]``
  and ``name[0:3]`` index and slice lists and strings (out of range yields ``None``).
* Arithmetic ``+ - * / // % **`` (exponents are bounded), unary ``- + not``, comparisons
  (chained too, ``in``, ``not in``, ``is None``, ``is not None``), ``and``/``or``, and
  ``x if cond else y``.
* Missing values propagate like SQL ``NULL``: arithmetic on ``None`` gives ``None``, ``<``,
  ``<=``, ``>``, ``>=`` against ``None`` are false, ``x in None`` is false, and the functions
  below return ``None`` for a ``None`` first argument unless stated otherwise.
* Functions (positional arguments only):

  - ``len(x)``: length of a string, list or object.
  - ``str(x)``, ``int(x)``, ``float(x)``: conversions; text goes through ``to_number``
    (``int`` truncates). ``str`` writes booleans as ``true``/``false``, lists and objects as
    JSON.
  - ``bool(x)``: truthiness (``bool(None)`` is false).
  - ``round(x[, digits])``, ``abs(x)``: as in Python.
  - ``min(a, b, ...)``, ``max(a, b, ...)``: of the arguments, or of one list argument;
    ``None`` values are ignored.
  - ``sum(list)``: total of a list, ignoring ``None``.
  - ``lower(s)``, ``upper(s)``: case conversion.
  - ``strip(s[, chars])``: remove surrounding whitespace (or the given characters).
  - ``replace(s, old, new)``: replace every occurrence.
  - ``startswith(s, prefix)``, ``endswith(s, suffix)``: prefix / suffix test.
  - ``contains(x, item)``: substring, list member or object key (false when ``x`` is None).
  - ``coalesce(a, b, ...)``: the first argument that is not ``None``.
  - ``concat(a, b, ...)``: the non-``None`` arguments as text, joined.
  - ``split(s[, sep[, maxsplit]])``: list of parts (split on whitespace by default).
  - ``join(items[, sep])``: the non-``None`` items as text, joined by ``sep``.
  - ``to_number(x)``: ``"$1,234.50"`` → ``1234.5``, ``"(12)"`` → ``-12``, ``"42"`` → ``42``;
    a blank string → ``None``.
  - ``to_date(x)``: ISO date or timestamp, or epoch seconds → ``"YYYY-MM-DD"`` (the UTC date
    of a timestamp with an offset).
  - ``to_datetime(x)``: the same inputs → ISO timestamp in UTC, e.g.
    ``"2026-11-20T08:00:00+00:00"``; a timestamp without offset is taken as UTC.
  - ``regex_match(s, pattern)``: true when the *whole* string matches.
  - ``regex_search(s, pattern)``: the first match anywhere (its first group when the
    pattern has groups), else ``None``.

Dates are returned as ISO strings so records stay JSON; normalised strings compare
correctly with ``<`` and ``>``. There is deliberately no "now" function: expressions are
deterministic, so a cached or retried task gives the same result.
"""

from __future__ import annotations

import ast
import functools
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from activities.tasks.base import ExpressionError

MAX_EXPRESSION_LENGTH = 4000
"""Longest expression text accepted."""

MAX_EXPONENT = 1000
"""Largest absolute exponent of ``**`` (``10 ** 10 ** 10`` would never finish)."""

MAX_RESULT_BITS = 64_000
"""Largest integer an expression may build with ``**`` or ``*`` (about 19,000 digits)."""

MAX_TEXT_LENGTH = 1_000_000
"""Longest string or list an expression may build (``"x" * 10 ** 9`` is refused)."""

MAX_REGEX_PATTERN = 1000
MAX_REGEX_INPUT = 100_000

Evaluator = Callable[[Mapping[str, Any]], Any]


# --- functions -------------------------------------------------------------------------


def _need_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}() needs a string, got {type(value).__name__} {value!r:.40}")
    return value


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list) and len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"result longer than {MAX_TEXT_LENGTH:,} items is not allowed")
    return value


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CURRENCY = "$€£¥₹"


def to_number(value: Any) -> int | float | None:
    """Parse a number written for people: ``"$1,234.50"``, ``"-3"``, ``"(12.00)"``, ``"1e3"``.

    Returns an ``int`` when the text has no decimal point or exponent, else a ``float``;
    ``None`` for ``None`` or a blank string.

    Raises:
        ValueError: The text is not a number.
        TypeError: The value is neither a number nor a string.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("to_number() does not accept a boolean")
    if isinstance(value, int | float):
        return value
    text = _need_str("to_number", value).strip()
    if not text:
        return None
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1].strip()
    sign = ""
    if text[:1] in "+-":
        sign, text = text[0], text[1:].lstrip()
    text = text.lstrip(_CURRENCY).strip()
    cleaned = sign + text.replace(",", "").replace("_", "").replace(" ", "")
    if not _NUMBER.fullmatch(cleaned):
        raise ValueError(f"to_number() cannot read {value!r} as a number")
    number: int | float = int(cleaned) if cleaned.lstrip("+-").isdigit() else float(cleaned)
    return -number if negative else number


def _parse_datetime(value: Any, name: str) -> datetime:
    if isinstance(value, bool):
        raise TypeError(f"{name}() does not accept a boolean")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError):
            raise ValueError(f"{name}() got {value!r}, out of range for epoch seconds") from None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = _need_str(name, value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{name}() cannot read {value!r}; use ISO 8601 such as '2026-11-20' or "
                "'2026-11-20T08:00:00Z'"
            ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_datetime(value: Any) -> str | None:
    """ISO date/timestamp or epoch seconds → ISO timestamp in UTC (naive means UTC)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _parse_datetime(value, "to_datetime").isoformat()


def to_date(value: Any) -> str | None:
    """ISO date/timestamp or epoch seconds → ``"YYYY-MM-DD"`` (UTC date of a timestamp)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _parse_datetime(value, "to_date").date().isoformat()


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a user pattern once, refusing very long ones.

    Raises:
        ValueError: The pattern is too long or invalid.
    """
    if len(pattern) > MAX_REGEX_PATTERN:
        raise ValueError(f"regex pattern longer than {MAX_REGEX_PATTERN} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


def _regex_subject(name: str, value: Any) -> str:
    text = _need_str(name, value)
    if len(text) > MAX_REGEX_INPUT:
        raise ValueError(f"{name}() input longer than {MAX_REGEX_INPUT:,} characters")
    return text


def _regex_match(value: Any, pattern: Any) -> bool | None:
    if value is None:
        return None
    subject = _regex_subject("regex_match", value)
    return compile_regex(_need_str("regex_match", pattern)).fullmatch(subject) is not None


def _regex_search(value: Any, pattern: Any) -> str | None:
    if value is None:
        return None
    subject = _regex_subject("regex_search", value)
    found = compile_regex(_need_str("regex_search", pattern)).search(subject)
    if found is None:
        return None
    return found.group(1) if found.re.groups else found.group(0)


def _present(args: Sequence[Any]) -> list[Any]:
    """The non-None values of the arguments, or of the one list argument."""
    items = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    return [item for item in items if item is not None]


def _min(*args: Any) -> Any:
    items = _present(args)
    return min(items) if items else None


def _max(*args: Any) -> Any:
    items = _present(args)
    return max(items) if items else None


def _sum(values: Any) -> Any:
    if values is None:
        return None
    if not isinstance(values, list):
        raise TypeError(f"sum() needs a list, got {type(values).__name__}")
    return sum(v for v in values if v is not None)


def _int(value: Any) -> int | None:
    number = to_number(value) if isinstance(value, str) else value
    return None if number is None else int(number)


def _float(value: Any) -> float | None:
    number = to_number(value) if isinstance(value, str) else value
    return None if number is None else float(number)


def to_text(value: Any) -> str | None:
    """Text of a value: booleans as ``true``/``false``, lists and objects as JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _round(value: Any, digits: Any = None) -> Any:
    if value is None:
        return None
    return round(value) if digits is None else round(value, digits)


def _replace(value: Any, old: Any, new: Any) -> str | None:
    if value is None:
        return None
    text, old_s, new_s = (_need_str("replace", v) for v in (value, old, new))
    # Check the size before building it: replace() can multiply a string's length.
    hits = text.count(old_s) if old_s else len(text) + 1
    if len(text) + hits * (len(new_s) - len(old_s)) > MAX_TEXT_LENGTH:
        raise ValueError(f"result longer than {MAX_TEXT_LENGTH:,} characters is not allowed")
    return text.replace(old_s, new_s)


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        return _need_str("contains", item) in container
    return item in container


def _concat(*args: Any) -> str:
    return _check_size("".join(to_text(a) or "" for a in args))  # type: ignore[no-any-return]


def _split(value: Any, sep: Any = None, maxsplit: Any = -1) -> list[str] | None:
    if value is None:
        return None
    return _need_str("split", value).split(sep, maxsplit)


def _join(items: Any, sep: Any = "") -> str | None:
    if items is None:
        return None
    if not isinstance(items, list):
        raise TypeError(f"join() needs a list, got {type(items).__name__}")
    parts = [to_text(item) or "" for item in items if item is not None]
    return _check_size(_need_str("join", sep).join(parts))  # type: ignore[no-any-return]


def _null_safe(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(first: Any, *rest: Any) -> Any:
        return None if first is None else func(first, *rest)

    return wrapper


def _text_method(name: str) -> Callable[..., Any]:
    def method(value: Any, *args: Any) -> Any:
        if value is None:
            return None
        return getattr(_need_str(name, value), name)(*(_need_str(name, a) for a in args))

    return method


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    # name: (implementation, min args, max args or None for any number)
    "len": (_null_safe(len), 1, 1),
    "str": (to_text, 1, 1),
    "int": (_int, 1, 1),
    "float": (_float, 1, 1),
    "bool": (bool, 1, 1),
    "round": (_round, 1, 2),
    "abs": (_null_safe(abs), 1, 1),
    "min": (_min, 1, None),
    "max": (_max, 1, None),
    "sum": (_sum, 1, 1),
    "lower": (_text_method("lower"), 1, 1),
    "upper": (_text_method("upper"), 1, 1),
    "strip": (_text_method("strip"), 1, 2),
    "replace": (_replace, 3, 3),
    "startswith": (_text_method("startswith"), 2, 2),
    "endswith": (_text_method("endswith"), 2, 2),
    "contains": (_contains, 2, 2),
    "coalesce": (lambda *args: next((a for a in args if a is not None), None), 1, None),
    "concat": (_concat, 1, None),
    "split": (_split, 1, 3),
    "join": (_join, 1, 2),
    "to_number": (to_number, 1, 1),
    "to_date": (to_date, 1, 1),
    "to_datetime": (to_datetime, 1, 1),
    "regex_match": (_regex_match, 2, 2),
    "regex_search": (_regex_search, 2, 2),
}
"""The functions an expression may call."""

ALLOWED = (
    "Allowed: field names, literals, + - * / // % **, comparisons (== != < <= > >= in, "
    "not in, is None), and/or/not, 'x if cond else y', a.b, a[i], a[i:j] and the functions "
    + ", ".join(sorted(FUNCTIONS))
    + "."
)


# --- operators ---------------------------------------------------------------------------


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
    return _check_size(left + right)


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


# --- compiler ----------------------------------------------------------------------------


class CompiledExpression:
    """A parsed, checked expression, ready to evaluate against many records.

    Attributes:
        text: The expression as written.
    """

    def __init__(self, text: str, evaluator: Evaluator) -> None:
        self.text = text
        self._evaluator = evaluator

    def evaluate(self, record: Mapping[str, Any]) -> Any:
        """Evaluate against one record (a mapping of field name to value).

        Raises:
            ExpressionError: The expression failed on this record (type mismatch, division
                by zero, bounds exceeded); the caller adds the record index.
        """
        try:
            return self._evaluator(record)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as exc:
            raise ExpressionError(
                f"expression {self.text!r} failed: {exc}", expression=self.text
            ) from exc

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"


class _Compiler:
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


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> CompiledExpression:
    """Parse and check an expression once; repeated texts come from a cache.

    Raises:
        ExpressionError: The text is not valid syntax or uses something not allowed; the
            message gives the column and what is allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"an expression must be a non-empty string, got {text!r:.80}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}",
            expression=text[:200],
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(
            f"syntax error at column {exc.offset or 0} of expression {text!r}: {exc.msg}",
            expression=text,
            column=exc.offset,
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"expression {text!r} cannot be parsed: {exc}") from None
    try:
        evaluator = _Compiler(text.strip()).compile(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression {text[:80]!r}... is nested too deeply") from None
    return CompiledExpression(text, evaluator)


def evaluate(text: str, record: Mapping[str, Any]) -> Any:
    """Compile (cached) and evaluate ``text`` against ``record`` in one call."""
    return compile_expression(text).evaluate(record)
