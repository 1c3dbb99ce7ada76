"""Heartbeating on behalf of long activity work.

A worker that dies mid-activity is noticed by Temporal only through a missed heartbeat (or
the whole start-to-close timeout). Work that blocks in a thread or waits on I/O cannot
heartbeat itself, so these helpers heartbeat from the event loop while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from temporalio import activity

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_PERIOD_SECONDS = 3.0
"""Heartbeat period of :func:`heartbeating` activities; pair it with a heartbeat timeout of
at least three periods (the source workflows use 15 s)."""


async def heartbeat_while(work: Awaitable[T], period: float) -> T:
    """Await ``work``, calling ``activity.heartbeat()`` every ``period`` seconds meanwhile."""
    job = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=period)
            if done:
                return job.result()
            activity.heartbeat()
    finally:
        if not job.done():
            job.cancel()
            with contextlib.suppress(BaseException):
                await job


def heartbeating(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate an async activity so it heartbeats every few seconds while it runs."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if activity.in_activity() and not activity.info().is_local:
            return await heartbeat_while(fn(*args, **kwargs), DEFAULT_PERIOD_SECONDS)
        return await fn(*args, **kwargs)

    return wrapper
