"""``SourceSupervisor`` and ``DoctorRepair`` over hours and days, on the time-skipping server.

The real workflows run against scripted activities registered under the real activity
names (:class:`ScriptedSource`): a site that is up, down or redesigned, and a doctor whose
patch mends the scraper or not. Virtual time passes only in ``env.sleep``, so the test
changes the site between two runs and reads the ``health`` query at chosen instants; every
activity attempt records the virtual time it was scheduled at, which is what the schedule,
backoff and circuit-breaker assertions are about.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from models.breakage import Baseline, BreakageKind
from models.health import HealthState, HealthTransition
from models.scraper import FieldSpec, PageCheck, ScraperSpec, ValidationReport
from models.sources import (
    PageRef,
    PromoteRequest,
    PromotionDecision,
    ScraperVersionInfo,
    ScrapeStats,
    ValidateRequest,
)
from models.supervisor import (
    DiagnoseRequest,
    Diagnosis,
    FixRequest,
    HandRequest,
    HealthRecord,
    PatchRequest,
    PatchResult,
    RepairTicket,
    RepairValidateRequest,
    RollbackRequest,
    RunNowRequest,
    RunTicket,
    SourceEventInput,
    SupervisedScrapeRequest,
    SuperviseRequest,
    SupervisorInput,
    SupervisorPolicy,
    SupervisorSeed,
    SupervisorView,
    supervisor_id,
)
from workflows.doctor import DoctorRepair
from workflows.supervisor import SourceSupervisor

HOUR = 3600.0
DAY = 86400.0
URL = "https://news.example.org/"
SPEC = ScraperSpec(
    kind="html-list",
    container="article",
    fields=[FieldSpec(name="headline", selector="h2"), FieldSpec(name="section", selector=".tag")],
)
SLACK = 30.0
"""Seconds of virtual time an interval may be off by: locked time still flows at wall-clock
speed while activities and workflow tasks run, a few hundred milliseconds per run."""


@dataclass(frozen=True)
class Attempt:
    """One attempt of ``supervised_scrape``: the run it belongs to and when it was scheduled."""

    run_id: str
    attempt: int
    at: datetime
    baseline: Baseline


@dataclass(frozen=True)
class Run:
    """All attempts of one supervised run."""

    run_id: str
    attempts: int
    first: datetime
    last: datetime
    baseline: Baseline


class ScriptedSource:
    """A source, its site and its scraper versions, as activities under the real names.

    The site is up or :attr:`down`; it shows :attr:`layout` 1 or 2, and a scraper version
    reads one layout (:attr:`reads`). A run of a version that does not read the current
    layout finds 0 records on an HTTP 200 page (drift); a down site fails the fetch the way
    the fetch layer does (``FetchConnectError``, ``error_class`` ``network``). The doctor's
    patch builds a version reading the current layout when :attr:`repairable`, else fails.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.layout = 1
        self.records = 24
        self.repairable = True
        self.active = 1
        self.reads = {1: 1}
        self.loads = 0
        self.attempts: list[Attempt] = []
        self.diagnoses: list[datetime] = []
        self.patches: list[datetime] = []
        self.promotions: list[tuple[int, datetime]] = []
        self.transitions: list[HealthTransition] = []
        self.events: list[SourceEventInput] = []

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            self.load_supervision,
            self.supervised_scrape,
            self.record_health,
            self.record_source_event,
            self.diagnose_source,
            self.patch_scraper,
            self.validate_repair,
            self.decide_promotion,
            self.promote_scraper,
            self.rollback_target,
            self.rollback_scraper,
        ]

    def runs(self) -> list[Run]:
        """The supervised runs so far, in order, with their attempts folded together."""
        runs: dict[str, list[Attempt]] = {}
        for attempt in self.attempts:
            runs.setdefault(attempt.run_id, []).append(attempt)
        return [
            Run(rid, len(group), group[0].at, group[-1].at, group[0].baseline)
            for rid, group in runs.items()
        ]

    def event_kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    # --- supervisor ---------------------------------------------------------------------

    @activity.defn(name="load_supervision")
    async def load_supervision(self, request: SuperviseRequest) -> SupervisorSeed:
        self.loads += 1
        return SupervisorSeed(
            interval_seconds=HOUR,
            active_version=self.active,
            incarnation="20260101T000000",
            # What create_worker(..., search_attributes=False) makes the real one say: the
            # time-skipping server has no custom search attributes.
            search_attributes=False,
        )

    @activity.defn(name="supervised_scrape")
    async def supervised_scrape(self, request: SupervisedScrapeRequest) -> ScrapeStats:
        info = activity.info()
        self.attempts.append(
            Attempt(
                request.run_id, info.attempt, info.current_attempt_scheduled_time, request.baseline
            )
        )
        if self.down:
            raise ApplicationError(
                f"cannot connect to {URL}: [Errno 111] Connection refused",
                {"url": URL, "error_class": "network"},
                type="FetchConnectError",
            )
        records = self.records if self.reads[self.active] == self.layout else 0
        return ScrapeStats(
            source=request.source,
            run_id=request.run_id,
            version=self.active,
            pages=1,
            records=records,
            unchanged=records,
            fill_rates={"headline": 1.0, "section": 0.9} if records else {},
            http_statuses={"200": 1},
            held=records == 0,
        )

    @activity.defn(name="record_health")
    async def record_health(self, record: HealthRecord) -> None:
        self.transitions.append(record.transition)

    @activity.defn(name="record_source_event")
    async def record_source_event(self, event: SourceEventInput) -> None:
        self.events.append(event)

    # --- doctor -------------------------------------------------------------------------

    @activity.defn(name="diagnose_source")
    async def diagnose_source(self, request: DiagnoseRequest) -> Diagnosis:
        self.diagnoses.append(activity.info().current_attempt_scheduled_time)
        page = PageRef(
            bronze_id=len(self.diagnoses),
            url=URL,
            final_url=URL,
            status=200,
            sha256="0" * 64,
            size=2048,
        )
        found = self.records if self.reads[self.active] == self.layout else 0
        return Diagnosis(
            pages=[page],
            active_version=self.active,
            active_records=found,
            last_good_run_id=request.last_good_run_id,
            last_good_records=self.records,
            findings=[f"the active version v{self.active} extracts {found} records"],
        )

    @activity.defn(name="patch_scraper")
    async def patch_scraper(self, request: PatchRequest) -> PatchResult:
        self.patches.append(activity.info().current_attempt_scheduled_time)
        if not self.repairable:
            return PatchResult(
                error="no selector on the live page finds the last good records' values",
                notes=["anchored on 24 last-good records", "no field re-located"],
            )
        version = max(self.reads) + 1
        self.reads[version] = self.layout
        info = ScraperVersionInfo(
            source=request.source,
            version=version,
            sha256=f"{version:064x}",
            author="doctor",
            spec=SPEC,
            confidence=0.9,
        )
        return PatchResult(version=info, confidence=0.9, anchored_fields=["headline", "section"])

    @activity.defn(name="validate_repair")
    async def validate_repair(self, request: RepairValidateRequest) -> ValidationReport:
        works = self.reads[request.version] == self.layout
        records = self.records if works else 0
        return ValidationReport(
            spec_sha=f"{request.version:064x}",
            passed=works,
            pages=[PageCheck(url=URL, records=records, problems=[] if works else ["0 records"])],
            total_records=records,
        )

    @activity.defn(name="decide_promotion")
    async def decide_promotion(self, request: ValidateRequest) -> PromotionDecision:
        return PromotionDecision(needs_approval=False, reasons=["confidence 0.90, same fields"])

    @activity.defn(name="promote_scraper")
    async def promote_scraper(self, request: PromoteRequest) -> None:
        self.active = request.version
        self.promotions.append((request.version, activity.info().current_attempt_scheduled_time))

    @activity.defn(name="rollback_target")
    async def rollback_target(self, source: str) -> int | None:
        earlier = [v for v in self.reads if v < self.active]
        return max(earlier) if earlier else None

    @activity.defn(name="rollback_scraper")
    async def rollback_scraper(self, request: RollbackRequest) -> int | None:
        self.active = request.to_version
        return self.active


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own, so no other test's timers share its clock."""
    binary = Path(sys.executable).parent / "temporal-test-server"
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=pydantic_data_converter
    )
    yield environment
    await environment.shutdown()


