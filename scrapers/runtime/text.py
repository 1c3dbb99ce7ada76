"""Text clean-up, typed value parsing and declarative transforms.

Part of the standalone runtime: standard library only, so ``scrapers.render`` can copy it
into a generated scraper module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_NUMBER_RE = re.compile(r"[-+]?\d(?:[\d.,'\u00a0\u202f ]*\d)?")
_SEPARATOR_CHARS = ":-=\u2013\u2014 \t"
_CURRENCY_SYMBOLS = (
    ("R$", "BRL"),
    ("A$", "AUD"),
    ("C$", "CAD"),
    ("HK$", "HKD"),
    ("US$", "USD"),
    ("$", "USD"),
    ("€", "EUR"),
    ("£", "GBP"),
    ("¥", "JPY"),
    ("₹", "INR"),
    ("₽", "RUB"),
    ("₩", "KRW"),
    ("₺", "TRY"),
    ("zł", "PLN"),
    ("kr", "SEK"),
)
_CURRENCY_CODE_RE = re.compile(
    r"\b(USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|CNY|INR|RUB|BRL|SEK|NOK|DKK|PLN|CZK|HUF|KRW|TRY|MXN|"
    r"HKD|SGD|ZAR)\b"
)
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH_RE = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}:\d{2}(?::\d{2})?))?"), "ymd"),
    (re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b"), "ymd"),
    (re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4})\b"), "dmy_or_mdy"),
    (re.compile(_MONTH_RE + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.I), "mdy"),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH_RE + r",?\s+(\d{4})\b", re.I), "dmy"),
    (re.compile(_MONTH_RE + r",?\s+(\d{4})\b", re.I), "my"),
    (re.compile(r"\b(\d{4})-(\d{1,2})\b"), "ym"),
    (re.compile(r"\b(1[5-9]\d\d|2[01]\d\d)\b"), "y"),
)


def clean_text(value: str) -> str:
    """Collapse whitespace runs (no-break spaces included) to one space and trim the ends."""
    return " ".join(value.translate(_INVISIBLE).split())


def strip_separator(value: str) -> str:
    """Remove a leading label separator (``:``, ``-``, ``=``, dashes) and spaces."""
    return value.lstrip(_SEPARATOR_CHARS).strip()


def parse_number(text: str) -> int | float | None:
    """Parse the first number in ``text``, reading ``1,234.5``, ``1.234,5`` and ``1 234``.

    A lone comma followed by exactly three digits is read as a thousands separator
    (``1,234`` → 1234); otherwise a lone comma is a decimal comma (``12,5`` → 12.5).
    """
    match = _NUMBER_RE.search(text)
    if match is None:
        return None
    raw = re.sub(r"['\u00a0\u202f ]", "", match.group(0))
    negative = raw.startswith("-")
    raw = raw.lstrip("+-")
    if "," in raw and "." in raw:
        decimal = "," if raw.rfind(",") > raw.rfind(".") else "."
        raw = raw.replace("." if decimal == "," else ",", "").replace(",", ".")
    elif "," in raw:
        head, _, tail = raw.rpartition(",")
        raw = raw.replace(",", "") if raw.count(",") > 1 or len(tail) == 3 else f"{head}.{tail}"
    elif raw.count(".") > 1:
        raw = raw.replace(".", "")
    try:
        number: int | float = float(raw) if "." in raw else int(raw)
    except ValueError:
        return None
    return -number if negative else number


def parse_price(text: str) -> tuple[int | float | None, str | None]:
    """Return the amount and the ISO currency code (if one is printed) of a price text."""
    amount = parse_number(text)
    code = _CURRENCY_CODE_RE.search(text)
    if code:
        return amount, code.group(1)
    for symbol, iso in _CURRENCY_SYMBOLS:
        if symbol in text:
            return amount, iso
    return amount, None


def parse_rating(text: str) -> float | None:
    """Read ``4.5 out of 5``, ``4/5``, ``★★★★☆`` or the first number as a rating."""
    stars = text.count("★")
    if stars and not any(char.isdigit() for char in text):
        return float(stars)
    number = parse_number(text)
    return None if number is None else float(number)


def parse_date(text: str) -> str | None:
    """Return the first date in ``text`` as ISO 8601, as precise as the text is.

    ``June 14, 2010`` → ``2010-06-14``, ``June 2010`` → ``2010-06``, ``2010`` → ``2010``.
    Numeric ``a/b/yyyy`` is read day-first when ``a`` > 12, else month-first (US style).
    """
    for pattern, order in _DATE_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        parts = match.groups()
        year, month, day = _date_parts(parts, order)
        if not 1 <= month <= 12 or not 0 <= day <= 31:
            continue
        if order == "y":
            return f"{year:04d}"
        if day == 0:
            return f"{year:04d}-{month:02d}"
        stamp = f"{year:04d}-{month:02d}-{day:02d}"
        if order == "ymd" and len(parts) > 3 and parts[3]:
            hour, minute, *second = (int(piece) for piece in parts[3].split(":"))
            stamp += f"T{hour:02d}:{minute:02d}:{(second or [0])[0]:02d}"
        return stamp
    return None


def _date_parts(parts: Sequence[str | None], order: str) -> tuple[int, int, int]:
    values = [part or "" for part in parts]
    if order == "ymd":
        return int(values[0]), int(values[1]), int(values[2])
    if order == "dmy_or_mdy":
        first, second = int(values[0]), int(values[1])
        day, month = (first, second) if first > 12 else (second, first)
        return int(values[2]), month, day
    if order == "mdy":
        return int(values[2]), _MONTHS[values[0].lower()], int(values[1])
    if order == "dmy":
        return int(values[2]), _MONTHS[values[1].lower()], int(values[0])
    if order == "my":
        return int(values[1]), _MONTHS[values[0].lower()], 0
    if order == "ym":
        return int(values[0]), int(values[1]), 0
    return int(values[0]), 1, 0


def resolve_url(value: str, base_url: str) -> str | None:
    """Resolve a link against the page's base URL; script and empty links give ``None``."""
    value = value.strip()
    if " " in value and value.rstrip().endswith(("w", "x")) and "," in value:
        value = value.split(",", 1)[0].split()[0]  # a srcset: keep its first candidate
    if not value or value.startswith(("javascript:", "#", "mailto:", "tel:")):
        return None
    return urljoin(base_url, value)


