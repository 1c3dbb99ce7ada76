"""Sources survive a worker killed with SIGKILL: no second scraper version, no duplicate record.

Real processes: ``mendline worker`` subprocesses on the session dev server, a SQLite database
shared by the test and the workers, the bundled demo sites. A small local server in front of
the books site holds chosen requests for a few seconds, so the kill lands inside the activity
that made the request (validation, a scrape) rather than wherever a race happens to put it.

The retried activity starts only once Temporal gives up on the killed attempt: after the
activity's start-to-close timeout (``validate_scraper``: 3 min) or heartbeat timeout
(``scrape_source``: 2 min), which is why these tests take minutes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

import scrapers
from activities.fetch import Fetcher
from activities.sources import SourceActivities
from activities.sources_store import SourceStore
from activities.storage import Database
from models.db_sources import ScraperVersionRow, SilverRecordRow
from models.scraper import Page
from models.settings import Settings
from models.sources import (
    BuildRequest,
    OnboardingStep,
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
    SourceRunInput,
)
from tests.fixtures.fetch.server import Reply, SiteServer
from tests.support.procs import REPO_ROOT, ProcessSet, WorkerProcess, wait_until_polling, worker_env
from workers.demo_server import DemoServer

pytestmark = pytest.mark.slow

BOOKS = "/sites/books/"
HOLD = 8.0
"""Seconds the gate holds a chosen request: ample time to see it arrive and kill the worker."""

VALIDATE_RECOVERY = 60.0
"""Bound for onboarding to end after a kill during validation: the 15 s heartbeat timeout,
then a new attempt held by the gate for a few seconds."""

SCRAPE_RECOVERY = 60.0
"""Bound for a run to end after a kill mid-scrape: the 15 s heartbeat timeout, then a retry."""


class BooksGate:
    """A local site serving the demo books listing, holding the requests it is told to.

    Every request for :data:`BOOKS` is fetched from the demo server and answered after the
    next delay in :attr:`holds` (none when the list is empty).
    """

    def __init__(self, upstream: str, server: SiteServer) -> None:
        self.upstream = upstream
        self.server = server
        self.holds: list[float] = []
        self._lock = threading.Lock()
        server.routes[BOOKS] = self._reply

    @property
    def url(self) -> str:
        return self.server.url(BOOKS)

    @property
    def requests(self) -> int:
        """Requests for the listing received so far (held ones included)."""
        return self.server.paths().count(BOOKS)

    def _reply(self) -> Reply:
        with urllib.request.urlopen(self.upstream + BOOKS, timeout=10) as response:
            body = response.read()
            content_type = response.headers.get("Content-Type")
        with self._lock:
            delay = self.holds.pop(0) if self.holds else 0.0
        return Reply(body=body, content_type=content_type, delay=delay)


@pytest.fixture
def gate() -> Iterator[BooksGate]:
    with DemoServer().start() as demo, SiteServer() as server:
        yield BooksGate(demo.url, server)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessSet]:
    with ProcessSet(tmp_path / "logs") as running:
        yield running


def start_worker(procs: ProcessSet, settings: Settings) -> WorkerProcess:
    """A ``mendline worker`` subprocess allowed to fetch the local sites.

    :meth:`ProcessSet.start_worker` drops every inherited ``MENDLINE_*`` variable, so the two
    settings the sites need are added here.
    """
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = procs.log_dir / f"worker-{len(procs.workers) + 1}.log"
    env = worker_env(settings)
    env.update(MENDLINE_ALLOW_PRIVATE_NETWORKS="1", MENDLINE_HOST_RATE_LIMIT="1000")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli.main", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log_path, settings.task_queue)
    procs.workers.append(worker)
    return worker


async def started_worker(client: Client, procs: ProcessSet, settings: Settings) -> WorkerProcess:
    worker = start_worker(procs, settings)
    await wait_until_polling(client, worker)
    return worker


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float, logs: Callable[[], str]
) -> None:
    """Poll ``check`` every 20 ms until it is true; fail with the worker logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s\n{logs()}")


async def result_within(handle: WorkflowHandle[Any, Any], bound: float, procs: ProcessSet) -> Any:
    try:
        return await asyncio.wait_for(handle.result(), bound)
    except TimeoutError:
        pytest.fail(f"{handle.id} did not end within {bound:.0f}s of the kill\n{procs.logs()}")


def counts(settings: Settings, source: str) -> tuple[int, int]:
    """``(scraper versions, silver records)`` stored for ``source``."""
    db = Database(settings.resolved_database_url, migrate=False)
    try:
        with db.session() as session:
            versions = session.scalar(
                select(func.count())
                .select_from(ScraperVersionRow)
                .where(ScraperVersionRow.source == source)
            )
            silver = session.scalar(
                select(func.count())
                .select_from(SilverRecordRow)
                .where(SilverRecordRow.source == source)
            )
    finally:
        db.dispose()
    return versions or 0, silver or 0


