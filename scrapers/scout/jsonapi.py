"""Scout JSON API responses, with or without example values."""

from __future__ import annotations

import json
from typing import Any

from models.scraper import Blueprint, BlueprintField, Page, PaginationSpec, SeedPage
from scrapers.errors import ExampleNotFoundError, NoRecordsFoundError, ScoutError
from scrapers.runtime.decode import decode_body
from scrapers.runtime.jsonpath import compile_path, evaluate, records_at, scalar_text
from scrapers.scout.jsondata import JsonCandidate, find_record_arrays, flatten, infer_json_fields
from scrapers.scout.learn import expected_values


def looks_like_json(page: Page) -> bool:
    """True for a JSON content type or a body that starts like JSON."""
    if page.content_type and "json" in page.content_type.lower():
        return True
    return decode_body(page.body).lstrip()[:1] in ("{", "[")


def _load(page: Page) -> Any:
    try:
        return json.loads(decode_body(page.body))
    except ValueError as exc:
        raise ScoutError(f"page {page.url} looks like JSON but does not parse: {exc}") from exc


def scout_json(pages: list[Page], examples: list[SeedPage] | None) -> Blueprint:
    """Blueprint of a ``json`` scraper for API responses.

    Raises:
        NoRecordsFoundError: No array of objects in the responses.
        ExampleNotFoundError: An example value is in no record.
    """
    documents = [_load(page) for page in pages]
    candidates = [
        item
        for item in find_record_arrays(documents[0])
        if all(records_at(evaluate(compile_path(item.path), doc)) for doc in documents[1:])
    ]
    if not candidates:
        raise NoRecordsFoundError(["JSON: no array of objects present in every response"])
    if examples:
        return _learn(pages, documents, candidates, examples)
    best = candidates[0]
    fields, key = infer_json_fields(best.records)
    return _blueprint(best, fields, key, documents, [f"records at {best.path}"])


def _blueprint(
    candidate: JsonCandidate,
    fields: list[BlueprintField],
    key: str | None,
    documents: list[Any],
    notes: list[str],
) -> Blueprint:
    steps = compile_path(candidate.path)
    pagination = json_next_link(documents[0])
    if pagination is not None:
        notes = [*notes, f"next page URL at {pagination.selector}"]
    return Blueprint(
        kind="json",
        container=candidate.path,
        fields=fields,
        key_field=key,
        pagination=pagination,
        record_counts=[len(records_at(evaluate(steps, doc))) for doc in documents],
        confidence=0.8,
        notes=notes,
    )


NEXT_KEYS = ("next", "next_url", "nextUrl", "next_page", "nextPage", "next_link", "nextLink")
"""Keys that hold the URL of the next page in common API envelopes."""
ENVELOPES = ("links", "_links", "paging", "pagination", "meta", "page_info", "pageInfo")


def json_next_link(document: Any) -> PaginationSpec | None:
    """A ``next-selector`` pagination when the response names the next page's URL.

    Looks at the top level and in the usual envelopes (``links.next``,
    ``_links.next.href``, ``paging.next`` ...); the value must be a URL or path.
    """
    if not isinstance(document, dict):
        return None
    places: list[tuple[str, dict[str, Any]]] = [("$", document)]
    places += [
        (f"$.{name}", document[name]) for name in ENVELOPES if isinstance(document.get(name), dict)
    ]
    for prefix, place in places:
        for key in NEXT_KEYS:
            value = place.get(key)
            if isinstance(value, dict) and isinstance(value.get("href"), str):
                return PaginationSpec(kind="next-selector", selector=f"{prefix}.{key}.href")
            if isinstance(value, str) and _looks_like_url(value):
                return PaginationSpec(kind="next-selector", selector=f"{prefix}.{key}")
    return None


def _looks_like_url(value: str) -> bool:
    text = value.strip()
    return text.startswith(("http://", "https://", "/", "?"))


def _learn(
    pages: list[Page],
    documents: list[Any],
    candidates: list[JsonCandidate],
    examples: list[SeedPage],
) -> Blueprint:
    by_url = {page.url: [doc] for page, doc in zip(pages, documents, strict=True)}
    candidate, fields, key = learn_json_fields(candidates, by_url, examples)
    return _blueprint(
        candidate, fields, key, documents, [f"records at {candidate.path}, fields from examples"]
    )


def learn_json_fields(
    candidates: list[JsonCandidate], by_url: dict[str, list[Any]], examples: list[SeedPage]
) -> tuple[JsonCandidate, list[BlueprintField], str | None]:
    """The first record array whose records hold every example value, with field paths.

    Args:
        candidates: Record arrays, best first.
        by_url: The JSON documents of each page.
        examples: The seed pages.

    Raises:
        ExampleNotFoundError: A value is in no record of any candidate.
    """
    missing: ExampleNotFoundError | None = None
    for candidate in candidates:
        steps = compile_path(candidate.path)
        fields: dict[str, BlueprintField] = {}
        try:
            for seed in examples:
                records = [
                    record
                    for doc in by_url.get(seed.url, [])
                    for record in records_at(evaluate(steps, doc))
                ]
                rows = [flatten(record) for record in records]
                for wanted in seed.example_records():
                    for name, value in wanted.items():
                        path = _path_of(rows, expected_values(value))
                        if path is None:
                            raise ExampleNotFoundError(name, str(value), seed.url)
                        fields.setdefault(
                            name,
                            BlueprintField(
                                name=name,
                                selector=path,
                                multiple=isinstance(value, list),
                                source="example (json key)",
                                confidence=0.9,
                            ),
                        )
        except ExampleNotFoundError as exc:
            missing = missing or exc
            continue
        inferred, key = infer_json_fields(candidate.records)
        types = {item.selector: item.type for item in inferred}
        key_path = next((item.selector for item in inferred if item.name == key), None)
        learned = [
            item.model_copy(update={"type": types.get(item.selector, "text")})
            for item in fields.values()
        ]
        key_name = next((item.name for item in learned if item.selector == key_path), None)
        return candidate, learned, key_name
    if missing is not None:
        raise missing
    raise NoRecordsFoundError(["JSON: no record array holds the example values"])


def _path_of(rows: list[dict[str, list[Any]]], values: list[str]) -> str | None:
    for row in rows:
        for path, found in row.items():
            texts = [" ".join((scalar_text(item) or "").split()) for item in found]
            if texts == values or (len(values) == 1 and values[0] in texts[:1]):
                return path
    return None
