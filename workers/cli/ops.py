"""``mendline server``, ``worker``, ``up``, ``down``, ``db …``, ``tasks``: running Mendline."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from activities.storage import current_revision, make_engine, upgrade_database
from activities.tasks import default_registry
from models.settings import Settings
from workers import processes
from workers.cli.common import configure_logging, console, fail, get_settings, run_async
from workers.client import TemporalUnavailableError, connect
from workers.server import EmbeddedServer, ServerError, server_command
from workers.worker import run_worker

db_app = typer.Typer(help="Mendline's database (migrations).", no_args_is_help=True)


def server() -> None:
    """Run the embedded Temporal server in the foreground (Ctrl-C stops it).

    History persists in MENDLINE_DATA_DIR/temporal.db; the Web UI is on MENDLINE_UI_PORT.
    """
    settings = get_settings()
    if not settings.embedded:
        fail(
            f"MENDLINE_TEMPORAL_ADDRESS is set ({settings.temporal_address}): nothing embedded to start"
        )
    embedded = EmbeddedServer(settings)
    try:
        embedded.start()
    except ServerError as exc:
        fail(str(exc))
    console.print(
        f"Temporal server on {embedded.address}, Web UI at {embedded.ui_url} (log: {embedded.log_path})"
    )
    try:
        while embedded.process and embedded.process.poll() is None:
            time.sleep(0.5)
        fail(f"the Temporal server exited; see {embedded.log_path}")
    except KeyboardInterrupt:
        console.print("stopping the Temporal server…")
    finally:
        embedded.stop()


def worker() -> None:
    """Run a Mendline worker in the foreground (SIGINT/SIGTERM drain it and exit)."""
    settings = get_settings()
    configure_logging(settings)

    async def go() -> None:
        try:
            client = await connect(settings)
        except TemporalUnavailableError as exc:
            fail(str(exc))
        await run_worker(client, settings)

    with contextlib.suppress(KeyboardInterrupt):
        run_async(go())


def up(
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            "-d",
            help="Run server and worker in the background; stop them with `mendline down`.",
        ),
    ] = False,
) -> None:
    """Start the embedded Temporal server and a worker (foreground; Ctrl-C stops both)."""
    settings = get_settings()
    if detach:
        start_background(settings)
        console.print("stop with: mendline down")
        return
    configure_logging(settings)
    embedded: EmbeddedServer | None = None
    if settings.embedded:
        embedded = EmbeddedServer(settings)
        try:
            embedded.start()
        except ServerError as exc:
            fail(str(exc))
        console.print(f"Temporal server on {embedded.address}, Web UI at {embedded.ui_url}")
    try:

        async def go() -> None:
            client = await connect(settings)
            console.print(f"worker polling task queue {settings.task_queue!r} — Ctrl-C to stop")
            await run_worker(client, settings)

        run_async(go())
    except KeyboardInterrupt:
        pass
    except TemporalUnavailableError as exc:
        fail(str(exc))
    finally:
        if embedded is not None:
            console.print("stopping the Temporal server…")
            embedded.stop()


def start_background(settings: Settings, worker_env: dict[str, str] | None = None) -> None:
    """Start (or find running) the embedded server and a worker as background processes.

    ``worker_env`` adds environment variables for a worker started here.
    """
    data_dir = settings.data_dir
    if settings.embedded:
        running = processes.find(data_dir, "temporal")
        if running is None:
            if not _port_open(settings.embedded_port):
                try:
                    proc = processes.start(data_dir, "temporal", server_command(settings))
                except ServerError as exc:
                    fail(str(exc))
                _wait_for_port(settings.embedded_port, 60, f"the Temporal server (log: {proc.log})")
                _wait_for_port(settings.ui_port, 30, f"the Temporal Web UI (log: {proc.log})")
                console.print(
                    f"started Temporal server (pid {proc.pid}), Web UI at http://localhost:{settings.ui_port}"
                )
            else:
                console.print(
                    f"using the Temporal server already listening on 127.0.0.1:{settings.embedded_port}"
                )
        else:
            console.print(f"Temporal server already running (pid {running.pid})")
    worker_proc = processes.find(data_dir, "worker")
    if worker_proc is None:
        worker_proc = processes.start(
            data_dir, "worker", [sys.executable, "-m", "workers.cli.main", "worker"], env=worker_env
        )
        console.print(f"started worker (pid {worker_proc.pid}, log {worker_proc.log})")
    else:
        console.print(f"worker already running (pid {worker_proc.pid})")


def down() -> None:
    """Stop the background processes started by `mendline up --detach` or `mendline demo`."""
    settings = get_settings()
    stopped = [
        name
        for name in ("worker", "demo-site", "temporal")
        if processes.stop(settings.data_dir, name)
    ]
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.2)
    fail(f"{what} did not start listening on port {port} within {timeout:.0f}s")


async def wait_for_worker(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until a worker polls the task queue (so a started workflow gets picked up)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    client = await connect(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if response.pollers:
            return
        await asyncio.sleep(0.5)
    fail(
        f"no worker polls task queue {settings.task_queue!r} after {timeout:.0f}s; see the worker log"
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply database migrations (the worker also does this on start)."""
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade_database(engine, revision)
        console.print(
            f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}"
        )
    finally:
        engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Print the database URL and its migration revision."""
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        console.print(
            f"{engine.url.render_as_string(hide_password=True)}: revision {current_revision(engine) or 'none (empty)'}"
        )
    finally:
        engine.dispose()


def tasks(
    markdown: Annotated[
        bool,
        typer.Option("--markdown", help="Print the full reference as Markdown (docs/tasks.md)."),
    ] = False,
) -> None:
    """List the task types this installation can run (built-ins and entry points)."""
    registry = default_registry()
    if markdown:
        sys.stdout.write(tasks_markdown())
        return
    table = Table("type", "mode: auto", "description")
    for name in registry.names():
        handler = registry.get(name)
        summary = (inspect.getdoc(handler) or handler.description).split("\n", 1)[0]
        table.add_row(name, "local" if handler.pure else "activity", summary)
    console.print(table)
    console.print("full reference: mendline tasks --markdown (docs/tasks.md)")


def tasks_markdown() -> str:
    """The task-type reference, generated from the handlers' docstrings."""
    registry = default_registry(load_entry_points=False)
    parts = [
        "# Task types\n\n",
        "Generated by `mendline tasks --markdown` from the handlers' docstrings; "
        "a test keeps this file in step with the code.\n\n",
        "`mode: auto` runs *pure* types as local activities (no server round trip) and the "
        "others as regular activities; see the README.\n",
    ]
    for name in registry.names():
        handler = registry.get(name)
        doc = inspect.getdoc(handler) or handler.description or "(undocumented)"
        kind = "pure (local activity under `mode: auto`)" if handler.pure else "regular activity"
        parts.append(f"\n## `{name}`\n\n*{kind}*\n\n```text\n{doc}\n```\n")
    from activities.tasks import expressions

    parts.append(
        "\n## Expressions (`transform`, `validate`)\n\n```text\n"
        + (inspect.getdoc(expressions) or "")
        + "\n```\n"
    )
    return "".join(parts)
