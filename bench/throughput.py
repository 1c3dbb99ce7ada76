"""Pipeline-run throughput: 10-task runs per second at 1, 10 and 50 concurrent runs.

One Mendline worker (this process) against a local dev server. Each run is a 10-task
pipeline of ``noop`` tasks shaped like a small ETL job — one task, eight in parallel after
it, one joining them — in ``mode: local`` and in ``mode: activity``. At each concurrency
level, ``--runs`` runs (default: 4 × the level, at least 20) are started with at most
that many in flight; throughput is runs completed per second of wall time, and the median
and 95th-percentile run latency are reported too.

Usage (from the repository root; ``make bench`` runs it)::

    .venv/bin/python -m bench.throughput [--levels 1,10,50] [--modes local,activity]

Writes a markdown table to stdout and everything to ``bench/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.common import (
    RESULTS_DIR,
    BenchError,
    configure_logging,
    dev_server,
    machine_info,
    mendline_worker,
    pipeline_spec,
    run_pipeline,
    server_address,
)
from bench.dags import fan_out_in
from models.settings import Settings

log = logging.getLogger("bench.throughput")

PIPELINE = fan_out_in(8)
"""extract → part0..part7 → join: 10 tasks."""


@dataclass
class LevelResult:
    """Throughput of one (mode, concurrency) combination."""

    mode: str
    concurrency: int
    runs: int
    wall_s: float
    latencies_s: list[float]

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.wall_s

    @property
    def tasks_per_s(self) -> float:
        return self.runs_per_s * len(PIPELINE)

    def percentile(self, fraction: float) -> float:
        """Latency at ``fraction`` (0..1) of the sorted run latencies."""
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "runs": self.runs,
            "tasks_per_run": len(PIPELINE),
            "wall_s": self.wall_s,
            "runs_per_s": self.runs_per_s,
            "tasks_per_s": self.tasks_per_s,
            "latency_median_s": statistics.median(self.latencies_s),
            "latency_p95_s": self.percentile(0.95),
        }


async def run_level(
    client: Client, settings: Settings, spec: dict[str, Any], concurrency: int, runs: int
) -> tuple[float, list[float]]:
    """Start ``runs`` pipeline runs with at most ``concurrency`` in flight.

    Returns:
        Wall time of the whole batch and each run's latency, in seconds.
    """
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            await run_pipeline(client, settings, spec)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return time.perf_counter() - start, latencies


async def measure(levels: list[int], modes: list[str], runs: int | None) -> list[LevelResult]:
    """Every (mode, level) combination on one dev server and one worker."""
    results: list[LevelResult] = []
    async with dev_server() as env, mendline_worker(server_address(env)) as (client, settings):
        for mode in modes:
            spec = pipeline_spec(f"bench-throughput-{mode}", PIPELINE, mode)
            await run_level(client, settings, spec, 5, 10)  # warm-up
            for level in levels:
                count = runs or max(20, 4 * level)
                wall, latencies = await run_level(client, settings, spec, level, count)
                result = LevelResult(mode, level, count, wall, latencies)
                log.info(
                    "%-8s concurrency %3d: %4d runs in %6.2f s = %6.2f runs/s (%.0f tasks/s)",
                    mode,
                    level,
                    count,
                    wall,
                    result.runs_per_s,
                    result.tasks_per_s,
                )
                results.append(result)
    return results


def render_markdown(results: list[LevelResult]) -> str:
    """The results as one markdown table."""
    lines = [
        "| mode | concurrent runs | runs | wall (s) | runs/s | tasks/s | median latency (s) "
        "| p95 latency (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        data = result.as_json()
        lines.append(
            f"| {result.mode} | {result.concurrency} | {result.runs} | {result.wall_s:.2f} "
            f"| {result.runs_per_s:.2f} | {result.tasks_per_s:.0f} "
            f"| {data['latency_median_s']:.3f} | {data['latency_p95_s']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def int_list(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--levels", type=int_list, default=[1, 10, 50], help="concurrent runs")
    parser.add_argument(
        "--modes",
        default=["local", "activity"],
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        help="task modes to measure: local, activity",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per level (default 4×level, ≥20)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "throughput.json")
    args = parser.parse_args(argv)
    bad = [mode for mode in args.modes if mode not in ("local", "activity")]
    if bad:
        parser.error(f"unknown modes {bad}; use local and/or activity")
    if not args.levels or min(args.levels) < 1:
        parser.error("--levels needs positive integers, e.g. 1,10,50")
    return args


async def main_async(args: argparse.Namespace) -> int:
    info = {"start": machine_info()}
    results = await measure(args.levels, args.modes, args.runs)
    info["end"] = machine_info()
    report = {
        "benchmark": "throughput",
        "command": " ".join([Path(sys.executable).name, "-m", "bench.throughput", *sys.argv[1:]]),
        "machine": info,
        "pipeline": {"tasks": len(PIPELINE), "shape": "1 -> 8 parallel -> 1", "type": "noop"},
        "workers": 1,
        "results": [result.as_json() for result in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(render_markdown(results))
    sys.stdout.write(f"\nJSON written to {args.output}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        return asyncio.run(main_async(args))
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
