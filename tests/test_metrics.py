"""The worker's /metrics endpoint and its traces, against the real dev server and worker.

The endpoint is scraped over HTTP and parsed with the Prometheus text parser, as
Prometheus would; Mendline's registry is process-wide, so every assertion is scoped by a
pipeline or source name unique to the test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowFailureError

from models.health import HealthState
from models.runs import PipelineRunInput, PipelineRunState, RunStatus
from models.settings import Settings
from models.sources import SourceConfig, SourceOnboardingInput, SourceOnboardingState
from models.supervisor import RunNowRequest, RunTicket, SupervisorView, supervisor_id
from tests.support.dashboards import load_dashboards, metric_names, queries
from workers.client import connect
from workers.demo_server import DemoServer
from workers.metrics_http import sdk_metrics_url
from workers.worker import create_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def fetch(port: int) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def scrape(port: int) -> list[Metric]:
    return list(text_string_to_metric_families(await fetch(port)))


def value(families: list[Metric], sample: str, **labels: str) -> float | None:
    """The value of the one sample named ``sample`` whose labels include ``labels``."""
    found = [
        s.value
        for family in families
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    ]
    assert len(found) <= 1, f"{sample}{labels} matches {len(found)} samples"
    return found[0] if found else None


def total(families: list[Metric], sample: str, **labels: str) -> float:
    """The sum over every sample named ``sample`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def stored_names(page: str) -> set[str]:
    """The series names Prometheus stores from this page, read from the raw text (the
    parser renames counters, Prometheus does not), plus the declared families."""
    names: set[str] = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


async def run_pipeline(
    client: Client, settings: Settings, workflow_id: str, pipeline: dict[str, Any]
) -> PipelineRunState:
    handle = await client.start_workflow(
        "PipelineRun",
        PipelineRunInput(pipeline=pipeline),
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )
    try:
        return await handle.result()
    except WorkflowFailureError:
        return await handle.query("state", result_type=PipelineRunState)


def noop_and_failing(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": [
            {"name": "fine", "type": "noop", "params": {"rows": [1, 2, 3]}},
            {
                "name": "broken",
                "type": "fail",
                "mode": "activity",
                "params": {"message": "boom", "error_type": "UpstreamDown"},
                "retry": {"max_attempts": 2, "initial_interval": "100ms"},
            },
        ],
    }


async def test_metrics_endpoint_serves_mendline_and_temporal_sdk_metrics(
    client: Client, settings: Settings, workflow_id: str
) -> None:
    settings = settings.model_copy(update={"metrics_port": free_port()})
    pipeline = f"metrics_{uuid.uuid4().hex[:8]}"
    async with create_worker(client, settings, serve_metrics=True) as worker:
        assert worker.metrics is not None and worker.metrics.sdk_url is not None
        state = await run_pipeline(client, settings, workflow_id, noop_and_failing(pipeline))
        assert state.status == RunStatus.FAILED
        fine = {"name": pipeline, "tasks": [{"name": "fine", "type": "noop"}]}
        state = await run_pipeline(client, settings, f"{workflow_id}-ok", fine)
        assert state.status == RunStatus.SUCCEEDED
        page = await fetch(settings.metrics_port)
    families = list(text_string_to_metric_families(page))

    # Mendline's own: a noop in each run, two failed attempts of the failing task.
    scope = {"pipeline": pipeline}
    assert value(families, "mendline_task_duration_seconds_count", **scope, task_type="noop") == 2
    assert value(families, "mendline_task_duration_seconds_count", **scope, task_type="fail") == 2
    seconds = value(families, "mendline_task_duration_seconds_sum", **scope, task_type="fail")
    assert seconds is not None and 0 < seconds < 60
    inf = value(
        families, "mendline_task_duration_seconds_bucket", **scope, task_type="noop", le="+Inf"
    )
    assert inf == 2
    failures = "mendline_task_failures_total"
    assert value(families, failures, **scope, task_type="fail", error_class="UpstreamDown") == 2
    assert value(families, failures, **scope, task_type="noop") is None
    for family in (
        "mendline_source_health",
        "mendline_records",
        "mendline_repairs",
        "mendline_decisions",
        "mendline_llm_tokens",
    ):
        assert family in {f.name for f in families}, f"{family} missing from /metrics"
    assert value(families, "mendline_repairs_total", outcome="promoted") is not None

    # The Temporal SDK's, from the worker's runtime, on the same page.
    run = {"workflow_type": "PipelineRun", "task_queue": settings.task_queue}
    assert value(families, "temporal_workflow_failed_total", **run) == 1
    assert value(families, "temporal_workflow_completed_total", **run) == 1
    activity_failures = "temporal_activity_execution_failed_total"
    assert value(families, activity_failures, **run, activity_type="run_task") == 2
    queue = {"task_queue": settings.task_queue}
    assert total(families, "temporal_worker_task_slots_available", **queue) > 0
    assert total(families, "temporal_request_total", operation="StartWorkflowExecution") >= 1
    latency = total(
        families, "temporal_workflow_task_execution_latency_count", workflow_type="PipelineRun"
    )
    assert latency >= 1

    # Bounded cardinality: no run or workflow id in any label.
    for family in families:
        for sample in family.samples:
            assert all(workflow_id not in v for v in sample.labels.values()), sample

    # Every metric the Grafana dashboard queries is one the worker really serves.
    served = stored_names(page)
    assert "temporal_workflow_failed_total" in served and "mendline_records_total" in served
    for file, dashboard in load_dashboards().items():
        for where, expr in queries(dashboard):
            unknown = metric_names(expr) - served
            assert not unknown, f"{file} {where} queries {sorted(unknown)}, not served"


async def test_a_busy_metrics_port_leaves_the_worker_running_without_metrics(
    client: Client, settings: Settings, workflow_id: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        settings = settings.model_copy(update={"metrics_port": taken.getsockname()[1]})
        async with create_worker(client, settings, serve_metrics=True) as worker:
            state = await run_pipeline(
                client,
                settings,
                workflow_id,
                {"name": "busy_port", "tasks": [{"name": "a", "type": "noop"}]},
            )
            assert state.status == RunStatus.SUCCEEDED
            assert worker.metrics is None


async def test_metrics_port_zero_turns_metrics_off(settings: Settings) -> None:
    off = settings.model_copy(update={"metrics_port": 0})
    client = await connect(off)
    assert sdk_metrics_url(client) is None
    async with create_worker(client, off, serve_metrics=True) as worker:
        assert worker.metrics is None


# --- supervision -------------------------------------------------------------------------


@pytest.fixture
def site() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


async def supervisor_view(client: Client, name: str, cycle: int) -> SupervisorView:
    """Wait until run ``cycle`` of the source's supervisor, and what it started, is over."""
    handle = client.get_workflow_handle(supervisor_id(name))
    deadline = time.monotonic() + 60
    while True:
        view: SupervisorView = await handle.query("health", result_type=SupervisorView)
        if view.last_run and view.last_run.cycle >= cycle and not view.busy:
            return view
        assert time.monotonic() < deadline, f"supervisor did not settle on cycle {cycle}: {view}"
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_supervised_source_reports_records_health_and_repairs(
    client: Client, settings: Settings, site: str
) -> None:
    settings = settings.model_copy(update={"metrics_port": free_port()})
    name = f"m{uuid.uuid4().hex[:8]}"
    async with create_worker(client, settings, serve_metrics=True):
        await client.execute_workflow(
            "SourceOnboarding",
            SourceOnboardingInput(
                config=SourceConfig(name=name, url=f"{site}/sites/news/", interval_seconds=3600)
            ),
            id=f"source/{name}/onboard",
            task_queue=settings.task_queue,
            result_type=SourceOnboardingState,
        )
        await supervisor_view(client, name, 1)
        before = await scrape(settings.metrics_port)
        repairs_before = value(before, "mendline_repairs_total", outcome="promoted") or 0

        # The site is redesigned: the next run looks broken, the doctor repairs the scraper.
        httpx.post(
            f"{site}/sites/_admin/layout", json={"site": "news", "layout": 2}
        ).raise_for_status()
        ticket: RunTicket = await client.get_workflow_handle(supervisor_id(name)).execute_update(
            "run_now", RunNowRequest(), result_type=RunTicket
        )
        view = await supervisor_view(client, name, ticket.cycle)
        assert view.health == HealthState.ACTIVE and view.repairs == 1
        after = await scrape(settings.metrics_port)

    first = value(before, "mendline_records_total", source=name)
    assert first is not None and first > 0
    last = value(after, "mendline_records_total", source=name)
    assert last is not None and last > first
    assert value(after, "mendline_repairs_total", outcome="promoted") == repairs_before + 1
    states = {
        state: value(after, "mendline_source_health", source=name, state=state)
        for state in HealthState
    }
    assert states == {
        HealthState.ACTIVE: 1,
        HealthState.DEGRADED: 0,
        HealthState.QUARANTINED: 0,
        HealthState.DEAD: 0,
    }


# --- tracing -----------------------------------------------------------------------------


class OtlpReceiver:
    """A local OTLP/HTTP collector that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def attribute(span: Any, key: str) -> str | None:
    for item in span.attributes:
        if item.key == key:
            text: str = item.value.string_value
            return text
    return None


async def test_workflows_and_activities_are_traced_to_an_otlp_collector(
    settings: Settings, workflow_id: str
) -> None:
    with OtlpReceiver() as collector:
        traced = settings.model_copy(update={"otlp_endpoint": collector.url})
        client = await connect(traced)
        pipeline = {
            "name": "traced",
            "tasks": [
                {"name": "a", "type": "noop"},
                {"name": "b", "type": "noop", "mode": "activity", "depends_on": ["a"]},
            ],
        }
        async with create_worker(client, traced):
            state = await run_pipeline(client, traced, workflow_id, pipeline)
        assert state.status == RunStatus.SUCCEEDED
        # The worker exported its pending spans when it shut down.

    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    ours = [s for s in collector.spans if attribute(s, "temporalWorkflowID") == workflow_id]
    names = {span.name for span in ours}
    expected = {
        "StartWorkflow:PipelineRun",
        "RunWorkflow:PipelineRun",
        "StartActivity:run_task",
        "RunActivity:run_task",
        "RunActivity:resolve_pipeline",
    }
    assert expected <= names, sorted(names)
    assert len({span.trace_id for span in ours}) == 1, "the run's spans are not one trace"
