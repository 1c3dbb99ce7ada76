"""The safe expression language used by transform and validate."""

from __future__ import annotations

import time
from typing import Any

import pytest

from activities.tasks import ExpressionError
from activities.tasks.expressions import FUNCTIONS, compile_expression, to_number

RECORD: dict[str, Any] = {
    "amount": 12.5,
    "qty": 3,
    "price": "$1,234.50",
    "name": "  Ada Lovelace ",
    "email": "ada@example.com",
    "tags": ["a", "b"],
    "customer": {"address": {"city": "London"}},
    "created": "2026-11-20T23:30:00-05:00",
    "note": None,
}


def ev(text: str, record: dict[str, Any] | None = None) -> Any:
    return compile_expression(text).evaluate(RECORD if record is None else record)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount * qty", 37.5),
        ("qty ** 2 + qty // 2 - qty % 2", 9),
        ("-amount", -12.5),
        ("amount > 10 and qty < 5", True),
        ("amount > 100 or 'fallback'", "fallback"),
        ("not note", True),
        ("1 < qty <= 3", True),
        ("1 < qty < 3", False),
        ("'b' in tags", True),
        ("'z' not in tags", True),
        ("note is None", True),
        ("qty is not None", True),
        ("'big' if amount > 10 else 'small'", "big"),
        ("customer.address.city", "London"),
        ("customer['address']['city']", "London"),
        ("customer.address.zip", None),
        ("tags[0]", "a"),
        ("tags[-1]", "b"),
        ("tags[9]", None),
        ("email[0:3]", "ada"),
        ("record['qty']", 3),
        ("[qty, (1, 2), {'k': qty}]", [3, [1, 2], {"k": 3}]),
        ("missing_field", None),
    ],
)
def test_syntax(text: str, expected: Any) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("missing + 1", None),
        ("missing > 1", False),
        ("missing <= 1", False),
        ("missing == None", True),
        ("1 in missing", False),
        ("missing.deeper", None),
        ("missing[0]", None),
        ("lower(missing)", None),
        ("coalesce(missing, note, 'default')", "default"),
    ],
)
def test_missing_values_behave_like_null(text: str, expected: Any) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len(tags)", 2),
        ("str(qty)", "3"),
        ("str(True)", "true"),
        ("int('42')", 42),
        ("float('2.5')", 2.5),
        ("bool(note)", False),
        ("round(2.567, 2)", 2.57),
        ("abs(-3)", 3),
        ("min(3, missing, 1)", 1),
        ("max([1, 7, 2])", 7),
        ("sum([1, 2, None, 3])", 6),
        ("lower(strip(name))", "ada lovelace"),
        ("upper('x')", "X"),
        ("replace(email, '@', ' at ')", "ada at example.com"),
        ("startswith(email, 'ada')", True),
        ("endswith(email, '.org')", False),
        ("contains(email, 'example')", True),
        ("contains(customer, 'address')", True),
        ("concat(name, '-', qty, missing)", "  Ada Lovelace -3"),
        ("split('a,b,c', ',')", ["a", "b", "c"]),
        ("join(tags, '|')", "a|b"),
        ("to_number(price)", 1234.5),
        ("to_number('(12)')", -12),
        ("to_number(' ')", None),
        ("to_date(created)", "2026-11-21"),
        ("to_date('2026-11-20')", "2026-11-20"),
        ("to_datetime('2026-11-20 08:00')", "2026-11-20T08:00:00+00:00"),
        ("to_datetime(0)", "1970-01-01T00:00:00+00:00"),
        ("regex_match(email, '[a-z]+@[a-z.]+')", True),
        ("regex_match(email, 'ada')", False),
        ("regex_search(email, '@([a-z]+)')", "example"),
        ("regex_search(email, 'xyz')", None),
    ],
)
def test_functions(text: str, expected: Any) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [("$1,234.50", 1234.5), ("-3", -3), ("€ 7", 7), ("+1e3", 1000.0), ("1_000", 1000), (5, 5)],
)
def test_to_number(text: Any, value: float) -> None:
    assert to_number(text) == value


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("().__class__", "attribute '__class__' is not allowed"),
        ("qty.__class__.__bases__", "is not allowed"),
        ("__builtins__", "name '__builtins__' is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in tags]", "comprehension is not allowed"),
        ("{x: 1 for x in tags}", "comprehension is not allowed"),
        ("(y := 3)", "assignment (:=) is not allowed"),
        ("f'{qty}'", "f-string"),
        ("email.upper()", "only the listed functions can be called"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("getattr(qty, 'real')", "unknown function 'getattr'"),
        ("len(tags, 2)", "len() takes 1 arguments, got 2"),
        ("round(x=1)", "positional arguments only"),
        ("qty is 3", "'is' only compares with None"),
        ("qty & 1", "bitwise & is not allowed"),
        ("{1, 2}", "set literal"),
        ("b'bytes'", "literal b'bytes' is not allowed"),
        ("qty +", "syntax error"),
        ("x = 1", "syntax error"),
        ("", "non-empty"),
    ],
)
def test_hostile_or_invalid_expressions_are_rejected_when_compiled(
    text: str, complaint: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert complaint in str(caught.value)
    if text:
        assert repr(text.strip()) in str(caught.value) or "syntax" in str(caught.value)


def test_rejection_says_where_and_what_is_allowed() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("qty + open('x')")
    message = str(caught.value)
    assert "column 7" in message
    assert "Allowed:" in message and "regex_match" in message
    assert caught.value.details["column"] == 7


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("10 ** 10 ** 10", "exponent 10000000000 is larger than the allowed 1000"),
        (" * ".join(["999 ** 999"] * 7), "too large"),
        ("(99 ** 999) ** 10", "too large"),
        ("'x' * 10 ** 9", "longer than"),
        ("tags * 10 ** 8", "longer than"),
        ("'%999999999s' % 1", "numbers only"),
        (
            "replace(replace('aaaa', 'a', 'aaaaaaaaaa'), 'a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' * 10000)",
            "longer than",
        ),
    ],
)
def test_resource_bombs_fail_fast(text: str, complaint: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=complaint):
        ev(text)
    assert time.monotonic() - started < 1


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(ExpressionError):
        compile_expression("-" * 3000 + "1")


@pytest.mark.parametrize(
    ("text", "record", "complaint"),
    [
        ("amount / qty", {"amount": 1, "qty": 0}, "division by zero"),
        ("amount > 1", {"amount": "abc"}, "'>' not supported"),
        ("qty.name", {"qty": 3}, ".name reads a key of an object"),
        ("lower(qty)", {"qty": 3}, "lower() needs a string"),
        ("to_number(x)", {"x": "twelve"}, "cannot read 'twelve'"),
        ("to_date(x)", {"x": "20/11/2026"}, "use ISO 8601"),
        ("regex_match(x, '(')", {"x": "a"}, "invalid regex"),
    ],
)
def test_runtime_failures_name_the_expression_and_column(
    text: str, record: dict[str, Any], complaint: str
) -> None:
    expression = compile_expression(text)
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(record)
    assert complaint in str(caught.value)
    assert repr(text) in str(caught.value)
    assert "column" in str(caught.value)


def test_compiled_expressions_are_cached() -> None:
    assert compile_expression("qty + 1") is compile_expression("qty + 1")


def test_documented_function_list_matches_implementation() -> None:
    import activities.tasks.expressions as module

    doc = module.__doc__ or ""
    for name in FUNCTIONS:
        assert f"``{name}(" in doc, f"{name} is not documented in the module docstring"