@pytest.fixture
def source() -> ScriptedSource:
    return ScriptedSource(f"s{uuid.uuid4().hex[:8]}")


@asynccontextmanager
async def supervising(
    env: WorkflowEnvironment,
    source: ScriptedSource,
    policy: SupervisorPolicy | None = None,
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """Run the real supervisor (hourly, first run at once) on a worker with the script."""
    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[SourceSupervisor, DoctorRepair],
        activities=source.activities(),
    ):
        handle = await env.client.start_workflow(
            SourceSupervisor.run,
            SupervisorInput(
                source=source.name, interval_seconds=HOUR, policy=policy or SupervisorPolicy()
            ),
            id=supervisor_id(source.name),
            task_queue=queue,
        )
        try:
            yield handle
        finally:
            # A supervisor never ends on its own.
            await handle.terminate("test over")


async def health(handle: WorkflowHandle[Any, Any]) -> SupervisorView:
    view: SupervisorView = await handle.query("health", result_type=SupervisorView)
    return view


async def settle(
    handle: WorkflowHandle[Any, Any], cycle: int, timeout: float = 30
) -> SupervisorView:
    """Wait (in wall-clock time) until run ``cycle`` and whatever it started are over."""
    deadline = time.monotonic() + timeout
    while True:
        view = await health(handle)
        if view.last_run and view.last_run.cycle >= cycle and not view.busy:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"supervisor did not settle on cycle {cycle}: {view}")
        await asyncio.sleep(0.05)


