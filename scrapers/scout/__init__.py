"""The heuristic scout: look at sample pages (optionally with example values) and describe
the scraper that would extract their records.

Public API::

    blueprint = scout(pages)                       # find the repeated records by itself
    blueprint = scout(pages, examples=[SeedPage(url=..., values={"title": "…"})])
    spec = build_spec(blueprint, name="books")     # a runnable ScraperSpec

Without examples the scout looks for the repeated element structure that is the page's
main content, and for JSON data (an API response, or JSON embedded in the page). With
examples it learns, per field, the most robust selector that reproduces every example;
example field names become the spec's field names.
"""

from __future__ import annotations

import logging

from models.scraper import Blueprint, Page, ScraperKind, SeedPage
from scrapers.errors import ExampleNotFoundError
from scrapers.scout.build import build_spec
from scrapers.scout.detail import learn_detail
from scrapers.scout.document import ScoutDocument, load_documents
from scrapers.scout.jsonapi import learn_json_fields, looks_like_json, scout_json
from scrapers.scout.jsondata import embedded_candidates
from scrapers.scout.listing import discover_list, learn_list

__all__ = ["build_spec", "scout"]

logger = logging.getLogger(__name__)


def scout(
    pages: list[Page], examples: list[SeedPage] | None = None, *, kind: ScraperKind | None = None
) -> Blueprint:
    """Describe the scraper for ``pages``.

    Args:
        pages: Sample pages of one site and layout. With examples, the pages without
            examples help rank selectors (they are never used as truth).
        examples: Pages with the values to extract. A seed with several ``records`` (or
            ``kind="html-list"``) asks for a listing scraper, otherwise one record per page.
        kind: Force the scraper kind instead of guessing it.

    Returns:
        The blueprint; pass it to :func:`build_spec`.

    Raises:
        ExampleNotFoundError: An example value is not on its page.
        SelectorNotFoundError: No selector reproduces a field's examples on every page.
        NoRecordsFoundError: Without examples, no repeated records were found.
        DocumentError: A page is too large or too deeply nested to scout.
        ScoutError: The pages and examples do not fit together.
    """
    if not pages:
        raise ValueError("scout needs at least one page")
    if kind == "json" or (kind is None and all(looks_like_json(page) for page in pages)):
        return scout_json(pages, examples)
    docs = load_documents(pages)
    if not examples:
        return discover_list(docs)
    listing = kind == "html-list" or (
        kind is None and any(len(seed.example_records()) >= 2 for seed in examples)
    )
    try:
        if kind == "embedded-json":
            return _learn_embedded(docs, examples)
        return learn_list(docs, examples) if listing else learn_detail(docs, examples)
    except ExampleNotFoundError as missing:
        # Values absent from the markup may sit in JSON that scripts draw the page from.
        logger.info("%s; looking for the examples in embedded JSON", missing)
        try:
            return _learn_embedded(docs, examples)
        except ExampleNotFoundError:
            raise missing from None


def _learn_embedded(docs: list[ScoutDocument], examples: list[SeedPage]) -> Blueprint:
    by_url = {doc.url: doc for doc in docs}
    first = by_url.get(examples[0].url, docs[0])
    sources = {doc.url: embedded_candidates(doc) for doc in docs}
    missing: ExampleNotFoundError | None = None
    for candidate in sources.get(first.url, []):
        documents = {
            url: next((item.documents for item in found if item.source == candidate.source), [])
            for url, found in sources.items()
        }
        try:
            chosen, fields, key = learn_json_fields([candidate], documents, examples)
        except ExampleNotFoundError as exc:
            missing = missing or exc
            continue
        return Blueprint(
            kind="embedded-json",
            container=chosen.path,
            embedded=chosen.source,
            fields=fields,
            key_field=key,
            record_counts=[len(chosen.records)],
            confidence=0.8,
            notes=[f"records from {chosen.note}; example values found in embedded JSON"],
        )
    if missing is not None:
        raise missing
    name, value = next(iter(examples[0].example_records()[0].items()), ("?", "?"))
    raise ExampleNotFoundError(name, str(value), first.url)
