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
from collections.abc import Mapping
from typing import Any

from activities.tasks.base import ExpressionError
from activities.tasks.expression_eval import (
    MAX_EXPONENT,
    MAX_RESULT_BITS,
    Compiler,
    Evaluator,
)
from activities.tasks.expression_functions import (
    ALLOWED,
    FUNCTIONS,
    MAX_REGEX_INPUT,
    MAX_REGEX_PATTERN,
    MAX_TEXT_LENGTH,
    compile_regex,
    to_date,
    to_datetime,
    to_number,
    to_text,
)

__all__ = [
    "ALLOWED",
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_REGEX_INPUT",
    "MAX_REGEX_PATTERN",
    "MAX_RESULT_BITS",
    "MAX_TEXT_LENGTH",
    "CompiledExpression",
    "Evaluator",
    "compile_expression",
    "compile_regex",
    "evaluate",
    "to_date",
    "to_datetime",
    "to_number",
    "to_text",
]

MAX_EXPRESSION_LENGTH = 4000
"""Longest expression text accepted."""


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
        evaluator = Compiler(text.strip()).compile(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression {text[:80]!r}... is nested too deeply") from None
    return CompiledExpression(text, evaluator)


def evaluate(text: str, record: Mapping[str, Any]) -> Any:
    """Compile (cached) and evaluate ``text`` against ``record`` in one call."""
    return compile_expression(text).evaluate(record)