async def sleep_until(env: WorkflowEnvironment, at: datetime) -> None:
    """Skip virtual time to ``at``."""
    now = await env.get_current_time()
    assert at > now, f"cannot sleep back to {at} from {now}"
    await env.sleep(at - now)


def gaps(times: Sequence[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in pairwise(times)]


def near(value: float, expected: float) -> bool:
    return expected <= value <= expected + SLACK


def moves(view: SupervisorView) -> list[tuple[HealthState, HealthState]]:
    return [(t.from_state, t.to_state) for t in view.transitions]


# --- tests --------------------------------------------------------------------------------


async def test_scheduled_runs_happen_once_per_interval(
    env: WorkflowEnvironment, source: ScriptedSource
) -> None:
    async with supervising(env, source) as handle:
        started = await env.get_current_time()
        await env.sleep(3.5 * HOUR)
        view = await health(handle)
        runs = source.runs()

    # Runs at 0, 1, 2 and 3 hours: one per interval, none doubled, none skipped.
    assert len(runs) == 4, runs
    assert (runs[0].first - started).total_seconds() < SLACK
    assert all(near(gap, HOUR) for gap in gaps([r.first for r in runs])), runs
    assert all(run.attempts == 1 for run in runs)
    assert view.cycle == 4 and view.health == HealthState.ACTIVE and not view.busy
    assert view.last_run is not None and view.last_run.trigger == "schedule"
    assert view.next_run_at is not None
    assert near((view.next_run_at - runs[-1].first).total_seconds(), HOUR)
    assert source.loads == 1 and not source.diagnoses


async def test_a_day_long_outage_backs_off_and_quarantines_without_repairs(
    env: WorkflowEnvironment, source: ScriptedSource
) -> None:
    async with supervising(env, source) as handle:
        await settle(handle, 1)
        source.down = True
        went_down = await env.get_current_time()
        await env.sleep(DAY + 2 * HOUR)
        view = await health(handle)
        failed = source.runs()[1:]

        assert view.health == HealthState.QUARANTINED, view.reason
        assert "outage" in view.reason and "unreachable" in view.reason, view.reason
        assert "FetchConnectError" in view.reason
        assert moves(view) == [
            (HealthState.ACTIVE, HealthState.DEGRADED),
            (HealthState.DEGRADED, HealthState.QUARANTINED),
        ]
        assert source.transitions == view.transitions
        # Transient failures are never repaired, and an outage never kills a source.
        assert view.repairs == 0 and not source.diagnoses and view.open_repair is None
        assert view.last_run is not None and view.last_run.kind == BreakageKind.NETWORK
        assert view.consecutive_failures == len(failed)
        assert view.next_run_at is None and not view.busy

        # Each run retries its fetch (Temporal's retry policy) before it counts as failed.
        assert all(run.attempts == 4 for run in failed), failed
        # Between runs: retry_base_seconds (60 s) doubling per failure, capped at the interval.
        waits = [(b.first - a.last).total_seconds() for a, b in pairwise(failed)]
        expected = [min(HOUR, 60.0 * 2**k) for k in range(len(waits))]
        assert all(near(w, e) for w, e in zip(waits, expected, strict=True)), list(
            zip(waits, expected, strict=True)
        )
        assert expected[:7] == [60, 120, 240, 480, 960, 1920, HOUR]
        # Quarantined once the site had been unreachable for the outage window (a day).
        quarantined = view.transitions[-1].at
        assert DAY <= (quarantined - went_down).total_seconds() <= DAY + HOUR + SLACK

        # Quarantined after an outage: no scheduled run until someone acts.
        await env.sleep(DAY)
        later = await health(handle)
        assert len(source.runs()) == len(failed) + 1
        assert later.cycle == view.cycle and later.health == HealthState.QUARANTINED
        assert not source.diagnoses


async def test_drift_no_repair_fixes_opens_the_breaker_daily_then_kills_the_source(
    env: WorkflowEnvironment, source: ScriptedSource
) -> None:
    # Start at 01:00 UTC so every day boundary falls at a known point of the story.
    now = await env.get_current_time()
    day0 = now.date() + timedelta(days=1)
    await sleep_until(env, datetime.combine(day0, datetime.min.time(), UTC) + timedelta(hours=1))

    def at(day: int, hour: float) -> datetime:
        return datetime.combine(day0 + timedelta(days=day), datetime.min.time(), UTC) + timedelta(
            hours=hour
        )

    source.repairable = False
    async with supervising(env, source) as handle:
        await sleep_until(env, at(0, 2.5))  # good runs at 01:00 and 02:00
        source.layout = 2  # the redesign no patch can follow
        await sleep_until(env, at(0, 12))
        first_day = await health(handle)

        # Runs at 03:00, 04:00, 05:00 broke; each started a repair, the third exhausted the day.
        assert [d.date() for d in source.diagnoses] == [day0] * 3
        assert first_day.repairs == 3 and first_day.cycle == 5
        assert first_day.health == HealthState.QUARANTINED, first_day.reason
        assert first_day.last_repair is not None and first_day.last_repair.outcome == "failed"
        breaker = first_day.breaker
        assert not breaker.allowed and breaker.repairs_today == 3 and breaker.max_per_day == 3
        assert "circuit breaker open" in breaker.reason and "3 of 3" in breaker.reason
        assert breaker.open_until == at(1, 0)
        assert first_day.next_run_at == at(1, 0)
        assert source.event_kinds().count("repair_started") == 3

        await sleep_until(env, at(1, 12))
        second_day = await health(handle)
        # Repairs resumed at midnight (no scrape in between: quarantined after drift).
        assert second_day.repairs == 6 and second_day.cycle == 5
        assert [d.date() for d in source.diagnoses[3:]] == [day0 + timedelta(days=1)] * 3
        assert near((source.diagnoses[3] - at(1, 0)).total_seconds(), 0)
        assert second_day.health == HealthState.QUARANTINED
        assert not second_day.breaker.allowed and second_day.breaker.repairs_today == 3

        await sleep_until(env, at(2, 12))
        dead = await health(handle)
        assert dead.health == HealthState.DEAD, dead.reason
        assert dead.repairs == 9
        assert "repairs exhausted on 3 consecutive UTC days" in dead.reason, dead.reason
        per_day: dict[date, int] = {}
        for started in source.diagnoses:
            per_day[started.date()] = per_day.get(started.date(), 0) + 1
        assert per_day == {day0 + timedelta(days=d): 3 for d in range(3)}
        assert moves(dead)[-1] == (HealthState.QUARANTINED, HealthState.DEAD)
        assert source.transitions[-1].to_state == HealthState.DEAD
        assert dead.next_run_at is None and not dead.breaker.allowed

        # DEAD: nothing more happens on its own...
        await env.sleep(2 * DAY)
        still = await health(handle)
        assert (still.health, still.repairs, still.cycle) == (HealthState.DEAD, 9, 5)
        assert len(source.diagnoses) == 9 and len(source.runs()) == 5

        # ...and the handlers refuse, saying why and what to do.
        for name, request, result_type in (
            ("run_now", RunNowRequest(), RunTicket),
            ("fix", FixRequest(reason="try again", requested_by="tester"), RepairTicket),
            ("resume", HandRequest(reason="try again"), SupervisorView),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(name, request, result_type=result_type)
            message = str(refused.value.cause)
            assert "DEAD" in message and "reset" in message, (name, message)
        assert (await health(handle)).health == HealthState.DEAD
        # Refused by the validators: none of them reached the workflow's history.
        history = await handle.fetch_history()
        assert not [
            event
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]

        # Fixed by hand: a reset revives it and runs it at once.
        source.reads[1] = 2
        revived: SupervisorView = await handle.execute_update(
            "reset", HandRequest(reason="scraper fixed by hand"), result_type=SupervisorView
        )
        assert revived.health == HealthState.ACTIVE
        after = await settle(handle, 6)
        assert after.health == HealthState.ACTIVE and after.breaker.allowed
        assert after.last_run is not None
        assert (after.last_run.trigger, after.last_run.verdict) == ("reset", "ok")
        assert moves(after)[-1] == (HealthState.DEAD, HealthState.ACTIVE)
        story = await handle.fetch_history()

    # Three days of timers, repairs, refused updates and a reset replay deterministically.
    replayer = Replayer(
        workflows=[SourceSupervisor, DoctorRepair], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(story)


async def test_a_promoted_repair_is_followed_by_a_run_at_once(
    env: WorkflowEnvironment, source: ScriptedSource
) -> None:
    async with supervising(env, source) as handle:
        await env.sleep(1.5 * HOUR)  # good runs at 0 h and 1 h
        source.layout = 2
        await env.sleep(HOUR)
        view = await health(handle)

    runs = source.runs()
    assert len(runs) == 4, runs
    assert view.health == HealthState.ACTIVE, view.reason
    assert view.repairs == 1 and view.last_repair is not None
    assert view.last_repair.outcome == "promoted" and view.last_repair.active_version == 2
    assert view.last_run is not None
    assert (view.last_run.cycle, view.last_run.trigger, view.last_run.verdict) == (
        4,
        "after_repair",
        "ok",
    )
    assert view.last_run.version == 2 and view.active_version == 2
    [(version, promoted_at)] = source.promotions
    assert version == 2
    # The run after the repair did not wait for the schedule.
    assert 0 <= (runs[3].first - promoted_at).total_seconds() < SLACK
    assert moves(view) == [
        (HealthState.ACTIVE, HealthState.DEGRADED),
        (HealthState.DEGRADED, HealthState.ACTIVE),
    ]
    assert "repair promoted" in view.transitions[-1].reason
    assert source.event_kinds() == ["repair_started", "repair_finished"]
    # The schedule goes on an interval after the run that broke, not after the repair.
    assert view.next_run_at is not None
    assert near((view.next_run_at - runs[2].first).total_seconds(), HOUR)


async def test_continue_as_new_carries_the_supervisor_state(
    env: WorkflowEnvironment, source: ScriptedSource
) -> None:
    async with supervising(env, source, SupervisorPolicy(runs_per_history=3)) as handle:
        first_run = (await handle.describe()).run_id
        await env.sleep(0.5 * HOUR)  # run 1: good
        source.layout = 2
        await env.sleep(HOUR)  # run 2 broke, repair 1 promoted, run 3 right after
        assert (await health(handle)).cycle == 3
        await env.sleep(2 * HOUR)  # runs 4 and 5 in the second history
        source.records = 60  # far above the learned 24: a suspicious run
        await env.sleep(HOUR)  # run 6
        source.records = 24
        sixth = await health(handle)
        third_run = (await handle.describe()).run_id
        await env.sleep(HOUR)  # run 7 in the third history
        seventh = await health(handle)
        last_run = (await handle.describe()).run_id

        first_history = await env.client.get_workflow_handle(
            handle.id, run_id=first_run
        ).fetch_history()

    assert first_history.events[-1].event_type == (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    )
    assert len({first_run, third_run, last_run}) == 2 and last_run == third_run != first_run

    # Run 6 was the last of the second history: its state crossed into the third.
    assert sixth.cycle == 6 and sixth.health == HealthState.DEGRADED
    assert sixth.strikes == 1 and sixth.repairs == 1
    assert sixth.last_run is not None and sixth.last_run.kind == BreakageKind.COUNT_ANOMALY
    assert moves(sixth) == [
        (HealthState.ACTIVE, HealthState.DEGRADED),
        (HealthState.DEGRADED, HealthState.ACTIVE),
        (HealthState.ACTIVE, HealthState.DEGRADED),
    ]

    assert seventh.cycle == 7 and seventh.health == HealthState.ACTIVE
    assert seventh.repairs == 1 and seventh.last_repair is not None
    assert seventh.last_repair.outcome == "promoted"
    assert moves(seventh) == [*moves(sixth), (HealthState.DEGRADED, HealthState.ACTIVE)]
    assert seventh.transitions[:3] == sixth.transitions
    runs = source.runs()
    assert len(runs) == 7 and len({r.run_id for r in runs}) == 7
    assert runs[-1].run_id.endswith("-7")
    # Not seeded again: the baseline learned from the good runs came along (4 of them:
    # runs 1, 3, 4, 5), and the hourly schedule did not restart with a run at once.
    assert source.loads == 1
    assert runs[-1].baseline.runs == 4 and runs[-1].baseline.seen_max == 24
    assert near((runs[-1].first - runs[-2].first).total_seconds(), HOUR)
