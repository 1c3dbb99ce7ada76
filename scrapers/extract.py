"""Extract records from a page with a :class:`~models.scraper.ScraperSpec`.

The work is done by the standalone runtime (``scrapers.runtime``); this module adds the
pydantic front door and caches compiled specs by content hash, so running one spec over
many pages checks its selectors once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from models.scraper import ScraperSpec
from scrapers.runtime.engine import Plan, compile_spec, extract, next_page_url

_PLAN_CACHE_SIZE = 256


@lru_cache(maxsize=_PLAN_CACHE_SIZE)
def _plan_for(spec_json: str) -> Plan:
    return compile_spec(json.loads(spec_json))


def plan_for(spec: ScraperSpec) -> Plan:
    """The compiled form of ``spec`` (cached by content).

    Raises:
        SpecError: A selector or JSON path of the spec is invalid.
    """
    return _plan_for(spec.model_dump_json(exclude={"meta"}))


def extract_records(
    spec: ScraperSpec, document: str | bytes, url: str, *, charset: str | None = None
) -> list[dict[str, Any]]:
    """Extract the records of one page.

    Args:
        spec: The scraper.
        document: The page, as text or raw bytes (decoded by BOM, ``charset``, ``<meta>``,
            then UTF-8 with a windows-1252 fallback).
        url: The page URL; links are resolved against it and ``<base href>``.
        charset: The HTTP charset parameter (or the whole ``Content-Type`` header).

    Returns:
        One dict per record with every field of the spec; missing values are ``None``
        (``[]`` for multi-valued fields). ``price`` fields add ``<name>_currency``.

    Raises:
        SpecError: The spec cannot run (invalid selector or path).
        DocumentError: The page is too large, or a ``json`` page is not JSON.
    """
    return extract(plan_for(spec), document, url, charset=charset)


def next_page(spec: ScraperSpec, document: str | bytes, url: str, pages_done: int) -> str | None:
    """URL of the next page under ``spec.pagination`` (``None`` when there is none).

    Args:
        spec: The scraper.
        document: The current page.
        url: Its URL.
        pages_done: Pages fetched so far, the current one included.
    """
    return next_page_url(plan_for(spec), document, url, pages_done)
