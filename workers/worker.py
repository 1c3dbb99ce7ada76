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
from activities.monitoring import MonitoringActivities
from activities.pipeline import PipelineActivities
from activities.remediation import RemediationActivities
from activities.sources_store import SourceStore
from activities.storage import Database
from activities.supervision import SupervisionActivities
from activities.tasks import EngineCache, default_registry
from activities.telemetry import TelemetryWriter
from models.settings import Settings
from workers.metrics_http import MetricsServer, sdk_metrics_url
from workers.server import SEARCH_ATTRIBUTES
from workers.tracing import flush_tracing
from workflows.doctor import DoctorRepair
from workflows.monitor import Monitor
from workflows.pipeline_run import PipelineRun
from workflows.remediation import Remediation
from workflows.sources import SourceOnboarding, SourceRun
from workflows.supervisor import SourceSupervisor

log = logging.getLogger(__name__)

WORKFLOWS: Sequence[type] = (
    PipelineRun,
    SourceOnboarding,
    SourceRun,
    SourceSupervisor,
    DoctorRepair,
    Monitor,
    Remediation,
)


class MendlineWorker(Worker):
    """A Temporal worker that also closes Mendline's clients when it shuts down.

    With a :class:`~workers.metrics_http.MetricsServer`, it serves ``/metrics`` from the
    moment it starts (``async with`` or :meth:`run`) until it stops, and exports pending
    trace spans on shutdown.
    """

    def __init__(
        self,
        *args: Any,
        database: Database,
        http: httpx.AsyncClient,
        engines: EngineCache,
        telemetry: TelemetryWriter,
        fetcher: Fetcher,
        metrics: MetricsServer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.fetcher = fetcher
        self.database = database
        self.http = http
        self.engines = engines
        self.telemetry = telemetry

    async def __aenter__(self) -> MendlineWorker:
        # Before the run task starts: /metrics answers as soon as `async with` returns.
        self._start_metrics()
        await super().__aenter__()
        return self

    async def run(self) -> None:
        self._start_metrics()
        try:
            await super().run()
        finally:
            self._stop_metrics()

    def _start_metrics(self) -> None:
        if self.metrics is None or self.metrics.running:
            return
        try:
            self.metrics.start()
        except OSError as exc:
            # Metrics are worth a warning, not a worker: tasks keep running without them.
            log.warning(
                "cannot serve metrics on port %d (%s); running without /metrics — set "
                "MENDLINE_METRICS_PORT to a free port, or 0 to turn metrics off",
                self.metrics.requested_port,
                exc,
            )
            self.metrics = None

    def _stop_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            self._stop_metrics()
            await asyncio.to_thread(flush_tracing)
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
    serve_metrics: bool = False,
) -> MendlineWorker:
    """Build a worker polling ``settings.task_queue`` with all of Mendline's workflows.

    Applies database migrations first. Use it as ``async with create_worker(...) as w:``
    or call ``await worker.run()``. ``search_attributes=False`` makes workflows skip
    setting them (see :func:`ensure_search_attributes`). ``serve_metrics=True`` serves
    ``/metrics`` on ``settings.metrics_port`` while the worker runs (unless it is 0); off by
    default so that tests and benchmarks running many workers in one process do not compete
    for the port — :func:`run_worker` turns it on.
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
    sources = SupervisionActivities(
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
    monitoring = MonitoringActivities(settings, database, http)
    remediation = RemediationActivities(
        settings, database, sources.store, http, search_attributes=search_attributes
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
        sources.load_supervision,
        sources.supervised_scrape,
        sources.record_health,
        sources.record_source_event,
        sources.diagnose_source,
        sources.patch_scraper,
        sources.llm_patch_scraper,
        sources.validate_repair,
        sources.rollback_scraper,
        sources.rollback_target,
        monitoring.collect_metrics,
        monitoring.evaluate_alerts,
        monitoring.send_alert,
        monitoring.record_delivery_activity,
        remediation.predict_failure,
        remediation.plan_remediation,
        remediation.decide_remediation,
        remediation.approval_tokens,
        remediation.record_audit,
        remediation.execute_remediation,
    ]
    kwargs: dict[str, Any] = {}
    if identity:
        kwargs["identity"] = identity
    metrics = (
        MetricsServer(settings.metrics_port, sdk_url=sdk_metrics_url(client))
        if serve_metrics and settings.metrics_port
        else None
    )
    return MendlineWorker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=activities,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        max_cached_workflows=settings.max_cached_workflows,
        database=database,
        http=http,
        engines=engines,
        telemetry=telemetry,
        fetcher=fetcher,
        metrics=metrics,
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
    async with create_worker(
        client, settings, search_attributes=search_attributes, serve_metrics=True
    ):
        log.info(
            "worker polling task queue %r at %s",
            settings.task_queue,
            settings.resolved_temporal_address,
        )
        await stop.wait()
        log.info("worker shutting down")
