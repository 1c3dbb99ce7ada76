"""Onboarding latency: how long ``mendline source add NAME URL --wait`` takes on a local site.

The goal is "``source add --wait`` on a local site, p50 ≤ 5 s". One Mendline worker (this
process) against a local dev server, the bundled demo sites served from this process too.
Sources are onboarded one at a time, each under a new name, and timed two ways:

* **workflow** — ``client.start_workflow("SourceOnboarding", …)`` to its result, from an
  already connected client: the cost of fetch → scout → build → validate → promote;
* **CLI** — a real ``mendline source add NAME URL --wait`` subprocess, from process start to
  exit: what a user waits for, interpreter start and connecting included.

Sites: the static books listing (``/sites/books/``), the paginated JSON API
(``/sites/catalog/api/products``) and the script-built job board (``/sites/spa/``, rendered
with Chromium). Each (site, way) starts with one untimed onboarding — its time is reported
as "first" — so the figures are those of a warm worker.

Usage (from the repository root)::

    .venv/bin/python -m bench.onboarding [--runs 20] [--cli-runs 5] [--spa-runs 5]

Writes a markdown table to stdout and everything to ``bench/results/onboarding.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.common import (
    RESULTS_DIR,
    RUN_TIMEOUT,
    BenchError,
    configure_logging,
    dev_server,
    machine_info,
    server_address,
)
from models.settings import Settings
from models.sources import (
    OnboardingStep,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
)
from workers.client import connect
from workers.demo_server import DemoServer
from workers.worker import create_worker

log = logging.getLogger("bench.onboarding")

GOAL_P50_S = 5.0
"""The issue's target for ``source add --wait`` on a local site."""

CLI_TIMEOUT_S = 120.0
"""A CLI onboarding that takes longer than this is hung, not slow."""


@dataclass(frozen=True)
class Site:
    """A demo site to onboard and what its validation must find."""

    key: str
    path: str
    description: str
    min_records: int
    rendered: bool


SITES = {
    "books": Site("books", "/sites/books/", "static HTML listing", 24, False),
    "catalog": Site("catalog", "/sites/catalog/api/products", "JSON API", 10, False),
    "spa": Site("spa", "/sites/spa/", "script-built page, browser", 1, True),
}


