"""Small handlers for wiring, demos and tests: ``noop``, ``sleep`` and ``fail``."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from typing import Any, cast

from activities.tasks.base import TaskConfigError, TaskContext, TaskError, TaskHandler

MAX_SLEEP_SECONDS = 86400.0
HEARTBEAT_SLICE_SECONDS = 5.0
"""``sleep`` heartbeats at least this often, so cancellation and heartbeat timeouts work."""

_ERROR_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")


class NoopHandler(TaskHandler):
    """Do nothing and echo the params: a placeholder, or a way to pass values through.

    Params:
        any: Every param is copied into the output.

    Output:
        ``{"ok": true, **params}``.
    """

    type_name = "noop"
    pure = True
    description = "Do nothing; the output echoes the params"

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        return {"ok": True, **params}


def _seconds(params: Mapping[str, Any]) -> float:
    value = params.get("seconds")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TaskConfigError(
            f"sleep task needs param 'seconds' as a number of seconds, got {value!r:.80}"
        )
    if not math.isfinite(value) or not 0 <= value <= MAX_SLEEP_SECONDS:
        raise TaskConfigError(
            f"sleep task param 'seconds' must be between 0 and {MAX_SLEEP_SECONDS:g}, got {value!r}"
        )
    return float(value)


class SleepHandler(TaskHandler):
    """Wait, heartbeating every few seconds (for demos and timeout tests).

    Params:
        seconds (number, required): How long to wait, 0 to 86400.

    Output:
        ``{"slept": seconds}``.

    The wait runs in slices of at most 5 s with a heartbeat ``{"slept": <so far>}``
    between them, so the task can be cancelled and may set a ``heartbeat_timeout``.
    """

    type_name = "sleep"
    description = "Wait for a number of seconds, heartbeating"

    def __init__(self, heartbeat_every: float = HEARTBEAT_SLICE_SECONDS) -> None:
        self.heartbeat_every = heartbeat_every

    def check_params(self, params: Mapping[str, Any]) -> None:
        _seconds(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        seconds = _seconds(params)
        every = self.heartbeat_every
        # Count slices up front: summing float steps could leave a sliver for an extra slice.
        slices = math.ceil(seconds / every - 1e-9) if seconds > 0 else 0
        for index in range(slices):
            await asyncio.sleep(min(every, seconds - index * every))
            ctx.heartbeat({"slept": min(seconds, (index + 1) * every)})
        return {"slept": seconds}


class InjectedFailure(TaskError):
    """The error raised by the ``fail`` task (its subclasses carry the requested type)."""

    type_name = "InjectedFailure"


_FAILURE_CLASSES: dict[tuple[str, bool], type[InjectedFailure]] = {}


def injected_failure_class(type_name: str, non_retryable: bool) -> type[InjectedFailure]:
    """The :class:`InjectedFailure` subclass whose ``type_name`` is ``type_name``.

    Retry policies match errors by type name, so a test can inject, say, a
    ``SelectorDriftError`` without importing the real class. Classes are made once per
    ``(type_name, non_retryable)`` and reused.
    """
    key = (type_name, non_retryable)
    if key not in _FAILURE_CLASSES:
        if type_name == InjectedFailure.type_name and not non_retryable:
            _FAILURE_CLASSES[key] = InjectedFailure
        else:
            attrs = {"type_name": type_name, "non_retryable": non_retryable, "__module__": __name__}
            made = type(type_name.rsplit(".", 1)[-1], (InjectedFailure,), attrs)
            _FAILURE_CLASSES[key] = cast(type[InjectedFailure], made)
    return _FAILURE_CLASSES[key]


def _failure_params(params: Mapping[str, Any]) -> tuple[str, str, bool, int | None]:
    message = params.get("message", "injected failure")
    if not isinstance(message, str):
        raise TaskConfigError(f"fail task param 'message' must be a string, got {message!r:.80}")
    error_type = params.get("error_type", InjectedFailure.type_name)
    if not isinstance(error_type, str) or not _ERROR_TYPE.match(error_type):
        raise TaskConfigError(
            f"fail task param 'error_type' must be an identifier such as 'SelectorDriftError', "
            f"got {error_type!r:.80}"
        )
    non_retryable = params.get("non_retryable", False)
    if not isinstance(non_retryable, bool):
        raise TaskConfigError(
            f"fail task param 'non_retryable' must be true or false, got {non_retryable!r:.80}"
        )
    succeed_on = params.get("succeed_on_attempt")
    if succeed_on is not None and (
        isinstance(succeed_on, bool) or not isinstance(succeed_on, int) or succeed_on < 1
    ):
        raise TaskConfigError(
            f"fail task param 'succeed_on_attempt' must be an attempt number >= 1, "
            f"got {succeed_on!r:.80}"
        )
    return message, error_type, non_retryable, succeed_on


class FailHandler(TaskHandler):
    """Raise an error on purpose (tests, and the flaky-source demo).

    Params:
        message (string): Error message. Default ``"injected failure"``.
        error_type (string): Type name of the raised error, as retry policies and
            ``non_retryable_errors`` see it. Default ``"InjectedFailure"``.
        non_retryable (bool): Mark the error non-retryable. Default false.
        succeed_on_attempt (int, optional): From this attempt on (1 = first), succeed
            instead of failing.

    Output:
        ``{"ok": true, "attempt": n}`` once ``succeed_on_attempt`` is reached; otherwise
        the task fails with the error described above.
    """

    type_name = "fail"
    description = "Fail with a chosen error type (optionally succeed on a later attempt)"

    def check_params(self, params: Mapping[str, Any]) -> None:
        _failure_params(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        message, error_type, non_retryable, succeed_on = _failure_params(params)
        if succeed_on is not None and ctx.attempt >= succeed_on:
            return {"ok": True, "attempt": ctx.attempt}
        error_class = injected_failure_class(error_type, non_retryable)
        raise error_class(message, attempt=ctx.attempt)
