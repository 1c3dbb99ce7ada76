"""``mendline demo``: the bundled local demo, end to end."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import WorkflowFailureError

from models.runs import PipelineRunInput, PipelineRunState
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
    start_background(settings)
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
        "  Run again:     mendline run examples/pipelines/orders.yaml --param day=2026-11-21 --wait\n"
        "  Stop it all:   mendline down"
    )
    if not ok:
        raise typer.Exit(1)


@demo_app.command("serve")
def serve(port: Annotated[int, typer.Option(help="Port to listen on.")] = DEMO_PORT) -> None:
    """Run only the demo site (the local 'outside world' the examples call) in the foreground."""
    from workers.demo_server import main as demo_main

    raise typer.Exit(demo_main(["--port", str(port)]))