def coerce(value: str, field_type: str, base_url: str) -> Any:
    """Turn a cleaned string into the value of ``field_type`` (``None`` if it does not parse)."""
    if field_type == "text":
        return value
    if field_type == "number":
        return parse_number(value)
    if field_type == "price":
        return parse_price(value)[0]
    if field_type == "date":
        return parse_date(value)
    if field_type in ("url", "image"):
        return resolve_url(value, base_url)
    if field_type == "rating":
        return parse_rating(value)
    raise ValueError(f"unknown field type {field_type!r}")


Value = str | list[str] | None
"""A field value between transforms."""


def apply_transforms(value: Value, transforms: Sequence[Mapping[str, Any]]) -> Value:
    """Apply declarative transforms in order (see ``models.scraper.Transform``)."""
    for step in transforms:
        op = step["op"]
        if op == "default":
            if value is None or value == "" or value == []:
                value = step["value"]
            continue
        if value is None:
            return None
        if op == "split":
            parts = value if isinstance(value, list) else [value]
            value = [
                clean_text(piece)
                for part in parts
                for piece in re.split(step["pattern"], part)
                if clean_text(piece)
            ]
        elif op == "join":
            items = value if isinstance(value, list) else [value]
            value = (step.get("value") or ", ").join(items)
        elif isinstance(value, list):
            mapped = [_transform_one(item, step) for item in value]
            value = [item for item in mapped if item]
        else:
            value = _transform_one(value, step)
    return value


def _transform_one(value: str, step: Mapping[str, Any]) -> str | None:
    op = step["op"]
    argument = step.get("value")
    if op == "strip":
        return value.strip(argument) if argument else value.strip()
    if op == "collapse_whitespace":
        return clean_text(value)
    if op == "lower":
        return value.lower()
    if op == "upper":
        return value.upper()
    if op == "regex":
        match = re.search(step["pattern"], value)
        if match is None:
            return None
        found = match.group(int(step.get("group", 1)))
        return None if found is None else clean_text(found)
    if op == "replace":
        return re.sub(step["pattern"], argument or "", value)
    if op == "strip_prefix":
        return value[len(argument) :] if argument and value.startswith(argument) else value
    if op == "strip_suffix":
        return value[: -len(argument)] if argument and value.endswith(argument) else value
    if op == "to_number":
        number = parse_number(value)
        return None if number is None else str(number)
    raise ValueError(f"unknown transform {op!r}")
