"""PII and secret redaction: nothing personal or secret reaches a prompt.

Every string an agent puts into a prompt (error messages, task parameters, incident
summaries) goes through :func:`redact` first. What is replaced, each by a
``[REDACTED:<kind>]`` marker:

=================  ================================================================
``password``       passwords in URLs (``scheme://user:secret@host``)
``secret``         values of secret-looking keys: ``password=``, ``token:``,
                   ``api_key=``, ``client_secret``…, in query strings, logs and
                   JSON-ish text (the key stays, so the message still makes sense)
``token``          ``Bearer``/``Basic`` credentials, OpenAI-style ``sk-…`` keys,
                   GitHub/Slack tokens, JWTs
``aws_key``        AWS access key ids (``AKIA…``/``ASIA…``)
``email``          e-mail addresses
``card``           payment card numbers (13–19 digits that pass the Luhn check)
``phone``          phone numbers (``+`` and a country code, or the usual national
                   groupings like ``(555) 123-4567`` / ``555-123-4567``)
=================  ================================================================

Regular expressions rather than a library: the known PII libraries (presidio, scrubadub)
pull in spaCy models that would have to be downloaded at run time; these patterns cover
the secrets that actually show up in Mendline's error messages and are unit-tested.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SECRET_KEYS = (
    r"pass(?:word|wd)?|pwd|secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token"
    r"|id[_-]?token|auth[_-]?token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"
    r"|private[_-]?key|session[_-]?id|signature|sig|credentials?"
)
_KEY_NAMES = re.compile(rf"^(?:.*[_-])?(?:{_SECRET_KEYS})$", re.IGNORECASE)

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)(?P<pw>[^\s@/]+)(?=@)", re.I)
_AUTH_HEADER = re.compile(r"\b(?P<head>(?:Bearer|Basic|Token)\s+)(?P<tok>[A-Za-z0-9._~+/=-]{8,})")
_KEY_VALUE = re.compile(
    rf"""(?P<head>(?<![A-Za-z0-9])["']?(?:[A-Za-z0-9]+[_-])*(?:{_SECRET_KEYS})["']?\s*[=:]\s*["']?)"""
    r"""(?P<val>(?!\[REDACTED)[^\s&,;"'}\]]+)""",
    re.IGNORECASE,
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_API_KEY = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpors]-[A-Za-z0-9-]{10,})"
)
_AWS_KEY = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD_CANDIDATE = re.compile(r"(?<![\d.-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # international
    r"|\(\d{3}\)\s?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567
    r")(?![\w-])"
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (payment card numbers do)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
        return "[REDACTED:card]"
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with secrets and personal data replaced by ``[REDACTED:<kind>]`` markers.

    Order matters: credentials inside URLs and key/value pairs go first (they may look like
    e-mails or numbers), cards before phones (a card number has phone-like groups).
    """
    if not text:
        return text
    text = _URL_PASSWORD.sub(r"\g<head>[REDACTED:password]", text)
    text = _AUTH_HEADER.sub(r"\g<head>[REDACTED:token]", text)
    text = _JWT.sub("[REDACTED:token]", text)
    text = _API_KEY.sub("[REDACTED:token]", text)
    text = _AWS_KEY.sub("[REDACTED:aws_key]", text)
    text = _KEY_VALUE.sub(r"\g<head>[REDACTED:secret]", text)
    text = _EMAIL.sub("[REDACTED:email]", text)
    text = _CARD_CANDIDATE.sub(_card, text)
    return _PHONE.sub("[REDACTED:phone]", text)


def redact_value(value: Any, *, key: str = "") -> Any:
    """A JSON-like value with every string redacted and secret-named keys' values hidden."""
    if key and _KEY_NAMES.match(key) and value not in (None, "", [], {}):
        return "[REDACTED:secret]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