@dataclass
class Latencies:
    """Onboarding times of one (site, way) combination, in seconds."""

    site: Site
    way: str
    first_s: float = 0.0
    runs_s: list[float] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        """Nearest-rank value at ``fraction`` (0..1) of the sorted times."""
        ordered = sorted(self.runs_s)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    @property
    def p50_s(self) -> float:
        return statistics.median(self.runs_s)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict including the derived figures."""
        return {
            "site": self.site.key,
            "path": self.site.path,
            "kind": self.site.description,
            "way": self.way,
            "runs": len(self.runs_s),
            "first_s": self.first_s,
            "runs_s": self.runs_s,
            "p50_s": self.p50_s,
            "p95_s": self.percentile(0.95),
            "max_s": max(self.runs_s),
        }


@contextlib.asynccontextmanager
async def bench_worker(
    address: str, data_dir: Path, host_rate_limit: float
) -> AsyncIterator[tuple[Client, Settings]]:
    """A real Mendline worker allowed to fetch the local demo sites, and a client."""
    settings = Settings(
        data_dir=data_dir,
        temporal_address=address,
        task_queue=f"bench-onboarding-{uuid.uuid4().hex[:8]}",
        # The demo sites listen on 127.0.0.1, which the SSRF guard refuses by default.
        allow_private_networks=True,
        host_rate_limit=host_rate_limit,
    )
    client = await connect(settings, address=address)
    async with create_worker(client, settings):
        yield client, settings


def check_state(state: SourceOnboardingState, site: Site, name: str) -> None:
    """Raise unless onboarding ended with an active version that finds the site's records.

    Raises:
        BenchError: It did not.
    """
    report = state.report
    if state.step != OnboardingStep.DONE or not state.active or report is None:
        raise BenchError(f"onboarding {name} ({site.path}) ended {state.step}: {state.error}")
    if report.total_records < site.min_records or state.rendered != site.rendered:
        raise BenchError(
            f"onboarding {name} ({site.path}): {report.total_records} records, "
            f"rendered={state.rendered}; expected ≥ {site.min_records}, rendered={site.rendered}"
        )


async def onboard_workflow(client: Client, settings: Settings, url: str, site: Site) -> float:
    """One onboarding through the client, timed from start to result (seconds)."""
    name = f"bench-{site.key}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    handle = await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=url)),
        id=f"source/{name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
        execution_timeout=RUN_TIMEOUT,
    )
    state: SourceOnboardingState = await handle.result()
    elapsed = time.perf_counter() - start
    check_state(state, site, name)
    return elapsed


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a CLI run pointed at the benchmark's server and worker queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENDLINE_")}
    env.update(
        MENDLINE_TEMPORAL_ADDRESS=settings.temporal_address or "",
        MENDLINE_TASK_QUEUE=settings.task_queue,
        MENDLINE_DATA_DIR=str(settings.data_dir),
        MENDLINE_DATABASE_URL=settings.resolved_database_url,
    )
    return env


async def onboard_cli(settings: Settings, url: str, site: Site) -> float:
    """One ``mendline source add NAME URL --wait`` subprocess, timed from spawn to exit.

    Raises:
        BenchError: The command failed or did not say the source is active.
    """
    name = f"bench-cli-{site.key}-{uuid.uuid4().hex[:8]}"
    command = [str(Path(sys.executable).parent / "mendline"), "source", "add", name, url, "--wait"]
    start = time.perf_counter()
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "active" not in done.stdout:
        raise BenchError(
            f"`{' '.join(command)}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return elapsed


async def measure(
    runs: int, cli_runs: int, spa_runs: int, host_rate_limit: float
) -> list[Latencies]:
    """Every (site, way) combination on one dev server, one worker and one demo server."""
    plan = [
        (SITES["books"], "workflow", runs),
        (SITES["books"], "cli", cli_runs),
        (SITES["catalog"], "workflow", runs),
        (SITES["catalog"], "cli", cli_runs),
        (SITES["spa"], "workflow", spa_runs),
    ]
    results: list[Latencies] = []
    with (
        tempfile.TemporaryDirectory(prefix="mendline-bench-") as data_dir,
        DemoServer().start() as demo,
    ):
        async with (
            dev_server() as env,
            bench_worker(server_address(env), Path(data_dir), host_rate_limit) as (
                client,
                settings,
            ),
        ):
            for site, way, count in plan:
                if count < 1:
                    continue
                url = demo.url + site.path

                async def once(site: Site = site, way: str = way, url: str = url) -> float:
                    if way == "cli":
                        return await onboard_cli(settings, url, site)
                    return await onboard_workflow(client, settings, url, site)

                result = Latencies(site, way, first_s=await once())
                for _ in range(count):
                    result.runs_s.append(await once())
                log.info(
                    "%-8s %-8s first %.2f s, p50 %.2f s, p95 %.2f s, max %.2f s (%d runs)",
                    site.key,
                    way,
                    result.first_s,
                    result.p50_s,
                    result.percentile(0.95),
                    max(result.runs_s),
                    count,
                )
                results.append(result)
    return results


def render_markdown(results: list[Latencies]) -> str:
    """The results as one markdown table."""
    lines = [
        "| site | timed as | runs | first (s) | p50 (s) | p95 (s) | max (s) | p50 ≤ 5 s |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        way = "`source add --wait` (CLI process)" if r.way == "cli" else "workflow start → result"
        lines.append(
            f"| `{r.site.path}` ({r.site.description}) | {way} | {len(r.runs_s)} "
            f"| {r.first_s:.2f} | {r.p50_s:.2f} | {r.percentile(0.95):.2f} "
            f"| {max(r.runs_s):.2f} | {'met' if r.p50_s <= GOAL_P50_S else 'MISSED'} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.onboarding", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--runs", type=int, default=20, help="timed workflow onboardings per static site"
    )
    parser.add_argument(
        "--cli-runs", type=int, default=5, help="timed `source add --wait` runs per static site"
    )
    parser.add_argument(
        "--spa-runs", type=int, default=5, help="timed onboardings of the browser-rendered site"
    )
    parser.add_argument(
        "--host-rate-limit",
        type=float,
        default=Settings.model_fields["host_rate_limit"].default,
        help="requests per second to one host (default: Mendline's default)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "onboarding.json")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.cli_runs < 0 or args.spa_runs < 0:
        parser.error("--runs must be ≥ 1; --cli-runs and --spa-runs ≥ 0")
    return args


async def main_async(args: argparse.Namespace) -> int:
    info = {"start": machine_info()}
    results = await measure(args.runs, args.cli_runs, args.spa_runs, args.host_rate_limit)
    info["end"] = machine_info()
    report = {
        "benchmark": "onboarding",
        "command": " ".join([Path(sys.executable).name, "-m", "bench.onboarding", *sys.argv[1:]]),
        "machine": info,
        "goal": {"p50_s": GOAL_P50_S, "of": "mendline source add NAME URL --wait, local site"},
        "host_rate_limit": args.host_rate_limit,
        "workers": 1,
        "results": [r.as_json() for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(render_markdown(results))
    sys.stdout.write(f"\nJSON written to {args.output}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    # One line per request and per stored source would bury the progress lines.
    for noisy in ("mendline.demo_server", "httpx", "activities", "scrapers", "workers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(main_async(args))
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
