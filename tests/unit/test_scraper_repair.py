"""Self-repair: a scraper broken by a redesign is re-learned from its last-good records,
keeping its field names, and refuses to produce a scraper that reads the wrong data."""

from __future__ import annotations

from typing import Any

import pytest

from models.scraper import Page, ScraperSpec, SeedPage
from scrapers import ScraperError, build_spec, extract_records, scout
from scrapers.repair import RepairFailedError, repair_spec
from scrapers.repair_checks import compare_with_last_good
from workers.demo_sites import DemoSites, ground_truth

HOST = "demo.test"
BASE = f"http://{HOST}"


@pytest.fixture(scope="module")
def sites() -> DemoSites:
    return DemoSites()


def _pages(sites: DemoSites, paths: list[str], layout: int) -> list[Page]:
    pages = []
    for path in paths:
        target = f"{path}{'&' if '?' in path else '?'}layout={layout}"
        response = sites.handle("GET", target, b"", HOST)
        assert response.status == 200, response.body[:200]
        pages.append(
            Page(url=BASE + path, body=response.body.decode(), content_type=response.content_type)
        )
    return pages


def _records(spec: ScraperSpec, pages: list[Page]) -> list[dict[str, Any]]:
    return [record for page in pages for record in extract_records(spec, page.body, page.url)]


def _recovered(truth: list[Any], found: list[Any]) -> float:
    wanted = {str(value) for value in truth}
    return len(wanted & {str(value) for value in found}) / len(wanted)


def _field_names(spec: ScraperSpec) -> list[str]:
    return [item.name for item in spec.fields]


def test_books_listing_with_hashed_classes_is_repaired_with_the_same_fields(
    sites: DemoSites,
) -> None:
    truth = ground_truth("books")
    v1 = _pages(sites, ["/sites/books/"], 1)
    examples = [
        {
            "title": book["title"],
            "author": book["author"],
            "price": f"${book['price']:.2f}",
            "url": BASE + book["url"],
        }
        for book in truth[:3]
    ]
    old = build_spec(scout(v1, [SeedPage(url=v1[0].url, records=examples)]), name="books")
    last_good = _records(old, v1)
    v2 = _pages(sites, ["/sites/books/"], 2)
    assert _records(old, v2) == []  # the redesign broke it

    result = repair_spec(old, v2, last_good)

    assert _field_names(result.spec) == _field_names(old)
    assert result.spec.key_field == old.key_field
    assert result.lost_fields == []
    assert result.spec.meta.parent_sha == old.sha256()
    assert result.records == _records(result.spec, v2)
    assert _recovered([BASE + b["url"] for b in truth], [r["url"] for r in result.records]) >= 0.9
    assert _recovered([b["title"] for b in truth], [r["title"] for r in result.records]) >= 0.9
    prices = {r["title"]: r["price"] for r in result.records}
    assert prices["Pride & Prejudice"] == "$19.95"  # the last-good form, not the tile's order


def test_news_listing_over_two_pages_is_repaired(sites: DemoSites) -> None:
    paths = ["/sites/news/?page=1", "/sites/news/?page=2"]
    v1 = _pages(sites, paths, 1)
    old = build_spec(scout(v1), name="news")
    last_good = _records(old, v1)

    result = repair_spec(old, _pages(sites, paths, 2), last_good)

    assert _field_names(result.spec) == _field_names(old)
    assert result.spec.key_field == old.key_field == "url"
    assert result.spec.pagination is not None
    truth = ground_truth("news")[:20]
    urls = [record["url"] for record in result.records]
    assert _recovered([BASE + article["url"] for article in truth], urls) >= 0.9
    dates = [record["date"] for record in result.records]
    assert _recovered([article["date"] for article in truth], dates) >= 0.9


def test_json_api_with_a_new_envelope_and_nested_price_is_repaired(sites: DemoSites) -> None:
    paths = [f"/sites/catalog/api/products?page={n}" for n in (1, 2, 3)]
    v1 = _pages(sites, paths, 1)
    old = build_spec(scout(v1), name="catalog")
    last_good = _records(old, v1)
    v2 = _pages(sites, paths, 2)
    assert _records(old, v2) == []

    result = repair_spec(old, v2, last_good)

    assert _field_names(result.spec) == _field_names(old)
    assert result.spec.key_field == "id"
    assert result.spec.container == "$.data.products"
    assert result.spec.field("price").selector == "$.price.amount"
    truth = {product["id"]: product for product in ground_truth("catalog")}
    assert _recovered(list(truth), [record["id"] for record in result.records]) >= 0.9
    assert all(record["price"] == truth[record["id"]]["price"] for record in result.records)


