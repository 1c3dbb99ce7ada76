"""PII and secrets never reach a prompt: what redaction removes, and what it leaves alone."""

from __future__ import annotations

import pytest

from activities.agent import redact, redact_context, redact_value
from activities.agent.redaction import luhn_valid
from models.remediation import FailureContext


@pytest.mark.parametrize(
    ("text", "secret", "marker"),
    [
        ("contact jane.doe+ops@example.co.uk about it", "jane.doe+ops@example.co.uk", "email"),
        ("call +1 415 555 0134 now", "+1 415 555 0134", "phone"),
        ("call +44 20 7946 0958", "+44 20 7946 0958", "phone"),
        ("phone (555) 123-4567", "(555) 123-4567", "phone"),
        ("phone 555-123-4567.", "555-123-4567", "phone"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111", "card"),
        ("card 5500-0000-0000-0004", "5500-0000-0000-0004", "card"),
        ("card=378282246310005", "378282246310005", "card"),
        ("Authorization: Bearer abc.DEF-123_456~xyz", "abc.DEF-123_456~xyz", "token"),
        (
            "key sk-proj-AbCdEfGhIjKlMnOpQrStUv123456 leaked",
            "sk-proj-AbCdEfGhIjKlMnOpQrStUv123456",
            "token",
        ),
        (
            "github ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "token",
        ),
        ("aws AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE", "aws_key"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "eyJhbGciOiJIUzI1NiJ9",
            "token",
        ),
        ("postgresql://etl:hunter2@db.internal:5432/x", "hunter2", "password"),
        ("GET https://api.example.com/orders?api_key=abc123&page=2", "abc123", "secret"),
        ("GET /login?user=bob&password=s3cr3t!", "s3cr3t!", "secret"),
        ('{"client_secret": "very-secret-value"}', "very-secret-value", "secret"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI",
            "secret",
        ),
        ("X-Auth-Token: 0a1b2c3d4e5f", "0a1b2c3d4e5f", "secret"),
    ],
)
def test_secrets_and_pii_are_redacted(text: str, secret: str, marker: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert f"[REDACTED:{marker}]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "GET https://api.example.com/orders returned HTTP 429 Too Many Requests (Retry-After: 60)",
        "selector 'p.price_color' matched nothing on 20 of 20 pages",
        "1 of 3 rules failed: not_null(email): 2 rows failed, e.g. id=17",
        "ran at 2026-03-02T10:15:00+00:00 for 300s on 10.0.3.7:5432",
        "order 1234567890123 has amount 1299.99",  # 13 digits, not Luhn-valid
        "version 7 was promoted; 210 records",
        "token bucket refilled",  # the word alone is no secret
    ],
)
def test_ordinary_error_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


def test_structured_values_are_redacted_by_key_and_content() -> None:
    params = {
        "url": "https://u:pw@api.example.com/x?token=t0k",
        "headers": {"Authorization": "Basic dXNlcjpwYXNzd29yZA==", "Accept": "json"},
        "password": "plain",
        "api_key": 12345,
        "records": [{"email": "a@b.io", "n": 1}],
    }
    redacted = redact_value(params)
    text = str(redacted)
    for secret in ("pw@", "t0k", "dXNlcjpwYXNzd29yZA==", "plain", "12345", "a@b.io"):
        assert secret not in text
    assert redacted["headers"]["Accept"] == "json"
    assert redacted["records"][0]["n"] == 1


def test_a_failure_context_is_redacted_before_any_prompt() -> None:
    context = FailureContext(
        task="t",
        error_type="HttpStatusError",
        message="401 for bob@example.com with Bearer abcdefghijk",
        params={"password": "x", "url": "https://example.com/?sig=zz99"},
    )
    safe = redact_context(context)
    dumped = safe.model_dump_json()
    assert "bob@example.com" not in dumped and "abcdefghijk" not in dumped
    assert "zz99" not in dumped and '"x"' not in dumped
    assert context.message.startswith("401 for bob@")  # the original is untouched
