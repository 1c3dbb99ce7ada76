"""PipelineRun on the real Temporal dev server with a real worker and database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.storage import Database
from models.db import TaskAttemptRow, TaskOutputRow
from models.runs import (
    CancelRunRequest,
    CancelRunResult,
    PipelineRunInput,
    PipelineRunState,
    RunStatus,
    TaskStatus,
)
from models.settings import Settings
from workers.worker import MendlineWorker


async def start_run(
    client: Client, settings: Settings, workflow_id: str, run_input: PipelineRunInput
) -> WorkflowHandle[Any, PipelineRunState]:
    return await client.start_workflow(
        "PipelineRun",
        run_input,
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )


async def run_pipeline(
    client: Client, settings: Settings, workflow_id: str, pipeline: dict[str, Any], **kwargs: Any
) -> PipelineRunState:
    """Run to the end; return the final state whether the run succeeded or failed."""
    handle = await start_run(
        client, settings, workflow_id, PipelineRunInput(pipeline=pipeline, **kwargs)
    )
    try:
        return await handle.result()
    except WorkflowFailureError:
        return await handle.query("state", result_type=PipelineRunState)


def overlap(a: Any, b: Any) -> bool:
    return bool(a.started_at < b.ended_at and b.started_at < a.ended_at)


async def test_outputs_flow_downstream_and_into_run_outputs(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "flow",
        "params": {"greeting": "hello"},
        "tasks": [
            {
                "name": "a",
                "type": "noop",
                "params": {"rows": [1, 2, 3], "word": "{{ params.greeting }}"},
            },
            {
                "name": "b",
                "type": "noop",
                "depends_on": ["a"],
                "params": {
                    "got": "{{ tasks.a.output.rows }}",
                    "msg": "{{ tasks.a.output.word }} world",
                },
            },
        ],
        "outputs": {"rows": "{{ tasks.b.output.got }}", "msg": "{{ tasks.b.output.msg }}"},
    }
    state = await run_pipeline(client, settings, workflow_id, pipeline, params={"greeting": "hi"})
    assert state.status == RunStatus.SUCCEEDED
    assert state.outputs == {"rows": [1, 2, 3], "msg": "hi world"}
    assert all(t.status == TaskStatus.SUCCEEDED and t.attempts == 1 for t in state.tasks.values())
    assert state.tasks["a"].mode == "local"  # noop is pure: auto → local activity


async def test_tasks_start_when_their_own_dependencies_finish(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    # a (short) → b ; c (long) → d. b must not wait for c: no stage barrier.
    pipeline = {
        "name": "nobarrier",
        "tasks": [
            {"name": "a", "type": "sleep", "params": {"seconds": 0.1}},
            {"name": "b", "type": "sleep", "depends_on": ["a"], "params": {"seconds": 0.1}},
            {"name": "c", "type": "sleep", "params": {"seconds": 1.5}},
            {"name": "d", "type": "noop", "depends_on": ["c"]},
        ],
    }
    state = await run_pipeline(client, settings, workflow_id, pipeline)
    t = state.tasks
    assert state.status == RunStatus.SUCCEEDED
    assert t["b"].ended_at is not None and t["c"].ended_at is not None
    assert t["b"].ended_at < t["c"].ended_at
    assert overlap(t["a"], t["c"]) and overlap(t["b"], t["c"])


async def test_max_parallel_bounds_concurrency(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "serial",
        "tasks": [{"name": f"s{i}", "type": "sleep", "params": {"seconds": 0.2}} for i in range(3)],
    }
    state = await run_pipeline(client, settings, workflow_id, pipeline, max_parallel=1)
    tasks = list(state.tasks.values())
    assert state.status == RunStatus.SUCCEEDED
    assert not any(overlap(x, y) for i, x in enumerate(tasks) for y in tasks[i + 1 :])


async def test_retries_until_success_and_records_every_attempt(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "flaky",
        "tasks": [
            {
                "name": "shaky",
                "type": "fail",
                "mode": "activity",
                "params": {"message": "not yet", "succeed_on_attempt": 3},
                "retry": {"max_attempts": 5, "initial_interval": "100ms", "max_interval": "200ms"},
            },
        ],
    }
    state = await run_pipeline(client, settings, workflow_id, pipeline)
    assert state.status == RunStatus.SUCCEEDED
    assert state.tasks["shaky"].attempts == 3
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        rows = session.execute(
            select(TaskAttemptRow.attempt, TaskAttemptRow.status, TaskAttemptRow.error_type)
            .where(TaskAttemptRow.run_id == workflow_id)
            .order_by(TaskAttemptRow.attempt)
        ).all()
    db.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "FAILED", "InjectedFailure"),
        (2, "FAILED", "InjectedFailure"),
        (3, "SUCCEEDED", None),
    ]


async def test_permanent_failure_fails_run_and_skips_downstream_only(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "partial",
        "tasks": [
            {
                "name": "bad",
                "type": "fail",
                "params": {"message": "boom", "non_retryable": True, "error_type": "BadInput"},
            },
            {"name": "after_bad", "type": "noop", "depends_on": ["bad"]},
            {"name": "independent", "type": "sleep", "params": {"seconds": 0.3}},
            {"name": "after_independent", "type": "noop", "depends_on": ["independent"]},
        ],
    }
    handle = await start_run(client, settings, workflow_id, PipelineRunInput(pipeline=pipeline))
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PipelineFailed"
    assert "bad" in cause.message and "boom" in cause.message
    state = await handle.query("state", result_type=PipelineRunState)
    assert state.status == RunStatus.FAILED
    assert state.tasks["bad"].status == TaskStatus.FAILED
    assert state.tasks["bad"].attempts == 1
    assert state.tasks["bad"].error is not None and state.tasks["bad"].error.type == "BadInput"
    assert state.tasks["after_bad"].status == TaskStatus.UPSTREAM_FAILED
    assert state.tasks["independent"].status == TaskStatus.SUCCEEDED
    assert state.tasks["after_independent"].status == TaskStatus.SUCCEEDED


async def test_timeout_is_retried_then_reported(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "slow",
        "tasks": [
            {
                "name": "nap",
                "type": "sleep",
                "params": {"seconds": 5},
                "timeout": "500ms",
                "retry": {"max_attempts": 2, "initial_interval": "100ms"},
            }
        ],
    }
    state = await run_pipeline(client, settings, workflow_id, pipeline)
    assert state.status == RunStatus.FAILED
    nap = state.tasks["nap"]
    assert nap.error is not None and nap.error.type == "Timeout"
    assert nap.attempts == 2


async def test_unknown_pipeline_ref_fails_with_a_clear_error(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    handle = await start_run(
        client, settings, workflow_id, PipelineRunInput(pipeline_ref="no/such/pipeline.yaml")
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "PipelineNotFoundError"
    assert "no/such/pipeline.yaml" in cause.message


async def test_invalid_inline_spec_lists_every_problem(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "bad",
        "tasks": [
            {"name": "a", "type": "noopp"},
            {"name": "b", "type": "noop", "depends_on": ["c"]},
        ],
    }
    handle = await start_run(client, settings, workflow_id, PipelineRunInput(pipeline=pipeline))
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PipelineSpecError"
    assert "unknown task type 'noopp'" in cause.message and "did you mean 'noop'" in cause.message
    assert "unknown task 'c'" in cause.message


async def test_large_outputs_pass_by_reference(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    # `make` produces ~250 KB of JSON; only a reference to it may enter history.
    pipeline = {
        "name": "big",
        "tasks": [
            {
                "name": "make",
                "type": "python",
                "params": {"callable": "tests.support.tasks:make_rows", "kwargs": {"count": 2000}},
            },
            {
                "name": "count",
                "type": "transform",
                "depends_on": ["make"],
                "params": {
                    "records": "{{ tasks.make.output.rows }}",
                    "steps": [{"filter": "id % 2 == 0"}],
                },
            },
        ],
        "outputs": {"kept": "{{ tasks.count.output.count }}"},
    }
    state = await run_pipeline(client, settings, workflow_id, pipeline)
    assert state.status == RunStatus.SUCCEEDED
    assert state.outputs == {"kept": 1000}
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        stored = session.scalar(select(func.count()).select_from(TaskOutputRow))
    db.dispose()
    assert stored and stored >= 1
    # The downstream task's input in history carried a reference, not the rows.
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    largest = max(len(e.SerializeToString()) for e in history.events)
    assert largest < 20_000


async def test_cache_returns_stored_output_on_second_run(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "cached",
        "tasks": [
            {
                "name": "work",
                "type": "sleep",
                "params": {"seconds": 0.2},
                "cache": {"enabled": True, "ttl": "10m"},
            }
        ],
    }
    first = await run_pipeline(client, settings, workflow_id + "-1", pipeline)
    second = await run_pipeline(client, settings, workflow_id + "-2", pipeline)
    assert first.tasks["work"].cached is False
    assert second.tasks["work"].cached is True
    assert second.status == RunStatus.SUCCEEDED


async def test_cancel_update_stops_the_run(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "cancellable",
        "tasks": [
            {"name": "long", "type": "sleep", "params": {"seconds": 60}, "timeout": "2m"},
            {"name": "after", "type": "noop", "depends_on": ["long"]},
        ],
    }
    handle = await start_run(client, settings, workflow_id, PipelineRunInput(pipeline=pipeline))
    for _ in range(50):
        state = await handle.query("state", result_type=PipelineRunState)
        if state.tasks.get("long") and state.tasks["long"].status == TaskStatus.RUNNING:
            break
        await asyncio.sleep(0.1)
    answer = await handle.execute_update(
        "cancel",
        CancelRunRequest(reason="testing", requested_by="alice"),
        result_type=CancelRunResult,
    )
    assert answer.accepted and answer.cancelled_tasks == ["long"]
    final = await asyncio.wait_for(handle.result(), timeout=30)
    assert final.status == RunStatus.CANCELLED
    assert final.cancel_reason == "testing"
    assert final.tasks["long"].status == TaskStatus.CANCELLED
    assert final.tasks["after"].status == TaskStatus.CANCELLED
    # A closed workflow takes no updates at all: the server answers, nothing is written.
    with pytest.raises(RPCError) as closed:
        await handle.execute_update("cancel", CancelRunRequest(), result_type=CancelRunResult)
    assert "already completed" in str(closed.value)


async def test_second_cancel_is_rejected_by_the_validator(
    client: Client, settings: Settings, worker: MendlineWorker, workflow_id: str
) -> None:
    pipeline = {
        "name": "cancel-twice",
        "tasks": [{"name": "long", "type": "sleep", "params": {"seconds": 60}, "timeout": "2m"}],
    }
    handle = await start_run(client, settings, workflow_id, PipelineRunInput(pipeline=pipeline))
    await handle.execute_update("cancel", CancelRunRequest(), result_type=CancelRunResult)
    try:
        await handle.execute_update("cancel", CancelRunRequest(), result_type=CancelRunResult)
    except WorkflowUpdateFailedError as rejected:
        assert "already" in str(rejected.cause)
    except RPCError as closed:  # the run may already have closed in between
        assert "already completed" in str(closed)
    else:
        pytest.fail("a second cancel was accepted")
    assert (await handle.result()).status == RunStatus.CANCELLED
