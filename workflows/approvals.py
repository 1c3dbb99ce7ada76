"""The shared approval mechanism, mixed into any workflow that may wait for a person.

A workflow class inherits :class:`ApprovalHandlers`, creates ``self._approvals =
ApprovalGate()`` in its ``__init__``, and calls ``await self._approvals.wait(request)``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from models.approvals import (
        ApprovalDecision,
        ApprovalOutcome,
        ApprovalRequest,
        ApprovalStatus,
    )
    from models.remediation import RemediationAction, parameter_problems

PENDING_APPROVAL_ATTR = SearchAttributeKey.for_bool("MendlinePendingApproval")


class ApprovalGate:
    """Holds the one pending request of a workflow and the outcomes so far."""

    def __init__(self) -> None:
        self.pending: ApprovalRequest | None = None
        self.history: list[ApprovalOutcome] = []
        self.ignored: list[str] = []
        self._outcome: ApprovalOutcome | None = None
        self.search_attributes = True

    def problem(self, decision: ApprovalDecision, approve: bool) -> str | None:
        """Why ``decision`` cannot be accepted, or None when it can."""
        verb = "approve" if approve else "reject"
        if self.pending is None:
            decided = [o for o in self.history if o.request_id == decision.request_id]
            if decided:
                done = "approved" if decided[-1].approved else "rejected"
                return f"request {decision.request_id} was already {done} by {decided[-1].approver}"
            return f"nothing awaits approval here (request {decision.request_id} is unknown)"
        if decision.request_id != self.pending.request_id:
            return (
                f"request {decision.request_id!r} is not the pending one "
                f"({self.pending.request_id!r}); list pending requests with `mendline approvals list`"
            )
        if self._outcome is not None:
            return f"request {decision.request_id} has just been decided"
        allowed = self.pending.allowed_approvers
        if allowed and decision.approver not in allowed:
            return (
                f"{decision.approver!r} may not {verb} this request (allowed: {', '.join(allowed)})"
            )
        unknown = sorted(set(decision.params) - set(self.pending.editable_params))
        if unknown:
            editable = ", ".join(sorted(self.pending.editable_params)) or "none"
            return f"params {unknown} cannot be set on this request (editable: {editable})"
        if self.pending.param_action and decision.params:
            problems = parameter_problems(
                RemediationAction(self.pending.param_action), decision.params
            )
            if problems:
                return "invalid params: " + "; ".join(problems)
        expected = self.pending.token_sha256
        if expected:
            token = decision.token or ""
            digest = hashlib.sha256(token.encode()).hexdigest()
            if not token or not hmac.compare_digest(digest, expected.get(decision.approver, "")):
                return (
                    f"missing or invalid approval token for {decision.approver!r}: sign "
                    f"'{decision.request_id}|{decision.approver}' with MENDLINE_APPROVAL_SECRET "
                    f"(HMAC-SHA256, hex); `mendline approvals approve` does it for you"
                )
        return None

    def validate(self, decision: ApprovalDecision, approve: bool) -> None:
        """Update validator: raise so the update is rejected before it enters history."""
        reason = self.problem(decision, approve)
        if reason:
            raise ValueError(reason)

    def decide(self, decision: ApprovalDecision, approve: bool, via: str) -> ApprovalOutcome:
        """Record a decision (already validated) and wake the waiting workflow."""
        outcome = ApprovalOutcome(
            request_id=decision.request_id,
            approved=approve,
            approver=decision.approver,
            reason=decision.reason,
            params=decision.params,
            via="signal" if via == "signal" else "update",
            decided_at=workflow.now(),
        )
        self._outcome = outcome
        return outcome

    def signal(self, decision: ApprovalDecision, approve: bool) -> None:
        """Signal form: invalid decisions cannot be refused, so they are recorded and ignored."""
        reason = self.problem(decision, approve)
        if reason:
            workflow.logger.warning("ignoring approval signal: %s", reason)
            self.ignored.append(f"{decision.approver}: {reason}")
            return
        self.decide(decision, approve, "signal")

    async def wait(self, request: ApprovalRequest) -> ApprovalOutcome:
        """Publish ``request`` and wait for a decision or the timeout."""
        self.pending = request
        self._outcome = None
        self._flag(True)
        try:
            await workflow.wait_condition(
                lambda: self._outcome is not None,
                timeout=timedelta(seconds=request.timeout_seconds),
                timeout_summary=f"approval of {request.subject}",
            )
            assert self._outcome is not None
            outcome = self._outcome
        except TimeoutError:
            outcome = ApprovalOutcome(
                request_id=request.request_id,
                approved=request.on_timeout == "approve",
                approver=None,
                reason=f"no decision within {request.timeout_seconds:g}s: {request.on_timeout} by policy",
                via="timeout",
                decided_at=workflow.now(),
            )
        finally:
            self._flag(False)
            self.pending = None
        self.history.append(outcome)
        return outcome

    def status(self) -> ApprovalStatus:
        return ApprovalStatus(
            workflow_id=workflow.info().workflow_id,
            pending=self.pending,
            history=list(self.history),
            ignored=list(self.ignored),
        )

    def _flag(self, value: bool) -> None:
        if self.search_attributes:
            workflow.upsert_search_attributes([PENDING_APPROVAL_ATTR.value_set(value)])


class ApprovalHandlers:
    """Mixin: the ``approve``/``reject`` updates and signals and the ``approval`` query."""

    _approvals: ApprovalGate

    @workflow.update(name="approve")
    async def approve(self, decision: ApprovalDecision) -> ApprovalOutcome:
        """Approve the pending request (optionally with edited params)."""
        return self._approvals.decide(decision, True, "update")

    @approve.validator
    def _validate_approve(self, decision: ApprovalDecision) -> None:
        self._approvals.validate(decision, True)

    @workflow.update(name="reject")
    async def reject(self, decision: ApprovalDecision) -> ApprovalOutcome:
        """Reject the pending request."""
        return self._approvals.decide(decision, False, "update")

    @reject.validator
    def _validate_reject(self, decision: ApprovalDecision) -> None:
        self._approvals.validate(decision, False)

    @workflow.signal(name="approve")
    def approve_signal(self, decision: ApprovalDecision) -> None:
        """Fire-and-forget approval for scripts (invalid ones are recorded and ignored)."""
        self._approvals.signal(decision, True)

    @workflow.signal(name="reject")
    def reject_signal(self, decision: ApprovalDecision) -> None:
        """Fire-and-forget rejection for scripts."""
        self._approvals.signal(decision, False)

    @workflow.query(name="approval")
    def approval(self) -> ApprovalStatus:
        """The pending request, if any, and every decision so far."""
        return self._approvals.status()
