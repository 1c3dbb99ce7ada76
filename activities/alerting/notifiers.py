"""Notifiers: where alerts go — a generic JSON webhook, a Slack-compatible incoming webhook,
e-mail over SMTP (:mod:`activities.alerting.smtp`) and the log.

Every notifier has a pure ``render(alert)`` (the payload, testable without a network) and an
``async send(alert) -> Delivery``. ``send`` makes a few short attempts itself — each bounded
by the notifier's ``timeout``, with a backoff of ``BACKOFF_INITIAL`` doubling between them —
and then raises :class:`NotifierUnavailableError` (retryable: hand it to Temporal's retry
policy) or :class:`NotifierRejectedError` (the endpoint refused the alert; final). With the
defaults a dead endpoint costs at most 3 × 5 s + 1.5 s before ``send`` gives up, and it is
only ever called from the Monitor, never from a pipeline's tasks.

:func:`deliver` sends one alert through several notifiers at once and reports each outcome
instead of raising; the CLI's ``alerts test`` uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx

from activities.alerting.errors import (
    NotifierError,
    NotifierRejectedError,
    NotifierUnavailableError,
)
from models.alerts import (
    EmailNotifierSpec,
    LogNotifierSpec,
    NotifierSpec,
    RuleFile,
    Severity,
    SlackNotifierSpec,
    WebhookNotifierSpec,
)
from models.incidents import Alert, Delivery
from models.settings import Settings

log = logging.getLogger("mendline.alerts")

BACKOFF_INITIAL = 0.5
"""Seconds before a notifier's second attempt; doubles for each further attempt."""
BACKOFF_MAX = 4.0
"""Longest wait between two attempts."""
RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""4xx statuses that mean 'later', not 'never' (every 5xx is retried too)."""
PAYLOAD_VERSION = 1
"""Version of the webhook JSON body; bumped only for incompatible changes."""


class Notifier(Protocol):
    """What every notifier offers."""

    name: str
    type: str

    def render(self, alert: Alert) -> Any:
        """The payload that ``send`` would deliver for ``alert``."""
        ...

    async def send(self, alert: Alert) -> Delivery:
        """Deliver ``alert``; raises :class:`NotifierError` when it cannot."""
        ...


class AttemptFailed(Exception):
    """One attempt failed in a way another attempt may fix."""


async def with_retries(
    name: str, attempts: int, attempt: Callable[[], Awaitable[str]]
) -> tuple[str, int]:
    """Run ``attempt`` up to ``attempts`` times with exponential backoff.

    ``attempt`` returns a detail string on success, raises :class:`AttemptFailed` to be tried
    again and :class:`NotifierRejectedError` to stop at once.

    Returns:
        The detail of the successful attempt and how many attempts it took.

    Raises:
        NotifierUnavailableError: Every attempt failed transiently.
        NotifierRejectedError: An attempt was refused.
    """
    delay = BACKOFF_INITIAL
    last = ""
    for number in range(1, attempts + 1):
        try:
            return await attempt(), number
        except AttemptFailed as exc:
            last = str(exc)
            log.info("notifier %s: attempt %d of %d failed: %s", name, number, attempts, last)
        except NotifierRejectedError as exc:
            exc.attempts = number
            raise
        if number < attempts:
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
    raise NotifierUnavailableError(
        name, f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}: {last}", attempts
    )


# --- HTTP notifiers ---------------------------------------------------------------------------


class _HttpNotifier:
    """POSTs a JSON payload; shared by the webhook and Slack notifiers."""

    type = "http"

    def __init__(
        self,
        name: str,
        spec: WebhookNotifierSpec | SlackNotifierSpec,
        http: httpx.AsyncClient | None = None,
        user_agent: str = "Mendline alerts",
    ) -> None:
        self.name = name
        self.spec = spec
        self._http = http
        self._user_agent = user_agent

    def render(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        return {"User-Agent": self._user_agent}

    async def send(self, alert: Alert) -> Delivery:
        body = json.dumps(self.render(alert)).encode()
        headers = {"Content-Type": "application/json", **self._headers()}

        async def attempt(client: httpx.AsyncClient) -> str:
            try:
                response = await client.post(
                    self.spec.url, content=body, headers=headers, timeout=self.spec.timeout
                )
            except httpx.HTTPError as exc:  # connect refused, timeout, reset, bad response
                raise AttemptFailed(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
            text = response.text[:200].strip()
            status = response.status_code
            if status < 300:
                return f"HTTP {status}"
            if status >= 500 or status in RETRYABLE_STATUSES:
                raise AttemptFailed(f"HTTP {status} {text}".strip())
            raise NotifierRejectedError(
                self.name, f"{self.spec.url} refused the alert: HTTP {status} {text}".strip()
            )

        if self._http is not None:
            client = self._http
            detail, attempts = await with_retries(
                self.name, self.spec.attempts, lambda: attempt(client)
            )
        else:
            # Retries are ours (with backoff), so the transport's own stay off.
            transport = httpx.AsyncHTTPTransport(retries=0)
            async with httpx.AsyncClient(transport=transport) as own:
                detail, attempts = await with_retries(
                    self.name, self.spec.attempts, lambda: attempt(own)
                )
        return Delivery(
            notifier=self.name, type=self.type, ok=True, attempts=attempts, detail=detail
        )


class WebhookNotifier(_HttpNotifier):
    """A generic webhook: the alert as a JSON object (see :meth:`render`)."""

    type = "webhook"
    spec: WebhookNotifierSpec

    def render(self, alert: Alert) -> dict[str, Any]:
        """The JSON body: ``version``, ``text`` and every field of the alert."""
        body = alert.model_dump(mode="json", exclude={"notifiers"})
        return {"version": PAYLOAD_VERSION, "text": alert.title, **body}

    def _headers(self) -> dict[str, str]:
        return {**super()._headers(), **self.spec.headers}


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SLACK_EMOJI = {Severity.INFO: ":information_source:", Severity.WARNING: ":warning:"}


class SlackNotifier(_HttpNotifier):
    """A Slack-compatible incoming webhook (also Mattermost, Rocket.Chat, Discord's /slack)."""

    type = "slack"
    spec: SlackNotifierSpec

    def render(self, alert: Alert) -> dict[str, Any]:
        """``{"text": fallback, "blocks": [header, summary, context]}``."""
        emoji = SLACK_EMOJI.get(alert.severity, ":rotating_light:")
        context = [f"rule `{alert.rule}`", f"fingerprint `{alert.fingerprint}`"]
        if alert.incident_id is not None:
            context.append(f"`mendline incidents show {alert.incident_id}`")
        context.append(alert.at.strftime("%Y-%m-%d %H:%M:%S UTC"))
        summary = _slack_escape(alert.summary)[:2900] or "(no detail)"
        return {
            "text": f"{emoji} {_slack_escape(alert.title)}",
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": alert.title[:150], "emoji": True},
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": _slack_escape(" · ".join(context))}],
                },
            ],
        }


