"""Redesigns the doctor must not "fix": data removed entirely, a field that vanished (a schema
change, for a person), and records of a broken run that must not overwrite good ones."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.sources_store import SourceStore
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.health import HealthState
from models.settings import Settings
from models.sources import SourceConfig, SourceOnboardingInput, SourceOnboardingState
from models.supervisor import SupervisorView, supervisor_id
from tests.support.supervision import request_run, settle
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow

PARTS = [("Hex bolt", 12.5), ("Wing nut", 3.2), ("Hinge", 8.75), ("Bracket", 5.1), ("Washer", 0.4)]


def listing(with_prices: bool = True) -> str:
    items = "".join(
        f'<li class="part"><h3 class="name">{name}</h3>'
        + (f'<span class="price">${price:.2f}</span>' if with_prices else "")
        + "</li>"
        for name, price in PARTS
    )
    return f"<html><body><h1>Parts</h1><ul class='parts'>{items}</ul></body></html>"


class Site:
    """A one-page site whose body the test changes."""

    def __init__(self) -> None:
        self.body = listing()
        self.delay = 0.0
        """Seconds each page takes to answer."""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/robots.txt"):
                    self.send_response(404)
                    self.end_headers()
                    return
                time.sleep(site.delay)
                data = site.body.encode()
                # A cancelled run's client may have gone while the page was slow.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/parts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.server.shutdown()
    served.server.server_close()


async def start(
    client: Client, settings: Settings, site: Site
) -> tuple[str, WorkflowHandle[Any, Any]]:
    name = f"p{uuid.uuid4().hex[:8]}"
    await client.execute_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=site.url)),
        id=f"source/{name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    handle = client.get_workflow_handle(supervisor_id(name))
    await settle(handle, 1)
    await settle(handle, await request_run(handle))
    return name, handle


async def test_data_removed_entirely_is_never_replaced_by_an_empty_scraper(
    client: Client, settings: Settings, worker: MendlineWorker, site: Site
) -> None:
    name, handle = await start(client, settings, site)
    store = SourceStore(Database(settings.resolved_database_url))
    good = store.records(name)
    assert len(good) == len(PARTS)

    site.body = "<html><body><h1>Parts</h1><p>Our catalogue moved to the shop.</p></body></html>"
    view = await settle(handle, await request_run(handle))

    assert view.health == HealthState.DEGRADED
    assert view.last_run and view.last_run.kind == "zero_records"
    repair = view.last_repair
    assert repair is not None and repair.outcome == "failed", repair
    assert "none of the" in repair.reason and "appear on the new pages" in repair.reason
    assert [v.version for v in store.list_versions(name)] == [1]
    assert store.active_version(name) is not None and store.active_version(name).version == 1  # type: ignore[union-attr]
    assert view.breaker.repairs_today == 1 and view.breaker.allowed
    # The good records are untouched.
    assert store.records(name) == good


async def test_a_vanished_field_is_held_back_and_its_patch_waits_for_a_person(
    client: Client, settings: Settings, worker: MendlineWorker, site: Site
) -> None:
    name, handle = await start(client, settings, site)
    store = SourceStore(Database(settings.resolved_database_url))
    before = {r["name"]: r["price"] for r in store.records(name)}
    assert all(before.values())

    site.body = listing(with_prices=False)
    ticket = await request_run(handle)
    repair_handle = None
    for _ in range(300):
        view: SupervisorView = await handle.query("health", result_type=SupervisorView)
        if view.open_repair:
            repair_handle = client.get_workflow_handle(view.open_repair)
            status: ApprovalStatus = await repair_handle.query(
                "approval", result_type=ApprovalStatus
            )
            if status.pending is not None:
                break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the repair never asked for approval")
    assert view.last_run and view.last_run.held and view.last_run.kind == "fill_rate_collapse"
    assert "schema" in status.pending.summary and "price" in status.pending.summary
    # The broken run's records (no prices) were held back: silver still has the prices.
    assert {r["name"]: r["price"] for r in store.records(name)} == before

    outcome: ApprovalOutcome = await repair_handle.execute_update(
        "reject",
        ApprovalDecision(
            request_id=status.pending.request_id, approver="tester", reason="prices matter"
        ),
        result_type=ApprovalOutcome,
    )
    assert not outcome.approved
    view = await settle(handle, ticket)
    assert view.health == HealthState.DEGRADED
    assert view.last_repair and view.last_repair.outcome == "failed"
    assert "rejected by tester" in view.last_repair.reason
    assert store.active_version(name).version == 1  # type: ignore[union-attr]


async def test_cancelling_the_supervisor_during_a_run_ends_it(
    client: Client, settings: Settings, worker: MendlineWorker, site: Site
) -> None:
    """`temporal workflow cancel` while a run's activity is in flight: the cancellation
    arrives as an ActivityError, which the run's failure handling must not take for a
    failed run (the supervisor would go on, the cancel lost)."""
    _, handle = await start(client, settings, site)
    site.delay = 30.0
    await request_run(handle)
    for _ in range(100):
        view: SupervisorView = await handle.query("health", result_type=SupervisorView)
        if view.running:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the run never started")
    await handle.cancel()
    for _ in range(200):
        if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the supervisor is still {(await handle.describe()).status}")
