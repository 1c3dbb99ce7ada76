"""Source health: what one scrape run says about a source, and the state it leaves it in.

Two pure building blocks of the ``SourceSupervisor`` workflow, deterministic so they can
run inside workflow code (no I/O, no clock: every timestamp is passed in):

* :func:`assess_run` classifies one run — a hard failure (:class:`RunFailure`) or the
  :class:`~models.sources.ScrapeStats` of a run that "succeeded" — against a
  :class:`Baseline` learned from the last good runs, and says whether the source is fine,
  suspicious, broken by site drift (a repair may help) or transiently unreachable.
* :class:`SourceHealth` is the per-source state machine and repair circuit breaker::

      ACTIVE ──bad run──▶ DEGRADED ──max_strikes / day-long outage──▶ QUARANTINED
         ▲                   │                                            │
         └────good run───────┴──────────good run, promoted repair─────────┘
      any ──repairs exhausted N days in a row, or mark_dead()──▶ DEAD ──reset()──▶ ACTIVE

Transient failures (network, DNS, timeouts, 5xx, 429) count as strikes but never as repair
attempts, and on their own they quarantine a source only once it has been unreachable for
a whole outage window (a day by default), never kill it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from pydantic import BaseModel

from models.breakage import (
    DRIFT_KINDS,
    FILL_COLLAPSED,
    FILL_ESTABLISHED,
    FILL_PRESENT,
    MAD_TO_SIGMA,
    MESSAGE_CHARS,
    TRANSIENT_KINDS,
    Baseline,
    BreakageKind,
    RepairOutcome,
    RunAssessment,
    RunFailure,
    Verdict,
    assess_run,
    classify_failure,
)

# The run-assessment names are re-exported: ``models.health`` is the one import for both.
__all__ = [
    "DRIFT_KINDS",
    "FILL_COLLAPSED",
    "FILL_ESTABLISHED",
    "FILL_PRESENT",
    "MAD_TO_SIGMA",
    "MESSAGE_CHARS",
    "TRANSIENT_KINDS",
    "Baseline",
    "BreakageKind",
    "HealthError",
    "HealthState",
    "HealthTransition",
    "RepairOutcome",
    "RunAssessment",
    "RunFailure",
    "SourceHealth",
    "Verdict",
    "assess_run",
    "classify_failure",
]

# --- health state machine -------------------------------------------------------------------


class HealthState(StrEnum):
    """How a supervised source is doing."""

    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    QUARANTINED = "QUARANTINED"
    DEAD = "DEAD"


class HealthTransition(BaseModel):
    """One change of a source's health state, to be stored and shown."""

    from_state: HealthState
    to_state: HealthState
    at: datetime
    reason: str


class HealthError(ValueError):
    """A health operation was refused (e.g. resuming a dead source); the message says why."""


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(
            f"health timestamps must be timezone-aware (use workflow.now()), got naive {at}"
        )
    return at.astimezone(UTC)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return "".join(parts) or "0m"


