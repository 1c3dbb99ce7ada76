"""Human-friendly durations in pipeline files: what they mean, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from models.durations import Seconds, parse_duration

EXPECTED_FORMS = "expected a duration such as 30, '30s', '5m', '1h30m' or '500ms'"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("1h 30m", 5400.0),
        (" 30s ", 30.0),
        ("0s", 0.0),
        ("2.5", 2.5),
        ("30", 30.0),
        (2.5, 2.5),
        (30, 30.0),
        (0, 0.0),
    ],
)
def test_duration_forms_become_seconds(text: Any, seconds: float) -> None:
    result = parse_duration(text)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_negative_numbers_are_refused_saying_why(value: float) -> None:
    with pytest.raises(ValueError, match=f"a duration cannot be negative, got {value}"):
        parse_duration(value)


@pytest.mark.parametrize(
    "text", ["-5s", "-5", "", "soon", "5x", "30S", "5M", "1h30", "30s5", "ms", "s"]
)
def test_junk_strings_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"{EXPECTED_FORMS}, got {text!r}"


@pytest.mark.parametrize("value", [None, [], {"seconds": 5}])
def test_values_of_other_types_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match=EXPECTED_FORMS):
        parse_duration(value)


def test_a_boolean_is_not_a_duration() -> None:
    # YAML turns `timeout: yes` into True, which Python would otherwise treat as 1 second.
    with pytest.raises(ValueError, match="got a boolean"):
        parse_duration(True)


@pytest.mark.parametrize("text", ["inf", "nan", "infinity"])
def test_infinite_and_nan_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=EXPECTED_FORMS):
        parse_duration(text)


class _Timed(BaseModel):
    timeout: Seconds


def test_seconds_fields_parse_in_models_and_report_the_field() -> None:
    assert _Timed(timeout="1h30m").timeout == 5400.0
    with pytest.raises(ValidationError) as caught:
        _Timed(timeout="soon")
    (error,) = caught.value.errors()
    assert error["loc"] == ("timeout",)
    assert "got 'soon'" in error["msg"]
