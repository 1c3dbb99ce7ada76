"""``mendline source status|fix|pause|resume|reset|mark-dead|interval|supervise|history``:
the people's side of self-repair.

Every command talks to the source's ``SourceSupervisor`` (workflow ``source/<name>``) through
its ``health`` query and its updates, so a refused request (a second repair while one runs,
resuming a DEAD source) comes back with the workflow's own reason before it touches history.
``history`` reads the source's stored events instead. ``register`` adds the commands to the
``source`` group built in :mod:`workers.cli.sources`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.sources_store import SourceRecord, SourceStore, SourceStoreError
from activities.storage import Database
from models.durations import parse_duration
from models.health import HealthState
from models.sources import SourceStatus
from models.supervisor import (
    FixRequest,
    HandRequest,
    IntervalRequest,
    RepairTicket,
    SupervisorInput,
    SupervisorView,
    supervisor_id,
)
from workers.cli.common import cli_client, console, fail, get_settings, print_json, run_async
from workers.cli.supervisor_client import (
    conclude,
    default_requester,
    follow,
    health,
    running_health,
    update,
)
from workers.cli.supervisor_view import (
    event_summary,
    health_line,
    print_details,
    span,
    stamp,
    status_table,
    supervised_row,
    unsupervised_row,
    without_echoes,
)

NameArg = Annotated[str, typer.Argument(help="Source name.")]
ReasonOpt = Annotated[str, typer.Option(help="Why (recorded in the source's history).")]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Who asks (recorded; default: your login name)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print it machine-readable.")]
TimeoutOpt = Annotated[
    str, typer.Option(help="How long --wait waits (e.g. 90s, 10m) before giving up.")
]


def _store() -> SourceStore:
    return SourceStore(Database(get_settings().resolved_database_url))


def _require(store: SourceStore, name: str) -> SourceRecord:
    try:
        return store.require_source(name)
    except SourceStoreError as exc:
        fail(str(exc))


def _seconds(text: str, option: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        fail(f"{option}: {exc}", 2)
    if seconds <= 0:
        fail(f"{option} must be longer than 0, got {text!r}", 2)
    return seconds


# --- status ------------------------------------------------------------------------------------


def status(
    name: Annotated[
        str | None, typer.Argument(help="One source (default: every live source).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """How each source is doing: health, last run, strikes, repairs, breaker, next run."""
    store = _store()
    records = [_require(store, name)] if name else store.list_sources()
    if not records:
        console.print("no sources yet — add one with `mendline source add NAME URL --wait`")
        return

    async def go() -> list[SupervisorView | str | None]:
        client = await cli_client()
        return list(await asyncio.gather(*(running_health(client, r.name) for r in records)))

    views = run_async(go())
    if as_json:
        print_json([_status_json(r, v) for r, v in zip(records, views, strict=True)])
        return
    now = datetime.now(UTC)
    table = status_table()
    for record, view in zip(records, views, strict=True):
        if isinstance(view, SupervisorView):
            table.add_row(*supervised_row(view, now))
        else:
            last = store.runs(record.name, 1)
            note = "no answer" if isinstance(view, str) else "unsupervised"
            table.add_row(*unsupervised_row(record, last[0] if last else None, now, note))
    console.print(table)
    if not name:
        return
    view = views[0]
    if isinstance(view, SupervisorView):
        print_details(view)
    elif isinstance(view, str):
        console.print(escape(view))
    elif records[0].status != SourceStatus.ONBOARDING:
        console.print(f"not supervised; start it with `mendline source supervise {name}`")


def _status_json(record: SourceRecord, view: SupervisorView | str | None) -> dict[str, Any]:
    if isinstance(view, SupervisorView):
        return {**view.model_dump(mode="json"), "supervised": True}
    return {
        "source": record.name,
        "health": record.status.value,
        "supervised": False,
        "active_version": record.active_version,
        "interval_seconds": record.config.interval_seconds,
        "error": view,
    }


# --- repairs -----------------------------------------------------------------------------------


def fix(
    name: NameArg,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the repair (and the run after it).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Repair even when the day's repair attempts are used up."),
    ] = False,
    reason: ReasonOpt = "fix requested by hand",
    requested_by: AsOpt = None,
    timeout: TimeoutOpt = "10m",
) -> None:
    """Start a repair now (DoctorRepair source/NAME/repair/N); exit 0 iff the source ends ACTIVE."""
    _require(_store(), name)
    timeout_seconds = _seconds(timeout, "--timeout")
    try:
        request = FixRequest(
            reason=reason, requested_by=requested_by or default_requester(), force=force
        )
    except ValidationError as exc:
        fail(f"invalid fix request: {exc}", 2)

    async def go() -> int:
        client = await cli_client()
        start = await health(client, name) if wait else None
        ticket = await update(client, name, "fix", request, RepairTicket)
        console.print(f"repair [bold]{escape(ticket.workflow_id)}[/] requested")
        if start is None:
            console.print(
                f"  follow it: mendline source status {name}\n"
                f"  or: temporal workflow query --workflow-id {ticket.workflow_id} --type state"
            )
            return 0

        def repaired(view: SupervisorView) -> bool:
            # A source marked DEAD before the repair started never gets it.
            ended = view.last_repair is not None and view.last_repair.number >= ticket.number
            return not view.busy and (ended or view.health == HealthState.DEAD)

        final = await follow(
            client,
            name,
            start,
            repaired,
            timeout_seconds,
            f"repair {ticket.number}",
            repair_notes=True,
        )
        return conclude(final)

    raise typer.Exit(run_async(go()))


# --- by hand -----------------------------------------------------------------------------------


def _hand(name: str, update_name: str, reason: str, requested_by: str | None) -> None:
    _require(_store(), name)
    try:
        request = HandRequest(reason=reason, requested_by=requested_by or default_requester())
    except ValidationError as exc:
        fail(f"invalid request: {exc}", 2)

    async def go() -> SupervisorView:
        client = await cli_client()
        return await update(client, name, update_name, request, SupervisorView)

    console.print(health_line(run_async(go())))


def pause(name: NameArg, reason: ReasonOpt = "", requested_by: AsOpt = None) -> None:
    """Stop scheduled runs (run_now and fix still work) until `source resume`."""
    _hand(name, "pause", reason, requested_by)


def resume(name: NameArg, reason: ReasonOpt = "", requested_by: AsOpt = None) -> None:
    """Resume scheduled runs, and lift a quarantine (refused for a DEAD source: reset it)."""
    _hand(name, "resume", reason, requested_by)


def reset(name: NameArg, reason: ReasonOpt = "", requested_by: AsOpt = None) -> None:
    """Back to ACTIVE from any state (DEAD too), strikes and repair breaker cleared."""
    _hand(name, "reset", reason, requested_by)


def mark_dead(
    name: NameArg,
    reason: Annotated[str, typer.Option(help="Why (required; recorded).")],
    requested_by: AsOpt = None,
) -> None:
    """Declare a source DEAD: no more runs nor repairs until `source reset`."""
    if not reason.strip():
        fail("--reason must say why the source is dead", 2)
    _hand(name, "mark_dead", reason, requested_by)


def interval(
    name: NameArg,
    every: Annotated[str, typer.Argument(help="Time between scheduled runs (e.g. 30m, 1h).")],
    requested_by: AsOpt = None,
) -> None:
    """Change how often a supervised source runs."""
    _require(_store(), name)
    try:
        request = IntervalRequest(
            interval_seconds=_seconds(every, "INTERVAL"),
            requested_by=requested_by or default_requester(),
        )
    except ValidationError as exc:
        fail(f"invalid interval {every!r}: {exc.errors()[0]['msg']}", 2)

    async def go() -> SupervisorView:
        client = await cli_client()
        return await update(client, name, "set_interval", request, SupervisorView)

    console.print(health_line(run_async(go())))


# --- supervise ---------------------------------------------------------------------------------


def supervise(name: NameArg) -> None:
    """Start the supervisor (workflow source/NAME) of a source that has an active scraper."""
    record = _require(_store(), name)
    if record.status in (SourceStatus.ONBOARDING, SourceStatus.FAILED):
        what = (
            "is still onboarding (its supervisor starts when onboarding ends)"
            if record.status == SourceStatus.ONBOARDING
            else "failed onboarding; add it again with `mendline source add`"
        )
        fail(f"source {name} {what}")
    if record.active_version is None:
        fail(f"source {name} has no active scraper version to supervise")
    settings = get_settings()
    every = record.config.interval_seconds
    wid = supervisor_id(name)

    async def go() -> None:
        client = await cli_client()
        try:
            await client.start_workflow(
                "SourceSupervisor",
                SupervisorInput(source=name, interval_seconds=every),
                id=wid,
                task_queue=settings.task_queue,
                static_summary=f"supervise source {name}: a run every {span(every)}, repairs on drift",
            )
        except WorkflowAlreadyStartedError:
            console.print(f"{name} is already supervised (workflow {wid})")
            return
        except RPCError as exc:
            fail(f"could not start {wid}: {exc.message}")
        console.print(
            f"supervising [bold]{name}[/] (workflow {wid}): a run now, then every {span(every)}"
        )
        console.print(f"  see it: mendline source status {name}")

    run_async(go())


# --- history -----------------------------------------------------------------------------------


def history(
    name: NameArg,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, help="Latest events shown.")] = 50,
) -> None:
    """The source's versions and its timeline: promotions, rollbacks, repairs, health changes."""
    store = _store()
    if store.get_source(name) is None:
        _require(store, name)  # exits with the store's message (and close names)
    versions = store.list_versions(name)
    events = store.events(name)[-limit:]
    if as_json:
        print_json(
            {
                "versions": [
                    {
                        "version": v.version,
                        "author": v.author,
                        "created_at": v.created_at,
                        "active": v.active,
                        "sha256": v.sha256,
                    }
                    for v in versions
                ],
                "events": [e.model_dump(mode="json") for e in events],
            }
        )
        return
    table = Table("VERSION", "AUTHOR", "CREATED", "ACTIVE", box=None, pad_edge=False)
    for v in versions:
        created = stamp(v.created_at) if v.created_at else "-"
        table.add_row(f"v{v.version}", v.author, created, "*" if v.active else "")
    console.print(table)
    console.print()
    timeline = Table("TIME", "EVENT", "SUMMARY", box=None, pad_edge=False)
    for event in without_echoes(events):
        timeline.add_row(stamp(event.at), event.kind, escape(event_summary(event)))
    console.print(timeline)
    if not events:
        console.print("no events yet")


# --- wiring ------------------------------------------------------------------------------------


def register(source_app: typer.Typer) -> None:
    """Add the supervision commands to the ``source`` command group."""
    source_app.command("status")(status)
    source_app.command("fix")(fix)
    source_app.command("pause")(pause)
    source_app.command("resume")(resume)
    source_app.command("reset")(reset)
    source_app.command("mark-dead")(mark_dead)
    source_app.command("interval")(interval)
    source_app.command("supervise")(supervise)
    source_app.command("history")(history)
