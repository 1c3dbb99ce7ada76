"""Notifiers as declared in an alert rules file: where alerts go.

``webhook`` (JSON POST), ``slack`` (Slack-compatible incoming webhook), ``email`` (SMTP,
through the ``MENDLINE_SMTP_*`` settings) and ``log``; ``log`` is built in. Sending lives in
:mod:`activities.alerting.notifiers`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.durations import Seconds


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {value!r}")
    return value


class WebhookNotifierSpec(_Spec):
    """POST the alert as JSON to ``url``."""

    type: Literal["webhook"]
    url: str = Field(min_length=8, max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = Field(5.0, gt=0, le=60)
    attempts: int = Field(3, ge=1, le=10)

    _url = field_validator("url")(_check_url)


class SlackNotifierSpec(_Spec):
    """POST ``{"text", "blocks"}`` to a Slack-compatible incoming webhook."""

    type: Literal["slack"]
    url: str = Field(min_length=8, max_length=2000)
    timeout: Seconds = Field(5.0, gt=0, le=60)
    attempts: int = Field(3, ge=1, le=10)

    _url = field_validator("url")(_check_url)


class EmailNotifierSpec(_Spec):
    """Send a plain-text mail through the SMTP server of the ``MENDLINE_SMTP_*`` settings."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[mendline]"
    timeout: Seconds = Field(10.0, gt=0, le=120)
    attempts: int = Field(3, ge=1, le=10)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if "@" not in a or any(c.isspace() for c in a)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(map(repr, bad))}")
        return value


class LogNotifierSpec(_Spec):
    """Write the alert to Mendline's log (logger ``mendline.alerts``)."""

    type: Literal["log"]


NotifierSpec = Annotated[
    WebhookNotifierSpec | SlackNotifierSpec | EmailNotifierSpec | LogNotifierSpec,
    Field(discriminator="type"),
]

BUILTIN_NOTIFIERS: dict[str, LogNotifierSpec] = {"log": LogNotifierSpec(type="log")}
"""Notifiers every rules file has without declaring them."""
