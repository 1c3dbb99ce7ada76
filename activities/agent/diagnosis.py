"""What kind of failure this is: the first factor of the heuristic agent.

:func:`diagnose` weighs the signals a failure carries — its error type (strongest), the
fetch layer's error class, the HTTP status in the message, words in the message — into
points per :class:`FailureKind`, then lets the telemetry features turn a network failure
that has lasted for hours into an upstream outage. Every signal that counted is kept, in
words, for the plan's justification.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from models.remediation import FailureContext, Features


class FailureKind(StrEnum):
    """The failure kinds the playbook knows (each has a runbook)."""

    TRANSIENT_NETWORK = "transient_network"
    RATE_LIMITED = "rate_limited"
    AUTH_EXPIRED = "auth_expired"
    BLOCKED = "blocked"
    UPSTREAM_OUTAGE = "upstream_outage"
    SCHEMA_DRIFT = "schema_drift"
    LAYOUT_CHANGE = "layout_change"
    BAD_DATA = "bad_data"
    TIMEOUT = "timeout"
    RESOURCE_EXHAUSTION = "resource_exhaustion"
    CONFIG_ERROR = "config_error"
    UNKNOWN = "unknown"


K = FailureKind

DESCRIPTIONS: dict[FailureKind, str] = {
    K.TRANSIENT_NETWORK: "a transient network or server-side error that usually clears by itself",
    K.RATE_LIMITED: "the remote side is rate-limiting Mendline (too many requests)",
    K.AUTH_EXPIRED: "credentials expired, were rotated or lost a permission",
    K.BLOCKED: "the site blocks Mendline with an anti-bot challenge",
    K.UPSTREAM_OUTAGE: "the upstream service has been down for a long time (an outage, not a blip)",
    K.SCHEMA_DRIFT: "the structure of the upstream data changed (fields renamed, removed or retyped)",
    K.LAYOUT_CHANGE: "the page layout changed: the page loads but yields no or far fewer records",
    K.BAD_DATA: "the upstream produced records that break the data-quality rules",
    K.TIMEOUT: "the task needs longer than its timeout allows",
    K.RESOURCE_EXHAUSTION: "the task ran out of memory, disk or size limits",
    K.CONFIG_ERROR: "the pipeline or source configuration is wrong for the current upstream",
    K.UNKNOWN: "an error the playbook does not recognise",
}

TYPE_POINTS = 3.0
GENERIC_TYPE_POINTS = 1.5
CLASS_POINTS = 3.0
STATUS_POINTS = 2.5
WORD_POINTS = 1.0
MAX_WORD_POINTS = 2.0
DECISIVE_POINTS = 3.5
OUTAGE_HOURS = 6.0
OUTAGE_FAILURE_RATE = 0.5
LONG_OUTAGE_HOURS = 24.0
QUARANTINED = 2.0
"""``Features.source_health`` uses the ``mendline_source_health`` scale: 0 ACTIVE,
1 DEGRADED, 2 QUARANTINED, 3 DEAD."""

_TYPES: dict[str, FailureKind] = {
    "FetchConnectError": K.TRANSIENT_NETWORK,
    "FetchDnsError": K.TRANSIENT_NETWORK,
    "HttpTransportError": K.TRANSIENT_NETWORK,
    "SqlConnectionError": K.TRANSIENT_NETWORK,
    "ConnectionError": K.TRANSIENT_NETWORK,
    "ConnectionResetError": K.TRANSIENT_NETWORK,
    "ConnectionRefusedError": K.TRANSIENT_NETWORK,
    "TooManyRedirectsError": K.TRANSIENT_NETWORK,
    "RenderError": K.TRANSIENT_NETWORK,
    "FetchTimeoutError": K.TIMEOUT,
    "TimeoutError": K.TIMEOUT,
    "ReadTimeout": K.TIMEOUT,
    "SandboxTimeoutError": K.TIMEOUT,
    "MemoryError": K.RESOURCE_EXHAUSTION,
    "SandboxMemoryError": K.RESOURCE_EXHAUSTION,
    "BodyTooLargeError": K.RESOURCE_EXHAUSTION,
    "DocumentTooLargeError": K.RESOURCE_EXHAUSTION,
    "DocumentTooComplexError": K.RESOURCE_EXHAUSTION,
    "ResponseTooLargeError": K.RESOURCE_EXHAUSTION,
    "SelectorDriftError": K.SCHEMA_DRIFT,
    "SelectorNotFoundError": K.SCHEMA_DRIFT,
    "SpecError": K.SCHEMA_DRIFT,
    "HttpDecodeError": K.SCHEMA_DRIFT,
    "KeyError": K.SCHEMA_DRIFT,
    "NoRecordsFoundError": K.LAYOUT_CHANGE,
    "ScoutError": K.LAYOUT_CHANGE,
    "ExampleNotFoundError": K.LAYOUT_CHANGE,
    "DataValidationError": K.BAD_DATA,
    "AuthenticationError": K.AUTH_EXPIRED,
    "TaskConfigError": K.CONFIG_ERROR,
    "TemplateError": K.CONFIG_ERROR,
    "PipelineSpecError": K.CONFIG_ERROR,
    "PipelineNotFoundError": K.CONFIG_ERROR,
    "SqlQueryError": K.CONFIG_ERROR,
    "InvalidUrlError": K.CONFIG_ERROR,
    "UrlNotAllowedError": K.CONFIG_ERROR,
    "RobotsDisallowedError": K.CONFIG_ERROR,
    "NotHtmlError": K.CONFIG_ERROR,
    "SourceNotFoundError": K.CONFIG_ERROR,
    "NoActiveScraperError": K.CONFIG_ERROR,
}
_GENERIC_TYPES = frozenset({"HttpTransportError", "SqlConnectionError", "ConnectionError"})
"""Types raised for every transport failure (refused, reset, timed out, login refused):
they say less than the message does."""
_CLASSES: dict[str, FailureKind] = {
    "network": K.TRANSIENT_NETWORK,
    "dns": K.TRANSIENT_NETWORK,
    "http_5xx": K.TRANSIENT_NETWORK,
    "render": K.TRANSIENT_NETWORK,
    "timeout": K.TIMEOUT,
    "rate_limited": K.RATE_LIMITED,
    "blocked": K.BLOCKED,
    "too_large": K.RESOURCE_EXHAUSTION,
    "resource": K.RESOURCE_EXHAUSTION,
    "auth": K.AUTH_EXPIRED,
    "parse_error": K.SCHEMA_DRIFT,
    "zero_records": K.LAYOUT_CHANGE,
    "fill_rate_collapse": K.LAYOUT_CHANGE,
    "validation": K.BAD_DATA,
    "not_html": K.CONFIG_ERROR,
    "robots": K.CONFIG_ERROR,
    "ssrf": K.CONFIG_ERROR,
    "invalid_url": K.CONFIG_ERROR,
    "config": K.CONFIG_ERROR,
}
_WORDS: list[tuple[FailureKind, re.Pattern[str]]] = [
    (
        K.TRANSIENT_NETWORK,
        re.compile(
            r"connection (?:refused|reset|aborted|closed)|reset by peer|broken pipe"
            r"|name resolution|name or service not known|temporarily unavailable|bad gateway"
            r"|gateway timeout|network is unreachable|could not connect"
        ),
    ),
    (K.RATE_LIMITED, re.compile(r"rate[- ]limit|throttl|slow down|quota")),
    (
        K.AUTH_EXPIRED,
        re.compile(r"unauthori[sz]ed|access denied|forbidden|credentials|login|session expired"),
    ),
    (K.BLOCKED, re.compile(r"are you a robot|are you human|challenge|cf-challenge")),
    (K.UPSTREAM_OUTAGE, re.compile(r"maintenance|outage|status page|down for")),
    (
        K.SCHEMA_DRIFT,
        re.compile(r"schema|unexpected (?:field|type|format)|selector|renamed|structure changed"),
    ),
    (K.LAYOUT_CHANGE, re.compile(r"no records|zero records|0 records|layout|redesign|fill rate")),
    (
        K.BAD_DATA,
        re.compile(
            r"validation|not_null|unique\(|range\(|regex\(|duplicate|null value|invalid value"
        ),
    ),
    (K.TIMEOUT, re.compile(r"timed out|timeout|deadline exceeded|took longer than|ran longer")),
    (
        K.RESOURCE_EXHAUSTION,
        re.compile(r"memory|too large|exceeds the byte limit|allocate|resource exhausted"),
    ),
    (K.CONFIG_ERROR, re.compile(r"not found|no such file|no such route|syntax error|invalid url")),
]
_DECISIVE: list[tuple[FailureKind, re.Pattern[str]]] = [
    (K.RATE_LIMITED, re.compile(r"too many requests|rate limit exceeded")),
    (
        K.AUTH_EXPIRED,
        re.compile(
            r"password authentication failed|(?:access )?token (?:has )?expired|expired token"
            r"|invalid[_ ]token|invalid api key|api key revoked|authentication failed"
            r"|invalid credentials"
        ),
    ),
    (K.BLOCKED, re.compile(r"captcha|anti-bot")),
    (
        K.SCHEMA_DRIFT,
        re.compile(
            r"keyerror|missing (?:field|column|key)|no such column|column \S+ does not exist"
            r"|schema changed|page structure changed"
        ),
    ),
    (
        K.LAYOUT_CHANGE,
        re.compile(r"extracted 0 records|no records found|layout (?:was )?(?:changed|redesigned)"),
    ),
    (K.BAD_DATA, re.compile(r"rows? failed|rules? failed")),
    (K.RESOURCE_EXHAUSTION, re.compile(r"out of memory|oomkilled|no space left on device")),
]
"""Phrases specific enough to outweigh an error type (a ``SqlConnectionError`` whose
message says ``password authentication failed`` is an expired credential)."""
_DISK_FULL = re.compile(r"no space left|disk (?:is )?full|disk quota exceeded")
_STATUSES: dict[int, FailureKind] = {
    400: K.CONFIG_ERROR,
    401: K.AUTH_EXPIRED,
    403: K.AUTH_EXPIRED,
    404: K.CONFIG_ERROR,
    405: K.CONFIG_ERROR,
    408: K.TIMEOUT,
    410: K.CONFIG_ERROR,
    413: K.RESOURCE_EXHAUSTION,
    429: K.RATE_LIMITED,
}
_PRECEDENCE = list(FailureKind)
"""Ties between kinds go to the one listed first."""

_HTTP_STATUS = re.compile(r"\b(?:HTTP(?:/\d(?:\.\d)?)?|status(?: code)?[:=]?)\s*(\d{3})\b", re.I)
_RETRY_AFTER = re.compile(r"retry-after[:=]?\s*(\d+(?:\.\d+)?)", re.I)
_FAILED_ROWS = re.compile(r"(\d+) rows? failed")
_WHOLE_BATCH_RULES = ("row_count(", "freshness(")

Severity = Literal["low", "high"]


@dataclass
class Diagnosis:
    """What the failure most likely is.

    Attributes:
        kind: The failure kind with the most points.
        points: Points per kind (the evidence weight behind each).
        signals: What counted, in words.
        status: The HTTP status, when the message carries one.
        retry_after: ``Retry-After`` seconds, when the message carries them.
        severity: For bad data: ``low`` (a few rows) or ``high`` (many, or a batch rule).
        certainty: 0–1, how clearly the top kind beat the others.
        disk_full: For resource exhaustion: the disk is full (tuning cannot help).
        long_outage: For outages: down a day or more, or the source already quarantined.
    """

    kind: FailureKind
    points: dict[FailureKind, float] = field(default_factory=dict)
    signals: list[str] = field(default_factory=list)
    status: int | None = None
    retry_after: float | None = None
    severity: Severity | None = None
    certainty: float = 0.0
    disk_full: bool = False
    long_outage: bool = False

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.kind]


def http_status(message: str) -> int | None:
    """The HTTP error status a message names (``… returned HTTP 429 …``), if any."""
    for match in _HTTP_STATUS.finditer(message):
        status = int(match.group(1))
        if 400 <= status <= 599:
            return status
    return None


def _bad_data_severity(context: FailureContext, features: Features) -> tuple[Severity, str]:
    message = context.message
    if any(rule in message for rule in _WHOLE_BATCH_RULES):
        return "high", "a whole-batch rule (row_count/freshness) failed"
    failed = sum(int(n) for n in _FAILED_ROWS.findall(message))
    records = context.params.get("records")
    total = len(records) if isinstance(records, list) else None
    if total and failed:
        share = failed / total
        level: Severity = "high" if share >= 0.1 else "low"
        return level, f"{failed} of {total} rows failed ({share:.0%})"
    if failed:
        level = "high" if failed >= 100 else "low"
        return level, f"{failed} rows failed"
    if features.volume_change <= -0.5:
        return "high", f"the data volume fell by {-features.volume_change:.0%}"
    return "high", "the share of bad rows is unknown"


def diagnose(context: FailureContext, features: Features) -> Diagnosis:
    """Weigh the failure's signals into a :class:`Diagnosis`."""
    points: dict[FailureKind, float] = defaultdict(float)
    signals: list[str] = []
    if (kind := _TYPES.get(context.error_type)) is not None:
        weak = context.error_type in _GENERIC_TYPES
        points[kind] += GENERIC_TYPE_POINTS if weak else TYPE_POINTS
        signals.append(f"error type {context.error_type}")
    # The predictor's error class is derived from the same type and message: it counts only
    # when neither the fetch layer's class nor the type said anything.
    error_class = context.error_class
    if error_class is None and kind is None and features.error_class not in ("", "unknown"):
        error_class = features.error_class
    if error_class and (kind := _CLASSES.get(error_class)) is not None:
        points[kind] += CLASS_POINTS
        signals.append(f"error class {error_class}")
    status = http_status(context.message)
    if status is not None:
        kind = _STATUSES.get(status, K.TRANSIENT_NETWORK if status >= 500 else K.CONFIG_ERROR)
        points[kind] += STATUS_POINTS
        signals.append(f"HTTP {status}")
    lowered = context.message.lower()
    for kind, pattern in _WORDS:
        hits = {m.group(0) for m in pattern.finditer(lowered)}
        if hits:
            points[kind] += min(MAX_WORD_POINTS, WORD_POINTS * len(hits))
            signals.append(f"the message says {', '.join(repr(h) for h in sorted(hits)[:2])}")
    for kind, pattern in _DECISIVE:
        if match := pattern.search(lowered):
            points[kind] += DECISIVE_POINTS
            signals.append(f"the message says {match.group(0)!r}")
    if context.task_type == "scrape" and features.volume_change <= -0.8:
        points[K.LAYOUT_CHANGE] += WORD_POINTS
        signals.append(f"records fell by {-features.volume_change:.0%}")

    # A captcha behind a 401/403 is a block, not an expired credential.
    if points.get(K.BLOCKED, 0) and status in (401, 403):
        points[K.BLOCKED] += STATUS_POINTS
    kind = _top(points)
    if kind is K.UPSTREAM_OUTAGE and not _network_like(points):
        # "maintenance" alone, without network or 5xx signals, is weak evidence.
        kind = _top({k: v for k, v in points.items() if k is not K.UPSTREAM_OUTAGE})

    # A network failure that has lasted for hours is an outage: retries only add noise.
    long_outage = False
    long_down = (
        features.hours_since_success >= OUTAGE_HOURS
        and features.recent_failure_rate >= OUTAGE_FAILURE_RATE
    )
    if kind in (K.TRANSIENT_NETWORK, K.UPSTREAM_OUTAGE) and (
        long_down or features.source_health >= QUARANTINED
    ):
        if long_down:
            signals.append(
                f"no success for {features.hours_since_success:g} h with "
                f"{features.recent_failure_rate:.0%} of recent runs failing"
            )
        else:
            signals.append("the source is already quarantined")
        kind = K.UPSTREAM_OUTAGE
        long_outage = (
            features.hours_since_success >= LONG_OUTAGE_HOURS
            or features.source_health >= QUARANTINED
        )
    elif kind is K.UPSTREAM_OUTAGE:
        kind = K.TRANSIENT_NETWORK  # down for maintenance, but not for long yet

    ranked = sorted(points.values(), reverse=True)
    top = ranked[0] if ranked else 0.0
    second = ranked[1] if len(ranked) > 1 else 0.0
    certainty = 0.0 if kind is K.UNKNOWN or top == 0 else min(1.0, (top - second / 2) / top)
    retry_after = float(m.group(1)) if (m := _RETRY_AFTER.search(context.message)) else None
    diagnosis = Diagnosis(
        kind=kind,
        points=dict(points),
        signals=signals,
        status=status,
        retry_after=retry_after,
        certainty=round(certainty, 3),
        long_outage=long_outage,
    )
    if kind is K.RESOURCE_EXHAUSTION and _DISK_FULL.search(lowered):
        diagnosis.disk_full = True
        signals.append("the disk is full")
    if kind is K.BAD_DATA:
        diagnosis.severity, why = _bad_data_severity(context, features)
        signals.append(f"{diagnosis.severity} severity: {why}")
    return diagnosis


def _network_like(points: dict[FailureKind, float]) -> bool:
    return points.get(K.TRANSIENT_NETWORK, 0) > 0 or points.get(K.TIMEOUT, 0) > 0


def _top(points: dict[FailureKind, float]) -> FailureKind:
    if not points or max(points.values()) <= 0:
        return K.UNKNOWN
    best = max(points.values())
    return next(k for k in _PRECEDENCE if points.get(k, 0) == best)
