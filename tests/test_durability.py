"""Runs survive a worker killed with SIGKILL and a Temporal server killed and restarted.

Real processes throughout: ``mendline worker`` subprocesses, the session dev server or an
``EmbeddedServer`` of its own, and a SQLite database shared by everything in the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle

from activities.storage import Database, make_engine
from models.db import TaskAttemptRow
from models.runs import PipelineRunInput, PipelineRunState, RunStatus, TaskStatus
from models.settings import Settings
from tests.support.procs import ProcessSet, free_ports, kill_group, wait_until_polling
from workers.client import connect
from workers.server import EmbeddedServer

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 45.0
"""Upper bound for one run to finish after the fault; the tests take far less."""


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float, logs: Callable[[], str]
) -> None:
    """Poll ``check`` until it is true; fail with the process logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s\n{logs()}")


async def task_is(handle: WorkflowHandle[Any, Any], name: str, status: TaskStatus) -> bool:
    state = await handle.query("state", result_type=PipelineRunState)
    task = state.tasks.get(name)
    return task is not None and task.status == status


def attempts_of(settings: Settings, run_id: str, task: str) -> list[tuple[int, str, str]]:
    """``(attempt, status, worker)`` telemetry rows of one task, by attempt number."""
    db = Database(settings.resolved_database_url, migrate=False)
    try:
        with db.session() as session:
            rows = session.execute(
                select(TaskAttemptRow.attempt, TaskAttemptRow.status, TaskAttemptRow.worker)
                .where(TaskAttemptRow.run_id == run_id, TaskAttemptRow.task == task)
                .order_by(TaskAttemptRow.attempt)
            ).all()
    finally:
        db.dispose()
    return [(r.attempt, r.status, r.worker) for r in rows]


async def test_run_survives_worker_killed_mid_task(
    client: Client, settings: Settings, workflow_id: str, tmp_path: Path
) -> None:
    records = [{"id": i, "name": f"order-{i}", "amount": i * 10} for i in (1, 2, 3)]
    pipeline = {
        "name": "survive-kill",
        "tasks": [
            {"name": "a", "type": "sleep", "params": {"seconds": 0.2}},
            {
                "name": "b",
                "type": "sleep",
                "depends_on": ["a"],
                "mode": "activity",
                "params": {"seconds": 3},
                "timeout": "60s",
                # Longer than the 3 s sleep (which heartbeats only when its slice ends), short
                # enough that the server notices the dead worker within seconds.
                "heartbeat_timeout": "4s",
                "retry": {"max_attempts": 3, "initial_interval": "200ms"},
            },
            {
                "name": "c",
                "type": "load",
                "depends_on": ["b"],
                "params": {"table": "orders", "key": "id", "records": records},
            },
        ],
    }
    with ProcessSet(tmp_path / "logs") as procs:
        first = procs.start_worker(settings)
        await wait_until_polling(client, first)
        handle = await client.start_workflow(
            "PipelineRun",
            PipelineRunInput(pipeline=pipeline),
            id=workflow_id,
            task_queue=settings.task_queue,
            result_type=PipelineRunState,
        )

        async def b_started() -> bool:
            # RUNNING in the workflow means scheduled; the telemetry row means the worker
            # is inside the activity, so the kill really lands mid-task.
            return await task_is(handle, "b", TaskStatus.RUNNING) and bool(
                await asyncio.to_thread(attempts_of, settings, workflow_id, "b")
            )

        await wait_for(b_started, "task b starting on the first worker", 30, procs.logs)
        first.kill()
        assert first.process.returncode == -9, procs.logs()

        second = procs.start_worker(settings)
        try:
            final = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"the run did not finish after the worker was killed\n{procs.logs()}")

        assert final.status == RunStatus.SUCCEEDED, procs.logs()
        assert {name: t.status for name, t in final.tasks.items()} == {
            "a": TaskStatus.SUCCEEDED,
            "b": TaskStatus.SUCCEEDED,
            "c": TaskStatus.SUCCEEDED,
        }
        assert final.tasks["a"].attempts == 1
        assert final.tasks["b"].attempts == 2
        assert final.tasks["c"].attempts == 1
        # Attempt 1 wrote its start and died with its worker, so it stays RUNNING; the
        # retry ran on the new worker.
        assert await asyncio.to_thread(attempts_of, settings, workflow_id, "b") == [
            (1, "RUNNING", first.telemetry_name),
            (2, "SUCCEEDED", second.telemetry_name),
        ]
        assert [
            (n, s) for n, s, _ in await asyncio.to_thread(attempts_of, settings, workflow_id, "c")
        ] == [(1, "SUCCEEDED")]

    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            orders = sa.Table("orders", sa.MetaData(), autoload_with=conn)
            rows = conn.execute(
                select(orders.c.id, orders.c.data, orders.c.run_id).order_by(orders.c.id)
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(r["id"], r, workflow_id) for r in records]


