"""Mendline's scraper runtime: extract records with a spec, scout new specs, render them
as standalone Python, and run untrusted extraction in a sandbox.

Public API::

    from scrapers import extract_records, scout, build_spec, render_module, validate_spec

* :func:`extract_records` / :func:`next_page` — run a :class:`models.scraper.ScraperSpec`
  over one page, and find the page after it.
* :func:`scout` / :func:`build_spec` — find records (or learn them from examples) on
  sample pages, and turn the resulting blueprint into a spec.
* :func:`render_module` — a readable, standalone Python scraper generated from a spec.
* :func:`extract_isolated` — extraction in a child process with time and memory limits.
* :func:`validate_spec` — run a spec on pages and check its expectations.

Errors are in :mod:`scrapers.errors`, one tree under :class:`ScraperError`.
"""

from __future__ import annotations

from scrapers.errors import (
    DocumentError,
    ExampleNotFoundError,
    NoRecordsFoundError,
    SandboxError,
    ScoutError,
    ScraperError,
    SelectorNotFoundError,
    SpecError,
)
from scrapers.extract import extract_records, next_page
from scrapers.render import render_module
from scrapers.repair import RepairFailedError, RepairResult, assess_candidate, repair_spec
from scrapers.runtime.decode import decode_body
from scrapers.sandbox import SandboxLimits, extract_isolated
from scrapers.scout import build_spec, scout
from scrapers.validate import validate_spec, validate_with_records

__all__ = [
    "DocumentError",
    "ExampleNotFoundError",
    "NoRecordsFoundError",
    "RepairFailedError",
    "RepairResult",
    "SandboxError",
    "SandboxLimits",
    "ScoutError",
    "ScraperError",
    "SelectorNotFoundError",
    "SpecError",
    "assess_candidate",
    "build_spec",
    "decode_body",
    "extract_isolated",
    "extract_records",
    "next_page",
    "render_module",
    "repair_spec",
    "scout",
    "validate_spec",
    "validate_with_records",
]
