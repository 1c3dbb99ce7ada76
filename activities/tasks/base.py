"""The task-handler interface and its registry.

A handler turns one task's rendered params into an output. Built-in handlers live beside
this module; third-party ones are discovered through the ``mendline.tasks`` entry-point
group (the entry point loads a :class:`TaskHandler` subclass or instance)::

    [project.entry-points."mendline.tasks"]
    geocode = "my_package.tasks:GeocodeHandler"

Errors:
    TaskError
    ├── TaskConfigError       params are wrong for the handler (never retried)
    ├── DataValidationError   a ``validate`` rule failed (never retried)
    ├── ExpressionError       a transform expression is invalid or failed (never retried)
    └── HttpStatusError       an error status; retried unless a 4xx other than 408/425/429
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import httpx

from models import errors
from models.settings import Settings

log = logging.getLogger(__name__)


class TaskError(Exception):
    """Base of the errors a handler raises on purpose.

    Attributes:
        type_name: Error type recorded in telemetry and matched by retry policies.
        non_retryable: When true, Temporal does not retry the attempt. A class default
            that an instance may override (``HttpStatusError`` decides by its status), so
            read it from the raised instance.
        details: Structured context shown with the error.
    """

    type_name: ClassVar[str] = "TaskError"
    non_retryable: bool = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class TaskConfigError(TaskError):
    """The task's params do not fit its handler: say which param and how to fix it."""

    type_name = errors.TASK_CONFIG_ERROR
    non_retryable = True


class DataValidationError(TaskError):
    """A data-quality rule failed; ``details`` carries the rule and failing examples."""

    type_name = errors.DATA_VALIDATION_ERROR
    non_retryable = True


class ExpressionError(TaskError):
    """A transform expression could not be parsed or failed on a record."""

    type_name = errors.EXPRESSION_ERROR
    non_retryable = True


class HttpStatusError(TaskError):
    """An HTTP request got an error status."""

    type_name = errors.HTTP_STATUS_ERROR

    def __init__(self, message: str, status: int, **details: Any) -> None:
        super().__init__(message, status=status, **details)
        self.status = status
        self.non_retryable = not self.retryable

    @property
    def retryable(self) -> bool:
        return not (400 <= self.status < 500 and self.status not in (408, 425, 429))


@dataclass
class TaskContext:
    """What a handler may use besides its params.

    Attributes:
        run_id: The pipeline run.
        pipeline: Pipeline name.
        task: Task name.
        attempt: Attempt number, from 1.
        settings: Worker settings.
        database_url: URL of Mendline's own database (the default target of ``load``/``sql``).
        http: Shared HTTP client (client-side retries off: Temporal retries).
        heartbeat: Report progress; keeps long regular activities alive and lets
            cancellation reach them. A no-op in local activities.
        resources: Extra dependencies wired by the worker (by name), for handlers added by
            later features (scrapers, LLM providers).
    """

    run_id: str
    pipeline: str
    task: str
    attempt: int
    settings: Settings
    database_url: str
    http: httpx.AsyncClient
    heartbeat: Callable[..., None] = lambda *details: None
    resources: Mapping[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"mendline.task.{self.task}")


@dataclass
class HandlerOutput:
    """A handler's result with its record counts (plain return values are fine too)."""

    value: Any
    records_in: int | None = None
    records_out: int | None = None


class TaskHandler:
    """Base class of task handlers.

    Subclasses set ``type_name`` and implement :meth:`run`. ``version`` enters the cache
    key: bump it when the handler's output for the same params changes. ``pure`` marks a
    short handler without I/O that ``mode: auto`` runs as a local activity.
    """

    type_name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    pure: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Validate params before running (after templates are rendered).

        Raises:
            TaskConfigError: Naming the bad param and what it should be.
        """

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        """Do the work; return a JSON-serialisable value or a :class:`HandlerOutput`."""
        raise NotImplementedError


class HandlerRegistry:
    """Task type name → handler."""

    def __init__(self, handlers: Iterable[TaskHandler] = ()) -> None:
        self._handlers: dict[str, TaskHandler] = {}
        for handler in handlers:
            self.register(handler)

    def register(self, handler: TaskHandler) -> None:
        if not handler.type_name:
            raise ValueError(f"{type(handler).__name__} has no type_name")
        self._handlers[handler.type_name] = handler

    def get(self, type_name: str) -> TaskHandler:
        try:
            return self._handlers[type_name]
        except KeyError:
            raise TaskConfigError(
                f"unknown task type {type_name!r}; known types: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def pure_types(self) -> list[str]:
        return sorted(name for name, h in self._handlers.items() if h.pure)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._handlers

    def load_entry_points(self, group: str = "mendline.tasks") -> None:
        """Add handlers published by installed packages under ``group``."""
        for entry in entry_points(group=group):
            try:
                loaded = entry.load()
                handler = loaded() if isinstance(loaded, type) else loaded
                if not isinstance(handler, TaskHandler):
                    raise TypeError(f"{entry.value} is not a TaskHandler")
                if not handler.type_name:
                    handler.type_name = entry.name  # type: ignore[misc]
                self.register(handler)
            except Exception:
                log.exception(
                    "could not load task handler entry point %r (%s)", entry.name, entry.value
                )


def require(
    params: Mapping[str, Any], name: str, kind: type | tuple[type, ...], task_type: str
) -> Any:
    """Return ``params[name]`` checked against ``kind``, or raise a clear TaskConfigError."""
    if name not in params or params[name] is None:
        raise TaskConfigError(f"{task_type} task needs param {name!r}")
    value = params[name]
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise TaskConfigError(
            f"{task_type} task param {name!r} must be {expected}, "
            f"got {type(value).__name__}: {value!r:.80}"
        )
    return value
