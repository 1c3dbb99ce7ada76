"""The e-mail notifier: a plain-text mail through the SMTP server of the settings.

Uses the standard library's :mod:`smtplib` in a thread (one short connection per alert) rather
than adding an async SMTP client: alerts are rare and the thread is bounded by the timeout.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from activities.alerting.errors import NotifierRejectedError
from activities.alerting.notifiers import AttemptFailed, with_retries
from models.alerts import EmailNotifierSpec
from models.incidents import Alert, Delivery
from models.settings import Settings


class EmailNotifier:
    """Mails the alert to ``spec.to`` through ``MENDLINE_SMTP_HOST``:``MENDLINE_SMTP_PORT``."""

    type = "email"

    def __init__(self, name: str, spec: EmailNotifierSpec, settings: Settings) -> None:
        self.name = name
        self.spec = spec
        self._settings = settings

    def render(self, alert: Alert) -> EmailMessage:
        """The message: subject from the title, a plain-text body with every breach."""
        message = EmailMessage()
        message["Subject"] = f"{self.spec.subject_prefix} {alert.title}".strip()
        message["From"] = self._settings.smtp_from
        message["To"] = ", ".join(self.spec.to)
        message["Date"] = format_datetime(alert.at)
        message["Message-ID"] = make_msgid(domain="mendline")
        message["X-Mendline-Fingerprint"] = alert.fingerprint
        lines = [alert.title, "", alert.summary, ""]
        if alert.breaches:
            lines.append("Breaching:")
            lines += [
                f"  - {b.reason} (since {b.since:%Y-%m-%d %H:%M UTC})" for b in alert.breaches
            ]
            lines.append("")
        lines.append(f"Rule: {alert.rule}")
        lines.append(f"Fingerprint: {alert.fingerprint}")
        if alert.incident_id is not None:
            lines.append(f"Details: mendline incidents show {alert.incident_id}")
        message.set_content("\n".join(lines) + "\n")
        return message

    async def send(self, alert: Alert) -> Delivery:
        message = self.render(alert)

        async def attempt() -> str:
            return await asyncio.to_thread(self._send_once, message)

        detail, attempts = await with_retries(self.name, self.spec.attempts, attempt)
        return Delivery(
            notifier=self.name, type=self.type, ok=True, attempts=attempts, detail=detail
        )

    def _send_once(self, message: EmailMessage) -> str:
        settings = self._settings
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        try:
            with smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=self.spec.timeout
            ) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_username:
                    password = (
                        settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                    )
                    smtp.login(settings.smtp_username, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifierRejectedError(
                self.name, f"{where} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            if all(code < 500 for code in codes):
                raise AttemptFailed(f"{where} deferred every recipient: {exc.recipients}") from exc
            raise NotifierRejectedError(
                self.name, f"{where} refused every recipient: {_recipients(exc.recipients)}"
            ) from exc
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            if 400 <= exc.smtp_code < 500:
                raise AttemptFailed(f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
            raise NotifierRejectedError(
                self.name, f"{where} refused the mail: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, dropped
            raise AttemptFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
        if refused:
            return f"sent to {where}; refused for {_recipients(refused)}"
        return f"sent to {where}"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _recipients(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{to} ({code} {_text(text)})" for to, (code, text) in refused.items())
