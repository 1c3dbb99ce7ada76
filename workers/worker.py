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

from activities.fetch import Fetcher
from activities.pipeline import PipelineActivities
from activities.sources import SourceActivities
from activities.sources_store import SourceStore
from activities.storage import Database
from activities.tasks import EngineCache, default_registry
from activities.telemetry import TelemetryWriter
from models.settings import Settings
from workers.server import SEARCH_ATTRIBUTES
from workflows.pipeline_run import PipelineRun
from workflows.sources import SourceOnboarding, SourceRun

log = logging.getLogger(__name__)

WORKFLOWS: Sequence[type] = (PipelineRun, SourceOnboarding, SourceRun)


class MendlineWorker(Worker):
    """A Temporal worker that also closes Mendline's clients when it shuts down."""

    def __init__(
        self,
        *args: Any,
        database: Database,
        http: httpx.AsyncClient,
        engines: EngineCache,
        telemetry: TelemetryWriter,
        fetcher: Fetcher,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fetcher = fetcher
        self.database = database
        self.http = http
        self.engines = engines
        self.telemetry = telemetry

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            await self.http.aclose()
            await self.fetcher.aclose()
            self.telemetry.close()
            self.engines.dispose()
            self.database.dispose()


async def ensure_search_attributes(client: Client, settings: Settings) -> bool:
    """Make sure the namespace has Mendline's search attributes; register missing ones.

    Returns False (after a warning) when they cannot be listed or added, e.g. on a
    cluster where this identity lacks operator rights or on the time-skipping test server;
    workflows then run without them.
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )
    from temporalio.service import RPCError

    kinds = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    }
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        missing = {
            name: kinds[kind]
            for name, kind in SEARCH_ATTRIBUTES.items()
            if name not in listed.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=settings.temporal_namespace, search_attributes=missing
                )
            )
            log.info("registered search attributes %s", ", ".join(sorted(missing)))
    except RPCError as exc:
        log.warning(
            "Mendline's search attributes are not available in namespace %r (%s); runs will "
            "not be searchable by MendlinePipeline/MendlineRunStatus",
            settings.temporal_namespace,
            exc.message,
        )
        return False
    return True


def create_worker(
    client: Client,
    settings: Settings,
    *,
    identity: str | None = None,
    search_attributes: bool = True,
) -> MendlineWorker:
    """Build a worker polling ``settings.task_queue`` with all of Mendline's workflows.

    Applies database migrations first. Use it as ``async with create_worker(...) as w:``
    or call ``await worker.run()``. ``search_attributes=False`` makes workflows skip
    setting them (see :func:`ensure_search_attributes`).
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
    telemetry = TelemetryWriter(database)
    fetcher = Fetcher(settings)
    sources = SourceActivities(
        settings, SourceStore(database), fetcher, search_attributes=search_attributes
    )
    pipeline = PipelineActivities(
        settings,
        database,
        registry,
        http,
        telemetry,
        resources={"sources": sources},
        search_attributes=search_attributes,
    )
    activities = [
        pipeline.resolve_pipeline,
        pipeline.run_task,
        pipeline.record_run,
        pipeline.render_outputs,
        sources.register_source,
        sources.fetch_pages,
        sources.scout_source,
        sources.build_scraper,
        sources.validate_scraper,
        sources.decide_promotion,
        sources.promote_scraper,
        sources.fail_onboarding,
        sources.scrape_source,
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
        telemetry=telemetry,
        fetcher=fetcher,
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
    search_attributes = await ensure_search_attributes(client, settings)
    async with create_worker(client, settings, search_attributes=search_attributes):
        log.info(
            "worker polling task queue %r at %s",
            settings.task_queue,
            settings.resolved_temporal_address,
        )
        await stop.wait()
        log.info("worker shutting down")
