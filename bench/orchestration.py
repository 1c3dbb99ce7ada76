"""Per-task orchestration overhead: Mendline vs a bare Temporal workflow, Prefect and Python.

Runs two 200-task DAGs of no-op tasks — (A) 10 parallel chains of 20, (B) one chain of
200 — on each system, and reports the median wall time of N runs (after one warm-up), the
per-task overhead (median / 200) and the ratios the project's goals are stated in:

* Mendline / floor ≤ 1.3 (Mendline ``mode: local`` vs the bare workflow with local
  activities; ``mode: activity`` vs the bare workflow with regular activities);
* Prefect / Mendline > 1 on both shapes, ≥ 5 with local activities.

Usage (from the repository root; ``make bench`` runs it)::

    .venv/bin/python -m bench.orchestration [--runs 3] [--shapes A,B] [--skip-prefect]

Writes a markdown table to stdout and everything to ``bench/results/orchestration.json``.
Prefect runs in its own virtualenv, ``bench/.venv-prefect`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from bench.common import (
    REPO_ROOT,
    RESULTS_DIR,
    RUN_TIMEOUT,
    BenchError,
    Timing,
    configure_logging,
    dev_server,
    machine_info,
    mendline_worker,
    pipeline_spec,
    run_pipeline,
    server_address,
)
from bench.dags import SHAPES, Dag, Shape
from bench.floor import FloorInput, FloorWorkflow, noop
from models.settings import Settings

log = logging.getLogger("bench.orchestration")

PREFECT_PYTHON = REPO_ROOT / "bench" / ".venv-prefect" / "bin" / "python"
PREFECT_TIMEOUT_SECONDS = 3600

MENDLINE_VS_FLOOR_GOAL = 1.3
PREFECT_VS_MENDLINE_GOAL = 1.0
PREFECT_VS_MENDLINE_LOCAL_GOAL = 5.0

# Mendline mode → the floor variant it is held against.
FLOOR_FOR_MODE = {"activity": "regular", "local": "local"}


# --- plain Python --------------------------------------------------------------------------


async def _noop_async(name: str) -> str:
    return name


def _noop(name: str) -> str:
    return name


async def _python_asyncio(dag: Dag) -> None:
    started: dict[str, asyncio.Task[str]] = {}

    async def run_task(name: str, deps: list[str]) -> str:
        for dep in deps:
            await started[dep]
        return await _noop_async(name)

    for name, deps in dag.items():
        started[name] = asyncio.create_task(run_task(name, deps))
    await asyncio.gather(*started.values())


async def _python_sequential(dag: Dag) -> None:
    for name in dag:  # topological order, so a loop respects every dependency
        _noop(name)


# --- measurement ---------------------------------------------------------------------------


async def _measure(timing: Timing, once: Callable[[], Awaitable[None]], runs: int) -> None:
    await once()  # warm-up: imports, sandbox module cache, connections, server caches
    for _ in range(runs):
        start = time.perf_counter()
        await once()
        timing.runs_s.append(time.perf_counter() - start)
    log.info(
        "%-8s %-10s shape %s: median %.3f s (%.2f ms/task)",
        timing.system,
        timing.variant,
        timing.shape,
        timing.median_s,
        timing.per_task_ms,
    )


def _floor_run(
    client: Client, task_queue: str, dag: Dag, local: bool
) -> Callable[[], Awaitable[None]]:
    async def once() -> None:
        count = await client.execute_workflow(
            FloorWorkflow.run,
            FloorInput(dag=dag, local=local),
            id=f"bench-floor/{uuid.uuid4().hex[:10]}",
            task_queue=task_queue,
            execution_timeout=RUN_TIMEOUT,
        )
        if count != len(dag):
            raise BenchError(f"the floor workflow ran {count} tasks, expected {len(dag)}")

    return once


def _mendline_run(
    client: Client, settings: Settings, spec: dict[str, Any]
) -> Callable[[], Awaitable[None]]:
    async def once() -> None:
        await run_pipeline(client, settings, spec)

    return once


async def measure_python(shapes: list[Shape], runs: int) -> list[Timing]:
    """Plain asyncio tasks with the DAG's dependencies, and a sequential loop."""
    timings = []
    for shape in shapes:
        for variant, body in (("asyncio", _python_asyncio), ("sequential", _python_sequential)):
            timing = Timing("python", variant, shape.key, shape.size)

            async def once(
                body: Callable[[Dag], Awaitable[None]] = body, dag: Dag = shape.dag
            ) -> None:
                await body(dag)

            await _measure(timing, once, runs)
            timings.append(timing)
    return timings


