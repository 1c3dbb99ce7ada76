"""A worker killed while a remediation waits for approval: the approval still lands (sent
while no worker runs), a new worker carries on, and the action runs exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.audit import AuditLog
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalStatus
from models.runs import PipelineRunInput, PipelineRunState, RunStatus, TaskStatus
from models.settings import Settings
from tests.support.procs import ProcessSet, kill_group, wait_until_polling

pytestmark = pytest.mark.slow

SLOW = {
    "name": "slow_report",
    "tasks": [
        {
            "name": "crunch",
            "type": "sleep",
            "mode": "activity",
            "params": {"seconds": 2},
            "timeout": "1s",
            "retry": {"max_attempts": 1},
        },
        {"name": "publish", "type": "noop", "depends_on": ["crunch"]},
    ],
}


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessSet]:
    with ProcessSet(tmp_path / "logs") as running:
        yield running


async def waiting_request(client: Client, wid: str, timeout: float, logs: Any) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status: ApprovalStatus = await client.get_workflow_handle(wid).query(
                "approval", result_type=ApprovalStatus
            )
            if status.pending is not None:
                return status.pending.request_id
        except Exception:  # the child has not started yet
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{wid} never asked for approval\n{logs()}")


async def test_approval_sent_while_the_worker_is_dead_runs_the_action_once(
    client: Client, settings: Settings, procs: ProcessSet
) -> None:
    settings = settings.model_copy(
        update={"remediation": "on", "policy": Path("examples/policy.yaml").resolve()}
    )
    first = procs.start_worker(settings)
    await wait_until_polling(client, first)
    run = await client.start_workflow(
        "PipelineRun",
        PipelineRunInput(pipeline=SLOW),
        id=f"pipeline/slow_report/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )
    wid = f"remediation/{run.id}/crunch"
    request_id = await waiting_request(client, wid, 60, procs.logs)

    kill_group(first.process)
    await asyncio.to_thread(first.process.wait, 10)
    assert first.process.returncode == -9
    # No worker runs: the signal lands in history all the same.
    await client.get_workflow_handle(wid).signal(
        "approve",
        ApprovalDecision(request_id=request_id, approver="alice", params={"timeout_seconds": 10}),
    )

    second = procs.start_worker(settings)
    await wait_until_polling(client, second)
    final = await asyncio.wait_for(run.result(), 120)
    assert final.status == RunStatus.SUCCEEDED, procs.logs()
    assert final.tasks["crunch"].status == TaskStatus.SUCCEEDED
    assert final.tasks["crunch"].remediation_action == "tune"

    history = await client.get_workflow_handle(wid).fetch_history()
    executions = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "execute_remediation"
    ]
    assert len(executions) == 1
    audit = AuditLog(Database(settings.resolved_database_url), settings.resolved_audit_log)
    kinds = [e.kind for e in audit.entries() if e.workflow_id == wid]
    assert kinds == ["plan", "verdict", "approval", "execution", "outcome"]
    assert audit.verify().intact
