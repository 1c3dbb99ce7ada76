"""`mendline report`: a self-contained page, rendered in headless Chromium without errors,
showing a source's records with its repair marked, task latencies and incidents."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from playwright.async_api import async_playwright
from temporalio.client import Client

from activities.reporting import collect_report
from activities.storage import Database
from models.runs import PipelineRunInput, PipelineRunState
from models.settings import Settings
from workers.cli.report import render
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow


async def test_report_renders_offline_in_chromium_without_errors(
    client: Client, settings: Settings, worker: MendlineWorker, tmp_path: Path
) -> None:
    spec = {
        "name": "reported",
        "tasks": [
            {"name": "nap", "type": "sleep", "params": {"seconds": 0.05}},
            {"name": "after", "type": "noop", "depends_on": ["nap"]},
        ],
    }
    for _ in range(3):
        await client.execute_workflow(
            "PipelineRun",
            PipelineRunInput(pipeline=spec),
            id=f"pipeline/reported/{uuid.uuid4().hex[:6]}",
            task_queue=settings.task_queue,
            result_type=PipelineRunState,
        )
    out = tmp_path / "report.html"
    env = {
        **os.environ,
        "MENDLINE_DATA_DIR": str(settings.data_dir),
        "MENDLINE_TEMPORAL_ADDRESS": settings.temporal_address or "",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.cli.main", "report", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    assert "reported/nap" in html and "<svg" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html

    errors: list[str] = []
    requests: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=settings.chromium_path, args=["--no-sandbox"]
        )
        page = await browser.new_page(viewport={"width": 900, "height": 1200})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        await page.goto(out.as_uri())
        shot = tmp_path / "report.png"
        await page.screenshot(path=str(shot), full_page=True)
        bars = await page.locator("#task-latency rect").count()
        runs = await page.locator("#pipeline-runs rect").count()
        await browser.close()
    assert errors == []
    assert requests == [out.as_uri()]  # nothing fetched: self-contained
    assert bars >= 2 * 3 and runs == 1
    assert shot.stat().st_size > 10_000


def test_report_marks_repairs_and_held_runs(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from models.report import ReportData, RunPoint, SourceHistory, SourceMark

    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    data = ReportData(
        generated_at=now,
        since=now - timedelta(days=1),
        sources=[
            SourceHistory(
                name="books",
                status="ACTIVE",
                active_version=2,
                runs=[
                    RunPoint(at=now - timedelta(hours=3), records=24, status="SUCCEEDED"),
                    RunPoint(at=now - timedelta(hours=2), records=0, status="SUCCEEDED", held=True),
                    RunPoint(at=now - timedelta(hours=1), records=0, status="FAILED"),
                    RunPoint(at=now - timedelta(minutes=50), records=24, status="SUCCEEDED"),
                ],
                marks=[
                    SourceMark(
                        at=now - timedelta(minutes=55), kind="repair", label="repair 1: promoted"
                    )
                ],
            )
        ],
        decisions={"execute": 3, "needs_approval": 1},
    )
    html = render(data)
    assert "repair 1: promoted" in html and "(held back)" in html and "failed" in html
    assert "1 repairs" in html or "1 repair" in html
    assert "needs_approval" in html
    # Empty sections say so instead of drawing nothing.
    assert "No incidents in this period." in html
    assert collect_report(Database(f"sqlite:///{tmp_path / 'empty.db'}")).sources == []
