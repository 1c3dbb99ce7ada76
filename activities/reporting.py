"""Read what ``mendline report`` shows from Mendline's database."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from activities.incidents_store import IncidentStore
from activities.storage import Database, as_utc, utcnow
from models.db import PipelineRunRow, TaskAttemptRow
from models.db_sources import SourceEventRow, SourceRow, SourceRunRow
from models.report import ReportData, RunPoint, SourceHistory, SourceMark, TaskLatency

MAX_TASKS = 30
"""Tasks shown, slowest p90 first."""
MAX_INCIDENTS = 50

_MARKS = {
    "repair_finished": "repair",
    "version_promoted": "promoted",
    "version_rolled_back": "rolled back",
    "health_changed": "health",
}


def collect_report(database: Database, days: float = 7.0) -> ReportData:
    """The report's data for the last ``days`` days."""
    now = utcnow()
    since = now - timedelta(days=days)
    data = ReportData(generated_at=now, since=since)
    with database.session() as session:
        statuses = session.execute(
            select(PipelineRunRow.status).where(PipelineRunRow.updated_at >= since)
        ).scalars()
        data.pipeline_runs = dict(Counter(statuses))
        durations: dict[tuple[str, str], list[float]] = defaultdict(list)
        failures: Counter[tuple[str, str]] = Counter()
        attempts = session.execute(
            select(
                TaskAttemptRow.pipeline,
                TaskAttemptRow.task,
                TaskAttemptRow.status,
                TaskAttemptRow.duration_ms,
            ).where(TaskAttemptRow.started_at >= since)
        )
        for pipeline, task, status, duration in attempts:
            if status == "FAILED":
                failures[(pipeline, task)] += 1
            if status == "SUCCEEDED" and duration is not None:
                durations[(pipeline, task)].append(duration / 1000)
        for key in set(durations) | set(failures):
            values = sorted(durations.get(key, []))
            data.tasks.append(
                TaskLatency(
                    pipeline=key[0],
                    task=key[1],
                    attempts=len(values) + failures[key],
                    failures=failures[key],
                    p50=_percentile(values, 0.5),
                    p90=_percentile(values, 0.9),
                    p99=_percentile(values, 0.99),
                )
            )
        data.tasks.sort(key=lambda t: (-t.p90, t.pipeline, t.task))
        del data.tasks[MAX_TASKS:]

        sources = {
            name: SourceHistory(name=name, status=status, active_version=version)
            for name, status, version in session.execute(
                select(SourceRow.name, SourceRow.status, SourceRow.active_version)
                .where(SourceRow.removed_at.is_(None))
                .order_by(SourceRow.name)
            )
        }
        runs = session.execute(
            select(
                SourceRunRow.source, SourceRunRow.ended_at, SourceRunRow.status, SourceRunRow.stats
            )
            .where(SourceRunRow.ended_at >= since)
            .order_by(SourceRunRow.ended_at)
        )
        for source, ended, status, stats in runs:
            at = as_utc(ended)
            if source in sources and at is not None:
                sources[source].runs.append(
                    RunPoint(
                        at=at,
                        records=int(stats.get("records", 0)),
                        status=status,
                        held=bool(stats.get("held")),
                    )
                )
        events = session.execute(
            select(
                SourceEventRow.source, SourceEventRow.at, SourceEventRow.kind, SourceEventRow.detail
            )
            .where(SourceEventRow.at >= since, SourceEventRow.kind.in_(_MARKS))
            .order_by(SourceEventRow.id)
        )
        for source, at, kind, detail in events:
            stamp = as_utc(at)
            if source in sources and stamp is not None:
                sources[source].marks.append(
                    SourceMark(at=stamp, kind=_MARKS[kind], label=_label(kind, detail))
                )
    data.sources = list(sources.values())
    incidents = IncidentStore(database).incidents(limit=MAX_INCIDENTS)
    data.incidents = [i for i in incidents if i.opened_at >= since or i.status == "open"]
    return data


def _label(kind: str, detail: dict[str, object]) -> str:
    if kind == "repair_finished":
        return f"repair {detail.get('number')}: {detail.get('outcome')}"
    if kind == "health_changed":
        return f"{detail.get('from_state')} → {detail.get('to_state')}"
    if kind == "version_promoted":
        return f"v{detail.get('version')} promoted"
    return f"rolled back to v{detail.get('version')}"


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(share * (len(values) - 1))))
    return values[index]


def report_period(data: ReportData) -> tuple[datetime, datetime]:
    """The report's time axis."""
    return data.since, data.generated_at
