"""Supervision at scale: one worker process supervising 100 to 1,000 sources.

Each level (``--sources 100,300,1000``) starts from nothing: a fresh data directory, the
embedded Temporal server (``temporal server start-dev`` with its SQLite file, as ``mendline
up`` runs it), the demo sites in their own process, and one ``mendline worker`` process.
The sources are seeded straight into the database (create, add the scraper version, promote)
with one spec scouted once from the demo books page; each source gets the same page under
its own query string (``/sites/books/?source=N``), so every source is distinct to the
store while the page and its 24 records are the same. Then one ``SourceSupervisor`` per
source is started (``interval_seconds=60``, ``run_first=True``) and everything runs for
``--minutes``.

What is measured:

* **memory**: resident set size of the worker, the Temporal server, the demo site and the
  benchmark's own client (``/proc/<pid>/status``), sampled every 2 s; peak is the kernel's
  high-water mark (``VmHWM``), steady is the median over the second half of the window;
* **CPU**: each process's CPU time over the window (``/proc/<pid>/stat``) as a share of
  one core, on a machine whose core count and load average are recorded;
* **runs per minute** completed (``source_runs.ended_at``), against the schedule of
  ``sources × 60 / interval`` per minute;
* **lag**: the supervisor schedules each run one interval after the previous run ended,
  so lag = run start − (previous run end + interval), from the ``source_runs`` rows
  (``started_at``/``ended_at`` stamped by the activity). The first run of each source is
  reported apart: start of its run − the time its supervisor was started;
* **backlog at the end**: the ``health`` query of 200 supervisors (a fixed random sample),
  just before the worker is stopped: how far past ``next_run_at`` the waiting ones are, and
  how many did not answer within 10 s;
* **where the time goes**: from the histories of 40 of them, how late the server fired the
  ``next run`` timers, how long workflow and activity tasks waited for the worker, and how
  long they took;
* **CPU contention**: each process's run-queue wait (``/proc/<pid>/task/*/schedstat``: CPU
  it wanted and did not get) and the machine's busy share (``/proc/stat``), because other
  people's tests may share the machine.

Usage (from the repository root)::

    .venv/bin/python -m bench.supervisors [--sources 1000] [--minutes 4] [--stagger]
        [--py-spy PATH]    # a py-spy binary: profile the worker over the middle of the window

Writes a markdown summary to stdout and everything to ``bench/results/supervisors.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client

import scrapers
from activities.sources_store import SourceStore
from activities.storage import Database
from bench.common import REPO_ROOT, RESULTS_DIR, BenchError, configure_logging, machine_info
from bench.procstats import (
    SAMPLE_EVERY_S,
    Process,
    distribution,
    machine_cpu,
    profile_worker,
    summarise_profile,
)
from bench.supervisors_readback import analyse_runs, backlog, history_breakdown, run_rows
from models.db_sources import SourceRow
from models.scraper import Page, ScraperSpec
from models.settings import Settings
from models.sources import SourceConfig, SourceStatus
from models.supervisor import SupervisorInput, supervisor_id
from workers.client import connect
from workers.server import EmbeddedServer

log = logging.getLogger("bench.supervisors")

START_CONCURRENCY = 50
"""Supervisors started at once by the benchmark's client."""
BACKLOG_SAMPLE = 200
"""Supervisors whose ``health`` is queried at the end (chosen with a fixed seed)."""
HISTORY_SAMPLE = 40
"""Supervisors whose histories are read for the time breakdown."""
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scout_books_spec(demo_url: str) -> tuple[ScraperSpec, str, float]:
    """The spec (and module, confidence) the scout learns from the demo books page."""
    response = httpx.get(f"{demo_url}/sites/books/")
    response.raise_for_status()
    page = Page(
        url=str(response.url), body=response.text, content_type=response.headers["content-type"]
    )
    blueprint = scrapers.scout([page])
    spec = scrapers.build_spec(blueprint, name="bench-supervised")
    return spec, scrapers.render_module(spec), blueprint.confidence


def seed_sources(store: SourceStore, demo_url: str, names: list[str], interval: float) -> None:
    """Each source with one active version, as onboarding would leave it (no supervisor)."""
    spec, module, confidence = scout_books_spec(demo_url)
    for number, name in enumerate(names):
        store.create_source(
            SourceConfig(
                name=name, url=f"{demo_url}/sites/books/?source={number}", interval_seconds=interval
            )
        )
        version = store.add_version(name, spec, "heuristic", confidence, module)
        store.promote(name, version.version)
        store.set_status(name, SourceStatus.ACTIVE, "seeded by the benchmark")


