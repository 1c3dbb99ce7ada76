"""``mendline run``, ``validate``, ``state``, ``cancel``, ``runs …`` and ``telemetry …``."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.storage import Database
from activities.tasks import default_registry
from models.db import PipelineRunRow, TaskAttemptRow
from models.pipeline import PipelineSpec, PipelineSpecError, load_pipeline_text
from models.runs import CancelRunRequest, CancelRunResult, PipelineRunInput, PipelineRunState
from workers.cli.common import (
    cli_client,
    console,
    fail,
    get_settings,
    parse_param,
    print_json,
    run_async,
)
from workers.client import TemporalUnavailableError, connect

STATUS_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "UPSTREAM_FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "dim",
}

runs_app = typer.Typer(
    help="Inspect past pipeline runs (from Mendline's database).", no_args_is_help=True
)
telemetry_app = typer.Typer(help="Export per-task-attempt telemetry.", no_args_is_help=True)


def load_spec_file(path: Path) -> PipelineSpec:
    """Read and validate a pipeline file, exiting with every located problem on error."""
    if not path.is_file():
        fail(f"pipeline file {path} not found", 2)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read pipeline file {path}: {exc}", 2)
    try:
        return load_pipeline_text(text, source=str(path), known_types=default_registry().names())
    except PipelineSpecError as exc:
        fail(str(exc), 2)


def validate(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline file (YAML or JSON).")],
) -> None:
    """Check a pipeline file without running it: schema, graph, templates, task types."""
    spec = load_spec_file(pipeline)
    console.print(
        f"[green]ok[/] {escape(str(pipeline))}: pipeline {escape(repr(spec.name))} v{spec.version}, {len(spec.tasks)} tasks, "
        f"params {escape(str(sorted(spec.params)))}"
    )


def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline file (YAML or JSON).")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="key=value (repeatable); values parse as JSON when they can."
        ),
    ] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="Workflow id (default pipeline/<name>/<random>).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run to end and print its tasks.")
    ] = False,
    max_parallel: Annotated[
        int | None, typer.Option(help="Bound on concurrently running tasks.")
    ] = None,
    by_ref: Annotated[
        bool,
        typer.Option(
            "--by-ref", help="Send the file path for the worker to read instead of the spec inline."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    remediation: Annotated[
        str | None,
        typer.Option(
            help="A task that fails for good starts a Remediation: on, off, or dry-run (it says "
            "what it would do). Default: the worker's MENDLINE_REMEDIATION."
        ),
    ] = None,
) -> None:
    """Start a pipeline run as a PipelineRun workflow.

    The file is validated here first, so mistakes are reported with file and line before
    anything starts. With --wait the exit code is 0 only when the run SUCCEEDED.
    """
    if remediation not in (None, "on", "off", "dry-run"):
        fail(f"--remediation must be on, off or dry-run, got {remediation!r}", 2)
    spec = load_spec_file(pipeline)
    params = dict(parse_param(p) for p in param or [])
    try:
        spec.resolve_params(params)
    except PipelineSpecError as exc:
        fail(str(exc), 2)
    settings = get_settings()
    run_input = PipelineRunInput(
        pipeline_ref=str(pipeline.resolve()) if by_ref else None,
        pipeline=None if by_ref else json.loads(pipeline_json(spec)),
        params=params,
        max_parallel=max_parallel,
        remediation=remediation,
    )
    wid = workflow_id or f"pipeline/{spec.name}/{uuid.uuid4().hex[:8]}"
    code = run_async(_start(settings.task_queue, wid, run_input, wait, as_json, spec.name))
    raise typer.Exit(code)


def pipeline_json(spec: PipelineSpec) -> str:
    return spec.model_dump_json(exclude_defaults=True)


async def _start(
    task_queue: str, wid: str, run_input: PipelineRunInput, wait: bool, as_json: bool, name: str
) -> int:
    settings = get_settings()
    try:
        client = await connect(settings, sdk_metrics=False)
    except TemporalUnavailableError as exc:
        fail(str(exc))
    try:
        handle = await client.start_workflow(
            "PipelineRun",
            run_input,
            id=wid,
            task_queue=task_queue,
            result_type=PipelineRunState,
            static_summary=f"pipeline {name}",
        )
    except RPCError as exc:
        fail(f"could not start workflow {wid}: {exc.message}")
    if not wait:
        if as_json:
            print_json({"workflow_id": wid, "run_id": handle.result_run_id})
        else:
            console.print(f"started [bold]{wid}[/]")
            console.print(
                f"  state:  mendline state {wid}   (or: temporal workflow query --workflow-id {wid} --type state)"
            )
            console.print(
                f"  web UI: http://localhost:{settings.ui_port}/namespaces/{settings.temporal_namespace}/workflows/{wid}"
            )
        return 0
    t0 = time.monotonic()
    try:
        state = await handle.result()
    except WorkflowFailureError:
        state = await handle.query("state", result_type=PipelineRunState)
    if as_json:
        print_json(state.model_dump(mode="json"))
    else:
        print_state(state, wid, time.monotonic() - t0)
    return 0 if state.status.value == "SUCCEEDED" else 1


def print_state(
    state: PipelineRunState, wid: str | None = None, elapsed: float | None = None
) -> None:
    """Print a run's tasks as a table, then its outputs or error."""
    style = STATUS_STYLE.get(state.status.value, "")
    head = f"[bold]{state.pipeline or '?'}[/] run [bold]{state.run_id}[/]: [{style}]{state.status.value}[/]"
    if elapsed is not None:
        head += f" in {elapsed:.2f}s"
    console.print(head)
    table = Table(show_header=True, header_style="bold")
    for column in ("task", "type", "mode", "status", "attempts", "duration", "records", "error"):
        table.add_column(column)
    for task in state.tasks.values():
        records = "" if task.records_out is None else str(task.records_out)
        if task.records_in is not None:
            records = f"{task.records_in} → {records}"
        table.add_row(
            task.name,
            task.type,
            task.mode,
            f"[{STATUS_STYLE.get(task.status.value, '')}]{task.status.value}[/]"
            + (" (cached)" if task.cached else ""),
            str(task.attempts or ""),
            "" if task.duration_ms is None else f"{task.duration_ms / 1000:.2f}s",
            records,
            f"{task.error.type}: {task.error.message}"[:160] if task.error else "",
        )
    console.print(table)
    for task in state.tasks.values():
        if task.remediation:
            what = task.remediation_action or "deciding…"
            outcome = f": {task.remediation_outcome}" if task.remediation_outcome else ""
            console.print(
                f"remediation of {task.name}: {escape(task.remediation)} → {what}{escape(outcome)}",
                highlight=False,
            )
            if not task.remediation_action:
                console.print(
                    f"  waiting? `mendline approvals list`; its state: temporal workflow query "
                    f"--workflow-id '{task.remediation}' --type decision",
                    highlight=False,
                )
    if state.outputs:
        console.print("outputs: " + json.dumps(state.outputs, default=str))
    if state.error:
        console.print(f"[red]error[/] {state.error.type}: {state.error.message}", highlight=False)


