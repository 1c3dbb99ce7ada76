"""Process and machine figures for the benchmarks, read from ``/proc``, and py-spy profiles.

Linux only: resident set size and CPU time of a process, the time its threads spent
runnable but waiting for a core (``schedstat``), the machine's busy share, and a summary of
a py-spy ``raw`` (collapsed stacks) profile.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY_S = 2.0
"""How often the benchmarks sample their processes."""


def proc_sample(pid: int) -> tuple[int, int, float]:
    """(RSS bytes, peak RSS bytes, CPU seconds) of a live process, from ``/proc``."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss = int(fields["VmRSS"].split()[0]) * 1024
    hwm = int(fields["VmHWM"].split()[0]) * 1024
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime + stime
    return rss, hwm, cpu


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's live threads have spent runnable but waiting for a CPU."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended between listing and reading
    return total / 1e9


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank value at ``fraction`` (0..1) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def distribution(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 3),
        "p95": round(percentile(values, 0.95), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


PROFILE_GROUPS = {
    "workflow sandbox (temporalio.worker.workflow_sandbox)": "workflow_sandbox",
    "workflow code (workflows/)": "workflows/",
    "Temporal worker, workflow side (temporalio/worker/_workflow*)": "worker/_workflow",
    "Temporal activity worker (temporalio/worker/_activity)": "worker/_activity",
    "payload conversion (pydantic + temporalio converter)": "converter",
    "pydantic": "pydantic",
    "SQLAlchemy": "sqlalchemy",
    "SQLite (sqlite3)": "sqlite3",
    "extraction (scrapers/)": "scrapers/",
    "HTTP client (httpx/httpcore/h11)": "http",
    "asyncio event loop": "asyncio/",
}
"""Inclusive groups of the worker's CPU profile: a sample counts in every group one of its
frames matches (so groups overlap and do not add up to 100 %)."""


def summarise_profile(path: Path) -> dict[str, Any]:
    """Top self-time frames and inclusive groups of a py-spy ``raw`` (collapsed) profile."""
    own: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for name, needle in PROFILE_GROUPS.items():
            if any(needle in frame for frame in frames):
                groups[name] += count
    share = (lambda n: round(n / total, 3)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "inclusive_share": {name: share(n) for name, n in groups.most_common()},
        "top_self": [[frame, share(n)] for frame, n in own.most_common(15)],
    }


async def profile_worker(py_spy: str, pid: int, delay: float, seconds: int, out: Path) -> None:
    """Record ``seconds`` of the worker's GIL-holding stacks with py-spy after ``delay``."""
    await asyncio.sleep(delay)
    process = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "50",
        "--gil",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await process.wait()


@dataclass
class Process:
    """A process whose memory and CPU are sampled."""

    name: str
    pid: int
    rss: list[tuple[float, int]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    peak: int = 0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    wait_start: float = 0.0
    wait_end: float = 0.0

    def sample(self, at: float) -> None:
        rss, hwm, cpu = proc_sample(self.pid)
        wait = runqueue_wait_s(self.pid)
        if not self.rss:
            self.cpu_start, self.wait_start = cpu, wait
        self.rss.append((at, rss))
        self.cpu.append((at, cpu))
        self.peak, self.cpu_end, self.wait_end = max(self.peak, hwm), cpu, wait

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds used between two moments of the window (nearest samples)."""
        inside = [cpu for at, cpu in self.cpu if start <= at <= end]
        return inside[-1] - inside[0] if len(inside) > 1 else 0.0

    def summary(self, wall_s: float) -> dict[str, Any]:
        half = [rss for at, rss in self.rss if at >= wall_s / 2] or [rss for _, rss in self.rss]
        return {
            "pid": self.pid,
            "peak_rss_mb": round(self.peak / 2**20, 1),
            "steady_rss_mb": round(statistics.median(half) / 2**20, 1),
            "rss_mb_every_30s": [
                round(rss / 2**20) for at, rss in self.rss if int(at) % 30 < SAMPLE_EVERY_S
            ],
            "cpu_s": round(self.cpu_end - self.cpu_start, 1),
            "cpu_share_of_one_core": round((self.cpu_end - self.cpu_start) / wall_s, 3),
            # Threads of this process that were ready to run but waited for a core, on
            # average: CPU the process wanted and did not get.
            "runqueue_wait_share": round(max(0.0, self.wait_end - self.wait_start) / wall_s, 3),
        }
