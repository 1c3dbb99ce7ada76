"""Behaviour over long spans of time, on Temporal's time-skipping test server."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models.runs import PipelineRunInput, PipelineRunState, RunStatus
from models.settings import Settings
from workers.client import connect
from workers.worker import create_worker


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    binary = Path(sys.executable).parent / "temporal-test-server"
    # The environment's own client drives time skipping, so it needs Mendline's converter.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=pydantic_data_converter
    )
    yield env
    await env.shutdown()


async def test_hour_long_retry_backoff_is_a_durable_timer(
    skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = skipping_env.client.service_client.config.target_host
    settings = Settings(
        data_dir=tmp_path, temporal_address=address, task_queue=f"ts-{uuid.uuid4().hex[:8]}"
    )
    client: Client = await connect(settings, address=address)
    pipeline = {
        "name": "patient",
        "tasks": [
            {
                "name": "later",
                "type": "fail",
                "mode": "activity",
                "params": {"message": "upstream not ready", "succeed_on_attempt": 3},
                "retry": {"max_attempts": 3, "initial_interval": "1h", "max_interval": "2h"},
            }
        ],
    }
    # The time-skipping server has no custom search attributes.
    async with create_worker(client, settings, search_attributes=False):
        started = await skipping_env.get_current_time()
        # The environment's client skips time while it waits for the result.
        result = await skipping_env.client.execute_workflow(
            "PipelineRun",
            PipelineRunInput(pipeline=pipeline),
            id=f"ts/{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
            result_type=PipelineRunState,
        )
        elapsed = await skipping_env.get_current_time() - started
    assert result.status == RunStatus.SUCCEEDED
    assert result.tasks["later"].attempts == 3
    # Two backoffs (1 h, then 2 h) passed in workflow time, not in wall time.
    assert elapsed.total_seconds() >= 3 * 3600
