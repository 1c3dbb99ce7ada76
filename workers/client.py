"""The one place Temporal clients are built (worker, CLI, tests, benchmarks)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from models.settings import Settings
from workers.metrics_http import sdk_telemetry
from workers.tracing import tracing_interceptors


class TemporalUnavailableError(RuntimeError):
    """No Temporal frontend answered at the configured address."""


async def connect(
    settings: Settings | None = None, *, address: str | None = None, sdk_metrics: bool = True
) -> Client:
    """Connect to Temporal with Mendline's pydantic data converter.

    Unless ``MENDLINE_METRICS_PORT`` is 0, the client runs on the process's telemetry
    runtime, which records the Temporal SDK's metrics for the worker's ``/metrics``
    (:mod:`workers.metrics_http`). With ``MENDLINE_OTLP_ENDPOINT`` or
    ``MENDLINE_TRACE_CONSOLE`` set it traces workflows and activities, and so does every
    worker built on it (:mod:`workers.tracing`).

    Args:
        settings: Process settings; read from the environment when omitted.
        address: Overrides the address from settings (tests, benchmarks).
        sdk_metrics: Record the SDK's metrics (workers); CLI commands pass False so they
            open no metrics listener.

    Raises:
        TemporalUnavailableError: Nothing answered; the message says how to start a server.
    """
    settings = settings or Settings()
    target = address or settings.resolved_temporal_address
    runtime = sdk_telemetry().runtime if sdk_metrics and settings.metrics_port else None
    try:
        return await Client.connect(
            target,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            interceptors=tracing_interceptors(settings),
            runtime=runtime,
        )
    except RuntimeError as exc:
        hint = (
            "start the embedded server with `mendline server` (or `mendline up`)"
            if settings.embedded and address is None
            else "check MENDLINE_TEMPORAL_ADDRESS and that the cluster is up"
        )
        raise TemporalUnavailableError(f"cannot reach Temporal at {target}: {exc}; {hint}") from exc
