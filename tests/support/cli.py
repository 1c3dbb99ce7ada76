"""Running Mendline's CLI and the Temporal CLI as subprocesses against a test's worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MENDLINE = [sys.executable, "-m", "workers.cli.main"]


def cli_env(settings: Settings, *, allow_private_networks: bool = True) -> dict[str, str]:
    """The environment that points a CLI process at this test's server, queue and database."""
    env = {
        **os.environ,
        "MENDLINE_TEMPORAL_ADDRESS": settings.resolved_temporal_address,
        "MENDLINE_TASK_QUEUE": settings.task_queue,
        "MENDLINE_DATA_DIR": str(settings.data_dir),
        "MENDLINE_DATABASE_URL": settings.resolved_database_url,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    if allow_private_networks:
        env["MENDLINE_ALLOW_PRIVATE_NETWORKS"] = "1"
    return env


async def sh(
    *cmd: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run in a thread: the in-process worker shares this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        list(cmd),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
