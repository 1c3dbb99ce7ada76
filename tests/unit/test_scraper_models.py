"""The scraper spec contract: validation users hit when they write specs, and the hash."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.scraper import ScraperSpec, SeedPage, SpecMeta


def _spec(**overrides: object) -> ScraperSpec:
    data: dict[str, object] = {
        "name": "books",
        "kind": "html-list",
        "container": "li.book",
        "fields": [
            {"name": "title", "selector": "h3 a"},
            {"name": "price", "selector": ".price", "type": "price"},
        ],
    }
    data.update(overrides)
    return ScraperSpec.model_validate(data)


def test_spec_round_trips_through_json() -> None:
    spec = _spec(key_field="title", pagination={"kind": "rel-next", "max_pages": 3})
    again = ScraperSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.field("price").type == "price"


def test_sha256_ignores_provenance_but_not_content() -> None:
    spec = _spec()
    relabelled = spec.model_copy(update={"meta": SpecMeta(version=7, author="llm")})
    changed = _spec(container="li.item")
    assert spec.sha256() == relabelled.sha256()
    assert spec.sha256() != changed.sha256()
    assert len(spec.sha256()) == 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fields": [{"name": "a", "selector": "x"}, {"name": "a", "selector": "y"}]}, "unique"),
        ({"key_field": "isbn"}, "key_field 'isbn'"),
        ({"container": None}, "needs a 'container'"),
        ({"expectations": {"fill_rates": {"title": 1.5}}}, "less than or equal to 1"),
        ({"expectations": {"fill_rates": {"nope": 0.5}}}, "unknown fields"),
        (
            {"fields": [{"name": "a", "selector": "x", "transforms": [{"op": "regex"}]}]},
            "needs a 'pattern'",
        ),
        (
            {
                "fields": [
                    {
                        "name": "a",
                        "selector": "x",
                        "transforms": [{"op": "regex", "pattern": "(unclosed"}],
                    }
                ]
            },
            "not a valid regular expression",
        ),
        (
            {
                "fields": [
                    {
                        "name": "a",
                        "selector": "x",
                        "transforms": [{"op": "regex", "pattern": "a(b)", "group": 2}],
                    }
                ]
            },
            "group 2 does not exist",
        ),
        ({"pagination": {"kind": "page-param"}}, "needs a 'param'"),
    ],
)
def test_invalid_specs_are_rejected_with_the_reason(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**overrides)


def test_embedded_json_spec_defaults_to_reading_every_script() -> None:
    spec = ScraperSpec.model_validate(
        {
            "kind": "embedded-json",
            "container": "$.items",
            "fields": [{"name": "a", "selector": "$.a"}],
        }
    )
    assert spec.embedded is not None
    assert spec.embedded.script == "script"


def test_seed_page_lists_its_example_records() -> None:
    seed = SeedPage(url="http://x.test/", values={"title": "A"}, records=[{"title": "B"}])
    assert seed.example_records() == [{"title": "A"}, {"title": "B"}]
