"""``PipelineRun``: runs a pipeline's DAG of tasks as Temporal activities.

Each task starts as soon as its dependencies have succeeded (no stage barriers), bounded by
``max_parallel``. Short pure tasks run as local activities (no server round trip), the rest
as regular activities with their own retry policy, timeout and heartbeats. When a task fails
for good, its downstream tasks are marked ``UPSTREAM_FAILED`` while independent branches
finish; the run then fails with ``PipelineFailed`` so the Web UI shows it as failed.

Query ``state`` → :class:`PipelineRunState`; update ``cancel`` → :class:`CancelRunResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    RetryState,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from activities.pipeline import HEARTBEAT_PERIOD_SECONDS, PipelineActivities
    from models import errors
    from models.pipeline import TaskSpec, topological_order
    from models.remediation import (
        DecisionState,
        ExecutionResult,
        FailureContext,
        RemediationInput,
    )
    from models.runs import (
        TERMINAL_TASK_STATUSES,
        CancelRunRequest,
        CancelRunResult,
        ErrorInfo,
        PipelineRunInput,
        PipelineRunState,
        RecordRunInput,
        RenderOutputsInput,
        ResolvedPipeline,
        ResolvePipelineInput,
        RunStatus,
        RunTaskInput,
        RunTaskResult,
        TaskOutput,
        TaskState,
        TaskStatus,
    )
    from workflows.failures import run_failure

PIPELINE_ATTR = SearchAttributeKey.for_keyword("MendlinePipeline")
RUN_STATUS_ATTR = SearchAttributeKey.for_keyword("MendlineRunStatus")

AUTO_LOCAL_MAX_TIMEOUT_SECONDS = 300.0
"""``mode: auto`` runs a pure task locally only when its timeout is at most this."""

LONG_TASK_SECONDS = 60.0
"""Regular-activity tasks with a longer timeout must heartbeat (so a dead worker is noticed
within the heartbeat timeout instead of the task's whole timeout)."""

BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=10))
RESOLVE_RETRY = RetryPolicy(
    maximum_attempts=3,
    non_retryable_error_types=[errors.PIPELINE_SPEC_ERROR, errors.PIPELINE_NOT_FOUND],
)
PIPELINE_FAILED = "PipelineFailed"