def start_demo(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """The demo sites in their own process (its CPU is then not the worker's)."""
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers.demo_server",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/sites/", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise BenchError(f"the demo server did not come up on port {port}; see {log_path}")


def start_worker(
    settings: Settings, log_path: Path, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``mendline worker`` as a subprocess, once it polls its task queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENDLINE_")}
    env.update(
        MENDLINE_TEMPORAL_ADDRESS=settings.temporal_address or "",
        MENDLINE_TASK_QUEUE=settings.task_queue,
        MENDLINE_DATA_DIR=str(settings.data_dir),
        MENDLINE_ALLOW_PRIVATE_NETWORKS="1",  # the demo sites listen on 127.0.0.1
        MENDLINE_HOST_RATE_LIMIT="100000",  # every source is on the one demo host
        MENDLINE_LOG_LEVEL="INFO",
        # /metrics stays on, as in production, on a port nothing else is using.
        MENDLINE_METRICS_PORT=str(free_port()),
        **extra_env,
    )
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mendline"), "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the worker exited with {process.returncode}; see {log_path}")
        if "worker polling task queue" in log_path.read_text(errors="replace"):
            return process
        time.sleep(0.2)
    process.kill()
    raise BenchError(f"the worker did not start polling; see {log_path}")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


async def start_supervisors(
    client: Client, task_queue: str, names: list[str], interval: float, stagger: bool
) -> tuple[dict[str, datetime], datetime]:
    """Start one supervisor per source.

    Returns:
        When each supervisor was due to start, and when the last start call returned.

    With ``stagger`` the starts are spread evenly over one interval (Temporal's
    ``start_delay``), as they are once supervisors have run for a while; without it they all
    start at once, as after onboarding many sources in a row.
    """
    gate = asyncio.Semaphore(START_CONCURRENCY)
    started: dict[str, datetime] = {}
    spacing = interval / len(names) if stagger else 0.0

    async def one(number: int, name: str) -> None:
        delay = timedelta(seconds=number * spacing)
        async with gate:
            started[name] = datetime.now(UTC) + delay
            await client.start_workflow(
                "SourceSupervisor",
                SupervisorInput(source=name, interval_seconds=interval, run_first=True),
                id=supervisor_id(name),
                task_queue=task_queue,
                start_delay=delay if stagger else None,
            )

    await asyncio.gather(*(one(number, name) for number, name in enumerate(names)))
    return started, datetime.now(UTC)


async def run_level(
    sources: int,
    minutes: float,
    interval: float,
    worker_env: dict[str, str],
    py_spy: str | None = None,
    stagger: bool = False,
) -> dict[str, Any]:
    """One fresh server, demo site and worker supervising ``sources`` sources."""
    with tempfile.TemporaryDirectory(prefix="mendline-bench-sup-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            data_dir=data_dir,
            embedded_port=free_port(),
            ui_port=free_port(),
            task_queue=f"bench-supervisors-{uuid.uuid4().hex[:8]}",
        )
        demo_port = free_port()
        demo = start_demo(demo_port, data_dir / "demo.log")
        server = EmbeddedServer(settings).start()
        assert server.process is not None
        settings = settings.model_copy(update={"temporal_address": server.address})
        worker: subprocess.Popen[bytes] | None = None
        try:
            database = Database(settings.resolved_database_url)
            names = [f"sup-{n:04d}" for n in range(sources)]
            seeded = time.perf_counter()
            await asyncio.to_thread(
                seed_sources,
                SourceStore(database),
                f"http://127.0.0.1:{demo_port}",
                names,
                interval,
            )
            seed_s = time.perf_counter() - seeded
            worker = await asyncio.to_thread(
                start_worker, settings, data_dir / "worker.log", worker_env
            )
            client = await connect(settings, address=server.address)
            processes = [
                Process("worker", worker.pid),
                Process("temporal server", server.process.pid),
                Process("demo site", demo.pid),
                # The client starting (and at the end querying) the supervisors.
                Process("benchmark client", os.getpid()),
            ]
            t0, clock0 = datetime.now(UTC), time.monotonic()
            busy0, total0 = machine_cpu()
            for process in processes:
                process.sample(0.0)
            loads = [os.getloadavg()[0]]
            starter = asyncio.create_task(
                start_supervisors(client, settings.task_queue, names, interval, stagger)
            )
            window = minutes * 60
            profile_path = data_dir / "worker.pyspy.txt"
            profiler = (
                asyncio.create_task(
                    # After the first interval's start-up burst, for the middle of the window.
                    profile_worker(
                        py_spy, worker.pid, window * 0.4, int(window * 0.4), profile_path
                    )
                )
                if py_spy
                else None
            )
            while (elapsed := time.monotonic() - clock0) < window:
                await asyncio.sleep(min(SAMPLE_EVERY_S, window - elapsed))
                for process in processes:
                    process.sample(time.monotonic() - clock0)
                loads.append(os.getloadavg()[0])
                if len(loads) % 15 == 0:
                    log.info(
                        "%4d sources, %3.0f s: worker RSS %.0f MB, load %.2f",
                        sources,
                        time.monotonic() - clock0,
                        processes[0].rss[-1][1] / 2**20,
                        loads[-1],
                    )
            t_end = datetime.now(UTC)
            busy1, total1 = machine_cpu()
            started, all_started = await starter
            if profiler is not None:
                await profiler
            profile = summarise_profile(profile_path) if profile_path.exists() else None
            wall = time.monotonic() - clock0
            start_s = all_started - t0
            sample = sorted(random.Random(0).sample(names, min(len(names), BACKLOG_SAMPLE)))
            queried = await backlog(client, sample)
            stop(worker)
            breakdown = await history_breakdown(client, sample[:HISTORY_SAMPLE])
            rows = await asyncio.to_thread(run_rows, database)
            with database.session() as session:
                statuses = Counter(session.scalars(select(SourceRow.status)))
            database.dispose()
            log_text = (data_dir / "worker.log").read_text(errors="replace").splitlines()
        finally:
            if worker is not None:
                stop(worker)
            stop(demo)
            server.stop()
    # CPU per run once start-up is over: the second half of the window.
    half = t0 + timedelta(seconds=wall / 2)
    late_runs = sum(1 for r in rows if half < r[5] <= t_end)
    cpu_per_run_ms = {
        p.name: round(1000 * p.cpu_between(wall / 2, wall) / late_runs, 1) if late_runs else None
        for p in processes
    }
    problems = Counter(
        line.split(": ", 1)[-1][:160]
        for line in log_text
        if " WARNING " in line or " ERROR " in line
    )
    return {
        "sources": sources,
        "interval_s": interval,
        "minutes": minutes,
        "staggered_start": stagger,
        "scheduled_runs_per_minute": sources * 60 / interval,
        "seed_s": round(seed_s, 1),
        "start_all_supervisors_s": round(start_s.total_seconds(), 1),
        "processes": {p.name: p.summary(wall) for p in processes},
        "cpu_ms_per_run_second_half": cpu_per_run_ms,
        "load_average_1m": distribution(loads),
        "machine_cpu_busy_share": round((busy1 - busy0) / (total1 - total0), 3),
        "history_breakdown": breakdown,
        "runs": analyse_runs(rows, started, t0, t_end, interval),
        "backlog_at_end": queried,
        "source_status_in_db": dict(statuses),
        "worker_log_warnings": dict(problems.most_common(10)),
        "worker_profile": profile,
        "worker_env": worker_env,
    }


def render_markdown(levels: list[dict[str, Any]]) -> str:
    """One row per level."""
    lines = [
        "| sources | runs/min (scheduled) | runs/min done, steady | lag p50 / p95 / max (s) "
        "| first run lag p50 / max (s) | run p50 / p95 (s) | worker RSS peak / steady (MB) "
        "| worker CPU (cores) | server RSS (MB) | server CPU (cores) | overdue > 5 s at end |",
        "|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|",
    ]
    for level in levels:
        runs, procs = level["runs"], level["processes"]
        worker, server = procs["worker"], procs["temporal server"]
        lag, first, took = runs["lag_s"], runs["first_run_lag_s"], runs["duration_s"]
        lines.append(
            f"| {level['sources']} | {level['scheduled_runs_per_minute']:.0f} "
            f"| {runs['steady_runs_per_minute']} "
            f"| {lag.get('p50', '-')} / {lag.get('p95', '-')} / {lag.get('max', '-')} "
            f"| {first.get('p50', '-')} / {first.get('max', '-')} "
            f"| {took.get('p50', '-')} / {took.get('p95', '-')} "
            f"| {worker['peak_rss_mb']} / {worker['steady_rss_mb']} "
            f"| {worker['cpu_share_of_one_core']} | {server['steady_rss_mb']} "
            f"| {server['cpu_share_of_one_core']} | {level['backlog_at_end']['overdue_over_5s']} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.supervisors", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sources", default="1000", help="comma-separated levels, e.g. 100,300,1000"
    )
    parser.add_argument("--minutes", type=float, default=4.0, help="window per level")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between runs")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra MENDLINE_* setting for the worker, e.g. MENDLINE_MAX_CONCURRENT_ACTIVITIES=200",
    )
    parser.add_argument(
        "--stagger",
        action="store_true",
        help="spread the supervisors' starts over one interval instead of starting all at once",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy binary: profile the worker (GIL-holding stacks) over the middle of the window",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "supervisors.json")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(n) for n in args.sources.split(",")]
    except ValueError:
        parser.error("--sources takes integers, e.g. 100,300,1000")
    if min(args.levels) < 1 or args.minutes < 1 or args.interval <= 0:
        parser.error("--sources ≥ 1, --minutes ≥ 1, --interval > 0")
    return args


async def main_async(args: argparse.Namespace) -> int:
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    info = {"start": machine_info()}
    levels = []
    for sources in args.levels:
        log.info("%d sources for %.1f min", sources, args.minutes)
        levels.append(
            await run_level(
                sources,
                args.minutes,
                args.interval,
                worker_env,
                args.py_spy,
                args.stagger,
            )
        )
    info["end"] = machine_info()
    report = {
        "benchmark": "supervisors",
        "command": " ".join([Path(sys.executable).name, "-m", "bench.supervisors", *sys.argv[1:]]),
        "machine": info,
        "levels": levels,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    sys.stdout.write(render_markdown(levels))
    sys.stdout.write(f"\nJSON written to {args.output}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    for noisy in ("httpx", "activities", "scrapers", "workers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(main_async(args))
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
