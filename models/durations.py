"""Human-friendly durations (``"30s"``, ``"5m"``, ``"1h30m"``, ``2.5``) as float seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> float:
    """Turn a number of seconds or a string such as ``"1h30m"`` into seconds.

    Raises:
        ValueError: The value is neither a non-negative number nor a duration string.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '5m' or '1h', got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, got {value}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos == len(text) and text:
            return total
    raise ValueError(
        f"expected a duration such as 30, '30s', '5m', '1h30m' or '500ms', got {value!r}"
    )


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration in seconds that also accepts ``"30s"``-style strings."""
