"""The python handler calling real functions (stdlib and this module's own)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from activities.tasks import PythonHandler, TaskConfigError, TaskContext

Ctx = Callable[..., TaskContext]
HERE = __name__  # the name pytest imported this module under, so importlib finds it


async def scale_async(values: list[float], factor: float = 2.0) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"values": [v * factor for v in values]}


def thread_name() -> str:
    return threading.current_thread().name


def not_json() -> object:
    return {1, 2}


class Tools:
    @staticmethod
    def greet(name: str) -> str:
        return f"hello {name}"


def boom() -> None:
    raise RuntimeError("function failed")


async def call(ctx: TaskContext, **params: Any) -> Any:
    handler = PythonHandler()
    handler.check_params(params)
    return await handler.run(params, ctx)


async def test_stdlib_functions_with_args_and_kwargs(task_ctx: Ctx) -> None:
    assert await call(task_ctx(), callable="math:sqrt", args=[16]) == {"result": 4.0}
    dumped = await call(
        task_ctx(), callable="json:dumps", args=[{"b": 1, "a": 2}], kwargs={"sort_keys": True}
    )
    assert dumped == {"result": '{"a": 2, "b": 1}'}


async def test_async_function_is_awaited_and_dict_passes_through(task_ctx: Ctx) -> None:
    result = await call(
        task_ctx(), callable=f"{HERE}:scale_async", args=[[1, 2]], kwargs={"factor": 3}
    )
    assert result == {"values": [3, 6]}


async def test_sync_function_runs_off_the_event_loop(task_ctx: Ctx) -> None:
    result = await call(task_ctx(), callable=f"{HERE}:thread_name")
    assert result["result"] != threading.main_thread().name


async def test_static_method_by_dotted_path(task_ctx: Ctx) -> None:
    assert await call(task_ctx(), callable=f"{HERE}:Tools.greet", args=["ada"]) == {
        "result": "hello ada"
    }


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:run", "cannot import module 'no_such_module_xyz'"),
        ("math:no_such_function", "'math' has no attribute 'no_such_function'"),
        ("math:pi", "is a float, not a function"),
    ],
)
async def test_missing_targets_are_config_errors(task_ctx: Ctx, target: str, message: str) -> None:
    with pytest.raises(TaskConfigError, match=message):
        await call(task_ctx(), callable=target)


async def test_result_must_be_json(task_ctx: Ctx) -> None:
    with pytest.raises(TaskConfigError, match="returned a set, which is not JSON"):
        await call(task_ctx(), callable=f"{HERE}:not_json")


async def test_function_errors_propagate_unchanged(task_ctx: Ctx) -> None:
    with pytest.raises(RuntimeError, match="function failed"):
        await call(task_ctx(), callable=f"{HERE}:boom")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "callable"),
        ({"callable": "math.sqrt"}, "callable"),
        ({"callable": "os:__dict__"}, "dunder"),
        ({"callable": "math:sqrt", "args": "16"}, "args"),
        ({"callable": "math:sqrt", "kwargs": [1]}, "kwargs"),
    ],
)
def test_bad_params_name_the_param(params: dict[str, Any], param: str) -> None:
    with pytest.raises(TaskConfigError, match=param):
        PythonHandler().check_params(params)