async def measure_temporal(shapes: list[Shape], runs: int, skip_mendline: bool) -> list[Timing]:
    """The bare-workflow floor and Mendline's ``PipelineRun`` on one dev server.

    Floor and Mendline runs alternate, so drift in the server (history growth, caches) or
    the machine affects both sides of each ratio alike.
    """
    timings: list[Timing] = []
    async with dev_server() as env:
        address = server_address(env)
        floor_queue = f"bench-floor-{uuid.uuid4().hex[:8]}"
        defaults = Settings()
        # Same slot counts as a Mendline worker, so neither side gets more concurrency.
        floor_worker = Worker(
            env.client,
            task_queue=floor_queue,
            workflows=[FloorWorkflow],
            activities=[noop],
            max_concurrent_activities=defaults.max_concurrent_activities,
            max_concurrent_local_activities=defaults.max_concurrent_local_activities,
        )
        async with floor_worker:
            if skip_mendline:
                for shape in shapes:
                    for mode, floor_variant in FLOOR_FOR_MODE.items():
                        timing = Timing("floor", floor_variant, shape.key, shape.size)
                        once = _floor_run(env.client, floor_queue, shape.dag, mode == "local")
                        await _measure(timing, once, runs)
                        timings.append(timing)
                return timings
            async with mendline_worker(address) as (client, settings):
                for shape in shapes:
                    for mode, floor_variant in FLOOR_FOR_MODE.items():
                        floor = Timing("floor", floor_variant, shape.key, shape.size)
                        mendline = Timing("mendline", mode, shape.key, shape.size)
                        floor_once = _floor_run(env.client, floor_queue, shape.dag, mode == "local")
                        spec = pipeline_spec(f"bench-{shape.key.lower()}-{mode}", shape.dag, mode)
                        mendline_once = _mendline_run(client, settings, spec)
                        await floor_once()
                        await mendline_once()
                        for _ in range(runs):
                            for timing, once in ((floor, floor_once), (mendline, mendline_once)):
                                start = time.perf_counter()
                                await once()
                                timing.runs_s.append(time.perf_counter() - start)
                        for timing in (floor, mendline):
                            log.info(
                                "%-8s %-10s shape %s: median %.3f s (%.2f ms/task)",
                                timing.system,
                                timing.variant,
                                timing.shape,
                                timing.median_s,
                                timing.per_task_ms,
                            )
                        timings += [floor, mendline]
    return timings


def measure_prefect(
    shapes: list[Shape], runs: int, python: Path
) -> tuple[list[Timing], dict[str, Any]]:
    """Run ``bench/prefect_dag.py`` under the Prefect virtualenv and read its JSON.

    Raises:
        BenchError: The virtualenv is missing or the script failed.
    """
    if not python.is_file():
        raise BenchError(
            f"no Prefect virtualenv at {python.parent.parent}; create it with\n"
            "  python3 -m venv bench/.venv-prefect && "
            "bench/.venv-prefect/bin/pip install -r bench/requirements-prefect.txt\n"
            "or pass --skip-prefect"
        )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / "prefect.log"
    with tempfile.TemporaryDirectory(prefix="prefect-home-") as home:
        env = {
            **os.environ,
            "PREFECT_HOME": home,  # a fresh API database, not the user's ~/.prefect
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        command = [
            str(python),
            "-m",
            "bench.prefect_dag",
            "--shapes",
            ",".join(shape.key for shape in shapes),
            "--runs",
            str(runs),
        ]
        log.info("prefect: %s (stderr in %s)", " ".join(command), log_path)
        with log_path.open("w") as stderr:
            done = subprocess.run(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=PREFECT_TIMEOUT_SECONDS,
                check=False,
            )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"the Prefect benchmark exited with {done.returncode}; see {log_path}")
    report: dict[str, Any] = json.loads(lines[-1])
    timings = []
    for shape in shapes:
        timing = Timing("prefect", "default", shape.key, shape.size)
        timing.runs_s = list(report["shapes"][shape.key]["runs_s"])
        log.info(
            "prefect  default    shape %s: median %.3f s (%.2f ms/task)",
            shape.key,
            timing.median_s,
            timing.per_task_ms,
        )
        timings.append(timing)
    meta = {key: value for key, value in report.items() if key != "shapes"}
    return timings, meta


# --- report --------------------------------------------------------------------------------


def _find(timings: list[Timing], system: str, variant: str, shape: str) -> Timing | None:
    for timing in timings:
        if (timing.system, timing.variant, timing.shape) == (system, variant, shape):
            return timing
    return None


def compute_ratios(timings: list[Timing], shapes: list[Shape]) -> dict[str, dict[str, Any]]:
    """The goal ratios per shape; a ratio is None when one side was not measured."""
    ratios: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        row: dict[str, Any] = {}
        prefect = _find(timings, "prefect", "default", shape.key)
        for mode, floor_variant in FLOOR_FOR_MODE.items():
            mendline = _find(timings, "mendline", mode, shape.key)
            floor = _find(timings, "floor", floor_variant, shape.key)
            vs_floor = mendline.median_s / floor.median_s if mendline and floor else None
            vs_prefect = prefect.median_s / mendline.median_s if prefect and mendline else None
            prefect_goal = (
                PREFECT_VS_MENDLINE_LOCAL_GOAL if mode == "local" else PREFECT_VS_MENDLINE_GOAL
            )
            row[f"mendline_{mode}_vs_floor_{floor_variant}"] = {
                "ratio": vs_floor,
                "goal": f"<= {MENDLINE_VS_FLOOR_GOAL}",
                "met": None if vs_floor is None else vs_floor <= MENDLINE_VS_FLOOR_GOAL,
            }
            row[f"prefect_vs_mendline_{mode}"] = {
                "ratio": vs_prefect,
                "goal": f"> {prefect_goal:g}" if mode == "activity" else f">= {prefect_goal:g}",
                "met": None
                if vs_prefect is None
                else (vs_prefect >= prefect_goal if mode == "local" else vs_prefect > prefect_goal),
            }
        ratios[shape.key] = row
    return ratios


