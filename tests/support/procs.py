"""Real processes for fault-tolerance tests: worker subprocesses, free ports, clean-up.

Every process starts in its own session (process group), so a test can SIGKILL a worker
together with anything it spawned, and :class:`ProcessSet` kills whatever is still running
when the test ends, passed or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from models.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all sockets are held open until every one is picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a worker process configured exactly like ``settings``.

    Inherited ``MENDLINE_*`` variables are dropped so the developer's own configuration
    cannot leak into a test worker.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENDLINE_")}
    env.update(
        MENDLINE_DATA_DIR=str(settings.data_dir.resolve()),
        MENDLINE_TEMPORAL_NAMESPACE=settings.temporal_namespace,
        MENDLINE_TASK_QUEUE=settings.task_queue,
        MENDLINE_DATABASE_URL=settings.resolved_database_url,
        MENDLINE_EMBEDDED_PORT=str(settings.embedded_port),
        MENDLINE_UI_PORT=str(settings.ui_port),
        MENDLINE_MAX_CONCURRENT_ACTIVITIES=str(settings.max_concurrent_activities),
        MENDLINE_MAX_CONCURRENT_LOCAL_ACTIVITIES=str(settings.max_concurrent_local_activities),
        MENDLINE_LOG_LEVEL="INFO",
        # Test workers serve no /metrics: several run at once and the port is shared.
        MENDLINE_METRICS_PORT="0",
        MENDLINE_REMEDIATION=settings.remediation,
        PYTHONUNBUFFERED="1",
    )
    if settings.temporal_address:
        env["MENDLINE_TEMPORAL_ADDRESS"] = settings.temporal_address
    return env


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``process`` (no error when already gone)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@dataclass
class WorkerProcess:
    """A ``mendline worker`` subprocess and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    task_queue: str

    @property
    def pid(self) -> int:
        """Process id (also the process group id: each worker has its own session)."""
        return self.process.pid

    @property
    def identity_prefix(self) -> str:
        """Start of the Temporal identity the SDK gives this process (``<pid>@<host>``)."""
        return f"{self.pid}@"

    @property
    def telemetry_name(self) -> str:
        """Value of the ``worker`` column this process writes into ``task_attempts``."""
        return f"{self.task_queue}@{socket.gethostname()}:{self.pid}"

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the worker's log, for assertion messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log at {self.log_path}: {exc}>"
        return text[-chars:]

    def kill(self) -> None:
        """SIGKILL the worker's process group and reap it."""
        kill_group(self.process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def describe(self) -> str:
        """Pid, state and log tail, for assertion messages."""
        state = "running" if self.running() else f"exited with {self.process.returncode}"
        return f"worker pid {self.pid} ({state}); log {self.log_path}:\n{self.log_tail()}"


class ProcessSet:
    """Starts test subprocesses and kills every one still alive on exit (use ``with``)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []
        self._others: list[subprocess.Popen[bytes]] = []

    def start_worker(self, settings: Settings) -> WorkerProcess:
        """Start ``python -m workers.cli.main worker`` configured by ``settings``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"worker-{len(self.workers) + 1}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.cli.main", "worker"],
                cwd=REPO_ROOT,
                env=worker_env(settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(process, log_path, settings.task_queue)
        self.workers.append(worker)
        return worker

    def adopt(self, process: subprocess.Popen[bytes]) -> None:
        """Kill ``process`` (by process group) on exit too, e.g. an embedded server's."""
        self._others.append(process)

    def logs(self) -> str:
        """Every worker's state and log tail, for assertion messages."""
        return "\n\n".join(w.describe() for w in self.workers) or "<no workers started>"

    def close(self) -> None:
        """SIGKILL every process group started or adopted here that is still running."""
        for worker in self.workers:
            worker.kill()
        for process in self._others:
            kill_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def poller_identities(client: Client, task_queue: str) -> dict[str, set[str]]:
    """Identities polling ``task_queue`` recently, per queue type (``workflow``/``activity``).

    Uses the ENHANCED describe mode because it aggregates every partition of the queue; the
    default mode reports only the root partition, which may not list a worker whose polls
    all landed on other partitions (seen here: a polling worker missing for 45 s). ENHANCED
    is marked deprecated in the API but is the only aggregated view the 1.32 server offers.
    """
    types: dict[int, str] = {
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW: "workflow",
        TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY: "activity",
    }
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
            versions=TaskQueueVersionSelection(unversioned=True),
            task_queue_types=[TaskQueueType.ValueType(kind) for kind in types],
            report_pollers=True,
        )
    )
    found: dict[str, set[str]] = {name: set() for name in types.values()}
    for version in response.versions_info.values():
        for kind, info in version.types_info.items():
            if kind in types:
                found[types[kind]] |= {poller.identity for poller in info.pollers}
    return found


async def wait_until_polling(client: Client, worker: WorkerProcess, timeout: float = 45.0) -> None:
    """Wait until ``worker`` polls both its workflow and its activity task queue.

    Pollers are matched by identity (``<pid>@<host>``), not counted: the server keeps
    listing a killed worker's pollers for a while.

    Raises:
        AssertionError: The worker exited or did not poll in time; the message has its log.
    """
    deadline = time.monotonic() + timeout
    seen: object = "nothing yet"
    while time.monotonic() < deadline:
        if not worker.running():
            raise AssertionError(f"the worker exited before polling:\n{worker.describe()}")
        try:
            identities = await poller_identities(client, worker.task_queue)
        except Exception as exc:  # the server may still be starting
            seen = exc
        else:
            seen = identities
            if all(
                any(i.startswith(worker.identity_prefix) for i in ids)
                for ids in identities.values()
            ):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"the worker did not poll task queue {worker.task_queue!r} within {timeout:.0f}s "
        f"(last answer: {seen!r}):\n{worker.describe()}"
    )
