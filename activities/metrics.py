"""Mendline's own Prometheus metrics, recorded by activities where things happen.

Every metric lives in :data:`MENDLINE_REGISTRY`, a dedicated registry (not the
process-global default one), which the worker's ``/metrics`` endpoint serves next to the
Temporal SDK's runtime metrics (``workers/metrics_http.py``).

Labels are kept to bounded sets — pipeline names, task types, error classes, source
names, health states, repair outcomes, verdicts and LLM providers — never run ids, record
keys or messages, so the number of series stays proportional to what is configured, not to
how much work was done.

Activities call the small functions below rather than touching the metric objects, so a
metric's name or labels change in one place. Counting is at-least-once: a retried activity
counts again, which is what an operator watching rates wants to see anyway.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from models.health import HealthState
from models.supervisor import RepairResultKind

# ``*_created`` samples would double the series of every counter and histogram for a
# timestamp nobody graphs (they are an OpenMetrics idea; the endpoint speaks text 0.0.4).
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

MENDLINE_REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry holding every ``mendline_*`` metric (served by the worker's ``/metrics``)."""

TASK_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Seconds; tasks range from sub-millisecond local transforms to hour-long loads."""

TASK_DURATION = Histogram(
    "mendline_task_duration_seconds",
    "Duration of task attempts (every attempt, successful or not).",
    ["pipeline", "task_type"],
    buckets=TASK_DURATION_BUCKETS,
    registry=MENDLINE_REGISTRY,
)
TASK_FAILURES = Counter(
    "mendline_task_failures_total",
    "Task attempts that failed, by the error's type name.",
    ["pipeline", "task_type", "error_class"],
    registry=MENDLINE_REGISTRY,
)
SOURCE_HEALTH = Gauge(
    "mendline_source_health",
    "Health of a supervised source: 1 for its current state, 0 for the others.",
    ["source", "state"],
    registry=MENDLINE_REGISTRY,
)
RECORDS = Counter(
    "mendline_records_total",
    "Records extracted by supervised scrape runs.",
    ["source"],
    registry=MENDLINE_REGISTRY,
)
REPAIRS = Counter(
    "mendline_repairs_total",
    "Finished repairs by outcome (promoted, rolled_back, failed, not_needed).",
    ["outcome"],
    registry=MENDLINE_REGISTRY,
)
DECISIONS = Counter(
    "mendline_decisions_total",
    "Decisions taken, by verdict.",
    ["verdict"],
    registry=MENDLINE_REGISTRY,
)
LLM_TOKENS = Counter(
    "mendline_llm_tokens_total",
    "Tokens sent to and received from LLM providers.",
    ["provider"],
    registry=MENDLINE_REGISTRY,
)

HEALTH_STATES: tuple[str, ...] = tuple(state.value for state in HealthState)
"""Every value the ``state`` label of ``mendline_source_health`` takes."""
REPAIR_OUTCOMES: tuple[str, ...] = tuple(get_args(RepairResultKind))
"""Every outcome a repair can have."""

# Known outcomes start at zero, so ``increase()`` sees the first repair of each kind
# (a series that appears with the value 1 has no earlier sample to increase from).
for _outcome in REPAIR_OUTCOMES:
    REPAIRS.labels(outcome=_outcome)


def observe_task(
    pipeline: str, task_type: str, seconds: float, ok: bool, error_class: str | None = None
) -> None:
    """Record one finished task attempt.

    Args:
        pipeline: The pipeline's name (not the run id).
        task_type: The task's handler type, e.g. ``http`` or ``transform``.
        seconds: How long the attempt took.
        ok: Whether it succeeded.
        error_class: The error's type name when it failed (``error_class`` label).
    """
    TASK_DURATION.labels(pipeline=pipeline, task_type=task_type).observe(max(seconds, 0.0))
    if not ok:
        TASK_FAILURES.labels(
            pipeline=pipeline, task_type=task_type, error_class=error_class or "unknown"
        ).inc()


def set_source_health(source: str, state: str) -> None:
    """Set a source's health gauge: 1 for ``state``, 0 for every other state.

    Each worker process reports the last transition it recorded; with several workers,
    ``max by (source, state)`` may briefly show an older state from another worker until
    that worker records a newer transition.
    """
    for known in {*HEALTH_STATES, state}:
        SOURCE_HEALTH.labels(source=source, state=known).set(1.0 if known == state else 0.0)


def add_records(source: str, n: int) -> None:
    """Count ``n`` records extracted from ``source`` (ignored when ``n`` is not positive)."""
    if n > 0:
        RECORDS.labels(source=source).inc(n)


def count_repair(outcome: str) -> None:
    """Count one finished repair by its outcome."""
    REPAIRS.labels(outcome=outcome).inc()


def count_decision(verdict: str) -> None:
    """Count one decision by its verdict (e.g. ``approve``, ``reject``)."""
    DECISIONS.labels(verdict=verdict).inc()


def add_llm_tokens(provider: str, n: int) -> None:
    """Count ``n`` LLM tokens (prompt plus completion) used with ``provider``."""
    if n > 0:
        LLM_TOKENS.labels(provider=provider).inc(n)