async def start_onboarding(
    client: Client, settings: Settings, name: str, url: str
) -> WorkflowHandle[Any, SourceOnboardingState]:
    return await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=url), supervise=False),
        id=f"source/{name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )


async def start_run(client: Client, settings: Settings, name: str) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "SourceRun",
        SourceRunInput(source=name),
        id=f"source/{name}/run/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=ScrapeStats,
    )


@pytest.mark.timeout(VALIDATE_RECOVERY + 120)
async def test_onboarding_killed_during_validation_resumes_without_a_second_version(
    client: Client, settings: Settings, gate: BooksGate, procs: ProcessSet
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    first = await started_worker(client, procs, settings)
    # Request 1 is fetch_pages; request 2 is validate_scraper's fresh fetch: hold that one.
    gate.holds = [0.0, HOLD]
    handle = await start_onboarding(client, settings, name, gate.url)

    async def validating() -> bool:
        state = await handle.query("state", result_type=SourceOnboardingState)
        assert state.step not in (OnboardingStep.DONE, OnboardingStep.FAILED), state
        return state.step == OnboardingStep.VALIDATING and gate.requests >= 2

    await wait_for(validating, "validation fetching the page", 60, procs.logs)
    first.kill()
    assert first.process.returncode == -9, procs.logs()
    # The candidate was built before the kill; the killed validation left it unvalidated.
    assert counts(settings, name) == (1, 0)

    start_worker(procs, settings)
    final: SourceOnboardingState = await result_within(handle, VALIDATE_RECOVERY, procs)
    assert final.step == OnboardingStep.DONE and final.active, procs.logs()
    assert final.version == 1
    assert final.report is not None and final.report.passed
    assert final.report.total_records == 24
    # Validation really ran again on the new worker: fetch, killed attempt, retry.
    assert gate.requests == 3
    assert counts(settings, name) == (1, 0)

    for expected_inserted in (24, 0):
        stats: ScrapeStats = await result_within(await start_run(client, settings, name), 60, procs)
        assert stats.records == 24 and stats.version == 1
        assert stats.inserted == expected_inserted
    assert counts(settings, name) == (1, 24)


@pytest.mark.timeout(SCRAPE_RECOVERY + 120)
async def test_run_killed_mid_scrape_succeeds_on_a_new_worker_without_duplicates(
    client: Client, settings: Settings, gate: BooksGate, procs: ProcessSet
) -> None:
    name = f"k{uuid.uuid4().hex[:8]}"
    first = await started_worker(client, procs, settings)
    onboarded = await result_within(
        await start_onboarding(client, settings, name, gate.url), 60, procs
    )
    assert onboarded.step == OnboardingStep.DONE
    warm: ScrapeStats = await result_within(await start_run(client, settings, name), 60, procs)
    assert warm.inserted == 24
    assert counts(settings, name) == (1, 24)

    before = gate.requests
    gate.holds = [HOLD]
    handle = await start_run(client, settings, name)

    async def scraping() -> bool:
        return gate.requests > before

    await wait_for(scraping, "the run fetching the page", 30, procs.logs)
    first.kill()
    assert first.process.returncode == -9, procs.logs()

    start_worker(procs, settings)
    stats: ScrapeStats = await result_within(handle, SCRAPE_RECOVERY, procs)
    assert stats.status == "SUCCEEDED" and stats.records == 24
    assert stats.inserted == 0 and stats.unchanged == 24
    assert gate.requests == before + 2  # the killed attempt's fetch and the retry's
    assert counts(settings, name) == (1, 24)
    records = SourceStore(Database(settings.resolved_database_url)).records(name, stats.run_id)
    assert len(records) == 24


async def test_build_retried_with_the_same_request_returns_the_same_version(
    settings: Settings, tmp_path: Path
) -> None:
    """What a build retried after a crash does: the spec is stored once, as version 1."""
    with DemoServer().start() as demo:
        url = demo.url + BOOKS
        body = httpx.get(url).text
    blueprint = scrapers.scout([Page(url=url, body=body, content_type="text/html")])
    database = Database(settings.resolved_database_url)
    store = SourceStore(database)
    name = f"b{uuid.uuid4().hex[:8]}"
    store.create_source(SourceConfig(name=name, url=url))
    fetcher = Fetcher(settings)
    try:
        activities = SourceActivities(settings, store, fetcher)
        request = BuildRequest(source=name, blueprint=blueprint, max_pages=5)
        env = ActivityEnvironment()
        first = await env.run(activities.build_scraper, request)
        await asyncio.sleep(0.05)  # a retry comes later: its created_at differs
        second = await env.run(activities.build_scraper, request)
    finally:
        await fetcher.aclose()
    assert (second.version, second.sha256) == (first.version, first.sha256) == (1, first.sha256)
    assert [v.version for v in store.list_versions(name)] == [1]
    assert [e.kind for e in store.events(name)].count("version_added") == 1
    database.dispose()
