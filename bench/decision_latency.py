"""Decision latency of the remediation loop with the heuristic agent: failure → plan → verdict.

Two measurements, both with the default heuristic agent and ``examples/policy.yaml``:

* **in process** — the work itself: features from the telemetry database, the failure
  predictor, the agent's plan (runbook and incident retrieval included) and the policy's
  verdict, called as the activities call them;
* **through Temporal** — a real ``Remediation`` workflow on a dev server with a real worker:
  from ``start_workflow`` until the ``decision`` query shows the verdict (queried every
  5 ms, so up to 5 ms of the figure is polling), and, for plans that may run alone, until
  the workflow has finished (the dry-run execution and the five audit entries included;
  plans that wait for a person are terminated after their verdict).

The goal (issue 5) is p50 ≤ 200 ms for failure → plan → verdict::

    .venv/bin/python -m bench.decision_latency --runs 40 --out bench/results/decision_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from activities.agent import plan
from activities.policy import decide
from activities.predictor import features_for, load_model, predict
from activities.storage import Database
from bench.common import configure_logging, dev_server, machine_info, server_address
from models.policy import load_policy
from models.remediation import DecisionState, FailureContext, RemediationInput
from models.settings import Settings
from workers.client import connect
from workers.worker import create_worker

POLICY = Path("examples/policy.yaml")
FAILURES = [
    ("http", "HttpStatusError", "HTTP 503 from https://api.example.com/orders", None),
    ("http", "HttpStatusError", "HTTP 429 Too Many Requests (Retry-After: 30)", None),
    ("http", "HttpStatusError", "HTTP 401 Unauthorized: token expired for ops@example.com", None),
    ("python", "Timeout", "activity timed out (START_TO_CLOSE)", None),
    ("validate", "DataValidationError", "1 of 2 rules failed: row_count(1000..) got 36", None),
    ("scrape", "NoRecordsFoundError", "0 records on HTTP 200", "books"),
    ("sql", "OperationalError", "could not connect to server: Connection refused", None),
    ("http", "HttpTransportError", "connection reset by peer", None),
]


def failure(index: int) -> FailureContext:
    task_type, error_type, message, source = FAILURES[index % len(FAILURES)]
    return FailureContext(
        kind="task",
        pipeline="bench",
        run_id=f"pipeline/bench/{index}",
        task=f"t{index % len(FAILURES)}",
        task_type=task_type,
        source=source,
        error_type=error_type,
        message=message,
        attempts=3,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "n": len(ordered),
    }


async def in_process(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mendline-bench-") as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        database = Database(settings.resolved_database_url)
        policy = load_policy(POLICY)
        times: list[float] = []
        for index in range(runs):
            context = failure(index)
            t0 = time.perf_counter()
            features = features_for(database, context)
            prediction = predict(features, load_model(database))
            outcome = await plan(context, features, prediction, settings, None)
            decide(outcome.plan, prediction, "production", policy)
            times.append(time.perf_counter() - t0)
        database.dispose()
    return percentiles(times[1:] or times)  # the first call loads the runbook index


async def through_temporal(runs: int) -> dict[str, Any]:
    async with dev_server() as env:
        address = server_address(env)
        with tempfile.TemporaryDirectory(prefix="mendline-bench-") as data_dir:
            settings = Settings(
                data_dir=Path(data_dir),
                temporal_address=address,
                task_queue=f"bench-decision-{uuid.uuid4().hex[:8]}",
                policy=POLICY.resolve(),
                metrics_port=0,
            )
            client = await connect(settings, address=address)
            to_verdict: list[float] = []
            to_done: list[float] = []
            async with create_worker(client, settings):
                for index in range(runs + 1):
                    t0 = time.perf_counter()
                    handle = await client.start_workflow(
                        "Remediation",
                        RemediationInput(failure=failure(index), dry_run=True),
                        id=f"remediation/bench/{uuid.uuid4().hex[:8]}",
                        task_queue=settings.task_queue,
                        result_type=DecisionState,
                    )
                    deadline = time.perf_counter() + 60
                    while True:
                        state = await handle.query("decision", result_type=DecisionState)
                        if state.verdict is not None:
                            break
                        if time.perf_counter() > deadline:
                            raise RuntimeError(f"{handle.id}: no verdict within 60 s: {state}")
                        await asyncio.sleep(0.005)
                    verdict_at = time.perf_counter() - t0
                    if index:  # the first run warms the worker up
                        to_verdict.append(verdict_at)
                    if state.verdict.verdict == "needs_approval":
                        # Waits for a person: the decision latency is all there is to time.
                        await handle.terminate("benchmark: no one approves")
                        continue
                    await handle.result()
                    if index:
                        to_done.append(time.perf_counter() - t0)
    return {"to_verdict": percentiles(to_verdict), "to_completion": percentiles(to_done)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configure_logging()
    report = {
        "machine": machine_info(),
        "in_process": await in_process(args.runs),
        "through_temporal": await through_temporal(args.runs),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
