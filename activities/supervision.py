"""Activities of self-repair: supervised scrape runs, health records, and the doctor's steps.

:class:`SupervisionActivities` extends :class:`~activities.sources.SourceActivities` (same
fetcher, same store) with what ``SourceSupervisor`` and ``DoctorRepair`` need:

* ``load_supervision`` — what the database knows when a supervisor starts;
* ``supervised_scrape`` — a scrape that holds its records back from silver when the run
  looks broken, and records failed runs too;
* ``record_health`` / ``record_source_event`` — the source's status and history;
* ``diagnose_source`` → ``patch_scraper`` → ``validate_repair`` → ``rollback_scraper`` —
  the doctor (promotion reuses ``decide_promotion`` and ``promote_scraper``).

Every write is idempotent (versions by spec hash, runs by run id, rollbacks guarded by the
version they replace), so a retried activity or a worker killed mid-repair duplicates nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from temporalio import activity
from temporalio.exceptions import ApplicationError

import scrapers
from activities import metrics
from activities.agent.patcher import propose_patch
from activities.fetch import looks_script_built
from activities.heartbeat import heartbeating
from activities.sources import SANDBOX, SourceActivities
from activities.storage import utcnow
from models.breakage import assess_run
from models.scraper import Page, ValidationReport
from models.sources import ScraperVersionInfo, ScrapeStats, SourceStatus
from models.supervisor import (
    DiagnoseRequest,
    Diagnosis,
    HealthRecord,
    PatchRequest,
    PatchResult,
    RepairValidateRequest,
    RollbackRequest,
    SourceEventInput,
    SupervisedScrapeRequest,
    SuperviseRequest,
    SupervisorPolicy,
    SupervisorSeed,
)
from scrapers.repair_checks import compare_with_last_good

LAST_GOOD_LIMIT = 500
"""Last-good records loaded to anchor and check a repair."""
RUN_HISTORY = 100
"""Past runs read when a supervisor starts, to learn its baseline."""


class SupervisionActivities(SourceActivities):
    """The activities of sources plus those of supervision and repair."""

    # --- supervisor ---------------------------------------------------------------------------

    @activity.defn(name="load_supervision")
    async def load_supervision(self, request: SuperviseRequest) -> SupervisorSeed:
        """The source's interval, active version and last good runs (the baseline's input)."""
        source = await self._store(self.store.require_source, request.source)
        runs = await self._store(self.store.runs, request.source, RUN_HISTORY)
        good = [
            run.model_copy(update={"sample": []})
            for run in reversed(runs)  # oldest first
            if run.status == "SUCCEEDED" and run.records > 0 and not run.held
        ][-request.window :]
        return SupervisorSeed(
            interval_seconds=source.config.interval_seconds,
            active_version=source.active_version,
            good_runs=good,
            last_good_run_id=good[-1].run_id if good else None,
            incarnation=source.created_at.strftime("%Y%m%dT%H%M%S"),
            search_attributes=self.search_attributes,
            policy=SupervisorPolicy(
                max_strikes=self.settings.max_strikes,
                max_repairs_per_day=self.settings.max_repairs_per_day,
                dead_after_days=self.settings.dead_after_days,
                outage_window_seconds=self.settings.outage_window,
            ),
        )

    @activity.defn(name="supervised_scrape")
    @heartbeating
    async def supervised_scrape(self, request: SupervisedScrapeRequest) -> ScrapeStats:
        """Scrape with the active version; hold the records back if the run looks broken.

        A run that fails is stored as a ``FAILED`` run (idempotently, by run id) before the
        failure is raised again, so history shows every run.
        """

        def broken(stats: ScrapeStats) -> bool:
            return assess_run(stats, None, request.baseline).verdict == "broken"

        started = utcnow()
        try:
            stats, _ = await self.scrape(request.source, request.run_id, hold=broken)
        except ApplicationError as exc:
            if exc.type not in ("SourceNotFoundError", "NoActiveScraperError"):
                active = await self._store(self.store.active_version, request.source)
                failed = ScrapeStats(
                    source=request.source,
                    run_id=request.run_id,
                    version=active.version if active else 0,
                    started_at=started,
                    ended_at=utcnow(),
                    status="FAILED",
                    error_type=exc.type,
                    error=exc.message[:2000],
                )
                await self._store(self.store.record_run, failed)
            raise
        metrics.add_records(request.source, stats.records)
        return stats

    @activity.defn(name="record_health")
    async def record_health(self, record: HealthRecord) -> None:
        """Store a health transition: the source's status and a ``health_changed`` event."""
        transition = record.transition
        await self._store(
            self.store.set_status,
            record.source,
            SourceStatus(transition.to_state.value),
            transition.reason[:2000],
        )
        await self._store(
            self.store.append_event,
            record.source,
            "health_changed",
            {
                "from_state": transition.from_state.value,
                "to_state": transition.to_state.value,
                "reason": transition.reason,
                "at": transition.at.isoformat(),
                "cycle": record.cycle,
            },
        )
        metrics.set_source_health(record.source, transition.to_state.value)

    @activity.defn(name="record_source_event")
    async def record_source_event(self, event: SourceEventInput) -> None:
        """Append one entry to the source's history."""
        await self._store(self.store.append_event, event.source, event.kind, event.detail)
        if event.kind == "repair_finished":
            metrics.count_repair(str(event.detail.get("outcome", "unknown")))

    # --- doctor -------------------------------------------------------------------------------

    @activity.defn(name="diagnose_source")
    @heartbeating
    async def diagnose_source(self, request: DiagnoseRequest) -> Diagnosis:
        """Fetch the live page, store it in bronze, and see what the active version makes of it."""
        source = await self._store(self.store.require_source, request.source)
        active = await self._store(self.store.active_version, request.source)
        if active is None:
            raise ApplicationError(
                f"source {request.source!r} has no active scraper to repair; onboard it again",
                type="NoActiveScraperError",
                non_retryable=True,
            )
        render = active.spec.render if request.render is None else request.render
        page = await self._fetch(
            source.config.url, render=render, respect_robots=source.config.respect_robots
        )
        run = f"source/{request.source}/repair/{request.number}"
        ref = await self._store_page(request.source, page, run)
        try:
            found = await asyncio.to_thread(
                scrapers.extract_records,
                active.spec,
                page.body,
                page.final_url,
                charset=page.charset,
            )
        except scrapers.ScraperError as exc:
            found = []
            error = f"the active version v{active.version} cannot read the page: {exc}"
        else:
            error = ""
        good = (
            await self._store(self.store.records, request.source, request.last_good_run_id, None)
            if request.last_good_run_id
            else []
        )
        script_built = not page.rendered and looks_script_built(page)
        findings = [
            error
            or f"the active version v{active.version} extracts {len(found)} records from the "
            f"live page ({'rendered' if page.rendered else 'static'}, HTTP {page.status})",
            f"the last good run ({request.last_good_run_id or 'none'}) stored {len(good)} records",
        ]
        if script_built:
            findings.append("the static page builds its content with scripts: render it")
        return Diagnosis(
            pages=[ref],
            rendered=page.rendered,
            active_version=active.version,
            active_render=active.spec.render,
            active_records=len(found),
            last_good_run_id=request.last_good_run_id,
            last_good_records=len(good),
            script_built=script_built,
            findings=findings,
            llm_provider=(
                None
                if self.settings.agent_provider == "heuristic"
                else self.settings.agent_provider
            ),
        )

    @activity.defn(name="patch_scraper")
    @heartbeating
    async def patch_scraper(self, request: PatchRequest) -> PatchResult:
        """Re-learn the active scraper on the diagnosed pages, anchored on the last good
        records and keeping their field names; store the patch as a new version.

        No LLM is involved (:func:`scrapers.repair_spec`). Idempotent: the same patch is the
        same version.
        """
        old = await self._store(self.store.get_version, request.source, request.active_version)
        good = await self._last_good(request.source, request.last_good_run_id)
        if not good:
            return PatchResult(
                error="no last-good records to anchor a repair on (the source never had a good "
                "run under supervision); fix the scraper by hand or onboard it again"
            )
        pages, _ = await self._load_pages(request.pages)
        try:
            result = await asyncio.to_thread(scrapers.repair_spec, old.spec, pages, good)
        except scrapers.RepairFailedError as exc:
            return PatchResult(error=str(exc), notes=exc.tried)
        except scrapers.ScraperError as exc:
            return PatchResult(error=f"{type(exc).__name__}: {exc}")
        return await self._store_patch(request, old, result)

    @activity.defn(name="llm_patch_scraper")
    @heartbeating
    async def llm_patch_scraper(self, request: PatchRequest) -> PatchResult:
        """Ask the configured language model where the fields live now, when the doctor's own
        patch found nothing or failed staging (:func:`activities.agent.patcher.propose_patch`).

        The answer is held to the checks of the doctor's own patch and stored as a version
        authored ``llm``; every call and its tokens are in ``attempts``. A provider that
        fails or answers nonsense twice yields a result with ``error``, never an exception.
        """
        old = await self._store(self.store.get_version, request.source, request.active_version)
        good = await self._last_good(request.source, request.last_good_run_id)
        if not good:
            return PatchResult(
                author="llm", error="no last-good records to show the language model"
            )
        pages, _ = await self._load_pages(request.pages)
        proposal = await propose_patch(old.spec, pages, good, self.settings)
        for attempt in proposal.attempts:
            metrics.add_llm_tokens(
                attempt.provider, attempt.prompt_tokens + attempt.completion_tokens
            )
        if proposal.result is None:
            return PatchResult(
                author="llm",
                error=proposal.error or "the language model proposed no patch",
                notes=proposal.notes,
                attempts=proposal.attempts,
            )
        patched = await self._store_patch(request, old, proposal.result, author="llm")
        if patched.unchanged:  # the active scraper, which the doctor already found wanting
            patched = PatchResult(
                author="llm", error="the language model proposed the active scraper unchanged"
            )
        return patched.model_copy(update={"notes": proposal.notes, "attempts": proposal.attempts})

    async def _store_patch(
        self,
        request: PatchRequest,
        old: ScraperVersionInfo,
        result: scrapers.RepairResult,
        *,
        author: Literal["doctor", "llm"] = "doctor",
    ) -> PatchResult:
        """Store a checked patch as a new version (once per spec hash)."""
        spec = result.spec
        if request.rendered and not spec.render:
            spec = spec.model_copy(update={"render": True})
        if spec.sha256() == old.spec.sha256():
            return PatchResult(
                unchanged=True,
                confidence=result.confidence,
                notes=result.notes,
                author=author,
            )
        module = scrapers.render_module(spec)
        version = await self._store(
            self.store.add_version,
            request.source,
            spec,
            author,
            result.confidence,
            module,
            old.sha256,
        )
        return PatchResult(
            version=version,
            confidence=result.confidence,
            anchored_fields=result.anchored_fields,
            lost_fields=result.lost_fields,
            notes=result.notes,
            author=author,
        )

    @activity.defn(name="validate_repair")
    @heartbeating
    async def validate_repair(self, request: RepairValidateRequest) -> ValidationReport:
        """Run a version on a fresh live page in the sandbox and compare its output with the
        last good output: records found, no field reading another's data, no field filled
        much less often, the same items. ``passed`` is false with the problems listed."""
        source = await self._store(self.store.require_source, request.source)
        candidate = await self._store(self.store.get_version, request.source, request.version)
        previous = await self._store(self.store.active_version, request.source)
        schema = [f.name for f in (previous or candidate).spec.fields]
        page = await self._fetch(
            source.config.url,
            render=candidate.spec.render,
            respect_robots=source.config.respect_robots,
        )
        pages = [Page(url=page.final_url, body=page.text(), content_type=page.content_type)]
        try:
            report, records = await asyncio.to_thread(
                scrapers.validate_with_records, candidate.spec, pages, isolated=True, limits=SANDBOX
            )
        except scrapers.SandboxError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        good = await self._last_good(request.source, request.last_good_run_id)
        problems = compare_with_last_good(candidate.spec, records, good, schema)
        if problems:
            checks = list(report.pages)
            if checks:
                checks[0] = checks[0].model_copy(
                    update={"problems": [*checks[0].problems, *problems]}
                )
            report = report.model_copy(update={"passed": False, "pages": checks})
        await self._store(self.store.set_report, request.source, request.version, report)
        return report

    @activity.defn(name="rollback_scraper")
    async def rollback_scraper(self, request: RollbackRequest) -> int | None:
        """Re-activate the version before ``from_version`` (only while it is still active)."""
        target = await self._store(self.store.rollback_target, request.source)
        active = await self._store(self.store.active_version, request.source)
        if active is not None and active.version == request.to_version:
            return request.to_version  # a retry after the rollback committed
        if target != request.to_version:
            raise ApplicationError(
                f"source {request.source!r}: expected to roll back to v{request.to_version}, "
                f"but the version before the active one is now {target}",
                type="RollbackConflictError",
                non_retryable=True,
            )
        source, previous = request.source, request.from_version
        return await self._store(lambda: self.store.rollback(source, from_version=previous))

    @activity.defn(name="rollback_target")
    async def rollback_target(self, source: str) -> int | None:
        """The version a rollback would re-activate, or None."""
        return await self._store(self.store.rollback_target, source)

    async def _last_good(self, source: str, run_id: str | None) -> list[dict[str, Any]]:
        if not run_id:
            return []
        return await self._store(self.store.records, source, run_id, LAST_GOOD_LIMIT)
