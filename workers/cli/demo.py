"""``mendline demo``: the bundled local demo, end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.markup import escape
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.sources_store import SourceStore
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.remediation import DecisionState
from models.runs import PipelineRunInput, PipelineRunState
from models.scraper import SeedPage
from models.settings import Settings
from models.sources import (
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
    SourceStatus,
)
from models.supervisor import (
    HandRequest,
    RunNowRequest,
    RunTicket,
    SupervisorInput,
    SupervisorView,
    repair_id,
    supervisor_id,
)
from workers import processes
from workers.cli.common import console, fail, get_settings, run_async
from workers.cli.ops import _port_open, _wait_for_port, start_background, wait_for_worker
from workers.cli.runs import load_spec_file, print_state
from workers.client import connect

demo_app = typer.Typer(help="The bundled local demo.", invoke_without_command=True)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
DEMO_PORT = 8765

# (file, params, expected status): the broken pipeline is meant to fail.
DEMO_RUNS: list[tuple[str, dict[str, str], str]] = [
    ("orders.yaml", {"day": "2026-11-20"}, "SUCCEEDED"),
    ("fanout.yaml", {}, "SUCCEEDED"),
    ("flaky.yaml", {}, "SUCCEEDED"),
    ("broken.yaml", {}, "FAILED"),
    # A timeout the remediation proposes to lengthen; the demo approves it as a person would.
    ("slow_report.yaml", {}, "SUCCEEDED"),
]


@demo_app.callback()
def demo(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port of the demo site.")] = DEMO_PORT,
) -> None:
    """Start server, worker and demo site in the background, run the example pipelines,
    and print what happened and where to look. `mendline down` stops everything.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings()
    if not EXAMPLES.is_dir():
        fail(f"the example pipelines were not found at {EXAMPLES}; run the demo from a checkout")
    # The demo's sites are on 127.0.0.1, which the SSRF guard refuses unless allowed.
    start_background(settings, worker_env={"MENDLINE_ALLOWED_HOSTS": "127.0.0.1,localhost"})
    if processes.find(settings.data_dir, "demo-site") is None and not _port_open(port):
        proc = processes.start(
            settings.data_dir,
            "demo-site",
            [sys.executable, "-m", "workers.demo_server", "--port", str(port)],
        )
        _wait_for_port(port, 20, f"the demo site (log: {proc.log})")
        console.print(f"started demo site on http://127.0.0.1:{port} (pid {proc.pid})")
    run_async(wait_for_worker(settings))

    async def go() -> list[tuple[str, str, str]]:
        client = await connect(settings, sdk_metrics=False)
        outcomes = []
        batch = uuid.uuid4().hex[:6]
        for file, params, expected in DEMO_RUNS:
            spec = load_spec_file(EXAMPLES / file)
            if "api" in spec.params:
                params = {**params, "api": f"http://127.0.0.1:{port}"}
            wid = f"pipeline/{spec.name}/demo-{batch}"
            console.rule(f"{file}  →  {wid}")
            t0 = time.monotonic()
            handle = await client.start_workflow(
                "PipelineRun",
                PipelineRunInput(
                    pipeline=spec.model_dump(mode="json", exclude_defaults=True), params=params
                ),
                id=wid,
                task_queue=settings.task_queue,
                result_type=PipelineRunState,
                static_summary=f"demo: pipeline {spec.name}",
            )
            await _decide_remediations(client, handle)
            try:
                state = await handle.result()
            except WorkflowFailureError:
                state = await handle.query("state", result_type=PipelineRunState)
            print_state(state, wid, time.monotonic() - t0)
            outcomes.append((wid, state.status.value, expected))
        return outcomes

    outcomes = run_async(go())
    outcomes += run_async(onboard_demo_sources(settings, f"http://127.0.0.1:{port}"))
    console.rule("what happened")
    ok = True
    for wid, got, expected in outcomes:
        mark = "[green]as expected[/]" if got == expected else f"[red]expected {expected}[/]"
        ok = ok and got == expected
        console.print(f"  {wid}: {got} ({mark})")
    ui = f"http://localhost:{settings.ui_port}/namespaces/{settings.temporal_namespace}/workflows"
    first = outcomes[0][0]
    console.print(
        "\nWhere to look:\n"
        f"  Web UI:        {ui}\n"
        f"  Temporal CLI:  temporal workflow query --workflow-id {first} --type state\n"
        f"                 temporal workflow list --query 'MendlineRunStatus=\"FAILED\"'\n"
        "  Mendline CLI:  mendline runs list   |   mendline runs show " + first + "\n"
        "  Sources:       mendline source status   |   mendline source records news --format table\n"
        f"  Self-repair:   mendline source history {REPAIR_SITE}   |   temporal workflow query "
        f"--workflow-id source/{REPAIR_SITE} --type health\n"
        "  Run again:     mendline run examples/pipelines/orders.yaml --param day=2026-11-21 --wait\n"
        "  Stop it all:   mendline down"
    )
    if not ok:
        raise typer.Exit(1)


