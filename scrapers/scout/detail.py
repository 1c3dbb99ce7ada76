"""Learn a detail-page scraper (one record per page) from example values."""

from __future__ import annotations

import re

from models.scraper import Blueprint, BlueprintField, SeedPage
from scrapers.errors import ScoutError
from scrapers.scout.document import ScoutDocument
from scrapers.scout.learn import Unit, expected_values, infer_type, learn_field

MAX_UNLABELLED = 12
"""Other pages used to rank candidate selectors (more pages, slower scouting)."""
_KEY_NAME_RE = re.compile(r"(^|_)(id|isbn|isbn_?1[03]|sku|ean|upc|gtin|asin|code|url|link)($|_)")


def field_names(seeds: list[SeedPage]) -> list[str]:
    """Every field named by the examples, in first-seen order."""
    names: dict[str, None] = {}
    for seed in seeds:
        for record in seed.example_records():
            names.update(dict.fromkeys(record))
    return list(names)


def seed_documents(
    docs: list[ScoutDocument], seeds: list[SeedPage]
) -> list[tuple[ScoutDocument, SeedPage]]:
    """Pair each seed with its page (by URL).

    Raises:
        ScoutError: A seed names a URL that is not among the pages.
    """
    by_url = {doc.url: doc for doc in docs}
    paired = []
    for seed in seeds:
        doc = by_url.get(seed.url)
        if doc is None:
            raise ScoutError(
                f"example for {seed.url} has no page; pass that page in `pages` too "
                f"(pages given: {sorted(by_url)[:5]}...)"
            )
        paired.append((doc, seed))
    return paired


def learn_detail(docs: list[ScoutDocument], seeds: list[SeedPage]) -> Blueprint:
    """Blueprint of an ``html-detail`` scraper reproducing the seeds' values.

    Pages without examples are used to rank selectors, never as truth.

    Raises:
        ExampleNotFoundError: An example value is not on its page.
        SelectorNotFoundError: No selector reproduces a field on every seed page.
    """
    paired = seed_documents(docs, seeds)
    seed_urls = {seed.url for seed in seeds}
    unlabelled_docs = [doc for doc in docs if doc.url not in seed_urls][:MAX_UNLABELLED]
    unlabelled = [Unit(doc, doc.tree) for doc in unlabelled_docs]
    fields: list[BlueprintField] = []
    for name in field_names(seeds):
        labelled = []
        multiple = False
        for doc, seed in paired:
            value = seed.values.get(name)
            if value is None:
                continue
            multiple = multiple or isinstance(value, list)
            values = expected_values(value)
            if values:
                labelled.append(Unit(doc, doc.tree, values))
        if not labelled:
            continue
        field_type = infer_type([unit.expected or [] for unit in labelled])
        fields.append(learn_field(name, labelled, unlabelled, multiple, field_type))
    notes = [
        f"learned {len(fields)} fields from {len(paired)} seed pages; ranked selectors on "
        f"{len(unlabelled)} other pages"
    ]
    notes += [f"{item.name}: {item.source}, fill {item.fill_rate:.0%}" for item in fields]
    confidence = min((item.confidence for item in fields), default=0.0)
    return Blueprint(
        kind="html-detail",
        fields=fields,
        key_field=choose_key(fields, seeds),
        record_counts=[1] * len(paired),
        confidence=confidence,
        notes=notes,
    )


def choose_key(fields: list[BlueprintField], seeds: list[SeedPage]) -> str | None:
    """The field that identifies a record: id-like names first, then distinct titles."""
    for item in fields:
        if not item.multiple and _KEY_NAME_RE.search(item.name.lower()):
            return item.name
    for item in fields:
        values = [seed.values.get(item.name) for seed in seeds]
        texts = [value for value in values if isinstance(value, str)]
        if not item.multiple and len(texts) == len(seeds) and len(set(texts)) == len(texts):
            return item.name
    return None
