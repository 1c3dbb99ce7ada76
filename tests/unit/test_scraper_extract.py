"""The extraction engine on fixture pages: the records a user gets from a spec."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from models.scraper import ScraperSpec
from scrapers import DocumentError, SpecError, extract_records, next_page

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"


def _page(name: str) -> str:
    return (SITES / name).read_text(encoding="utf-8")


def _spec(data: dict[str, Any]) -> ScraperSpec:
    return ScraperSpec.model_validate(data)


def test_cards_give_clean_typed_records_with_absolute_links() -> None:
    spec = _spec(
        {
            "kind": "html-list",
            "container": "#content div.product-card",
            "fields": [
                {"name": "title", "selector": "h3.product-title a"},
                {"name": "url", "selector": "h3.product-title a", "attr": "href", "type": "url"},
                {"name": "image", "selector": "img", "attr": "src", "type": "image"},
                {"name": "price", "selector": ".price", "type": "price"},
                {"name": "rating", "selector": ".rating", "type": "rating"},
            ],
        }
    )
    records = extract_records(spec, _page("shop/cards.html"), "http://shop.test/shop/cards.html")
    assert len(records) == 4  # the "customers also bought" sidebar is not matched
    assert records[0] == {
        "title": "Hand trowel",
        "url": "http://shop.test/shop/p/101",
        "image": "http://shop.test/img/101.jpg",
        "price": 12.99,
        "price_currency": "USD",
        "rating": 4.5,
    }
    assert records[1]["title"] == "Pruning shears & holster"  # entity decoded
    assert records[2]["title"] == "Watering can, 10 l"  # no-break space collapsed
    assert records[3]["rating"] is None  # missing field: null, not an error


def test_detail_page_labels_own_text_and_several_authors() -> None:
    spec = _spec(
        {
            "kind": "html-detail",
            "fields": [
                {"name": "title", "selector": "div.details h2", "attr": "own_text"},
                {"name": "authors", "selector": "div.details h3.author a", "multiple": True},
                {"name": "isbn", "selector": "strong", "label": {"text": "ISBN-13"}},
                {
                    "name": "isbn_raw",
                    "selector": "strong",
                    "label": {"text": "isbn-13", "strip_separator": False},
                },
                {"name": "date", "selector": "strong", "label": {"text": "Date"}, "type": "date"},
                {
                    "name": "price",
                    "selector": "div.buy",
                    "label": {"text": "Price"},
                    "type": "price",
                },
                {"name": "cover", "selector": "img.cover", "attr": "src", "type": "image"},
            ],
        }
    )
    [record] = extract_records(spec, _page("books/detail-2.html"), "http://books.test/d2")
    assert record["title"] == "The Overton Window"
    assert record["authors"] == ["Glenn Beck", "Kevin Balfe", "Emily Bestler"]
    assert record["isbn"] == "9781439184301"
    assert record["isbn_raw"] == ": 9781439184301"
    assert record["date"] == "2010-06"
    assert (record["price"], record["price_currency"]) == (16.0, "USD")
    # Resolved against <base href>, not the page URL.
    assert record["cover"] == "http://books.example/covers/9781439184301.jpg"


def test_table_cells_dates_and_decimal_commas() -> None:
    spec = _spec(
        {
            "kind": "html-list",
            "container": "table.releases tbody tr",
            "fields": [
                {"name": "title", "selector": "td:nth-of-type(1)"},
                {"name": "price", "selector": "td:nth-of-type(3)", "type": "price"},
                {"name": "published", "selector": "td:nth-of-type(4)", "type": "date"},
            ],
        }
    )
    records = extract_records(spec, _page("books/table.html"), "http://books.test/new")
    assert [record["title"] for record in records][:2] == [
        "The Short Second Life of Bree Tanner",
        "Game Over",
    ]
    assert records[0]["price"] == 13.99
    assert records[0]["price_currency"] == "EUR"
    assert records[0]["published"] == "2010-06-05"


def test_definition_list_labels() -> None:
    spec = _spec(
        {
            "kind": "html-list",
            "container": "dl.press",
            "fields": [
                {"name": "name", "selector": "dt", "label": {"text": "Name"}},
                {
                    "name": "founded",
                    "selector": "dt",
                    "label": {"text": "Founded"},
                    "type": "number",
                },
            ],
        }
    )
    records = extract_records(spec, _page("books/definitions.html"), "http://x.test/")
    assert records == [
        {"name": "Threshold Editions", "founded": 2006},
        {"name": "Zebra Books", "founded": 1975},
        {"name": "Barbour Publishing", "founded": 1981},
    ]


def test_transforms_and_fallbacks() -> None:
    html = """<div class="item"><p class="meta">Barbour Publishing / 2010 / Paperback</p>
    <p class="by">by Ann Lee; Bo Chen and Cy Diaz</p><span class="sku">SKU-77</span></div>"""
    spec = _spec(
        {
            "kind": "html-detail",
            "fields": [
                {
                    "name": "year",
                    "selector": ".meta",
                    "type": "number",
                    "transforms": [{"op": "regex", "pattern": r" / (\d{4}) / "}],
                },
                {
                    "name": "authors",
                    "selector": ".by",
                    "multiple": True,
                    "transforms": [
                        {"op": "strip_prefix", "value": "by "},
                        {"op": "split", "pattern": r"\s*;\s*|\s+and\s+"},
                    ],
                },
                {
                    "name": "sku",
                    "selector": ".missing",
                    "fallbacks": [
                        {
                            "selector": ".sku",
                            "transforms": [{"op": "strip_prefix", "value": "SKU-"}],
                        }
                    ],
                },
                {
                    "name": "stock",
                    "selector": ".stock",
                    "transforms": [{"op": "default", "value": "unknown"}],
                },
            ],
        }
    )
    [record] = extract_records(spec, html, "http://x.test/")
    assert record == {
        "year": 2010,
        "authors": ["Ann Lee", "Bo Chen", "Cy Diaz"],
        "sku": "77",
        "stock": "unknown",
    }


def test_required_field_drops_records_without_it() -> None:
    spec = _spec(
        {
            "kind": "html-list",
            "container": "#content div.product-card",
            "fields": [
                {"name": "title", "selector": "h3 a"},
                {"name": "rating", "selector": ".rating", "required": True},
            ],
        }
    )
    records = extract_records(spec, _page("shop/cards.html"), "http://shop.test/")
    assert [record["title"] for record in records] == [
        "Hand trowel",
        "Pruning shears & holster",
        "Watering can, 10 l",
    ]


def test_json_api_paths() -> None:
    spec = _spec(
        {
            "kind": "json",
            "container": "$.data.items",
            "fields": [
                {"name": "id", "selector": "$.id", "type": "number"},
                {"name": "name", "selector": "$.name"},
                {"name": "price", "selector": "$.price.amount", "type": "price"},
                {"name": "price_currency", "selector": "$.price.currency"},
                {"name": "tags", "selector": "$.tags", "multiple": True},
                {"name": "added", "selector": "added", "type": "date"},
            ],
        }
    )
    records = extract_records(spec, _page("shop/api.json"), "http://api.test/items")
    assert records[0] == {
        "id": 501,
        "name": "Rain barrel",
        "price": 89,
        "price_currency": "EUR",
        "tags": ["water", "outdoor"],
        "added": "2024-03-02",
    }
    assert records[2]["tags"] == []


def test_json_page_that_is_not_json_is_a_document_error() -> None:
    spec = _spec({"kind": "json", "fields": [{"name": "a", "selector": "$.a"}]})
    with pytest.raises(DocumentError, match="is not JSON"):
        extract_records(spec, "<html></html>", "http://api.test/")


@pytest.mark.parametrize(
    ("page", "embedded", "container", "fields", "first"),
    [
        (
            "shop/ld-json.html",
            {"script": 'script[type="application/ld+json"]'},
            "$[?@type=ItemList].itemListElement",
            [
                {"name": "name", "selector": "$.name"},
                {"name": "price", "selector": "$.offers.price", "type": "price"},
            ],
            {"name": "Desk lamp", "price": 24.9, "price_currency": None},
        ),
        (
            "shop/next-data.html",
            {"script": "script#__NEXT_DATA__"},
            "$.props.pageProps.products",
            [
                {"name": "title", "selector": "$.title"},
                {"name": "image", "selector": "$.image", "type": "image"},
            ],
            {"title": "Oak chair", "image": "http://shop.test/img/oak.jpg"},
        ),
        (
            "shop/script-built.html",
            {"variable": "window.__DATA__"},
            "$.deals",
            [
                {"name": "title", "selector": "$.title"},
                {"name": "ends", "selector": "$.ends", "type": "date"},
            ],
            {"title": "Half-price pots", "ends": "2024-06-30"},
        ),
    ],
)
def test_embedded_json_sources(
    page: str, embedded: dict[str, str], container: str, fields: list[Any], first: dict[str, Any]
) -> None:
    spec = _spec(
        {"kind": "embedded-json", "embedded": embedded, "container": container, "fields": fields}
    )
    records = extract_records(spec, _page(page), "http://shop.test/page")
    assert len(records) == 3
    assert records[0] == first


def test_bytes_are_decoded_by_bom_meta_and_http_charset() -> None:
    spec = _spec({"kind": "html-detail", "fields": [{"name": "t", "selector": "p"}]})
    text = "<p>Café – “quoted”</p>"
    declared = b'<meta charset="windows-1252">' + text.encode("cp1252")
    cases = [
        (b"\xef\xbb\xbf" + text.encode("utf-8"), None),  # BOM, nothing declared
        (text.encode("utf-8"), None),  # valid UTF-8, nothing declared
        (declared, None),  # <meta charset>
        (text.encode("cp1252"), "text/html; charset=windows-1252"),  # HTTP header
        (b'<meta charset="utf-8">' + text.encode("cp1252"), "windows-1252"),  # header wins
    ]
    for body, charset in cases:
        [record] = extract_records(spec, body, "http://x.test/", charset=charset)
        assert record["t"] == "Café – “quoted”", (body[:30], charset)


def test_next_page_urls() -> None:
    rel_next = _spec(
        {
            "kind": "html-list",
            "container": "li.item",
            "fields": [{"name": "a", "selector": "a"}],
            "pagination": {"kind": "rel-next", "max_pages": 3},
        }
    )
    anchor = rel_next.model_copy(
        update={
            "pagination": rel_next.pagination.model_copy(  # type: ignore[union-attr]
                update={"kind": "next-selector", "selector": "a.next"}
            )
        }
    )
    by_param = _spec(
        {
            "kind": "json",
            "fields": [{"name": "a", "selector": "$.a"}],
            "pagination": {"kind": "page-param", "param": "page", "max_pages": 5},
        }
    )
    page1 = _page("shop/page1.html")
    assert next_page(rel_next, page1, "http://s.test/shop/page1.html", 1) == (
        "http://s.test/shop/page2.html"
    )
    assert next_page(anchor, page1, "http://s.test/shop/page1.html", 1) == (
        "http://s.test/shop/page2.html"
    )
    assert next_page(rel_next, _page("shop/page3.html"), "http://s.test/shop/page3.html", 3) is None
    assert next_page(rel_next, page1, "http://s.test/shop/page1.html", 3) is None  # max_pages
    assert next_page(by_param, "{}", "http://api.test/items?q=x", 1) == (
        "http://api.test/items?q=x&page=2"
    )
    assert next_page(by_param, "{}", "http://api.test/items?page=2&q=x", 2) == (
        "http://api.test/items?q=x&page=3"
    )


def test_invalid_selector_names_the_field() -> None:
    spec = _spec({"kind": "html-detail", "fields": [{"name": "price", "selector": "div[[x"}]})
    with pytest.raises(SpecError, match="field 'price'"):
        extract_records(spec, "<p></p>", "http://x.test/")


def test_hostile_pages_extract_quickly_without_crashing() -> None:
    deep = "<body>" + "<div>" * 10_000 + "<b class=v>deep</b>" + "</div>" * 10_000 + "</body>"
    wide = '<body><p class=v title="' + "x" * 1_000_000 + '">wide</p></body>'
    spec = _spec(
        {
            "kind": "html-detail",
            "fields": [
                {"name": "v", "selector": ".v"},
                {"name": "all", "selector": "body"},
                {"name": "title", "selector": ".v", "attr": "title"},
            ],
        }
    )
    started = time.perf_counter()
    [deep_record] = extract_records(spec, deep, "http://x.test/")
    [wide_record] = extract_records(spec, wide, "http://x.test/")
    assert time.perf_counter() - started < 5
    assert deep_record["v"] == "deep"
    assert deep_record["all"] == "deep"
    assert wide_record["title"] is not None
    assert len(wide_record["title"]) == 1_000_000
