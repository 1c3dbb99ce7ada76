"""Notifiers against real local receivers: an HTTP server capturing webhook and Slack POSTs,
and an aiosmtpd SMTP server capturing mail. No client library is mocked."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import socket
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from activities.alerting import (
    EmailNotifier,
    LogNotifier,
    NotifierRejectedError,
    NotifierUnavailableError,
    SlackNotifier,
    WebhookNotifier,
    as_application_error,
    deliver,
)
from models.alerts import (
    EmailNotifierSpec,
    Metric,
    ScopeKind,
    Severity,
    SlackNotifierSpec,
    WebhookNotifierSpec,
)
from models.incidents import Alert, AlertKind, Breach
from models.settings import Settings
from workers.cli.main import app

AT = datetime(2026, 11, 21, 12, 30, tzinfo=UTC)


def make_alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "kind": AlertKind.OPENED,
        "rule": "pipeline-errors",
        "fingerprint": "pipeline-errors{pipeline=orders}",
        "severity": Severity.CRITICAL,
        "metric": Metric.ERROR_RATE,
        "labels": {"pipeline": "orders"},
        "title": "[CRITICAL] pipeline-errors: error_rate > 0.2 on orders",
        "summary": "error_rate is 0.9 on pipeline orders (> 0.2) <&>",
        "breaches": [
            Breach(
                scope_kind=ScopeKind.PIPELINE,
                scope_name="orders",
                value=0.9,
                at=AT,
                since=AT,
                expected=0.2,
                reason="error_rate is 0.9 on pipeline orders (> 0.2)",
            )
        ],
        "at": AT,
        "incident_opened_at": AT,
        "notifiers": ["hook"],
        "incident_id": 7,
    }
    values.update(overrides)
    return Alert.model_validate(values)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- an HTTP receiver ----------------------------------------------------------------------------


@dataclass
class Receiver:
    """What the HTTP receiver got, and how it answers (per path)."""

    url: str
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    failures_before_success: dict[str, int] = field(default_factory=dict)

    def bodies(self, path: str) -> list[Any]:
        return [json.loads(body) for p, _, body in self.posts if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.posts.append((self.path, dict(self.headers), body))
                left = state.failures_before_success.get(self.path, 0)
                if left:
                    state.failures_before_success[self.path] = left - 1
            if self.path == "/reject":
                self._answer(400, "invalid_payload")
            elif self.path == "/slow":
                threading.Event().wait(2.0)
                self._answer(200, "late")
            elif left:
                self._answer(503, "busy")
            else:
                self._answer(200, "ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def webhook(url: str, name: str = "hook", **fields: Any) -> WebhookNotifier:
    return WebhookNotifier(name, WebhookNotifierSpec(type="webhook", url=url, **fields))


async def test_webhook_posts_the_alert_as_json(receiver: Receiver) -> None:
    notifier = webhook(receiver.url + "/hook", headers={"Authorization": "Bearer s3cret"})
    alert = make_alert()
    delivery = await notifier.send(alert)
    assert delivery.ok and delivery.attempts == 1 and delivery.detail == "HTTP 200"
    [(path, headers, body)] = receiver.posts
    assert path == "/hook"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer s3cret"
    sent = json.loads(body)
    assert sent == notifier.render(alert)
    assert sent["version"] == 1 and sent["kind"] == "opened"
    assert sent["fingerprint"] == "pipeline-errors{pipeline=orders}"
    assert sent["incident_id"] == 7
    assert sent["breaches"][0]["scope_name"] == "orders"
    assert "notifiers" not in sent


async def test_slack_posts_text_and_blocks(receiver: Receiver) -> None:
    notifier = SlackNotifier("team", SlackNotifierSpec(type="slack", url=receiver.url + "/slack"))
    await notifier.send(make_alert())
    [sent] = receiver.bodies("/slack")
    assert set(sent) == {"text", "blocks"}
    assert sent["text"].startswith(":rotating_light: [CRITICAL] pipeline-errors")
    header, section, context = sent["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].endswith("(&gt; 0.2) &lt;&amp;&gt;")  # mrkdwn escaping
    assert "`mendline incidents show 7`" in context["elements"][0]["text"]


async def test_a_flaky_endpoint_is_retried_until_it_answers(receiver: Receiver) -> None:
    receiver.failures_before_success["/flaky"] = 2
    delivery = await webhook(receiver.url + "/flaky").send(make_alert())
    assert delivery.ok and delivery.attempts == 3
    assert len(receiver.bodies("/flaky")) == 3


async def test_an_endpoint_that_is_down_raises_a_retryable_error_after_its_attempts() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(NotifierUnavailableError) as caught:
        await webhook(url, attempts=2).send(make_alert())
    assert caught.value.attempts == 2
    assert "gave up after 2 attempts: ConnectError" in str(caught.value)
    error = as_application_error(caught.value)
    assert error.type == "NotifierUnavailableError" and not error.non_retryable


async def test_a_slow_endpoint_times_out_instead_of_hanging(receiver: Receiver) -> None:
    with pytest.raises(NotifierUnavailableError, match="ReadTimeout"):
        await webhook(receiver.url + "/slow", timeout=0.2, attempts=1).send(make_alert())


async def test_a_refused_payload_is_final_and_not_retried(receiver: Receiver) -> None:
    with pytest.raises(NotifierRejectedError, match="HTTP 400 invalid_payload") as caught:
        await webhook(receiver.url + "/reject").send(make_alert())
    assert len(receiver.posts) == 1
    assert as_application_error(caught.value).non_retryable


async def test_log_notifier_writes_one_line_at_the_severity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mendline.alerts")
    delivery = await LogNotifier("log").send(make_alert())
    assert delivery.ok
    [record] = [r for r in caplog.records if r.name == "mendline.alerts"]
    assert record.levelno == logging.ERROR  # critical
    assert record.getMessage().startswith(
        "[CRITICAL] pipeline-errors: error_rate > 0.2 on orders |"
    )
    assert "fingerprint=pipeline-errors{pipeline=orders} incident=7" in record.getMessage()


async def test_deliver_reports_each_notifier_and_never_raises(receiver: Receiver) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    notifiers = {
        "up": webhook(receiver.url + "/up", "up"),
        "down": webhook(down, "down", attempts=1),
        "log": LogNotifier("log"),
    }
    alert = make_alert(notifiers=["up", "down", "log", "ghost"])
    results = await deliver(alert, notifiers)
    assert [(d.notifier, d.ok) for d in results] == [
        ("up", True),
        ("down", False),
        ("log", True),
        ("ghost", False),
    ]
    assert "ConnectError" in results[1].error
    assert results[3].error == "no notifier named 'ghost'"


# --- an SMTP receiver ----------------------------------------------------------------------------


@dataclass
class MailBox:
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    rcpt_reply: str | None = None


@pytest.fixture
def mailbox() -> Iterator[MailBox]:
    box = MailBox(port=free_port())

    class Handler:
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            if box.rcpt_reply:
                return box.rcpt_reply
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


def smtp_settings(port: int) -> Settings:
    return Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_from="mendline@ops.example")


def mailer(port: int, **fields: Any) -> EmailNotifier:
    spec = EmailNotifierSpec(type="email", to=["oncall@ops.example", "lead@ops.example"], **fields)
    return EmailNotifier("oncall", spec, smtp_settings(port))


async def test_email_is_delivered_to_every_recipient(mailbox: MailBox) -> None:
    delivery = await mailer(mailbox.port).send(make_alert())
    assert delivery.ok and delivery.detail == f"sent to 127.0.0.1:{mailbox.port}"
    [(sender, recipients, message)] = mailbox.messages
    assert sender == "mendline@ops.example"
    assert recipients == ["oncall@ops.example", "lead@ops.example"]
    assert message["Subject"] == "[mendline] [CRITICAL] pipeline-errors: error_rate > 0.2 on orders"
    assert message["X-Mendline-Fingerprint"] == "pipeline-errors{pipeline=orders}"
    body = message.get_content()
    assert "  - error_rate is 0.9 on pipeline orders (> 0.2) (since 2026-11-21 12:30 UTC)" in body
    assert "Details: mendline incidents show 7" in body


async def test_email_refused_for_good_is_final(mailbox: MailBox) -> None:
    mailbox.rcpt_reply = "550 5.1.1 no such mailbox"
    with pytest.raises(NotifierRejectedError, match="refused every recipient"):
        await mailer(mailbox.port).send(make_alert())
    assert mailbox.messages == []


async def test_email_deferred_is_retried_then_retryable(mailbox: MailBox) -> None:
    mailbox.rcpt_reply = "451 4.3.0 try again later"
    with pytest.raises(NotifierUnavailableError, match="gave up after 2 attempts") as caught:
        await mailer(mailbox.port, attempts=2).send(make_alert())
    assert caught.value.attempts == 2


async def test_email_with_the_server_down_is_retryable() -> None:
    with pytest.raises(NotifierUnavailableError, match="ConnectionRefusedError"):
        await mailer(free_port(), attempts=1).send(make_alert())


# --- mendline alerts test ------------------------------------------------------------------------


def write_rules(path: Path, hook: str, slack: str, smtp_to: str = "oncall@ops.example") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            notifiers:
              hook: {{type: webhook, url: "{hook}", attempts: 1}}
              team: {{type: slack, url: "{slack}"}}
              oncall: {{type: email, to: [{smtp_to}]}}
            rules:
              - name: pipeline-errors
                metric: error_rate
                scope: pipeline
                operator: ">"
                threshold: 0.2
                group_by: [pipeline]
                notifiers: [hook, team, oncall, log]
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mailbox: MailBox) -> None:
    for name in list(os.environ):
        if name.startswith("MENDLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENDLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MENDLINE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MENDLINE_SMTP_PORT", str(mailbox.port))
    monkeypatch.setenv("MENDLINE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("COLUMNS", "250")


def test_alerts_test_sends_through_every_notifier_of_the_rule(
    cli_env: None, receiver: Receiver, mailbox: MailBox, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path / "alerts.yaml", receiver.url + "/hook", receiver.url + "/slack")
    result = CliRunner().invoke(
        app, ["alerts", "test", "pipeline-errors", "--rules", str(rules), "--json"]
    )
    assert result.exit_code == 0, result.output
    deliveries = json.loads(result.stdout)
    assert [(d["notifier"], d["ok"]) for d in deliveries] == [
        ("hook", True),
        ("team", True),
        ("oncall", True),
        ("log", True),
    ]
    [hook] = receiver.bodies("/hook")
    assert hook["kind"] == "test" and hook["title"] == "[TEST] pipeline-errors: test alert"
    assert hook["fingerprint"] == "pipeline-errors{pipeline=test}"
    [slack] = receiver.bodies("/slack")
    assert "[TEST] pipeline-errors" in slack["text"]
    [(_, recipients, message)] = mailbox.messages
    assert recipients == ["oncall@ops.example"]
    assert "[TEST] pipeline-errors" in message["Subject"]


def test_alerts_test_exits_1_and_names_the_notifier_that_failed(
    cli_env: None, receiver: Receiver, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    rules = write_rules(tmp_path / "alerts.yaml", down, receiver.url + "/slack")
    result = CliRunner().invoke(app, ["alerts", "test", "pipeline-errors", "--rules", str(rules)])
    assert result.exit_code == 1
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert any("hook" in row and "failed" in row and "ConnectError" in row for row in rows), (
        result.output
    )
    assert any("team" in row and "delivered" in row for row in rows), result.output
    assert len(receiver.bodies("/slack")) == 1