# (name, path, extra `source add` settings): one of each kind of site the scout handles.
DEMO_SOURCES: list[tuple[str, str, dict[str, Any]]] = [
    ("books", "/sites/books/", {}),
    ("catalog", "/sites/catalog/api/products", {}),
    ("news", "/sites/news/", {"max_pages": 3}),
    ("spa", "/sites/spa/", {}),
    # Product pages hold one record each: two example pages teach the scout what to take.
    # This source also asks a person before its scraper goes live: the demo approves it
    # below, as `mendline approvals approve … --as demo` would.
    (
        "shop",
        "/sites/shop/p/creme-brulee-torch",
        {
            "require_approval": True,
            "examples": [
                (
                    "/sites/shop/p/creme-brulee-torch",
                    {"name": "Crème brûlée torch", "price": "$59.00", "sku": "SH-1000"},
                ),
                (
                    "/sites/shop/p/cast-iron-skillet-26-cm",
                    {"name": "Cast-iron skillet 26 cm", "price": "$8.99", "sku": "SH-1017"},
                ),
            ],
        },
    ),
]


async def onboard_demo_sources(settings: Settings, base: str) -> list[tuple[str, str, str]]:
    """Onboard the bundled sites, approve the one that waits for a person, run each once."""
    client = await connect(settings, sdk_metrics=False)
    store = SourceStore(Database(settings.resolved_database_url))
    outcomes: list[tuple[str, str, str]] = []
    async with httpx.AsyncClient() as http:
        await http.post(f"{base}/sites/_admin/reset")
    for name, path, extra in DEMO_SOURCES:
        console.rule(f"source {name}  →  {base}{path}")
        wid = f"source/{name}/onboard"
        existing = store.get_source(name)
        if existing is not None and existing.status == SourceStatus.ACTIVE:
            console.print(
                f"{name} is already active (v{existing.active_version}); running it again"
            )
        else:
            if existing is not None:
                store.remove_source(name)
                await _stop_supervisor(client, name)
            seeds = [
                SeedPage(url=base + page, values=values)
                for page, values in extra.get("examples", [])
            ]
            config = SourceConfig(name=name, url=base + path, **{**extra, "examples": seeds})
            t0 = time.monotonic()
            handle = await client.start_workflow(
                "SourceOnboarding",
                SourceOnboardingInput(config=config),
                id=wid,
                task_queue=settings.task_queue,
                result_type=SourceOnboardingState,
                id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=f"demo: onboard {name}",
            )
            if config.require_approval:
                status = await _wait_for_pending(handle)
                assert status.pending is not None
                console.print(
                    f"waiting for approval: {status.pending.request_id} ({status.pending.summary})"
                )
                outcome = await handle.execute_update(
                    "approve",
                    ApprovalDecision(
                        request_id=status.pending.request_id, approver="demo", reason="looks right"
                    ),
                    result_type=ApprovalOutcome,
                )
                console.print(f"approved by {outcome.approver} (the `approve` update)")
            try:
                state = await handle.result()
            except WorkflowFailureError as exc:
                console.print(f"[red]onboarding {name} failed[/]: {escape(str(exc.cause))}")
                outcomes.append((wid, "FAILED", "SUCCEEDED"))
                continue
            console.print(
                f"v{state.version} active in {time.monotonic() - t0:.1f}s: "
                f"{state.report.total_records if state.report else 0} records on the live page"
                + (", rendered with the browser" if state.rendered else "")
            )
        await _ensure_supervised(client, settings, name)
        view = await _run_supervised(client, name)
        run = view.last_run
        records = run.records if run else 0
        console.print(
            f"supervised run {run.cycle if run else '?'}: {records} records, "
            f"{run.inserted if run else 0} new ({view.health.value}; workflow {supervisor_id(name)})"
        )
        rows = store.records(name, run.run_id if run else None, 3)
        for row in rows:
            shown = {k: v for k, v in row.items() if not k.startswith("_")}
            console.print("  " + escape(json.dumps(shown, ensure_ascii=False, default=str))[:150])
        outcomes.append((wid, "SUCCEEDED" if records else "EMPTY", "SUCCEEDED"))
    outcomes.append(await redesign_and_repair(client, store, base, REPAIR_SITE))
    return outcomes


