"""The demo websites under /sites/: same records in both layouts, switchable at run time,
and scoutable by Mendline's heuristic scout."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser

from models.scraper import Page, SeedPage
from scrapers import build_spec, extract_records, scout
from workers.demo_server import DemoServer
from workers.demo_sites import SITES, ground_truth

LAYOUTS = (1, 2)


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    with DemoServer().start() as server:
        yield server


@pytest.fixture
def web(demo: DemoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        yield http
        http.post("/sites/_admin/reset").raise_for_status()


def _html(web: httpx.Client, path: str, layout: int | None = None) -> LexborHTMLParser:
    if layout:
        # Appended by hand: httpx's params= would replace the query (?page=N) of ``path``.
        path += f"{'&' if '?' in path else '?'}layout={layout}"
    response = web.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    tree = LexborHTMLParser(response.text)
    assert tree.css_first("head > title") is not None
    return tree


def _text(tree: LexborHTMLParser) -> str:
    assert tree.body is not None
    # &nbsp; arrives as U+00A0; a reader sees a space.
    return re.sub(r"\s+", " ", tree.body.text(separator=" ").replace("\xa0", " "))


def _classes(tree: LexborHTMLParser) -> set[str]:
    return {
        name for node in tree.css("[class]") for name in (node.attributes["class"] or "").split()
    }


def _layout_of(web: httpx.Client, path: str) -> str:
    return web.get(path).headers["X-Demo-Layout"]


# --- same records in both layouts -----------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_books_listing_and_details_show_every_book(web: httpx.Client, layout: int) -> None:
    listing = _html(web, "/sites/books/", layout)
    text = _text(listing)
    books = ground_truth("books")
    assert len(books) == 24
    links = {node.attributes["href"] for node in listing.css("a[href]")}
    for book in books:
        assert book["title"] in text and book["author"] in text
        assert f"${book['price']:.2f}" in text
        assert book["url"] in links
    ratings = [book["rating"] for book in books]
    assert None in ratings  # one book has no rating, and shows none
    assert text.count(" out of 5") == len([r for r in ratings if r is not None])
    assert "Bestsellers" in text and "War and Peace" in text  # the sidebar distractor

    for book in books[:3]:
        detail = _text(_html(web, book["url"], layout))
        for label, value in (
            ("Publisher:", book["publisher"]),
            ("ISBN-13:", book["isbn13"]),
            ("Pages:", book["pages"]),
        ):
            assert label in detail and str(value) in detail


def test_books_redesign_changes_the_markup(web: httpx.Client) -> None:
    v1, v2 = _html(web, "/sites/books/", 1), _html(web, "/sites/books/", 2)
    assert "book-card" in _classes(v1)
    assert not _classes(v1) & _classes(v2)
    assert all(name.startswith("css-") for name in _classes(v2))
    # v2 puts the price before the title in each tile.
    tile = v2.css_first("article")
    assert tile is not None and tile.text().lstrip().startswith("$")


def _catalog_items(web: httpx.Client, layout: int) -> list[dict[str, Any]]:
    url: str | None = f"/sites/catalog/api/products?page=1&layout={layout}"
    items: list[dict[str, Any]] = []
    while url is not None:
        body = web.get(url).json()
        if layout == 1:
            items += body["items"]
            url = body["next"]
        else:
            for product in body["data"]["products"]:
                price = product.pop("price")
                items.append({**product, "price": price["amount"], "currency": price["currency"]})
            url = body["links"]["next"]
        if url is not None:
            assert url.startswith(str(web.base_url))
            url = f"{url}&layout={layout}"
    return items


@pytest.mark.parametrize("layout", LAYOUTS)
def test_catalog_api_pages_through_every_product(web: httpx.Client, layout: int) -> None:
    items = _catalog_items(web, layout)
    assert len(items) == 30
    assert items == ground_truth("catalog")


def test_catalog_redesign_renames_the_envelope(web: httpx.Client) -> None:
    v1 = web.get("/sites/catalog/api/products", params={"page": 1, "layout": 1}).json()
    v2 = web.get("/sites/catalog/api/products", params={"page": 1, "layout": 2}).json()
    assert "items" in v1 and "items" not in v2
    assert v2["data"]["products"][0]["price"] == {
        "amount": v1["items"][0]["price"],
        "currency": "EUR",
    }


@pytest.mark.parametrize("layout", LAYOUTS)
def test_spa_static_html_has_no_records(web: httpx.Client, layout: int) -> None:
    tree = _html(web, "/sites/spa/", layout)
    app = tree.css_first("div#app")
    assert app is not None and app.text().strip() == "" and not list(app.iter())
    page_source = web.get("/sites/spa/", params={"layout": layout}).text
    for job in ground_truth("spa"):
        assert job["title"] not in page_source and job["company"] not in page_source
    assert "/sites/spa/data.json" in page_source
    assert web.get("/sites/spa/data.json").json() == {"jobs": ground_truth("spa")}


def test_spa_redesign_changes_the_rendering_script(web: httpx.Client) -> None:
    v1 = web.get("/sites/spa/", params={"layout": 1}).text
    v2 = web.get("/sites/spa/", params={"layout": 2}).text
    assert 'class="job"' in v1 and "<table" not in v1
    assert "sc-table" in v2 and 'class="job"' not in v2


@pytest.mark.parametrize("layout", LAYOUTS)
def test_news_rel_next_reaches_all_thirty_articles(web: httpx.Client, layout: int) -> None:
    url: str | None = "/sites/news/"
    seen = ""
    pages = 0
    while url is not None and pages < 5:
        tree = _html(web, url, layout)
        seen += _text(tree)
        pages += 1
        link = tree.css_first('link[rel="next"]')
        url = urljoin("/sites/news/", link.attributes["href"]) if link is not None else None
        if url is not None:
            assert ("?p=" in url) == (layout == 2)
            next_anchor = [node for node in tree.css("a") if node.text().strip() == "Next »"]
            assert next_anchor and next_anchor[0].attributes["href"] == url
    assert pages == 3
    for article in ground_truth("news"):
        assert article["headline"] in seen and article["section"] in seen
        if article["author"] is not None:
            assert article["author"] in seen


def test_news_article_pages_exist(web: httpx.Client) -> None:
    article = ground_truth("news")[0]
    for layout in LAYOUTS:
        assert article["headline"] in _text(_html(web, article["url"], layout))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shop_product_pages_carry_labelled_fields_and_ld_json(
    web: httpx.Client, layout: int
) -> None:
    index = _html(web, "/sites/shop/", layout)
    links = [node.attributes["href"] for node in index.css('a[href^="/sites/shop/p/"]')]
    products = ground_truth("shop")
    assert links == [product["url"] for product in products]
    for product in products:
        tree = _html(web, product["url"], layout)
        text = _text(tree)
        assert product["name"] in text and f"${product['price']:.2f}" in text
        assert product["sku"] in text and product["weight"] in text
        if product["brand"] is None:
            assert "Brand" not in text  # the missing field is left out, not printed empty
        else:
            assert product["brand"] in text
        script = tree.css_first('script[type="application/ld+json"]')
        assert script is not None
        data = json.loads(script.text())
        assert data["@type"] == "Product" and data["name"] == product["name"]
        assert float(data["offers"]["price"]) == product["price"]
        in_head = script.parent is not None and script.parent.tag == "head"
        assert in_head == (layout == 1)
    v1 = _html(web, products[0]["url"], 1)
    v2 = _html(web, products[0]["url"], 2)
    assert v1.css("dl dt") and not v1.css("table")
    assert v2.css("table td") and not v2.css("dl")


# --- switching layouts ----------------------------------------------------------------------


def test_admin_switch_is_per_site(web: httpx.Client) -> None:
    answer = web.post("/sites/_admin/layout", json={"site": "books", "layout": 2})
    assert answer.status_code == 200
    assert answer.json()["layouts"] == {**dict.fromkeys(SITES, 1), "books": 2}
    assert _layout_of(web, "/sites/books/") == "2"
    assert "book-card" not in web.get("/sites/books/").text
    assert _layout_of(web, "/sites/news/") == "1"
    # The curl-less form, and reading the layouts back.
    assert web.get("/sites/_admin/layout", params={"site": "news", "layout": "2"}).is_success
    assert web.get("/sites/_admin/layout").json()["layouts"]["news"] == 2
    assert "?p=2" in web.get("/sites/news/").text
    index = _text(_html(web, "/sites/"))
    assert "books /sites/books/ v2" in index and "shop /sites/shop/ v1" in index

    reset = web.post("/sites/_admin/reset")
    assert reset.json()["layouts"] == dict.fromkeys(SITES, 1)
    assert _layout_of(web, "/sites/books/") == "1"


def test_layout_query_overrides_only_that_request(web: httpx.Client) -> None:
    assert web.get("/sites/books/", params={"layout": 2}).headers["X-Demo-Layout"] == "2"
    assert _layout_of(web, "/sites/books/") == "1"
    web.post("/sites/_admin/layout", json={"site": "books", "layout": 2})
    assert web.get("/sites/books/", params={"layout": 1}).headers["X-Demo-Layout"] == "1"
    assert _layout_of(web, "/sites/books/") == "2"


def test_concurrent_switches_stay_per_site(web: httpx.Client) -> None:
    # One thread per site flips its own site ten times while the others do the same; each
    # must always read back its own latest layout, and end on the layout it set last.
    def flip(index: int) -> list[str]:
        site = list(SITES)[index]
        seen = []
        for step in range(10):
            layout = 1 + (index + step) % 2
            web.post("/sites/_admin/layout", json={"site": site, "layout": layout})
            seen.append(_layout_of(web, f"/sites/{site}/") + str(layout))
        return seen

    with ThreadPoolExecutor(max_workers=len(SITES)) as pool:
        results = list(pool.map(flip, range(len(SITES))))
    for seen in results:
        assert all(pair[0] == pair[1] for pair in seen)
    assert web.get("/sites/_admin/layout").json()["layouts"] == {
        site: 1 + (index + 9) % 2 for index, site in enumerate(SITES)
    }


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/sites/library/", "the sites are books, catalog, spa, news, shop"),
        ("/sites/books/item/999", "book ids are 1-24"),
        ("/sites/news/?page=4", "pages run from 1 to 3"),
        ("/sites/shop/p/no-such-thing", "linked from /sites/shop/"),
        ("/sites/spa/app.js", "/sites/spa/data.json"),
    ],
)
def test_unknown_pages_are_404_with_a_hint(web: httpx.Client, path: str, hint: str) -> None:
    response = web.get(path)
    assert response.status_code == 404
    assert hint in _text(LexborHTMLParser(response.text))


def test_api_and_admin_errors_are_json(web: httpx.Client) -> None:
    missing = web.get("/sites/catalog/api/products", params={"page": 9})
    assert missing.status_code == 404 and "pages run from 1 to 3" in missing.json()["error"]
    unknown = web.post("/sites/_admin/layout", json={"site": "library", "layout": 2})
    assert unknown.status_code == 404 and "books" in unknown.json()["error"]
    bad_layout = web.post("/sites/_admin/layout", json={"site": "books", "layout": 3})
    assert bad_layout.status_code == 400 and "1, 2" in bad_layout.json()["error"]
    not_json = web.post("/sites/_admin/layout", content=b"books=2")
    assert not_json.status_code == 400 and '"site": "books"' in not_json.json()["error"]
    assert web.get("/sites/books/", params={"layout": "9"}).status_code == 400
    assert web.post("/sites/books/").status_code == 405
    assert web.get("/sites/_admin/layout").json()["layouts"] == dict.fromkeys(SITES, 1)


# --- the scout recovers the records of layout 1 ----------------------------------------------


def _pages(web: httpx.Client, paths: list[str]) -> list[Page]:
    pages = []
    for path in paths:
        response = web.get(path)
        assert response.status_code == 200
        pages.append(
            Page(
                url=str(response.url),
                body=response.text,
                content_type=response.headers["content-type"],
            )
        )
    return pages


def _values(records: list[dict[str, Any]]) -> set[str]:
    found = set()
    for record in records:
        for value in record.values():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.add(f"{value:.2f}")  # a price of 51.0 may come back as 51
            elif value is not None:
                found.add(str(value).removeprefix("$"))
    return found


def _recovered(
    truth: list[dict[str, Any]], records: list[dict[str, Any]], keys: list[str]
) -> float:
    found = _values(records)
    expected = _values([{key: item[key] for key in keys} for item in truth])
    return len(expected & found) / len(expected)


def test_scout_finds_the_books_without_examples(web: httpx.Client) -> None:
    pages = _pages(web, ["/sites/books/"])
    records = extract_records(build_spec(scout(pages)), pages[0].body, pages[0].url)
    assert len(records) == 24  # the Bestsellers sidebar is not mistaken for the list
    truth = [
        {**book, "url": urljoin(str(web.base_url), book["url"])} for book in ground_truth("books")
    ]
    assert _recovered(truth, records, ["title", "price", "url"]) >= 0.9


def test_scout_finds_the_news_and_its_pagination_without_examples(web: httpx.Client) -> None:
    pages = _pages(web, ["/sites/news/?page=1", "/sites/news/?page=2"])
    blueprint = scout(pages)
    assert blueprint.pagination is not None and blueprint.pagination.kind == "rel-next"
    spec = build_spec(blueprint)
    records = [record for page in pages for record in extract_records(spec, page.body, page.url)]
    truth = [
        {**article, "url": urljoin(str(web.base_url), article["url"])}
        for article in ground_truth("news")[:20]
    ]
    assert _recovered(truth, records, ["headline", "date", "url"]) >= 0.9


def test_scout_reads_the_catalog_api_without_examples(web: httpx.Client) -> None:
    pages = _pages(web, [f"/sites/catalog/api/products?page={n}" for n in (1, 2, 3)])
    spec = build_spec(scout(pages))
    records = [record for page in pages for record in extract_records(spec, page.body, page.url)]
    assert _recovered(ground_truth("catalog"), records, ["id", "name", "price"]) >= 0.9


def test_scout_learns_shop_product_pages_from_two_examples(web: httpx.Client) -> None:
    # One record per page: without examples the scout cannot know which page parts are
    # the record, so it is given two product pages' values.
    truth = ground_truth("shop")
    pages = _pages(web, [product["url"] for product in truth])
    examples = [
        SeedPage(
            url=pages[index].url,
            values={
                "name": truth[index]["name"],
                "price": f"${truth[index]['price']:.2f}",
                "sku": truth[index]["sku"],
            },
        )
        for index in (0, 1)
    ]
    spec = build_spec(scout(pages, examples=examples))
    records = [record for page in pages for record in extract_records(spec, page.body, page.url)]
    assert _recovered(truth, records, ["name", "price", "sku"]) >= 0.9
