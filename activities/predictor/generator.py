"""A deterministic generator of realistic pipeline telemetry, for the built-in model.

Mendline ships a failure model that works on a fresh install, before any telemetry
exists; it is trained on histories made here (seeded, so the same seed always gives the
same histories and, with :mod:`activities.predictor.train`, the same model). The bench
scores models on histories of another seed.

Each task runs on an interval (1–4 h) for weeks. Most runs succeed, some after transient
retries (connection resets, 503s, 429s, timeouts). Now and then an *incident* starts and
every attempt fails until it ends (at once for errors that are not retried: a 401, a schema or data error);
its length is geometric, with a mean that depends on its
kind, so some failures persist (the next run fails too: label 1) and some do not (label 0):

==============  =====================================  ============  ======================
kind            error                                  mean runs     precursor
==============  =====================================  ============  ======================
blip            network / 503 / 429 / timeout          1.2           —
outage          503 / connection refused               4             —
auth_expired    HTTP 401, token expired                6             —
schema_drift    decode / missing column / selector     8             —
bad_data        DataValidationError                    2.5           volume jump or drop
resource        MemoryError / timed out                3             durations ramp up
config          TaskConfigError                        5             —
==============  =====================================  ============  ======================

Scrape tasks have a source whose health degrades while an incident lasts (DEGRADED after
one failed run, QUARANTINED after three) and recovers with the next success.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from activities.predictor.features import Attempt, level_at
from activities.storage import Database, upsert
from models.db_sources import SourceEventRow, SourceRow
from models.errors import NON_RETRYABLE_TASK_ERRORS

START = datetime(2026, 1, 5, tzinfo=UTC)
MAX_ATTEMPTS = 3
TASK_TYPES = ("http", "sql", "transform", "scrape", "load", "validate", "python")

_TRANSIENT: dict[str, list[tuple[str, str]]] = {
    "http": [
        ("HttpTransportError", "connection reset by peer"),
        ("HttpStatusError", "HTTP 503 Service Unavailable"),
        ("HttpStatusError", "HTTP 429 Too Many Requests"),
        ("FetchTimeoutError", "no complete answer within 20s"),
    ],
    "scrape": [
        ("FetchConnectError", "connection refused"),
        ("FetchHttpStatusError", "HTTP 503 from the site"),
        ("FetchHttpStatusError", "HTTP 429 Too Many Requests"),
        ("FetchTimeoutError", "no complete answer within 20s"),
    ],
    "sql": [("SqlConnectionError", "could not connect to server: connection refused")],
    "load": [("SqlConnectionError", "server closed the connection unexpectedly")],
}
_TRANSIENT_DEFAULT = [("TimeoutError", "task timed out"), ("ConnectionResetError", "reset")]


_NON_RETRYABLE = frozenset(
    {*NON_RETRYABLE_TASK_ERRORS, "SelectorDriftError", "KeyError", "NoActiveScraperError"}
)
_STATUS = re.compile(r"HTTP (\d{3})")


def retryable(error_type: str, message: str) -> bool:
    """Whether Mendline's retry policies would retry this error (as the real tasks do:
    non-retryable types, and 4xx statuses other than 408, 425 and 429, fail at once)."""
    if error_type in _NON_RETRYABLE:
        return False
    status = _STATUS.search(message)
    return not (
        status
        and 400 <= int(status.group(1)) < 500
        and status.group(1) not in ("408", "425", "429")
    )


@dataclass(frozen=True)
class IncidentKind:
    """A kind of persistent failure: its errors per task type and mean length in runs."""

    name: str
    mean_runs: float
    errors: dict[str, list[tuple[str, str]]]
    weight: float
    precursor: str | None = None


INCIDENTS = (
    IncidentKind(
        "blip",
        1.2,
        {
            "*": [
                ("HttpTransportError", "connection reset by peer"),
                ("TimeoutError", "timed out"),
            ],
            "http": [
                ("HttpStatusError", "HTTP 503 Service Unavailable"),
                ("HttpStatusError", "HTTP 429 Too Many Requests"),
            ],
            "scrape": [
                ("FetchHttpStatusError", "HTTP 429 Too Many Requests"),
                ("FetchTimeoutError", "no complete answer within 20s"),
            ],
        },
        weight=4.0,
    ),
    IncidentKind(
        "outage",
        4.0,
        {
            "http": [("HttpStatusError", "HTTP 503 Service Unavailable: maintenance")],
            "scrape": [("FetchConnectError", "connection refused")],
            "sql": [("SqlConnectionError", "could not connect to server")],
            "load": [("SqlConnectionError", "could not connect to server")],
        },
        weight=2.0,
    ),
    IncidentKind(
        "auth_expired",
        6.0,
        {
            "http": [("HttpStatusError", "HTTP 401 Unauthorized: token expired")],
            "scrape": [("FetchHttpStatusError", "HTTP 401 Unauthorized")],
            "sql": [("SqlConnectionError", "password authentication failed for user etl")],
        },
        weight=1.0,
    ),
    IncidentKind(
        "schema_drift",
        8.0,
        {
            "http": [("HttpDecodeError", "unexpected format: missing field 'amount'")],
            "sql": [("SqlQueryError", "no such column: amount")],
            "scrape": [("SelectorDriftError", "selector .price matched nothing on 20 pages")],
            "transform": [("KeyError", "'amount'")],
        },
        weight=1.0,
    ),
    IncidentKind(
        "bad_data",
        2.5,
        {
            "validate": [("DataValidationError", "12 rows failed not_null(amount)")],
            "transform": [("DataValidationError", "3 rows failed range(amount, 0, 1e6)")],
            "load": [("DataValidationError", "duplicate key value violates unique(id)")],
        },
        weight=1.5,
        precursor="volume",
    ),
    IncidentKind(
        "resource",
        3.0,
        {"*": [("MemoryError", "out of memory"), ("TimeoutError", "task timed out after 300s")]},
        weight=1.0,
        precursor="duration",
    ),
    IncidentKind(
        "config",
        5.0,
        {
            "*": [("TaskConfigError", "param 'url' is required")],
            "scrape": [("NoActiveScraperError", "source has no active scraper")],
        },
        weight=0.7,
    ),
)


@dataclass
class TaskProfile:
    """One generated task's nature."""

    pipeline: str
    task: str
    task_type: str
    interval_hours: float
    base_ms: float
    records: int
    flaky: float
    incident_rate: float
    source: str | None = None


