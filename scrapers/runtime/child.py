"""Entry point of the sandbox process.

Reads ``{"spec": {...}, "pages": [{"url", "body", "content_type"}], "memory_bytes": N,
"cpu_seconds": N}`` as JSON on stdin, limits its own address space and CPU time first,
then extracts every page and writes ``{"pages": [{"records": [...]} | {"error": "..."}]}``
as JSON on stdout. Exit status 3 means the memory limit was hit.

``scrapers.sandbox`` runs it with ``python -c``, bundled with the standalone runtime the
way ``scrapers.render`` bundles generated scrapers, so the child imports neither Mendline
nor pydantic and stays small. ``python -m scrapers.runtime.child`` works too.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

from scrapers.errors import ScraperError
from scrapers.runtime.engine import compile_spec, extract

EXIT_MEMORY = 3
EXIT_BAD_INPUT = 4


def _limit(memory_bytes: int | None, cpu_seconds: int | None) -> None:
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Extract every page of ``job``; per-page failures are reported, not raised."""
    plan = compile_spec(job["spec"])
    results: list[dict[str, Any]] = []
    for page in job["pages"]:
        try:
            records = extract(plan, page["body"], page["url"], charset=page.get("content_type"))
            results.append({"records": records})
        except ScraperError as exc:
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    return {"pages": results}


def main() -> int:
    """Run one sandbox job from stdin."""
    try:
        job = json.loads(sys.stdin.buffer.read())
        _limit(job.get("memory_bytes"), job.get("cpu_seconds"))
    except (ValueError, KeyError, OSError) as exc:
        sys.stderr.write(f"bad sandbox job: {exc}\n")
        return EXIT_BAD_INPUT
    try:
        output = json.dumps(run(job), ensure_ascii=False)
    except MemoryError:
        os.write(2, b"memory limit reached\n")
        return EXIT_MEMORY
    except Exception as exc:  # reported to the parent, which raises SandboxCrashError
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