def test_shop_detail_pages_with_relabelled_facts_are_repaired(sites: DemoSites) -> None:
    truth = ground_truth("shop")
    paths = [product["url"] for product in truth]
    v1 = _pages(sites, paths, 1)
    examples = [
        SeedPage(
            url=v1[index].url,
            values={
                "name": truth[index]["name"],
                "price": f"${truth[index]['price']:.2f}",
                "sku": truth[index]["sku"],
            },
        )
        for index in (0, 1)
    ]
    old = build_spec(scout(v1, examples), name="shop")
    last_good = _records(old, v1)

    result = repair_spec(old, _pages(sites, paths, 2), last_good)

    assert _field_names(result.spec) == ["name", "price", "sku"]
    assert result.spec.key_field == old.key_field == "sku"
    skus = [record["sku"] for record in result.records]
    assert _recovered([product["sku"] for product in truth], skus) >= 0.9
    by_sku = {record["sku"]: record for record in result.records}
    assert all(
        by_sku[p["sku"]]["price"] == f"${p['price']:.2f}" for p in truth if p["sku"] in by_sku
    )


def test_unchanged_page_returns_the_old_spec(sites: DemoSites) -> None:
    v1 = _pages(sites, ["/sites/news/?page=1"], 1)
    old = build_spec(scout(v1), name="news")
    last_good = _records(old, v1)

    result = repair_spec(old, v1, last_good)

    assert result.spec is old
    assert result.records == last_good
    assert any("still works" in note for note in result.notes)


def test_a_page_without_the_data_is_not_repaired_into_an_empty_scraper(sites: DemoSites) -> None:
    v1 = _pages(sites, ["/sites/books/"], 1)
    old = build_spec(scout(v1), name="books")
    gone = _pages(sites, ["/sites/books/about"], 2)  # a redesign that moved the list away

    with pytest.raises(RepairFailedError) as caught:
        repair_spec(old, gone, _records(old, v1))

    assert isinstance(caught.value, ScraperError)
    assert "none of the 24 last-good records' values appear" in str(caught.value)
    assert "old spec: finds no records" in caught.value.tried


def _table(rows: list[tuple[str, str, str]], header: tuple[str, str, str]) -> Page:
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    html = (
        "<html><head><title>Parts</title></head><body><h1>Parts</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>"
    )
    return Page(url="http://parts.test/", body=html)


PARTS = [
    ("Hex bolt", "12.50", "0.30"),
    ("Wing nut", "3.20", "0.05"),
    ("Hinge", "8.75", "0.45"),
    ("Bracket", "5.10", "0.90"),
    ("Washer", "0.40", "0.01"),
]


def _parts_spec() -> tuple[ScraperSpec, list[dict[str, Any]]]:
    before = _table(PARTS, ("Name", "Price", "Weight"))
    examples = [{"name": n, "price": p, "weight": w} for n, p, w in PARTS[:2]]
    spec = build_spec(scout([before], [SeedPage(url=before.url, records=examples)]))
    return spec, _records(spec, [before])


def test_swapped_numeric_columns_are_not_read_into_each_other() -> None:
    old, last_good = _parts_spec()
    # The redesign swaps the two numeric columns (and their labels): the old positional
    # selectors still fill every field, with plausible numbers from the wrong column.
    after = _table([(n, w, p) for n, p, w in PARTS], ("Name", "Weight", "Price"))
    stale = _records(old, [after])
    assert stale and stale[0]["price"] == "0.30"  # the trap: a full but wrong extraction

    result = repair_spec(old, [after], last_good)

    assert result.spec is not old
    assert any("reads other data" in note for note in result.notes)
    assert [(r["name"], r["price"], r["weight"]) for r in result.records] == PARTS