@workflow.defn(name="PipelineRun")
class PipelineRun:
    """Run one pipeline to completion; see the module docstring."""

    @workflow.init
    def __init__(self, request: PipelineRunInput) -> None:
        self._state = PipelineRunState(
            run_id=request.run_id or workflow.info().workflow_id,
            params=dict(request.params),
        )
        self._cancel: CancelRunRequest | None = None
        self._running: dict[str, asyncio.Task[RunTaskResult]] = {}
        self._finished = False
        self._max_attempts: dict[str, int] = {}
        self._search_attributes = False

    @workflow.query(name="state")
    def state(self) -> PipelineRunState:
        """Every task's status, attempts, timing and error, and the run's outputs."""
        return self._state

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRunRequest) -> CancelRunResult:
        """Stop the run: running tasks are cancelled, pending ones never start."""
        self._cancel = request
        cancelled = list(self._running)
        for task in self._running.values():
            task.cancel()
        return CancelRunResult(
            accepted=True,
            cancelled_tasks=cancelled,
            message=f"cancelling {len(cancelled)} running task(s); pending tasks will not start",
        )

    @cancel.validator
    def _validate_cancel(self, request: CancelRunRequest) -> None:
        if self._finished:
            raise ValueError(
                f"run {self._state.run_id} has already ended ({self._state.status.value})"
            )
        if self._cancel is not None:
            raise ValueError(f"run {self._state.run_id} is already being cancelled")

    @workflow.run
    async def run(self, request: PipelineRunInput) -> PipelineRunState:
        state = self._state
        state.started_at = workflow.now()
        info = workflow.info()
        try:
            resolved = await workflow.execute_local_activity_method(
                PipelineActivities.resolve_pipeline,
                ResolvePipelineInput(
                    run_id=state.run_id,
                    workflow_id=info.workflow_id,
                    pipeline_ref=request.pipeline_ref,
                    pipeline=request.pipeline,
                    params=request.params,
                    remediation=request.remediation,
                ),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=RESOLVE_RETRY,
                summary="resolve pipeline",
            )
        except ActivityError as err:
            state.status = RunStatus.FAILED
            state.error = _error_info(err)
            state.ended_at = workflow.now()
            self._finished = True
            raise ApplicationError(
                state.error.message, type=state.error.type, non_retryable=True
            ) from err

        spec = resolved.spec
        self._max_attempts = {task.name: task.retry.max_attempts for task in spec.tasks}
        state.pipeline = spec.name
        state.pipeline_version = spec.version
        state.params = resolved.params
        for task in spec.tasks:
            state.tasks[task.name] = TaskState(
                name=task.name,
                type=task.type,
                mode=self._mode(task, resolved),
                depends_on=list(task.depends_on),
            )
        self._search_attributes = resolved.search_attributes
        if self._search_attributes:
            workflow.upsert_search_attributes(
                [
                    PIPELINE_ATTR.value_set(spec.name),
                    RUN_STATUS_ATTR.value_set(RunStatus.RUNNING.value),
                ]
            )
        await self._record(resolved)

        try:
            outputs = await self._run_dag(resolved, request.max_parallel or resolved.max_parallel)
        except asyncio.CancelledError:
            # Cancelled through Temporal itself (`temporal workflow cancel`).
            self._cancel = self._cancel or CancelRunRequest(
                reason="workflow cancellation requested"
            )
            await asyncio.shield(self._drain())
            self._close(RunStatus.CANCELLED)
            await asyncio.shield(self._record(resolved))
            raise

        failed = [t for t in state.tasks.values() if t.status == TaskStatus.FAILED]
        if self._cancel is not None:
            self._close(RunStatus.CANCELLED)
            state.cancel_reason = self._cancel.reason
        elif failed:
            first = failed[0]
            state.error = ErrorInfo(
                type=PIPELINE_FAILED,
                message=f"task {first.name!r} failed: "
                + (f"{first.error.type}: {first.error.message}" if first.error else "unknown error")
                + (f" (and {len(failed) - 1} more failed task(s))" if len(failed) > 1 else ""),
                non_retryable=True,
            )
            self._close(RunStatus.FAILED)
        else:
            if spec.outputs:
                try:
                    state.outputs = await workflow.execute_local_activity_method(
                        PipelineActivities.render_outputs,
                        RenderOutputsInput(
                            run_id=state.run_id,
                            outputs=spec.outputs,
                            params=state.params,
                            upstream=outputs,
                        ),
                        start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                        retry_policy=RetryPolicy(
                            maximum_attempts=3, non_retryable_error_types=[errors.TEMPLATE_ERROR]
                        ),
                        summary="render outputs",
                    )
                except ActivityError as err:
                    state.error = _error_info(err)
            self._close(RunStatus.FAILED if state.error else RunStatus.SUCCEEDED)
        await self._record(resolved)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if state.status == RunStatus.FAILED and state.error:
            raise ApplicationError(
                state.error.message,
                state.model_dump(mode="json"),
                type=state.error.type,
                non_retryable=True,
            )
        return state

    # --- DAG scheduling ------------------------------------------------------------------------

    async def _run_dag(
        self, resolved: ResolvedPipeline, max_parallel: int
    ) -> dict[str, TaskOutput]:
        spec = resolved.spec
        order = topological_order(spec)
        tasks = {task.name: task for task in spec.tasks}
        outputs: dict[str, TaskOutput] = {}
        pending = list(order)
        statuses = self._state.tasks
        while True:
            still_pending = []
            for name in pending:
                task = tasks[name]
                dep_states = [statuses[d].status for d in task.depends_on]
                if self._cancel is not None:
                    self._mark(name, TaskStatus.CANCELLED)
                elif any(s == TaskStatus.SKIPPED for s in dep_states):
                    self._mark(name, TaskStatus.SKIPPED)
                elif any(
                    s in TERMINAL_TASK_STATUSES and s != TaskStatus.SUCCEEDED for s in dep_states
                ):
                    self._mark(name, TaskStatus.UPSTREAM_FAILED)
                elif (
                    all(s == TaskStatus.SUCCEEDED for s in dep_states)
                    and len(self._running) < max_parallel
                ):
                    upstream = {n: outputs[n] for n in resolved.reads.get(name, []) if n in outputs}
                    self._running[name] = asyncio.create_task(
                        self._run_task(task, resolved, upstream)
                    )
                else:
                    still_pending.append(name)
            pending = still_pending
            if not self._running:
                break
            await workflow.wait(list(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
            for name, job in list(self._running.items()):
                if not job.done():
                    continue
                del self._running[name]
                self._finish_task(name, job, outputs)
        return outputs

    async def _run_task(
        self, task: TaskSpec, resolved: ResolvedPipeline, upstream: dict[str, TaskOutput]
    ) -> RunTaskResult:
        """Run a task; when it fails for good, let a ``Remediation`` decide what happens."""
        try:
            return await self._attempt(task, resolved, upstream)
        # A local activity's failure arrives as the ApplicationError itself.
        except (ActivityError, ApplicationError) as err:
            cause = err.cause if isinstance(err, ActivityError) else err
            if (
                resolved.remediation == "off"
                or self._cancel is not None
                or isinstance(cause, CancelledError)
                or not workflow.patched("remediation")
            ):
                raise
            executed = await self._remediate(task, resolved, err)
            if executed is None or executed.task_outcome not in ("retry", "skip"):
                raise
            if executed.task_outcome == "skip":
                raise TaskSkipped(executed.detail) from err
        # The remediation says: run it again (after a delay, with tuned parameters).
        delay = executed.parameters.get("delay_seconds")
        if delay:
            await workflow.sleep(float(delay), summary=f"backoff before retrying {task.name}")
        return await self._attempt(_tuned(task, executed.parameters), resolved, upstream)

    async def _remediate(
        self, task: TaskSpec, resolved: ResolvedPipeline, err: ActivityError | ApplicationError
    ) -> ExecutionResult | None:
        task_state = self._state.tasks[task.name]
        info = _error_info(err)
        source = task.params.get("source") if task.type == "scrape" else None
        wid = f"remediation/{self._state.run_id}/{task.name}"
        task_state.remediation = wid
        failure = FailureContext(
            kind="task",
            pipeline=resolved.spec.name,
            run_id=self._state.run_id,
            task=task.name,
            task_type=task.type,
            source=source if isinstance(source, str) else None,
            error_type=info.type,
            error_class=run_failure(err).error_class,
            message=info.message,
            attempts=_attempts(err, self._max_attempts.get(task.name, 1)),
            params=task.params,
            at=workflow.now(),
        )
        try:
            decision: DecisionState = await workflow.execute_child_workflow(
                "Remediation",
                RemediationInput(
                    failure=failure,
                    environment=resolved.environment,
                    dry_run=resolved.remediation == "dry-run",
                ),
                id=wid,
                result_type=DecisionState,
                static_summary=f"remediate {resolved.spec.name}/{task.name}: {info.type}",
            )
        except ChildWorkflowError as exc:
            task_state.remediation_outcome = f"the remediation failed: {exc.cause or exc}"
            return None
        executed = decision.executed
        task_state.remediation_action = executed.action.value if executed else None
        task_state.remediation_outcome = decision.outcome
        return executed

    async def _attempt(
        self, task: TaskSpec, resolved: ResolvedPipeline, upstream: dict[str, TaskOutput]
    ) -> RunTaskResult:
        task_state = self._state.tasks[task.name]
        task_state.status = TaskStatus.RUNNING
        task_state.started_at = workflow.now()
        request = RunTaskInput(
            run_id=self._state.run_id,
            pipeline=resolved.spec.name,
            task=task,
            params=resolved.params,
            upstream=upstream,
        )
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=task.retry.initial_interval),
            backoff_coefficient=task.retry.backoff_coefficient,
            maximum_interval=timedelta(seconds=task.retry.max_interval),
            maximum_attempts=task.retry.max_attempts,
            non_retryable_error_types=[
                *task.retry.non_retryable_errors,
                *errors.NON_RETRYABLE_TASK_ERRORS,
            ],
        )
        summary = f"{task.name} ({task.type})"
        if task_state.mode == "local":
            # No per-task summary here: each summary is one more payload through the workflow
            # sandbox, about a sixth of a short local task's cost. Local tasks are still named
            # in the `state` query and in telemetry.
            return await workflow.execute_local_activity_method(
                PipelineActivities.run_task,
                request,
                start_to_close_timeout=timedelta(seconds=task.timeout),
                retry_policy=retry,
            )
        heartbeat = task.heartbeat_timeout
        if heartbeat is None and task.timeout > LONG_TASK_SECONDS:
            heartbeat = HEARTBEAT_PERIOD_SECONDS * 3
        return await workflow.execute_activity_method(
            PipelineActivities.run_task,
            request,
            start_to_close_timeout=timedelta(seconds=task.timeout),
            heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
            retry_policy=retry,
            summary=summary,
        )

    def _finish_task(
        self, name: str, job: asyncio.Task[RunTaskResult], outputs: dict[str, TaskOutput]
    ) -> None:
        task_state = self._state.tasks[name]
        task_state.ended_at = workflow.now()
        if task_state.started_at is not None:
            task_state.duration_ms = (
                task_state.ended_at - task_state.started_at
            ).total_seconds() * 1000
        if job.cancelled():
            task_state.status = TaskStatus.CANCELLED
            return
        err = job.exception()
        if err is None:
            result = job.result()
            outputs[name] = result.output
            task_state.status = TaskStatus.SUCCEEDED
            task_state.attempts = result.attempt
            task_state.cached = result.cached
            task_state.records_in = result.records_in
            task_state.records_out = result.records_out
            return
        if isinstance(err, ActivityError) and isinstance(err.cause, CancelledError):
            task_state.status = TaskStatus.CANCELLED
            return
        if isinstance(err, TaskSkipped):
            task_state.status = TaskStatus.SKIPPED
            return
        task_state.status = TaskStatus.FAILED
        task_state.error = _error_info(err)
        task_state.attempts = _attempts(err, self._max_attempts.get(name, 1))

    def _mark(self, name: str, status: TaskStatus) -> None:
        self._state.tasks[name].status = status

    def _mode(self, task: TaskSpec, resolved: ResolvedPipeline) -> str:
        if task.mode == "local":
            return "local"
        if task.mode == "activity":
            return "activity"
        pure = task.type in resolved.local_types
        return "local" if pure and task.timeout <= AUTO_LOCAL_MAX_TIMEOUT_SECONDS else "activity"

    async def _drain(self) -> None:
        for job in self._running.values():
            job.cancel()
        for name, job in list(self._running.items()):
            # The outcome is read from the finished task by _finish_task.
            with contextlib.suppress(BaseException):
                await job
            self._finish_task(name, job, {})
        self._running.clear()
        for task in self._state.tasks.values():
            if task.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
                task.status = TaskStatus.CANCELLED

    def _close(self, status: RunStatus) -> None:
        self._state.status = status
        self._state.ended_at = workflow.now()
        self._finished = True
        if self._search_attributes:
            workflow.upsert_search_attributes([RUN_STATUS_ATTR.value_set(status.value)])

    async def _record(self, resolved: ResolvedPipeline) -> None:
        await workflow.execute_local_activity_method(
            PipelineActivities.record_run,
            RecordRunInput(
                state=self._state,
                workflow_id=workflow.info().workflow_id,
                spec_sha256=resolved.spec_sha256,
            ),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
            summary="record run",
        )


