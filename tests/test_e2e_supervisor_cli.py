"""Self-repair from the command line: `mendline source status/run/fix/pause/…` and the
`temporal` CLI as subprocesses, against the real server, a real worker (SourceSupervisor and
DoctorRepair) and the demo sites switched to their second layout."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from models.health import HealthState
from models.settings import Settings
from models.supervisor import SupervisorView
from tests.support.cli import MENDLINE, cli_env, sh
from workers.cli import approvals
from workers.cli.supervisor_client import running_health
from workers.demo_server import DemoServer
from workers.server import temporal_binary
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def site() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return cli_env(settings)


async def mendline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = await sh(*MENDLINE, *args, env=env, timeout=150)
    assert "Traceback" not in done.stderr, done.stderr
    return done


async def status(name: str, env: dict[str, str]) -> dict[str, Any]:
    shown = await mendline("source", "status", name, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    [view] = json.loads(shown.stdout)
    assert view["source"] == name
    return dict(view)


# Waiting goes through the client (a CLI start costs a second); what is asserted goes
# through the CLI.


async def health(client: Client, name: str) -> SupervisorView | None:
    """The supervisor's health, or None when it is not running."""
    view = await running_health(client, name)
    assert not isinstance(view, str), view
    return view


async def settled(client: Client, name: str) -> SupervisorView:
    """The health once the supervisor runs and has finished what it was doing."""
    for _ in range(600):
        view = await health(client, name)
        if view and view.last_run and not view.busy:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never settled: {view}")


async def pending_request(client: Client, workflow_id: str) -> str | None:
    for status in await approvals.pending(client):
        if status.workflow_id == workflow_id and status.pending:
            return status.pending.request_id
    return None


async def approve(client: Client, workflow_id: str, env: dict[str, str]) -> None:
    for _ in range(300):
        if request := await pending_request(client, workflow_id):
            decided = await mendline("approvals", "approve", request, "--as", "alice", env=env)
            assert decided.returncode == 0, decided.stderr
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never asked for approval")


def field_names(jsonl: str) -> set[str]:
    return {key for line in jsonl.splitlines() for key in json.loads(line)}