def state(
    workflow_id: Annotated[
        str, typer.Argument(help="Workflow id of the run, e.g. pipeline/orders/1.")
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a run's live state (the workflow's `state` query)."""

    async def go() -> PipelineRunState:
        client = await cli_client()
        try:
            state: PipelineRunState = await client.get_workflow_handle(workflow_id).query(
                "state", result_type=PipelineRunState
            )
            return state
        except RPCError as exc:
            fail(f"cannot query {workflow_id}: {exc.message}")

    result = run_async(go())
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        print_state(result, workflow_id)


def cancel(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id of the run.")],
    reason: Annotated[
        str, typer.Option(help="Why; recorded in the run's state.")
    ] = "cancelled from the CLI",
    by: Annotated[str | None, typer.Option("--as", help="Who is cancelling.")] = None,
) -> None:
    """Cancel a running pipeline (the workflow's `cancel` update)."""

    async def go() -> CancelRunResult:
        client = await cli_client()
        try:
            answer: CancelRunResult = await client.get_workflow_handle(workflow_id).execute_update(
                "cancel",
                CancelRunRequest(reason=reason, requested_by=by),
                result_type=CancelRunResult,
            )
            return answer
        except WorkflowUpdateFailedError as exc:
            fail(f"cancel rejected: {exc.cause or exc}")
        except RPCError as exc:
            fail(f"cannot cancel {workflow_id}: {exc.message}")

    result = run_async(go())
    console.print(f"{result.message}: {', '.join(result.cancelled_tasks) or 'no running tasks'}")


def _database() -> Database:
    return Database(get_settings().resolved_database_url)


@runs_app.command("list")
def runs_list(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status (SUCCEEDED, FAILED, …).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List recent runs, newest first."""
    db = _database()
    with db.session() as session:
        query = select(PipelineRunRow).order_by(PipelineRunRow.started_at.desc()).limit(limit)
        if pipeline:
            query = query.where(PipelineRunRow.pipeline == pipeline)
        if status:
            query = query.where(PipelineRunRow.status == status.upper())
        rows = list(session.scalars(query))
    if as_json:
        print_json([_run_dict(r) for r in rows])
        return
    table = Table("run", "pipeline", "status", "started", "duration", "tasks", "error")
    for r in rows:
        duration = ""
        if r.started_at and r.ended_at:
            duration = f"{(r.ended_at - r.started_at).total_seconds():.2f}s"
        table.add_row(
            r.run_id,
            r.pipeline,
            f"[{STATUS_STYLE.get(r.status, '')}]{r.status}[/]",
            r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "",
            duration,
            " ".join(f"{k.lower()}={v}" for k, v in sorted(r.task_counts.items())),
            (r.error_message or "")[:80],
        )
    console.print(table)
    if not rows:
        console.print("no runs recorded yet — start one with `mendline run FILE --wait`")


def _run_dict(row: PipelineRunRow) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in PipelineRunRow.__table__.columns}


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id (the workflow id unless one was given).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a run's task attempts, with per-task p50/p95 durations across all runs of its pipeline."""
    db = _database()
    with db.session() as session:
        run_row = session.get(PipelineRunRow, run_id)
        if run_row is None:
            fail(f"no run {run_id!r} in {db.url}; list runs with `mendline runs list`")
        attempts = list(
            session.scalars(
                select(TaskAttemptRow)
                .where(TaskAttemptRow.run_id == run_id)
                .order_by(TaskAttemptRow.started_at, TaskAttemptRow.attempt)
            )
        )
        history = session.execute(
            select(TaskAttemptRow.task, TaskAttemptRow.duration_ms).where(
                TaskAttemptRow.pipeline == run_row.pipeline,
                TaskAttemptRow.status == "SUCCEEDED",
                TaskAttemptRow.duration_ms.is_not(None),
            )
        ).all()
    durations: dict[str, list[float]] = {}
    for task, ms in history:
        if ms is not None:
            durations.setdefault(task, []).append(float(ms))
    percentiles = {task: _percentiles(values) for task, values in durations.items()}
    if as_json:
        print_json(
            {
                "run": _run_dict(run_row),
                "attempts": [
                    {c.name: getattr(a, c.name) for c in TaskAttemptRow.__table__.columns}
                    for a in attempts
                ],
                "task_percentiles_ms": percentiles,
            }
        )
        return
    console.print(
        f"[bold]{run_row.pipeline}[/] run [bold]{run_row.run_id}[/]: "
        f"[{STATUS_STYLE.get(run_row.status, '')}]{run_row.status}[/]"
    )
    if run_row.error_message:
        console.print(
            f"[red]error[/] {run_row.error_type}: {run_row.error_message}", highlight=False
        )
    table = Table("task", "attempt", "mode", "status", "duration", "in→out", "p50", "p95", "error")
    for a in attempts:
        p = percentiles.get(a.task, {})
        table.add_row(
            a.task,
            str(a.attempt),
            a.mode,
            f"[{STATUS_STYLE.get(a.status, '')}]{a.status}[/]" + (" (cached)" if a.cached else ""),
            "" if a.duration_ms is None else f"{a.duration_ms:.1f}ms",
            f"{'' if a.records_in is None else a.records_in}→{'' if a.records_out is None else a.records_out}",
            f"{p['p50']:.1f}ms" if p else "",
            f"{p['p95']:.1f}ms" if p else "",
            f"{a.error_type}: {a.error_message}"[:100] if a.error_type else "",
        )
    console.print(table)
    if run_row.outputs:
        console.print("outputs: " + json.dumps(run_row.outputs, default=str))


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if len(ordered) == 1:
        return {"p50": ordered[0], "p95": ordered[0], "n": 1}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": statistics.median(ordered), "p95": cuts[94], "n": len(ordered)}


@telemetry_app.command("export")
def telemetry_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
) -> None:
    """Export every recorded task attempt."""
    if fmt not in ("csv", "jsonl"):
        fail(f"--format must be csv or jsonl, got {fmt!r}", 2)
    db = _database()
    columns = [c.name for c in TaskAttemptRow.__table__.columns]
    with db.session() as session:
        query = select(TaskAttemptRow).order_by(TaskAttemptRow.id)
        if pipeline:
            query = query.where(TaskAttemptRow.pipeline == pipeline)
        rows = [{c: getattr(r, c) for c in columns} for r in session.scalars(query)]
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            buffer.write(json.dumps(row, default=str) + "\n")
    if out:
        out.write_text(buffer.getvalue(), encoding="utf-8")
        console.print(f"wrote {len(rows)} attempts to {out}")
    else:
        sys.stdout.write(buffer.getvalue())
