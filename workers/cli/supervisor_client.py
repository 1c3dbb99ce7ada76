"""Talking to a source's ``SourceSupervisor`` from the CLI: its ``health`` query, its updates,
and following a run or a repair to its end (how things are shown lives in
:mod:`workers.cli.supervisor_view`).

Shared by ``workers.cli.supervision`` (the ``source status/fix/pause/…`` commands) and
``workers.cli.sources`` (``source run`` and ``source remove``); it imports neither, so the two
command modules do not import each other in a circle.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.markup import escape
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models.approvals import ApprovalStatus
from models.breakage import DRIFT_KINDS
from models.health import HealthState
from models.supervisor import (
    RepairState,
    RepairStep,
    RunNowRequest,
    RunTicket,
    SupervisorView,
    supervisor_id,
)
from workers.cli.common import console, fail
from workers.cli.supervisor_view import print_repair, print_run, print_transition, span, styled

T = TypeVar("T", bound=BaseModel)

POLL_SECONDS = 0.3
"""How often ``--wait`` asks the supervisor how things stand."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""A query nobody answers in this time means no worker polls the task queue."""
QUERY_RETRIES = 5
"""Failed queries in a row ``--wait`` tolerates (a worker restart, a continue-as-new)."""


def not_supervised(name: str) -> str:
    """The message for a source without a running supervisor."""
    return f"source {name} is not supervised; start it with `mendline source supervise {name}`"


def default_requester() -> str | None:
    """Who is asking, for the supervisor's history: the login name, when there is one."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return None


def cause_message(exc: BaseException) -> str:
    """The message of the application error behind a refused update or failed workflow."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ApplicationError):
            return current.message
        current = getattr(current, "cause", None)
    return str(exc)


# --- queries and updates -----------------------------------------------------------------------


def supervisor(client: Client, name: str) -> WorkflowHandle[Any, Any]:
    """The handle of a source's supervisor (its latest run, across continue-as-new)."""
    return client.get_workflow_handle(supervisor_id(name))


