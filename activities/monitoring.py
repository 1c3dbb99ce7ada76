"""Activities of the ``Monitor``: metric series from the run tables, rule evaluation with
incidents, and alert delivery.

Series (see :mod:`activities.alerting` for how rules judge them)::

    task_latency_seconds  task "<pipeline>/<task>"  one point per succeeded attempt
                          pipeline "<pipeline>"      one point per finished run
    error_rate            pipeline, task             failed / all attempts, per bucket
                          source                     failed / all runs, per bucket
    retries               pipeline, task             attempts after the first, per bucket
    records               source                     records of each succeeded run
                          task                       records_out of each succeeded attempt
    source_health         source                     0 ACTIVE … 3 DEAD at each transition,
                                                     and the current state now

Buckets hold only periods with activity, so a quiet night is not a run of zeros.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.alerting import NotifierError, as_application_error, build_notifier, evaluate
from activities.incidents_store import IncidentStore
from activities.storage import Database, as_utc, upsert, utcnow
from models.alert_rules import RuleFileError, load_rule_file
from models.alerts import BUILTIN_NOTIFIERS, SOURCE_HEALTH_LEVELS, Metric, ScopeKind
from models.db import PipelineRunRow, TaskAttemptRow
from models.db_monitor import MonitorStateRow
from models.db_sources import SourceEventRow, SourceRow, SourceRunRow
from models.health import HealthState
from models.incidents import AlertState, Delivery, MetricPoint, Series, SeriesKey
from models.monitor import (
    CollectRequest,
    DeliveryRecord,
    EvaluateOutcome,
    EvaluateRequest,
    IncidentRef,
    SendRequest,
)
from models.settings import Settings

STATE_NAME = "alerts"

_Key = tuple[Metric, ScopeKind, str]


class MonitoringActivities:
    """The Monitor's activities, sharing the database and an HTTP client per worker."""

    def __init__(self, settings: Settings, database: Database, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.database = database
        self.http = http
        self.incidents = IncidentStore(database)

    @activity.defn(name="collect_metrics")
    async def collect_metrics(self, request: CollectRequest) -> list[Series]:
        """The metric series of the last ``lookback_seconds`` (see the module docstring)."""
        return await asyncio.to_thread(self._collect, request)

    @activity.defn(name="evaluate_alerts")
    async def evaluate_alerts(self, request: EvaluateRequest) -> EvaluateOutcome:
        """Judge the series with the alert rules; store incidents, alerts and the state."""
        rules = self._rules(request.rules_path)
        return await asyncio.to_thread(self._evaluate, rules.rules, request)

    @activity.defn(name="send_alert")
    async def send_alert(self, request: SendRequest) -> Delivery:
        """Deliver one alert through one notifier and store the delivery.

        A notifier that is down raises a retryable ``NotifierUnavailableError`` (the
        workflow's retry policy backs off); one that refuses the alert raises a
        non-retryable ``NotifierRejectedError``.
        """
        rule_file = self._rules(request.rules_path)
        specs = {**BUILTIN_NOTIFIERS, **rule_file.notifiers}
        spec = specs.get(request.notifier)
        if spec is None:
            raise ApplicationError(
                f"alert {request.alert.fingerprint}: no notifier named {request.notifier!r} in "
                f"{request.rules_path or self.settings.alert_rules} (defined: {sorted(specs)})",
                type="NotifierRejectedError",
                non_retryable=True,
            )
        notifier = build_notifier(request.notifier, spec, self.settings, self.http)
        try:
            delivery = await notifier.send(request.alert)
        except NotifierError as exc:
            raise as_application_error(exc) from exc
        await self.record_delivery(request.alert.alert_id, delivery)
        return delivery

    @activity.defn(name="record_delivery")
    async def record_delivery_activity(self, request: DeliveryRecord) -> None:
        """Store a delivery that finally failed (the workflow gave up on it)."""
        await self.record_delivery(request.alert_id, request.delivery)

    async def record_delivery(self, alert_id: int | None, delivery: Delivery) -> None:
        if alert_id is not None:
            await asyncio.to_thread(self.incidents.record_delivery, alert_id, delivery)

    # --- helpers -------------------------------------------------------------------------------

    def _rules(self, path: str | None) -> Any:
        where = Path(path) if path else self.settings.alert_rules
        try:
            return load_rule_file(where)
        except (RuleFileError, OSError) as exc:
            raise ApplicationError(
                f"alert rules {where}: {exc}", type="RuleFileError", non_retryable=True
            ) from exc

    def _evaluate(self, rules: Any, request: EvaluateRequest) -> EvaluateOutcome:
        series: dict[SeriesKey | tuple[str, str, str], list[MetricPoint]] = {
            s.key: s.points for s in request.series
        }
        state = self.incidents.reconcile(self._load_state())
        result = evaluate(rules, series, state, request.now)
        alerts = self.incidents.apply(result)
        self._save_state(result.state)
        remediating = {rule.name for rule in rules if rule.remediate}
        opened = {(i.fingerprint, i.opened_at): i for i in self.incidents.incidents(open_only=True)}
        remediate = [
            IncidentRef(
                id=row.id,
                fingerprint=row.fingerprint,
                rule=row.rule,
                metric=row.metric.value,
                labels=row.labels,
                summary=row.summary,
            )
            for change in result.incidents_opened
            if change.rule in remediating
            and (row := opened.get((change.fingerprint, change.opened_at))) is not None
        ]
        return EvaluateOutcome(
            rules=len(rules),
            remediate=remediate,
            opened=[c.fingerprint for c in result.incidents_opened],
            updated=[c.fingerprint for c in result.incidents_updated],
            resolved=[c.fingerprint for c in result.incidents_resolved],
            alerts=alerts,
        )

    def _load_state(self) -> AlertState:
        with self.database.session() as session:
            row = session.get(MonitorStateRow, STATE_NAME)
            return AlertState.model_validate(row.state) if row is not None else AlertState()

    def _save_state(self, state: AlertState) -> None:
        row = {"name": STATE_NAME, "state": state.model_dump(mode="json"), "updated_at": utcnow()}
        with self.database.session() as session:
            upsert(session, MonitorStateRow.__table__, [row], ["name"])  # type: ignore[arg-type]

    def _collect(self, request: CollectRequest) -> list[Series]:
        now = request.now
        since = now - timedelta(seconds=request.lookback_seconds)
        bucket = request.bucket_seconds
        points: dict[_Key, list[MetricPoint]] = defaultdict(list)
        with self.database.session() as session:
            attempts = session.execute(
                select(
                    TaskAttemptRow.pipeline,
                    TaskAttemptRow.task,
                    TaskAttemptRow.attempt,
                    TaskAttemptRow.status,
                    TaskAttemptRow.started_at,
                    TaskAttemptRow.ended_at,
                    TaskAttemptRow.duration_ms,
                    TaskAttemptRow.records_out,
                    TaskAttemptRow.cached,
                )
                .where(TaskAttemptRow.started_at >= since)
                .order_by(TaskAttemptRow.started_at)
            ).all()
            runs = session.execute(
                select(PipelineRunRow.pipeline, PipelineRunRow.started_at, PipelineRunRow.ended_at)
                .where(PipelineRunRow.ended_at >= since, PipelineRunRow.started_at.is_not(None))
                .order_by(PipelineRunRow.ended_at)
            ).all()
            source_runs = session.execute(
                select(
                    SourceRunRow.source,
                    SourceRunRow.status,
                    SourceRunRow.ended_at,
                    SourceRunRow.stats,
                )
                .where(SourceRunRow.ended_at >= since)
                .order_by(SourceRunRow.ended_at)
            ).all()
            transitions = session.execute(
                select(SourceEventRow.source, SourceEventRow.at, SourceEventRow.detail)
                .where(SourceEventRow.kind == "health_changed", SourceEventRow.at >= since)
                .order_by(SourceEventRow.id)
            ).all()
            sources = session.execute(
                select(SourceRow.name, SourceRow.status).where(SourceRow.removed_at.is_(None))
            ).all()

        rates: dict[tuple[ScopeKind, str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
        for pipeline, task, attempt, status, started, ended, duration, records, cached in attempts:
            at = as_utc(ended or started)
            assert at is not None
            scope = f"{pipeline}/{task}"
            if status == "SUCCEEDED" and duration is not None and not cached:
                points[(Metric.TASK_LATENCY_SECONDS, ScopeKind.TASK, scope)].append(
                    MetricPoint(at=at, value=duration / 1000)
                )
                if records is not None:
                    points[(Metric.RECORDS, ScopeKind.TASK, scope)].append(
                        MetricPoint(at=at, value=float(records))
                    )
            start = _bucket(at, bucket)
            for kind, name in ((ScopeKind.PIPELINE, pipeline), (ScopeKind.TASK, scope)):
                counts = rates[(kind, name, start)]
                counts[0] += 1
                counts[1] += status == "FAILED"
                counts[2] += attempt > 1
        for (kind, name, start), (total, failed, retried) in sorted(rates.items(), key=_by_time):
            points[(Metric.ERROR_RATE, kind, name)].append(
                MetricPoint(at=start, value=failed / total)
            )
            points[(Metric.RETRIES, kind, name)].append(MetricPoint(at=start, value=float(retried)))
        for pipeline, run_started, run_ended in runs:
            run_start, run_end = as_utc(run_started), as_utc(run_ended)
            if run_start is not None and run_end is not None:
                points[(Metric.TASK_LATENCY_SECONDS, ScopeKind.PIPELINE, pipeline)].append(
                    MetricPoint(at=run_end, value=(run_end - run_start).total_seconds())
                )

        source_rates: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
        for source, status, ended, stats in source_runs:
            at = as_utc(ended)
            if at is None:
                continue
            counts = source_rates[(source, _bucket(at, bucket))]
            counts[0] += 1
            counts[1] += status == "FAILED"
            if status == "SUCCEEDED" and not stats.get("held"):
                points[(Metric.RECORDS, ScopeKind.SOURCE, source)].append(
                    MetricPoint(at=at, value=float(stats.get("records", 0)))
                )
        for (source, start), (total, failed) in sorted(source_rates.items(), key=lambda i: i[0][1]):
            points[(Metric.ERROR_RATE, ScopeKind.SOURCE, source)].append(
                MetricPoint(at=start, value=failed / total)
            )
        for source, at, detail in transitions:
            level = _level(detail.get("to_state"))
            stamp = as_utc(at)
            if level is not None and stamp is not None:
                points[(Metric.SOURCE_HEALTH, ScopeKind.SOURCE, source)].append(
                    MetricPoint(at=stamp, value=level)
                )
        for source, status in sources:
            level = _level(status)
            if level is not None:
                points[(Metric.SOURCE_HEALTH, ScopeKind.SOURCE, source)].append(
                    MetricPoint(at=now, value=level)
                )
        return [
            Series(metric=metric, scope_kind=kind, scope_name=name, points=_sorted(found))
            for (metric, kind, name), found in sorted(points.items())
        ]


def _bucket(at: datetime, seconds: float) -> datetime:
    """The start of the bucket holding ``at`` (buckets aligned on the Unix epoch)."""
    stamp = at.timestamp()
    return datetime.fromtimestamp(stamp - stamp % seconds, tz=at.tzinfo)


def _by_time(item: tuple[tuple[ScopeKind, str, datetime], list[int]]) -> datetime:
    return item[0][2]


def _level(state: Any) -> float | None:
    try:
        return SOURCE_HEALTH_LEVELS[HealthState(state)]
    except ValueError:
        return None  # ONBOARDING, FAILED, REMOVED: not supervised health


def _sorted(found: Iterable[MetricPoint]) -> list[MetricPoint]:
    return sorted(found, key=lambda point: point.at)
