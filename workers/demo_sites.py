"""Five small demo websites under ``/sites/`` of the demo server, each in two layouts.

Scrapers need sites to scrape, and self-healing needs sites that *change*. Every site here
serves the same records in layout 1 (v1) and in a redesign (v2: other tags, classes, nesting
and field order), and the current layout of each site can be switched while a scraper
watches it::

    GET  /sites/                          index of the sites and their current layouts
    GET  /sites/books/                    24 book cards, a "Bestsellers" sidebar, detail pages
    GET  /sites/catalog/api/products?page=N   a paginated JSON API (3 pages of 10)
    GET  /sites/spa/                      an empty <div id="app"> filled by JavaScript
    GET  /sites/news/?page=N              30 articles, 10 per page, rel=next pagination
    GET  /sites/shop/                     12 product links; /sites/shop/p/<slug> details
    POST /sites/_admin/layout             {"site": "books", "layout": 2}: switch a site
    GET  /sites/_admin/layout[?site=&layout=]  current layouts (or switch, for curl-less use)
    POST /sites/_admin/reset              every site back to layout 1

Any page takes ``?layout=1|2`` to override the site's current layout for that request.
Templates and data live in ``examples/demo_site/`` (see its README); the data files are
also the ground truth a scraper should recover (:func:`ground_truth`).

Pages are rendered with Jinja2 (a project dependency) so the markup of each layout reads as
HTML in its own file rather than as string building in Python.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

SITE_ROOT = Path(__file__).resolve().parent.parent / "examples" / "demo_site"
"""Templates (``templates/``) and data (``data/<site>.json``) of the demo sites."""

PREFIX = "/sites"
LAYOUTS = (1, 2)
NEWS_PER_PAGE = 10
CATALOG_PER_PAGE = 10

SITES: dict[str, str] = {
    "books": "Book shop: 24 book cards, a Bestsellers sidebar, detail pages per book",
    "catalog": "JSON API: 30 products, 3 pages of 10 linked by a next URL",
    "spa": "Job board drawn by JavaScript from /sites/spa/data.json (needs a browser)",
    "news": "News list: 30 articles, 10 per page, rel=next pagination",
    "shop": "Kitchen shop: 12 product pages with labelled fields and ld+json",
}
"""Site name → what it is; the order of the index page."""

_START = {"catalog": "/sites/catalog/api/products?page=1"}
_INFO_PAGES = {
    "books": {
        "help/shipping": "Shipping",
        "help/returns": "Returns",
        "help/contact": "Contact",
        "about": "Our story",
        "jobs": "Jobs",
        "press": "Press",
    },
    "shop": {"cart": "Your cart"},
}
"""Pages that navigation links point at, served as tiny pages so crawlers find no 404s."""
_MONTHS = "January February March April May June July August September October November December"

Query = Mapping[str, str]


@dataclass(frozen=True)
class SiteResponse:
    """What the HTTP layer sends back: status, body and headers."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class _SiteError(Exception):
    """A request a demo site refuses; rendered as JSON or as an HTML error page."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class LayoutBoard:
    """The current layout of every site; shared by all request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._layouts = dict.fromkeys(SITES, LAYOUTS[0])

    def get(self, site: str) -> int:
        """The current layout of ``site``."""
        with self._lock:
            return self._layouts[site]

    def set(self, site: str, layout: int) -> dict[str, int]:
        """Switch ``site`` to ``layout``.

        Returns:
            Every site's layout after the switch.

        Raises:
            _SiteError: The site or layout is unknown.
        """
        site, layout = _check_site(site), _check_layout(layout)
        with self._lock:
            self._layouts[site] = layout
            return dict(self._layouts)

    def reset(self) -> dict[str, int]:
        """Put every site back on layout 1 and return the layouts."""
        with self._lock:
            self._layouts = dict.fromkeys(SITES, LAYOUTS[0])
            return dict(self._layouts)

    def snapshot(self) -> dict[str, int]:
        """Every site's current layout."""
        with self._lock:
            return dict(self._layouts)


# ---------------------------------------------------------------------------------------------
# Data and ground truth


