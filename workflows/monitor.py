"""``Monitor``: one scan of run metrics → incidents → alerts, started by a Temporal Schedule.

``mendline monitor enable --every 5m`` creates the Schedule ``mendline-monitor`` (visible
under Schedules in the Web UI); each action starts this workflow. Alerts go out in parallel,
one activity per (alert, notifier), each retried with backoff; a notifier that stays down
fails only its own delivery, which is stored as failed, and never holds up anything else.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.monitoring import MonitoringActivities
    from models.incidents import Alert, Delivery
    from models.monitor import (
        CollectRequest,
        DeliveryRecord,
        EvaluateRequest,
        IncidentRef,
        MonitorInput,
        MonitorReport,
        SendRequest,
    )
    from models.remediation import FailureContext, RemediationInput
    from workflows.failures import failure_message, raise_if_cancelled

STEP_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["RuleFileError"])
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
    non_retryable_error_types=["NotifierRejectedError"],
)
"""A notifier that is down is tried for about two minutes, then its delivery is failed."""


@workflow.defn(name="Monitor")
class Monitor:
    """Scan metrics, keep incidents current, and tell people once."""

    @workflow.run
    async def run(self, request: MonitorInput) -> MonitorReport:
        now = workflow.now()
        series = await workflow.execute_activity_method(
            MonitoringActivities.collect_metrics,
            CollectRequest(
                lookback_seconds=request.lookback_seconds,
                bucket_seconds=request.bucket_seconds,
                now=now,
            ),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=STEP_RETRY,
            summary="collect metric series",
        )
        outcome = await workflow.execute_activity_method(
            MonitoringActivities.evaluate_alerts,
            EvaluateRequest(series=series, rules_path=request.rules_path, now=now),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=STEP_RETRY,
            summary="evaluate alert rules",
        )
        sends = [
            self._send(alert, name, request.rules_path)
            for alert in outcome.alerts
            for name in alert.notifiers
        ]
        deliveries = list(await asyncio.gather(*sends))
        remediations = [await self._remediate(incident) for incident in outcome.remediate]
        return MonitorReport(
            at=now,
            series=len(series),
            points=sum(len(s.points) for s in series),
            rules=outcome.rules,
            opened=outcome.opened,
            updated=outcome.updated,
            resolved=outcome.resolved,
            deliveries=deliveries,
            remediations=[wid for wid in remediations if wid],
        )

    async def _remediate(self, incident: IncidentRef) -> str | None:
        """Start the incident's Remediation; it outlives this scan (parent close: abandon)."""
        labels = incident.labels
        source = labels.get("source")
        wid = f"remediation/incident/{incident.id}"
        failure = FailureContext(
            kind="source" if source else "task",
            pipeline=labels.get("pipeline"),
            task=labels.get("task"),
            source=source,
            error_type=f"Incident:{incident.metric}",
            message=incident.summary,
            incident_id=incident.id,
            at=workflow.now(),
        )
        try:
            await workflow.start_child_workflow(
                "Remediation",
                RemediationInput(failure=failure),
                id=wid,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"remediate incident {incident.id}: {incident.fingerprint}",
            )
        except WorkflowAlreadyStartedError:
            return None
        return wid

    async def _send(self, alert: Alert, notifier: str, rules_path: str | None) -> Delivery:
        try:
            return await workflow.execute_activity_method(
                MonitoringActivities.send_alert,
                SendRequest(alert=alert, notifier=notifier, rules_path=rules_path),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=DELIVERY_RETRY,
                summary=f"{alert.kind.value} alert {alert.fingerprint} → {notifier}",
            )
        except ActivityError as err:
            raise_if_cancelled(err)
            failed = Delivery(
                notifier=notifier, type="?", ok=False, attempts=0, error=failure_message(err)
            )
            await workflow.execute_activity_method(
                MonitoringActivities.record_delivery_activity,
                DeliveryRecord(alert_id=alert.alert_id, delivery=failed),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=STEP_RETRY,
                summary=f"delivery to {notifier} failed",
            )
            return failed
