"""``Remediation``: predict → plan → decide → (approval) → execute → verify → record.

Started by ``PipelineRun`` when a task fails after its retries (id
``remediation/<pipeline run id>/<task>``). The agent only *proposes* one of the allowlisted
actions; the policy engine's verdict decides whether it runs alone (``execute``), waits for
a person (``needs_approval``: the shared ``approve``/``reject`` updates and signals, with
the approver's role and, when configured, an HMAC approval token checked by the validator),
or never runs (``block``). Approving with edited parameters runs the edited plan while the
original stays on record. Nobody deciding in time escalates: the policy's ``on_timeout``
action runs instead of the plan. Every step is appended to the tamper-evident audit log;
the ``decision`` query shows the whole state.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.remediation import RemediationActivities
    from models.approvals import ApprovalRequest
    from models.remediation import (
        ACTION_PARAMETERS,
        AuditRecord,
        DecideRequest,
        DecisionState,
        ExecuteRequest,
        ExecutionResult,
        PlanRequest,
        RemediationInput,
        RemediationPlan,
        RemediationStep,
        TokenRequest,
    )
    from workflows.approvals import ApprovalGate, ApprovalHandlers
    from workflows.failures import failure_message, raise_if_cancelled

QUICK = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(
    maximum_attempts=3,
    non_retryable_error_types=["PolicyFileError", "ModelIntegrityError", "RuleFileError"],
)
PLAN_TIMEOUT = timedelta(minutes=3)
"""The agent's budget: an LLM that times out is replaced by the heuristic inside it."""

# Predict, plan, decide, tokens and audit run as local activities: no server round trip
# each, so failure → verdict takes a fraction of what four regular activities would
# (docs/benchmarks.md, "Decision latency"). Executing the action is a regular activity: it
# can take minutes (a source repair) and heartbeats.