class TaskSkipped(Exception):
    """A remediation decided to skip the task (and its downstream tasks)."""


def _tuned(task: TaskSpec, parameters: dict[str, Any]) -> TaskSpec:
    """The task with a remediation's ``tune`` parameters applied."""
    changes: dict[str, Any] = {}
    if "timeout_seconds" in parameters:
        changes["timeout"] = float(parameters["timeout_seconds"])
    if "max_attempts" in parameters:
        changes["retry"] = task.retry.model_copy(
            update={"max_attempts": int(parameters["max_attempts"])}
        )
    if "batch_size" in parameters and "batch_size" in task.params:
        changes["params"] = {**task.params, "batch_size": int(parameters["batch_size"])}
    return task.model_copy(update=changes) if changes else task


def _error_info(err: BaseException) -> ErrorInfo:
    cause: BaseException = err.cause if isinstance(err, ActivityError) and err.cause else err
    if isinstance(cause, ApplicationError):
        return ErrorInfo(
            type=cause.type or "ApplicationError",
            message=cause.message,
            non_retryable=cause.non_retryable,
        )
    if isinstance(cause, TimeoutError):
        kind = cause.type.name if cause.type is not None else "UNKNOWN"
        return ErrorInfo(type="Timeout", message=f"activity timed out ({kind}): {cause.message}")
    return ErrorInfo(type=type(cause).__name__, message=str(cause))


def _attempts(err: BaseException, max_attempts: int) -> int:
    """How many attempts a failed task made, from the error's details or its retry state."""
    if not isinstance(err, ActivityError):
        return 1
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        detail: Any = cause.details[0]
        if isinstance(detail, dict) and isinstance(detail.get("attempt"), int):
            return int(detail["attempt"])
    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return max_attempts
    return 1
