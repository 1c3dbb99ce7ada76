"""The Mendline worker: every workflow and activity, wired with its dependencies."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.pipeline import PipelineActivities
from activities.storage import Database
from activities.tasks import EngineCache, default_registry
from models.settings import Settings
from workflows.pipeline_run import PipelineRun

log = logging.getLogger(__name__)

WORKFLOWS: Sequence[type] = (PipelineRun,)


class MendlineWorker(Worker):
    """A Temporal worker that also closes Mendline's clients when it shuts down."""

    def __init__(
        self,
        *args: Any,
        database: Database,
        http: httpx.AsyncClient,
        engines: EngineCache,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.database = database
        self.http = http
        self.engines = engines

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            await self.http.aclose()
            self.engines.dispose()
            self.database.dispose()


def create_worker(
    client: Client, settings: Settings, *, identity: str | None = None
) -> MendlineWorker:
    """Build a worker polling ``settings.task_queue`` with all of Mendline's workflows.

    Applies database migrations first. Use it as ``async with create_worker(...) as w:``
    or call ``await worker.run()``.
    """
    database = Database(settings.resolved_database_url)
    # Temporal owns retries: the HTTP client never retries on its own.
    http = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(retries=0),
        follow_redirects=True,
        headers={"User-Agent": "Mendline/0.1 (+https://github.com/mendline)"},
    )
    engines = EngineCache()
    registry = default_registry(engines=engines)
    pipeline = PipelineActivities(settings, database, registry, http)
    activities = [
        pipeline.resolve_pipeline,
        pipeline.run_task,
        pipeline.record_run,
        pipeline.render_outputs,
    ]
    kwargs: dict[str, Any] = {}
    if identity:
        kwargs["identity"] = identity
    return MendlineWorker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=activities,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        database=database,
        http=http,
        engines=engines,
        **kwargs,
    )


async def run_worker(client: Client, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set or SIGINT/SIGTERM arrives, then drain and exit."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            break
    async with create_worker(client, settings):
        log.info(
            "worker polling task queue %r at %s",
            settings.task_queue,
            settings.resolved_temporal_address,
        )
        await stop.wait()
        log.info("worker shutting down")
