"""Record the workflow histories replayed by ``tests/test_replay.py``.

Run after an intentional, patched workflow change (never to paper over a replay failure)::

    .venv/bin/python -m tests.support.record_history                    # all of them
    .venv/bin/python -m tests.support.record_history doctor_repair_llm  # only those named

Each history comes from a real run on a throw-away dev server with a real worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.runs import PipelineRunInput, PipelineRunState
from models.settings import Settings
from models.sources import SourceConfig, SourceOnboardingInput, SourceOnboardingState
from models.supervisor import (
    HandRequest,
    repair_id,
    supervisor_id,
)
from tests.conftest import search_attribute_keys
from tests.support.supervision import request_run, settle
from workers.client import connect
from workers.demo_server import DemoServer
from workers.server import temporal_binary
from workers.worker import create_worker

HISTORIES = Path(__file__).resolve().parents[1] / "histories"

PIPELINES: dict[str, dict[str, Any]] = {
    # Local and regular activities, a retry, templates between tasks, run outputs.
    "pipeline_run_basic": {
        "name": "replay-basic",
        "params": {"n": 3},
        "tasks": [
            {"name": "seed", "type": "noop", "params": {"rows": [{"id": 1}, {"id": 2}, {"id": 3}]}},
            {"name": "nap", "type": "sleep", "params": {"seconds": 0.1}},
            {
                "name": "shaky",
                "type": "fail",
                "mode": "activity",
                "params": {"message": "first attempt fails", "succeed_on_attempt": 2},
                "retry": {"max_attempts": 3, "initial_interval": "100ms"},
            },
            {
                "name": "keep",
                "type": "transform",
                "depends_on": ["seed", "shaky"],
                "params": {
                    "records": "{{ tasks.seed.output.rows }}",
                    "steps": [{"filter": "id < 3"}],
                },
            },
        ],
        "outputs": {"kept": "{{ tasks.keep.output.count }}"},
    },
    # A permanent failure: downstream skipped, the run fails.
    "pipeline_run_failed": {
        "name": "replay-failed",
        "tasks": [
            {"name": "bad", "type": "fail", "params": {"message": "boom", "non_retryable": True}},
            {"name": "after", "type": "noop", "depends_on": ["bad"]},
            {"name": "other", "type": "noop"},
        ],
    },
}


async def record(only: set[str]) -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), search_attributes=search_attribute_keys()
    ) as env:
        address = env.client.service_client.config.target_host
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp),
                temporal_address=address,
                task_queue="replay",
                allow_private_networks=True,
            )
            client = await connect(settings, address=address)
            if not only or "doctor_repair_llm" in only:
                await record_llm_repair(client, settings)
            if only and not only & {
                *PIPELINES,
                "source_onboarding",
                "source_supervisor",
                "doctor_repair",
            }:
                return
            async with create_worker(client, settings):
                for name, pipeline in PIPELINES.items():
                    wid = f"replay/{name}/{uuid.uuid4().hex[:6]}"
                    handle = await client.start_workflow(
                        "PipelineRun",
                        PipelineRunInput(pipeline=pipeline),
                        id=wid,
                        task_queue=settings.task_queue,
                        result_type=PipelineRunState,
                    )
                    with contextlib.suppress(WorkflowFailureError):
                        await handle.result()
                    history = await handle.fetch_history()
                    save(name, history)
                await record_sources(client, settings)


def save(name: str, history: WorkflowHistory) -> None:
    path = HISTORIES / f"{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print(f"wrote {path} ({len(history.events)} events)")


async def record_sources(client: Client, settings: Settings) -> None:
    """Onboarding, a supervisor noticing a redesign, and the repair that mends it."""
    settings = settings.model_copy(update={"allow_private_networks": True})
    name = f"news{uuid.uuid4().hex[:4]}"
    with DemoServer().start() as site:
        onboarding = await client.start_workflow(
            "SourceOnboarding",
            SourceOnboardingInput(config=SourceConfig(name=name, url=f"{site.url}/sites/news/")),
            id=f"source/{name}/onboard",
            task_queue=settings.task_queue,
            result_type=SourceOnboardingState,
        )
        await onboarding.result()
        supervisor = client.get_workflow_handle(supervisor_id(name))
        await settle(supervisor, 1)
        await settle(supervisor, await request_run(supervisor))
        httpx.post(f"{site.url}/sites/_admin/layout", json={"site": "news", "layout": 2})
        view = await settle(supervisor, await request_run(supervisor))
        assert view.last_repair and view.last_repair.outcome == "promoted", view
        await supervisor.execute_update("pause", HandRequest(reason="recorded"))
        save("source_onboarding", await onboarding.fetch_history())
        save("source_supervisor", await supervisor.fetch_history())
        save("doctor_repair", await client.get_workflow_handle(repair_id(name, 1)).fetch_history())
        await supervisor.terminate("history recorded")


async def record_llm_repair(client: Client, settings: Settings) -> None:
    """A repair the doctor cannot make alone, patched by a language model (the local chat
    server answering as a capable model would) and approved by a person."""
    from tests.support.llm_server import Reply, serve_llm
    from tests.test_doctor_llm import answer, table
    from tests.test_supervisor_faults import Site

    site = Site()
    with serve_llm() as (url, script):
        llm = settings.model_copy(
            update={
                "agent_provider": "openai",
                "llm_base_url": f"{url}/v1",
                "llm_model": "patch-model",
                "task_queue": "replay-llm",
            }
        )
        try:
            async with create_worker(client, llm):
                name = f"parts{uuid.uuid4().hex[:4]}"
                onboarding = await client.start_workflow(
                    "SourceOnboarding",
                    SourceOnboardingInput(config=SourceConfig(name=name, url=site.url)),
                    id=f"source/{name}/onboard",
                    task_queue=llm.task_queue,
                    result_type=SourceOnboardingState,
                )
                await onboarding.result()
                supervisor = client.get_workflow_handle(supervisor_id(name))
                await settle(supervisor, 1)
                await settle(supervisor, await request_run(supervisor))
                site.body = table()
                script.replies = [Reply(content="not a patch"), Reply(content=answer())]
                ticket = await request_run(supervisor)
                repair = client.get_workflow_handle(repair_id(name, 1))
                for _ in range(300):
                    with contextlib.suppress(Exception):
                        status = await repair.query("approval", result_type=ApprovalStatus)
                        if status.pending is not None:
                            break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError("the model's patch never asked for approval")
                await repair.execute_update(
                    "approve",
                    ApprovalDecision(request_id=status.pending.request_id, approver="recorder"),
                    result_type=ApprovalOutcome,
                )
                view = await settle(supervisor, ticket)
                assert view.last_repair and view.last_repair.outcome == "promoted", view
                save("doctor_repair_llm", await repair.fetch_history())
                await supervisor.terminate("history recorded")
        finally:
            site.server.shutdown()
            site.server.server_close()


if __name__ == "__main__":
    asyncio.run(record(set(sys.argv[1:])))
