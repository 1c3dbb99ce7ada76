"""Self-repair of a scraper after a site redesign, without an LLM.

When a spec stops working, the records it returned last time it worked ("last good") say
what the page shows; a redesign moves that data around but rarely changes it. The doctor
looks for those values on the new pages and re-learns every field from where they are now,
with the scout's learn-by-example machinery and the old field names, so the output schema
stays the same::

    result = repair_spec(old_spec, new_pages, last_good_records)
    result.spec          # same field names and key field, new selectors
    result.lost_fields   # fields whose values the new pages no longer show

Steps:

1. If the old spec still works on the new pages (records found, fill rates near the last
   good ones, values where they were), it is returned unchanged.
2. Otherwise every last-good value is looked up on the new pages in the form they print it
   (``19.95`` → ``$19.95``, an absolute URL → the ``href`` that resolves to it). Records
   still shown become :class:`~models.scraper.SeedPage` examples, several per listing page.
3. The scout learns a spec from those examples; fields it cannot re-locate are reported
   lost (never invented).
4. The repaired extraction is checked against the last-good records: a field whose values
   match *another* field's last-good values better is refused (the wrong column), and the
   key values still shown must come back at least ``min_overlap`` of the time, else
   :class:`RepairFailedError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.scraper import (
    ExampleValue,
    FieldSpec,
    Page,
    ScraperKind,
    ScraperSpec,
    SeedPage,
    SpecAuthor,
    SpecMeta,
    Transform,
)
from scrapers.errors import (
    ExampleNotFoundError,
    ScoutError,
    ScraperError,
    SelectorNotFoundError,
)
from scrapers.extract import extract_records
from scrapers.repair_anchor import Anchors, HtmlIndex, JsonIndex, flat_norms
from scrapers.repair_checks import health, misplaced, overlap
from scrapers.scout import build_spec, scout
from scrapers.scout.document import ScoutDocument

__all__ = ["RepairFailedError", "RepairResult", "assess_candidate", "repair_spec"]

logger = logging.getLogger(__name__)

SEED_RECORDS_PER_PAGE = 4
"""Example records taken from each listing page (spread over the list)."""
MAX_SEED_PAGES = 3
"""Pages seeded with examples; the others only help rank selectors."""
MAX_NEIGHBOUR_TRIES = 4
"""Pairs of neighbouring records tried when spread-out records share no selector."""


class RepairFailedError(ScraperError):
    """The doctor could not produce a scraper that reproduces the last-good data.

    Attributes:
        tried: What was attempted, in order, for the diagnosis shown to users.
    """

    def __init__(self, message: str, *, tried: Sequence[str] = ()) -> None:
        shown = "; ".join(tried[-8:])
        super().__init__(f"{message} (tried: {shown})" if shown else message)
        self.tried = list(tried)


@dataclass
class RepairResult:
    """A repaired scraper and the evidence for it.

    Attributes:
        spec: The patched spec: the old field names (those re-located) and key field.
        records: What it extracts from the new pages.
        confidence: 0–1, how well the new records reproduce the last-good ones.
        anchored_fields: Fields whose new location was found through last-good values.
        lost_fields: Fields that could not be re-located (absent on the new pages, or
            refused because they read another field's data).
        notes: What was tried, for the diagnosis shown to users.
    """

    spec: ScraperSpec
    records: list[dict[str, Any]]
    confidence: float
    anchored_fields: list[str] = field(default_factory=list)
    lost_fields: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def repair_spec(
    old: ScraperSpec,
    pages: list[Page],
    last_good: list[dict[str, Any]],
    *,
    min_overlap: float = 0.3,
) -> RepairResult:
    """Patch ``old`` so it extracts the same fields from redesigned ``pages``.

    Args:
        old: The spec that worked before the redesign.
        pages: New pages of the site (the listing pages, or several detail pages).
        last_good: Records the old spec returned when it last worked.
        min_overlap: Least share of the last-good key values (that the new pages still
            show) the repaired spec must return.

    Returns:
        The repaired spec (or ``old`` itself if it still works) with its records.

    Raises:
        RepairFailedError: The data is no longer on the pages, the scout could not
            re-learn the fields, or the result does not reproduce the last-good records.
        ValueError: No pages were given.
    """
    if not pages:
        raise ValueError("repair_spec needs at least one new page")
    notes: list[str] = []
    good = _usable(old, last_good, "pass the records the spec returned when it last worked")
    current = _extract(old, pages, notes)
    anchors, used = _anchor_all(old, pages, good)
    notes.append(
        f"last-good values still shown on the new pages for {sorted(anchors.fields) or 'no field'}"
    )
    problems = health(old, current, good, anchors, min_overlap)
    if not problems:
        notes.append(f"the old spec still works ({len(current)} records); kept unchanged")
        kept_share = overlap(old, current, good, anchors)
        return RepairResult(
            old, current, round(kept_share if anchors.fields else 0.8, 3), [], [], notes
        )
    notes += [f"old spec: {problem}" for problem in problems]
    if not anchors.fields:
        raise RepairFailedError(
            f"spec {old.name!r}: none of the {len(good)} last-good records' values appear on the "
            f"new pages, so there is nothing to anchor a repair on; the data was removed or "
            f"moved to other pages (check the URLs, or whether the page needs render=True)",
            tried=notes,
        )
    spec = _learn(old, pages, anchors, notes)
    if used:
        spec = _restore_affixes(spec, used, notes)
    return _verify(old, spec, pages, good, anchors, notes, min_overlap)


def assess_candidate(
    old: ScraperSpec,
    candidate: ScraperSpec,
    pages: list[Page],
    last_good: list[dict[str, Any]],
    *,
    min_overlap: float = 0.3,
) -> RepairResult:
    """Hold a patch proposed elsewhere (a language model, a person) to the checks
    :func:`repair_spec` applies to its own: a field reading another field's data is
    refused, records must be found, and the last-good key values still shown on the pages
    must come back at least ``min_overlap`` of the time. The confidence is computed the
    same way, so the promotion policy judges both kinds of patch alike.

    Raises:
        RepairFailedError: The candidate fails a check (the message says which and why).
        ValueError: No pages were given.
    """
    if not pages:
        raise ValueError("assess_candidate needs at least one new page")
    notes: list[str] = []
    good = _usable(old, last_good, "nothing to check the candidate against")
    anchors, _ = _anchor_all(old, pages, good)
    if not anchors.fields:
        raise RepairFailedError(
            f"spec {old.name!r}: none of the {len(good)} last-good records' values appear on "
            f"the new pages, so a candidate cannot be checked against them",
            tried=notes,
        )
    return _verify(old, candidate, pages, good, anchors, notes, min_overlap)


def _usable(old: ScraperSpec, last_good: list[dict[str, Any]], hint: str) -> list[dict[str, Any]]:
    """The last-good records with a value for at least one of the spec's fields."""
    names = [item.name for item in old.fields]
    good = [record for record in last_good if any(flat_norms(record.get(n)) for n in names)]
    if not good:
        raise RepairFailedError(
            f"spec {old.name!r}: none of the {len(last_good)} last-good records has a value "
            f"for the fields {names}; {hint}"
        )
    return good


def _anchor_all(
    old: ScraperSpec, pages: list[Page], good: list[dict[str, Any]]
) -> tuple[Anchors, dict[str, tuple[str, str]]]:
    """The last-good values found on the pages, looking again without their constant
    prefix/suffix for fields not found whole; and the affixes that helped."""
    anchors = _anchor(old, pages, good)
    affixed = {n: a for n, a in affixes_of(old, good).items() if n not in anchors.fields}
    if not affixed:
        return anchors, {}
    anchors = _anchor(old, pages, good, affixed)
    return anchors, {name: affix for name, affix in affixed.items() if name in anchors.fields}


def _verify(
    old: ScraperSpec,
    spec: ScraperSpec,
    pages: list[Page],
    good: list[dict[str, Any]],
    anchors: Anchors,
    notes: list[str],
    min_overlap: float,
) -> RepairResult:
    """Check a re-learned or proposed spec against the last-good records and score it."""
    names = [item.name for item in old.fields]
    records = _extract(spec, pages, notes)
    refused = misplaced(spec, records, good)
    if refused:
        notes += [f"refused {name!r}: {why}" for name, why in refused.items()]
        kept = [item for item in spec.fields if item.name not in refused]
        if not kept:
            raise RepairFailedError(
                f"spec {old.name!r}: every field of the patched spec reads another field's data",
                tried=notes,
            )
        spec = _with_fields(spec, kept, old, author=spec.meta.author, notes=spec.meta.notes)
        records = _extract(spec, pages, notes)
    if not records:
        raise RepairFailedError(
            f"spec {old.name!r}: the patched spec finds no records on the new pages",
            tried=notes,
        )
    reproduced = overlap(spec, records, good, anchors)
    notes.append(f"overlap with the last-good records: {reproduced:.0%}")
    if reproduced < min_overlap:
        raise RepairFailedError(
            f"spec {old.name!r}: the patched spec returns {reproduced:.0%} of the last-good "
            f"values still shown on the pages (at least {min_overlap:.0%} needed); repair "
            f"by hand or give examples",
            tried=notes,
        )
    kept_names = {item.name for item in spec.fields}
    anchored = [name for name in names if name in kept_names and name in anchors.fields]
    lost = [name for name in names if name not in kept_names]
    located = len(anchored) / len(names)
    confidence = round(min(1.0, reproduced) * (0.5 + 0.5 * located), 3)
    logger.info("repaired %s: %d records, lost %s", old.name, len(records), lost)
    return RepairResult(spec, records, confidence, anchored, lost, notes)


def _extract(spec: ScraperSpec, pages: list[Page], notes: list[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for page in pages:
        try:
            records += extract_records(spec, page.body, page.url, charset=page.content_type)
        except ScraperError as exc:
            notes.append(f"{page.url}: extraction failed: {exc}")
    return records


# -- anchoring ---------------------------------------------------------------------------------


def _is_json(kind: ScraperKind) -> bool:
    return kind in ("json", "embedded-json")


def _anchor(
    old: ScraperSpec,
    pages: list[Page],
    good: list[dict[str, Any]],
    affixes: dict[str, tuple[str, str]] | None = None,
) -> Anchors:
    """Find each last-good record's values on each new page, in the form printed there.

    A field listed in ``affixes`` whose values are not printed whole is looked up without
    its constant prefix and suffix (``book-12`` → ``12``).
    """
    affixes = affixes or {}
    per_page: dict[str, list[tuple[int, dict[str, ExampleValue]]]] = {}
    fields: set[str] = set()
    key_values: set[str] = set()
    for page in pages:
        html: HtmlIndex | None = None
        data: JsonIndex | None = None
        try:
            if _is_json(old.kind):
                data = JsonIndex(page, embedded=old.kind == "embedded-json")
            else:
                html = HtmlIndex(ScoutDocument(page))
        except ScraperError as exc:
            logger.info("repair: cannot read %s: %s", page.url, exc)
            continue
        found: list[tuple[int, dict[str, ExampleValue]]] = []
        for position, record in enumerate(good):
            printed: dict[str, ExampleValue] = {}
            for item in old.fields:
                value = record.get(item.name)
                form = _printed(html, data, value, item)
                if not form and item.name in affixes and isinstance(value, str):
                    form = _printed(html, data, _strip(value, *affixes[item.name]), item)
                if form:
                    printed[item.name] = form
            if not printed or not _record_present(old, record, printed):
                continue
            found.append((position, printed))
            fields.update(printed)
            if old.key_field in printed:
                key_values.update(flat_norms(record.get(old.key_field)))
        per_page[page.url] = found
    return Anchors(per_page, fields, key_values)


MIN_AFFIX_VALUES = 3
"""Last-good values needed before a constant prefix or suffix is believed."""


def affixes_of(old: ScraperSpec, good: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Text fields whose last-good values all share a literal prefix and/or suffix ending at
    a separator (``book-1``, ``book-12`` → ``("book-", "")``): a redesign may print only the
    part that varies, and a ``replace`` transform puts the constant part back."""
    found: dict[str, tuple[str, str]] = {}
    for item in old.fields:
        if item.type != "text" or item.multiple:
            continue
        values = [v for r in good if isinstance(v := r.get(item.name), str) and v]
        if len(values) < MIN_AFFIX_VALUES or len(set(values)) < MIN_AFFIX_VALUES:
            continue
        prefix = _to_separator(_common_start(values))
        suffix = _to_separator(_common_start([v[::-1] for v in values]))[::-1]
        if not (prefix or suffix):
            continue
        if all(len(v) > len(prefix) + len(suffix) for v in values):
            found[item.name] = (prefix, suffix)
    return found


def _common_start(values: list[str]) -> str:
    first, last = min(values), max(values)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), None)
    return first[: len(first) if size is None else size]


def _to_separator(text: str) -> str:
    """``text`` cut after its last non-alphanumeric character (``book-1`` → ``book-``)."""
    cut = max((i + 1 for i, ch in enumerate(text) if not ch.isalnum()), default=0)
    return text[:cut]


def _strip(value: str, prefix: str, suffix: str) -> str:
    return value[len(prefix) : len(value) - len(suffix)]


def _restore_affixes(
    spec: ScraperSpec, used: dict[str, tuple[str, str]], notes: list[str]
) -> ScraperSpec:
    """Put the constant prefix/suffix back on fields re-learned from their stripped values."""
    fields = []
    for item in spec.fields:
        if item.name not in used:
            fields.append(item)
            continue
        prefix, suffix = used[item.name]
        steps = list(item.transforms)
        if prefix:
            steps.append(Transform(op="replace", pattern="^", value=prefix.replace("\\", "\\\\")))
        if suffix:
            steps.append(Transform(op="replace", pattern="$", value=suffix.replace("\\", "\\\\")))
        fields.append(item.model_copy(update={"transforms": steps}))
        notes.append(
            f"field {item.name!r}: the page prints it without {prefix!r}…{suffix!r}; restored"
        )
    return spec.model_copy(update={"fields": fields})


def _printed(
    html: HtmlIndex | None, data: JsonIndex | None, value: Any, item: FieldSpec
) -> ExampleValue | None:
    if isinstance(value, list):
        items = [entry for entry in value if entry not in (None, "")]
        if not items:
            return None
        if html is not None:
            return html.complete_list(items, item.type)
        found = [form for entry in items if data and (form := data.printed(entry, item.type))]
        return found or None
    if html is not None:
        hit = html.printed(value, item.type)
        return hit[0] if hit else None
    return data.printed(value, item.type) if data is not None else None


def _record_present(
    old: ScraperSpec, record: dict[str, Any], printed: dict[str, ExampleValue]
) -> bool:
    # The record is on the page when its key is, or (a key the redesign dropped) when
    # most of its values are.
    if old.key_field in printed:
        return True
    filled = [item.name for item in old.fields if flat_norms(record.get(item.name))]
    return len(printed) * 2 > len(filled)


def _spread(items: list[Any], count: int) -> list[Any]:
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(index * step)] for index in range(count)]


def _seeds(
    old: ScraperSpec, anchors: Anchors, excluded: set[str], limit: int, offset: int | None
) -> list[SeedPage]:
    seeds: list[SeedPage] = []
    for url, found in anchors.per_page.items():
        usable = [
            (position, {k: v for k, v in printed.items() if k not in excluded})
            for position, printed in found
        ]
        usable = [(position, printed) for position, printed in usable if printed]
        if not usable:
            continue
        if old.kind == "html-detail":
            _, best = max(usable, key=lambda entry: len(entry[1]))
            seeds.append(SeedPage(url=url, values=best))
            continue
        most = max(len(printed) for _, printed in usable)
        complete = [printed for _, printed in usable if len(printed) == most]
        chosen = _spread(complete, limit) if offset is None else complete[offset : offset + limit]
        if chosen:
            seeds.append(SeedPage(url=url, records=chosen))
    seeds.sort(key=lambda seed: -len(seed.example_records()))
    return seeds[:MAX_SEED_PAGES]


# -- learning ----------------------------------------------------------------------------------


def _learn(old: ScraperSpec, pages: list[Page], anchors: Anchors, notes: list[str]) -> ScraperSpec:
    excluded: set[str] = {item.name for item in old.fields} - anchors.fields
    # Records spread over the list first; if the scout finds no selector common to them
    # (columns in different grid rows), neighbouring records, which share a parent.
    selections: list[tuple[int, int | None]] = [(SEED_RECORDS_PER_PAGE, None)]
    selections += [(2, offset) for offset in range(MAX_NEIGHBOUR_TRIES)]
    kind: ScraperKind | None = old.kind if old.kind != "html-detail" else None
    attempts = 0
    while selections and attempts < 2 * len(old.fields) + 2 * MAX_NEIGHBOUR_TRIES:
        attempts += 1
        limit, offset = selections[0]
        seeds = _seeds(old, anchors, excluded, limit, offset)
        if not seeds:
            selections.pop(0)
            continue
        try:
            blueprint = scout(pages, seeds, kind=kind)
        except (ExampleNotFoundError, SelectorNotFoundError) as exc:
            notes.append(f"field {exc.field!r} not re-learned: {exc}")
            excluded.add(exc.field)
            continue
        except ScoutError as exc:
            count = sum(len(seed.example_records()) for seed in seeds)
            notes.append(f"scout with {count} examples: {exc}")
            selections.pop(0)
            continue
        learned = build_spec(blueprint, name=old.name)
        notes.append(
            f"re-learned {[item.name for item in learned.fields]} from "
            f"{sum(len(seed.example_records()) for seed in seeds)} last-good records "
            f"({learned.kind}, container {learned.container!r})"
        )
        return _merge(old, learned)
    raise RepairFailedError(
        f"spec {old.name!r}: the scout could not re-learn any field from the last-good values "
        f"found on the new pages",
        tried=notes,
    )


def _merge(old: ScraperSpec, learned: ScraperSpec) -> ScraperSpec:
    """The learned spec with the old field order, types and flags."""
    by_name = {item.name: item for item in learned.fields}
    fields: list[FieldSpec] = []
    for item in old.fields:
        new = by_name.get(item.name)
        if new is None:
            continue
        # A learned ``url`` reading an href stays a URL: as text it would be relative.
        kind = new.type if (item.type == "text" and new.type == "url") else item.type
        fields.append(
            new.model_copy(
                update={"type": kind, "multiple": item.multiple, "required": item.required}
            )
        )
    spec = learned.model_copy(update={"pagination": learned.pagination or old.pagination})
    return _with_fields(spec, fields, old)


def _with_fields(
    spec: ScraperSpec,
    fields: list[FieldSpec],
    old: ScraperSpec,
    *,
    author: SpecAuthor = "heuristic",
    notes: str = "",
) -> ScraperSpec:
    names = {item.name for item in fields}
    expectations = spec.expectations.model_copy(
        update={"fill_rates": {k: v for k, v in spec.expectations.fill_rates.items() if k in names}}
    )
    meta = SpecMeta(
        version=old.meta.version + 1,
        parent_sha=old.sha256(),
        author=author,
        created_at=datetime.now(UTC),
        notes=notes or f"repaired from version {old.meta.version} by re-anchoring last-good values",
    )
    return ScraperSpec.model_validate(
        {
            **spec.model_dump(exclude={"fields", "key_field", "expectations", "meta"}),
            "fields": [item.model_dump() for item in fields],
            "key_field": old.key_field if old.key_field in names else None,
            "expectations": expectations.model_dump(),
            "meta": meta.model_dump(),
        }
    )
