"""``DoctorRepair`` (id ``source/<name>/repair/<n>``): diagnose → patch → validate → promote.

Started by a ``SourceSupervisor`` when a run shows drift (or by ``fix``). The default patch
needs no LLM: the scraper is re-learned on the live page, anchored on the last good records
and their field names (:func:`scrapers.repair_spec`); a static page that lost its content to
scripts is rendered and patched again. When that finds nothing or fails staging and a
language model is configured, it is asked for the fields' new locations
(:func:`activities.agent.patcher.propose_patch`), and its patch is held to the same checks. The candidate is validated in staging against the
last good output and is never promoted when it does worse. Low confidence or a schema change
waits for a person (the shared approval mechanism: ``approve``/``reject`` updates and
signals, ``approval`` query). When no patch passes, the previous version is tried again and
rolled back to if it works; otherwise the repair fails and the supervisor decides
(strikes, quarantine, the circuit breaker).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.supervision import SupervisionActivities
    from models.approvals import ApprovalRequest
    from models.breakage import Baseline, assess_run
    from models.scraper import ValidationReport
    from models.sources import PromoteRequest, ValidateRequest
    from models.supervisor import (
        DiagnoseRequest,
        Diagnosis,
        DoctorRepairInput,
        PatchRequest,
        PatchResult,
        RepairReport,
        RepairResultKind,
        RepairState,
        RepairStep,
        RepairValidateRequest,
        RollbackRequest,
        SourceEventInput,
    )
    from workflows.approvals import ApprovalGate, ApprovalHandlers
    from workflows.failures import failure_message, raise_if_cancelled, run_failure
    from workflows.sources import (
        FETCH_RETRY,
        FETCH_TIMEOUT,
        HEARTBEAT_TIMEOUT,
        QUICK_TIMEOUT,
        SOURCE_ATTR,
        STEP_RETRY,
        STEP_TIMEOUT,
    )

LLM_PATCH_TIMEOUT = timedelta(minutes=5)
"""A language model's patch: two calls (ask, re-ask) and checking each answer."""
LLM_PATCH_RETRY = RetryPolicy(maximum_attempts=2)
REPAIR_APPROVAL_TIMEOUT_SECONDS = 86400.0
"""A repair waiting for a person is rejected after a day (the source stays degraded)."""


class _Transient(Exception):
    """The site could not be reached during the repair (the attempt does not count)."""


