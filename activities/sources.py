"""Activities of sources: fetch → scout → build → validate → promote, and scrape runs.

Every step is a separate Temporal activity so the Web UI shows where onboarding is, and a
crashed worker resumes at the step it was in. Page bodies go to bronze and travel as
:class:`PageRef`; records go to silver, upserted by (source, key), so a retried activity
never duplicates a record; a version is stored once per spec hash, so a retried build never
makes a second version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

import scrapers
from activities.fetch import FetchedPage, Fetcher, looks_script_built
from activities.fetch.errors import FetchError
from activities.heartbeat import heartbeating
from activities.sources_store import SourceStore, SourceStoreError
from activities.storage import utcnow
from models.scraper import Page, ScraperSpec, ValidationReport
from models.settings import Settings
from models.sources import (
    BuildRequest,
    FetchPagesRequest,
    PageRef,
    PromoteRequest,
    PromotionDecision,
    ScoutRequest,
    ScoutResult,
    ScrapeRequest,
    ScraperVersionInfo,
    ScrapeStats,
    SourceConfig,
    SourceStatus,
    ValidateRequest,
)
from scrapers.validate import fill_rates

T = TypeVar("T")

LOW_CONFIDENCE = 0.5
"""Below this scout confidence, promotion waits for a person."""

SANDBOX = scrapers.SandboxLimits()


class RegisterResult(BaseModel):
    """Output of ``register_source``."""

    search_attributes: bool


class FailOnboardingInput(BaseModel):
    """Input of ``fail_onboarding``."""

    source: str
    error: str


class SourceActivities:
    """The activities of sources, sharing a fetcher and a store per worker."""

    def __init__(
        self,
        settings: Settings,
        store: SourceStore,
        fetcher: Fetcher,
        search_attributes: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self.search_attributes = search_attributes

    # --- onboarding ----------------------------------------------------------------------

    @activity.defn(name="register_source")
    async def register_source(self, config: SourceConfig) -> RegisterResult:
        """Create the source row (``ONBOARDING``); a taken name fails for good.

        A retry of this activity after it succeeded finds its own row: the source is then
        still ONBOARDING with the same URL, which is accepted.
        """
        existing = await self._store(self.store.get_source, config.name)
        if not (
            existing is not None
            and existing.status == SourceStatus.ONBOARDING
            and existing.config.url == config.url
        ):
            await self._store(self.store.create_source, config)
        return RegisterResult(search_attributes=self.search_attributes)

    @activity.defn(name="fetch_pages")
    @heartbeating
    async def fetch_pages(self, request: FetchPagesRequest) -> list[PageRef]:
        """Fetch each URL (rendering with the browser when asked) and store it in bronze."""
        refs = []
        for url in request.urls:
            page = await self._fetch(
                url, render=request.render, respect_robots=request.respect_robots
            )
            refs.append(await self._store_page(request.source, page, request.run_id))
            activity.heartbeat(url)
        return refs

    @activity.defn(name="scout_source")
    @heartbeating
    async def scout_source(self, request: ScoutRequest) -> ScoutResult:
        """Infer the data's structure from the fetched pages (and examples, if any).

        When nothing is found on pages that evidently build their content with scripts, the
        result says to render them with the browser and try again.
        """
        pages, fetched = await self._load_pages(request.pages)
        try:
            blueprint = await asyncio.to_thread(scrapers.scout, pages, request.examples or None)
        except scrapers.NoRecordsFoundError as exc:
            rendered = all(ref.rendered for ref in request.pages)
            if (
                request.render_mode == "auto"
                and not rendered
                and any(looks_script_built(p) for p in fetched)
            ):
                return ScoutResult(
                    needs_render=True,
                    reason=f"static page has no records ({exc}); it builds its content with scripts",
                )
            raise _permanent(exc, "NoRecordsFoundError") from exc
        except scrapers.ScraperError as exc:
            raise _permanent(exc, type(exc).__name__) from exc
        return ScoutResult(blueprint=blueprint)

    @activity.defn(name="build_scraper")
    @heartbeating
    async def build_scraper(self, request: BuildRequest) -> ScraperVersionInfo:
        """Turn the blueprint into a versioned spec plus its readable module (idempotent)."""
        spec = scrapers.build_spec(request.blueprint, name=request.source)
        updates: dict[str, Any] = {"render": request.render}
        if spec.pagination is not None:
            updates["pagination"] = spec.pagination.model_copy(
                update={"max_pages": request.max_pages}
            )
        active = await self._store(self.store.active_version, request.source)
        meta = spec.meta.model_copy(
            update={
                "author": request.author,
                "parent_sha": active.sha256 if active else None,
                "created_at": utcnow(),
            }
        )
        spec = spec.model_copy(update={**updates, "meta": meta})
        module = scrapers.render_module(spec)
        return await self._store(
            self.store.add_version,
            request.source,
            spec,
            request.author,
            request.blueprint.confidence,
            module,
            active.sha256 if active else None,
        )

    @activity.defn(name="validate_scraper")
    @heartbeating
    async def validate_scraper(self, request: ValidateRequest) -> ValidationReport:
        """Run a candidate in staging: fresh pages, sandboxed extraction, expectations, and
        no regression against the active version."""
        source = await self._store(self.store.require_source, request.source)
        candidate = await self._store(self.store.get_version, request.source, request.version)
        spec = candidate.spec
        page = await self._fetch(
            source.config.url, render=spec.render, respect_robots=request.respect_robots
        )
        pages = [Page(url=page.final_url, body=page.text(), content_type=page.content_type)]
        try:
            report = await asyncio.to_thread(
                scrapers.validate_spec, spec, pages, isolated=True, limits=SANDBOX
            )
        except scrapers.SandboxError as exc:
            raise _permanent(exc, type(exc).__name__) from exc
        problems: list[str] = []
        if report.total_records == 0:
            report = report.model_copy(update={"passed": False})
            problems.append("the candidate extracts no records from the live page")
        active = await self._store(self.store.active_version, request.source)
        if active is not None and active.version != candidate.version:
            baseline = await asyncio.to_thread(
                scrapers.validate_spec, active.spec, pages, isolated=True, limits=SANDBOX
            )
            regression = _regressions(report, baseline)
            if regression:
                report = report.model_copy(update={"passed": False})
                problems += regression
        if problems:
            pages_checked = list(report.pages)
            if pages_checked:
                first = pages_checked[0]
                pages_checked[0] = first.model_copy(
                    update={"problems": [*first.problems, *problems]}
                )
            report = report.model_copy(update={"pages": pages_checked})
        await self._store(self.store.set_report, request.source, request.version, report)
        return report

    @activity.defn(name="decide_promotion")
    async def decide_promotion(self, request: ValidateRequest) -> PromotionDecision:
        """Policy: a person approves LLM-written scrapers, low-confidence ones, schema
        changes, and any source that asked for approval."""
        source = await self._store(self.store.require_source, request.source)
        candidate = await self._store(self.store.get_version, request.source, request.version)
        active = await self._store(self.store.active_version, request.source)
        reasons = []
        if source.config.require_approval:
            reasons.append("the source requires approval for every new scraper version")
        if candidate.author == "llm":
            reasons.append("the scraper was written by an LLM")
        if candidate.confidence < LOW_CONFIDENCE:
            reasons.append(f"scout confidence {candidate.confidence:.2f} is below {LOW_CONFIDENCE}")
        if active is not None:
            before = {f.name for f in active.spec.fields}
            after = {f.name for f in candidate.spec.fields}
            if before != after:
                reasons.append(
                    f"the output schema changes: removed {sorted(before - after)}, added {sorted(after - before)}"
                )
        return PromotionDecision(needs_approval=bool(reasons), reasons=reasons)

    @activity.defn(name="promote_scraper")
    async def promote_scraper(self, request: PromoteRequest) -> None:
        """Make the version active (the previous one is kept for rollback)."""
        await self._store(self.store.promote, request.source, request.version)
        await self._store(
            self.store.set_status,
            request.source,
            SourceStatus.ACTIVE,
            f"version {request.version} promoted"
            + (f" (approved by {request.approved_by})" if request.approved_by else ""),
        )

    @activity.defn(name="fail_onboarding")
    async def fail_onboarding(self, request: FailOnboardingInput) -> None:
        """Mark a source whose onboarding failed (it can be removed and added again)."""
        source = await self._store(self.store.get_source, request.source)
        if source is not None and source.status == SourceStatus.ONBOARDING:
            await self._store(
                self.store.set_status, request.source, SourceStatus.FAILED, request.error[:2000]
            )

    # --- scrape runs ----------------------------------------------------------------------

    @activity.defn(name="scrape_source")
    @heartbeating
    async def scrape_source(self, request: ScrapeRequest) -> ScrapeStats:
        """Fetch the source's pages (following pagination), extract with the active scraper,
        store bronze and upsert silver. Idempotent: a retry adds no duplicate record."""
        stats, _ = await self.scrape(request.source, request.run_id, request.version)
        return stats

    async def scrape(
        self,
        source_name: str,
        run_id: str,
        version: int | None = None,
        hold: Callable[[ScrapeStats], bool] | None = None,
    ) -> tuple[ScrapeStats, list[dict[str, Any]]]:
        """One scrape run; also used by the pipeline ``scrape`` task.

        Args:
            source_name: The source.
            run_id: The run's id (silver observations and the run row are keyed by it).
            version: The scraper version to run (default: the active one).
            hold: Called with the run's stats before silver is written; when it returns
                True the records are held back (``stats.held``) and silver is untouched.
        """
        source = await self._store(self.store.require_source, source_name)
        info = (
            await self._store(self.store.get_version, source_name, version)
            if version is not None
            else await self._store(self.store.active_version, source_name)
        )
        if info is None:
            raise ApplicationError(
                f"source {source_name!r} has no active scraper; onboard it with `mendline source add`",
                type="NoActiveScraperError",
                non_retryable=True,
            )
        spec: ScraperSpec = info.spec
        stats = ScrapeStats(
            source=source_name, run_id=run_id, version=info.version, started_at=utcnow()
        )
        records: list[dict[str, Any]] = []
        url: str | None = source.config.url
        seen: set[str] = set()
        while (
            url
            and url not in seen
            and stats.pages < max(1, spec.pagination.max_pages if spec.pagination else 1)
        ):
            seen.add(url)
            page = await self._fetch(
                url, render=spec.render, respect_robots=source.config.respect_robots
            )
            await self._store_page(source_name, page, run_id)
            stats.pages += 1
            stats.http_statuses[str(page.status)] = stats.http_statuses.get(str(page.status), 0) + 1
            try:
                found = await asyncio.to_thread(
                    scrapers.extract_records, spec, page.body, page.final_url, charset=page.charset
                )
            except scrapers.ScraperError as exc:
                raise _permanent(exc, type(exc).__name__) from exc
            for record in found:
                record["_url"] = page.final_url
            records += found
            activity.heartbeat(stats.pages)
            url = (
                scrapers.next_page(spec, page.body, page.final_url, stats.pages)
                if spec.pagination
                else None
            )
        keys = [
            str(r.get(spec.key_field)) for r in records if spec.key_field and r.get(spec.key_field)
        ]
        stats.records = len(records)
        stats.duplicate_keys = len(keys) - len(set(keys))
        stats.fill_rates = fill_rates(spec, records)
        stats.sample = records[:3]
        if hold is not None and hold(stats):
            stats.held = True
        else:
            stats.inserted, stats.updated, stats.unchanged = await self._store(
                self.store.upsert_records,
                source_name,
                run_id,
                info.version,
                records,
                spec.key_field,
            )
        stats.ended_at = utcnow()
        await self._store(self.store.record_run, stats)
        return stats, records

    # --- helpers --------------------------------------------------------------------------

    async def _fetch(self, url: str, *, render: bool, respect_robots: bool) -> FetchedPage:
        try:
            return await self.fetcher.fetch(url, render=render, respect_robots=respect_robots)
        except FetchError as exc:
            raise ApplicationError(
                str(exc),
                {"url": url, "error_class": exc.error_class},
                type=exc.type_name,
                non_retryable=not exc.retryable,
            ) from exc

    async def _store_page(self, source: str, page: FetchedPage, run_id: str) -> PageRef:
        return await self._store(
            self.store.put_page,
            source,
            page.url,
            page.final_url,
            page.status,
            page.headers,
            page.content_type,
            page.body,
            page.rendered,
            run_id,
        )

    async def _load_pages(self, refs: list[PageRef]) -> tuple[list[Page], list[FetchedPage]]:
        pages, fetched = [], []
        for ref in refs:
            body = await self._store(self.store.get_page_body, ref.bronze_id)
            page = FetchedPage(
                url=ref.url,
                final_url=ref.final_url,
                status=ref.status,
                headers={},
                content_type=ref.content_type,
                charset=None,
                body=body,
                rendered=ref.rendered,
                elapsed_ms=0.0,
            )
            fetched.append(page)
            pages.append(Page(url=ref.final_url, body=page.text(), content_type=ref.content_type))
        return pages, fetched

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except SourceStoreError as exc:
            raise ApplicationError(str(exc), type=exc.type_name, non_retryable=True) from exc


def _permanent(exc: Exception, type_name: str) -> ApplicationError:
    return ApplicationError(str(exc), type=type_name, non_retryable=True)


def _regressions(candidate: ValidationReport, baseline: ValidationReport) -> list[str]:
    """Ways the candidate does worse than the active version on the same pages."""
    problems = []
    if baseline.total_records and candidate.total_records < 0.8 * baseline.total_records:
        problems.append(
            f"extracts {candidate.total_records} records where the active version extracts {baseline.total_records}"
        )
    for name, rate in baseline.fill_rates.items():
        if name in candidate.fill_rates and candidate.fill_rates[name] + 0.2 < rate:
            problems.append(
                f"field {name!r} fill rate drops from {rate:.0%} to {candidate.fill_rates[name]:.0%}"
            )
    return problems