@cache
def _data(site: str) -> dict[str, Any]:
    path = SITE_ROOT / "data" / f"{site}.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def ground_truth(site: str) -> list[dict[str, Any]]:
    """The records of ``site`` as a user wants them out of a scraper.

    Values are typed (prices are floats, ``rating``/``author``/``brand`` may be ``None``),
    entities are decoded and ``url`` is the record's page path (absent for ``catalog``,
    whose records have no pages). Both layouts show exactly these values; the README says
    which fields appear on which page.

    Raises:
        KeyError: ``site`` is not one of :data:`SITES`.
    """
    site = site if site in SITES else _unknown_site(site)
    data = _data(site)
    if site == "books":
        return [{**book, "url": f"{PREFIX}/books/item/{book['id']}"} for book in data["books"]]
    if site == "catalog":
        return [dict(product) for product in data["products"]]
    if site == "spa":
        return [dict(job) for job in data["jobs"]]
    if site == "news":
        return [
            {**article, "url": f"{PREFIX}/news/a/{article['slug']}"} for article in data["articles"]
        ]
    return [{**item, "url": f"{PREFIX}/shop/p/{item['slug']}"} for item in data["products"]]


def _unknown_site(site: str) -> str:
    raise KeyError(f"unknown demo site {site!r}; the sites are {', '.join(SITES)}")


# ---------------------------------------------------------------------------------------------
# Rendering


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _rating(value: float) -> str:
    return f"{value:.1f} out of 5"


def _long_date(value: str) -> str:
    day = date.fromisoformat(value)
    return f"{day.day} {_MONTHS.split()[day.month - 1]} {day.year}"


def _short_date(value: str) -> str:
    day = date.fromisoformat(value)
    return f"{day.day:02d}.{day.month:02d}.{day.year}"


def _environment(root: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(root / "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
    )
    env.filters.update(money=_money, rating=_rating, long_date=_long_date, short_date=_short_date)
    return env


def _ld_json(product: Mapping[str, Any]) -> Markup:
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": product["name"],
        "sku": product["sku"],
        "offers": {
            "@type": "Offer",
            "price": f"{product['price']:.2f}",
            "priceCurrency": product["currency"],
            "availability": "https://schema.org/"
            + ("InStock" if product["availability"] == "In stock" else "OutOfStock"),
        },
    }
    if product["brand"]:
        data["brand"] = {"@type": "Brand", "name": product["brand"]}
    # "</" would end the <script> element early; JSON allows "<\/" for it.
    return Markup(json.dumps(data, ensure_ascii=False).replace("</", "<\\/"))


# ---------------------------------------------------------------------------------------------
# Request handling


