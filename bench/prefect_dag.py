"""Run the benchmark DAGs as Prefect 3 flows; print wall times as JSON on stdout.

Runs under the separate virtualenv ``bench/.venv-prefect`` (bench/requirements-prefect.txt,
kept out of Mendline's environment), started by ``bench/orchestration.py`` from the
repository root::

    bench/.venv-prefect/bin/python -m bench.prefect_dag --shapes A,B --runs 3

Prefect's own defaults throughout: the ephemeral local API server, the default
(thread-pool) task runner, ``.submit()`` with ``wait_for=`` so independent chains run in
parallel. Console logging is turned down to WARNING by the caller, which only helps Prefect.
The first flow run starts the ephemeral server; it is reported separately as ``startup_s``
and is followed by one untimed warm-up run per shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from prefect import __version__ as prefect_version  # type: ignore[import-not-found]
from prefect import flow, task

from bench.dags import SHAPES, Dag


def noop(name: str) -> str:
    """The task body: do nothing."""
    return name


# Called as functions, not used as decorators: Prefect is not installed where mypy runs.
noop_task: Any = task(noop, name="noop")


def run_dag(dag: Dag) -> int:
    """Submit every task with its upstream futures as ``wait_for`` and wait for all."""
    futures: dict[str, Any] = {}
    for name, deps in dag.items():
        futures[name] = noop_task.submit(name, wait_for=[futures[dep] for dep in deps])
    for future in futures.values():
        future.result()
    return len(futures)


dag_flow: Any = flow(run_dag, name="bench-dag", log_prints=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="A,B", help="comma-separated shape keys")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per shape")
    args = parser.parse_args(argv)
    keys = [key.strip() for key in args.shapes.split(",") if key.strip()]
    unknown = [key for key in keys if key not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; known: {sorted(SHAPES)}")

    first = time.perf_counter()
    dag_flow({"t0": []})
    result: dict[str, Any] = {
        "prefect_version": prefect_version,
        "startup_s": time.perf_counter() - first,
        "shapes": {},
    }
    for key in keys:
        dag = SHAPES[key].dag
        dag_flow(dag)  # warm-up
        runs = []
        for _ in range(args.runs):
            start = time.perf_counter()
            count = dag_flow(dag)
            runs.append(time.perf_counter() - start)
            if count != len(dag):
                raise RuntimeError(f"shape {key}: flow ran {count} tasks, expected {len(dag)}")
        result["shapes"][key] = {"runs_s": runs, "median_s": statistics.median(runs)}
    # The JSON is the last line of stdout; everything else Prefect prints goes before it.
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
