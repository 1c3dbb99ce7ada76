"""``SourceSupervisor`` (id ``source/<name>``): runs a source on a durable timer, keeps its
health, and starts a ``DoctorRepair`` child when the site drifts.

One loop, one thing at a time: a requested repair, a requested run, or the next scheduled
run (a durable timer, so worker and server restarts lose nothing). Each run is assessed
against a baseline learned from the last good runs (:func:`models.breakage.assess_run`);
records of a run that looks broken are held back from silver. The assessment moves the
:class:`~models.health.SourceHealth` state machine; a run that shows drift starts a repair
when the circuit breaker allows; a repair that promoted or rolled back is followed by a run
at once, so records keep flowing.

When nothing is scheduled:

* paused, or DEAD: no runs (``run_now`` still works unless DEAD);
* QUARANTINED after drift: no runs; a repair attempt whenever the breaker allows, spaced by
  the interval (exhausting them on ``dead_after_days`` days in a row makes the source DEAD);
* QUARANTINED after an outage or a non-repairable failure: nothing until ``resume``,
  ``reset``, ``fix`` or a good ``run_now``.

Handlers change state at once and leave the database writes (status, history events) to the
loop, which stores them in order. The workflow continues as new every
``runs_per_history`` runs, or when Temporal suggests it, carrying a compact state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.supervision import SupervisionActivities
    from models.breakage import DRIFT_KINDS, Baseline, RunAssessment, assess_run
    from models.health import HealthState, HealthTransition, SourceHealth
    from models.sources import ScrapeStats
    from models.supervisor import (
        BreakerView,
        DoctorRepairInput,
        FixRequest,
        HandRequest,
        HealthRecord,
        IntervalRequest,
        RepairReport,
        RepairTicket,
        RunDigest,
        RunNowRequest,
        RunTicket,
        SourceEventInput,
        SupervisedScrapeRequest,
        SuperviseRequest,
        SupervisorCarry,
        SupervisorInput,
        SupervisorPolicy,
        SupervisorView,
        repair_id,
        run_id,
        supervisor_id,
    )
    from workflows.doctor import DoctorRepair
    from workflows.failures import failure_message, raise_if_cancelled, run_failure
    from workflows.sources import (
        FETCH_RETRY,
        HEARTBEAT_TIMEOUT,
        QUICK_TIMEOUT,
        SCRAPE_TIMEOUT,
        SOURCE_ATTR,
        STEP_RETRY,
    )

HEALTH_ATTR = SearchAttributeKey.for_keyword("MendlineHealth")
TRANSITIONS_KEPT = 10
SOURCE_GONE = ("SourceNotFoundError",)
"""Failures that end the supervisor: the source was removed."""


@workflow.defn(name="SourceSupervisor")
class SourceSupervisor:
    """Watch one source for ever: scheduled runs, health, repairs."""

    @workflow.init
    def __init__(self, request: SupervisorInput) -> None:
        self._source = request.source
        self._interval = request.interval_seconds
        self._policy = request.policy or SupervisorPolicy()
        self._c = request.carry.model_copy(deep=True) if request.carry else SupervisorCarry()
        self._search_attributes = self._c.search_attributes
        self._running = False
        self._open_repair: str | None = None
        self._outbox: list[HealthRecord | SourceEventInput] = []
        self._changed = False

    # --- queries ---------------------------------------------------------------------------

    @workflow.query(name="health")
    def health(self) -> SupervisorView:
        """Health, last run, open repair, circuit breaker and the latest transitions."""
        c, policy = self._c, self._policy
        allowed, reason = c.health.can_repair(workflow.now(), policy.max_repairs_per_day)
        day = workflow.now().date()
        return SupervisorView(
            source=self._source,
            health=c.health.state,
            reason=c.health.last_transition_reason,
            paused=c.paused,
            pause_reason=c.pause_reason,
            interval_seconds=self._interval,
            active_version=c.active_version,
            cycle=c.cycle,
            busy=self._busy(),
            running=self._running,
            last_run=c.last_run,
            next_run_at=self._due(),
            strikes=c.health.strikes,
            consecutive_failures=c.health.consecutive_failures,
            open_repair=self._open_repair,
            repairs=c.repairs,
            last_repair=c.last_repair,
            breaker=BreakerView(
                allowed=allowed,
                reason=reason,
                repairs_today=c.health.repairs_today if c.health.repair_day == day else 0,
                max_per_day=policy.max_repairs_per_day,
                open_until=c.health.breaker_open_until if not allowed else None,
            ),
            transitions=list(c.transitions),
        )

    # --- updates and signals ---------------------------------------------------------------

    @workflow.update(name="run_now")
    def run_now(self, request: RunNowRequest) -> RunTicket:
        """Run the source now (also while paused or quarantined); the ticket names the run."""
        return self._request_run()

    @run_now.validator
    def _check_run_now(self, request: RunNowRequest) -> None:
        self._refuse_if_dead("run")

    @workflow.signal(name="run_now")
    def run_now_signal(self, request: RunNowRequest) -> None:
        """Fire-and-forget ``run_now``."""
        if self._c.health.state == HealthState.DEAD:
            workflow.logger.warning("run_now signal ignored: %s is DEAD", self._source)
            return
        self._request_run()

    @workflow.update(name="fix")
    def fix(self, request: FixRequest) -> RepairTicket:
        """Start a repair now (the next one started serves it)."""
        return self._request_fix(request)

    @fix.validator
    def _check_fix(self, request: FixRequest) -> None:
        problem = self._fix_problem(request)
        if problem:
            raise ValueError(problem)

    @workflow.signal(name="fix")
    def fix_signal(self, request: FixRequest) -> None:
        """Fire-and-forget ``fix`` (ignored, with a warning, when ``fix`` would refuse)."""
        problem = self._fix_problem(request)
        if problem:
            workflow.logger.warning("fix signal ignored: %s", problem)
            return
        self._request_fix(request)

    @workflow.update(name="pause")
    def pause(self, request: HandRequest) -> SupervisorView:
        """Stop scheduled runs (``run_now`` and repairs still work)."""
        self._pause(request)
        return self.health()

    @workflow.signal(name="pause")
    def pause_signal(self, request: HandRequest) -> None:
        """Fire-and-forget ``pause``."""
        self._pause(request)

    @workflow.update(name="resume")
    def resume(self, request: HandRequest) -> SupervisorView:
        """Undo ``pause`` and lift a quarantine (a DEAD source needs ``reset``)."""
        self._resume(request)
        return self.health()

    @resume.validator
    def _check_resume(self, request: HandRequest) -> None:
        allowed, why = self._c.health.can_resume()
        if not allowed:
            raise ValueError(why)

    @workflow.signal(name="resume")
    def resume_signal(self, request: HandRequest) -> None:
        """Fire-and-forget ``resume`` (ignored for a DEAD source)."""
        allowed, why = self._c.health.can_resume()
        if not allowed:
            workflow.logger.warning("resume signal ignored: %s", why)
            return
        self._resume(request)

    @workflow.update(name="reset")
    def reset(self, request: HandRequest) -> SupervisorView:
        """Back to ACTIVE from any state: strikes, breaker and baseline cleared, run now."""
        self._reset(request)
        return self.health()

    @workflow.signal(name="reset")
    def reset_signal(self, request: HandRequest) -> None:
        """Fire-and-forget ``reset``."""
        self._reset(request)

    @workflow.update(name="mark_dead")
    def mark_dead(self, request: HandRequest) -> SupervisorView:
        """Declare the source DEAD: no runs, no repairs, until ``reset``."""
        c = self._c
        self._move(*c.health.mark_dead(request.reason, at=workflow.now()))
        self._note("mark_dead", request)
        return self.health()

    @mark_dead.validator
    def _check_mark_dead(self, request: HandRequest) -> None:
        if not request.reason.strip():
            raise ValueError("mark_dead needs a reason (it is stored with the transition)")

    @workflow.update(name="set_interval")
    def set_interval(self, request: IntervalRequest) -> SupervisorView:
        """Change the time between scheduled runs (the next run moves accordingly)."""
        self._set_interval(request)
        return self.health()

    @workflow.signal(name="set_interval")
    def set_interval_signal(self, request: IntervalRequest) -> None:
        """Fire-and-forget ``set_interval``."""
        self._set_interval(request)

    # --- the loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: SupervisorInput) -> None:
        c = self._c
        if request.carry is None:
            seed = await workflow.execute_activity_method(
                SupervisionActivities.load_supervision,
                SuperviseRequest(source=self._source, window=self._policy.baseline_window),
                start_to_close_timeout=QUICK_TIMEOUT,
                retry_policy=STEP_RETRY,
                summary="load the source's history",
            )
            c.good_runs, c.last_good_run_id = seed.good_runs, seed.last_good_run_id
            c.incarnation, c.search_attributes = seed.incarnation, seed.search_attributes
            c.active_version = seed.active_version
            self._search_attributes = seed.search_attributes
            if request.policy is None:
                self._policy = seed.policy
            if request.run_first:
                c.run_requested, c.run_trigger = True, c.run_trigger or "first run"
            else:
                c.next_run_at = workflow.now() + timedelta(seconds=self._interval)
        if self._search_attributes:
            workflow.upsert_search_attributes(
                [SOURCE_ATTR.value_set(self._source), HEALTH_ATTR.value_set(c.health.state.value)]
            )
        self._show()
        runs_here = 0
        while True:
            await self._flush()
            if c.fix_request is not None:
                await self._repair(c.fix_request.reason)
            elif c.run_requested:
                if not await self._cycle():
                    return
                runs_here += 1
            elif runs_here >= self._policy.runs_per_history or (
                workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._flush()
                workflow.continue_as_new(
                    SupervisorInput(
                        source=self._source,
                        interval_seconds=self._interval,
                        policy=self._policy,
                        run_first=False,
                        carry=c,
                    )
                )
            else:
                await self._sleep()

    async def _sleep(self) -> None:
        """Wait for a request, a change, or the next due time."""
        c = self._c
        self._changed = False
        due = self._due()
        wake = lambda: (  # noqa: E731
            c.run_requested or c.fix_request is not None or bool(self._outbox) or self._changed
        )
        if due is None:
            await workflow.wait_condition(wake)
            return
        delay = (due - workflow.now()).total_seconds()
        if delay > 0:
            try:
                await workflow.wait_condition(wake, timeout=delay, timeout_summary="next run")
                return
            except TimeoutError:
                pass
        if self._quarantined_for_drift():
            c.fix_request = FixRequest(reason="quarantined after drift: scheduled repair attempt")
        else:
            c.run_requested, c.run_trigger = True, "schedule"

    async def _cycle(self) -> bool:
        """One run: scrape, assess, update health, maybe repair. False: the source is gone."""
        c, policy = self._c, self._policy
        trigger = c.run_trigger or "schedule"
        c.run_requested, c.run_trigger = False, ""
        c.cycle += 1
        cycle = c.cycle
        baseline = Baseline.from_runs(c.good_runs, window=policy.baseline_window)
        rid = run_id(self._source, cycle, c.incarnation)
        self._running = True
        stats: ScrapeStats | None = None
        try:
            stats = await workflow.execute_activity_method(
                SupervisionActivities.supervised_scrape,
                SupervisedScrapeRequest(source=self._source, run_id=rid, baseline=baseline),
                start_to_close_timeout=SCRAPE_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=FETCH_RETRY,
                summary=f"run {cycle} ({trigger})",
            )
            assessment = assess_run(stats, None, baseline)
        except ActivityError as err:
            raise_if_cancelled(err)
            failure = run_failure(err)
            if failure.error_type in SOURCE_GONE:
                workflow.logger.info("source %s is gone: %s", self._source, failure_message(err))
                return False
            assessment = assess_run(None, failure, baseline)
        finally:
            self._running = False
        now = workflow.now()
        c.last_run = RunDigest(
            cycle=cycle,
            run_id=rid,
            at=now,
            version=stats.version if stats else (c.last_run.version if c.last_run else None),
            status="SUCCEEDED" if stats else "FAILED",
            records=stats.records if stats else 0,
            inserted=stats.inserted if stats else 0,
            held=stats.held if stats else False,
            verdict=assessment.verdict,
            kind=assessment.kind,
            reasons=assessment.reasons,
            trigger=trigger,
        )
        if stats is not None:
            c.active_version = stats.version
        if assessment.verdict == "ok" and stats is not None:
            c.good_runs = [*c.good_runs, stats.model_copy(update={"sample": []})][
                -policy.baseline_window :
            ]
            c.last_good_run_id = rid
        self._move(
            *c.health.apply(
                assessment,
                at=now,
                max_strikes=policy.max_strikes,
                outage_window=timedelta(seconds=policy.outage_window_seconds),
            ),
            cycle=cycle,
        )
        c.next_run_at = now + timedelta(seconds=self._delay(assessment))
        self._show()
        if assessment.needs_repair or c.fix_request is not None:
            await self._repair(f"run {cycle}: {assessment.summary}")
        return True

    async def _repair(self, trigger: str) -> None:
        """Start a DoctorRepair child (if the breaker allows) and account for its outcome."""
        c, policy = self._c, self._policy
        asked = c.fix_request
        c.fix_request = None
        if c.health.state == HealthState.DEAD:
            return
        now = workflow.now()
        allowed, why = c.health.can_repair(now, policy.max_repairs_per_day)
        if not allowed and not (asked and asked.force):
            workflow.logger.info("no repair of %s: %s", self._source, why)
            self._outbox.append(
                SourceEventInput(
                    source=self._source,
                    kind="repair_skipped",
                    detail={"trigger": trigger, "reason": why},
                )
            )
            c.next_run_at = max(
                now + timedelta(seconds=self._interval), c.health.breaker_open_until or now
            )
            return
        c.repairs += 1
        number = c.repairs
        wid = repair_id(self._source, number)
        # Open before anything is awaited: `health` must never show the source idle between
        # a broken run and its repair.
        self._open_repair = wid
        self._show()
        await self._flush()
        if asked is not None:
            trigger = asked.reason + (f" (by {asked.requested_by})" if asked.requested_by else "")
        try:
            report = await workflow.execute_child_workflow(
                DoctorRepair.run,
                DoctorRepairInput(
                    source=self._source,
                    number=number,
                    trigger=trigger,
                    requested_by=asked.requested_by if asked else None,
                    last_good_run_id=c.last_good_run_id,
                    baseline=Baseline.from_runs(c.good_runs, window=policy.baseline_window),
                    search_attributes=self._search_attributes,
                ),
                id=wid,
                static_summary=f"repair {number} of source {self._source}",
            )
        except ChildWorkflowError as err:
            raise_if_cancelled(err)
            report = RepairReport(
                source=self._source,
                number=number,
                outcome="failed",
                reason=f"the repair workflow failed: {err.cause or err}",
            )
        finally:
            self._open_repair = None
        c.last_repair = report
        if report.active_version is not None:
            c.active_version = report.active_version
        now = workflow.now()
        if report.outcome == "not_needed":
            c.run_requested, c.run_trigger = True, "after_repair"
        else:
            self._move(
                *c.health.record_repair(
                    now,
                    report.outcome,
                    max_per_day=policy.max_repairs_per_day,
                    dead_after_days=policy.dead_after_days,
                    transient=report.transient,
                ),
                cycle=c.cycle,
            )
            if report.outcome in ("promoted", "rolled_back"):
                c.run_requested, c.run_trigger = True, "after_repair"
            elif self._quarantined_for_drift():
                # The next attempt: an interval later, and not before the breaker closes.
                c.next_run_at = max(
                    now + timedelta(seconds=self._interval), c.health.breaker_open_until or now
                )
        self._show()

    # --- helpers ---------------------------------------------------------------------------

    def _due(self) -> datetime | None:
        """When the loop next acts on its own (None: only a request wakes it)."""
        c = self._c
        if c.paused or c.health.state == HealthState.DEAD:
            return None
        if c.health.state == HealthState.QUARANTINED and not self._quarantined_for_drift():
            return None
        return c.next_run_at or workflow.now()

    def _quarantined_for_drift(self) -> bool:
        c = self._c
        return (
            c.health.state == HealthState.QUARANTINED
            and c.last_run is not None
            and c.last_run.kind in DRIFT_KINDS
        )

    def _delay(self, assessment: RunAssessment) -> float:
        """Seconds to the next scheduled run: the interval, sooner after transient failures."""
        if not assessment.transient:
            return self._interval
        streak = max(1, self._c.health.consecutive_failures)
        return min(self._interval, self._policy.retry_base_seconds * 2.0 ** min(streak - 1, 20))

    def _busy(self) -> bool:
        c = self._c
        return bool(
            self._running or self._open_repair or c.run_requested or c.fix_request is not None
        )

    def _move(
        self, health: SourceHealth, transition: HealthTransition | None, cycle: int | None = None
    ) -> None:
        """Adopt a new health; a transition is kept, stored and shown."""
        c = self._c
        c.health = health
        if transition is None:
            return
        c.transitions = [*c.transitions, transition][-TRANSITIONS_KEPT:]
        self._outbox.append(
            HealthRecord(
                source=self._source,
                transition=transition,
                cycle=c.cycle if cycle is None else cycle,
            )
        )
        workflow.logger.info(
            "source %s: %s → %s (%s)",
            self._source,
            transition.from_state,
            transition.to_state,
            transition.reason,
        )
        if self._search_attributes:
            workflow.upsert_search_attributes([HEALTH_ATTR.value_set(health.state.value)])
        self._show()

    async def _flush(self) -> None:
        """Store pending health transitions and events, in order."""
        while self._outbox:
            item = self._outbox[0]
            if isinstance(item, HealthRecord):
                await workflow.execute_activity_method(
                    SupervisionActivities.record_health,
                    item,
                    start_to_close_timeout=QUICK_TIMEOUT,
                    retry_policy=STEP_RETRY,
                    summary=f"health {item.transition.to_state.value}",
                )
            else:
                await workflow.execute_activity_method(
                    SupervisionActivities.record_source_event,
                    item,
                    start_to_close_timeout=QUICK_TIMEOUT,
                    retry_policy=STEP_RETRY,
                    summary=item.kind.replace("_", " "),
                )
            self._outbox.pop(0)

    def _note(self, action: str, request: HandRequest | IntervalRequest) -> None:
        detail: dict[str, object] = {"action": action, "requested_by": request.requested_by}
        if isinstance(request, HandRequest):
            detail["reason"] = request.reason
        else:
            detail["interval_seconds"] = request.interval_seconds
        self._outbox.append(
            SourceEventInput(source=self._source, kind="supervisor_changed", detail=detail)
        )
        self._changed = True
        self._show()

    def _refuse_if_dead(self, what: str) -> None:
        health = self._c.health
        if health.state == HealthState.DEAD:
            raise ValueError(
                f"cannot {what} source {self._source!r}: it is DEAD "
                f"({health.last_transition_reason}); `mendline source reset {self._source}` "
                f"revives it"
            )

    def _fix_problem(self, request: FixRequest) -> str | None:
        c = self._c
        if c.health.state == HealthState.DEAD:
            return (
                f"cannot repair source {self._source!r}: it is DEAD "
                f"({c.health.last_transition_reason}); reset it first"
            )
        if self._open_repair:
            return f"a repair of {self._source!r} is already running: {self._open_repair}"
        if c.fix_request is not None:
            return (
                f"a repair of {self._source!r} is already requested: "
                f"{repair_id(self._source, c.repairs + 1)}"
            )
        allowed, why = c.health.can_repair(workflow.now(), self._policy.max_repairs_per_day)
        if not allowed and not request.force:
            return f"{why}; force it with `mendline source fix {self._source} --force`"
        return None

    def _request_run(self) -> RunTicket:
        c = self._c
        c.run_requested, c.run_trigger = True, c.run_trigger or "run_now"
        return RunTicket(cycle=c.cycle + 1, workflow_id=supervisor_id(self._source))

    def _request_fix(self, request: FixRequest) -> RepairTicket:
        self._c.fix_request = request
        number = self._c.repairs + 1
        return RepairTicket(number=number, workflow_id=repair_id(self._source, number))

    def _pause(self, request: HandRequest) -> None:
        self._c.paused, self._c.pause_reason = True, request.reason or "paused by hand"
        self._note("pause", request)

    def _resume(self, request: HandRequest) -> None:
        c = self._c
        was_quarantined = c.health.state == HealthState.QUARANTINED
        c.paused, c.pause_reason = False, ""
        self._move(*c.health.resume(workflow.now(), request.reason or "resumed by hand"))
        if was_quarantined:
            c.run_requested, c.run_trigger = True, c.run_trigger or "resume"
        self._note("resume", request)

    def _reset(self, request: HandRequest) -> None:
        c = self._c
        self._move(*c.health.reset(workflow.now(), request.reason or "reset by hand"))
        # A reset accepts the site as it is now: the baseline is learned again.
        c.good_runs = []
        c.run_requested, c.run_trigger = True, c.run_trigger or "reset"
        self._note("reset", request)

    def _set_interval(self, request: IntervalRequest) -> None:
        c = self._c
        self._interval = request.interval_seconds
        since = c.last_run.at if c.last_run else workflow.now()
        c.next_run_at = since + timedelta(seconds=request.interval_seconds)
        self._note("set_interval", request)

    def _show(self) -> None:
        """The Web UI's "current details": health, breaker, last run, open repair."""
        c = self._c
        allowed, breaker = c.health.can_repair(workflow.now(), self._policy.max_repairs_per_day)
        lines = [
            f"**{c.health.state.value}**" + (" (paused)" if c.paused else ""),
            c.health.last_transition_reason,
            f"last run: {c.last_run.cycle} {c.last_run.verdict}, {c.last_run.records} records"
            if c.last_run
            else "no run yet",
            f"repair running: {self._open_repair}" if self._open_repair else "",
            ("repairs: " if allowed else "") + breaker,
        ]
        workflow.set_current_details("\n\n".join(line for line in lines if line))
