"""End to end: the `mendline` CLI and the real `temporal` CLI as subprocesses, a real worker,
the real dev server and the demo API — the README's commands, as a user types them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.settings import Settings
from workers.demo_server import DemoServer
from workers.server import temporal_binary
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MENDLINE = [sys.executable, "-m", "workers.cli.main"]


@pytest.fixture
def demo_api() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "MENDLINE_TEMPORAL_ADDRESS": settings.resolved_temporal_address,
        "MENDLINE_TASK_QUEUE": settings.task_queue,
        "MENDLINE_DATA_DIR": str(settings.data_dir),
        "MENDLINE_DATABASE_URL": settings.resolved_database_url,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


async def sh(
    cmd: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command in a thread: the in-process worker shares this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        cmd,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def temporal(
    args: list[str], settings: Settings, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return await sh(
        [str(temporal_binary()), *args, "--address", settings.resolved_temporal_address], env
    )


async def test_mendline_run_wait_succeeds_and_runs_show_reports_it(
    worker: MendlineWorker, settings: Settings, cli_env: dict[str, str], demo_api: str
) -> None:
    wid = f"pipeline/orders/{uuid.uuid4().hex[:6]}"
    done = await sh(
        [
            *MENDLINE,
            "run",
            "examples/pipelines/orders.yaml",
            "--param",
            "day=2026-11-20",
            "--param",
            f"api={demo_api}",
            "--id",
            wid,
            "--wait",
        ],
        cli_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout
    for task in ("extract", "clean", "check", "load"):
        assert task in done.stdout

    shown = await sh([*MENDLINE, "runs", "show", wid, "--json"], cli_env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["run"]["status"] == "SUCCEEDED"
    assert {a["task"] for a in report["attempts"]} == {"extract", "clean", "check", "load"}
    assert set(report["task_percentiles_ms"]) >= {"extract", "load"}

    listed = await sh([*MENDLINE, "runs", "list", "--json"], cli_env)
    assert wid in {r["run_id"] for r in json.loads(listed.stdout)}


async def test_temporal_cli_start_by_ref_and_inline_then_query_state(
    worker: MendlineWorker, settings: Settings, cli_env: dict[str, str], demo_api: str
) -> None:
    wid = f"pipeline/orders/{uuid.uuid4().hex[:6]}"
    started = await temporal(
        [
            "workflow",
            "start",
            "--type",
            "PipelineRun",
            "--task-queue",
            settings.task_queue,
            "--workflow-id",
            wid,
            "--input",
            json.dumps(
                {
                    "pipeline_ref": "examples/pipelines/orders.yaml",
                    "params": {"day": "2026-11-20", "api": demo_api},
                }
            ),
        ],
        settings,
        cli_env,
    )
    assert started.returncode == 0, started.stderr
    result = await temporal(
        ["workflow", "result", "--workflow-id", wid, "--output", "json"], settings, cli_env
    )
    assert result.returncode == 0, result.stdout + result.stderr

    queried = await temporal(
        ["workflow", "query", "--workflow-id", wid, "--type", "state", "--output", "json"],
        settings,
        cli_env,
    )
    assert queried.returncode == 0, queried.stderr
    state = _query_result(queried.stdout)
    assert state["status"] == "SUCCEEDED"
    assert {name: t["status"] for name, t in state["tasks"].items()} == {
        "extract": "SUCCEEDED",
        "clean": "SUCCEEDED",
        "check": "SUCCEEDED",
        "load": "SUCCEEDED",
    }
    assert all(t["attempts"] >= 1 and t["duration_ms"] is not None for t in state["tasks"].values())

    inline_id = f"pipeline/hello/{uuid.uuid4().hex[:6]}"
    inline = await temporal(
        [
            "workflow",
            "execute",
            "--type",
            "PipelineRun",
            "--task-queue",
            settings.task_queue,
            "--workflow-id",
            inline_id,
            "--output",
            "json",
            "--input",
            json.dumps(
                {
                    "pipeline": {
                        "name": "hello",
                        "tasks": [{"name": "say", "type": "noop", "params": {"msg": "hi"}}],
                    }
                }
            ),
        ],
        settings,
        cli_env,
    )
    assert inline.returncode == 0, inline.stdout + inline.stderr
    assert '"SUCCEEDED"' in inline.stdout

    assert inline_id in await listed(settings, cli_env, 'MendlinePipeline="hello"', inline_id)


async def test_failed_run_shows_its_error_everywhere(
    worker: MendlineWorker, settings: Settings, cli_env: dict[str, str], demo_api: str
) -> None:
    wid = f"pipeline/broken/{uuid.uuid4().hex[:6]}"
    done = await sh(
        [
            *MENDLINE,
            "run",
            "examples/pipelines/broken.yaml",
            "--param",
            f"api={demo_api}",
            "--id",
            wid,
            "--wait",
        ],
        cli_env,
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "DataValidationError" in done.stdout

    queried = await temporal(
        ["workflow", "query", "--workflow-id", wid, "--type", "state", "--output", "json"],
        settings,
        cli_env,
    )
    state = _query_result(queried.stdout)
    assert state["status"] == "FAILED"
    failed = [t for t in state["tasks"].values() if t["status"] == "FAILED"]
    assert failed and failed[0]["error"]["type"] == "DataValidationError"

    shown = await sh([*MENDLINE, "runs", "show", wid], cli_env)
    assert "DataValidationError" in shown.stdout

    assert wid in await listed(settings, cli_env, 'MendlineRunStatus="FAILED"', wid)


async def test_bad_inputs_get_clear_errors(
    worker: MendlineWorker, settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "cycle.yaml"
    bad.write_text(
        "name: loop\ntasks:\n  - name: a\n    type: noop\n    depends_on: [b]\n"
        "  - name: b\n    type: noop\n    depends_on: [a]\n"
    )
    done = await sh([*MENDLINE, "run", str(bad), "--wait"], cli_env)
    assert done.returncode == 2
    assert "cycle" in done.stderr and "a -> b -> a" in done.stderr and f"{bad}:" in done.stderr

    invalid = await temporal(
        [
            "workflow",
            "start",
            "--type",
            "PipelineRun",
            "--task-queue",
            settings.task_queue,
            "--workflow-id",
            f"bad/{uuid.uuid4().hex[:6]}",
            "--input",
            "{not json",
        ],
        settings,
        cli_env,
    )
    assert invalid.returncode != 0
    assert "json" in (invalid.stderr + invalid.stdout).lower()

    missing_id = f"pipeline/missing/{uuid.uuid4().hex[:6]}"
    await temporal(
        [
            "workflow",
            "start",
            "--type",
            "PipelineRun",
            "--task-queue",
            settings.task_queue,
            "--workflow-id",
            missing_id,
            "--input",
            json.dumps({"pipeline_ref": "examples/nope.yaml"}),
        ],
        settings,
        cli_env,
    )
    result = await temporal(["workflow", "result", "--workflow-id", missing_id], settings, cli_env)
    assert result.returncode != 0
    assert (
        "PipelineNotFoundError" in result.stdout + result.stderr
        or "not found" in result.stdout + result.stderr
    )


async def listed(settings: Settings, env: dict[str, str], query: str, expect: str) -> str:
    """`temporal workflow list --query` output, polled briefly: visibility is eventually consistent."""
    out = ""
    for _ in range(20):
        found = await temporal(
            ["workflow", "list", "--query", query, "--output", "json"], settings, env
        )
        out = found.stdout
        if expect in out:
            break
        await asyncio.sleep(0.25)
    return out


def _query_result(stdout: str) -> dict[str, Any]:
    """`temporal workflow query --output json` wraps the result; unwrap it."""
    data = json.loads(stdout)
    if isinstance(data, dict) and "queryResult" in data:
        data = data["queryResult"]
    if isinstance(data, list):
        data = data[0]
    assert isinstance(data, dict)
    return data
