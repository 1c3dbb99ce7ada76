"""Self-repair survives a worker killed mid-repair and a Temporal server restarted.

Real processes throughout: ``mendline worker`` subprocesses, the bundled demo sites (the
news site repairs cleanly after its redesign), a SQLite database shared by the test and the
workers. The kill runs on the session dev server; a :class:`HoldingProxy` in front of the
demo site holds the doctor's fetch of the live page, so the kill lands inside the repair
rather than wherever a race puts it. The restart runs on an ``EmbeddedServer`` of the
test's own (``temporal server start-dev --db-filename <tmp>/temporal.db``), killed with
SIGKILL while the supervisor waits on its timer and started again on the same database.

The killed repair step resumes only once Temporal gives up on it: after its 15 s heartbeat
timeout.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.sources_store import SourceStore
from activities.storage import Database
from models.db_sources import SilverObservationRow, SilverRecordRow
from models.health import HealthState
from models.settings import Settings
from models.sources import (
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
)
from models.supervisor import (
    HandRequest,
    RepairReport,
    RunNowRequest,
    RunTicket,
    SupervisorView,
    repair_id,
    supervisor_id,
)
from tests.support.holding_proxy import HoldingProxy
from tests.support.procs import ProcessSet, free_ports, kill_group
from tests.support.site_workers import started_site_worker
from workers.client import connect
from workers.demo_server import DemoServer
from workers.server import EmbeddedServer

pytestmark = pytest.mark.slow

NEWS = "/sites/news/"
ARTICLES = 30
"""Articles on the demo news site (3 pages of 10), in both layouts."""
INTERVAL = 5.0
"""Seconds between scheduled runs in the restart test."""
LEAD = timedelta(seconds=2)
"""The restart test takes the server down at least this long before the next run is due."""


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessSet]:
    with ProcessSet(tmp_path / "logs") as running:
        yield running


def switch_layout(site: str, name: str, number: int) -> None:
    httpx.post(
        f"{site}/sites/_admin/layout", json={"site": name, "layout": number}
    ).raise_for_status()


async def onboard(client: Client, settings: Settings, config: SourceConfig) -> None:
    """Onboard ``config`` (which starts its supervisor) and check a version went live."""
    state: SourceOnboardingState = await asyncio.wait_for(
        client.execute_workflow(
            "SourceOnboarding",
            SourceOnboardingInput(config=config),
            id=f"source/{config.name}/onboard",
            task_queue=settings.task_queue,
            result_type=SourceOnboardingState,
        ),
        120,
    )
    assert state.active and state.supervisor == supervisor_id(config.name), state


async def settle(
    handle: WorkflowHandle[Any, Any], cycle: int, timeout: float, logs: Callable[[], str]
) -> SupervisorView:
    """Wait until run ``cycle`` and whatever it started are over.

    Queries fail while no server or no worker can answer (right after a kill or a restart);
    those failures only mean "not yet".
    """
    deadline = time.monotonic() + timeout
    view: SupervisorView | None = None
    while True:
        try:
            seen: SupervisorView = await asyncio.wait_for(
                handle.query("health", result_type=SupervisorView), timeout=10
            )
        except (RPCError, WorkflowQueryFailedError, TimeoutError):
            pass
        else:
            view = seen
            if seen.last_run and seen.last_run.cycle >= cycle and not seen.busy:
                return seen
        if time.monotonic() > deadline:
            pytest.fail(
                f"the supervisor did not settle on run {cycle} in {timeout:.0f}s: {view}\n{logs()}"
            )
        await asyncio.sleep(0.2)


async def wait_for(
    check: Callable[[], bool], what: str, timeout: float, logs: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f}s\n{logs()}")
        await asyncio.sleep(0.05)


class Silver:
    """Read-only views of what the workers stored, for the test's assertions."""

    def __init__(self, settings: Settings) -> None:
        self.database = Database(settings.resolved_database_url, migrate=False)
        self.store = SourceStore(self.database)

    def keys(self, source: str) -> list[str]:
        """Every silver record key of ``source``, one per stored row, sorted."""
        with self.database.session() as session:
            return sorted(
                session.scalars(select(SilverRecordRow.key).where(SilverRecordRow.source == source))
            )

    def keys_seen(self, source: str, run_id: str) -> list[str]:
        """The keys of the records run ``run_id`` saw, sorted (one per observation row)."""
        with self.database.session() as session:
            return sorted(
                session.scalars(
                    select(SilverObservationRow.key).where(
                        SilverObservationRow.source == source, SilverObservationRow.run_id == run_id
                    )
                )
            )

    def observations(self, source: str, run_id: str) -> int:
        """How many records run ``run_id`` was noted to have seen."""
        with self.database.session() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(SilverObservationRow)
                    .where(
                        SilverObservationRow.source == source, SilverObservationRow.run_id == run_id
                    )
                )
                or 0
            )

    def runs(self, source: str) -> list[ScrapeStats]:
        """Every stored run of ``source``, oldest first."""
        return list(reversed(self.store.runs(source, None)))

    def repair_open(self, source: str) -> bool:
        """A repair of ``source`` has started and not finished (by its history events)."""
        kinds = [event.kind for event in self.store.events(source)]
        return kinds.count("repair_started") > kinds.count("repair_finished")

    def close(self) -> None:
        self.database.dispose()


