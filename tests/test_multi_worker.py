"""Scale-out: two worker processes on one task queue share a run's tasks and one SQLite file."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities.storage import Database
from models.db import TaskAttemptRow
from models.runs import PipelineRunInput, PipelineRunState, RunStatus, TaskStatus
from models.settings import Settings
from tests.support.procs import ProcessSet, wait_until_polling

pytestmark = pytest.mark.slow

TASKS = 20


async def test_two_workers_share_the_tasks_of_one_run(
    client: Client, settings: Settings, workflow_id: str, tmp_path: Path
) -> None:
    # Five activity slots per worker: one worker alone cannot take all twenty tasks at once.
    settings = settings.model_copy(update={"max_concurrent_activities": 5})
    pipeline = {
        "name": "fan-out",
        "max_parallel": TASKS,
        "tasks": [
            {"name": f"s{i:02d}", "type": "sleep", "mode": "activity", "params": {"seconds": 0.3}}
            for i in range(TASKS)
        ],
    }
    # Migrate first, as the Compose stack's one-shot `migrate` service does: two workers
    # migrating a fresh SQLite file at the same moment race (one dies with "table
    # pipeline_runs already exists").
    Database(settings.resolved_database_url).dispose()
    with ProcessSet(tmp_path / "logs") as procs:
        workers = [procs.start_worker(settings), procs.start_worker(settings)]
        for worker in workers:
            await wait_until_polling(client, worker)
        handle = await client.start_workflow(
            "PipelineRun",
            PipelineRunInput(pipeline=pipeline),
            id=workflow_id,
            task_queue=settings.task_queue,
            result_type=PipelineRunState,
        )
        try:
            final = await asyncio.wait_for(handle.result(), 45)
        except TimeoutError:
            pytest.fail(f"the run did not finish\n{procs.logs()}")
        logs = procs.logs()
        assert all(w.running() for w in workers), logs

    assert final.status == RunStatus.SUCCEEDED, logs
    assert len(final.tasks) == TASKS
    assert all(
        t.status == TaskStatus.SUCCEEDED and t.attempts == 1 for t in final.tasks.values()
    ), final.tasks

    db = Database(settings.resolved_database_url, migrate=False)
    try:
        with db.session() as session:
            rows = session.execute(
                select(
                    TaskAttemptRow.task,
                    TaskAttemptRow.attempt,
                    TaskAttemptRow.status,
                    TaskAttemptRow.worker,
                ).where(TaskAttemptRow.run_id == workflow_id)
            ).all()
    finally:
        db.dispose()
    # Every task's attempt was written exactly once, by whichever process ran it.
    assert sorted((r.task, r.attempt, r.status) for r in rows) == [
        (name, 1, "SUCCEEDED") for name in sorted(final.tasks)
    ]
    per_worker = Counter(r.worker for r in rows)
    assert set(per_worker) == {w.telemetry_name for w in workers}, (per_worker, logs)
