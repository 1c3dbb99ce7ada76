"""The noop, sleep and fail handlers, and the registry of built-in handlers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from activities.tasks import (
    FailHandler,
    NoopHandler,
    SleepHandler,
    TaskConfigError,
    TaskContext,
    TaskError,
    builtin_handlers,
    default_registry,
)

Ctx = Callable[..., TaskContext]


async def test_noop_echoes_params(task_ctx: Ctx) -> None:
    assert await NoopHandler().run({"rows": [1, 2], "day": "2026-11-20"}, task_ctx()) == {
        "ok": True,
        "rows": [1, 2],
        "day": "2026-11-20",
    }


async def test_sleep_heartbeats_between_slices(task_ctx: Ctx) -> None:
    beats: list[Any] = []
    handler = SleepHandler(heartbeat_every=0.05)
    started = time.monotonic()
    result = await handler.run({"seconds": 0.2}, task_ctx(heartbeat=beats.append))
    assert time.monotonic() - started >= 0.2
    assert result == {"slept": 0.2}
    assert len(beats) == 4
    assert beats[-1]["slept"] == pytest.approx(0.2)


@pytest.mark.parametrize("seconds", [-1, 86401, "10", None, True, float("nan")])
def test_sleep_rejects_bad_seconds(seconds: Any) -> None:
    with pytest.raises(TaskConfigError, match="seconds"):
        SleepHandler().check_params({"seconds": seconds})


async def test_fail_raises_the_requested_error_type(task_ctx: Ctx) -> None:
    handler = FailHandler()
    with pytest.raises(TaskError) as caught:
        await handler.run(
            {
                "message": "selectors drifted",
                "error_type": "SelectorDriftError",
                "non_retryable": True,
            },
            task_ctx(),
        )
    assert str(caught.value) == "selectors drifted"
    assert caught.value.type_name == "SelectorDriftError"
    assert caught.value.non_retryable is True
    assert type(caught.value).__name__ == "SelectorDriftError"


async def test_fail_defaults_to_a_retryable_injected_failure(task_ctx: Ctx) -> None:
    with pytest.raises(TaskError) as caught:
        await FailHandler().run({}, task_ctx())
    assert caught.value.type_name == "InjectedFailure"
    assert caught.value.non_retryable is False


async def test_fail_succeeds_from_the_given_attempt(task_ctx: Ctx) -> None:
    handler = FailHandler()
    params = {"succeed_on_attempt": 3}
    for attempt in (1, 2):
        with pytest.raises(TaskError):
            await handler.run(params, task_ctx(attempt=attempt))
    assert await handler.run(params, task_ctx(attempt=3)) == {"ok": True, "attempt": 3}
    assert await handler.run(params, task_ctx(attempt=4)) == {"ok": True, "attempt": 4}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"error_type": "not a name!"}, "error_type"),
        ({"non_retryable": "yes"}, "non_retryable"),
        ({"succeed_on_attempt": 0}, "succeed_on_attempt"),
        ({"message": 5}, "message"),
    ],
)
def test_fail_rejects_bad_params(params: dict[str, Any], param: str) -> None:
    with pytest.raises(TaskConfigError, match=param):
        FailHandler().check_params(params)


def test_registry_has_every_builtin() -> None:
    registry = default_registry(load_entry_points=False)
    assert registry.names() == [
        "fail",
        "http",
        "load",
        "noop",
        "python",
        "scrape",
        "sleep",
        "sql",
        "transform",
        "validate",
    ]
    assert registry.pure_types() == ["noop", "transform", "validate"]
    with pytest.raises(TaskConfigError, match="unknown task type 'nope'"):
        registry.get("nope")


def test_every_builtin_documents_params_and_output() -> None:
    for handler in builtin_handlers():
        doc = type(handler).__doc__ or ""
        assert "Output:" in doc, type(handler).__name__
        assert handler.description, type(handler).__name__