async def health(client: Client, name: str) -> SupervisorView:
    """The supervisor's ``health`` query, or exit with why it cannot be asked."""
    handle = supervisor(client, name)
    try:
        view: SupervisorView = await handle.query(
            "health", result_type=SupervisorView, rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            fail(not_supervised(name))
        fail(
            f"the supervisor {handle.id} did not answer: {exc.message} "
            f"(is a worker running? start one with `mendline worker`)"
        )
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        fail(f"the supervisor {handle.id} refused the health query: {exc}")
    return view


async def running_health(client: Client, name: str) -> SupervisorView | str | None:
    """The health of a source whose supervisor runs; None when it has none running, or the
    reason it did not answer (for tables that must not stop at one silent source)."""
    handle = supervisor(client, name)
    try:
        described = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
        if described.status != WorkflowExecutionStatus.RUNNING:
            return None
        view: SupervisorView = await handle.query(
            "health", result_type=SupervisorView, rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        return f"no answer from {handle.id}: {exc.message}"
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        return f"{handle.id} refused the health query: {exc}"
    return view


async def try_update(
    client: Client, name: str, update: str, request: BaseModel, result_type: type[T]
) -> T | None:
    """Execute one of the supervisor's updates; None when no supervisor runs.

    Exits with the workflow's own reason when its validator refuses the update.
    """
    handle = supervisor(client, name)
    try:
        result: T = await handle.execute_update(update, request, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        fail(f"{update.replace('_', ' ')} refused for {name}: {cause_message(exc)}")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        fail(f"cannot reach the supervisor {handle.id}: {exc.message}")
    return result


async def update(
    client: Client, name: str, update_name: str, request: BaseModel, result_type: type[T]
) -> T:
    """Like :func:`try_update`, but a missing supervisor is an error."""
    result = await try_update(client, name, update_name, request, result_type)
    if result is None:
        fail(not_supervised(name))
    return result


async def cancel_supervisor(client: Client, name: str) -> bool:
    """Ask a source's supervisor to stop; False when none was running."""
    handle = supervisor(client, name)
    try:
        await handle.cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        fail(f"cannot stop the supervisor {handle.id}: {exc.message}; the source was not removed")
    return True


# --- following a run or a repair ---------------------------------------------------------------


@dataclass
class Follower:
    """Prints what changed between two ``health`` answers (and the open repair's step)."""

    client: Client
    name: str
    cycle: int = 0
    seen: set[tuple[datetime, str, str]] = field(default_factory=set)
    running: bool = False
    open_repair: str | None = None
    repair_step: RepairStep | None = None
    repairs_done: int = 0
    repair_notes: bool = False
    approvals_shown: set[str] = field(default_factory=set)

    @classmethod
    def starting_at(
        cls, client: Client, name: str, view: SupervisorView, *, repair_notes: bool = False
    ) -> Follower:
        """A follower that reports only what happens after ``view`` (with what each repair
        tried when ``repair_notes``)."""
        return cls(
            client,
            name,
            repair_notes=repair_notes,
            cycle=view.last_run.cycle if view.last_run else 0,
            seen={(t.at, t.to_state.value, t.reason) for t in view.transitions},
            running=view.running,
            open_repair=view.open_repair,
            repairs_done=view.last_repair.number if view.last_repair else 0,
        )

    async def observe(self, view: SupervisorView) -> None:
        """Print the news in ``view``: what ended, in the order it ended, then what runs now."""
        ended: list[tuple[datetime, int, Callable[[], None]]] = []
        run = view.last_run
        if run and run.cycle > self.cycle:
            self.cycle = run.cycle
            ended.append((run.at, 0, lambda: print_run(run)))
        report = view.last_repair
        if report and report.number > self.repairs_done:
            self.repairs_done = report.number
            at = report.ended_at or datetime.now(UTC)
            ended.append((at, 1, lambda: print_repair(report, notes=self.repair_notes)))
        for t in view.transitions:
            key = (t.at, t.to_state.value, t.reason)
            if key not in self.seen:
                self.seen.add(key)
                ended.append((t.at, 2, partial(print_transition, t)))
        for _, _, show in sorted(ended, key=lambda item: item[:2]):
            show()
        if view.running and not self.running:
            console.print(f"{self.name}: scraping (run {view.cycle})")
        self.running = view.running
        if view.open_repair and view.open_repair != self.open_repair:
            console.print(f"repair [bold]{escape(view.open_repair)}[/] started")
            self.repair_step = None
        self.open_repair = view.open_repair
        if view.open_repair:
            await self._repair_progress(view.open_repair)

    async def _repair_progress(self, workflow_id: str) -> None:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            state: RepairState = await handle.query(
                "state", result_type=RepairState, rpc_timeout=QUERY_TIMEOUT
            )
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            return  # not started yet, or already over: the supervisor's view says the rest
        if state.step == self.repair_step:
            return
        self.repair_step = state.step
        if state.step not in (RepairStep.STARTED, RepairStep.DONE):
            console.print(f"  repair {state.number}: {state.step.value.lower().replace('_', ' ')}")
        if state.step == RepairStep.AWAITING_APPROVAL and workflow_id not in self.approvals_shown:
            self.approvals_shown.add(workflow_id)
            await self._approval_hint(handle)

    async def _approval_hint(self, handle: WorkflowHandle[Any, Any]) -> None:
        try:
            status: ApprovalStatus = await handle.query(
                "approval", result_type=ApprovalStatus, rpc_timeout=QUERY_TIMEOUT
            )
            request = status.pending.request_id if status.pending else None
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            request = None
        if request is None:
            console.print("  it waits for a person: see `mendline approvals list`")
            return
        console.print(
            f"  it waits for a person; still waiting (until --timeout). Decide with:\n"
            f"    mendline approvals show '{escape(request)}'\n"
            f"    mendline approvals approve '{escape(request)}' --as YOU --reason '…'\n"
            f"    mendline approvals reject '{escape(request)}' --as YOU --reason '…'"
        )


async def follow(
    client: Client,
    name: str,
    start: SupervisorView,
    done: Callable[[SupervisorView], bool],
    timeout_seconds: float,
    waiting_for: str,
    *,
    repair_notes: bool = False,
) -> SupervisorView:
    """Poll ``health`` until ``done`` says so, printing progress; exit on timeout."""
    follower = Follower.starting_at(client, name, start, repair_notes=repair_notes)
    handle = supervisor(client, name)
    deadline = time.monotonic() + timeout_seconds
    failures = 0
    while True:
        try:
            view: SupervisorView = await handle.query(
                "health", result_type=SupervisorView, rpc_timeout=QUERY_TIMEOUT
            )
            failures = 0
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                fail(f"the supervisor {handle.id} stopped while waiting for {waiting_for}")
            failures += 1
            if failures > QUERY_RETRIES:
                fail(f"the supervisor {handle.id} stopped answering: {exc.message}")
            await asyncio.sleep(POLL_SECONDS)
            continue
        await follower.observe(view)
        if done(view):
            return view
        if time.monotonic() >= deadline:
            fail(
                f"timed out after {span(timeout_seconds)} waiting for {waiting_for}; it goes on "
                f"in the background: `mendline source status {name}`"
            )
        await asyncio.sleep(POLL_SECONDS)


def repair_imminent(view: SupervisorView) -> bool:
    """The last run showed drift, the breaker allows a repair, and none has started yet.

    Between judging a run and starting its repair the supervisor stores the health change
    (an activity), and meanwhile its ``busy`` is false; a ``--wait`` must not end there.
    """
    run = view.last_run
    if run is None or view.busy or view.health == HealthState.DEAD or not view.breaker.allowed:
        return False
    if run.verdict != "broken" or run.kind not in DRIFT_KINDS:
        return False
    if view.last_repair is None:
        return True
    ended = view.last_repair.ended_at
    return ended is not None and ended < run.at


def run_done(ticket: RunTicket) -> Callable[[SupervisorView], bool]:
    """The run of ``ticket`` is over, and so is any repair it started.

    A supervisor that is idle without having made the run has stopped (its source was
    removed meanwhile); :func:`run_supervised` says so.
    """
    return lambda v: not v.busy and not repair_imminent(v)


async def run_supervised(
    client: Client, name: str, request: RunNowRequest, wait: bool, timeout_seconds: float
) -> int | None:
    """``source run`` through the supervisor: the exit code, or None when it has none."""
    start: SupervisorView | None = None
    if wait:
        found = await running_health(client, name)
        if found is None:
            return None
        if isinstance(found, str):
            fail(found)
        start = found
    ticket = await try_update(client, name, "run_now", request, RunTicket)
    if ticket is None:
        return None
    console.print(f"run {ticket.cycle} of [bold]{name}[/] requested ({escape(ticket.workflow_id)})")
    if start is None:
        console.print(f"  follow it: mendline source status {name}")
        return 0
    final = await follow(
        client, name, start, run_done(ticket), timeout_seconds, f"run {ticket.cycle}"
    )
    if final.last_run is None or final.last_run.cycle < ticket.cycle:
        fail(
            f"run {ticket.cycle} of {name} did not happen: {final.reason or 'the supervisor stopped'}"
        )
    return conclude(final)


def conclude(view: SupervisorView) -> int:
    """Print the final health; 0 when the source is ACTIVE, else exit 1 with the reason."""
    if view.health == HealthState.ACTIVE:
        version = f"v{view.active_version}" if view.active_version is not None else "no version"
        console.print(f"{view.source} is {styled(view.health)} ({version})")
        return 0
    fail(f"{view.source} is {view.health.value}: {view.reason or 'no reason recorded'}")
