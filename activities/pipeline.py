"""Activities of the ``PipelineRun`` workflow: resolve a spec, run a task, record the run.

One :class:`PipelineActivities` instance is built per worker with its dependencies
injected (settings, database, handler registry, HTTP client); its methods are registered
as activities. ``run_task`` is registered once and the workflow calls it either as a
regular activity or as a local activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.heartbeat import heartbeat_while
from activities.storage import Database, utcnow
from activities.tasks.base import (
    HandlerOutput,
    HandlerRegistry,
    TaskContext,
    TaskError,
)
from activities.telemetry import TelemetryWriter
from models import errors
from models.pipeline import (
    PipelineSpecError,
    load_pipeline_text,
    parse_pipeline,
    template_reads,
)
from models.runs import (
    OutputRef,
    RecordRunInput,
    RenderOutputsInput,
    ResolvedPipeline,
    ResolvePipelineInput,
    RunStatus,
    RunTaskInput,
    RunTaskResult,
    TaskOutput,
)
from models.settings import Settings
from models.templates import TemplateError, iter_strings, references, render_value

HEARTBEAT_PERIOD_SECONDS = 10.0
"""How often the runner heartbeats on behalf of a long regular-activity task."""

MAX_PIPELINE_FILE_BYTES = 5 * 1024 * 1024


class PipelineActivities:
    """The activities of pipeline runs, sharing one set of clients per worker."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        registry: HandlerRegistry,
        http: httpx.AsyncClient,
        telemetry: TelemetryWriter,
        resources: Mapping[str, Any] | None = None,
        search_attributes: bool = True,
    ) -> None:
        self.settings = settings
        self.db = database
        self.registry = registry
        self.http = http
        self.telemetry = telemetry
        self.resources = dict(resources or {})
        self.search_attributes = search_attributes
        self.worker_name = f"{settings.task_queue}@{socket.gethostname()}:{os.getpid()}"

    # --- resolve ---------------------------------------------------------------------------

    @activity.defn(name="resolve_pipeline")
    async def resolve_pipeline(self, request: ResolvePipelineInput) -> ResolvedPipeline:
        """Load (for a ``pipeline_ref``) and validate a pipeline, and merge its params.

        Raises:
            ApplicationError: ``PipelineNotFoundError`` or ``PipelineSpecError``, never
                retried, with every problem located.
        """
        try:
            if request.pipeline_ref is not None:
                path = self._find_pipeline_file(request.pipeline_ref)
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
                spec = load_pipeline_text(
                    text, source=str(request.pipeline_ref), known_types=self.registry.names()
                )
                source = str(path)
            else:
                spec = parse_pipeline(
                    request.pipeline, source="inline pipeline", known_types=self.registry.names()
                )
                source = "inline"
            params = spec.resolve_params(request.params)
        except PipelineSpecError as exc:
            raise ApplicationError(
                str(exc), type=errors.PIPELINE_SPEC_ERROR, non_retryable=True
            ) from exc
        return ResolvedPipeline(
            spec=spec,
            params=params,
            spec_sha256=spec.sha256(),
            source=source,
            max_parallel=spec.max_parallel or self.settings.max_parallel,
            local_types=self.registry.pure_types(),
            reads=template_reads(spec),
            search_attributes=self.search_attributes,
            remediation=request.remediation or self.settings.remediation,
            environment=self.settings.environment,
        )

    def _find_pipeline_file(self, ref: str) -> Path:
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.is_file():
            raise ApplicationError(
                f"pipeline file {ref!r} not found (looked at {path}; relative paths are resolved "
                f"against the worker's working directory {Path.cwd()}); pass an absolute path or "
                "an inline 'pipeline' instead",
                type=errors.PIPELINE_NOT_FOUND,
                non_retryable=True,
            )
        if path.stat().st_size > MAX_PIPELINE_FILE_BYTES:
            raise ApplicationError(
                f"pipeline file {path} is larger than {MAX_PIPELINE_FILE_BYTES} bytes",
                type=errors.PIPELINE_SPEC_ERROR,
                non_retryable=True,
            )
        return path

    # --- run a task ------------------------------------------------------------------------

    @activity.defn(name="run_task")
    async def run_task(self, request: RunTaskInput) -> RunTaskResult:
        """Run one task: render its params, consult the cache, call the handler, record it.

        Every attempt is written to telemetry (``task_attempts``) when it starts and when it
        ends. Outputs larger than ``settings.large_output_bytes`` are stored in the database
        and returned by reference.
        """
        info = activity.info()
        task = request.task
        mode = "local" if info.is_local else "activity"
        started = utcnow()
        t0 = time.perf_counter()
        attempt_row: dict[str, Any] = {
            "run_id": request.run_id,
            "pipeline": request.pipeline,
            "task": task.name,
            "task_type": task.type,
            "attempt": info.attempt,
            "mode": mode,
            "status": "RUNNING",
            "cached": False,
            "started_at": started,
            "ended_at": None,
            "duration_ms": None,
            "error_type": None,
            "error_message": None,
            "records_in": None,
            "records_out": None,
            "worker": self.worker_name,
        }
        if not info.is_local:
            # Regular activities may run long and die with their worker: record the start.
            self.telemetry.record(**attempt_row)
        try:
            result = await self._run_task(request, info.attempt, info.is_local)
        except BaseException as exc:
            error_type, message, non_retryable = _describe(exc)
            attempt_row.update(
                status="CANCELLED" if isinstance(exc, asyncio.CancelledError) else "FAILED",
                ended_at=utcnow(),
                duration_ms=(time.perf_counter() - t0) * 1000,
                error_type=error_type,
                error_message=message[:4000],
            )
            with contextlib.suppress(Exception):
                await self._record_end(attempt_row, info.is_local)
            if attempt_row["status"] == "FAILED":
                seconds = attempt_row["duration_ms"] / 1000
                metrics.observe_task(request.pipeline, task.type, seconds, False, error_type)
            if isinstance(exc, ApplicationError | asyncio.CancelledError) or not isinstance(
                exc, Exception
            ):
                raise
            raise ApplicationError(
                message,
                {"attempt": info.attempt, "task": task.name},
                type=error_type,
                non_retryable=non_retryable,
            ) from exc
        attempt_row.update(
            status="SUCCEEDED",
            cached=result.cached,
            ended_at=utcnow(),
            duration_ms=(time.perf_counter() - t0) * 1000,
            records_in=result.records_in,
            records_out=result.records_out,
        )
        await self._record_end(attempt_row, info.is_local)
        metrics.observe_task(request.pipeline, task.type, attempt_row["duration_ms"] / 1000, True)
        return result

    async def _record_end(self, row: dict[str, Any], is_local: bool) -> None:
        """Record an attempt's end. A regular activity may run on another worker than the
        one that will record the finished run, so its end is written before it returns;
        local activities run beside the workflow and are flushed by ``record_run``."""
        self.telemetry.record(**row)
        if not is_local:
            await asyncio.to_thread(self.telemetry.flush)

    async def _run_task(self, request: RunTaskInput, attempt: int, is_local: bool) -> RunTaskResult:
        task = request.task
        handler = self.registry.get(task.type)
        context = {
            "params": request.params,
            "tasks": {
                name: {"output": await self._load_output(output)}
                for name, output in request.upstream.items()
            },
            "run": {"id": request.run_id, "pipeline": request.pipeline, "attempt": attempt},
        }
        try:
            params = render_value(task.params, context)
        except TemplateError as exc:
            raise ApplicationError(
                f"task {task.name!r}: {exc}", type=errors.TEMPLATE_ERROR, non_retryable=True
            ) from exc
        handler.check_params(params)

        cache_key = None
        if task.cache.enabled:
            cache_key = _cache_key(task.type, handler.version, params)
            hit = await asyncio.to_thread(self.db.cache_get, cache_key)
            if hit is not None:
                cached_output, cached_records = hit
                return RunTaskResult(
                    output=TaskOutput.model_validate(cached_output),
                    attempt=attempt,
                    cached=True,
                    records_out=cached_records,
                )

        ctx = TaskContext(
            run_id=request.run_id,
            pipeline=request.pipeline,
            task=task.name,
            attempt=attempt,
            settings=self.settings,
            database_url=self.db.url,
            http=self.http,
            heartbeat=(lambda *d: None) if is_local else activity.heartbeat,
            resources=self.resources,
        )
        period = None if is_local else _heartbeat_period(activity.info().heartbeat_timeout)
        raw = await self._call_handler(handler.run(params, ctx), heartbeat_period=period)
        out = raw if isinstance(raw, HandlerOutput) else HandlerOutput(raw)
        records_in = out.records_in if out.records_in is not None else _count_records(params)
        records_out = out.records_out if out.records_out is not None else _count_records(out.value)
        output = await self._store_output(out.value)
        if cache_key is not None:
            await asyncio.to_thread(
                self.db.cache_put,
                cache_key,
                task.type,
                output.model_dump(mode="json"),
                records_out,
                task.cache.ttl,
            )
        return RunTaskResult(
            output=output, attempt=attempt, records_in=records_in, records_out=records_out
        )

    async def _call_handler(self, work: Any, *, heartbeat_period: float | None) -> Any:
        """Await the handler; for regular activities, heartbeat on its behalf meanwhile."""
        if heartbeat_period is None:
            return await work
        return await heartbeat_while(work, heartbeat_period)

    async def _store_output(self, value: Any) -> TaskOutput:
        try:
            payload = json.dumps(value, separators=(",", ":"), default=_json_default).encode()
        except (TypeError, ValueError) as exc:
            raise ApplicationError(
                f"task output is not JSON-serialisable: {exc}",
                type=errors.TASK_CONFIG_ERROR,
                non_retryable=True,
            ) from exc
        if len(payload) <= self.settings.large_output_bytes:
            return TaskOutput(value=json.loads(payload))
        digest = hashlib.sha256(payload).hexdigest()
        await asyncio.to_thread(self.db.put_output, digest, payload)
        return TaskOutput(
            ref=OutputRef(
                sha256=digest, size=len(payload), preview=payload[:200].decode(errors="replace")
            )
        )

    async def _load_output(self, output: TaskOutput) -> Any:
        if output.ref is None:
            return output.value
        return await asyncio.to_thread(self.db.get_output, output.ref.sha256)

    # --- bookkeeping -----------------------------------------------------------------------

    @activity.defn(name="record_run")
    async def record_run(self, request: RecordRunInput) -> None:
        """Insert or update the run's row in ``pipeline_runs`` (idempotent).

        A finished run is stored after its queued telemetry, so whoever sees the run
        finished also finds all of its attempts.
        """
        if request.state.status != RunStatus.RUNNING:
            await asyncio.to_thread(self.telemetry.flush)
        await asyncio.to_thread(
            self.db.record_run, request.state, request.workflow_id, request.spec_sha256
        )

    @activity.defn(name="render_outputs")
    async def render_outputs(self, request: RenderOutputsInput) -> dict[str, Any]:
        """Evaluate the pipeline's ``outputs`` templates against the finished tasks."""
        needed = {
            name
            for _, text in iter_strings(request.outputs)
            for root, name in references(text)
            if root == "tasks" and name
        }
        context = {
            "params": request.params,
            "tasks": {
                name: {"output": await self._load_output(out)}
                for name, out in request.upstream.items()
                if name in needed
            },
            "run": {"id": request.run_id},
        }
        try:
            rendered = render_value(request.outputs, context)
        except TemplateError as exc:
            raise ApplicationError(
                f"pipeline outputs: {exc}", type=errors.TEMPLATE_ERROR, non_retryable=True
            ) from exc
        result: dict[str, Any] = json.loads(json.dumps(rendered, default=_json_default))
        return result