REPAIR_SITE = "news"
"""The site the demo redesigns to show a break and its repair."""


async def _run_supervised(client: Client, name: str, timeout: float = 180) -> SupervisorView:
    """Run a source now through its supervisor and wait until the run, and any repair it
    started, are over."""
    handle = client.get_workflow_handle(supervisor_id(name))
    ticket = await handle.execute_update(
        "run_now", RunNowRequest(reason="demo"), result_type=RunTicket
    )
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while True:
        view: SupervisorView = await handle.query("health", result_type=SupervisorView)
        if view.open_repair and view.open_repair not in seen:
            seen.add(view.open_repair)
            console.print(f"  doctor at work: {view.open_repair}")
        if view.last_run and view.last_run.cycle >= ticket.cycle and not view.busy:
            return view
        if time.monotonic() > deadline:
            fail(f"source {name}: run {ticket.cycle} did not finish within {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def redesign_and_repair(
    client: Client, store: SourceStore, base: str, name: str
) -> tuple[str, str, str]:
    """Redesign a demo site under a running source and show the supervisor mend it."""
    console.rule(f"self-repair: the {name} site is redesigned")
    handle = client.get_workflow_handle(supervisor_id(name))
    # A clean slate, so a demo run again the same day is not stopped by the circuit breaker.
    await handle.execute_update("reset", HandRequest(reason="demo"), result_type=SupervisorView)
    before = await _run_supervised(client, name)
    fields = sorted(k for k in (store.records(name, limit=1) or [{}])[0] if not k.startswith("_"))
    console.print(
        f"before: v{before.active_version}, {before.last_run.records if before.last_run else 0} records, fields {fields}"
    )
    async with httpx.AsyncClient() as http:
        await http.post(f"{base}/sites/_admin/layout", json={"site": name, "layout": 2})
    console.print(f"the {name} site now serves its redesign (other tags, classes and nesting)")
    t0 = time.monotonic()
    view = await _run_supervised(client, name)
    broken = next((t for t in reversed(view.transitions) if t.to_state.value == "DEGRADED"), None)
    if broken:
        console.print(f"  detected: {escape(broken.reason)}")
    repair = view.last_repair
    if repair is not None:
        console.print(
            f"  {repair_id(name, repair.number)}: {repair.outcome} — {escape(repair.reason)}"
        )
    run = view.last_run
    after = sorted(k for k in (store.records(name, limit=1) or [{}])[0] if not k.startswith("_"))
    console.print(
        f"after: {view.health.value}, v{view.active_version}, "
        f"{run.records if run else 0} records ({run.trigger if run else '-'} run), fields {after} "
        f"in {time.monotonic() - t0:.1f}s"
    )
    console.print(f"  history: mendline source history {name}   |   status: mendline source status")
    link = _ui_query(f'MendlineSource="{name}"')
    console.print(f"  watch it in the Web UI: {link}")
    healed = (
        view.health.value == "ACTIVE"
        and repair is not None
        and repair.outcome == "promoted"
        and after == fields
    )
    return supervisor_id(name), "REPAIRED" if healed else view.health.value, "REPAIRED"