@workflow.defn(name="DoctorRepair")
class DoctorRepair(ApprovalHandlers):
    """Mend a source's scraper after its site changed, without losing the output schema."""

    @workflow.init
    def __init__(self, request: DoctorRepairInput) -> None:
        self._state = RepairState(
            source=request.source, number=request.number, trigger=request.trigger
        )
        self._approvals = ApprovalGate()
        self._previous: int | None = None

    @workflow.query(name="state")
    def state(self) -> RepairState:
        """The repair's step, diagnosis, patch, validation report and result."""
        return self._state

    @workflow.run
    async def run(self, request: DoctorRepairInput) -> RepairReport:
        started = workflow.now()
        self._approvals.search_attributes = request.search_attributes
        if request.search_attributes:
            workflow.upsert_search_attributes([SOURCE_ATTR.value_set(request.source)])
        await self._event(
            request,
            "repair_started",
            {
                "number": request.number,
                "trigger": request.trigger,
                "requested_by": request.requested_by,
            },
        )
        try:
            report = await self._repair(request)
        except _Transient as exc:
            report = self._report(request, "failed", str(exc), transient=True)
        except ActivityError as err:
            raise_if_cancelled(err)
            report = self._report(request, "failed", failure_message(err))
        report = report.model_copy(update={"started_at": started, "ended_at": workflow.now()})
        self._state.result = report
        self._state.step = RepairStep.DONE
        await self._event(request, "repair_finished", report.model_dump(mode="json"))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return report

    async def _repair(self, request: DoctorRepairInput) -> RepairReport:
        state = self._state
        state.step = RepairStep.DIAGNOSING
        diagnosis = await self._diagnose(request, None)
        self._previous = diagnosis.active_version
        state.diagnosis = diagnosis

        state.step = RepairStep.PATCHING
        patch = await self._patch(request, diagnosis)
        if patch.error and diagnosis.script_built and not diagnosis.rendered:
            # The static page lost its content to scripts: render it and patch again.
            rendered = await self._diagnose(request, True)
            state.diagnosis = rendered
            retry = await self._patch(request, rendered)
            patch = retry.model_copy(
                update={"notes": [*patch.notes, "rendered the page with the browser", *retry.notes]}
            )
        state.patch = patch
        if patch.unchanged:
            return await self._not_needed(request, diagnosis)
        candidate = patch.version.version if patch.version else None
        report: ValidationReport | None = None
        if candidate is not None:
            state.step = RepairStep.VALIDATING
            report = await self._validate(request, candidate)
            state.report = report
        why = (
            f"no patch: {patch.error}"
            if candidate is None or report is None
            else f"patch v{candidate} failed validation against the last good output: "
            + "; ".join(report.problems() or ["no records"])
        )
        if (
            (report is None or not report.passed)
            and state.diagnosis.llm_provider
            and workflow.patched("doctor-asks-llm")
        ):
            # The doctor's own patch did not do: a configured language model may propose one,
            # held to the same checks and the same staging validation.
            state.step = RepairStep.PATCHING
            proposed = await self._llm_patch(request, state.diagnosis)
            notes = [*patch.notes, f"own patch: {why}", *proposed.notes]
            if proposed.version is None:
                why = f"{why}; {state.diagnosis.llm_provider}: {proposed.error}"
                state.patch = patch.model_copy(
                    update={"notes": notes, "attempts": proposed.attempts}
                )
            else:
                patch = proposed.model_copy(update={"notes": notes})
                state.patch = patch
                candidate = patch.version.version if patch.version else None
                state.step = RepairStep.VALIDATING
                report = await self._validate(request, proposed.version.version)
                state.report = report
                why = (
                    f"{state.diagnosis.llm_provider} patch v{candidate} failed validation "
                    "against the last good output: "
                    + "; ".join(report.problems() or ["no records"])
                )
        if candidate is None or report is None or patch.version is None:
            return await self._fall_back(request, why)
        if not report.passed:
            return await self._fall_back(request, why, candidate=candidate)

        decision = await workflow.execute_activity_method(
            SupervisionActivities.decide_promotion,
            ValidateRequest(source=request.source, version=candidate),
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="promotion policy",
        )
        state.decision = decision
        approved_by = None
        if decision.needs_approval:
            state.step = RepairStep.AWAITING_APPROVAL
            outcome = await self._approvals.wait(
                ApprovalRequest(
                    request_id=f"{workflow.info().workflow_id}#v{candidate}",
                    kind="promote_repair",
                    subject=f"repair of source {request.source}: v{candidate}",
                    summary="; ".join(decision.reasons),
                    details={
                        "trigger": request.trigger,
                        "previous": diagnosis.active_version,
                        "fields": [f.name for f in patch.version.spec.fields],
                        "lost_fields": patch.lost_fields,
                        "confidence": patch.confidence,
                        "author": patch.author,
                        "records": report.total_records,
                        "fill_rates": report.fill_rates,
                        "samples": report.samples[:3],
                    },
                    requested_at=workflow.now(),
                    timeout_seconds=REPAIR_APPROVAL_TIMEOUT_SECONDS,
                    on_timeout="reject",
                )
            )
            if not outcome.approved:
                why = (
                    f"patch v{candidate} was rejected"
                    + (f" by {outcome.approver}" if outcome.approver else "")
                    + (f": {outcome.reason}" if outcome.reason else "")
                )
                return await self._fall_back(request, why, candidate=candidate)
            approved_by = outcome.approver

        state.step = RepairStep.PROMOTING
        await workflow.execute_activity_method(
            SupervisionActivities.promote_scraper,
            PromoteRequest(source=request.source, version=candidate, approved_by=approved_by),
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary=f"promote v{candidate}",
        )
        lost = f"; lost fields {patch.lost_fields}" if patch.lost_fields else ""
        return self._report(
            request,
            "promoted",
            f"patched v{diagnosis.active_version} → v{candidate}"
            + (f" by {state.diagnosis.llm_provider}" if patch.author == "llm" else "")
            + f" (confidence {patch.confidence:.2f}, {report.total_records} records on the live "
            f"page){lost}",
            active=candidate,
            candidate=candidate,
            approved_by=approved_by,
        )

    async def _not_needed(self, request: DoctorRepairInput, diagnosis: Diagnosis) -> RepairReport:
        """The patch is the active spec: check it really works on the live page now."""
        active = diagnosis.active_version
        report = await self._validate(request, active)
        self._state.report = report
        if report.passed:
            return self._report(
                request,
                "not_needed",
                f"the active version v{active} reproduces the last good output on the live page",
                active=active,
            )
        return await self._fall_back(
            request, "the active version no longer reproduces the last good output"
        )

    async def _fall_back(
        self, request: DoctorRepairInput, why: str, *, candidate: int | None = None
    ) -> RepairReport:
        """No patch can go live: roll back if the previous version works again, else fail."""
        state = self._state
        state.step = RepairStep.ROLLING_BACK
        previous = self._previous
        target = await workflow.execute_activity_method(
            SupervisionActivities.rollback_target,
            request.source,
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="find a version to roll back to",
        )
        if target is None or previous is None:
            return self._report(
                request, "failed", f"{why}; no earlier version to roll back to", candidate=candidate
            )
        check = await self._validate(request, target)
        if not check.passed:
            return self._report(
                request,
                "failed",
                f"{why}; the earlier version v{target} does not work either: "
                + "; ".join(check.problems()[:3]),
                candidate=candidate,
            )
        active = await workflow.execute_activity_method(
            SupervisionActivities.rollback_scraper,
            RollbackRequest(
                source=request.source, from_version=previous, to_version=target, reason=why
            ),
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary=f"roll back v{previous} → v{target}",
        )
        return self._report(
            request,
            "rolled_back",
            f"{why}; the earlier version v{target} works on the live page again: rolled back",
            active=active,
            candidate=candidate,
        )

    # --- steps ----------------------------------------------------------------------------------

    async def _diagnose(self, request: DoctorRepairInput, render: bool | None) -> Diagnosis:
        try:
            return await workflow.execute_activity_method(
                SupervisionActivities.diagnose_source,
                DiagnoseRequest(
                    source=request.source,
                    number=request.number,
                    last_good_run_id=request.last_good_run_id,
                    render=render,
                ),
                start_to_close_timeout=FETCH_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=FETCH_RETRY,
                summary="diagnose: fetch the live page" + (" (rendered)" if render else ""),
            )
        except ActivityError as err:
            _raise_if_transient(err)
            raise

    async def _patch(self, request: DoctorRepairInput, diagnosis: Diagnosis) -> PatchResult:
        return await workflow.execute_activity_method(
            SupervisionActivities.patch_scraper,
            _patch_request(request, diagnosis),
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="patch: re-learn the scraper anchored on the last good records",
        )

    async def _llm_patch(self, request: DoctorRepairInput, diagnosis: Diagnosis) -> PatchResult:
        return await workflow.execute_activity_method(
            SupervisionActivities.llm_patch_scraper,
            _patch_request(request, diagnosis),
            start_to_close_timeout=LLM_PATCH_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            # Provider failures come back in the result; a retry is for a lost worker only,
            # and costs tokens again.
            retry_policy=LLM_PATCH_RETRY,
            summary=f"patch: ask {diagnosis.llm_provider} where the fields live now",
        )

    async def _validate(self, request: DoctorRepairInput, version: int) -> ValidationReport:
        try:
            return await workflow.execute_activity_method(
                SupervisionActivities.validate_repair,
                RepairValidateRequest(
                    source=request.source,
                    version=version,
                    last_good_run_id=request.last_good_run_id,
                    baseline=request.baseline,
                ),
                start_to_close_timeout=FETCH_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=FETCH_RETRY,
                summary=f"validate v{version} in staging against the last good output",
            )
        except ActivityError as err:
            _raise_if_transient(err)
            raise

    async def _event(
        self, request: DoctorRepairInput, kind: str, detail: dict[str, object]
    ) -> None:
        await workflow.execute_activity_method(
            SupervisionActivities.record_source_event,
            SourceEventInput(source=request.source, kind=kind, detail=detail),
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary=kind.replace("_", " "),
        )

    def _report(
        self,
        request: DoctorRepairInput,
        outcome: RepairResultKind,
        reason: str,
        *,
        active: int | None = None,
        candidate: int | None = None,
        approved_by: str | None = None,
        transient: bool = False,
    ) -> RepairReport:
        patch = self._state.patch
        diagnosis = self._state.diagnosis
        return RepairReport(
            source=request.source,
            number=request.number,
            outcome=outcome,
            transient=transient,
            active_version=active if active is not None else self._previous,
            candidate=candidate,
            previous=self._previous,
            confidence=patch.confidence if patch and (patch.version or patch.unchanged) else None,
            anchored_fields=patch.anchored_fields if patch else [],
            lost_fields=patch.lost_fields if patch else [],
            approved_by=approved_by,
            reason=reason,
            notes=[*(diagnosis.findings if diagnosis else []), *(patch.notes if patch else [])],
        )


def _patch_request(request: DoctorRepairInput, diagnosis: Diagnosis) -> PatchRequest:
    """What either patch step needs: the diagnosed pages and the version to patch."""
    return PatchRequest(
        source=request.source,
        number=request.number,
        pages=diagnosis.pages,
        active_version=diagnosis.active_version,
        last_good_run_id=request.last_good_run_id,
        rendered=diagnosis.rendered,
    )


def _raise_if_transient(err: ActivityError) -> None:
    """Turn a failure to reach the site into :class:`_Transient` (not a repair attempt)."""
    assessment = assess_run(None, run_failure(err), Baseline())
    if assessment.transient:
        raise _Transient(f"the site could not be reached: {assessment.summary}") from err
