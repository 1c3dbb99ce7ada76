"""Contracts of sources: onboarding (scout → build → validate → promote), scrape runs,
fetching, and the activities between them.

A *source* is a named URL Mendline scrapes; a *scraper version* is a declarative
:class:`models.scraper.ScraperSpec` stored with its hash, parent and validation report.
Page bodies never travel through workflow history: fetch activities store them as bronze
rows and pass :class:`PageRef` handles.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from models.scraper import Blueprint, ScraperSpec, SeedPage, ValidationReport

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

RenderMode = Literal["auto", "always", "never"]


class SourceStatus(StrEnum):
    """Lifecycle of a source (the supervisor of a later feature refines ACTIVE)."""

    ONBOARDING = "ONBOARDING"
    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    QUARANTINED = "QUARANTINED"
    DEAD = "DEAD"
    FAILED = "FAILED"
    REMOVED = "REMOVED"


class SourceConfig(BaseModel):
    """What a user says about a source when adding it."""

    name: str = Field(pattern=SOURCE_NAME_PATTERN)
    url: str = Field(min_length=8, max_length=2000)
    examples: list[SeedPage] = Field(default_factory=list)
    interval_seconds: float = Field(3600.0, gt=0)
    render: RenderMode = "auto"
    respect_robots: bool = True
    max_pages: int = Field(5, ge=1, le=1000)
    require_approval: bool = False


class PageRef(BaseModel):
    """A fetched page stored in bronze (body in the database, not in history)."""

    bronze_id: int
    url: str
    final_url: str
    status: int
    content_type: str = ""
    sha256: str
    size: int
    rendered: bool = False
    fetched_at: datetime | None = None


class FetchRequest(BaseModel):
    """Input of ``fetch_page``."""

    source: str
    url: str
    render: bool = False
    respect_robots: bool = True
    run_id: str = ""


class FetchPagesRequest(BaseModel):
    """Input of ``fetch_pages``: the source URL plus seed-page URLs, stored in bronze."""

    source: str
    urls: list[str]
    render: bool = False
    respect_robots: bool = True
    run_id: str = ""


class ScoutRequest(BaseModel):
    """Input of ``scout_source``."""

    source: str
    pages: list[PageRef]
    examples: list[SeedPage] = Field(default_factory=list)
    render_mode: RenderMode = "auto"


class ScoutResult(BaseModel):
    """Output of ``scout_source``: a blueprint, or the advice to render and try again."""

    blueprint: Blueprint | None = None
    needs_render: bool = False
    reason: str = ""


class BuildRequest(BaseModel):
    """Input of ``build_scraper``: stores a new version (idempotent by spec hash)."""

    source: str
    blueprint: Blueprint
    render: bool = False
    max_pages: int = 5
    author: Literal["heuristic", "llm", "human"] = "heuristic"


class ScraperVersionInfo(BaseModel):
    """A stored scraper version."""

    source: str
    version: int
    sha256: str
    parent_sha256: str | None = None
    author: str = "heuristic"
    created_at: datetime | None = None
    spec: ScraperSpec
    confidence: float = 0.5
    active: bool = False
    report: ValidationReport | None = None


class ValidateRequest(BaseModel):
    """Input of ``validate_scraper``: run a candidate in staging on freshly fetched pages."""

    source: str
    version: int
    respect_robots: bool = True


class PromotionDecision(BaseModel):
    """Whether a validated version may go live alone, and why."""

    needs_approval: bool
    reasons: list[str] = Field(default_factory=list)


class PromoteRequest(BaseModel):
    """Input of ``promote_scraper``."""

    source: str
    version: int
    approved_by: str | None = None


class SourceOnboardingInput(BaseModel):
    """Input of the ``SourceOnboarding`` workflow (id ``source/<name>/onboard``).

    Attributes:
        config: The source.
        supervise: Start its ``SourceSupervisor`` (id ``source/<name>``) once a version is
            active: it runs the source at its interval and repairs it when the site changes.
    """

    config: SourceConfig
    supervise: bool = True


class OnboardingStep(StrEnum):
    STARTED = "STARTED"
    FETCHING = "FETCHING"
    SCOUTING = "SCOUTING"
    BUILDING = "BUILDING"
    VALIDATING = "VALIDATING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    PROMOTING = "PROMOTING"
    DONE = "DONE"
    FAILED = "FAILED"


class SourceOnboardingState(BaseModel):
    """The ``state`` query of ``SourceOnboarding`` and its result."""

    source: str
    url: str
    step: OnboardingStep = OnboardingStep.STARTED
    rendered: bool = False
    pages: list[PageRef] = Field(default_factory=list)
    blueprint: Blueprint | None = None
    version: int | None = None
    spec_sha256: str | None = None
    report: ValidationReport | None = None
    decision: PromotionDecision | None = None
    approved_by: str | None = None
    active: bool = False
    supervisor: str | None = None
    error: str | None = None
    error_type: str | None = None


class SourceRunInput(BaseModel):
    """Input of ``SourceRun``: one scrape of a source with its active scraper."""

    source: str
    run_id: str | None = None


class ScrapeRequest(BaseModel):
    """Input of ``scrape_source``: fetch (following pagination), extract, store."""

    source: str
    run_id: str
    version: int | None = None


class ScrapeStats(BaseModel):
    """What one scrape run did; the result of ``SourceRun``."""

    source: str
    run_id: str
    version: int
    pages: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    fill_rates: dict[str, float] = Field(default_factory=dict)
    duplicate_keys: int = 0
    http_statuses: dict[str, int] = Field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    status: Literal["SUCCEEDED", "FAILED"] = "SUCCEEDED"
    held: bool = False
    """The run looked broken, so its records were not written to silver."""
    error_type: str | None = None
    error: str | None = None
    sample: list[dict[str, Any]] = Field(default_factory=list)
