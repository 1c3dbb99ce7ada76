"""``SourceOnboarding`` (fetch → scout → build → validate → promote) and ``SourceRun``.

Onboarding (id ``source/<name>/onboard``) ends with an active scraper version or fails
with the reason; when policy says so it waits for a person through the shared approval
mechanism (``approve``/``reject`` updates and signals, ``approval`` query). ``SourceRun``
performs one scrape with the active version.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.sources import FailOnboardingInput, SourceActivities
    from models.approvals import ApprovalRequest
    from models.scraper import ValidationReport
    from models.sources import (
        BuildRequest,
        FetchPagesRequest,
        OnboardingStep,
        PageRef,
        PromoteRequest,
        ScoutRequest,
        ScoutResult,
        ScrapeRequest,
        ScrapeStats,
        SourceConfig,
        SourceOnboardingInput,
        SourceOnboardingState,
        SourceRunInput,
        ValidateRequest,
    )
    from models.supervisor import SupervisorInput, supervisor_id
    from workflows.approvals import ApprovalGate, ApprovalHandlers

SOURCE_ATTR = SearchAttributeKey.for_keyword("MendlineSource")

PERMANENT_SOURCE_ERRORS = [
    "SourceExistsError",
    "SourceNotFoundError",
    "VersionNotFoundError",
    "NoActiveScraperError",
    "NoRecordsFoundError",
    "ExampleNotFoundError",
    "SelectorNotFoundError",
    "DocumentError",
    "DocumentTooComplexError",
    "ScoutError",
    "SpecError",
    "InvalidUrlError",
    "UrlNotAllowedError",
    "RobotsDisallowedError",
    "NotHtmlError",
    "BodyTooLargeError",
    "TooManyRedirectsError",
]

FETCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
    non_retryable_error_types=PERMANENT_SOURCE_ERRORS,
)
STEP_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=PERMANENT_SOURCE_ERRORS)
FETCH_TIMEOUT = timedelta(minutes=3)
STEP_TIMEOUT = timedelta(minutes=2)
QUICK_TIMEOUT = timedelta(seconds=30)
SCRAPE_TIMEOUT = timedelta(minutes=15)
HEARTBEAT_TIMEOUT = timedelta(seconds=15)
"""Long steps heartbeat every 3 s (activities/heartbeat.py): a dead worker is noticed in 15 s."""
APPROVAL_TIMEOUT_SECONDS = 7 * 86400.0


@workflow.defn(name="SourceOnboarding")
class SourceOnboarding(ApprovalHandlers):
    """Given a URL, write a scraper, prove it works on the live page, and promote it."""

    @workflow.init
    def __init__(self, request: SourceOnboardingInput) -> None:
        config = request.config
        self._state = SourceOnboardingState(source=config.name, url=config.url)
        self._approvals = ApprovalGate()

    @workflow.query(name="state")
    def state(self) -> SourceOnboardingState:
        """Where onboarding is, what it found, and the validation report."""
        return self._state

    @workflow.run
    async def run(self, request: SourceOnboardingInput) -> SourceOnboardingState:
        try:
            await self._onboard(request)
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            kind = (
                cause.type if isinstance(cause, ApplicationError) else None
            ) or "OnboardingError"
            await self._fail(request, kind, message)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _onboard(self, request: SourceOnboardingInput) -> None:
        config = request.config
        state = self._state
        registered = await workflow.execute_activity_method(
            SourceActivities.register_source,
            config,
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="register source",
        )
        self._approvals.search_attributes = registered.search_attributes
        if registered.search_attributes:
            workflow.upsert_search_attributes([SOURCE_ATTR.value_set(config.name)])

        urls = [config.url, *[e.url for e in config.examples if e.url != config.url]]
        render = config.render == "always"
        state.step = OnboardingStep.FETCHING
        state.pages = await self._fetch(config.name, urls, render, config.respect_robots)
        state.rendered = render

        state.step = OnboardingStep.SCOUTING
        scouted = await self._scout(request, state.pages)
        if scouted.needs_render:
            workflow.logger.info("rendering %s with the browser: %s", config.url, scouted.reason)
            state.step = OnboardingStep.FETCHING
            state.pages = await self._fetch(config.name, urls, True, config.respect_robots)
            state.rendered = True
            state.step = OnboardingStep.SCOUTING
            scouted = await self._scout(request, state.pages)
        if scouted.blueprint is None:
            raise ApplicationError(scouted.reason or "no records found", type="NoRecordsFoundError")
        state.blueprint = scouted.blueprint

        state.step = OnboardingStep.BUILDING
        version = await workflow.execute_activity_method(
            SourceActivities.build_scraper,
            BuildRequest(
                source=config.name,
                blueprint=scouted.blueprint,
                render=state.rendered,
                max_pages=config.max_pages,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="build scraper",
        )
        state.version, state.spec_sha256 = version.version, version.sha256

        state.step = OnboardingStep.VALIDATING
        validate = ValidateRequest(
            source=config.name, version=version.version, respect_robots=config.respect_robots
        )
        report: ValidationReport = await workflow.execute_activity_method(
            SourceActivities.validate_scraper,
            validate,
            start_to_close_timeout=FETCH_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=FETCH_RETRY,
            summary=f"validate v{version.version} in staging",
        )
        state.report = report
        if not report.passed:
            problems = [
                p
                for page in report.pages
                for p in ([page.error] if page.error else []) + page.problems
            ]
            raise ApplicationError(
                f"scraper v{version.version} failed validation on the live page: "
                + "; ".join(problems or ["no records"]),
                type="ValidationFailedError",
            )

        state.decision = await workflow.execute_activity_method(
            SourceActivities.decide_promotion,
            validate,
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="promotion policy",
        )
        if state.decision.needs_approval:
            state.step = OnboardingStep.AWAITING_APPROVAL
            outcome = await self._approvals.wait(
                ApprovalRequest(
                    request_id=f"{workflow.info().workflow_id}#v{version.version}",
                    kind="promote_scraper",
                    subject=f"source {config.name} v{version.version}",
                    summary="; ".join(state.decision.reasons),
                    details={
                        "url": config.url,
                        "fields": [f.name for f in version.spec.fields],
                        "records": report.total_records,
                        "fill_rates": report.fill_rates,
                        "samples": report.samples[:3],
                    },
                    requested_at=workflow.now(),
                    timeout_seconds=APPROVAL_TIMEOUT_SECONDS,
                    on_timeout="reject",
                )
            )
            if not outcome.approved:
                raise ApplicationError(
                    f"promotion of v{version.version} was rejected"
                    + (f" by {outcome.approver}" if outcome.approver else "")
                    + (f": {outcome.reason}" if outcome.reason else ""),
                    type="PromotionRejectedError",
                )
            state.approved_by = outcome.approver

        state.step = OnboardingStep.PROMOTING
        await workflow.execute_activity_method(
            SourceActivities.promote_scraper,
            PromoteRequest(
                source=config.name, version=version.version, approved_by=state.approved_by
            ),
            start_to_close_timeout=QUICK_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary=f"promote v{version.version}",
        )
        state.active = True
        state.step = OnboardingStep.DONE
        if request.supervise and workflow.patched("start-supervisor"):
            await self._supervise(config)

    async def _supervise(self, config: SourceConfig) -> None:
        """Start the source's supervisor; it outlives onboarding (parent close: abandon)."""
        try:
            await workflow.start_child_workflow(
                "SourceSupervisor",
                SupervisorInput(source=config.name, interval_seconds=config.interval_seconds),
                id=supervisor_id(config.name),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"supervise source {config.name} every {config.interval_seconds:g}s",
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("source %s is already supervised", config.name)
        self._state.supervisor = supervisor_id(config.name)

    async def _fetch(
        self, source: str, urls: list[str], render: bool, robots: bool
    ) -> list[PageRef]:
        return await workflow.execute_activity_method(
            SourceActivities.fetch_pages,
            FetchPagesRequest(
                source=source,
                urls=urls,
                render=render,
                respect_robots=robots,
                run_id=workflow.info().workflow_id,
            ),
            start_to_close_timeout=FETCH_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=FETCH_RETRY,
            summary=("render" if render else "fetch") + f" {len(urls)} page(s)",
        )

    async def _scout(self, request: SourceOnboardingInput, pages: list[PageRef]) -> ScoutResult:
        return await workflow.execute_activity_method(
            SourceActivities.scout_source,
            ScoutRequest(
                source=request.config.name,
                pages=pages,
                examples=request.config.examples,
                render_mode=request.config.render,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=STEP_RETRY,
            summary="scout",
        )

    async def _fail(self, request: SourceOnboardingInput, kind: str, message: str) -> None:
        self._state.step = OnboardingStep.FAILED
        self._state.error, self._state.error_type = message, kind
        if kind != "SourceExistsError":
            await workflow.execute_activity_method(
                SourceActivities.fail_onboarding,
                FailOnboardingInput(source=request.config.name, error=f"{kind}: {message}"),
                start_to_close_timeout=QUICK_TIMEOUT,
                retry_policy=STEP_RETRY,
                summary="mark failed",
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        raise ApplicationError(
            f"{kind}: {message}", self._state.model_dump(mode="json"), type=kind, non_retryable=True
        )


@workflow.defn(name="SourceRun")
class SourceRun:
    """One scrape of a source with its active scraper: bronze and silver written."""

    @workflow.run
    async def run(self, request: SourceRunInput) -> ScrapeStats:
        run_id = request.run_id or workflow.info().workflow_id
        return await workflow.execute_activity_method(
            SourceActivities.scrape_source,
            ScrapeRequest(source=request.source, run_id=run_id),
            start_to_close_timeout=SCRAPE_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=FETCH_RETRY,
            summary=f"scrape {request.source}",
        )
