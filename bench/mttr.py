"""Self-repair MTTR: how long a source stays broken after its site is redesigned.

The goal is "a redesign repaired by the heuristic doctor in ≤ 10 s". For each demo site with
a layout-2 redesign (books, catalog, news, shop; spa too when Chromium is installed, since it
needs rendering), each repetition:

1. onboards a new source (interval 1 h), which starts its ``SourceSupervisor``;
2. waits for the supervisor's first run and sends ``run_now`` once more, so the baseline has
   two good runs;
3. switches the site to layout 2 and sends ``run_now``;
4. follows the supervisor (``health`` query) until that run, the ``DoctorRepair`` it starts
   and the follow-up run are over. A repair that waits for a person is approved at once by
   the bench (approver ``bench``), and that is reported as its outcome.

Timed from the database and the workflows, on the one clock of this machine:

* **broken run end → promoted** — ``ended_at`` of the first broken run (its
  ``source_runs`` row) to the ``version_promoted`` event of the repaired version;
* **run_now → records flowing** — the ``run_now`` update to the end of the follow-up run
  that extracted records again with verdict ``ok``;
* the pieces: run_now → broken run end (the run itself) and, when a person was asked,
  broken run end → approval requested.

Supervisors before commit 1607499 reported ``busy`` false for a moment after a drifted run
ended, while they stored its health transition and before the repair started; the bench
still waits up to :data:`REPAIR_START_GRACE_S` for a repair before it records "no repair",
and counts the repetitions where it saw that gap (``idle_before_repair_seen``).

LLM tokens are 0 by construction: the doctor's patch is :func:`scrapers.repair_spec`, and
nothing on the repair path (``workflows/doctor.py``, ``activities/supervision.py``,
``scrapers/``) calls a language model (Mendline's LLM providers, ``activities/agent``, write
pipeline remediation plans only). The bench checks it: an audit hook records every socket
this process (worker included) connects while repairs run, and the report lists them — only
the demo site's address is expected.

Usage (from the repository root)::

    .venv/bin/python -m bench.mttr [--runs 3] [--sites books,catalog,news,shop]

Writes a markdown table to stdout and everything to ``bench/results/mttr.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.sources_store import SourceStore
from activities.storage import Database
from bench.common import (
    RESULTS_DIR,
    RUN_TIMEOUT,
    BenchError,
    configure_logging,
    dev_server,
    machine_info,
    server_address,
)
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.breakage import DRIFT_KINDS
from models.settings import Settings
from models.sources import (
    OnboardingStep,
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
)
from models.supervisor import (
    RepairState,
    RepairStep,
    RunNowRequest,
    RunTicket,
    SupervisorView,
    supervisor_id,
)
from workers.client import connect
from workers.demo_server import DemoServer
from workers.worker import create_worker

log = logging.getLogger("bench.mttr")

GOAL_S = 10.0
"""The issue's target: broken run end → repaired version promoted."""
SETTLE_TIMEOUT_S = 180.0
"""A run plus repair plus follow-up that takes longer than this is hung, not slow."""
POLL_S = 0.05
REPAIR_START_GRACE_S = 5.0
"""How long a drifted run may sit without a repair before the bench records "no repair"."""


@dataclass(frozen=True)
class Site:
    """A demo site with a redesign."""

    key: str
    path: str
    description: str
    rendered: bool = False


SITES = {
    "books": Site("books", "/sites/books/", "HTML listing, hashed classes in v2"),
    "catalog": Site("catalog", "/sites/catalog/api/products", "JSON API, new envelope in v2"),
    "news": Site("news", "/sites/news/", "HTML listing, 3 pages, new markup in v2"),
    "shop": Site("shop", "/sites/shop/", "HTML index of product links"),
    "spa": Site("spa", "/sites/spa/", "script-built page (browser)", rendered=True),
}


@dataclass
class Repetition:
    """One redesign and its repair."""

    site: str
    source: str
    outcome: str = "no repair"
    reason: str = ""
    broken_verdict: str = ""
    broken_reasons: list[str] = field(default_factory=list)
    lost_fields: list[str] = field(default_factory=list)
    anchored_fields: list[str] = field(default_factory=list)
    confidence: float | None = None
    approval_reasons: list[str] = field(default_factory=list)
    fields_kept: bool | None = None
    followup_verdict: str = ""
    followup_records: int = 0
    detect_s: float | None = None
    broken_to_approval_s: float | None = None
    broken_to_promoted_s: float | None = None
    broken_to_report_s: float | None = None
    run_now_to_flowing_s: float | None = None
    idle_before_repair_seen: bool = False
    """The health query said "not busy" after the broken run, then a repair started."""

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SocketLog:
    """Every address this process connects a socket to, while ``on`` (an audit hook)."""

    def __init__(self) -> None:
        self.on = False
        self.connects: Counter[str] = Counter()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.on and event == "socket.connect":
            address = args[1]
            self.connects[
                ":".join(map(str, address[:2])) if isinstance(address, tuple) else str(address)
            ] += 1


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def cycle_of(run: ScrapeStats) -> int:
    """The supervisor cycle of a supervised run (``source/<n>/run/<incarnation>-<cycle>``)."""
    tail = run.run_id.rsplit("/", 1)[-1]
    try:
        return int(tail.rsplit("-", 1)[-1])
    except ValueError:
        return -1


