"""Contracts of the ``PipelineRun`` workflow, its query and update, and its activities."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from models.pipeline import PipelineSpec, TaskSpec


class RunStatus(StrEnum):
    """Lifecycle of a pipeline run."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class TaskStatus(StrEnum):
    """Lifecycle of one task inside a run."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    """Skipped by a remediation (``skip``), or downstream of a skipped task."""


TERMINAL_TASK_STATUSES = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.UPSTREAM_FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.SKIPPED,
    }
)

RemediationMode = Literal["on", "off", "dry-run"]


class ErrorInfo(BaseModel):
    """An error as the user sees it: its type name, message and whether it was retried."""

    type: str
    message: str
    non_retryable: bool = False


class OutputRef(BaseModel):
    """A task output stored in the database, passed by reference to keep history small."""

    sha256: str
    size: int
    preview: str = ""


class TaskOutput(BaseModel):
    """What a task produced: either the value inline or a reference to the stored value."""

    value: Any = None
    ref: OutputRef | None = None


class TaskState(BaseModel):
    """Everything the ``state`` query shows about one task."""

    name: str
    type: str
    mode: str = "activity"
    depends_on: list[str] = Field(default_factory=list)
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    cached: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    records_in: int | None = None
    records_out: int | None = None
    error: ErrorInfo | None = None
    remediation: str | None = None
    """The ``Remediation`` workflow started when the task failed for good."""
    remediation_action: str | None = None
    remediation_outcome: str | None = None


class PipelineRunInput(BaseModel):
    """Input of ``PipelineRun``: a pipeline by reference (file) or inline, and its params.

    Exactly one of ``pipeline_ref`` and ``pipeline`` must be given.

    Attributes:
        pipeline_ref: Path of a YAML/JSON pipeline file, resolved by the worker.
        pipeline: The pipeline spec inline, as a mapping.
        params: Values for the pipeline's declared params.
        max_parallel: Bound on concurrently running tasks; default from the spec, then the
            worker's settings.
        run_id: Identifier recorded in telemetry; defaults to the workflow id.
        remediation: ``on``, ``off`` or ``dry-run`` (see the field).
    """

    pipeline_ref: str | None = None
    pipeline: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int | None = Field(None, ge=1, le=1000)
    run_id: str | None = None
    remediation: RemediationMode | None = None
    """What a task that fails for good starts: a ``Remediation`` (``on``), one that only
    says what it would do (``dry-run``), or nothing (``off``); default MENDLINE_REMEDIATION."""

    @model_validator(mode="after")
    def _one_source(self) -> PipelineRunInput:
        if (self.pipeline_ref is None) == (self.pipeline is None):
            raise ValueError(
                "give exactly one of 'pipeline_ref' (a file path) and 'pipeline' (inline spec)"
            )
        return self


class PipelineRunState(BaseModel):
    """The ``state`` query's answer, and (when the run ends) the workflow result."""

    run_id: str
    pipeline: str = ""
    pipeline_version: str = ""
    status: RunStatus = RunStatus.RUNNING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    cancel_reason: str | None = None

    def counts(self) -> dict[str, int]:
        """Number of tasks per status."""
        out: dict[str, int] = {}
        for task in self.tasks.values():
            out[task.status.value] = out.get(task.status.value, 0) + 1
        return out


PipelineRunResult = PipelineRunState


class CancelRunRequest(BaseModel):
    """Argument of the ``cancel`` update."""

    reason: str = Field("cancelled by request", max_length=1000)
    requested_by: str | None = Field(None, max_length=200)


class CancelRunResult(BaseModel):
    """Answer of the ``cancel`` update."""

    accepted: bool
    cancelled_tasks: list[str] = Field(default_factory=list)
    message: str = ""


# --- activity contracts ------------------------------------------------------------------------


class ResolvePipelineInput(BaseModel):
    """Input of the ``resolve_pipeline`` activity."""

    run_id: str
    workflow_id: str
    pipeline_ref: str | None = None
    pipeline: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    remediation: RemediationMode | None = None


class ResolvedPipeline(BaseModel):
    """A validated spec with its params merged over the defaults."""

    spec: PipelineSpec
    params: dict[str, Any]
    spec_sha256: str
    source: str
    max_parallel: int
    local_types: list[str] = Field(default_factory=list)
    reads: dict[str, list[str]] = Field(default_factory=dict)
    """For each task, the upstream tasks whose outputs its templates read."""
    search_attributes: bool = True
    """Whether the namespace has Mendline's search attributes (the worker checks at start)."""
    remediation: RemediationMode = "off"
    """The remediation mode in force (the run's, else the worker's MENDLINE_REMEDIATION)."""
    environment: str = "production"
    """The policy environment remediations are judged in (MENDLINE_ENVIRONMENT)."""


class RunTaskInput(BaseModel):
    """Input of the ``run_task`` activity (also run as a local activity)."""

    run_id: str
    pipeline: str
    task: TaskSpec
    params: dict[str, Any] = Field(default_factory=dict)
    upstream: dict[str, TaskOutput] = Field(default_factory=dict)


class RunTaskResult(BaseModel):
    """Result of ``run_task``."""

    output: TaskOutput
    attempt: int
    cached: bool = False
    records_in: int | None = None
    records_out: int | None = None


class RecordRunInput(BaseModel):
    """Input of ``record_run``: the run row as it stands (inserted or updated)."""

    state: PipelineRunState
    workflow_id: str
    spec_sha256: str = ""


class RenderOutputsInput(BaseModel):
    """Input of ``render_outputs``: output templates evaluated against the finished tasks."""

    run_id: str
    outputs: dict[str, Any]
    params: dict[str, Any]
    upstream: dict[str, TaskOutput]