def _ui_query(query: str) -> str:
    """A Web UI link listing the workflows that match a visibility query."""
    settings = get_settings()
    return (
        f"http://localhost:{settings.ui_port}/namespaces/{settings.temporal_namespace}/workflows"
        f"?query={quote(query)}"
    )


async def _decide_remediations(client: Client, handle: Any) -> None:
    """Until the run ends, act as the on-call person for its remediations: show each plan
    that waits for approval and approve it, giving a tuned task more time than proposed
    (edit-and-approve); any other plan is rejected."""
    decided: set[str] = set()
    while True:
        state: PipelineRunState = await handle.query("state", result_type=PipelineRunState)
        if state.status.value not in ("PENDING", "RUNNING"):
            return
        for task in state.tasks.values():
            wid = task.remediation
            if not wid or wid in decided:
                continue
            remediation = client.get_workflow_handle(wid)
            try:
                status = await remediation.query("approval", result_type=ApprovalStatus)
            except RPCError:
                continue
            if status.pending is None:
                continue
            decision = await remediation.query("decision", result_type=DecisionState)
            plan = decision.planning.plan if decision.planning else None
            console.print(
                f"  task {task.name} failed for good → {wid}\n"
                f"    plan: {plan.action.value if plan else '?'} "
                f"(confidence {plan.confidence if plan else 0:.2f}, {plan.risk_level.value if plan else '?'} risk)"
                f" — {escape(plan.summary) if plan else ''}\n"
                f"    verdict: {decision.verdict.verdict if decision.verdict else '?'}: "
                + escape("; ".join(decision.verdict.reasons if decision.verdict else []))
            )
            tune = plan is not None and plan.action.value == "tune"
            outcome = await remediation.execute_update(
                "approve" if tune else "reject",
                ApprovalDecision(
                    request_id=status.pending.request_id,
                    approver="alice",
                    reason="more time is fine" if tune else "not without looking first",
                    params={"timeout_seconds": 10} if tune else {},
                ),
                result_type=ApprovalOutcome,
            )
            verb = "approved" if outcome.approved else "rejected"
            edited = f" with {outcome.params}" if outcome.params else ""
            console.print(
                f"    {verb} by {outcome.approver}{edited} (the `approve` update, as "
                f"`mendline approvals approve {status.pending.request_id} --as alice"
                + (" --param timeout_seconds=10" if tune else "")
                + "` would); audit: mendline audit verify"
            )
            decided.add(wid)
        await asyncio.sleep(0.3)


async def _ensure_supervised(client: Client, settings: Settings, name: str) -> None:
    """Start the source's supervisor unless it runs (sources onboarded before it existed)."""
    source = SourceStore(Database(settings.resolved_database_url)).require_source(name)
    await client.start_workflow(
        "SourceSupervisor",
        SupervisorInput(source=name, interval_seconds=source.config.interval_seconds),
        id=supervisor_id(name),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"supervise source {name}",
    )


async def _stop_supervisor(client: Client, name: str) -> None:
    """End the supervisor of a source the demo onboards again (it may not exist)."""
    with contextlib.suppress(RPCError):
        await client.get_workflow_handle(supervisor_id(name)).terminate("demo: source re-added")


async def _wait_for_pending(handle: Any) -> ApprovalStatus:
    for _ in range(600):
        status: ApprovalStatus = await handle.query("approval", result_type=ApprovalStatus)
        if status.pending is not None:
            return status
        await asyncio.sleep(0.1)
    fail("onboarding did not ask for approval within 60s")


@demo_app.command("serve")
def serve(port: Annotated[int, typer.Option(help="Port to listen on.")] = DEMO_PORT) -> None:
    """Run only the demo site (the local 'outside world' the examples call) in the foreground."""
    from workers.demo_server import main as demo_main

    raise typer.Exit(demo_main(["--port", str(port)]))
