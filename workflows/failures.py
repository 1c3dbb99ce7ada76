"""Reading activity failures inside workflows: the :class:`RunFailure` an assessment needs."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from models.breakage import RunFailure


def run_failure(err: ActivityError | ApplicationError) -> RunFailure:
    """The failure of an activity as :func:`models.breakage.assess_run` reads it.

    The fetch layer puts its ``error_class`` in the first detail of the application error;
    an activity that timed out (no answer in time, or a dead worker's lost heartbeat) is a
    ``TimeoutError``. A local activity's failure arrives as the ``ApplicationError`` itself.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else None
        error_class = details.get("error_class") if isinstance(details, dict) else None
        return RunFailure(
            error_type=cause.type or "ApplicationError",
            error_class=error_class if isinstance(error_class, str) else None,
            message=cause.message,
        )
    if isinstance(cause, TimeoutError):
        return RunFailure(error_type="TimeoutError", message=str(cause))
    return RunFailure(error_type=type(cause or err).__name__, message=str(cause or err))


def failure_message(err: ActivityError) -> str:
    """``Type: message`` of an activity failure's cause."""
    failure = run_failure(err)
    return f"{failure.error_type}: {failure.message}"


def raise_if_cancelled(err: BaseException) -> None:
    """Re-raise ``err`` when it is the workflow's own cancellation arriving through an
    activity or child workflow (an ``ActivityError``/``ChildWorkflowError`` caused by
    ``CancelledError``): a handler that turns failures into results must not swallow a
    ``temporal workflow cancel`` and keep the workflow running."""
    if is_cancelled_exception(err):
        raise err
