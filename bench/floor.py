"""The floor: a bare Temporal workflow running a DAG of no-op activities, nothing else.

Whatever Mendline's ``PipelineRun`` costs beyond this (spec validation, state tracking,
run records, search attributes, templating) is Mendline's own overhead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

NOOP_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_noop")
async def noop(name: str) -> str:
    """Do nothing and return the task name (an async activity needs no thread pool)."""
    return name


@dataclass
class FloorInput:
    """Input of ``BenchFloor``.

    Attributes:
        dag: Task name → dependencies, in topological order.
        local: Run the tasks as local activities instead of regular ones.
    """

    dag: dict[str, list[str]]
    local: bool


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    """Start every task as soon as its dependencies finish; return the number of tasks."""

    @workflow.run
    async def run(self, params: FloorInput) -> int:
        started: dict[str, asyncio.Task[str]] = {}

        async def run_task(name: str, deps: list[str]) -> str:
            for dep in deps:
                await started[dep]
            if params.local:
                return await workflow.execute_local_activity(
                    noop, name, start_to_close_timeout=NOOP_TIMEOUT
                )
            return await workflow.execute_activity(noop, name, start_to_close_timeout=NOOP_TIMEOUT)

        # Topological order guarantees every dependency's task exists before it is awaited.
        for name, deps in params.dag.items():
            started[name] = asyncio.create_task(run_task(name, deps))
        await asyncio.gather(*started.values())
        return len(started)
