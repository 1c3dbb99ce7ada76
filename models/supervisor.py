"""Contracts of self-repair: the ``SourceSupervisor`` and ``DoctorRepair`` workflows.

* ``SourceSupervisor`` (id ``source/<name>``) runs a source's scraper on a durable timer,
  assesses every run (:func:`models.breakage.assess_run`), keeps the source's
  :class:`~models.health.SourceHealth`, and starts a ``DoctorRepair`` child when a run shows
  drift. Its handlers (updates, and signals of the same names for fire-and-forget scripts):

  ================  ====================  ===============================================
  name              input                 update result
  ================  ====================  ===============================================
  ``run_now``       :class:`RunNowRequest`  :class:`RunTicket` (the run's cycle number)
  ``fix``           :class:`FixRequest`     :class:`RepairTicket` (the repair's number)
  ``pause``         :class:`HandRequest`    :class:`SupervisorView`
  ``resume``        :class:`HandRequest`    :class:`SupervisorView`
  ``reset``         :class:`HandRequest`    :class:`SupervisorView`
  ``mark_dead``     :class:`HandRequest`    :class:`SupervisorView`
  ``set_interval``  :class:`IntervalRequest`  :class:`SupervisorView`
  ================  ====================  ===============================================

  and the query ``health`` → :class:`SupervisorView`.
* ``DoctorRepair`` (id ``source/<name>/repair/<n>``): diagnose → patch → validate in staging →
  (approval) → promote, or roll back, or fail; query ``state`` → :class:`RepairState`; its
  result is a :class:`RepairReport`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from models.breakage import Baseline, BreakageKind, Verdict
from models.health import HealthState, HealthTransition, SourceHealth
from models.remediation import PlanAttempt
from models.scraper import ValidationReport
from models.sources import PageRef, PromotionDecision, ScraperVersionInfo, ScrapeStats


def supervisor_id(source: str) -> str:
    """The workflow id of a source's supervisor."""
    return f"source/{source}"


def repair_id(source: str, number: int) -> str:
    """The workflow id of a source's ``number``-th repair."""
    return f"source/{source}/repair/{number}"


def run_id(source: str, cycle: int, incarnation: str = "") -> str:
    """The run id of a supervised scrape (stable across retries: silver stays idempotent)."""
    return f"source/{source}/run/{incarnation + '-' if incarnation else ''}{cycle}"


class SupervisorPolicy(BaseModel):
    """How a supervisor judges runs and limits repairs.

    Attributes:
        max_strikes: Bad runs in a row (that reached the site) that quarantine a source.
        max_repairs_per_day: Repair attempts per source per UTC day (the circuit breaker).
        dead_after_days: Consecutive UTC days of exhausted, failed repairs that kill a source.
        outage_window_seconds: How long a site may be unreachable before quarantine.
        baseline_window: Good runs the record-count and fill-rate baseline is learned from.
        retry_base_seconds: After a transient failure the next run comes this soon, doubling
            per failure in a row, never later than the interval.
        runs_per_history: Runs before the supervisor continues as new (bounded history).
    """

    max_strikes: int = Field(3, ge=1, le=100)
    max_repairs_per_day: int = Field(3, ge=1, le=100)
    dead_after_days: int = Field(3, ge=1, le=365)
    outage_window_seconds: float = Field(86400.0, gt=0)
    baseline_window: int = Field(10, ge=1, le=100)
    retry_base_seconds: float = Field(60.0, gt=0)
    runs_per_history: int = Field(200, ge=1, le=10_000)


class RunDigest(BaseModel):
    """One supervised run, as the supervisor remembers it.

    Attributes:
        cycle: The supervisor's run number (1, 2, …; carried over continue-as-new).
        run_id: The scrape run's id (bronze, silver observations and ``source_runs``).
        at: When the run ended.
        version: The scraper version it ran (None when it failed before choosing one).
        status: ``SUCCEEDED`` or ``FAILED`` (a hard failure).
        records: Records extracted.
        inserted: New records written to silver.
        held: Records were not written to silver because the run looked broken.
        verdict: The assessment's verdict.
        kind: The main kind of breakage (``none`` for a good run).
        reasons: The assessment's reasons, with their numbers.
        trigger: ``schedule``, ``run_now``, ``after_repair`` or ``retry``.
    """

    cycle: int
    run_id: str
    at: datetime
    version: int | None = None
    status: Literal["SUCCEEDED", "FAILED"] = "SUCCEEDED"
    records: int = 0
    inserted: int = 0
    held: bool = False
    verdict: Verdict = "ok"
    kind: BreakageKind = BreakageKind.NONE
    reasons: list[str] = Field(default_factory=list)
    trigger: str = "schedule"


