"""Run extraction of untrusted pages with a candidate spec in a separate, limited process.

Specs are data, never code, but the pages are untrusted and a spec's regex can still
backtrack for ever, so staging validation extracts in a child process
(``scrapers.runtime.child``) that limits its own address space (``RLIMIT_AS``) and CPU
time (``RLIMIT_CPU``) and is killed at a wall-time deadline. A fresh interpreter rather
than ``fork``: the caller is usually a multi-threaded worker, where forking is unsafe. The
child runs the standalone runtime bundled as for generated scrapers, so it imports nothing
of Mendline's.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.scraper import Page, ScraperSpec
from scrapers.errors import SandboxCrashError, SandboxMemoryError, SandboxTimeoutError
from scrapers.render import RUNTIME_MODULES, runtime_source
from scrapers.runtime.child import EXIT_MEMORY

logger = logging.getLogger(__name__)

CHILD_MODULE = Path(__file__).resolve().parent / "runtime" / "child.py"
DEFAULT_WALL_SECONDS = 30.0
DEFAULT_MEMORY_BYTES = 1024 * 1024 * 1024
"""Address-space limit; Python with selectolax needs about 100 MB before any page."""
_STDERR_SHOWN = 2000


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed extraction.

    Attributes:
        wall_seconds: Killed after this long.
        memory_bytes: ``RLIMIT_AS`` of the child.
        cpu_seconds: ``RLIMIT_CPU`` of the child (default: the wall time, rounded up).
    """

    wall_seconds: float = DEFAULT_WALL_SECONDS
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    cpu_seconds: int | None = None


@dataclass
class PageOutcome:
    """What extraction gave for one page: records, or the error that stopped it."""

    url: str
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def extract_isolated(
    spec: ScraperSpec, pages: list[Page], limits: SandboxLimits | None = None
) -> list[PageOutcome]:
    """Extract ``pages`` with ``spec`` in a limited child process.

    Args:
        spec: The candidate spec.
        pages: The pages (already fetched).
        limits: Time and memory limits.

    Returns:
        One outcome per page, in order; a page the runtime refuses (too large, not JSON)
        has ``error`` set.

    Raises:
        SandboxTimeoutError: The wall-time or CPU limit was reached.
        SandboxMemoryError: The memory limit was reached.
        SandboxCrashError: The process failed otherwise (signal, bad output).
    """
    limits = limits or SandboxLimits()
    cpu = limits.cpu_seconds or int(limits.wall_seconds) + 1
    job = {
        "spec": spec.model_dump(mode="json", exclude={"meta"}),
        "pages": [page.model_dump(mode="json") for page in pages],
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": cpu,
    }
    command = [sys.executable, "-c", child_program()]
    try:
        completed = subprocess.run(
            command,
            input=json.dumps(job).encode(),
            capture_output=True,
            timeout=limits.wall_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SandboxTimeoutError(
            f"extraction with spec {spec.name} ({spec.sha256()[:12]}) on {len(pages)} page(s) "
            f"ran longer than {limits.wall_seconds:g}s and was killed; check the spec's regex "
            f"transforms or try fewer pages"
        ) from exc
    stderr = completed.stderr.decode(errors="replace")[-_STDERR_SHOWN:]
    if completed.returncode == EXIT_MEMORY or "MemoryError" in stderr:
        raise SandboxMemoryError(
            f"extraction with spec {spec.name} exceeded the {limits.memory_bytes // 2**20} MB "
            f"memory limit on {len(pages)} page(s); the pages may be hostile or too large"
        )
    if completed.returncode == -signal.SIGXCPU:
        raise SandboxTimeoutError(
            f"extraction with spec {spec.name} used more than {cpu}s of CPU and was stopped"
        )
    if completed.returncode != 0:
        reason = (
            f"signal {signal.Signals(-completed.returncode).name}"
            if completed.returncode < 0
            else f"exit status {completed.returncode}"
        )
        raise SandboxCrashError(
            f"sandboxed extraction with spec {spec.name} failed with {reason}: "
            f"{stderr.strip() or 'no message'}"
        )
    try:
        output = json.loads(completed.stdout)
    except ValueError as exc:
        raise SandboxCrashError(f"sandbox returned unreadable output ({exc})") from exc
    return [
        PageOutcome(url=page.url, records=item.get("records") or [], error=item.get("error"))
        for page, item in zip(pages, output["pages"], strict=True)
    ]


@lru_cache(maxsize=1)
def child_program() -> str:
    """Source of the sandbox process: the standalone runtime plus ``runtime/child.py``."""
    imports, body = runtime_source((*RUNTIME_MODULES, CHILD_MODULE))
    return f"{imports}\n\n{body}"
