"""The failure predictor's features, computed from telemetry.

For a task, the history is its rows in ``task_attempts`` (same pipeline and task name); for
a source, its rows in ``source_runs``. Both become :class:`Attempt` records and go through
one pure function, :func:`compute_features`, so training (over a whole history) and
prediction (at one failure) can never compute a feature differently.

=====================  ==================================================================
feature                how
=====================  ==================================================================
recent_failure_rate    failed / finished among the last 20 attempts before this run
duration_zscore        the latest attempt's duration against earlier successful ones,
                       robust (median and MAD), clipped to ±10
attempts               attempts this run made
error_class            the error's class (:func:`error_class_of`)
hours_since_success    since the last success (since the first attempt if none; 0 for a
                       new task), at most 90 days
volume_change          the last successful records_out against the median before it,
                       relative (−1 = dropped to nothing), clipped to −1..10
source_health          the source's health for scrape tasks and sources: 0 ACTIVE,
                       1 DEGRADED, 2 QUARANTINED, 3 DEAD (or FAILED / REMOVED)
runs_seen              earlier runs in the history window
=====================  ==================================================================
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from activities.storage import Database, as_utc
from models.db import TaskAttemptRow
from models.db_sources import SourceEventRow, SourceRow, SourceRunRow
from models.remediation import FailureContext, Features

RATE_WINDOW = 20
"""Attempts before the failing run that the failure rate is computed over."""
STATS_WINDOW = 50
"""Earlier successful attempts that duration and volume are compared with."""
HISTORY_LIMIT = 400
"""Attempts read from the database for one prediction."""
MIN_POINTS = 3
"""Fewer earlier points than this: no z-score, no volume change (0)."""
MAX_HOURS = 90 * 24.0
MAX_ZSCORE = 10.0
MAD_TO_SIGMA = 1.4826

SOURCE_LEVELS: dict[str, float] = {
    "ONBOARDING": 0.0,
    "ACTIVE": 0.0,
    "DEGRADED": 1.0,
    "QUARANTINED": 2.0,
    "DEAD": 3.0,
    "FAILED": 3.0,
    "REMOVED": 3.0,
}
"""A source's status on the ``mendline_source_health`` scale (unknown statuses: 0)."""

ERROR_CLASSES = (
    "network",
    "timeout",
    "rate_limited",
    "auth",
    "http_4xx",
    "http_5xx",
    "blocked",
    "parse_error",
    "zero_records",
    "validation",
    "resource",
    "config",
    "cancelled",
    "unknown",
)
"""Every value :func:`error_class_of` returns (the fetch layer's names where they exist)."""

_FETCH_CLASSES = {
    "network": "network",
    "dns": "network",
    "timeout": "timeout",
    "rate_limited": "rate_limited",
    "http_4xx": "http_4xx",
    "http_5xx": "http_5xx",
    "blocked": "blocked",
    "robots": "config",
    "ssrf": "config",
    "invalid_url": "config",
    "not_html": "parse_error",
    "too_large": "resource",
    "render": "resource",
}
_TYPES = {
    "HttpTransportError": "network",
    "FetchConnectError": "network",
    "FetchDnsError": "network",
    "SqlConnectionError": "network",
    "ConnectionError": "network",
    "ConnectionRefusedError": "network",
    "ConnectionResetError": "network",
    "TooManyRedirectsError": "network",
    "FetchTimeoutError": "timeout",
    "TimeoutError": "timeout",
    "ReadTimeout": "timeout",
    "SandboxTimeoutError": "timeout",
    "AuthenticationError": "auth",
    "MemoryError": "resource",
    "SandboxMemoryError": "resource",
    "BodyTooLargeError": "resource",
    "RenderError": "resource",
    "SelectorDriftError": "parse_error",
    "SelectorNotFoundError": "parse_error",
    "HttpDecodeError": "parse_error",
    "SqlQueryError": "parse_error",
    "KeyError": "parse_error",
    "NotHtmlError": "parse_error",
    "NoRecordsFoundError": "zero_records",
    "DataValidationError": "validation",
    "ExpressionError": "validation",
    "ValueError": "validation",
    "TaskConfigError": "config",
    "TemplateError": "config",
    "PipelineSpecError": "config",
    "PipelineNotFoundError": "config",
    "InvalidUrlError": "config",
    "UrlNotAllowedError": "config",
    "RobotsDisallowedError": "config",
    "SourceNotFoundError": "config",
    "NoActiveScraperError": "config",
    "TaskCancelled": "cancelled",
}
_STATUS = re.compile(r"\b(?:HTTP|status)\D{0,3}([1-5]\d\d)\b", re.IGNORECASE)
_WORDS: list[tuple[str, re.Pattern[str]]] = [
    ("rate_limited", re.compile(r"too many requests|rate.?limit|throttl")),
    (
        "auth",
        re.compile(r"unauthori[sz]ed|forbidden|token (?:has )?expired|invalid.?token|credentials"),
    ),
    ("timeout", re.compile(r"timed out|timeout|deadline exceeded")),
    ("resource", re.compile(r"out of memory|no space left|resource exhausted|memory limit")),
    ("network", re.compile(r"connection (?:refused|reset|aborted)|unreachable|name resolution")),
    ("parse_error", re.compile(r"schema|missing (?:field|column|key)|no such column|selector")),
    ("validation", re.compile(r"validation|rows? failed|null value|invalid value")),
]