def test_a_column_the_redesign_emptied_is_reported_lost_not_filled() -> None:
    old, last_good = _parts_spec()
    # Prices are gone; their column now holds a note, still filled on every row.
    after = _table([(n, "steel", w) for n, _, w in PARTS], ("Name", "Notes", "Weight"))
    assert all(record["price"] == "steel" for record in _records(old, [after]))

    result = repair_spec(old, [after], last_good)

    assert any("'price' shows other values" in note for note in result.notes)
    assert result.lost_fields == ["price"]
    assert _field_names(result.spec) == ["name", "weight"]
    assert [(r["name"], r["weight"]) for r in result.records] == [(n, w) for n, _, w in PARTS]


def test_repair_needs_last_good_values() -> None:
    old, _ = _parts_spec()
    with pytest.raises(RepairFailedError, match="none of the 0 last-good records"):
        repair_spec(old, [_table(PARTS, ("Name", "Price", "Weight"))], [])


# --- validation of a candidate against the last good output (DoctorRepair's staging check) ---


def test_validation_refuses_a_candidate_reading_the_wrong_column() -> None:
    old, last_good = _parts_spec()
    after = _table([(n, w, p) for n, p, w in PARTS], ("Name", "Weight", "Price"))
    # A candidate that still reads the old positions: full, plausible, and wrong.
    wrong = _records(old, [after])

    problems = compare_with_last_good(old, wrong, last_good, _field_names(old))

    assert any("'price' reads another field's data" in p for p in problems), problems
    assert compare_with_last_good(old, last_good, last_good, _field_names(old)) == []


def test_validation_refuses_an_empty_candidate() -> None:
    old, last_good = _parts_spec()
    problems = compare_with_last_good(old, [], last_good, _field_names(old))
    assert problems and "no records" in problems[0] and "never promoted" in problems[0]


def test_validation_refuses_collapsed_fields_but_leaves_dropped_ones_to_approval() -> None:
    old, last_good = _parts_spec()
    schema = _field_names(old)
    sparse = [{**record, "weight": None} for record in last_good]
    problems = compare_with_last_good(old, sparse, last_good, schema)
    assert any("'weight' filled in 0%" in p for p in problems), problems

    dropped = _with_only(old, ["name", "price"])
    kept = [{"name": r["name"], "price": r["price"]} for r in last_good]
    assert compare_with_last_good(dropped, kept, last_good, schema) == []


def test_validation_refuses_a_key_that_reads_other_items() -> None:
    old, last_good = _parts_spec()
    keyed = old.model_copy(update={"key_field": "name"})
    others = [{**r, "name": f"Gadget {i}"} for i, r in enumerate(last_good)]
    problems = compare_with_last_good(keyed, others, last_good, _field_names(old))
    assert any("'name' values are last-good" in p for p in problems), problems


def _with_only(spec: ScraperSpec, names: list[str]) -> ScraperSpec:
    return spec.model_copy(update={"fields": [f for f in spec.fields if f.name in names]})


def test_a_key_printed_without_its_constant_prefix_keeps_its_values(sites: DemoSites) -> None:
    # Layout 1 has <li id="book-7">; the redesign has <article data-sku="7">. The key must
    # come back as "book-7", or silver would see 24 new records instead of the same ones.
    v1 = _pages(sites, ["/sites/books/"], 1)
    old = build_spec(scout(v1))
    last_good = _records(old, v1)
    assert old.key_field == "id" and last_good[6]["id"] == "book-7"

    result = repair_spec(old, _pages(sites, ["/sites/books/"], 2), last_good)

    assert result.lost_fields == []
    assert [r["id"] for r in result.records] == [r["id"] for r in last_good]
    assert any("without 'book-'" in note for note in result.notes)
    assert result.spec.key_field == "id"
    truth = {BASE + book["url"]: book for book in ground_truth("books")}
    for record in result.records:
        book = truth[record["url"]]
        assert (record["price"], record["rating"]) == (book["price"], book["rating"])


def test_affixes_need_a_separator_and_several_values() -> None:
    from scrapers.repair import affixes_of

    old, _ = _parts_spec()
    good = [{"name": f"SKU-{n}-eu"} for n in (1, 22, 333)]
    assert affixes_of(old, good) == {"name": ("SKU-", "-eu")}
    assert affixes_of(old, good[:2]) == {}
    assert affixes_of(old, [{"name": n} for n in ("alpha", "alpine", "altitude")]) == {}
