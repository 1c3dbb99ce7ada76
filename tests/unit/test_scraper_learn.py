"""The scout with examples: learn selectors from seed pages and values, then extract the
same fields from pages it has not seen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.scraper import Page, SeedPage
from scrapers import (
    ExampleNotFoundError,
    SelectorNotFoundError,
    build_spec,
    extract_records,
    scout,
)

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"
DETAIL_VALUES: dict[int, dict[str, Any]] = {
    1: {
        "title": "The Short Second Life of Bree Tanner",
        "authors": ["Stephenie Meyer"],
        "isbn": ": 9780316125581",
        "publisher": "Hachette Book Group",
        "cover": "http://books.example/covers/9780316125581.jpg",
    },
    2: {
        "title": "The Overton Window",
        "authors": ["Glenn Beck", "Kevin Balfe", "Emily Bestler"],
        "isbn": ": 9781439184301",
        "publisher": "Threshold Editions",
        "cover": "http://books.example/covers/9781439184301.jpg",
    },
}


def _detail(number: int) -> Page:
    path = SITES / "books" / f"detail-{number}.html"
    return Page(url=f"http://books.test/detail-{number}", body=path.read_text(encoding="utf-8"))


def _learn_detail(values: dict[int, dict[str, Any]]) -> tuple[Any, list[Page]]:
    pages = [_detail(number) for number in (1, 2, 3, 4)]
    seeds = [SeedPage(url=pages[n - 1].url, values=v) for n, v in values.items()]
    return scout(pages, seeds), pages


def test_detail_fields_generalise_to_unseen_pages() -> None:
    blueprint, pages = _learn_detail(DETAIL_VALUES)
    assert blueprint.kind == "html-detail"
    assert [item.name for item in blueprint.fields] == [
        "title",
        "authors",
        "isbn",
        "publisher",
        "cover",
    ]
    spec = build_spec(blueprint, name="books")
    [third] = extract_records(spec, pages[2].body, pages[2].url)
    [fourth] = extract_records(spec, pages[3].body, pages[3].url)
    assert third == {
        "title": "Lydia's Charm",  # own text: the "(Paperback)" subtitle is left out
        "authors": ["Wanda E. Brunstetter"],
        "isbn": ": 9781602600638",  # the examples kept the ": ", so does the scraper
        "publisher": "Barbour Publishing & Sons",
        "cover": "http://books.example/covers/9781602600638.jpg",
    }
    assert fourth["authors"] == ["Fern Michaels", "Ann Other"]  # not the related books'
    assert blueprint.key_field == "isbn"
    assert spec.meta.author == "heuristic"


def test_label_anchor_is_preferred_and_separator_follows_the_examples() -> None:
    clean = {n: {"isbn": v["isbn"].removeprefix(": ")} for n, v in DETAIL_VALUES.items()}
    blueprint, pages = _learn_detail(clean)
    [isbn] = blueprint.fields
    assert isbn.label is not None and isbn.label.text == "ISBN-13"
    assert isbn.label.strip_separator
    [record] = extract_records(build_spec(blueprint), pages[3].body, pages[3].url)
    assert record == {"isbn": "9781420106879"}


def _pages(bodies: list[str]) -> list[Page]:
    return [Page(url=f"http://x.test/{n}", body=body) for n, body in enumerate(bodies)]


def test_value_inside_a_longer_text_gets_a_transform() -> None:
    lines = [
        ("Barbour Publishing", "2010", "Paperback"),
        ("Zondervan", "2003", "Hardcover"),
        ("Value Books", "2008", "Mass Market"),
    ]
    pages = _pages([f'<div class="product-publisher">{a} / {b} / {c}</div>' for a, b, c in lines])
    seeds = [
        SeedPage(url=pages[0].url, values={"year": "2010"}),
        SeedPage(url=pages[1].url, values={"year": "2003"}),
    ]
    spec = build_spec(scout(pages, seeds))
    assert spec.fields[0].transforms[0].op == "regex"
    assert extract_records(spec, pages[2].body, pages[2].url) == [{"year": "2008"}]


def test_several_values_in_one_text_are_split() -> None:
    pages = _pages(
        [
            '<p class="byline">by Ann Lee; Bo Chen and Cy Diaz</p>',
            '<p class="byline">by Dee Ray and Ed Fox</p>',
            '<p class="byline">by Flo Gage; Gil Ho</p>',
        ]
    )
    seeds = [
        SeedPage(url=pages[0].url, values={"authors": ["Ann Lee", "Bo Chen", "Cy Diaz"]}),
        SeedPage(url=pages[1].url, values={"authors": ["Dee Ray", "Ed Fox"]}),
    ]
    spec = build_spec(scout(pages, seeds))
    assert [step.op for step in spec.fields[0].transforms] == ["strip_prefix", "split"]
    assert extract_records(spec, pages[2].body, pages[2].url) == [
        {"authors": ["Flo Gage", "Gil Ho"]}
    ]


def test_missing_example_names_field_value_and_page() -> None:
    values = {
        1: {"title": "The Short Second Life of Bree Tanner"},
        2: {"title": "A Title That Is Not There"},
    }
    with pytest.raises(ExampleNotFoundError) as caught:
        _learn_detail(values)
    error = caught.value
    assert (error.field, error.value, error.url) == (
        "title",
        "A Title That Is Not There",
        "http://books.test/detail-2",
    )
    assert "A Title That Is Not There" in str(error) and "detail-2" in str(error)


def test_examples_in_unrelated_places_have_no_common_selector() -> None:
    pages = _pages(
        [
            "<h1>Welcome</h1><div><p>Alpha</p></div><p>Contact us</p>",
            "<section><span>Beta</span></section><h1>Other</h1>",
        ]
    )
    seeds = [
        SeedPage(url=pages[0].url, values={"name": "Alpha"}),
        SeedPage(url=pages[1].url, values={"name": "Beta"}),
    ]
    with pytest.raises(SelectorNotFoundError, match="field 'name'"):
        scout(pages, seeds)


def test_list_from_example_records_ignores_the_sidebar() -> None:
    page = Page(
        url="http://shop.test/cards.html",
        body=(SITES / "shop" / "cards.html").read_text(encoding="utf-8"),
    )
    seed = SeedPage(
        url=page.url,
        records=[
            {"name": "Hand trowel", "cost": "$12.99", "link": "http://shop.test/shop/p/101"},
            {"name": "Watering can, 10 l", "cost": "$38.50", "link": "http://shop.test/shop/p/103"},
        ],
    )
    blueprint = scout([page], [seed])
    assert blueprint.kind == "html-list"
    assert [item.name for item in blueprint.fields] == ["name", "cost", "link"]
    records = extract_records(build_spec(blueprint), page.body, page.url)
    assert [record["name"] for record in records] == [
        "Hand trowel",
        "Pruning shears & holster",
        "Watering can, 10 l",
        "Kneeling pad",
    ]
    assert records[1]["link"] == "http://shop.test/shop/p/102"
    assert blueprint.key_field == "link"


def test_learned_selectors_avoid_hashed_classes() -> None:
    page = Page(url="http://shop.test/k", body=(SITES / "shop" / "hashed.html").read_text())
    seed = SeedPage(
        url=page.url,
        records=[
            {"title": "Chef's knife", "price": "£45.00"},
            {"title": "Dutch oven", "price": "£89.99"},
        ],
    )
    blueprint = scout([page], [seed])
    selectors = [blueprint.container or "", *(item.selector for item in blueprint.fields)]
    assert not any("css-" in selector or "jsx-" in selector for selector in selectors)
    records = extract_records(build_spec(blueprint), page.body, page.url)
    assert [record["price"] for record in records] == ["£45.00", "£22.50", "£89.99"]


def test_examples_found_only_in_script_data_give_an_embedded_json_spec() -> None:
    page = Page(
        url="http://shop.test/deals", body=(SITES / "shop" / "script-built.html").read_text()
    )
    seed = SeedPage(
        url=page.url,
        records=[
            {"deal": "Half-price pots", "until": "2024-06-30"},
            {"deal": "Two trays for one", "until": "2024-07-15"},
        ],
    )
    blueprint = scout([page], [seed])
    assert blueprint.kind == "embedded-json"
    records = extract_records(build_spec(blueprint), page.body, page.url)
    assert records[2] == {"deal": "Free potting soil", "until": "2024-07-01"}


def test_json_api_with_examples_uses_the_example_names() -> None:
    page = Page(
        url="http://api.test/items",
        body=(SITES / "shop" / "api.json").read_text(),
        content_type="application/json",
    )
    seed = SeedPage(url=page.url, values={"product": "Rain barrel", "cost": "89"})
    blueprint = scout([page], [seed])
    assert [(item.name, item.selector) for item in blueprint.fields] == [
        ("product", "$.name"),
        ("cost", "$.price.amount"),
    ]
    records = extract_records(build_spec(blueprint), page.body, page.url)
    assert records[2]["product"] == "Garden hose 25 m"