class DemoSites:
    """The demo sites: routes a request under ``/sites/`` to the site and layout."""

    def __init__(self, root: Path = SITE_ROOT) -> None:
        self.layouts = LayoutBoard()
        self._env = _environment(root)
        self._sites: dict[str, Callable[[str, Query, int, str], SiteResponse]] = {
            "books": self._books,
            "catalog": self._catalog,
            "spa": self._spa,
            "news": self._news,
            "shop": self._shop,
        }

    def handle(self, method: str, target: str, body: bytes, host: str) -> SiteResponse:
        """Answer one request.

        Args:
            method: HTTP method (``GET`` or ``POST``).
            target: The request target, path and query (``/sites/news/?page=2``).
            body: The request body (JSON for ``POST /sites/_admin/layout``).
            host: The ``Host`` header, used for absolute URLs in JSON responses.
        """
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        rest = parts.path.removeprefix(PREFIX)
        site, _, page = rest.strip("/").partition("/")
        wants_json = site in ("_admin", "catalog") and page != ""
        try:
            if site == "_admin":
                return self._admin(method, page, query, body)
            if method != "GET":
                raise _SiteError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{method} {parts.path}: demo site pages are read-only, use GET "
                    f"(only {PREFIX}/_admin/... takes POST)",
                )
            if site == "":
                return self._index()
            if site not in self._sites:
                raise _SiteError(
                    HTTPStatus.NOT_FOUND,
                    f"there is no demo site {site!r}; the sites are {', '.join(SITES)}",
                )
            layout = _check_layout(query["layout"]) if "layout" in query else None
            chosen = layout or self.layouts.get(site)
            response = self._sites[site](page, query, chosen, f"http://{host}")
            response.headers["X-Demo-Layout"] = str(chosen)
            return response
        except _SiteError as exc:
            if wants_json:
                return _json(exc.status, {"error": str(exc)})
            return self._page(exc.status, "not_found.html", message=str(exc))

    # -- admin and index ---------------------------------------------------------------------

    def _admin(self, method: str, action: str, query: Query, body: bytes) -> SiteResponse:
        if action == "reset" and method in ("GET", "POST"):
            return _json(HTTPStatus.OK, {"layouts": self.layouts.reset()})
        if action != "layout":
            raise _SiteError(
                HTTPStatus.NOT_FOUND,
                f"no admin action {action!r}; use {PREFIX}/_admin/layout or {PREFIX}/_admin/reset",
            )
        if method == "POST":
            request = _json_body(body)
        elif method == "GET" and not query:
            return _json(HTTPStatus.OK, {"layouts": self.layouts.snapshot()})
        elif method == "GET":
            request = dict(query)
        else:
            raise _SiteError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not supported; use POST")
        if "site" not in request or "layout" not in request:
            raise _SiteError(
                HTTPStatus.BAD_REQUEST,
                'switching a layout needs "site" and "layout", e.g. {"site": "books", "layout": 2}',
            )
        layouts = self.layouts.set(str(request["site"]), request["layout"])
        site = str(request["site"])
        return _json(HTTPStatus.OK, {"site": site, "layout": layouts[site], "layouts": layouts})

    def _index(self) -> SiteResponse:
        layouts = self.layouts.snapshot()
        sites = [
            {
                "name": name,
                "start": _START.get(name, f"{PREFIX}/{name}/"),
                "layout": layouts[name],
                "description": description,
            }
            for name, description in SITES.items()
        ]
        return self._page(HTTPStatus.OK, "sites_index.html", sites=sites)

    # -- the sites ---------------------------------------------------------------------------

    def _books(self, page: str, query: Query, layout: int, base: str) -> SiteResponse:
        data = _data("books")
        if page == "":
            return self._page(HTTPStatus.OK, f"books/v{layout}_list.html", **data)
        if page.startswith("item/"):
            wanted = page.removeprefix("item/")
            for book in [*data["books"], *data["bestsellers"]]:
                if str(book["id"]) == wanted:
                    return self._page(HTTPStatus.OK, f"books/v{layout}_item.html", book=book)
            raise _SiteError(
                HTTPStatus.NOT_FOUND,
                f"there is no book {wanted!r}; book ids are 1-{len(data['books'])} "
                f"(and the bestsellers 101-{100 + len(data['bestsellers'])})",
            )
        return self._info("books", page, "Quire & Quill Books")

    def _catalog(self, page: str, query: Query, layout: int, base: str) -> SiteResponse:
        if page == "":
            return self._page(
                HTTPStatus.OK, f"catalog/v{layout}_index.html", per_page=CATALOG_PER_PAGE
            )
        if page.rstrip("/") != "api/products":
            raise _SiteError(
                HTTPStatus.NOT_FOUND,
                f"no catalog endpoint {page!r}; the API is {PREFIX}/catalog/api/products?page=1",
            )
        products: list[dict[str, Any]] = _data("catalog")["products"]
        number, count = _page_number(query, ("page",), len(products), CATALOG_PER_PAGE)
        items = products[(number - 1) * CATALOG_PER_PAGE : number * CATALOG_PER_PAGE]
        next_url: str | None = None
        if number < count:
            next_url = f"{base}{PREFIX}/catalog/api/products?page={number + 1}"
        if layout == 1:
            return _json(
                HTTPStatus.OK,
                {"page": number, "total": len(products), "items": items, "next": next_url},
            )
        renamed = [
            {
                "id": item["id"],
                "name": item["name"],
                "category": item["category"],
                "price": {"amount": item["price"], "currency": item["currency"]},
                "in_stock": item["in_stock"],
            }
            for item in items
        ]
        return _json(
            HTTPStatus.OK,
            {
                "data": {"products": renamed},
                "meta": {"page": number, "pages": count, "total": len(products)},
                "links": {"next": next_url},
            },
        )

    def _spa(self, page: str, query: Query, layout: int, base: str) -> SiteResponse:
        if page == "":
            return self._page(HTTPStatus.OK, f"spa/v{layout}_app.html")
        if page == "data.json":
            return _json(HTTPStatus.OK, _data("spa"))
        raise _SiteError(
            HTTPStatus.NOT_FOUND,
            f"no page {page!r} on the spa site; it has {PREFIX}/spa/ and {PREFIX}/spa/data.json",
        )

    def _news(self, page: str, query: Query, layout: int, base: str) -> SiteResponse:
        articles: list[dict[str, Any]] = _data("news")["articles"]
        if page == "":
            # Both layouts accept both parameters, so a crawl that started on v1 links
            # (?page=) keeps working after the redesign switched to ?p=.
            number, count = _page_number(query, ("page", "p"), len(articles), NEWS_PER_PAGE)
            chosen = articles[(number - 1) * NEWS_PER_PAGE : number * NEWS_PER_PAGE]
            return self._page(
                HTTPStatus.OK,
                f"news/v{layout}_list.html",
                articles=chosen,
                page=number,
                pages=count,
            )
        slug = page.removeprefix("a/")
        for article in articles:
            if page.startswith("a/") and article["slug"] == slug:
                return self._page(HTTPStatus.OK, f"news/v{layout}_article.html", article=article)
        raise _SiteError(
            HTTPStatus.NOT_FOUND,
            f"no news page {page!r}; the list is {PREFIX}/news/?page=1 and articles are "
            f"{PREFIX}/news/a/<slug> as linked from the list",
        )

    def _shop(self, page: str, query: Query, layout: int, base: str) -> SiteResponse:
        products: list[dict[str, Any]] = _data("shop")["products"]
        if page == "":
            return self._page(HTTPStatus.OK, f"shop/v{layout}_index.html", products=products)
        if page.startswith("p/"):
            slug = page.removeprefix("p/").rstrip("/")
            for product in products:
                if product["slug"] == slug:
                    return self._page(
                        HTTPStatus.OK,
                        f"shop/v{layout}_product.html",
                        product=product,
                        ld_json=_ld_json(product),
                    )
            raise _SiteError(
                HTTPStatus.NOT_FOUND,
                f"no product {slug!r}; the product pages are linked from {PREFIX}/shop/",
            )
        return self._info("shop", page, "Pantry & Pan")

    # -- helpers ---------------------------------------------------------------------------

    def _info(self, site: str, page: str, site_title: str) -> SiteResponse:
        title = _INFO_PAGES.get(site, {}).get(page.rstrip("/"))
        if title is None:
            raise _SiteError(
                HTTPStatus.NOT_FOUND,
                f"no page {page!r} on the {site} site; start at {PREFIX}/{site}/",
            )
        return self._page(
            HTTPStatus.OK, "info.html", title=title, site_title=site_title, home=f"{PREFIX}/{site}/"
        )

    def _page(self, status: HTTPStatus, template: str, **context: Any) -> SiteResponse:
        html = self._env.get_template(template).render(**context)
        return SiteResponse(int(status), html.encode("utf-8"), "text/html; charset=utf-8", {})


