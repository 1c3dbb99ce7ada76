"""The validate handler: every rule kind, error reporting and warn mode."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.tasks import (
    DataValidationError,
    ExpressionError,
    HandlerOutput,
    TaskConfigError,
    TaskContext,
    ValidateHandler,
)

Ctx = Callable[..., TaskContext]

GOOD: list[dict[str, Any]] = [
    {"id": 1, "email": "ada@example.com", "amount": 10, "updated": "2026-11-20T08:00:00Z"},
    {"id": 2, "email": "bob@example.com", "amount": 250.5, "updated": "2026-11-20T09:30:00Z"},
    {"id": 3, "email": "cy@example.org", "amount": 0.01, "updated": "2026-11-19T23:00:00Z"},
]
RULES: list[dict[str, Any]] = [
    {"not_null": ["id", "email"]},
    {"unique": ["id"]},
    {"range": {"field": "amount", "min": 0, "max": 1000}},
    {"regex": {"field": "email", "pattern": r"[^@\s]+@[^@\s]+\.[a-z]+"}},
    {"row_count": {"min": 1, "max": 10}},
    {"freshness": {"field": "updated", "max_age": "1d"}},
    {"expr": "amount > 0"},
]
NOW = "2026-11-20T12:00:00Z"


async def validate(ctx: TaskContext, **params: Any) -> HandlerOutput:
    handler = ValidateHandler()
    handler.check_params(params)
    result = await handler.run(params, ctx)
    assert isinstance(result, HandlerOutput)
    return result


async def test_all_rules_pass_and_records_flow_through(task_ctx: Ctx) -> None:
    result = await validate(task_ctx(), records=GOOD, rules=RULES, now=NOW)
    out = result.value
    assert out["passed"] is True
    assert out["checked"] == 3
    assert out["records"] == GOOD
    assert [r["rule"] for r in out["rules"]] == [
        "not_null(id, email)",
        "unique(id)",
        "range(amount: 0..1000)",
        "regex(email ~ '[^@\\\\s]+@[^@\\\\s]+\\\\.[a-z]+')",
        "row_count(1..10)",
        "freshness(updated within 1d)",
        "expr(amount > 0)",
    ]
    assert all(r["passed"] and r["failures"] == 0 for r in out["rules"])
    assert (result.records_in, result.records_out) == (3, 3)


async def test_every_failed_rule_is_listed_with_counts_and_examples(task_ctx: Ctx) -> None:
    bad = [
        *GOOD,
        {"id": 1, "email": None, "amount": -5, "updated": "2026-11-01T00:00:00Z"},
        {"id": None, "email": "not-an-email", "amount": 5000, "updated": "2026-11-02"},
        {"id": 7, "email": "x@y.io", "amount": "lots", "updated": "2026-11-03"},
    ]
    with pytest.raises(DataValidationError) as caught:
        await validate(task_ctx(), records=bad, rules=RULES, now="2026-11-25T00:00:00Z")
    error = caught.value
    assert error.non_retryable is True
    message = str(error)
    assert message.startswith("6 of 7 validation rules failed on 6 records:")
    assert (
        "- not_null(id, email): 2 rows failed, e.g. row=3, null=['email']; row=4, null=['id']"
        in message
    )
    assert "- unique(id): 1 row failed, e.g. row=3, value=1, first=0" in message
    assert "- range(amount: 0..1000): 3 rows failed" in message
    assert "- regex(email ~" in message and "row=4, value='not-an-email'" in message
    assert (
        "- freshness(updated within 1d): newest 'updated' is 2026-11-20T09:30:00+00:00, 4d 14h 30m old"
        in message
    )
    assert "- expr(amount > 0): 2 rows failed" in message
    assert "row_count" not in message
    results = {r["kind"]: r for r in error.details["rules"]}
    assert results["range"]["failures"] == 3
    assert [e["row"] for e in results["range"]["examples"]] == [3, 4, 5]
    assert results["row_count"]["passed"] is True
    assert error.details["checked"] == 6


async def test_examples_are_capped_at_three(task_ctx: Ctx) -> None:
    records = [{"id": None} for _ in range(10)]
    with pytest.raises(DataValidationError) as caught:
        await validate(task_ctx(), records=records, rules=[{"not_null": "id"}])
    result = caught.value.details["rules"][0]
    assert result["failures"] == 10
    assert len(result["examples"]) == 3


async def test_unique_on_combined_key(task_ctx: Ctx) -> None:
    records = [{"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 1, "b": 1}]
    with pytest.raises(
        DataValidationError, match=r"unique\(a, b\): 1 row failed, e.g. row=2, value=\[1, 1\]"
    ):
        await validate(task_ctx(), records=records, rules=[{"unique": ["a", "b"]}])


async def test_row_count_failure(task_ctx: Ctx) -> None:
    with pytest.raises(DataValidationError, match=r"row_count\(1..\): got 0 rows"):
        await validate(task_ctx(), records=[], rules=[{"row_count": {"min": 1}}])


async def test_freshness_uses_the_clock_by_default(task_ctx: Ctx) -> None:
    recent = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    old = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    ok = await validate(
        task_ctx(),
        records=[{"t": old}, {"t": recent}],
        rules=[{"freshness": {"field": "t", "max_age": "1h"}}],
    )
    assert ok.value["passed"] is True
    with pytest.raises(DataValidationError, match="freshness"):
        await validate(
            task_ctx(), records=[{"t": old}], rules=[{"freshness": {"field": "t", "max_age": "1h"}}]
        )


async def test_freshness_rule_now_and_bad_timestamps(task_ctx: Ctx) -> None:
    rule = {"freshness": {"field": "t", "max_age": 60, "now": "2026-11-20T00:01:00+00:00"}}
    ok = await validate(task_ctx(), records=[{"t": "2026-11-20"}], rules=[rule])
    assert ok.value["passed"] is True
    with pytest.raises(DataValidationError, match="not a timestamp"):
        await validate(task_ctx(), records=[{"t": "2026-11-20"}, {"t": "yesterday"}], rules=[rule])
    with pytest.raises(DataValidationError, match="no record has a 't' timestamp"):
        await validate(task_ctx(), records=[{"x": 1}], rules=[rule])


async def test_expr_rule_counts_evaluation_errors_as_failures(task_ctx: Ctx) -> None:
    with pytest.raises(DataValidationError) as caught:
        await validate(task_ctx(), records=[{"a": 1}, {"a": "x"}], rules=[{"expr": "a > 0"}])
    example = caught.value.details["rules"][0]["examples"][0]
    assert example["row"] == 1
    assert "'>' not supported" in example["error"]


async def test_warn_mode_reports_without_failing(
    task_ctx: Ctx, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = await validate(
            task_ctx(), records=[{"id": 1}, {"id": 1}], rules=[{"unique": ["id"]}], on_fail="warn"
        )
    assert result.value["passed"] is False
    assert result.value["rules"][0]["failures"] == 1
    assert result.value["records"] == [{"id": 1}, {"id": 1}]
    assert "1 of 1 validation rules failed" in caplog.text


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"records": []}, "needs param 'rules'"),
        ({"records": [], "rules": [{"nonsense": 1}]}, "validate rule 1 must be"),
        ({"records": [], "rules": [{"not_null": []}]}, "not_null"),
        ({"records": [], "rules": [{"range": {"min": 1}}]}, "range"),
        (
            {"records": [], "rules": [{"range": {"field": "a", "low": 1}}]},
            "unknown keys \\['low'\\]",
        ),
        ({"records": [], "rules": [{"regex": {"field": "a", "pattern": "("}}]}, "invalid regex"),
        ({"records": [], "rules": [{"freshness": {"field": "a", "max_age": "soon"}}]}, "freshness"),
        ({"records": [], "rules": [{"row_count": {"min": "1"}}]}, "whole numbers"),
        ({"records": [], "rules": [{"unique": ["a"]}], "on_fail": "ignore"}, "on_fail"),
        ({"records": [], "rules": [{"unique": ["a"]}], "now": "today"}, "now"),
        ({"records": "x", "rules": [{"unique": ["a"]}]}, "records"),
    ],
)
def test_bad_params_are_config_errors(params: dict[str, Any], complaint: str) -> None:
    with pytest.raises(TaskConfigError, match=complaint):
        ValidateHandler().check_params(params)


def test_bad_expr_rule_names_the_rule() -> None:
    with pytest.raises(ExpressionError, match=r"validate rule 2: .*unknown function 'exec'"):
        ValidateHandler().check_params(
            {"records": [], "rules": [{"unique": ["a"]}, {"expr": "exec('x')"}]}
        )