@dataclass
class GeneratedTask:
    """A task's generated history: its attempts (oldest first) and its source's health."""

    profile: TaskProfile
    attempts: list[Attempt] = field(default_factory=list)
    health: list[tuple[datetime, float]] = field(default_factory=list)

    def source_level(self) -> Callable[[datetime], float]:
        """The source's health level at an instant (0 for tasks without a source)."""
        return level_at(self.health, 0.0)


def generate(
    seed: int = 7, *, pipelines: int = 8, tasks_per_pipeline: int = 5, days: int = 45
) -> list[GeneratedTask]:
    """Generate the histories of ``pipelines × tasks_per_pipeline`` tasks over ``days``.

    The same arguments always return the same histories.
    """
    rng = random.Random(seed)
    generated = []
    for p in range(pipelines):
        for t in range(tasks_per_pipeline):
            task_type = rng.choice(TASK_TYPES)
            profile = TaskProfile(
                pipeline=f"pipeline-{p}",
                # Scrape tasks are named after their source, as in the examples.
                task=f"site-{p}-{t}" if task_type == "scrape" else f"{task_type}-{t}",
                task_type=task_type,
                interval_hours=rng.choice((1.0, 1.0, 2.0, 4.0)),
                base_ms=rng.lognormvariate(7.0, 1.0),
                records=int(rng.lognormvariate(6.0, 1.2)) + 1,
                flaky=rng.uniform(0.01, 0.2),
                incident_rate=rng.uniform(0.005, 0.04),
                source=f"site-{p}-{t}" if task_type == "scrape" else None,
            )
            generated.append(_history(profile, rng, days))
    return generated


def _pick(errors: dict[str, list[tuple[str, str]]], task_type: str) -> list[tuple[str, str]]:
    return errors.get(task_type) or errors.get("*") or next(iter(errors.values()))


