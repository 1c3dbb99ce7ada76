"""Activities of the ``Remediation`` workflow: predict, plan, decide, tokens, execute, audit.

The executor knows exactly the actions of :class:`~models.remediation.RemediationAction`:

=====================  ==============================================================
retry                  the pipeline runs the task again
retry_with_backoff     … after ``delay_seconds`` (a durable timer in the pipeline)
tune                   … with ``timeout_seconds`` / ``max_attempts`` / ``batch_size``
skip                   the task is marked SKIPPED (and its downstream tasks with it)
alert                  notify (log + ``MENDLINE_REMEDIATION_NOTIFIERS``); the task fails
escalate               notify as critical, for a person; the task fails
repair_source          ``fix`` the source's supervisor and wait for the repair; on a
                       promotion or rollback the task runs again
rollback               re-activate the source's previous scraper version; the task runs again
quarantine             pause the source's supervisor (no scheduled runs) and mark it
                       QUARANTINED; the task fails
=====================  ==============================================================

With ``dry_run`` nothing is done: the result says what would have happened.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.agent import plan as agent_plan
from activities.alerting import build_notifiers, deliver
from activities.audit import AuditLog
from activities.heartbeat import heartbeating
from activities.incidents_store import IncidentStore
from activities.policy import decide
from activities.predictor import PredictorError, features_for, load_model, predict
from activities.sources_store import SourceStore, SourceStoreError
from activities.storage import Database, utcnow
from models.alert_rules import RuleFileError, load_rule_file
from models.alerts import Metric, RuleFile, Severity
from models.approvals import approval_token
from models.incidents import Alert, AlertKind
from models.policy import PolicyFileError, load_policy
from models.remediation import (
    AuditEntry,
    AuditRecord,
    DecideRequest,
    ExecuteRequest,
    ExecutionResult,
    FailureContext,
    PlanOutcome,
    PlanRequest,
    PredictOutcome,
    RemediationAction,
    TokenRequest,
    Verdict,
)
from models.settings import Settings
from models.sources import SourceStatus
from models.supervisor import (
    FixRequest,
    HandRequest,
    RepairReport,
    RepairTicket,
    SupervisorView,
    supervisor_id,
)

A = RemediationAction
REPAIR_WAIT = timedelta(minutes=8)


class RemediationActivities:
    """The remediation loop's activities, sharing the database per worker."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        store: SourceStore,
        http: httpx.AsyncClient,
        search_attributes: bool = True,
    ) -> None:
        self.settings = settings
        self.database = database
        self.store = store
        self.http = http
        self.search_attributes = search_attributes
        self.audit = AuditLog(database, settings.resolved_audit_log)

    @activity.defn(name="predict_failure")
    async def predict_failure(self, failure: FailureContext) -> PredictOutcome:
        """Features from telemetry and the failure predictor's risk."""
        features = await asyncio.to_thread(features_for, self.database, failure)
        try:
            model = await asyncio.to_thread(load_model, self.database)
        except PredictorError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        prediction = predict(features, model)
        return PredictOutcome(
            features=features, prediction=prediction, search_attributes=self.search_attributes
        )

    @activity.defn(name="plan_remediation")
    async def plan_remediation(self, request: PlanRequest) -> PlanOutcome:
        """Ask the configured agent for a plan (validated, re-asked once, else heuristic)."""
        return await agent_plan(
            request.failure,
            request.features,
            request.prediction,
            self.settings,
            IncidentStore(self.database),
        )

    @activity.defn(name="decide_remediation")
    async def decide_remediation(self, request: DecideRequest) -> Verdict:
        """The policy engine's verdict on the plan."""
        try:
            policy = await asyncio.to_thread(load_policy, self.settings.policy)
        except (PolicyFileError, OSError) as exc:
            raise ApplicationError(
                f"policy {self.settings.policy}: {exc}", type="PolicyFileError", non_retryable=True
            ) from exc
        return decide(request.plan, request.prediction, request.environment, policy)

    @activity.defn(name="approval_tokens")
    async def approval_tokens(self, request: TokenRequest) -> dict[str, str]:
        """Per approver, the SHA-256 of their approval token (empty: no secret configured)."""
        secret = self.settings.approval_secret
        if secret is None:
            return {}
        key = secret.get_secret_value()
        return {
            name: hashlib.sha256(approval_token(key, request.request_id, name).encode()).hexdigest()
            for name in request.approvers
        }

    @activity.defn(name="record_audit")
    async def record_audit(self, record: AuditRecord) -> AuditEntry:
        """Append to the tamper-evident audit log (idempotent by ``dedupe_key``)."""
        return await asyncio.to_thread(self.audit.append, record)

    @activity.defn(name="execute_remediation")
    @heartbeating
    async def execute_remediation(self, request: ExecuteRequest) -> ExecutionResult:
        """Carry out one allowlisted action (see the module docstring)."""
        action, params = request.action, dict(request.parameters)
        if request.dry_run:
            return ExecutionResult(
                action=action,
                parameters=params,
                dry_run=True,
                detail=f"dry run: would {_describe(action, params, request.failure)}",
                task_outcome="fail",
            )
        if action == A.RETRY:
            return ExecutionResult(
                action=action, detail="the task runs again", task_outcome="retry"
            )
        if action == A.RETRY_WITH_BACKOFF:
            params.setdefault("delay_seconds", 60.0)
            return ExecutionResult(
                action=action,
                parameters=params,
                detail=f"the task runs again in {params['delay_seconds']:g}s",
                task_outcome="retry",
            )
        if action == A.TUNE:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "no change"
            return ExecutionResult(
                action=action,
                parameters=params,
                detail=f"the task runs again with {shown}",
                task_outcome="retry",
            )
        if action == A.SKIP:
            return ExecutionResult(
                action=action,
                detail="the task is skipped with its downstream tasks",
                task_outcome="skip",
            )
        if action in (A.ALERT, A.ESCALATE):
            return await self._notify(request)
        source = request.failure.source
        if not source:
            raise ApplicationError(
                f"{action.value} needs a source, and this failure has none "
                f"({request.failure.pipeline}/{request.failure.task})",
                type="RemediationError",
                non_retryable=True,
            )
        if action == A.REPAIR_SOURCE:
            return await self._repair(request, source)
        if action == A.ROLLBACK:
            return await self._rollback(source)
        return await self._quarantine(request, source)

    # --- actions ---------------------------------------------------------------------------

    async def _notify(self, request: ExecuteRequest) -> ExecutionResult:
        failure = request.failure
        where = (
            f"{failure.pipeline}/{failure.task}"
            if failure.kind == "task"
            else f"source {failure.source}"
        )
        critical = request.action == A.ESCALATE
        alert = Alert(
            kind=AlertKind.OPENED,
            rule="remediation",
            fingerprint=f"remediation{{{where}}}",
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            metric=Metric.ERROR_RATE,
            labels={"scope": where},
            title=("Needs a person: " if critical else "Failure: ") + where,
            summary=f"{request.summary} — {failure.error_type}: {failure.message}"[:1000]
            + f" (remediation {request.workflow_id})",
            at=utcnow(),
            notifiers=["log", *self.settings.remediation_notifier_names],
        )
        rule_file = self._rule_file()
        notifiers = build_notifiers(rule_file, self.settings, self.http)
        # `deliver` never raises: a notifier that is down must not fail the remediation.
        deliveries = await deliver(alert, notifiers)
        sent = [d.notifier for d in deliveries if d.ok]
        failed = [f"{d.notifier}: {d.error}" for d in deliveries if not d.ok]
        detail = ("escalated to a person" if critical else "alert sent") + f" via {', '.join(sent)}"
        if failed:
            detail += "; not delivered: " + "; ".join(failed)
        return ExecutionResult(
            action=request.action, ok=bool(sent), detail=detail, task_outcome="fail"
        )

    async def _repair(self, request: ExecuteRequest, source: str) -> ExecutionResult:
        client = activity.client()
        handle = client.get_workflow_handle(supervisor_id(source))
        try:
            ticket = await handle.execute_update(
                "fix",
                FixRequest(reason=f"remediation {request.workflow_id}", requested_by="remediation"),
                result_type=RepairTicket,
            )
        except WorkflowUpdateFailedError as exc:
            return ExecutionResult(
                action=A.REPAIR_SOURCE,
                ok=False,
                detail=f"the supervisor refused the repair: {exc.cause or exc}",
                task_outcome="fail",
            )
        except RPCError as exc:
            return ExecutionResult(
                action=A.REPAIR_SOURCE,
                ok=False,
                detail=f"source {source!r} is not supervised ({exc.message})",
                task_outcome="fail",
            )
        repair = client.get_workflow_handle(ticket.workflow_id, result_type=RepairReport)
        report = await _wait_for_repair(repair, handle, REPAIR_WAIT)
        healed = report is not None and report.outcome in ("promoted", "rolled_back", "not_needed")
        detail = (
            f"{ticket.workflow_id}: {report.outcome} — {report.reason}"
            if report is not None
            else f"{ticket.workflow_id} did not finish within {REPAIR_WAIT}"
        )
        return ExecutionResult(
            action=A.REPAIR_SOURCE,
            ok=healed,
            detail=detail,
            task_outcome="retry" if healed else "fail",
        )

    async def _rollback(self, source: str) -> ExecutionResult:
        try:
            active = await asyncio.to_thread(self.store.active_version, source)
            target = await asyncio.to_thread(
                lambda: self.store.rollback(source, from_version=active.version if active else None)
            )
        except SourceStoreError as exc:
            raise ApplicationError(str(exc), type=exc.type_name, non_retryable=True) from exc
        if target is None or (active is not None and target == active.version):
            return ExecutionResult(
                action=A.ROLLBACK,
                ok=False,
                detail=f"source {source!r} has no earlier version to roll back to",
                task_outcome="fail",
            )
        return ExecutionResult(
            action=A.ROLLBACK,
            detail=f"source {source!r} rolled back to v{target}; the task runs again",
            task_outcome="retry",
        )

    async def _quarantine(self, request: ExecuteRequest, source: str) -> ExecutionResult:
        reason = f"quarantined by remediation {request.workflow_id}"
        try:
            await (
                activity.client()
                .get_workflow_handle(supervisor_id(source))
                .execute_update(
                    "pause",
                    HandRequest(reason=reason, requested_by="remediation"),
                    result_type=SupervisorView,
                )
            )
            paused = "its supervisor is paused"
        except (RPCError, WorkflowUpdateFailedError) as exc:
            paused = f"no supervisor to pause ({exc})"
        try:
            await asyncio.to_thread(self.store.set_status, source, SourceStatus.QUARANTINED, reason)
        except SourceStoreError as exc:
            raise ApplicationError(str(exc), type=exc.type_name, non_retryable=True) from exc
        return ExecutionResult(
            action=A.QUARANTINE,
            detail=f"source {source!r} quarantined: {paused}; `mendline source resume {source}` lifts it",
            task_outcome="fail",
        )

    def _rule_file(self) -> RuleFile:
        try:
            return load_rule_file(self.settings.alert_rules)
        except (RuleFileError, OSError):
            return RuleFile()