RepairResultKind = Literal["promoted", "rolled_back", "failed", "not_needed"]


class RepairReport(BaseModel):
    """The result of a ``DoctorRepair``.

    Attributes:
        source: The source.
        number: The repair's number (``source/<name>/repair/<number>``).
        outcome: ``promoted`` (a patched version is active), ``rolled_back`` (an older
            version works again and is active), ``failed``, or ``not_needed`` (the active
            version works on the live page after all).
        transient: The site could not be reached: the attempt does not count.
        active_version: The version active when the repair ended.
        candidate: The patched version built, if any.
        previous: The version active when the repair started.
        confidence: The patch's confidence (0–1).
        anchored_fields: Fields re-located through last-good values.
        lost_fields: Fields the patch could not re-locate (a schema change).
        approved_by: Who approved the promotion, when one was needed.
        reason: One sentence: why this outcome.
        notes: What the doctor tried, in order.
        started_at: When the repair started.
        ended_at: When it ended.
    """

    source: str
    number: int
    outcome: RepairResultKind
    transient: bool = False
    active_version: int | None = None
    candidate: int | None = None
    previous: int | None = None
    confidence: float | None = None
    anchored_fields: list[str] = Field(default_factory=list)
    lost_fields: list[str] = Field(default_factory=list)
    approved_by: str | None = None
    reason: str = ""
    notes: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None


class DoctorRepairInput(BaseModel):
    """Input of ``DoctorRepair``.

    Attributes:
        source: The source to repair.
        number: The repair's number.
        trigger: Why the repair started (the run's reasons, or who asked).
        requested_by: The person who asked (``fix``), or None for the supervisor.
        last_good_run_id: The last run assessed good: its records anchor the patch and
            the validation.
        baseline: What a good run looks like (record count range, fill rates).
        search_attributes: Set ``MendlineSource`` (the namespace has it).
    """

    source: str
    number: int
    trigger: str = ""
    requested_by: str | None = None
    last_good_run_id: str | None = None
    baseline: Baseline = Field(default_factory=Baseline)
    search_attributes: bool = True


class RepairStep(StrEnum):
    STARTED = "STARTED"
    DIAGNOSING = "DIAGNOSING"
    PATCHING = "PATCHING"
    VALIDATING = "VALIDATING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    PROMOTING = "PROMOTING"
    ROLLING_BACK = "ROLLING_BACK"
    DONE = "DONE"


class DiagnoseRequest(BaseModel):
    """Input of ``diagnose_source``: fetch the live page and see what the active scraper
    makes of it."""

    source: str
    number: int
    last_good_run_id: str | None = None
    render: bool | None = None
    """Fetch with the browser (True), without (False), or as the active scraper does (None)."""


class Diagnosis(BaseModel):
    """What the doctor found before patching.

    Attributes:
        pages: The live pages fetched now (bronze).
        rendered: They were rendered with the browser.
        active_version: The version active now.
        active_render: The active version renders pages.
        active_records: Records the active version extracts from the live pages.
        last_good_run_id: The run whose records anchor the patch.
        last_good_records: How many records that run has in silver.
        script_built: The static page evidently builds its content with scripts.
        findings: Human sentences.
        llm_provider: The language-model provider the doctor may ask for a patch when its
            own fails (``MENDLINE_AGENT_PROVIDER``); None with the heuristic agent.
    """

    pages: list[PageRef]
    rendered: bool = False
    active_version: int
    active_render: bool = False
    active_records: int = 0
    last_good_run_id: str | None = None
    last_good_records: int = 0
    script_built: bool = False
    findings: list[str] = Field(default_factory=list)
    llm_provider: str | None = None


class PatchRequest(BaseModel):
    """Input of ``patch_scraper``: re-learn the active scraper on the diagnosed pages."""

    source: str
    number: int
    pages: list[PageRef]
    active_version: int
    last_good_run_id: str | None = None
    rendered: bool = False