async def temporal(settings: Settings, env: dict[str, str], *args: str) -> str:
    done = await sh(
        str(temporal_binary()),
        *args,
        "--address",
        settings.resolved_temporal_address,
        env=env,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_a_redesign_is_repaired_by_run_wait_and_recorded_in_history(
    worker: MendlineWorker, client: Client, settings: Settings, env: dict[str, str], site: str
) -> None:
    # --require-approval: onboarding and every repair wait for a person, so the repair is
    # certainly still open when we look at it.
    name = f"r{uuid.uuid4().hex[:6]}"
    added = await mendline(
        "source", "add", name, f"{site}/sites/books/", "--require-approval", env=env
    )
    assert added.returncode == 0, added.stderr
    await approve(client, f"source/{name}/onboard", env)
    first = await settled(client, name)
    assert first.health == HealthState.ACTIVE and first.last_run and first.last_run.records == 24
    before = await mendline("source", "records", name, "--format", "jsonl", env=env)
    fields = field_names(before.stdout)
    assert {"title", "price"} <= fields

    async with httpx.AsyncClient() as web:
        redesign = {"site": "books", "layout": 2}
        (await web.post(f"{site}/sites/_admin/layout", json=redesign)).raise_for_status()
    running = asyncio.create_task(
        mendline("source", "run", name, "--wait", "--timeout", "2m", env=env)
    )
    repair = f"source/{name}/repair/1"
    while not (request := await pending_request(client, repair)):
        assert not running.done(), (await running).stdout
        await asyncio.sleep(0.1)
    table, again = await asyncio.gather(
        mendline("source", "status", name, env=env), mendline("source", "fix", name, env=env)
    )
    assert "#1 running" in table.stdout and "DEGRADED" in table.stdout
    assert again.returncode == 1
    assert f"fix refused for {name}: a repair of '{name}' is already running: {repair}" in (
        again.stderr
    )
    decided = await mendline("approvals", "approve", request, "--as", "alice", env=env)
    assert decided.returncode == 0, decided.stderr

    ran = await running
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"repair {repair} started" in ran.stdout
    assert "health ACTIVE → DEGRADED" in ran.stdout
    assert f"mendline approvals approve '{repair}#v2'" in ran.stdout
    assert "repair 1 promoted" in ran.stdout and "approved by alice" in ran.stdout
    assert "run 3 (after_repair) with v2: ok, 24 records" in ran.stdout
    assert ran.stdout.rstrip().endswith(f"{name} is ACTIVE (v2)")

    query = ["workflow", "query", "--workflow-id", f"source/{name}", "--type", "health"]
    view, after, table, history, shown = await asyncio.gather(
        status(name, env),
        mendline("source", "records", name, "--format", "jsonl", env=env),
        mendline("source", "status", env=env),
        mendline("source", "history", name, env=env),
        temporal(settings, env, *query),
    )
    assert view["last_repair"]["outcome"] == "promoted" and view["active_version"] == 2
    # The output schema is kept: the same fields, found again on the redesigned page.
    assert len(after.stdout.splitlines()) == 24
    assert field_names(after.stdout) == fields and view["last_repair"]["lost_fields"] == []

    row = next(line for line in table.stdout.splitlines() if line.startswith(name))
    assert "ACTIVE" in row and "#1 promoted" in row and re.search(r"in 5\dm", row), row

    assert history.returncode == 0, history.stderr
    for expected in ("repair_started", "repair_finished", "health_changed", "version_promoted"):
        assert expected in history.stdout, history.stdout
    assert "ACTIVE → DEGRADED" in history.stdout and "repair 1 promoted" in history.stdout

    # The Temporal CLI sees the same.
    assert '"health":"ACTIVE"' in shown

    removed = await mendline("source", "remove", name, env=env)
    assert removed.returncode == 0 and "supervisor was asked to stop" in removed.stdout


async def test_hand_controls_refusals_and_unsupervised_sources(
    worker: MendlineWorker, client: Client, settings: Settings, env: dict[str, str], site: str
) -> None:
    name = f"h{uuid.uuid4().hex[:6]}"
    unknown, added = await asyncio.gather(
        mendline("source", "fix", "nosuch", env=env),
        mendline("source", "add", name, f"{site}/sites/books/", "--wait", env=env),
    )
    assert unknown.returncode == 1
    assert "no source named 'nosuch'" in unknown.stderr
    assert added.returncode == 0, added.stderr
    await settled(client, name)

    paused = await mendline("source", "pause", name, "--reason", "maintenance", env=env)
    assert paused.returncode == 0, paused.stderr
    assert "paused: maintenance" in paused.stdout
    table = await mendline("source", "status", name, env=env)
    assert table.stdout.splitlines()[1].rstrip().endswith("paused"), table.stdout
    # The same as a fire-and-forget signal from the Temporal CLI.
    await temporal(
        settings, env, "workflow", "signal", "--workflow-id", f"source/{name}",
        "--name", "pause", "--input", '{"reason": "by signal"}',
    )  # fmt: skip
    for _ in range(300):
        if (view := await health(client, name)) and view.pause_reason == "by signal":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the pause signal was not applied")

    every, bad = await asyncio.gather(
        mendline("source", "interval", name, "30m", env=env),
        mendline("source", "interval", name, "soon", env=env),
    )
    assert every.returncode == 0 and "every 30m" in every.stdout
    assert bad.returncode == 2 and "'soon'" in bad.stderr

    dead = await mendline("source", "mark-dead", name, "--reason", "site closed", env=env)
    assert dead.returncode == 0 and "DEAD" in dead.stdout
    resumed, fix = await asyncio.gather(
        mendline("source", "resume", name, env=env), mendline("source", "fix", name, env=env)
    )
    assert resumed.returncode == 1 and "cannot resume a DEAD source" in resumed.stderr
    assert fix.returncode == 1 and "it is DEAD" in fix.stderr
    for _ in range(100):
        listed = await temporal(
            settings, env, "workflow", "list", "--query", 'MendlineHealth="DEAD"'
        )
        if f"source/{name}" in listed:
            break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError("MendlineHealth=DEAD does not find the supervisor")
    reset = await mendline("source", "reset", name, "--reason", "site is back", env=env)
    assert reset.returncode == 0 and "ACTIVE" in reset.stdout

    # Without a supervisor: updates say how to start one, run falls back to one SourceRun.
    await temporal(settings, env, "workflow", "cancel", "--workflow-id", f"source/{name}")
    # Cancelling reaches the workflow through a workflow task; on a loaded machine that
    # takes seconds, and a `fix` sent before it lands is rightly accepted.
    for _ in range(600):
        if await health(client, name) is None:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the supervisor of {name} did not end after `workflow cancel`")
    fix, ran = await asyncio.gather(
        mendline("source", "fix", name, env=env),
        mendline("source", "run", name, "--wait", env=env),
    )
    assert fix.returncode == 1
    assert (
        f"source {name} is not supervised; start it with `mendline source supervise {name}`"
        in fix.stderr
    )
    assert ran.returncode == 0, ran.stderr
    assert "no running supervisor" in ran.stdout and "24 records" in ran.stdout
    started = await mendline("source", "supervise", name, env=env)
    assert started.returncode == 0 and "supervising" in started.stdout
    again = await mendline("source", "supervise", name, env=env)
    assert again.returncode == 0 and "already supervised" in again.stdout
    assert (await settled(client, name)).health == HealthState.ACTIVE

    removed = await mendline("source", "remove", name, env=env)
    assert removed.returncode == 0
