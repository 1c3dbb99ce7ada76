"""What ``bench.supervisors`` reads back after a run: supervised runs from the database,
the supervisors' ``health`` and histories."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError

from activities.storage import Database
from bench.procstats import distribution
from models.db_sources import SourceRunRow
from models.supervisor import SupervisorView, supervisor_id

QUERY_CONCURRENCY = 20
QUERY_TIMEOUT = timedelta(seconds=10)
"""A health query the overloaded worker has not answered by then counts as unanswered."""

RunRow = tuple[str, int, str, bool, datetime, datetime]
"""(source, cycle, status, held, started_at, ended_at) of one supervised run."""


def run_rows(database: Database) -> list[RunRow]:
    """(source, cycle, status, held, started_at, ended_at) of every supervised run."""
    stmt = select(
        SourceRunRow.source,
        SourceRunRow.run_id,
        SourceRunRow.status,
        SourceRunRow.stats["held"].as_boolean(),
        SourceRunRow.started_at,
        SourceRunRow.ended_at,
    )
    rows = []
    with database.session() as session:
        for source, run, status, held, started, ended in session.execute(stmt):
            if started is None or ended is None:
                continue
            cycle = int(run.rsplit("/", 1)[-1].rsplit("-", 1)[-1])
            rows.append(
                (
                    source,
                    cycle,
                    status,
                    bool(held),
                    started.replace(tzinfo=UTC),
                    ended.replace(tzinfo=UTC),
                )
            )
    return rows


def analyse_runs(
    rows: list[RunRow],
    started: dict[str, datetime],
    t0: datetime,
    t_end: datetime,
    interval: float,
) -> dict[str, Any]:
    """Runs per minute, run durations and lags inside the window."""
    inside = [r for r in rows if r[5] <= t_end]
    by_source: dict[str, dict[int, tuple[datetime, datetime]]] = {}
    for source, cycle, _, _, begun, ended in rows:
        by_source.setdefault(source, {})[cycle] = (begun, ended)
    first_lag, lag, period = [], [], []
    for source, cycles in by_source.items():
        for cycle, (begun, _) in cycles.items():
            if begun > t_end:
                continue
            if cycle == 1:
                first_lag.append((begun - started[source]).total_seconds())
            elif cycle - 1 in cycles:
                prev_begun, prev_end = cycles[cycle - 1]
                lag.append((begun - prev_end).total_seconds() - interval)
                period.append((begun - prev_begun).total_seconds())
    minutes = int((t_end - t0).total_seconds() // 60)
    per_minute = [
        sum(1 for r in inside if t0 + timedelta(minutes=m) < r[5] <= t0 + timedelta(minutes=m + 1))
        for m in range(minutes)
    ]
    steady = per_minute[1:] or per_minute
    return {
        "runs": len(inside),
        "failed": sum(1 for r in inside if r[2] != "SUCCEEDED"),
        "held": sum(1 for r in inside if r[3]),
        "runs_per_minute": per_minute,
        "steady_runs_per_minute": round(statistics.fmean(steady), 1) if steady else 0,
        "duration_s": distribution([(r[5] - r[4]).total_seconds() for r in inside]),
        "first_run_lag_s": distribution(first_lag),
        "lag_s": distribution(lag),
        "period_s": distribution(period),
        "sources_with_a_run": len({r[0] for r in inside}),
    }


async def backlog(client: Client, names: list[str]) -> dict[str, Any]:
    """Every supervisor's health: states, and how overdue the waiting ones are."""
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)
    views: list[SupervisorView] = []

    unanswered: Counter[str] = Counter()

    async def one(name: str) -> None:
        async with gate:
            handle = client.get_workflow_handle(supervisor_id(name))
            try:
                views.append(
                    await handle.query(
                        "health", result_type=SupervisorView, rpc_timeout=QUERY_TIMEOUT
                    )
                )
            except RPCError as exc:
                unanswered[exc.status.name if exc.status else "error"] += 1

    asked = datetime.now(UTC)
    began = time.perf_counter()
    await asyncio.gather(*(one(name) for name in names))
    overdue = [
        max(0.0, (asked - v.next_run_at).total_seconds())
        for v in views
        if v.next_run_at is not None and not v.running
    ]
    return {
        "query_wall_s": round(time.perf_counter() - began, 2),
        "unanswered": dict(unanswered),
        "health": dict(Counter(v.health.value for v in views)),
        "running": sum(1 for v in views if v.running),
        "overdue_s": distribution(overdue),
        "overdue_over_5s": sum(1 for o in overdue if o > 5),
        "cycles": distribution([float(v.cycle) for v in views]),
    }


async def history_breakdown(client: Client, names: list[str]) -> dict[str, Any]:
    """Where a supervised run's time goes, from the histories of ``names``' supervisors.

    * ``timer_late_s`` — a ``next run`` timer fired this long after it was due (server);
    * ``workflow_task_wait_s`` — a workflow task waited this long for the worker to take it;
    * ``workflow_task_s`` — the worker took this long to complete it (the first task of a
      workflow apart: ``first_workflow_task_s``, which builds its sandbox);
    * ``activity_wait_s`` — an activity waited this long for a worker slot;
    * ``activity_s`` — it ran this long.
    """
    spans: dict[str, list[float]] = {
        "timer_late_s": [],
        "workflow_task_wait_s": [],
        "workflow_task_s": [],
        "first_workflow_task_s": [],
        "activity_wait_s": [],
        "activity_s": [],
    }
    for name in names:
        history = await client.get_workflow_handle(supervisor_id(name)).fetch_history()
        events = {event.event_id: event for event in history.events}
        spans_seen = False

        def since(event_id: int, at: datetime, events: dict[int, HistoryEvent] = events) -> float:
            return (at - events[event_id].event_time.ToDatetime()).total_seconds()

        for event in history.events:
            at = event.event_time.ToDatetime()
            kind = event.WhichOneof("attributes")
            if kind == "workflow_task_started_event_attributes":
                attrs = event.workflow_task_started_event_attributes
                spans["workflow_task_wait_s"].append(since(attrs.scheduled_event_id, at))
            elif kind == "workflow_task_completed_event_attributes":
                done = event.workflow_task_completed_event_attributes
                first = not spans_seen
                spans_seen = True
                spans["first_workflow_task_s" if first else "workflow_task_s"].append(
                    since(done.started_event_id, at)
                )
            elif kind == "timer_fired_event_attributes":
                timer = events[event.timer_fired_event_attributes.started_event_id]
                due = timer.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
                spans["timer_late_s"].append(since(timer.event_id, at) - due.total_seconds())
            elif kind == "activity_task_started_event_attributes":
                begun = event.activity_task_started_event_attributes
                spans["activity_wait_s"].append(since(begun.scheduled_event_id, at))
            elif kind == "activity_task_completed_event_attributes":
                ended = event.activity_task_completed_event_attributes
                spans["activity_s"].append(since(ended.started_event_id, at))
    return {"workflows": len(names), **{k: distribution(v) for k, v in spans.items()}}