class SourceHealth(BaseModel):
    """The health of one supervised source; compact, as it is carried through continue-as-new.

    Methods never mutate: each returns the new health and the transition it made, if any.

    Attributes:
        state: The current state.
        strikes: Bad runs (of any kind) since the last good run, repair or reset.
        consecutive_failures: Transient failures in a row (the current outage).
        failing_since: When the current outage's first failure happened.
        last_reached_at: The last run that reached the site (anything but transient).
        last_transition_reason: Why the state last changed.
        repair_day: The UTC day ``repairs_today`` counts.
        repairs_today: Repair attempts on ``repair_day``.
        breaker_open_until: No repair before this instant (the next UTC midnight).
        exhausted_days: Consecutive UTC days whose repair attempts were all used up in vain.
        last_exhausted_day: The last of those days.
    """

    state: HealthState = HealthState.ACTIVE
    strikes: int = 0
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    last_reached_at: datetime | None = None
    last_transition_reason: str = ""
    repair_day: date | None = None
    repairs_today: int = 0
    breaker_open_until: datetime | None = None
    exhausted_days: int = 0
    last_exhausted_day: date | None = None

    def _move(
        self, to: HealthState, at: datetime, reason: str, **changes: object
    ) -> tuple[SourceHealth, HealthTransition]:
        moved = self.model_copy(update={**changes, "state": to, "last_transition_reason": reason})
        return moved, HealthTransition(from_state=self.state, to_state=to, at=at, reason=reason)

    def apply(
        self,
        assessment: RunAssessment,
        *,
        at: datetime,
        max_strikes: int = 3,
        outage_window: timedelta = timedelta(days=1),
    ) -> tuple[SourceHealth, HealthTransition | None]:
        """Account for one run.

        A good run brings a DEGRADED or QUARANTINED source back to ACTIVE. A bad run
        degrades an ACTIVE source and is a strike; ``max_strikes`` strikes quarantine it
        once the latest one reached the site (while the site is unreachable we cannot tell
        whether the scraper still works), and a streak of transient failures alone
        quarantines it once the site has been unreachable for ``outage_window``. Runs never
        kill a source and never touch the repair counters. A DEAD source ignores runs.

        Args:
            assessment: The run's assessment (:func:`assess_run`).
            at: When the run ended (timezone-aware).
            max_strikes: Strikes that quarantine a source.
            outage_window: How long transient failures alone may last before quarantine.
        """
        at = _utc(at)
        if self.state == HealthState.DEAD:
            return self, None
        if assessment.verdict == "ok":
            # A good run ends the streak of exhausted days: DEAD needs days in a row of
            # failing repairs with no recovery between them.
            cleared: dict[str, object] = {
                "strikes": 0,
                "consecutive_failures": 0,
                "failing_since": None,
                "last_reached_at": at,
                "exhausted_days": 0,
                "last_exhausted_day": None,
            }
            if self.state == HealthState.ACTIVE:
                return self.model_copy(update=cleared), None
            return self._move(
                HealthState.ACTIVE, at, "a good run: " + _good_run_note(self), **cleared
            )
        strikes = self.strikes + 1
        if assessment.transient:
            since = self.failing_since or at
            changes: dict[str, object] = {
                "strikes": strikes,
                "consecutive_failures": self.consecutive_failures + 1,
                "failing_since": since,
            }
        else:
            since = at
            changes = {
                "strikes": strikes,
                "consecutive_failures": 0,
                "failing_since": None,
                "last_reached_at": at,
            }
        if self.state == HealthState.QUARANTINED:
            return self.model_copy(update=changes), None
        down_from = self.last_reached_at or since
        if not assessment.transient and strikes >= max_strikes:
            reason = (
                f"{strikes} bad runs in a row (limit {max_strikes}); latest: "
                f"{assessment.kind.value}: {assessment.summary}"
            )
            return self._move(HealthState.QUARANTINED, at, reason, **changes)
        if assessment.transient and at - down_from >= outage_window:
            reached = _stamp(self.last_reached_at) if self.last_reached_at else "never"
            reason = (
                f"outage: the site has been unreachable for {_span(at - down_from)} "
                f"({self.consecutive_failures + 1} transient failures in a row since "
                f"{_stamp(since)}, last reached {reached}); "
                f"latest: {assessment.summary}. No repair is attempted for an outage; a good run "
                f"or a reset makes the source ACTIVE again"
            )
            return self._move(HealthState.QUARANTINED, at, reason, **changes)
        if self.state == HealthState.ACTIVE:
            return self._move(
                HealthState.DEGRADED,
                at,
                f"{assessment.verdict} run ({assessment.kind.value}): {assessment.summary}",
                **changes,
            )
        return self.model_copy(update=changes), None

    # --- repairs ----------------------------------------------------------------------------

    def _today_count(self, day: date) -> int:
        return self.repairs_today if self.repair_day == day else 0

    def can_repair(self, at: datetime, max_per_day: int = 3) -> tuple[bool, str]:
        """Whether a repair attempt may start now (the circuit breaker).

        At most ``max_per_day`` attempts per UTC day; a DEAD source is never repaired.

        Returns:
            ``(allowed, reason)``; the reason says why not, or how many attempts are left.
        """
        at = _utc(at)
        if self.state == HealthState.DEAD:
            return False, f"the source is DEAD ({self.last_transition_reason}); reset it first"
        used = self._today_count(at.date())
        if (self.breaker_open_until and at < self.breaker_open_until) or used >= max_per_day:
            until = self.breaker_open_until or datetime.combine(
                at.date() + timedelta(days=1), time(), tzinfo=UTC
            )
            return False, (
                f"repair circuit breaker open: {used} of {max_per_day} repair attempts used on "
                f"{at.date().isoformat()} (UTC); next attempt allowed from {_stamp(until)}"
            )
        return (
            True,
            f"{used} of {max_per_day} repair attempts used on {at.date().isoformat()} (UTC)",
        )

    def record_repair(
        self,
        at: datetime,
        outcome: RepairOutcome,
        *,
        max_per_day: int = 3,
        dead_after_days: int = 3,
        transient: bool = False,
    ) -> tuple[SourceHealth, HealthTransition | None]:
        """Account for a finished repair attempt.

        A ``promoted`` repair makes the source ACTIVE with strikes cleared. Using up the
        day's ``max_per_day`` attempts in vain opens the breaker until the next UTC
        midnight; doing so on ``dead_after_days`` consecutive UTC days makes the source DEAD.

        Args:
            at: When the attempt ended (timezone-aware).
            outcome: ``promoted``, ``rolled_back`` or ``failed``.
            max_per_day: Attempts allowed per UTC day.
            dead_after_days: Consecutive exhausted days that kill the source.
            transient: The attempt ended because the site was unreachable; it is not
                counted (transient failures never burn repair attempts).
        """
        at = _utc(at)
        if transient and outcome != "promoted":
            return self, None
        day = at.date()
        used = self._today_count(day) + 1
        changes: dict[str, object] = {"repair_day": day, "repairs_today": used}
        if outcome == "promoted":
            changes.update(
                strikes=0,
                consecutive_failures=0,
                failing_since=None,
                exhausted_days=0,
                last_exhausted_day=None,
                breaker_open_until=None,
            )
            if self.state in (HealthState.ACTIVE, HealthState.DEAD):
                return self.model_copy(update=changes), None
            return self._move(
                HealthState.ACTIVE,
                at,
                f"repair promoted (attempt {used} on {day.isoformat()})",
                **changes,
            )
        if used < max_per_day:
            return self.model_copy(update=changes), None
        changes["breaker_open_until"] = datetime.combine(
            day + timedelta(days=1), time(), tzinfo=UTC
        )
        if self.last_exhausted_day == day:
            streak = self.exhausted_days
        elif self.last_exhausted_day == day - timedelta(days=1):
            streak = self.exhausted_days + 1
        else:
            streak = 1
        changes.update(exhausted_days=streak, last_exhausted_day=day)
        if streak >= dead_after_days and self.state != HealthState.DEAD:
            first = day - timedelta(days=streak - 1)
            reason = (
                f"repairs exhausted on {streak} consecutive UTC days ({first.isoformat()} to "
                f"{day.isoformat()}, {max_per_day} attempts a day, last {outcome}); fix the "
                f"scraper by hand, then reset the source"
            )
            return self._move(HealthState.DEAD, at, reason, **changes)
        return self.model_copy(update=changes), None

    # --- by hand ----------------------------------------------------------------------------

    def mark_dead(
        self, reason: str, *, at: datetime
    ) -> tuple[SourceHealth, HealthTransition | None]:
        """Declare the source dead by hand (no more runs nor repairs until :meth:`reset`)."""
        at = _utc(at)
        if self.state == HealthState.DEAD:
            return self, None
        return self._move(HealthState.DEAD, at, f"marked dead by hand: {reason}")

    def reset(
        self, at: datetime, reason: str = "reset by hand"
    ) -> tuple[SourceHealth, HealthTransition | None]:
        """Back to ACTIVE from any state, every counter cleared (the breaker too)."""
        at = _utc(at)
        fresh = SourceHealth(last_reached_at=self.last_reached_at, last_transition_reason=reason)
        if self.state == HealthState.ACTIVE:
            return fresh, None
        return fresh, HealthTransition(
            from_state=self.state, to_state=HealthState.ACTIVE, at=at, reason=reason
        )

    def can_resume(self) -> tuple[bool, str]:
        """Whether :meth:`resume` would be accepted, and why not (for update validators)."""
        if self.state == HealthState.DEAD:
            return False, (
                f"cannot resume a DEAD source ({self.last_transition_reason}); fix the scraper "
                f"and reset it instead"
            )
        return True, f"the source is {self.state.value}"

    def resume(
        self, at: datetime, reason: str = "resumed by hand"
    ) -> tuple[SourceHealth, HealthTransition | None]:
        """Lift a quarantine: ACTIVE with strikes cleared, the repair breaker kept.

        Raises:
            HealthError: The source is DEAD (only :meth:`reset` revives it).
        """
        at = _utc(at)
        allowed, why = self.can_resume()
        if not allowed:
            raise HealthError(why)
        if self.state != HealthState.QUARANTINED:
            return self, None
        return self._move(
            HealthState.ACTIVE,
            at,
            reason,
            strikes=0,
            consecutive_failures=0,
            failing_since=None,
        )


def _good_run_note(health: SourceHealth) -> str:
    if health.consecutive_failures:
        return f"the site answers again after {health.consecutive_failures} transient failures"
    return f"healthy again after {health.strikes} bad runs"
