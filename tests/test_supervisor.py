"""SourceSupervisor and DoctorRepair on the real dev server against the bundled demo sites:
a redesign is noticed, repaired without an LLM, and records keep their field names."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from activities.sources_store import SourceStore
from activities.storage import Database
from models.health import HealthState
from models.settings import Settings
from models.sources import SourceConfig, SourceOnboardingInput, SourceOnboardingState
from models.supervisor import (
    FixRequest,
    HandRequest,
    RepairReport,
    RepairTicket,
    RunNowRequest,
    SupervisorView,
    supervisor_id,
)
from tests.support.supervision import request_run, settle
from workers.demo_server import DemoServer
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def site() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


def layout(site: str, name: str, number: int) -> None:
    httpx.post(
        f"{site}/sites/_admin/layout", json={"site": name, "layout": number}
    ).raise_for_status()


async def onboard(
    client: Client, settings: Settings, config: SourceConfig
) -> SourceOnboardingState:
    state: SourceOnboardingState = await client.execute_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=config),
        id=f"source/{config.name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    return state


async def health(handle: WorkflowHandle[Any, Any]) -> SupervisorView:
    view: SupervisorView = await handle.query("health", result_type=SupervisorView)
    return view


async def run_now(handle: WorkflowHandle[Any, Any]) -> SupervisorView:
    return await settle(handle, await request_run(handle))


async def test_redesign_is_detected_and_repaired_with_the_same_fields(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = f"b{uuid.uuid4().hex[:8]}"
    state = await onboard(
        client, settings, SourceConfig(name=name, url=f"{site}/sites/news/", interval_seconds=3600)
    )
    assert state.supervisor == supervisor_id(name)
    handle = client.get_workflow_handle(supervisor_id(name))
    first = await settle(handle, 1)
    assert first.health == HealthState.ACTIVE and first.last_run and first.last_run.verdict == "ok"
    second = await run_now(handle)
    assert second.last_run and second.last_run.verdict == "ok"
    store = SourceStore(Database(settings.resolved_database_url))
    before = store.records(name)
    assert before
    fields = set(before[0])

    layout(site, "news", 2)
    after = await run_now(handle)
    assert after.health == HealthState.ACTIVE, (
        after.last_repair.reason if after.last_repair else None
    )
    assert after.last_repair is not None and after.last_repair.outcome == "promoted", (
        after.last_repair
    )
    assert (
        after.last_run
        and after.last_run.trigger == "after_repair"
        and after.last_run.verdict == "ok"
    )
    assert after.repairs == 1
    broken = [t for t in after.transitions if t.to_state == HealthState.DEGRADED]
    assert broken and ("records" in broken[0].reason or "field" in broken[0].reason)
    records = store.records(name)
    assert records and set(records[0]) == fields
    # Same items, same keys: no record lost or duplicated by the redesign.
    assert len(store.records(name, limit=None)) == len(before)
    kinds = [e.kind for e in store.events(name)]
    assert "repair_started" in kinds and "repair_finished" in kinds and "health_changed" in kinds
    assert store.require_source(name).status == "ACTIVE"

    report = await client.get_workflow_handle(
        f"source/{name}/repair/1", result_type=RepairReport
    ).result()
    assert report.outcome == "promoted" and report.candidate == report.active_version


async def test_fix_when_nothing_is_broken_duplicate_fix_dead_and_reset_answer_clearly(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = f"n{uuid.uuid4().hex[:8]}"
    await onboard(
        client, settings, SourceConfig(name=name, url=f"{site}/sites/books/", interval_seconds=3600)
    )
    handle = client.get_workflow_handle(supervisor_id(name))
    await settle(handle, 1)
    store = SourceStore(Database(settings.resolved_database_url))

    ticket: RepairTicket = await handle.execute_update(
        "fix", FixRequest(reason="test", requested_by="tester"), result_type=RepairTicket
    )
    assert ticket.workflow_id == f"source/{name}/repair/1"
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("fix", FixRequest(), result_type=RepairTicket)
    assert f"already requested: source/{name}/repair/1" in str(refused.value.cause) or (
        f"already running: source/{name}/repair/1" in str(refused.value.cause)
    )
    report = await client.get_workflow_handle(ticket.workflow_id, result_type=RepairReport).result()
    # The active scraper still reproduces the last good output: nothing to patch.
    assert report.outcome == "not_needed", report
    assert [v.version for v in store.list_versions(name)] == [1]
    view = await settle(handle, 2)
    assert view.health == HealthState.ACTIVE and view.breaker.repairs_today == 0

    await handle.execute_update(
        "mark_dead", HandRequest(reason="site closed"), result_type=SupervisorView
    )
    for _ in range(100):  # the supervisor stores the transition right after the update
        if store.require_source(name).status == "DEAD":
            break
        await asyncio.sleep(0.1)
    assert store.require_source(name).status == "DEAD"
    assert store.events(name)[-1].kind == "supervisor_changed"
    for update, arg in (
        ("resume", HandRequest()),
        ("fix", FixRequest()),
        ("run_now", RunNowRequest()),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as dead:
            await handle.execute_update(update, arg, result_type=SupervisorView)
        assert "DEAD" in str(dead.value.cause) and "reset" in str(dead.value.cause), update
    view = await handle.execute_update(
        "reset", HandRequest(reason="reopened"), result_type=SupervisorView
    )
    assert view.health == HealthState.ACTIVE
    view = await settle(handle, 3)
    assert view.health == HealthState.ACTIVE and view.last_run and view.last_run.trigger == "reset"