def _heartbeat_period(heartbeat_timeout: timedelta | None) -> float:
    """Heartbeat often enough for the task's heartbeat timeout (a third of it), at most every
    ``HEARTBEAT_PERIOD_SECONDS``."""
    if heartbeat_timeout is None or heartbeat_timeout.total_seconds() <= 0:
        return HEARTBEAT_PERIOD_SECONDS
    return max(0.05, min(HEARTBEAT_PERIOD_SECONDS, heartbeat_timeout.total_seconds() / 3))


def _describe(exc: BaseException) -> tuple[str, str, bool]:
    """Error type name, message and non-retryable flag of an exception from a handler."""
    if isinstance(exc, ApplicationError):
        return exc.type or "ApplicationError", exc.message, exc.non_retryable
    if isinstance(exc, asyncio.CancelledError):
        return errors.TASK_CANCELLED, "the task was cancelled", True
    if isinstance(exc, TaskError):
        return exc.type_name, str(exc), exc.non_retryable
    return type(exc).__name__, str(exc) or repr(exc), False


def _cache_key(task_type: str, version: str, params: Any) -> str:
    text = json.dumps(
        {"type": task_type, "version": version, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        default=_json_default,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _count_records(value: Any) -> int | None:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, Mapping):
        records = value.get("records")
        if isinstance(records, list):
            return len(records)
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