async def health(handle: WorkflowHandle[Any, Any]) -> SupervisorView:
    view: SupervisorView = await handle.query("health", result_type=SupervisorView)
    return view


async def settle(handle: WorkflowHandle[Any, Any], cycle: int) -> SupervisorView:
    """Wait until run ``cycle`` and whatever it started are over."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        view = await health(handle)
        if view.last_run and view.last_run.cycle >= cycle and not view.busy:
            return view
        if time.monotonic() > deadline:
            raise BenchError(f"{handle.id} did not settle on cycle {cycle}: {view}")
        await asyncio.sleep(POLL_S)


async def layout(http: httpx.AsyncClient, site: str, number: int) -> None:
    response = await http.post("/sites/_admin/layout", json={"site": site, "layout": number})
    response.raise_for_status()


async def onboard(client: Client, settings: Settings, name: str, url: str) -> None:
    """Onboard a source (interval 1 h); raise unless it is active and supervised."""
    state: SourceOnboardingState = await client.execute_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=url, interval_seconds=3600)),
        id=f"source/{name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
        execution_timeout=RUN_TIMEOUT,
    )
    if state.step != OnboardingStep.DONE or not state.active or not state.supervisor:
        raise BenchError(f"onboarding {name} ({url}) ended {state.step}: {state.error}")


def repair_may_follow(view: SupervisorView, repairs_before: int) -> bool:
    """The last run drifted but no repair has started (yet)."""
    run = view.last_run
    return (
        run is not None
        and run.verdict == "broken"
        and run.kind in DRIFT_KINDS
        and view.repairs == repairs_before
        and view.breaker.allowed
    )


async def approve_if_asked(
    client: Client, view: SupervisorView, rep: Repetition
) -> datetime | None:
    """Approve a repair that waits for a person, as one would at once.

    Returns:
        When the repair asked for the approval (workflow time), or None if it is not waiting.
    """
    if not view.open_repair:
        return None
    repair = client.get_workflow_handle(view.open_repair)
    try:
        state: RepairState = await repair.query("state", result_type=RepairState)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None  # the supervisor names the repair just before the child starts
        raise
    if state.step != RepairStep.AWAITING_APPROVAL:
        return None
    status: ApprovalStatus = await repair.query("approval", result_type=ApprovalStatus)
    if status.pending is None:
        return None
    rep.approval_reasons = state.decision.reasons if state.decision else []
    rep.lost_fields = list(state.patch.lost_fields) if state.patch else []
    await repair.execute_update(
        "approve",
        ApprovalDecision(
            request_id=status.pending.request_id, approver="bench", reason="MTTR benchmark"
        ),
        result_type=ApprovalOutcome,
    )
    return status.pending.requested_at or datetime.now(UTC)


async def one_repetition(
    client: Client,
    settings: Settings,
    store: SourceStore,
    http: httpx.AsyncClient,
    demo_url: str,
    site: Site,
    sockets: SocketLog,
) -> Repetition:
    """Onboard, break, repair and follow one source; the timings come from the store."""
    name = f"mttr-{site.key}-{uuid.uuid4().hex[:8]}"
    rep = Repetition(site=site.key, source=name)
    await layout(http, site.key, 1)
    await onboard(client, settings, name, demo_url + site.path)
    handle = client.get_workflow_handle(supervisor_id(name))
    try:
        first = await settle(handle, 1)
        ticket: RunTicket = await handle.execute_update(
            "run_now", RunNowRequest(reason="second baseline run"), result_type=RunTicket
        )
        second = await settle(handle, ticket.cycle)
        for view in (first, second):
            if not view.last_run or view.last_run.verdict != "ok":
                raise BenchError(f"{name}: a baseline run was not ok: {view.last_run}")
        fields_before = set((await asyncio.to_thread(store.records, name, None, 1))[0])

        await layout(http, site.key, 2)
        sockets.on = True
        asked_at = datetime.now(UTC)
        ticket = await handle.execute_update(
            "run_now", RunNowRequest(reason="after the redesign"), result_type=RunTicket
        )
        approval_requested: datetime | None = None
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        quiet_since: float | None = None
        while True:
            view = await health(handle)
            if view.last_run and view.last_run.cycle >= ticket.cycle and not view.busy:
                if not repair_may_follow(view, second.repairs):
                    break
                # A drifted run with no repair yet: older supervisors said "not busy" here
                # while storing the health change (see the module docstring); wait a moment
                # for the repair rather than read that as "no repair".
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > REPAIR_START_GRACE_S:
                    break
            elif quiet_since is not None:
                quiet_since = None
                rep.idle_before_repair_seen = True
            if approval_requested is None:
                approval_requested = await approve_if_asked(client, view, rep)
            if time.monotonic() > deadline:
                raise BenchError(f"{name} did not settle after the redesign: {view}")
            await asyncio.sleep(POLL_S)
        sockets.on = False
    finally:
        with contextlib.suppress(Exception):
            await handle.terminate(reason="benchmark repetition over")
        await layout(http, site.key, 1)

    runs = {cycle_of(r): r for r in await asyncio.to_thread(store.runs, name, 20)}
    broken = runs.get(ticket.cycle)
    events = [e for e in await asyncio.to_thread(store.events, name) if e.at >= asked_at]
    promoted = next((e for e in events if e.kind == "version_promoted"), None)
    degraded = next((e for e in events if e.kind == "health_changed"), None)
    started = next((e for e in events if e.kind == "repair_started"), None)
    rep.broken_reasons = (
        [str(started.detail.get("trigger", ""))]
        if started
        else [str(degraded.detail.get("reason", ""))]
        if degraded
        else []
    )
    rep.detect_s = seconds(broken.ended_at if broken else None, asked_at)
    if approval_requested is not None and broken is not None:
        rep.broken_to_approval_s = seconds(approval_requested, broken.ended_at)
    report = view.last_repair
    if report is not None and view.repairs >= 1:
        rep.outcome = report.outcome + (" after approval" if approval_requested else "")
        rep.reason = report.reason
        rep.lost_fields = rep.lost_fields or list(report.lost_fields)
        rep.anchored_fields = list(report.anchored_fields)
        rep.confidence = report.confidence
        rep.broken_to_report_s = seconds(report.ended_at, broken.ended_at if broken else None)
    if promoted is not None and broken is not None:
        rep.broken_to_promoted_s = seconds(promoted.at, broken.ended_at)
    last = view.last_run
    if last is not None and last.cycle > ticket.cycle:
        rep.followup_verdict = last.verdict
        rep.followup_records = last.records
        follow = runs.get(last.cycle)
        if last.verdict == "ok" and last.records > 0 and follow is not None:
            rep.run_now_to_flowing_s = seconds(follow.ended_at, asked_at)
            after = await asyncio.to_thread(store.records, name, None, 1)
            rep.fields_kept = bool(after) and set(after[0]) == fields_before
    elif last is not None:
        rep.broken_verdict = last.verdict
    if broken is not None:
        rep.broken_verdict = rep.broken_verdict or ("held" if broken.held else broken.status)
    return rep


async def measure(
    sites: list[Site], runs: int, host_rate_limit: float, sockets: SocketLog
) -> list[Repetition]:
    """Every repetition on one dev server, one worker and one demo server."""
    results: list[Repetition] = []
    with (
        tempfile.TemporaryDirectory(prefix="mendline-bench-") as data_dir,
        DemoServer().start() as demo,
    ):
        async with dev_server() as env, httpx.AsyncClient(base_url=demo.url) as http:
            address = server_address(env)
            settings = Settings(
                data_dir=Path(data_dir),
                temporal_address=address,
                task_queue=f"bench-mttr-{uuid.uuid4().hex[:8]}",
                allow_private_networks=True,  # the demo sites listen on 127.0.0.1
                host_rate_limit=host_rate_limit,
            )
            client = await connect(settings, address=address)
            store = SourceStore(Database(settings.resolved_database_url))
            async with create_worker(client, settings):
                for site in sites:
                    for number in range(runs):
                        rep = await one_repetition(
                            client, settings, store, http, demo.url, site, sockets
                        )
                        log.info(
                            "%-8s %d/%d %s: broken→promoted %s s, run_now→flowing %s s",
                            site.key,
                            number + 1,
                            runs,
                            rep.outcome,
                            rep.broken_to_promoted_s,
                            rep.run_now_to_flowing_s,
                        )
                        results.append(rep)
    return results


def spread(values: list[float | None]) -> str:
    """``median (min – max)`` of the values that exist, or ``-``."""
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    if len(found) == 1:
        return f"{found[0]:.2f}"
    return f"{statistics.median(found):.2f} ({min(found):.2f} – {max(found):.2f})"


def summarise(results: list[Repetition]) -> list[dict[str, Any]]:
    """Per site: outcomes and median/min/max of each timing."""
    rows = []
    for key in dict.fromkeys(r.site for r in results):
        reps = [r for r in results if r.site == key]
        promoted = [r.broken_to_promoted_s for r in reps if r.broken_to_promoted_s is not None]
        rows.append(
            {
                "site": key,
                "runs": len(reps),
                "outcomes": dict(Counter(r.outcome for r in reps)),
                "lost_fields": sorted({f for r in reps for f in r.lost_fields}),
                "approval_reasons": sorted({a for r in reps for a in r.approval_reasons}),
                "fields_kept": all(r.fields_kept for r in reps),
                "detect_s": spread([r.detect_s for r in reps]),
                "broken_to_approval_s": spread([r.broken_to_approval_s for r in reps]),
                "broken_to_promoted_s": spread(list(promoted)),
                "run_now_to_flowing_s": spread([r.run_now_to_flowing_s for r in reps]),
                "goal_met": bool(promoted) and statistics.median(promoted) <= GOAL_S,
                "idle_before_repair_seen": sum(r.idle_before_repair_seen for r in reps),
            }
        )
    return rows


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as one markdown table (seconds: median (min – max))."""
    lines = [
        "| site | runs | outcome | lost fields | run_now → broken run end | broken → approval "
        "asked | **broken run end → promoted** | run_now → records flowing | ≤ 10 s |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        outcomes = ", ".join(f"{k} ×{v}" for k, v in row["outcomes"].items())
        goal = (
            "not repaired"
            if row["broken_to_promoted_s"] == "-"
            else "met"
            if row["goal_met"]
            else "MISSED"
        )
        lines.append(
            f"| {row['site']} | {row['runs']} | {outcomes} | {', '.join(row['lost_fields']) or '-'} "
            f"| {row['detect_s']} | {row['broken_to_approval_s']} | {row['broken_to_promoted_s']} "
            f"| {row['run_now_to_flowing_s']} | {goal} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mttr", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions per site")
    parser.add_argument(
        "--sites",
        default="books,catalog,news,shop,spa",
        help="comma-separated demo sites (spa is skipped without Chromium)",
    )
    parser.add_argument(
        "--host-rate-limit",
        type=float,
        default=Settings.model_fields["host_rate_limit"].default,
        help="requests per second to one host (default: Mendline's default)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "mttr.json")
    args = parser.parse_args(argv)
    unknown = set(args.sites.split(",")) - set(SITES)
    if args.runs < 1 or unknown:
        parser.error(f"--runs must be ≥ 1 and --sites among {', '.join(SITES)}")
    return args


async def main_async(args: argparse.Namespace) -> int:
    chromium = Path(Settings().chromium_path)
    sites = [SITES[key] for key in args.sites.split(",")]
    skipped = [s.key for s in sites if s.rendered and not chromium.is_file()]
    if skipped:
        log.warning("skipping %s: no Chromium at %s", ", ".join(skipped), chromium)
    sites = [s for s in sites if s.key not in skipped]
    sockets = SocketLog()
    info = {"start": machine_info()}
    results = await measure(sites, args.runs, args.host_rate_limit, sockets)
    info["end"] = machine_info()
    rows = summarise(results)
    report = {
        "benchmark": "mttr",
        "command": " ".join([Path(sys.executable).name, "-m", "bench.mttr", *sys.argv[1:]]),
        "machine": info,
        "goal": {"broken_run_end_to_promoted_s": GOAL_S},
        "host_rate_limit": args.host_rate_limit,
        "skipped_sites": skipped,
        "llm_tokens": 0,
        "idle_before_repair_seen": sum(r.idle_before_repair_seen for r in results),
        "sockets_opened_during_repairs": dict(sockets.connects),
        "summary": rows,
        "repetitions": [r.as_json() for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    sys.stdout.write(render_markdown(rows))
    sys.stdout.write(
        "\nLLM tokens on heuristic repairs: 0. Sockets opened while repairs ran: "
        + (", ".join(f"{k} ×{v}" for k, v in sockets.connects.items()) or "none")
        + f"\nRepetitions where `health` said not busy after the broken run before its repair "
        f"started: {sum(r.idle_before_repair_seen for r in results)} of {len(results)}"
        + f"\nJSON written to {args.output}\n"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    for noisy in ("mendline.demo_server", "httpx", "activities", "scrapers", "workers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(main_async(args))
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
