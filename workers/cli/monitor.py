"""``mendline monitor``: the Temporal Schedule that runs the ``Monitor`` workflow."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

import typer
from rich.markup import escape
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from models.durations import parse_duration
from models.monitor import MONITOR_SCHEDULE_ID, MonitorInput, MonitorReport
from workers.cli.common import cli_client, console, fail, get_settings, print_json, run_async

monitor_app = typer.Typer(
    help="Anomaly monitoring: a Temporal Schedule runs the Monitor workflow "
    f"(schedule id {MONITOR_SCHEDULE_ID}).",
    no_args_is_help=True,
)


def _input(lookback: str, bucket: str, rules: str | None) -> MonitorInput:
    try:
        return MonitorInput(
            lookback_seconds=parse_duration(lookback),
            bucket_seconds=parse_duration(bucket),
            rules_path=rules,
        )
    except ValueError as exc:
        fail(f"invalid monitor settings: {exc}", 2)


LookbackOpt = Annotated[str, typer.Option(help="History the detectors learn from (e.g. 24h).")]
BucketOpt = Annotated[str, typer.Option(help="Bucket of error-rate and retry series (e.g. 5m).")]
RulesOpt = Annotated[
    str | None,
    typer.Option(help="Alert rules file as the worker sees it (default: MENDLINE_ALERT_RULES)."),
]


@monitor_app.command("enable")
def enable(
    every: Annotated[str, typer.Option(help="How often the Monitor scans (e.g. 5m).")] = "5m",
    lookback: LookbackOpt = "24h",
    bucket: BucketOpt = "5m",
    rules: RulesOpt = None,
) -> None:
    """Create (or update) the Schedule that runs the Monitor every so often."""
    settings = get_settings()
    try:
        interval = timedelta(seconds=parse_duration(every))
    except ValueError as exc:
        fail(f"--every: {exc}", 2)
    request = _input(lookback, bucket, rules)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            "Monitor",
            request,
            id="monitor/scheduled",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        # A scan that is still running when the next one is due: skip the next one.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=f"mendline monitor enable --every {every}"),
    )

    async def go() -> str:
        client = await cli_client()
        try:
            await client.create_schedule(MONITOR_SCHEDULE_ID, schedule)
            return "created"
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await client.get_schedule_handle(MONITOR_SCHEDULE_ID).update(replace)
            return "updated"

    what = run_async(go())
    console.print(
        f"{what} schedule [bold]{MONITOR_SCHEDULE_ID}[/]: Monitor every {every} "
        f"(lookback {lookback}, buckets {bucket})"
    )
    console.print(
        "  see it: Web UI → Schedules, or `temporal schedule describe --schedule-id "
        f"{MONITOR_SCHEDULE_ID}`; incidents: `mendline incidents list`"
    )


@monitor_app.command("disable")
def disable() -> None:
    """Delete the Monitor's Schedule (incidents and alerts stay stored)."""

    async def go() -> bool:
        client = await cli_client()
        try:
            await client.get_schedule_handle(MONITOR_SCHEDULE_ID).delete()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    if run_async(go()):
        console.print(f"deleted schedule {MONITOR_SCHEDULE_ID}")
    else:
        console.print("monitoring was not enabled (no schedule); nothing to do")


@monitor_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The Schedule: interval, paused or not, next scans and recent ones."""

    async def go() -> dict[str, object] | None:
        client = await cli_client()
        try:
            desc = await client.get_schedule_handle(MONITOR_SCHEDULE_ID).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        spec = desc.schedule.spec
        return {
            "schedule_id": MONITOR_SCHEDULE_ID,
            "every_seconds": [i.every.total_seconds() for i in spec.intervals],
            "paused": desc.schedule.state.paused,
            "next": [t.isoformat() for t in desc.info.next_action_times[:3]],
            "recent": [
                {
                    "scheduled_at": a.scheduled_at.isoformat(),
                    "started_at": a.started_at.isoformat(),
                    "workflow_id": getattr(a.action, "workflow_id", ""),
                }
                for a in desc.info.recent_actions[-5:]
            ],
            "runs": desc.info.num_actions,
        }

    info = run_async(go())
    if as_json:
        print_json(info)
        return
    if info is None:
        console.print("monitoring is not enabled: `mendline monitor enable --every 5m`")
        raise typer.Exit(1)
    console.print(
        f"schedule {MONITOR_SCHEDULE_ID}: every {info['every_seconds']} s"
        + (" (paused)" if info["paused"] else "")
        + f", {info['runs']} scans so far"
    )
    console.print(f"  next: {', '.join(info['next'])}")  # type: ignore[arg-type]
    for action in info["recent"]:  # type: ignore[attr-defined]
        console.print(f"  ran {action['started_at']}: {action['workflow_id']}")


@monitor_app.command("run")
def run_once(
    lookback: LookbackOpt = "24h",
    bucket: BucketOpt = "5m",
    rules: RulesOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Scan now (one Monitor workflow) and print what it found and whom it told."""
    settings = get_settings()
    request = _input(lookback, bucket, rules)
    wid = f"monitor/manual-{time.strftime('%Y%m%dT%H%M%S')}"

    async def go() -> MonitorReport:
        client = await cli_client()
        report: MonitorReport = await client.execute_workflow(
            "Monitor",
            request,
            id=wid,
            task_queue=settings.task_queue,
            result_type=MonitorReport,
            static_summary="monitor scan (by hand)",
        )
        return report

    report = run_async(go())
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    console.print(
        f"{wid}: {report.series} series ({report.points} points), {report.rules} rules; "
        f"incidents opened {len(report.opened)}, ongoing {len(report.updated)}, "
        f"resolved {len(report.resolved)}"
    )
    for fp in report.opened:
        console.print(f"  [red]opened[/] {escape(fp)}")
    for fp in report.resolved:
        console.print(f"  [green]resolved[/] {escape(fp)}")
    for delivery in report.deliveries:
        mark = "[green]sent[/]" if delivery.ok else f"[red]failed[/]: {escape(delivery.error)}"
        console.print(f"  alert → {delivery.notifier}: {mark}")
    for wid in report.remediations:
        console.print(
            f"  remediation started: {wid} (temporal workflow query --workflow-id {wid} --type decision)"
        )
    if report.opened:
        console.print("  details: mendline incidents list --open")
