"""``mendline demo``: the bundled local demo, end to end."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.sources_store import SourceStore
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.runs import PipelineRunInput, PipelineRunState
from models.scraper import SeedPage
from models.settings import Settings
from models.sources import (
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
    SourceRunInput,
    SourceStatus,
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
        client = await connect(settings)
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
        "  Sources:       mendline source list   |   mendline source records books --format table\n"
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
    client = await connect(settings)
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
        run_id = f"source/{name}/run/demo-{uuid.uuid4().hex[:6]}"
        stats = await client.execute_workflow(
            "SourceRun",
            SourceRunInput(source=name),
            id=run_id,
            task_queue=settings.task_queue,
            result_type=ScrapeStats,
        )
        console.print(
            f"run: {stats.records} records from {stats.pages} page(s), {stats.inserted} new"
        )
        rows = store.records(name, stats.run_id, 3)
        for row in rows:
            shown = {k: v for k, v in row.items() if not k.startswith("_")}
            console.print("  " + escape(json.dumps(shown, ensure_ascii=False, default=str))[:150])
        outcomes.append((wid, "SUCCEEDED" if stats.records else "EMPTY", "SUCCEEDED"))
    return outcomes


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
