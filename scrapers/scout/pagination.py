"""Detect how a listing reaches its next page."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urljoin, urlsplit

from models.scraper import PaginationSpec
from scrapers.runtime.text import clean_text
from scrapers.scout.document import ScoutDocument
from scrapers.scout.selectors import stable_classes, stable_id

DEFAULT_MAX_PAGES = 20
_NEXT_TEXT_RE = re.compile(r"^(next( page)?|older|more|›|»|→|>|>>|suivant|weiter|siguiente)$", re.I)
_PAGE_PARAMS = ("page", "p", "pg", "pagenum", "page_number", "pageno", "offset", "start")


def detect_pagination(docs: list[ScoutDocument]) -> tuple[PaginationSpec | None, str]:
    """The pagination of the first page, checked on the others when possible.

    Returns:
        The spec (or ``None``) and a note saying what was found.
    """
    if not docs:
        return None, "no pages"
    doc = docs[0]
    if doc.tree.css_first('link[rel~="next"][href], a[rel~="next"][href]') is not None:
        return PaginationSpec(kind="rel-next", max_pages=DEFAULT_MAX_PAGES), "rel=next link"
    anchor = _next_anchor(doc)
    if anchor is not None:
        return (
            PaginationSpec(kind="next-selector", selector=anchor, max_pages=DEFAULT_MAX_PAGES),
            f"'next' link {anchor}",
        )
    param = _page_param(doc)
    if param is not None:
        return (
            PaginationSpec(kind="page-param", param=param, max_pages=DEFAULT_MAX_PAGES),
            f"page number in query parameter {param!r}",
        )
    return None, "no pagination found"


def _is_next(text: str) -> bool:
    text = clean_text(text)
    return bool(text) and bool(
        _NEXT_TEXT_RE.match(text) or _NEXT_TEXT_RE.match(text.rstrip(" ›»→>"))
    )


def _next_anchor(doc: ScoutDocument) -> str | None:
    for node in doc.tree.css("a[href]"):
        label = node.attributes.get("aria-label") or node.attributes.get("title") or ""
        classes = stable_classes(node)
        named_next = any("next" in name.lower() for name in classes)
        if not (_is_next(node.text()) or _is_next(label) or named_next):
            continue
        ident = stable_id(node)
        if ident:
            return f"a#{ident}"
        for name in classes:
            if "next" in name.lower():
                return f"a.{name}"
        parent = node.parent
        for name in stable_classes(parent) if parent is not None else []:
            if "next" in name.lower():
                return f".{name} > a"
        if label and '"' not in label:
            return (
                f'a[aria-label="{label}"]'
                if node.attributes.get("aria-label")
                else (f'a[title="{label}"]')
            )
    return None


def _page_param(doc: ScoutDocument) -> str | None:
    current = dict(parse_qsl(urlsplit(doc.url).query))
    for node in doc.tree.css("a[href]"):
        href = node.attributes.get("href") or ""
        query = dict(parse_qsl(urlsplit(urljoin(doc.base, href)).query))
        for param in _PAGE_PARAMS:
            value = query.get(param)
            if value and value.isdigit() and current.get(param) != value and int(value) <= 3:
                return param
    return None