@pytest.fixture
def silver(settings: Settings) -> Iterator[Silver]:
    views = Silver(settings)
    yield views
    views.close()


def activity_attempts(events: Sequence[HistoryEvent]) -> list[tuple[str, int]]:
    """``(activity type, attempt that completed it)`` of every activity in a history."""
    names = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return [
        (
            names[event.activity_task_started_event_attributes.scheduled_event_id],
            event.activity_task_started_event_attributes.attempt,
        )
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


@pytest.mark.timeout(240)
async def test_worker_killed_mid_repair_promotes_on_a_new_worker_without_losing_records(
    client: Client, settings: Settings, procs: ProcessSet, silver: Silver
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    with DemoServer().start() as demo, HoldingProxy(demo.url) as proxy:
        first = await started_site_worker(client, procs, settings)
        await onboard(
            client, settings, SourceConfig(name=name, url=proxy.url(NEWS), interval_seconds=3600)
        )
        handle = client.get_workflow_handle(supervisor_id(name))
        await settle(handle, 1, 60, procs.logs)
        ticket: RunTicket = await handle.execute_update(
            "run_now", RunNowRequest(), result_type=RunTicket
        )
        good = await settle(handle, ticket.cycle, 60, procs.logs)
        assert good.health == HealthState.ACTIVE and good.last_run and good.last_run.verdict == "ok"
        keys_before = await asyncio.to_thread(silver.keys, name)
        records_before = await asyncio.to_thread(silver.store.records, name)
        assert len(keys_before) == len(records_before) == ARTICLES

        # The redesign; the doctor's fetches of the live page are held until the kill.
        await asyncio.to_thread(switch_layout, demo.url, "news", 2)
        proxy.hold(lambda path: path.startswith(NEWS) and silver.repair_open(name))
        ticket = await handle.execute_update("run_now", RunNowRequest(), result_type=RunTicket)
        await wait_for(lambda: proxy.holding > 0, "the repair fetching the page", 90, procs.logs)
        first.kill()
        assert first.process.returncode == -9, procs.logs()
        repair = client.get_workflow_handle(repair_id(name, 1), result_type=RepairReport)
        pending = (await repair.describe()).raw_description.pending_activities
        assert [activity.activity_type.name for activity in pending] == ["diagnose_source"]
        proxy.release()

        await started_site_worker(client, procs, settings)
        # The broken run, then the repair (resumed on the new worker), then a run at once.
        view = await settle(handle, ticket.cycle + 1, 150, procs.logs)
        report = await repair.result()
        history = await repair.fetch_history()

    assert report.outcome == "promoted", report
    assert view.health == HealthState.ACTIVE, view.reason
    assert view.repairs == 1 and view.last_repair == report
    assert view.last_run is not None
    assert (view.last_run.trigger, view.last_run.verdict) == ("after_repair", "ok")
    assert view.last_run.version == report.active_version == 2
    # The diagnosis ran twice (killed, then retried); every other step once.
    attempts = activity_attempts(history.events)
    assert ("diagnose_source", 2) in attempts, attempts
    assert all(n == 1 for step, n in attempts if step != "diagnose_source"), attempts
    assert proxy.held == 1

    # Nothing lost, nothing doubled: the same records under the same keys and field names,
    # one patched version, one repair in the source's history.
    assert await asyncio.to_thread(silver.keys, name) == keys_before
    after_run = view.last_run.run_id
    assert await asyncio.to_thread(silver.keys_seen, name, after_run) == keys_before
    records_after = await asyncio.to_thread(silver.store.records, name, after_run)
    assert len(records_after) == ARTICLES
    assert set(records_after[0]) == set(records_before[0])
    versions = await asyncio.to_thread(silver.store.list_versions, name)
    assert [(v.version, v.author) for v in versions] == [(1, versions[0].author), (2, "doctor")]
    kinds = [event.kind for event in await asyncio.to_thread(silver.store.events, name)]
    assert kinds.count("repair_started") == kinds.count("repair_finished") == 1
    runs = await asyncio.to_thread(silver.runs, name)
    assert [run.run_id for run in runs] == [
        f"{runs[0].run_id.rsplit('-', 1)[0]}-{cycle}" for cycle in range(1, view.cycle + 1)
    ]
    assert [run.held for run in runs] == [False, False, True, False]


@pytest.mark.timeout(240)
async def test_scheduled_runs_go_on_after_a_server_restart_without_duplicates(
    tmp_path: Path,
) -> None:
    grpc_port, ui_port = free_ports(2)
    settings = Settings(
        data_dir=tmp_path / "data",
        embedded_port=grpc_port,
        ui_port=ui_port,
        task_queue=f"restart-{uuid.uuid4().hex[:8]}",
        allow_private_networks=True,
        host_rate_limit=1000.0,
    )
    name = f"r{uuid.uuid4().hex[:8]}"
    first_server, second_server = EmbeddedServer(settings), EmbeddedServer(settings)
    with DemoServer().start() as demo, ProcessSet(tmp_path / "logs") as procs:

        def logs() -> str:
            server_log = first_server.log_path.read_text(errors="replace")[-3000:]
            return f"{procs.logs()}\n\nserver log {first_server.log_path}:\n{server_log}"

        try:
            await asyncio.to_thread(first_server.start)
            assert first_server.process is not None
            procs.adopt(first_server.process)
            client = await connect(settings)
            worker = await started_site_worker(client, procs, settings)
            await onboard(
                client,
                settings,
                SourceConfig(name=name, url=demo.url + NEWS, interval_seconds=INTERVAL),
            )
            handle = client.get_workflow_handle(supervisor_id(name))
            # After the first run and a scheduled one, catch the supervisor waiting on its
            # timer with the next run at least 2 s away, and take the server down.
            waiting = await settle(handle, 2, 60, logs)
            while not waiting.next_run_at or waiting.next_run_at - datetime.now(UTC) < LEAD:
                waiting = await settle(handle, waiting.cycle + 1, 60, logs)
            supervisor_run = (await handle.describe()).run_id
            kill_group(first_server.process)
            await asyncio.to_thread(first_server.process.wait, 10)
            down_at = datetime.now(UTC)
            assert waiting.next_run_at > down_at, "the timer fired before the server went down"
            await asyncio.sleep(INTERVAL + 1)  # the timer comes due while the server is down

            restarted_at = datetime.now(UTC)
            await asyncio.to_thread(second_server.start)
            assert second_server.process is not None
            procs.adopt(second_server.process)
            client = await connect(settings)
            handle = client.get_workflow_handle(supervisor_id(name))
            resumed = await settle(handle, waiting.cycle + 2, 90, logs)
            assert worker.running(), f"the worker died with the server\n{logs()}"
            # Stop scheduling so the database can be compared with a settled supervisor.
            paused: SupervisorView = await handle.execute_update(
                "pause", HandRequest(reason="test over"), result_type=SupervisorView
            )
            final = await settle(handle, paused.cycle, 60, logs)
            description = await handle.describe()
        finally:
            second_server.stop()
            first_server.stop()

    assert resumed.health == final.health == HealthState.ACTIVE, final.reason
    assert resumed.last_run is not None and waiting.last_run is not None
    assert resumed.last_run.trigger == "schedule" and resumed.last_run.verdict == "ok"
    # The supervisor carried on in the same workflow run: no restart from scratch.
    assert description.run_id == supervisor_run

    silver = Silver(settings)
    try:
        runs = await asyncio.to_thread(silver.runs, name)
        keys = await asyncio.to_thread(silver.keys, name)
        seen = [await asyncio.to_thread(silver.observations, name, run.run_id) for run in runs]
    finally:
        silver.close()
    # One row per cycle, numbered without a gap or a repeat, each run seeing each article once.
    prefix = runs[0].run_id.rsplit("-", 1)[0]
    assert [run.run_id for run in runs] == [f"{prefix}-{c}" for c in range(1, final.cycle + 1)]
    assert all(run.status == "SUCCEEDED" and run.records == ARTICLES for run in runs), runs
    assert seen == [ARTICLES] * final.cycle
    # The runs after the outage started once the server was back: the timer survived it.
    after = runs[waiting.cycle :]
    assert len(after) >= 2 and all(r.started_at and r.started_at > restarted_at for r in after)
    assert len(keys) == len(set(keys)) == ARTICLES
