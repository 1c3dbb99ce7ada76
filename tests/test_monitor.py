"""The Monitor on the real dev server: an injected outage is one incident and exactly one
alert (delivered to a real local webhook receiver), however many failures it caused; the
Schedule created by `mendline monitor enable` starts scans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.incidents_store import IncidentStore
from activities.storage import Database
from models.monitor import MonitorInput, MonitorReport
from models.remediation import DecisionState
from models.runs import PipelineRunInput, PipelineRunState
from models.settings import Settings
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.server.shutdown()
    served.server.server_close()


def rules_file(tmp_path: Path, url: str, pipeline: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        f"""
notifiers:
  hook: {{type: webhook, url: "{url}"}}
rules:
  - name: pipeline-errors
    metric: error_rate
    scope: {{kind: pipeline, name: "{pipeline}"}}
    operator: ">"
    threshold: 0.2
    severity: critical
    cooldown: 1h
    group_by: [pipeline]
    notifiers: [hook]
    remediate: true
""",
        encoding="utf-8",
    )
    return path


async def flood(client: Client, settings: Settings, pipeline: str, runs: int) -> None:
    """Runs whose every task fails for good: an upstream outage."""
    spec = {
        "name": pipeline,
        "tasks": [
            {
                "name": f"pull_{n}",
                "type": "fail",
                "params": {"message": "upstream is down", "non_retryable": True},
            }
            for n in range(4)
        ],
    }
    for _ in range(runs):
        with contextlib.suppress(WorkflowFailureError):
            await client.execute_workflow(
                "PipelineRun",
                PipelineRunInput(pipeline=spec),
                id=f"pipeline/{pipeline}/{uuid.uuid4().hex[:6]}",
                task_queue=settings.task_queue,
                result_type=PipelineRunState,
            )


async def scan(client: Client, settings: Settings, rules: Path) -> MonitorReport:
    report: MonitorReport = await client.execute_workflow(
        "Monitor",
        MonitorInput(rules_path=str(rules)),
        id=f"monitor/test-{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=MonitorReport,
    )
    return report


async def test_an_outage_is_one_incident_and_exactly_one_alert(
    client: Client,
    settings: Settings,
    worker: MendlineWorker,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    pipeline = f"outage{uuid.uuid4().hex[:6]}"
    rules = rules_file(tmp_path, receiver.url, pipeline)
    await flood(client, settings, pipeline, 3)

    first = await scan(client, settings, rules)
    assert first.opened == [f"pipeline-errors{{pipeline={pipeline}}}"], first
    assert [d.ok for d in first.deliveries] == [True]
    assert len(receiver.bodies) == 1
    sent = receiver.bodies[0]
    assert sent["rule"] == "pipeline-errors" and sent["severity"] == "critical"
    assert pipeline in json.dumps(sent)

    # The outage goes on: more failures, more scans — still one incident, no second alert
    # within the cooldown.
    await flood(client, settings, pipeline, 2)
    second = await scan(client, settings, rules)
    assert second.opened == [] and second.updated == first.opened
    assert second.deliveries == []
    assert len(receiver.bodies) == 1

    store = IncidentStore(Database(settings.resolved_database_url))
    incidents = store.incidents(open_only=True)
    assert len(incidents) == 1 and incidents[0].fingerprint == first.opened[0]
    alerts = store.alerts(incidents[0].id)
    assert len(alerts) == 1 and alerts[0].deliveries and alerts[0].deliveries[0].ok

    # The incident's rule says `remediate: true`: the first scan started its Remediation,
    # which sees the incident as evidence.
    assert first.remediations == [f"remediation/incident/{incidents[0].id}"]
    assert second.remediations == []
    decision = await client.get_workflow_handle(first.remediations[0]).query(
        "decision", result_type=DecisionState
    )
    assert decision.failure.incident_id == incidents[0].id
    assert decision.failure.pipeline == pipeline


async def test_monitor_enable_creates_a_schedule_that_runs_scans(
    client: Client, settings: Settings, worker: MendlineWorker, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MENDLINE_TEMPORAL_ADDRESS": settings.temporal_address or "",
        "MENDLINE_TASK_QUEUE": settings.task_queue,
        "MENDLINE_DATA_DIR": str(settings.data_dir),
    }
    mendline = [sys.executable, "-m", "workers.cli.main"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*mendline, *args], env=env, capture_output=True, text=True, timeout=60
        )

    enabled = await asyncio.to_thread(cli, "monitor", "enable", "--every", "2s")
    assert enabled.returncode == 0, enabled.stderr
    assert "mendline-monitor" in enabled.stdout
    try:
        deadline = time.monotonic() + 60
        done: list[str] = []
        while not done:
            assert time.monotonic() < deadline, "the schedule started no Monitor scan in 60 s"
            async for wf in client.list_workflows(
                'WorkflowType="Monitor" AND ExecutionStatus="Completed"'
            ):
                if wf.id.startswith("monitor/scheduled"):
                    done.append(wf.id)
            await asyncio.sleep(1)
        status = await asyncio.to_thread(cli, "monitor", "status", "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["every_seconds"] == [2.0] and info["runs"] >= 1
    finally:
        disabled = await asyncio.to_thread(cli, "monitor", "disable")
    assert disabled.returncode == 0 and "deleted" in disabled.stdout
    again = await asyncio.to_thread(cli, "monitor", "status")
    assert again.returncode == 1 and "not enabled" in again.stdout
