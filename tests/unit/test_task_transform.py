"""The transform handler: steps, shorthand params and error reporting."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from activities.tasks import (
    ExpressionError,
    HandlerOutput,
    TaskConfigError,
    TaskContext,
    TransformHandler,
)

Ctx = Callable[..., TaskContext]

ORDERS: list[dict[str, Any]] = [
    {
        "id": 1,
        "customer": "ada",
        "amount": "$1,200.00",
        "status": "paid",
        "day": "2026-11-20T10:00:00Z",
    },
    {"id": 2, "customer": "bob", "amount": "$15.50", "status": "refunded", "day": "2026-11-20"},
    {"id": 3, "customer": "ada", "amount": "$80", "status": "paid", "day": "2026-11-21"},
    {"id": 3, "customer": "ada", "amount": "$80", "status": "paid", "day": "2026-11-21"},
    {"id": 4, "customer": "cy", "amount": None, "status": "paid", "day": None},
]


async def transform(ctx: TaskContext, **params: Any) -> HandlerOutput:
    handler = TransformHandler()
    handler.check_params(params)
    result = await handler.run(params, ctx)
    assert isinstance(result, HandlerOutput)
    return result


async def test_steps_apply_in_order(task_ctx: Ctx) -> None:
    original = copy.deepcopy(ORDERS)
    result = await transform(
        task_ctx(),
        records=ORDERS,
        steps=[
            {"dedupe": ["id"]},
            {"cast": {"amount": "float", "day": "date"}},
            {"filter": "status == 'paid' and amount is not None"},
            {"derive": {"cents": "int(amount * 100)", "big": "cents >= 100000"}},
            {"rename": {"customer": "who"}},
            {"drop": ["status"]},
            {"sort": [{"field": "amount", "desc": True}]},
            {"select": ["id", "who", "amount", "cents", "big", "day"]},
            {"limit": 5},
        ],
    )
    assert result.value == {
        "records": [
            {
                "id": 1,
                "who": "ada",
                "amount": 1200.0,
                "cents": 120000,
                "big": True,
                "day": "2026-11-20",
            },
            {
                "id": 3,
                "who": "ada",
                "amount": 80.0,
                "cents": 8000,
                "big": False,
                "day": "2026-11-21",
            },
        ],
        "count": 2,
    }
    assert (result.records_in, result.records_out) == (5, 2)
    assert original == ORDERS, "the input records must not be modified"


async def test_shorthand_runs_select_rename_filter_derive_in_that_order(task_ctx: Ctx) -> None:
    result = await transform(
        task_ctx(),
        records=ORDERS,
        # Written in another order on purpose: filter sees the renamed field, derive runs last.
        derive={"label": "concat(who, '#', id)"},
        filter="who == 'ada'",
        rename={"customer": "who"},
        select=["id", "customer"],
    )
    assert result.value["records"] == [
        {"id": 1, "who": "ada", "label": "ada#1"},
        {"id": 3, "who": "ada", "label": "ada#3"},
        {"id": 3, "who": "ada", "label": "ada#3"},
    ]


async def test_sort_multiple_keys_with_missing_last(task_ctx: Ctx) -> None:
    records = [
        {"g": "b", "n": 1},
        {"g": "a", "n": None},
        {"g": "a", "n": 2},
        {"g": "b", "n": 3},
        {"g": None, "n": 9},
        {"g": "a", "n": 5},
    ]
    result = await transform(
        task_ctx(), records=records, steps=[{"sort": ["g", {"field": "n", "desc": True}]}]
    )
    assert [(r["g"], r["n"]) for r in result.value["records"]] == [
        ("a", 5),
        ("a", 2),
        ("a", None),
        ("b", 3),
        ("b", 1),
        (None, 9),
    ]
    mixed = await transform(
        task_ctx(), records=[{"v": "x"}, {"v": 2}, {"v": True}], steps=[{"sort": "v"}]
    )
    assert [r["v"] for r in mixed.value["records"]] == [True, 2, "x"]


async def test_cast_conversions(task_ctx: Ctx) -> None:
    records = [
        {
            "i": "1,000",
            "f": "2.5",
            "s": 7,
            "b": "Yes",
            "d": "2026-11-20T23:00:00-05:00",
            "t": "2026-11-20 08:00",
        }
    ]
    result = await transform(
        task_ctx(),
        records=records,
        steps=[
            {
                "cast": {
                    "i": "int",
                    "f": "float",
                    "s": "str",
                    "b": "bool",
                    "d": "date",
                    "t": "datetime",
                    "absent": "int",
                }
            }
        ],
    )
    assert result.value["records"] == [
        {
            "i": 1000,
            "f": 2.5,
            "s": "7",
            "b": True,
            "d": "2026-11-21",
            "t": "2026-11-20T08:00:00+00:00",
        }
    ]


async def test_cast_failure_names_step_record_and_field(task_ctx: Ctx) -> None:
    records = [{"n": "1"}, {"n": "2.5"}]
    with pytest.raises(ExpressionError) as caught:
        await transform(task_ctx(), records=records, steps=[{"limit": 10}, {"cast": {"n": "int"}}])
    message = str(caught.value)
    assert "step 2 (cast) failed on record 1" in message
    assert "'n'" in message and "whole number" in message
    assert caught.value.non_retryable is True


async def test_expression_failure_names_step_and_record(task_ctx: Ctx) -> None:
    records = [{"a": 1}, {"a": 2}, {"a": "x"}]
    with pytest.raises(ExpressionError) as caught:
        await transform(
            task_ctx(), records=records, steps=[{"derive": {"b": "a * 2"}}, {"filter": "b > 2"}]
        )
    assert "step 2 (filter) failed on record 2" in str(caught.value)
    assert caught.value.details == {"step": "step 2 (filter)", "record": 2}


async def test_bad_expression_is_reported_before_any_record_runs() -> None:
    with pytest.raises(ExpressionError, match=r"step 1 \(filter\).*unknown function 'system'"):
        TransformHandler().check_params({"records": [], "steps": [{"filter": "system('ls')"}]})


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({}, "needs param 'records'"),
        ({"records": {"a": 1}}, "needs param 'records'"),
        ({"records": [1]}, "item 0 is a int"),
        ({"records": [], "steps": [{"explode": 1}]}, "unknown kind 'explode'"),
        ({"records": [], "steps": [{"select": ["a"], "drop": ["b"]}]}, "exactly one"),
        ({"records": [], "steps": {"select": ["a"]}}, "must be a list"),
        ({"records": [], "steps": [{"limit": -1}]}, "step 1 \\(limit\\)"),
        ({"records": [], "steps": [{"cast": {"a": "decimal"}}]}, "cannot be cast to 'decimal'"),
        ({"records": [], "steps": [{"sort": [{"field": "a", "desc": "yes"}]}]}, "sort"),
        ({"records": [], "steps": [{"rename": {"a": 1}}]}, "rename"),
        ({"records": [], "steps": [], "filter": "a"}, "both 'steps' and top-level"),
        ({"records": [], "limit": 3}, "unknown params \\['limit'\\]"),
    ],
)
def test_bad_params_are_config_errors(params: dict[str, Any], complaint: str) -> None:
    with pytest.raises(TaskConfigError, match=complaint):
        TransformHandler().check_params(params)


async def test_empty_records_give_empty_output(task_ctx: Ctx) -> None:
    result = await transform(task_ctx(), records=[], filter="a > 1")
    assert result.value == {"records": [], "count": 0}
