"""Driving a ``SourceSupervisor`` from tests and tools: request a run, wait for it to settle."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import WorkflowHandle

from models.supervisor import RunNowRequest, RunTicket, SupervisorView


async def request_run(handle: WorkflowHandle[Any, Any]) -> int:
    """Send ``run_now``; the cycle number the requested run will have."""
    ticket: RunTicket = await handle.execute_update(
        "run_now", RunNowRequest(), result_type=RunTicket
    )
    return ticket.cycle


async def settle(
    handle: WorkflowHandle[Any, Any], cycle: int, timeout: float = 60
) -> SupervisorView:
    """Wait until run ``cycle`` and whatever it started (a repair, a follow-up run) are over."""
    deadline = time.monotonic() + timeout
    while True:
        view: SupervisorView = await handle.query("health", result_type=SupervisorView)
        if view.last_run and view.last_run.cycle >= cycle and not view.busy:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"supervisor did not settle on cycle {cycle}: {view}")
        await asyncio.sleep(0.1)