class PatchResult(BaseModel):
    """Output of ``patch_scraper``: a stored candidate version, or why there is none.

    Attributes:
        version: The candidate (stored once per spec hash; ``author`` = ``doctor``).
        unchanged: The active scraper still works on these pages; nothing was built.
        confidence: How well the patch reproduces the last-good records (0–1).
        anchored_fields: Fields re-located through last-good values.
        lost_fields: Fields that could not be re-located.
        notes: What was tried.
        error: Why no patch could be made.
        author: Who wrote the patch: ``doctor`` (re-anchoring, no LLM) or ``llm``.
        attempts: The language-model calls behind an ``llm`` patch, with token usage.
    """

    version: ScraperVersionInfo | None = None
    unchanged: bool = False
    confidence: float = 0.0
    anchored_fields: list[str] = Field(default_factory=list)
    lost_fields: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    author: Literal["doctor", "llm"] = "doctor"
    attempts: list[PlanAttempt] = Field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Language-model tokens this patch cost (prompt plus answer, every call)."""
        return sum(a.prompt_tokens + a.completion_tokens for a in self.attempts)


class RepairValidateRequest(BaseModel):
    """Input of ``validate_repair``: run a version on the live page in staging and compare
    its output with the last good output."""

    source: str
    version: int
    last_good_run_id: str | None = None
    baseline: Baseline = Field(default_factory=Baseline)


class RollbackRequest(BaseModel):
    """Input of ``rollback_scraper``: re-activate ``to_version`` if ``from_version`` is
    still active (a retry never rolls back twice)."""

    source: str
    from_version: int
    to_version: int
    reason: str = ""


class RepairState(BaseModel):
    """The ``state`` query of ``DoctorRepair``."""

    source: str
    number: int
    step: RepairStep = RepairStep.STARTED
    trigger: str = ""
    diagnosis: Diagnosis | None = None
    patch: PatchResult | None = None
    report: ValidationReport | None = None
    decision: PromotionDecision | None = None
    result: RepairReport | None = None


class SourceEventInput(BaseModel):
    """Input of ``record_source_event``: one line of a source's history.

    Kinds written by supervision: ``repair_started``, ``repair_finished`` (detail: the
    :class:`RepairReport`) and ``supervisor_changed`` (detail: action, reason, requested_by).
    """

    source: str
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict)


class SupervisedScrapeRequest(BaseModel):
    """Input of ``supervised_scrape``: a scrape whose records are held back from silver when
    the run looks broken against ``baseline`` (so a broken scraper never overwrites good
    records with empty ones)."""

    source: str
    run_id: str
    baseline: Baseline = Field(default_factory=Baseline)


# --- supervisor -------------------------------------------------------------------------------


class RunNowRequest(BaseModel):
    """Input of ``run_now``."""

    reason: str = Field("run by hand", max_length=500)
    requested_by: str | None = Field(None, max_length=200)


class RunTicket(BaseModel):
    """Result of ``run_now``: the cycle number the requested run will have.

    The run is over when the ``health`` query shows ``last_run.cycle >= cycle`` and
    ``busy`` is false (any repair it triggered has ended too).
    """

    cycle: int
    workflow_id: str


class FixRequest(BaseModel):
    """Input of ``fix``: start a repair now.

    Attributes:
        reason: Why (stored with the repair).
        requested_by: Who asks.
        force: Start it even when the day's repair attempts are used up.
    """

    reason: str = Field("fix requested by hand", max_length=500)
    requested_by: str | None = Field(None, max_length=200)
    force: bool = False


class RepairTicket(BaseModel):
    """Result of ``fix``: the repair that will run."""

    number: int
    workflow_id: str


class HandRequest(BaseModel):
    """Input of ``pause``, ``resume``, ``reset`` and ``mark_dead``."""

    reason: str = Field("", max_length=500)
    requested_by: str | None = Field(None, max_length=200)


class IntervalRequest(BaseModel):
    """Input of ``set_interval``."""

    interval_seconds: float = Field(gt=0, le=366 * 86400)
    requested_by: str | None = Field(None, max_length=200)


class BreakerView(BaseModel):
    """The repair circuit breaker, as shown to people."""

    allowed: bool
    reason: str
    repairs_today: int
    max_per_day: int
    open_until: datetime | None = None


class SupervisorCarry(BaseModel):
    """What a supervisor carries through continue-as-new (compact: no records, no pages)."""

    health: SourceHealth = Field(default_factory=SourceHealth)
    paused: bool = False
    pause_reason: str = ""
    cycle: int = 0
    repairs: int = 0
    good_runs: list[ScrapeStats] = Field(default_factory=list)
    last_good_run_id: str | None = None
    last_run: RunDigest | None = None
    last_repair: RepairReport | None = None
    next_run_at: datetime | None = None
    transitions: list[HealthTransition] = Field(default_factory=list)
    run_requested: bool = False
    run_trigger: str = ""
    fix_request: FixRequest | None = None
    incarnation: str = ""
    """Distinguishes run ids of a source removed and added again under the same name."""
    active_version: int | None = None
    search_attributes: bool = True


class SupervisorInput(BaseModel):
    """Input of ``SourceSupervisor`` (id ``source/<name>``).

    Attributes:
        source: The source.
        interval_seconds: Time between scheduled runs.
        policy: Strikes, repair limits, windows (None: the worker's settings,
            ``MENDLINE_MAX_STRIKES`` etc., read once when the supervisor starts).
        run_first: Run as soon as the supervisor starts (else after one interval).
        carry: State carried over continue-as-new (None on a fresh start).
    """

    source: str
    interval_seconds: float = Field(3600.0, gt=0)
    policy: SupervisorPolicy | None = None
    run_first: bool = True
    carry: SupervisorCarry | None = None


class SupervisorView(BaseModel):
    """The ``health`` query: everything ``mendline source status`` shows.

    Attributes:
        source: The source.
        health: ACTIVE, DEGRADED, QUARANTINED or DEAD.
        reason: Why the health last changed.
        paused: No scheduled runs (by hand).
        pause_reason: Why it was paused.
        interval_seconds: Time between scheduled runs.
        active_version: The active scraper version (after the last run or repair).
        cycle: Runs so far.
        busy: A run or repair is in progress or requested.
        running: A run is in progress.
        last_run: The last run.
        next_run_at: When the next scheduled run is due (None: none is scheduled).
        strikes: Bad runs since the last good one.
        consecutive_failures: Transient failures in a row.
        open_repair: The workflow id of the repair in progress.
        repairs: Repairs started so far.
        last_repair: The last finished repair.
        breaker: The repair circuit breaker.
        transitions: The latest health transitions, oldest first.
    """

    source: str
    health: HealthState
    reason: str = ""
    paused: bool = False
    pause_reason: str = ""
    interval_seconds: float
    active_version: int | None = None
    cycle: int = 0
    busy: bool = False
    running: bool = False
    last_run: RunDigest | None = None
    next_run_at: datetime | None = None
    strikes: int = 0
    consecutive_failures: int = 0
    open_repair: str | None = None
    repairs: int = 0
    last_repair: RepairReport | None = None
    breaker: BreakerView
    transitions: list[HealthTransition] = Field(default_factory=list)


class HealthRecord(BaseModel):
    """Input of ``record_health``: store a health transition (status and history)."""

    source: str
    transition: HealthTransition
    cycle: int = 0


class SupervisorSeed(BaseModel):
    """Output of ``load_supervision``: what the database knows when a supervisor starts.

    Attributes:
        interval_seconds: The source's configured interval.
        active_version: Its active version.
        good_runs: Its last successful runs with records (oldest first, no samples).
        last_good_run_id: The newest of them.
        incarnation: The source row's creation stamp (run ids of a re-added source differ).
        search_attributes: The namespace has Mendline's search attributes.
        policy: The worker's supervision settings.
    """

    interval_seconds: float
    active_version: int | None = None
    good_runs: list[ScrapeStats] = Field(default_factory=list)
    last_good_run_id: str | None = None
    incarnation: str = ""
    search_attributes: bool = True
    policy: SupervisorPolicy = Field(default_factory=SupervisorPolicy)


class SuperviseRequest(BaseModel):
    """Input of ``load_supervision``."""

    source: str
    window: int = 10
