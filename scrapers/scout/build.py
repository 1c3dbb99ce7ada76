"""Turn a scout :class:`Blueprint` into a runnable :class:`ScraperSpec`."""

from __future__ import annotations

from datetime import UTC, datetime

from models.scraper import Blueprint, Expectations, FieldSpec, ScraperSpec, SpecMeta

FILL_RATE_TOLERANCE = 0.8
"""Expected fill rate = observed × this, so a page with a few gaps still passes."""
MIN_EXPECTED_FILL = 0.2
"""Fields filled less often than this on the scouted pages get no fill expectation."""


def build_spec(blueprint: Blueprint, name: str = "scraper") -> ScraperSpec:
    """The scraper spec a blueprint describes, with expectations from what was observed.

    Args:
        blueprint: From :func:`scrapers.scout.scout`.
        name: The spec's name.

    Returns:
        Version 1 of the spec, authored ``heuristic``.
    """
    field_keys = set(FieldSpec.model_fields)
    fields = []
    for item in blueprint.fields:
        spec_field = FieldSpec.model_validate(item.model_dump(include=field_keys))
        if item.name == blueprint.key_field and item.fill_rate >= 1.0 and not item.multiple:
            spec_field = spec_field.model_copy(update={"required": True})
        fields.append(spec_field)
    return ScraperSpec(
        name=name,
        kind=blueprint.kind,
        container=blueprint.container,
        embedded=blueprint.embedded,
        fields=fields,
        key_field=blueprint.key_field,
        pagination=blueprint.pagination,
        render=blueprint.render,
        expectations=_expectations(blueprint),
        meta=SpecMeta(
            version=1,
            author="heuristic",
            created_at=datetime.now(UTC),
            notes="; ".join(blueprint.notes)[:2000],
        ),
    )


def _expectations(blueprint: Blueprint) -> Expectations:
    counts = [count for count in blueprint.record_counts if count > 0] or [1]
    if blueprint.kind == "html-detail":
        low, high = 1, 1
    else:
        # The last page of a paginated list may hold a single record.
        low = 1 if blueprint.pagination else max(1, min(counts) // 2)
        high = max(counts) * 3 + 10
    fill_rates = {
        item.name: round(item.fill_rate * FILL_RATE_TOLERANCE, 2)
        for item in blueprint.fields
        if item.fill_rate >= MIN_EXPECTED_FILL
    }
    return Expectations(min_records=low, max_records=high, fill_rates=fill_rates)