def error_class_of(
    error_type: str | None, error_class: str | None = None, message: str = ""
) -> str:
    """The class of an error, one of :data:`ERROR_CLASSES`.

    The fetch layer's class wins when known, then the error type, then an HTTP status or
    telling words in the message (``429``, ``token expired``…).
    """
    status = _STATUS.search(message or "")
    code = int(status.group(1)) if status else None
    if code in (401, 403) and error_class in (None, "http_4xx"):
        return "auth"
    if error_class in _FETCH_CLASSES:
        return _FETCH_CLASSES[error_class]
    known = _TYPES.get((error_type or "").rsplit(".", 1)[-1])
    if known is not None:
        return known
    if code is not None:
        if code == 429:
            return "rate_limited"
        return "http_5xx" if code >= 500 else "http_4xx"
    lowered = (message or "").lower()
    for name, pattern in _WORDS:
        if pattern.search(lowered):
            return name
    return "unknown"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a task (or one run of a source), as the features see it."""

    run_id: str
    attempt: int
    status: str
    started_at: datetime
    ended_at: datetime | None = None
    duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    records_out: int | None = None

    @property
    def at(self) -> datetime:
        """When it ended (or started, while running)."""
        return self.ended_at or self.started_at


def compute_features(
    history: Sequence[Attempt],
    run_id: str | None,
    *,
    at: datetime,
    error_type: str | None,
    error_class: str | None = None,
    message: str = "",
    attempts: int = 1,
    source_health: float = 0.0,
) -> Features:
    """Features of the failure of run ``run_id`` at ``at`` (pure).

    Args:
        history: Attempts of the task, oldest first; only those before ``at`` (and the
            failing run's own) are used.
        run_id: The failing run; its attempts are the current ones, all others are history.
        at: When it failed.
        error_type: The final error's type.
        error_class: The fetch layer's class of it, when known.
        message: The final error's message.
        attempts: Attempts made, as the failure reports them.
        source_health: The source's health level (0 for tasks without a source).
    """
    current = [a for a in history if a.run_id == run_id]
    first = min((a.started_at for a in current), default=at)
    prior = [a for a in history if a.run_id != run_id and a.started_at < first]
    finished = [a for a in prior if a.status in ("SUCCEEDED", "FAILED")]
    recent = finished[-RATE_WINDOW:]
    failure_rate = sum(a.status == "FAILED" for a in recent) / len(recent) if recent else 0.0
    succeeded = [a for a in finished if a.status == "SUCCEEDED"]

    latest = max(current, key=lambda a: (a.attempt, a.started_at), default=None)
    durations = [a.duration_ms for a in succeeded[-STATS_WINDOW:] if a.duration_ms is not None]
    zscore = 0.0
    if latest is not None and latest.duration_ms is not None and len(durations) >= MIN_POINTS:
        zscore = _robust_z(latest.duration_ms, durations)

    if succeeded:
        hours = (at - succeeded[-1].at).total_seconds() / 3600
    elif prior:
        hours = (at - prior[0].started_at).total_seconds() / 3600
    else:
        hours = 0.0

    volumes = [a.records_out for a in succeeded[-STATS_WINDOW:] if a.records_out is not None]
    volume_change = 0.0
    if len(volumes) > MIN_POINTS:
        median = statistics.median(volumes[:-1])
        volume_change = (volumes[-1] - median) / max(median, 1.0)

    return Features(
        recent_failure_rate=failure_rate,
        duration_zscore=_clip(zscore, -MAX_ZSCORE, MAX_ZSCORE),
        attempts=max(attempts, len(current), 1),
        error_class=error_class_of(error_type, error_class, message),
        hours_since_success=_clip(hours, 0.0, MAX_HOURS),
        volume_change=_clip(volume_change, -1.0, 10.0),
        source_health=source_health,
        runs_seen=len({a.run_id for a in prior}),
    )


def _robust_z(value: float, points: Sequence[float]) -> float:
    median = statistics.median(points)
    mad = statistics.median(abs(p - median) for p in points)
    # A floor keeps a perfectly steady history from turning a millisecond into a z of 1000.
    sigma = max(MAD_TO_SIGMA * mad, 0.05 * abs(median), 1.0)
    return (value - median) / sigma


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# --- from the database -------------------------------------------------------------------------


def features_for(database: Database, failure: FailureContext) -> Features:
    """The features of ``failure`` from Mendline's telemetry tables.

    Tasks read ``task_attempts`` of the same pipeline and task; sources (and ``scrape``
    tasks, for their health) read ``source_runs`` and ``sources``. A task or source with
    no history gets neutral features (0 rates, 0 z-score, ``runs_seen`` 0).
    """
    at = as_utc(failure.at) or datetime.now(UTC)
    source = failure.source or _param_source(failure)
    with database.session() as session:
        if failure.kind == "source" and failure.source:
            rows = session.execute(
                select(SourceRunRow)
                .where(SourceRunRow.source == failure.source)
                .order_by(SourceRunRow.started_at.desc())
                .limit(HISTORY_LIMIT)
            ).scalars()
            history = [source_attempt(row) for row in rows]
        elif failure.pipeline and failure.task:
            rows_ = session.execute(
                select(TaskAttemptRow)
                .where(
                    TaskAttemptRow.pipeline == failure.pipeline,
                    TaskAttemptRow.task == failure.task,
                )
                .order_by(TaskAttemptRow.started_at.desc(), TaskAttemptRow.attempt.desc())
                .limit(HISTORY_LIMIT)
            ).scalars()
            history = [task_attempt(row) for row in rows_]
        else:
            history = []
        status = (
            session.scalar(select(SourceRow.status).where(SourceRow.name == source))
            if source
            else None
        )
    history.sort(key=lambda a: (a.started_at, a.attempt))
    return compute_features(
        history,
        failure.run_id,
        at=at,
        error_type=failure.error_type,
        error_class=failure.error_class,
        message=failure.message,
        attempts=failure.attempts,
        source_health=SOURCE_LEVELS.get(status or "", 0.0),
    )


def _param_source(failure: FailureContext) -> str | None:
    value = failure.params.get("source") if failure.task_type == "scrape" else None
    return value if isinstance(value, str) else None


def task_attempt(row: TaskAttemptRow) -> Attempt:
    """A ``task_attempts`` row as an :class:`Attempt`."""
    started = as_utc(row.started_at)
    assert started is not None
    return Attempt(
        run_id=row.run_id,
        attempt=row.attempt,
        status=row.status,
        started_at=started,
        ended_at=as_utc(row.ended_at),
        duration_ms=row.duration_ms,
        error_type=row.error_type,
        error_message=row.error_message,
        records_out=row.records_out,
    )


def source_attempt(row: SourceRunRow) -> Attempt:
    """A ``source_runs`` row as an :class:`Attempt` (one attempt per run)."""
    started = as_utc(row.started_at) or as_utc(row.ended_at) or datetime.fromtimestamp(0, UTC)
    ended = as_utc(row.ended_at)
    stats = row.stats or {}
    records = stats.get("records")
    return Attempt(
        run_id=row.run_id,
        attempt=1,
        status=row.status,
        started_at=started,
        ended_at=ended,
        duration_ms=(ended - started).total_seconds() * 1000 if ended else None,
        error_type=stats.get("error_type"),
        error_message=stats.get("error"),
        records_out=records if isinstance(records, int) and not stats.get("held") else None,
    )


def health_timeline(database: Database, source: str) -> Callable[[datetime], float]:
    """The source's health level at any instant, from its ``health_changed`` events."""
    with database.session() as session:
        events = session.execute(
            select(SourceEventRow.at, SourceEventRow.detail)
            .where(SourceEventRow.source == source, SourceEventRow.kind == "health_changed")
            .order_by(SourceEventRow.at)
        ).all()
        status = session.scalar(select(SourceRow.status).where(SourceRow.name == source))
    changes = [
        (stamp, SOURCE_LEVELS.get(str(detail.get("to_state")), 0.0))
        for at, detail in events
        if (stamp := as_utc(at)) is not None
    ]
    current = SOURCE_LEVELS.get(status or "", 0.0)
    return level_at(changes, current)


def level_at(
    changes: Sequence[tuple[datetime, float]], current: float
) -> Callable[[datetime], float]:
    """A lookup of the level in force at an instant: the last change at or before it; 0
    before the first change; ``current`` when there are no changes at all."""

    def lookup(at: datetime) -> float:
        if not changes:
            return current
        level = 0.0
        for stamp, value in changes:
            if stamp > at:
                break
            level = value
        return level

    return lookup