def _json(status: HTTPStatus, body: Any) -> SiteResponse:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return SiteResponse(int(status), data, "application/json; charset=utf-8", {})


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"null")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _SiteError(
            HTTPStatus.BAD_REQUEST,
            'the body must be a JSON object such as {"site": "books", "layout": 2}; '
            f"got {body[:80]!r}",
        )
    return parsed


def _check_site(site: str) -> str:
    if site not in SITES:
        raise _SiteError(
            HTTPStatus.NOT_FOUND,
            f"there is no demo site {site!r}; the sites are {', '.join(SITES)}",
        )
    return site


def _check_layout(layout: Any) -> int:
    text = str(layout).strip().lower().removeprefix("v")
    if isinstance(layout, bool) or not text.isdigit() or int(text) not in LAYOUTS:
        raise _SiteError(
            HTTPStatus.BAD_REQUEST,
            f"layout must be one of {', '.join(map(str, LAYOUTS))}; got {layout!r}",
        )
    return int(text)


def _page_number(
    query: Query, names: tuple[str, ...], total: int, per_page: int
) -> tuple[int, int]:
    count = -(-total // per_page)
    text = next((query[name] for name in names if name in query), "1")
    number = int(text) if text.isdigit() else 0
    if not 1 <= number <= count:
        raise _SiteError(
            HTTPStatus.NOT_FOUND,
            f"no page {text!r}; pages run from 1 to {count} ({names[0]}=1..{count})",
        )
    return number, count
