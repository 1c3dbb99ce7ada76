"""A parsed page as the scout sees it: limits checked, text cached, elements listed."""

from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser, LexborNode

from models.scraper import Page
from scrapers.errors import DocumentTooComplexError, DocumentTooLargeError
from scrapers.runtime.decode import decode_body
from scrapers.runtime.dom import base_url, node_text, parse_html
from scrapers.runtime.text import clean_text

MAX_DEPTH = 512
"""Deepest nesting the scout accepts (Blink stops nesting at 512 too)."""
MAX_ELEMENTS = 150_000
"""Most elements the scout accepts on one page."""
MAX_ATTRIBUTE_CHARS = 2_000
"""Longer attribute values are never matched against examples nor used in selectors."""
_HIDING_TAGS = frozenset({"script", "style", "noscript", "template"})
MAX_SCOUT_CHARS = 8 * 1024 * 1024
"""Largest page the scout reads (the extractor itself accepts more)."""


class ScoutDocument:
    """One page, parsed once, with the lookups the scout repeats.

    Attributes:
        url: The page URL.
        tree: The Lexbor tree.
        base: The URL links resolve against.
        elements: Every element of ``<body>`` (and the ``<title>`` and ``<meta>`` of the
            head), in document order.
        depth: Nesting depth of each element, by ``mem_id``.
    """

    def __init__(self, page: Page) -> None:
        body = decode_body(page.body)
        if len(body) > MAX_SCOUT_CHARS:
            raise DocumentTooLargeError(
                f"page {page.url} has {len(body):,} characters; the scout reads at most "
                f"{MAX_SCOUT_CHARS:,}. Give a smaller sample page.",
                url=page.url,
            )
        self.url = page.url
        self.raw = body
        self.tree: LexborHTMLParser = parse_html(body, page.url)
        self.base = base_url(self.tree, page.url)
        self.depth: dict[int, int] = {}
        self.elements: list[LexborNode] = []
        self._text: dict[int, str] = {}
        self._index()

    def _index(self) -> None:
        root = self.tree.root
        if root is None:
            return
        hidden: set[int] = set()  # elements inside script, style, template...
        for count, node in enumerate(root.traverse()):
            if count >= MAX_ELEMENTS:
                raise DocumentTooComplexError(
                    f"page {self.url} has more than {MAX_ELEMENTS:,} elements; the scout "
                    f"refuses it. Give a smaller sample page.",
                    url=self.url,
                )
            parent = node.parent
            depth = self.depth.get(parent.mem_id, -1) + 1 if parent is not None else 0
            if depth > MAX_DEPTH:
                raise DocumentTooComplexError(
                    f"page {self.url} nests elements more than {MAX_DEPTH} levels deep; the "
                    f"scout refuses it (browsers flatten such markup too). Check the page is "
                    f"real content, not an error or a trap.",
                    url=self.url,
                )
            self.depth[node.mem_id] = depth
            tag = node.tag
            if parent is not None and (parent.mem_id in hidden or parent.tag in _HIDING_TAGS):
                hidden.add(node.mem_id)
                continue
            if tag in ("html", "head") or tag in _HIDING_TAGS:
                continue
            self.elements.append(node)

    def text(self, node: LexborNode) -> str:
        """Reader text of ``node`` (cached)."""
        key = node.mem_id
        cached = self._text.get(key)
        if cached is None:
            cached = node_text(node)
            self._text[key] = cached
        return cached

    def quick_text(self, node: LexborNode) -> str:
        """Raw concatenated text of ``node`` without spaces (for fast containment checks)."""
        return "".join(node.text().split())

    def own_text(self, node: LexborNode) -> str:
        """The element's own text nodes, collapsed."""
        return clean_text(node.text(deep=False))

    def depth_of(self, node: LexborNode) -> int:
        """Nesting depth of ``node`` (0 for ``<html>``)."""
        return self.depth.get(node.mem_id, 0)


def load_documents(pages: list[Page]) -> list[ScoutDocument]:
    """Parse every page for the scout."""
    return [ScoutDocument(page) for page in pages]
