"""Errors of alert delivery.

::

    AlertingError
    └── NotifierError              one notifier could not deliver one alert
        ├── NotifierUnavailableError   down, timed out, 5xx/429, SMTP 4xx: retryable
        └── NotifierRejectedError      refused the alert (4xx, SMTP 5xx, bad login): final

A notifier tries a few times itself (short backoff, per-attempt timeout) before raising, so
an activity that calls it can hand the retryable kind to Temporal's retry policy.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from models.alerts import NOTIFIER_REJECTED_ERROR, NOTIFIER_UNAVAILABLE_ERROR


class AlertingError(Exception):
    """Base of the errors of :mod:`activities.alerting`."""


class NotifierError(AlertingError):
    """A notifier could not deliver an alert.

    Attributes:
        notifier: The notifier's name in the rules file.
        attempts: How many times it tried.
        type_name: The ``ApplicationError`` type an activity raises it as.
        retryable: Whether trying again later may help.
    """

    type_name = "NotifierError"
    retryable = True

    def __init__(self, notifier: str, message: str, attempts: int = 1) -> None:
        self.notifier = notifier
        self.attempts = attempts
        super().__init__(f"notifier {notifier!r}: {message}")


class NotifierUnavailableError(NotifierError):
    """The endpoint is down, timed out or answered with a temporary failure."""

    type_name = NOTIFIER_UNAVAILABLE_ERROR
    retryable = True


class NotifierRejectedError(NotifierError):
    """The endpoint refused the alert; sending it again will not help."""

    type_name = NOTIFIER_REJECTED_ERROR
    retryable = False


def as_application_error(exc: NotifierError) -> ApplicationError:
    """The error an activity raises for ``exc`` (retryable or not, as ``exc`` says)."""
    return ApplicationError(str(exc), type=exc.type_name, non_retryable=not exc.retryable)
