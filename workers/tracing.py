"""OpenTelemetry traces of workflows and activities, through Temporal's tracing interceptor.

With ``MENDLINE_OTLP_ENDPOINT`` set, every client made by :func:`workers.client.connect`
carries a :class:`~temporalio.contrib.opentelemetry.TracingInterceptor`; a worker built on
that client inherits it. Starting a workflow, running it, and each activity attempt become
spans (``StartWorkflow:PipelineRun``, ``RunWorkflow:PipelineRun``,
``StartActivity:run_task``, ``RunActivity:run_task``, …), and the trace context travels in
Temporal headers, so a run started by ``mendline run`` in one process and executed by
workers in others is one trace. Spans go to the collector over OTLP/HTTP in batches;
``MENDLINE_TRACE_CONSOLE=true`` also prints each finished span (to standard error, so a
CLI's output stays machine-readable).

Workflow spans are created even for runs started without a trace (by a schedule, by another
tool, by a CLI without tracing): a worker configured alone still shows its runs. The cost,
documented by the SDK, is that a workflow resumed on another worker after a crash may start
a fresh root span rather than continue the old one.

The SDK's tracer provider is Mendline's own, not the process-global one, so libraries that
trace through the global API are unaffected; :func:`flush_tracing` exports what is pending
(the worker calls it when it shuts down).
"""

from __future__ import annotations

import sys
import threading

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from models.settings import Settings

SERVICE_NAME = "mendline"
TRACES_PATH = "/v1/traces"
FLUSH_TIMEOUT_MILLIS = 5_000

_providers: dict[tuple[str | None, bool], TracerProvider] = {}
_lock = threading.Lock()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector address.

    ``http://collector:4318`` becomes ``http://collector:4318/v1/traces``, as the
    OpenTelemetry convention for ``OTEL_EXPORTER_OTLP_ENDPOINT`` has it; a URL already
    ending in ``/v1/traces`` is kept.
    """
    base = endpoint.strip().rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def tracer_provider(settings: Settings) -> TracerProvider | None:
    """The tracer provider for these settings, or None when tracing is off.

    One provider per distinct configuration and process (each holds an export thread).
    """
    key = (settings.otlp_endpoint or None, settings.trace_console)
    endpoint, console = key
    if endpoint is None and not console:
        return None
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
            if endpoint is not None:
                provider.add_span_processor(
                    BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)))
                )
            if console:
                provider.add_span_processor(
                    SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
                )
            _providers[key] = provider
        return provider


def tracing_interceptors(settings: Settings) -> list[Interceptor]:
    """The client interceptors that trace workflows and activities (empty when off)."""
    provider = tracer_provider(settings)
    if provider is None:
        return []
    tracer = provider.get_tracer("mendline")
    return [TracingInterceptor(tracer, always_create_workflow_spans=True)]


def flush_tracing(timeout_millis: int = FLUSH_TIMEOUT_MILLIS) -> bool:
    """Export every finished span still queued; False if an export did not finish in time.

    Blocking (it waits for the collector): call it from a thread in async code.
    """
    with _lock:
        providers = list(_providers.values())
    return all(provider.force_flush(timeout_millis) for provider in providers)
