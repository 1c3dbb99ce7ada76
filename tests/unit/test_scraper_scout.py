"""The scout without examples: it must find the main records, name and type their fields,
pick a key and pagination, and build a spec that extracts the right records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.scraper import Blueprint, Page
from scrapers import NoRecordsFoundError, build_spec, extract_records, scout
from scrapers.errors import DocumentTooComplexError

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"


def _page(name: str, content_type: str | None = None) -> Page:
    return Page(
        url=f"http://fixtures.test/{name}",
        body=(SITES / name).read_text(encoding="utf-8"),
        content_type=content_type,
    )


def _records(blueprint: Blueprint, page: Page) -> list[dict[str, Any]]:
    return extract_records(build_spec(blueprint), page.body, page.url)


def _field(blueprint: Blueprint, name: str) -> Any:
    return next(item for item in blueprint.fields if item.name == name)


def test_cards_main_grid_wins_over_sidebar_menu_and_footer() -> None:
    page = _page("shop/cards.html")
    blueprint = scout([page])
    assert blueprint.kind == "html-list"
    assert blueprint.container is not None
    records = _records(blueprint, page)
    assert [record["title"] for record in records] == [
        "Hand trowel",
        "Pruning shears & holster",
        "Watering can, 10 l",
        "Kneeling pad",
    ]
    assert {"id", "url", "image", "title", "brand", "price", "rating"} <= {
        item.name for item in blueprint.fields
    }
    assert _field(blueprint, "price").type == "price"
    assert _field(blueprint, "rating").type == "rating"
    assert _field(blueprint, "url").type == "url"
    assert _field(blueprint, "image").type == "image"
    assert blueprint.key_field == "id"
    assert records[0]["id"] == "p-101"
    assert records[0]["price"] == 12.99
    assert records[0]["url"] == "http://fixtures.test/shop/p/101"
    assert blueprint.pagination is not None and blueprint.pagination.kind == "rel-next"


def test_table_rows_are_named_by_their_headers() -> None:
    page = _page("books/table.html")
    blueprint = scout([page])
    names = [item.name for item in blueprint.fields]
    assert {"title", "title_url", "author", "price", "published"} <= set(names)
    assert _field(blueprint, "published").type == "date"
    records = _records(blueprint, page)
    assert len(records) == 4  # the header row is not a record
    assert records[1]["author"] == "Fern Michaels"
    assert records[1]["published"] == "2010-06-01"
    assert blueprint.key_field == "title_url"


def test_list_items_with_printed_prices() -> None:
    page = _page("books/list.html")
    blueprint = scout([page])
    records = _records(blueprint, page)
    assert [record["title"] for record in records] == [
        "The Cat Who Walked by Himself",
        "Cats & Dogs: A Field Guide",
        "The Cat in the Hat",
    ]
    assert [record["price"] for record in records] == [4.99, 12.0, 8.25]
    assert records[0]["description"].startswith("A just-so story")


def test_definition_lists_become_label_fields() -> None:
    page = _page("books/definitions.html")
    blueprint = scout([page])
    assert [item.name for item in blueprint.fields] == ["name", "city", "founded"]
    assert all(item.label is not None for item in blueprint.fields)
    assert _records(blueprint, page)[2] == {
        "name": "Barbour Publishing",
        "city": "Uhrichsville",
        "founded": 1981,
    }


def test_hashed_class_names_are_never_used() -> None:
    page = _page("shop/hashed.html")
    blueprint = scout([page])
    selectors = [blueprint.container or "", *(item.selector for item in blueprint.fields)]
    assert not any(
        "css-" in selector or "jsx-" in selector or "sc-" in selector for selector in selectors
    )
    assert [record["product_name"] for record in _records(blueprint, page)] == [
        "Chef's knife",
        "Cutting board",
        "Dutch oven",
    ]


def test_paginated_list_checks_every_page() -> None:
    pages = [_page(f"shop/page{number}.html") for number in (1, 2, 3)]
    blueprint = scout(pages)
    assert blueprint.record_counts == [4, 4, 4]
    assert blueprint.key_field == "id"
    assert blueprint.pagination is not None
    records = _records(blueprint, pages[2])
    assert records[0]["name"] == "Seed packet 9"


def test_json_api_response() -> None:
    page = _page("shop/api.json", content_type="application/json")
    blueprint = scout([page])
    assert blueprint.kind == "json"
    assert blueprint.container == "$.data.items"
    assert blueprint.key_field == "id"
    records = _records(blueprint, page)
    assert records[1]["name"] == "Compost bin"
    assert records[1]["price_amount"] == 54.5
    assert records[1]["price_currency"] == "EUR"
    assert records[0]["added"] == "2024-03-02"


@pytest.mark.parametrize(
    ("name", "field", "first"),
    [
        ("shop/ld-json.html", "name", "Desk lamp"),  # breadcrumbs left out
        ("shop/next-data.html", "title", "Oak chair"),
        ("shop/script-built.html", "title", "Half-price pots"),  # empty container
    ],
)
def test_records_in_embedded_json(name: str, field: str, first: str) -> None:
    page = _page(name)
    blueprint = scout([page])
    assert blueprint.kind == "embedded-json"
    records = _records(blueprint, page)
    assert len(records) == 3
    assert records[0][field] == first


def test_page_without_repeated_records_says_what_was_tried() -> None:
    page = Page(url="http://x.test/", body="<html><body><p>Just one paragraph.</p></body></html>")
    with pytest.raises(NoRecordsFoundError) as caught:
        scout([page])
    assert caught.value.tried
    assert "no repeated records" in str(caught.value)


def test_script_drawn_page_suggests_rendering() -> None:
    page = Page(
        url="http://x.test/",
        body='<html><body><div id="root"></div><script src="/app.js"></script></body></html>',
    )
    with pytest.raises(NoRecordsFoundError, match="render=True"):
        scout([page])


def test_hostile_nesting_fails_clearly() -> None:
    body = "<html><body>" + "<div>" * 10_000 + "x" + "</div>" * 10_000 + "</body></html>"
    with pytest.raises(DocumentTooComplexError, match="512 levels"):
        scout([Page(url="http://x.test/deep", body=body)])


def test_huge_attributes_do_not_leak_into_selectors() -> None:
    rows = "".join(
        f'<li class="row" data-blob="{"z" * 1_000_000}"><b>Item {n}</b> <i>{n}.50 EUR</i></li>'
        for n in range(3)
    )
    page = Page(url="http://x.test/", body=f"<html><body><ul>{rows}</ul></body></html>")
    blueprint = scout([page])
    spec = build_spec(blueprint)
    assert len(spec.model_dump_json()) < 10_000
    assert len(extract_records(spec, page.body, page.url)) == 3