async def _wait_for_repair(repair: Any, supervisor: Any, limit: timedelta) -> RepairReport | None:
    """The repair's report; polls until its workflow exists, heartbeating meanwhile."""
    deadline = asyncio.get_running_loop().time() + limit.total_seconds()
    while asyncio.get_running_loop().time() < deadline:
        try:
            report: RepairReport = await asyncio.wait_for(repair.result(), timeout=5)
            return report
        except (RPCError, TimeoutError):
            activity.heartbeat("waiting for the repair")
            await asyncio.sleep(0.5)
    return None


def _describe(action: RemediationAction, params: dict[str, Any], failure: FailureContext) -> str:
    where = (
        f"{failure.pipeline}/{failure.task}"
        if failure.kind == "task"
        else f"source {failure.source}"
    )
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {
        A.RETRY: f"run {where} again",
        A.RETRY_WITH_BACKOFF: f"run {where} again after a delay ({shown or 'delay_seconds=60'})",
        A.TUNE: f"run {where} again with {shown or 'its parameters unchanged'}",
        A.SKIP: f"skip {where} and its downstream tasks",
        A.ALERT: f"send an alert about {where}",
        A.ESCALATE: f"escalate {where} to a person",
        A.REPAIR_SOURCE: f"repair source {failure.source} (its supervisor's doctor) and retry",
        A.ROLLBACK: f"roll source {failure.source} back to its previous scraper version and retry",
        A.QUARANTINE: f"quarantine source {failure.source}",
    }[action]