def _history(profile: TaskProfile, rng: random.Random, days: int) -> GeneratedTask:
    out = GeneratedTask(profile)
    runs = int(days * 24 / profile.interval_hours)
    incident: IncidentKind | None = None
    incident_error = ("", "")
    precursor_left = 0
    pending: IncidentKind | None = None
    failed_streak = 0
    level = 0.0
    kinds = [k for k in INCIDENTS if profile.task_type in k.errors or "*" in k.errors]
    for n in range(runs):
        start = START + timedelta(hours=n * profile.interval_hours, seconds=rng.uniform(0, 120))
        run_id = f"pipeline/{profile.pipeline}/{n:05d}"
        # An incident starts (after its precursor runs, if it has one).
        if incident is None and pending is None and rng.random() < profile.incident_rate:
            pending = rng.choices(kinds, weights=[k.weight for k in kinds])[0]
            precursor_left = (
                3
                if pending.precursor == "duration"
                else (1 if pending.precursor == "volume" else 0)
            )
        if pending is not None and precursor_left == 0:
            incident, pending = pending, None
            incident_error = rng.choice(_pick(incident.errors, profile.task_type))
        scale_ms, scale_records = 1.0, 1.0
        if pending is not None and precursor_left > 0:
            if pending.precursor == "duration":
                scale_ms = 1.0 + (4 - precursor_left) * rng.uniform(0.5, 1.0)
            elif pending.precursor == "volume":
                scale_records = rng.choice((0.2, 0.3, 4.0, 6.0))
            precursor_left -= 1
        at = start
        failed = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            duration = profile.base_ms * scale_ms * rng.lognormvariate(0.0, 0.25)
            if incident is not None:
                error: tuple[str, str] | None = incident_error
                if incident.name == "resource":
                    duration *= rng.uniform(2.5, 4.0)
                else:
                    duration *= rng.uniform(0.05, 0.6)
            elif rng.random() < profile.flaky:
                error = rng.choice(_TRANSIENT.get(profile.task_type, _TRANSIENT_DEFAULT))
                duration *= rng.uniform(0.1, 1.5)
            else:
                error = None
            ended = at + timedelta(milliseconds=duration)
            records = None
            if error is None:
                records = max(0, int(profile.records * scale_records * rng.uniform(0.9, 1.1)))
            out.attempts.append(
                Attempt(
                    run_id=run_id,
                    attempt=attempt,
                    status="FAILED" if error else "SUCCEEDED",
                    started_at=at,
                    ended_at=ended,
                    duration_ms=duration,
                    error_type=error[0] if error else None,
                    error_message=error[1] if error else None,
                    records_out=records,
                )
            )
            at = ended + timedelta(seconds=2**attempt)
            if error is None:
                break
            if attempt == MAX_ATTEMPTS or not retryable(*error):
                failed = True
                break
        # Health of the task's source, as its supervisor would keep it.
        failed_streak = failed_streak + 1 if failed else 0
        new_level = 0.0 if not failed else (2.0 if failed_streak >= 3 else 1.0)
        if profile.source and new_level != level:
            out.health.append((at + timedelta(seconds=1), new_level))
        level = new_level
        # The incident goes on into the next run, or ends.
        if incident is not None and rng.random() >= 1 - 1 / incident.mean_runs:
            incident = None
    return out


# --- into a database ------------------------------------------------------------------------


def write_telemetry(database: Database, tasks: Sequence[GeneratedTask]) -> int:
    """Store generated histories as ``task_attempts`` rows (and sources with their health
    events for scrape tasks), as a real deployment would have them.

    Returns:
        The number of attempts written.
    """
    rows: list[dict[str, Any]] = []
    for generated in tasks:
        p = generated.profile
        for a in generated.attempts:
            rows.append(
                {
                    "run_id": a.run_id,
                    "pipeline": p.pipeline,
                    "task": p.task,
                    "task_type": p.task_type,
                    "attempt": a.attempt,
                    "mode": "activity",
                    "status": a.status,
                    "cached": False,
                    "started_at": a.started_at,
                    "ended_at": a.ended_at,
                    "duration_ms": a.duration_ms,
                    "error_type": a.error_type,
                    "error_message": a.error_message,
                    "records_in": None,
                    "records_out": a.records_out,
                    "worker": "generated",
                }
            )
    for start in range(0, len(rows), 5000):
        database.record_attempts(rows[start : start + 5000])
    with database.session() as session:
        for generated in tasks:
            source = generated.profile.source
            if source is None:
                continue
            levels = {0.0: "ACTIVE", 1.0: "DEGRADED", 2.0: "QUARANTINED", 3.0: "DEAD"}
            last = generated.health[-1][1] if generated.health else 0.0
            upsert(
                session,
                SourceRow.__table__,  # type: ignore[arg-type]
                [
                    {
                        "name": source,
                        "url": f"https://{source}.example/",
                        "config": {},
                        "status": levels[last],
                        "active_version": 1,
                        "created_at": START,
                        "updated_at": START,
                        "removed_at": None,
                    }
                ],
                ["name"],
            )
            before = 0.0
            for at, level in generated.health:
                session.add(
                    SourceEventRow(
                        source=source,
                        at=at,
                        kind="health_changed",
                        detail={"from_state": levels[before], "to_state": levels[level]},
                    )
                )
                before = level
    return len(rows)
