"""``mendline worker`` subprocesses that may scrape the local test sites.

:meth:`tests.support.procs.ProcessSet.start_worker` drops every inherited ``MENDLINE_*``
variable, so the two settings local sites need (private addresses allowed, no host rate
limit worth the name) are added back here. Their ``/metrics`` endpoint is turned off: on
its fixed default port, two workers on one machine (another test session's, say) would
compete for it and the loser would exit.
"""

from __future__ import annotations

import subprocess
import sys

from temporalio.client import Client

from models.settings import Settings
from tests.support.procs import REPO_ROOT, ProcessSet, WorkerProcess, wait_until_polling, worker_env


def start_site_worker(procs: ProcessSet, settings: Settings) -> WorkerProcess:
    """Start a worker configured like ``settings`` that can fetch sites on 127.0.0.1.

    ``procs`` kills it (and its process group) when the test ends.
    """
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = procs.log_dir / f"worker-{len(procs.workers) + 1}.log"
    env = worker_env(settings)
    env.update(
        MENDLINE_ALLOW_PRIVATE_NETWORKS="1",
        MENDLINE_HOST_RATE_LIMIT="1000",
        MENDLINE_METRICS_PORT="0",
    )
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli.main", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log_path, settings.task_queue)
    procs.workers.append(worker)
    return worker


async def started_site_worker(
    client: Client, procs: ProcessSet, settings: Settings, timeout: float = 45.0
) -> WorkerProcess:
    """:func:`start_site_worker`, then wait until it polls both of its task queues."""
    worker = start_site_worker(procs, settings)
    await wait_until_polling(client, worker, timeout)
    return worker