async def test_run_survives_server_killed_and_restarted(tmp_path: Path, workflow_id: str) -> None:
    grpc_port, ui_port = free_ports(2)
    settings = Settings(
        data_dir=tmp_path / "data",
        embedded_port=grpc_port,
        ui_port=ui_port,
        task_queue="durability-server",
    )
    pipeline = {
        "name": "survive-server-restart",
        "tasks": [
            {
                "name": "nap",
                "type": "sleep",
                "mode": "activity",
                "params": {"seconds": 2},
                "timeout": "30s",
            },
            {"name": "after", "type": "noop", "depends_on": ["nap"]},
        ],
    }
    first_server = EmbeddedServer(settings)
    second_server = EmbeddedServer(settings)
    with ProcessSet(tmp_path / "logs") as procs:

        def logs() -> str:
            server_log = first_server.log_path.read_text(errors="replace")[-3000:]
            return f"{procs.logs()}\n\nserver log {first_server.log_path}:\n{server_log}"

        async def nap_attempts(*statuses: str) -> bool:
            rows = await asyncio.to_thread(attempts_of, settings, workflow_id, "nap")
            return [(n, s) for n, s, _ in rows] == [(1, s) for s in statuses]

        try:
            await asyncio.to_thread(first_server.start)
            assert first_server.process is not None
            procs.adopt(first_server.process)
            client = await connect(settings)
            worker = procs.start_worker(settings)
            await wait_until_polling(client, worker)
            await client.start_workflow(
                "PipelineRun",
                PipelineRunInput(pipeline=pipeline),
                id=workflow_id,
                task_queue=settings.task_queue,
                result_type=PipelineRunState,
            )
            await wait_for(
                lambda: nap_attempts("RUNNING"), "task nap starting on the worker", 30, logs
            )

            kill_group(first_server.process)
            first_server.process.wait(10)
            # The sleep ends while the server is down: the worker must hold on to the
            # completion and deliver it to the restarted server.
            await wait_for(
                lambda: nap_attempts("SUCCEEDED"),
                "the sleep ending on the worker while the server is down",
                15,
                logs,
            )
            assert first_server.process.poll() is not None
            # Same settings, so the same temporal.db: the history must still be there.
            await asyncio.to_thread(second_server.start)
            assert second_server.process is not None
            procs.adopt(second_server.process)

            client = await connect(settings)
            handle = client.get_workflow_handle(workflow_id, result_type=PipelineRunState)
            try:
                final = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
            except TimeoutError:
                pytest.fail(f"the run did not finish after the server restart\n{logs()}")
            assert worker.running(), f"the worker died with the server\n{logs()}"
        finally:
            second_server.stop()
            first_server.stop()

    assert final.status == RunStatus.SUCCEEDED, logs()
    assert {name: t.status for name, t in final.tasks.items()} == {
        "nap": TaskStatus.SUCCEEDED,
        "after": TaskStatus.SUCCEEDED,
    }
    # The completion made during the outage counted: nap was not run a second time.
    assert final.tasks["nap"].attempts == 1
    assert await nap_attempts("SUCCEEDED")
