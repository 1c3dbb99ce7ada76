"""The functions an expression may call (see :mod:`activities.tasks.expressions`).

Each takes positional arguments only and, unless its documentation says otherwise, returns
``None`` for a ``None`` first argument. :data:`FUNCTIONS` is the table the compiler checks
calls against.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

MAX_TEXT_LENGTH = 1_000_000
"""Longest string or list an expression may build (``"x" * 10 ** 9`` is refused)."""

MAX_REGEX_PATTERN = 1000
MAX_REGEX_INPUT = 100_000


def _need_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}() needs a string, got {type(value).__name__} {value!r:.40}")
    return value


def check_size(value: Any) -> Any:
    """``value`` itself, unless it is a string or list longer than :data:`MAX_TEXT_LENGTH`.

    Raises:
        ValueError: The value is too long.
    """
    if isinstance(value, str | list) and len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"result longer than {MAX_TEXT_LENGTH:,} items is not allowed")
    return value


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CURRENCY = "$€£¥₹"


def to_number(value: Any) -> int | float | None:
    """Parse a number written for people: ``"$1,234.50"``, ``"-3"``, ``"(12.00)"``, ``"1e3"``.

    Returns an ``int`` when the text has no decimal point or exponent, else a ``float``;
    ``None`` for ``None`` or a blank string.

    Raises:
        ValueError: The text is not a number.
        TypeError: The value is neither a number nor a string.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("to_number() does not accept a boolean")
    if isinstance(value, int | float):
        return value
    text = _need_str("to_number", value).strip()
    if not text:
        return None
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1].strip()
    sign = ""
    if text[:1] in "+-":
        sign, text = text[0], text[1:].lstrip()
    text = text.lstrip(_CURRENCY).strip()
    cleaned = sign + text.replace(",", "").replace("_", "").replace(" ", "")
    if not _NUMBER.fullmatch(cleaned):
        raise ValueError(f"to_number() cannot read {value!r} as a number")
    number: int | float = int(cleaned) if cleaned.lstrip("+-").isdigit() else float(cleaned)
    return -number if negative else number