@workflow.defn(name="Remediation")
class Remediation(ApprovalHandlers):
    """Explain a failure, propose what to do, let policy gate it, act, and prove it."""

    @workflow.init
    def __init__(self, request: RemediationInput) -> None:
        self._state = DecisionState(
            workflow_id=workflow.info().workflow_id,
            failure=request.failure,
            environment=request.environment,
            dry_run=request.dry_run,
        )
        self._approvals = ApprovalGate()
        self._audits = 0

    @workflow.query(name="decision")
    def decision(self) -> DecisionState:
        """Features, risk, plan, cited runbooks, verdict and reasons, approver, execution."""
        return self._state

    @workflow.run
    async def run(self, request: RemediationInput) -> DecisionState:
        state = self._state
        state.step = RemediationStep.PREDICTING
        predicted = await workflow.execute_local_activity_method(
            RemediationActivities.predict_failure,
            request.failure,
            start_to_close_timeout=QUICK,
            retry_policy=STEP_RETRY,
            summary="predict: will this failure persist?",
        )
        state.features, state.prediction = predicted.features, predicted.prediction
        self._approvals.search_attributes = predicted.search_attributes

        state.step = RemediationStep.PLANNING
        state.planning = await workflow.execute_local_activity_method(
            RemediationActivities.plan_remediation,
            PlanRequest(
                failure=request.failure,
                features=predicted.features,
                prediction=predicted.prediction,
            ),
            start_to_close_timeout=PLAN_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="plan: ask the agent",
        )
        plan = state.planning.plan
        await self._audit(
            "plan",
            state.planning.provider,
            {
                "plan": plan.model_dump(mode="json"),
                "provider": state.planning.provider,
                "replaced": state.planning.replaced,
                "attempts": [
                    a.model_dump(mode="json", exclude={"raw"}) for a in state.planning.attempts
                ],
                "prediction": predicted.prediction.model_dump(mode="json"),
                "features": predicted.features.model_dump(mode="json"),
            },
        )

        state.step = RemediationStep.DECIDING
        verdict = await workflow.execute_local_activity_method(
            RemediationActivities.decide_remediation,
            DecideRequest(
                plan=plan, prediction=predicted.prediction, environment=request.environment
            ),
            start_to_close_timeout=QUICK,
            retry_policy=STEP_RETRY,
            summary=f"decide: {plan.action.value} ({plan.risk_level.value} risk)",
        )
        state.verdict = verdict
        await self._audit("verdict", "policy", verdict.model_dump(mode="json"))

        if verdict.verdict == "block":
            state.outcome = "blocked by policy: " + "; ".join(verdict.reasons)
            return await self._finish(
                ExecutionResult(
                    action=plan.action,
                    parameters=plan.parameters,
                    ok=False,
                    detail="not executed: " + "; ".join(verdict.reasons),
                    task_outcome="fail",
                )
            )
        if verdict.verdict == "needs_approval":
            chosen = await self._approval(request, plan)
            if chosen is None:
                return await self._finish(
                    ExecutionResult(
                        action=plan.action,
                        parameters=plan.parameters,
                        ok=False,
                        detail=state.outcome,
                        task_outcome="fail",
                    )
                )
            plan = chosen

        state.step = RemediationStep.EXECUTING
        try:
            executed = await workflow.execute_activity_method(
                RemediationActivities.execute_remediation,
                ExecuteRequest(
                    failure=request.failure,
                    action=plan.action,
                    parameters=plan.parameters,
                    dry_run=request.dry_run,
                    summary=plan.summary,
                    workflow_id=state.workflow_id,
                ),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=STEP_RETRY,
                summary=f"execute: {plan.action.value}" + (" (dry run)" if request.dry_run else ""),
            )
        except ActivityError as err:
            raise_if_cancelled(err)
            executed = ExecutionResult(
                action=plan.action,
                parameters=plan.parameters,
                ok=False,
                detail=f"execution failed: {failure_message(err)}",
                task_outcome="fail",
            )
        state.outcome = state.outcome or executed.detail
        return await self._finish(executed)

    async def _approval(
        self, request: RemediationInput, plan: RemediationPlan
    ) -> RemediationPlan | None:
        """Wait for a person; returns the plan to run (edited or not), or None."""
        state = self._state
        verdict = state.verdict
        assert verdict is not None
        request_id = f"{state.workflow_id}#1"
        tokens = await workflow.execute_local_activity_method(
            RemediationActivities.approval_tokens,
            TokenRequest(request_id=request_id, approvers=verdict.approvers),
            start_to_close_timeout=QUICK,
            retry_policy=STEP_RETRY,
            summary="approval tokens",
        )
        failure = request.failure
        subject = (
            f"{plan.action.value} for {failure.pipeline}/{failure.task}"
            if failure.kind == "task"
            else f"{plan.action.value} for source {failure.source}"
        )
        editable = {name: plan.parameters.get(name) for name in ACTION_PARAMETERS[plan.action]}
        state.step = RemediationStep.AWAITING_APPROVAL
        outcome = await self._approvals.wait(
            ApprovalRequest(
                request_id=request_id,
                kind="remediation",
                subject=subject,
                summary=plan.summary + " — " + "; ".join(verdict.reasons),
                details={
                    "plan": plan.model_dump(mode="json"),
                    "risk": state.prediction.risk if state.prediction else None,
                    "roles": verdict.approver_roles,
                    "error": f"{failure.error_type}: {failure.message}"[:500],
                },
                allowed_approvers=verdict.approvers,
                editable_params=editable,
                requested_at=workflow.now(),
                timeout_seconds=verdict.timeout_seconds,
                on_timeout="reject",
                token_sha256=tokens,
                param_action=plan.action.value,
            )
        )
        await self._audit(
            "approval",
            outcome.approver or "timeout",
            outcome.model_dump(mode="json"),
        )
        if outcome.via == "timeout":
            # Escalate instead of failing: the policy's default action runs.
            state.outcome = (
                f"no decision within {verdict.timeout_seconds:g}s: "
                f"{verdict.on_timeout.value} by policy"
            )
            state.original_plan = plan
            return plan.model_copy(update={"action": verdict.on_timeout, "parameters": {}})
        if not outcome.approved:
            state.outcome = f"rejected by {outcome.approver}" + (
                f": {outcome.reason}" if outcome.reason else ""
            )
            return None
        state.approved_by, state.approval_reason = outcome.approver, outcome.reason
        if outcome.params and outcome.params != {
            k: v for k, v in plan.parameters.items() if k in outcome.params
        }:
            state.original_plan = plan
            return plan.model_copy(
                update={
                    "parameters": {
                        **plan.parameters,
                        **{k: v for k, v in outcome.params.items() if v is not None},
                    }
                }
            )
        return plan

    async def _finish(self, executed: ExecutionResult) -> DecisionState:
        state = self._state
        state.executed = executed
        state.step = RemediationStep.VERIFYING
        await self._audit("execution", "executor", executed.model_dump(mode="json"))
        state.outcome = state.outcome or executed.detail
        await self._audit(
            "outcome",
            "remediation",
            {"outcome": state.outcome, "task_outcome": executed.task_outcome, "ok": executed.ok},
        )
        state.step = RemediationStep.DONE
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    async def _audit(self, kind: str, actor: str, detail: dict[str, object]) -> None:
        self._audits += 1
        entry = await workflow.execute_local_activity_method(
            RemediationActivities.record_audit,
            AuditRecord(
                workflow_id=self._state.workflow_id,
                kind=kind,
                actor=actor,
                detail=detail,
                dedupe_key=f"{self._state.workflow_id}#{self._audits}#{kind}",
            ),
            start_to_close_timeout=QUICK,
            retry_policy=STEP_RETRY,
            summary=f"audit: {kind}",
        )
        self._state.audit_ids.append(entry.id)