def _number(value: float) -> str:
    """Three decimals, or three significant digits for the microsecond-scale Python rows."""
    return f"{value:.3f}" if value >= 0.01 else f"{value:.2e}"


def render_markdown(
    timings: list[Timing], ratios: dict[str, dict[str, Any]], shapes: list[Shape]
) -> str:
    """The results as markdown tables (one per shape, then the ratios)."""
    order = [
        ("floor", "regular"),
        ("floor", "local"),
        ("mendline", "activity"),
        ("mendline", "local"),
        ("prefect", "default"),
        ("python", "asyncio"),
        ("python", "sequential"),
    ]
    labels = {
        ("floor", "regular"): "bare Temporal workflow, regular activities",
        ("floor", "local"): "bare Temporal workflow, local activities",
        ("mendline", "activity"): "Mendline PipelineRun, `mode: activity`",
        ("mendline", "local"): "Mendline PipelineRun, `mode: local`",
        ("prefect", "default"): "Prefect 3, default task runner, `.submit()`",
        ("python", "asyncio"): "plain Python, asyncio tasks",
        ("python", "sequential"): "plain Python, sequential loop",
    }
    out: list[str] = []
    for shape in shapes:
        out += [
            f"### Shape {shape.key}: {shape.title} ({shape.size} no-op tasks)",
            "",
            "| system | median wall (s) | per task (ms) | runs (s) |",
            "|---|---:|---:|---|",
        ]
        for system, variant in order:
            timing = _find(timings, system, variant, shape.key)
            if timing is None:
                continue
            runs = ", ".join(_number(value) for value in timing.runs_s)
            out.append(
                f"| {labels[(system, variant)]} | {_number(timing.median_s)} | "
                f"{_number(timing.per_task_ms)} | {runs} |"
            )
        out.append("")
    out += [
        "### Ratios (median wall time)",
        "",
        "| shape | Mendline activity / floor regular | Mendline local / floor local "
        "| Prefect / Mendline activity | Prefect / Mendline local |",
        "|---|---:|---:|---:|---:|",
    ]
    keys = [
        "mendline_activity_vs_floor_regular",
        "mendline_local_vs_floor_local",
        "prefect_vs_mendline_activity",
        "prefect_vs_mendline_local",
    ]
    for shape in shapes:
        cells = []
        for key in keys:
            entry = ratios[shape.key][key]
            if entry["ratio"] is None:
                cells.append("n/a")
            else:
                mark = "met" if entry["met"] else "MISSED"
                cells.append(f"{entry['ratio']:.2f}× (goal {entry['goal']}: {mark})")
        out.append(f"| {shape.key} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


async def main_async(args: argparse.Namespace) -> int:
    shapes = [SHAPES[key] for key in args.shapes]
    info = {"start": machine_info()}
    timings = await measure_python(shapes, args.runs)
    timings += await measure_temporal(shapes, args.runs, args.skip_mendline)
    prefect_meta: dict[str, Any] = {}
    if not args.skip_prefect:
        # After the Temporal server has stopped, so Prefect has the machine to itself too.
        prefect_timings, prefect_meta = measure_prefect(shapes, args.runs, args.prefect_python)
        timings += prefect_timings
    info["end"] = machine_info()
    ratios = compute_ratios(timings, shapes)
    report = {
        "benchmark": "orchestration",
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.orchestration", *sys.argv[1:]]
        ),
        "machine": info,
        "runs": args.runs,
        "warmups": 1,
        "prefect": prefect_meta,
        "results": [timing.as_json() for timing in timings],
        "ratios": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(render_markdown(timings, ratios, shapes))
    sys.stdout.write(f"\nJSON written to {args.output}\n")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.orchestration", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument(
        "--shapes",
        default="A,B",
        type=lambda text: [key.strip() for key in text.split(",")],
        help="comma-separated shape keys: A (10 chains of 20), B (1 chain of 200)",
    )
    parser.add_argument("--skip-prefect", action="store_true", help="do not run Prefect")
    parser.add_argument(
        "--skip-mendline", action="store_true", help="only the floor, Prefect and Python"
    )
    parser.add_argument("--prefect-python", type=Path, default=PREFECT_PYTHON)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "orchestration.json")
    args = parser.parse_args(argv)
    unknown = [key for key in args.shapes if key not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; known: {sorted(SHAPES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


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
