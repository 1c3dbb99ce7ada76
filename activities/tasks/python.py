"""The ``python`` task: call a function of an importable module.

This runs code the pipeline names, with the worker's permissions: pipeline files are
trusted configuration, like the worker's own code. Only importable modules can be named;
there is no way to pass source text.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from activities.tasks.base import TaskConfigError, TaskContext, TaskHandler

_CALLABLE = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")


def _parse(params: Mapping[str, Any]) -> tuple[str, str, list[Any], dict[str, Any]]:
    target = params.get("callable")
    match = _CALLABLE.match(target) if isinstance(target, str) else None
    if match is None:
        raise TaskConfigError(
            "python task needs param 'callable' as 'module:function' or 'module:Class.method' "
            f"(e.g. 'my_package.cleaning:normalise'), got {target!r:.80}"
        )
    attr = match["attr"]
    if any(part.startswith("__") for part in attr.split(".")):
        raise TaskConfigError(
            f"python task param 'callable' may not name dunder attributes: {target!r}"
        )
    args = params.get("args") or []
    if not isinstance(args, list):
        raise TaskConfigError(f"python task param 'args' must be a list, got {args!r:.80}")
    kwargs = params.get("kwargs") or {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise TaskConfigError(
            f"python task param 'kwargs' must map argument names to values, got {kwargs!r:.80}"
        )
    return match["module"], attr, list(args), dict(kwargs)


def resolve_callable(module_name: str, attr: str) -> Callable[..., Any]:
    """Import ``module_name`` and follow the dotted ``attr`` path to a callable.

    Raises:
        TaskConfigError: The module cannot be imported, an attribute is missing, or the
            target is not callable.
    """
    where = f"{module_name}:{attr}"
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskConfigError(
            f"python task callable {where!r}: cannot import module {module_name!r} ({exc}); "
            "check the spelling and that it is installed in the worker's environment"
        ) from None
    except Exception as exc:
        # A module that fails while importing is broken code: retrying will not fix it.
        raise TaskConfigError(
            f"python task callable {where!r}: importing module {module_name!r} failed with "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    path = module_name
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TaskConfigError(
                f"python task callable {where!r}: {path!r} has no attribute {part!r}"
            ) from None
        path = f"{path}.{part}"
    if not callable(target):
        raise TaskConfigError(
            f"python task callable {where!r} is a {type(target).__name__}, not a function"
        )
    return target  # type: ignore[no-any-return]


class PythonHandler(TaskHandler):
    """Call a Python function and return its result.

    Params:
        callable (string, required): ``"module:function"`` or ``"module:Class.method"``
            (a static or class method) of a module importable by the worker.
        args (list): Positional arguments.
        kwargs (mapping): Keyword arguments.

    Output:
        The function's return value when it is a dict, otherwise ``{"result": value}``. The
        value must be JSON-serialisable. A plain function runs in a worker thread so it
        cannot block other tasks; an ``async def`` function is awaited.

    Errors:
        ``TaskConfigError`` (not retried) when the module or attribute does not exist or the
        result is not JSON. Exceptions raised by the function itself are retried according
        to the task's retry policy (raise a ``TaskError`` subclass with ``non_retryable``
        set to stop that).
    """

    type_name = "python"
    description = "Call a function of an importable module"

    def check_params(self, params: Mapping[str, Any]) -> None:
        _parse(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        module_name, attr, args, kwargs = _parse(params)
        func = resolve_callable(module_name, attr)
        if inspect.iscoroutinefunction(func):
            result = await func(*args, **kwargs)
        else:
            result = await asyncio.to_thread(func, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise TaskConfigError(
                f"python task callable '{module_name}:{attr}' returned a "
                f"{type(result).__name__}, which is not JSON-serialisable ({exc}); return "
                "dicts, lists, strings, numbers, booleans or None"
            ) from None
        return result if isinstance(result, dict) else {"result": result}