# --- log --------------------------------------------------------------------------------------

LOG_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}


class LogNotifier:
    """Writes the alert to the ``mendline.alerts`` logger (critical alerts at ERROR)."""

    type = "log"

    def __init__(self, name: str, spec: LogNotifierSpec | None = None) -> None:
        self.name = name
        self.spec = spec or LogNotifierSpec(type="log")

    def render(self, alert: Alert) -> str:
        """One line: title, summary and fingerprint."""
        incident = f" incident={alert.incident_id}" if alert.incident_id is not None else ""
        summary = alert.summary.replace("\n", " ")
        return f"{alert.title} | {summary} | fingerprint={alert.fingerprint}{incident}"

    async def send(self, alert: Alert) -> Delivery:
        log.log(LOG_LEVELS.get(alert.severity, logging.ERROR), "%s", self.render(alert))
        return Delivery(notifier=self.name, type=self.type, ok=True, attempts=1, detail="logged")


# --- building and delivering ------------------------------------------------------------------


def build_notifier(
    name: str,
    spec: NotifierSpec,
    settings: Settings,
    http: httpx.AsyncClient | None = None,
) -> Notifier:
    """The notifier ``spec`` describes.

    Args:
        name: Its name in the rules file.
        spec: Its spec.
        settings: Read for the SMTP server and the User-Agent.
        http: A shared client for webhooks (with transport retries off); one is made per
            send when None.
    """
    if isinstance(spec, WebhookNotifierSpec):
        return WebhookNotifier(name, spec, http, settings.user_agent)
    if isinstance(spec, SlackNotifierSpec):
        return SlackNotifier(name, spec, http, settings.user_agent)
    if isinstance(spec, EmailNotifierSpec):
        from activities.alerting.smtp import EmailNotifier

        return EmailNotifier(name, spec, settings)
    return LogNotifier(name, spec)


def build_notifiers(
    rule_file: RuleFile, settings: Settings, http: httpx.AsyncClient | None = None
) -> dict[str, Notifier]:
    """Every notifier of ``rule_file``, the built-in ``log`` included, by name."""
    from models.alerts import BUILTIN_NOTIFIERS

    specs: dict[str, NotifierSpec] = {**BUILTIN_NOTIFIERS, **rule_file.notifiers}
    return {name: build_notifier(name, spec, settings, http) for name, spec in specs.items()}


async def deliver(alert: Alert, notifiers: Mapping[str, Notifier]) -> list[Delivery]:
    """Send ``alert`` through each of its notifiers concurrently; never raises.

    Returns:
        One :class:`Delivery` per name in ``alert.notifiers``, in that order.
    """

    async def one(name: str) -> Delivery:
        notifier = notifiers.get(name)
        if notifier is None:
            return Delivery(
                notifier=name, type="?", ok=False, attempts=0, error=f"no notifier named {name!r}"
            )
        try:
            return await notifier.send(alert)
        except NotifierError as exc:
            return Delivery(
                notifier=name,
                type=notifier.type,
                ok=False,
                attempts=exc.attempts,
                error=str(exc),
            )

    return list(await asyncio.gather(*(one(name) for name in alert.notifiers)))
