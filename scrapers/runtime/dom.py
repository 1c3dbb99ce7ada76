"""HTML side of the runtime: parsing with limits, reading values, label anchoring.

Part of the standalone runtime (standard library + selectolax). CSS selectors run in
Lexbor through selectolax; the few things CSS cannot say (the text that follows a label,
an element's own text) are walked here over the same tree, so no second parser is needed.

Selectors given to a record are evaluated like ``querySelectorAll`` on the record element,
the record element itself included.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from scrapers.errors import DocumentTooLargeError, SpecError
from scrapers.runtime.text import clean_text, strip_separator

MAX_DOCUMENT_CHARS = 32 * 1024 * 1024
"""Largest page parsed (characters); larger input is refused, not truncated."""

BLOCK_TAGS = frozenset(
    (
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "option",
        "select",
        "textarea",
    )
)
SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "head"})
_NEEDS_WALK = ", ".join(sorted(BLOCK_TAGS | SKIPPED_TAGS | {"br"}))
_LABEL_CLIMB = 2


def parse_html(text: str, url: str = "") -> LexborHTMLParser:
    """Parse a page, refusing documents over :data:`MAX_DOCUMENT_CHARS`.

    Raises:
        DocumentTooLargeError: The page is too large.
        MemoryError: Lexbor ran out of memory building the tree.
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentTooLargeError(
            f"page {url or '(no url)'} has {len(text):,} characters, more than the "
            f"{MAX_DOCUMENT_CHARS:,} the extractor accepts",
            url=url,
        )
    try:
        return LexborHTMLParser(text)
    except SelectolaxError as exc:
        # HTML parsing cannot fail on syntax; Lexbor only gives up when allocation fails.
        raise MemoryError(f"Lexbor could not parse page {url or '(no url)'}: {exc}") from exc


def check_selector(selector: str, *, field: str | None = None) -> None:
    """Raise :class:`SpecError` when Lexbor cannot parse ``selector``."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError as exc:
        where = f"field {field!r}" if field else "the spec"
        raise SpecError(
            f"{where}: {selector!r} is not a CSS selector Lexbor understands ({exc}); note "
            f"that selectors cannot start with a combinator such as '>'",
            field=field,
        ) from exc


def base_url(tree: LexborHTMLParser, page_url: str) -> str:
    """The URL links resolve against: ``<base href>`` (itself resolved) or the page URL."""
    base = tree.css_first("base[href]")
    href = base.attributes.get("href") if base is not None else None
    return urljoin(page_url, href.strip()) if href else page_url


def node_text(node: LexborNode) -> str:
    """Text of ``node`` as a reader sees it: blocks and ``<br>`` separate words, scripts and
    styles are left out, whitespace is collapsed."""
    if node.css_first(_NEEDS_WALK) is None or node.tag in SKIPPED_TAGS:
        return clean_text(node.text())
    parts: list[str] = []
    # Iterative walk with explicit exit markers: recursion would fail on hostile nesting.
    stack: list[tuple[LexborNode, bool]] = [(node, True)]
    while stack:
        current, entering = stack.pop()
        if current.is_text_node:
            parts.append(current.text_content or "")
            continue
        tag = current.tag
        if current is not node and tag in SKIPPED_TAGS:
            continue
        if tag in BLOCK_TAGS or tag == "br":
            parts.append(" ")
        if not entering:
            continue
        stack.append((current, False))
        children: list[LexborNode] = []
        child = current.first_child
        while child is not None:
            if child.is_text_node or child.is_element_node:
                children.append(child)
            child = child.next
        stack.extend((item, True) for item in reversed(children))
    return clean_text("".join(parts))


def read_value(node: LexborNode, attr: str) -> str | None:
    """Read ``attr`` of ``node``: ``text``, ``own_text``, ``html`` or an attribute name."""
    if attr == "text":
        return node_text(node)
    if attr == "own_text":
        return clean_text(node.text(deep=False))
    if attr == "html":
        inner = node.inner_html
        return inner.strip() if isinstance(inner, str) else None
    value = node.attributes.get(attr)
    if value is None:
        return None if attr not in node.attributes else ""
    return clean_text(value)


def normalise_label(text: str) -> str:
    """The form labels are compared in: collapsed, trailing colon removed, case-folded."""
    return clean_text(text).rstrip(":：").strip().casefold()


def label_value(node: LexborNode, label: str, keep_separator: bool) -> str | None:
    """Value printed after ``label`` if ``node`` is (or starts with) that label, else ``None``.

    Args:
        node: A label candidate.
        label: The label, already passed through :func:`normalise_label`.
        keep_separator: Keep a leading ``:`` (or dash) of the value.
    """
    text = node_text(node)
    if normalise_label(text) == label:
        value = following_text(node)
    else:
        folded = text.casefold()
        if not folded.startswith(label) or len(text) == len(label):
            return None
        rest = text[len(label) :]
        if rest[0] not in ":-=\u2013\u2014 \uff1a":
            return None
        value = rest
    value = clean_text(value)
    if not keep_separator:
        value = strip_separator(value)
    return value or None


def following_text(label: LexborNode) -> str:
    """Text after a label element: inline siblings up to a ``<br>`` or block, else the text
    of the next element (climbing out of wrappers that hold only the label)."""
    anchor = label
    for _ in range(_LABEL_CLIMB + 1):
        parts: list[str] = []
        sibling = anchor.next
        while sibling is not None:
            if sibling.is_text_node:
                parts.append(sibling.text_content or "")
            elif sibling.is_element_node:
                tag = sibling.tag
                if tag == "br" or tag in BLOCK_TAGS or tag == label.tag:
                    break
                if tag not in SKIPPED_TAGS:
                    parts.append(" " + node_text(sibling) + " ")
            sibling = sibling.next
        value = clean_text("".join(parts))
        if value:
            return value
        following = _next_element(anchor)
        if following is not None:
            return node_text(following)
        parent = anchor.parent
        if parent is None or clean_text(parent.text()) != clean_text(anchor.text()):
            break
        anchor = parent
    return ""


def _next_element(node: LexborNode) -> LexborNode | None:
    sibling = node.next
    while sibling is not None:
        if sibling.is_element_node and sibling.tag not in SKIPPED_TAGS:
            return sibling
        if sibling.is_text_node and clean_text(sibling.text_content or ""):
            return None
        sibling = sibling.next
    return None


def select(root: Any, selector: str, scope: str | None = None) -> list[LexborNode]:
    """Elements matching ``selector`` under ``root`` (inside the first ``scope`` match)."""
    if scope:
        root = root.css_first(scope)
        if root is None:
            return []
    found: list[LexborNode] = root.css(selector)
    return found