def _parse_datetime(value: Any, name: str) -> datetime:
    if isinstance(value, bool):
        raise TypeError(f"{name}() does not accept a boolean")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError):
            raise ValueError(f"{name}() got {value!r}, out of range for epoch seconds") from None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = _need_str(name, value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{name}() cannot read {value!r}; use ISO 8601 such as '2026-11-20' or "
                "'2026-11-20T08:00:00Z'"
            ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_datetime(value: Any) -> str | None:
    """ISO date/timestamp or epoch seconds → ISO timestamp in UTC (naive means UTC)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _parse_datetime(value, "to_datetime").isoformat()


def to_date(value: Any) -> str | None:
    """ISO date/timestamp or epoch seconds → ``"YYYY-MM-DD"`` (UTC date of a timestamp)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _parse_datetime(value, "to_date").date().isoformat()


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a user pattern once, refusing very long ones.

    Raises:
        ValueError: The pattern is too long or invalid.
    """
    if len(pattern) > MAX_REGEX_PATTERN:
        raise ValueError(f"regex pattern longer than {MAX_REGEX_PATTERN} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


def _regex_subject(name: str, value: Any) -> str:
    text = _need_str(name, value)
    if len(text) > MAX_REGEX_INPUT:
        raise ValueError(f"{name}() input longer than {MAX_REGEX_INPUT:,} characters")
    return text


def _regex_match(value: Any, pattern: Any) -> bool | None:
    if value is None:
        return None
    subject = _regex_subject("regex_match", value)
    return compile_regex(_need_str("regex_match", pattern)).fullmatch(subject) is not None


def _regex_search(value: Any, pattern: Any) -> str | None:
    if value is None:
        return None
    subject = _regex_subject("regex_search", value)
    found = compile_regex(_need_str("regex_search", pattern)).search(subject)
    if found is None:
        return None
    return found.group(1) if found.re.groups else found.group(0)


def _present(args: Sequence[Any]) -> list[Any]:
    """The non-None values of the arguments, or of the one list argument."""
    items = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    return [item for item in items if item is not None]


def _min(*args: Any) -> Any:
    items = _present(args)
    return min(items) if items else None


def _max(*args: Any) -> Any:
    items = _present(args)
    return max(items) if items else None


def _sum(values: Any) -> Any:
    if values is None:
        return None
    if not isinstance(values, list):
        raise TypeError(f"sum() needs a list, got {type(values).__name__}")
    return sum(v for v in values if v is not None)


def _int(value: Any) -> int | None:
    number = to_number(value) if isinstance(value, str) else value
    return None if number is None else int(number)


def _float(value: Any) -> float | None:
    number = to_number(value) if isinstance(value, str) else value
    return None if number is None else float(number)


def to_text(value: Any) -> str | None:
    """Text of a value: booleans as ``true``/``false``, lists and objects as JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _round(value: Any, digits: Any = None) -> Any:
    if value is None:
        return None
    return round(value) if digits is None else round(value, digits)


def _replace(value: Any, old: Any, new: Any) -> str | None:
    if value is None:
        return None
    text, old_s, new_s = (_need_str("replace", v) for v in (value, old, new))
    # Check the size before building it: replace() can multiply a string's length.
    hits = text.count(old_s) if old_s else len(text) + 1
    if len(text) + hits * (len(new_s) - len(old_s)) > MAX_TEXT_LENGTH:
        raise ValueError(f"result longer than {MAX_TEXT_LENGTH:,} characters is not allowed")
    return text.replace(old_s, new_s)


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        return _need_str("contains", item) in container
    return item in container


def _concat(*args: Any) -> str:
    return check_size("".join(to_text(a) or "" for a in args))  # type: ignore[no-any-return]


def _split(value: Any, sep: Any = None, maxsplit: Any = -1) -> list[str] | None:
    if value is None:
        return None
    return _need_str("split", value).split(sep, maxsplit)


def _join(items: Any, sep: Any = "") -> str | None:
    if items is None:
        return None
    if not isinstance(items, list):
        raise TypeError(f"join() needs a list, got {type(items).__name__}")
    parts = [to_text(item) or "" for item in items if item is not None]
    return check_size(_need_str("join", sep).join(parts))  # type: ignore[no-any-return]


def _null_safe(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(first: Any, *rest: Any) -> Any:
        return None if first is None else func(first, *rest)

    return wrapper


def _text_method(name: str) -> Callable[..., Any]:
    def method(value: Any, *args: Any) -> Any:
        if value is None:
            return None
        return getattr(_need_str(name, value), name)(*(_need_str(name, a) for a in args))

    return method


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    # name: (implementation, min args, max args or None for any number)
    "len": (_null_safe(len), 1, 1),
    "str": (to_text, 1, 1),
    "int": (_int, 1, 1),
    "float": (_float, 1, 1),
    "bool": (bool, 1, 1),
    "round": (_round, 1, 2),
    "abs": (_null_safe(abs), 1, 1),
    "min": (_min, 1, None),
    "max": (_max, 1, None),
    "sum": (_sum, 1, 1),
    "lower": (_text_method("lower"), 1, 1),
    "upper": (_text_method("upper"), 1, 1),
    "strip": (_text_method("strip"), 1, 2),
    "replace": (_replace, 3, 3),
    "startswith": (_text_method("startswith"), 2, 2),
    "endswith": (_text_method("endswith"), 2, 2),
    "contains": (_contains, 2, 2),
    "coalesce": (lambda *args: next((a for a in args if a is not None), None), 1, None),
    "concat": (_concat, 1, None),
    "split": (_split, 1, 3),
    "join": (_join, 1, 2),
    "to_number": (to_number, 1, 1),
    "to_date": (to_date, 1, 1),
    "to_datetime": (to_datetime, 1, 1),
    "regex_match": (_regex_match, 2, 2),
    "regex_search": (_regex_search, 2, 2),
}
"""The functions an expression may call."""

ALLOWED = (
    "Allowed: field names, literals, + - * / // % **, comparisons (== != < <= > >= in, "
    "not in, is None), and/or/not, 'x if cond else y', a.b, a[i], a[i:j] and the functions "
    + ", ".join(sorted(FUNCTIONS))
    + "."
)
