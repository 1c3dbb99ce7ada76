"""Find where last-good values are printed on redesigned pages (helpers of :mod:`scrapers.repair`).

The records a scraper returned before a redesign are typed (``19.95``, ``2026-04-30``,
absolute URLs), while the scout learns from values *as printed* (``$19.95``,
``30.04.2026``, ``/item/1``). This module turns each last-good value into the text the new
page prints for it, so the learner can be seeded with it, and compares values across
versions (``same_value``) for the checks of the repaired scraper.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborNode

from models.scraper import ExampleValue, FieldType, Page
from scrapers.runtime.decode import decode_body
from scrapers.runtime.jsonpath import scalar_text
from scrapers.runtime.text import clean_text, coerce
from scrapers.scout.document import ScoutDocument
from scrapers.scout.selectors import element_children, element_parent

MAX_LEAF_CHARS = 160
"""Longer element texts are not read as the printed form of a typed value."""
MIN_PARTIAL_RATIO = 0.6
"""A text shown in place of a longer last-good text must keep this share of it
(``by Jane Austen`` → ``Jane Austen``)."""
MIN_CONTAINED_RATIO = 0.5
_READ_ATTRIBUTES = ("href", "src", "datetime", "content", "value", "title", "alt")
_URL_ATTRIBUTES = frozenset({"href", "src"})


def norm(value: Any) -> str | None:
    """A comparable form of one scalar: numbers to two decimals, text case-folded, URLs
    reduced to their path (tracking parameters and hosts change in redesigns)."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{float(value):.2f}"
    text = clean_text(str(value)).casefold()
    if not text:
        return None
    if text.startswith(("http://", "https://", "/")) and " " not in text:
        parts = urlsplit(text)
        path = parts.path.rstrip("/")
        return path or parts.netloc or text
    return text


def flat_norms(value: Any) -> list[str]:
    """Comparable forms of a value or of each item of a multi-valued field."""
    items = value if isinstance(value, list) else [value]
    return [found for item in items if (found := norm(item)) is not None]


def same_value(old: str, new: str, *, loose: bool = True) -> bool:
    """Normalised equality, or (``loose``) one text inside the other keeping half of it."""
    if old == new:
        return True
    if not loose or len(old) < 4 or len(new) < 4:
        return False
    short, long = sorted((old, new), key=len)
    return short in long and len(short) / len(long) >= MIN_CONTAINED_RATIO


@dataclass
class Anchors:
    """Last-good records found on the new pages, as the pages print their values.

    Attributes:
        per_page: Page URL → (index in the last-good list, field → printed value) of
            each record the page still shows.
        fields: Fields with at least one value found.
        key_values: Normalised key values of the records found.
    """

    per_page: dict[str, list[tuple[int, dict[str, ExampleValue]]]]
    fields: set[str]
    key_values: set[str]


class HtmlIndex:
    """The texts and attributes of one HTML page, for finding printed forms of values."""

    def __init__(self, doc: ScoutDocument) -> None:
        self.doc = doc
        body = doc.tree.body
        raw = doc.text(body) if body is not None else ""
        self.squashed = "".join(raw.split())
        self.texts: list[tuple[str, LexborNode]] = []
        self.attributes: list[tuple[str, str, LexborNode]] = []
        for node in doc.elements:
            text = doc.text(node)
            if text and len(text) <= MAX_LEAF_CHARS:
                self.texts.append((text, node))
            for name in _READ_ATTRIBUTES:
                attr = node.attributes.get(name)
                if attr:
                    self.attributes.append((name, clean_text(attr), node))
        self._leaf_texts = {text for text, node in self.texts if not element_children(node)}
        self._by_type: dict[str, dict[str, list[tuple[str, LexborNode]]]] = {}

    def contains(self, text: str) -> bool:
        """The text is printed somewhere on the page (whitespace ignored)."""
        squashed = "".join(text.split())
        return bool(squashed) and squashed in self.squashed

    def printed(self, value: Any, field_type: FieldType) -> tuple[str, list[LexborNode]] | None:
        """The text the page prints for ``value`` and the elements printing it, or ``None``."""
        if value is None or isinstance(value, dict | list):
            return None
        text = clean_text(str(value)) if not isinstance(value, bool) else ""
        if field_type == "text" and text and self.contains(text):
            return text, self._nodes_for(text)
        exact = [node for name, attr, node in self.attributes if attr == text and name != "title"]
        if text and exact:
            return text, exact
        wanted = norm(value)
        if wanted is None:
            return None
        if text.startswith(("http://", "https://", "/")) or field_type in ("url", "image"):
            return self._url(wanted)
        if field_type == "text":
            return self._partial(text)
        return self._typed(wanted, field_type)

    def _nodes_for(self, text: str) -> list[LexborNode]:
        return [node for found, node in self.texts if found == text]

    def _url(self, wanted: str) -> tuple[str, list[LexborNode]] | None:
        forms: Counter[str] = Counter()
        nodes: dict[str, list[LexborNode]] = {}
        for name, attr, node in self.attributes:
            if name not in _URL_ATTRIBUTES:
                continue
            if norm(urljoin(self.doc.base, attr)) == wanted or norm(attr) == wanted:
                forms[attr] += 1
                nodes.setdefault(attr, []).append(node)
        if not forms:
            return None
        best = forms.most_common(1)[0][0]
        return best, nodes[best]

    def _partial(self, text: str) -> tuple[str, list[LexborNode]] | None:
        # A redesign often drops decoration around a value ("by Jane Austen" → "Jane Austen").
        best: str | None = None
        for leaf in self._leaf_texts:
            kept = len(leaf) >= 3 and leaf in text and len(leaf) / len(text) >= MIN_PARTIAL_RATIO
            if kept and (best is None or len(leaf) > len(best)):
                best = leaf
        return (best, self._nodes_for(best)) if best else None

    def _typed(self, wanted: str, field_type: FieldType) -> tuple[str, list[LexborNode]] | None:
        forms = self._typed_forms(field_type).get(wanted)
        if not forms:
            return None
        counts = Counter(text for text, _ in forms)
        best = min(counts, key=lambda form: (-counts[form], len(form)))
        return best, [node for text, node in forms if text == best]

    def _typed_forms(self, field_type: FieldType) -> dict[str, list[tuple[str, LexborNode]]]:
        # Every text is parsed once per type; values are then looked up by their norm.
        cached = self._by_type.get(field_type)
        if cached is not None:
            return cached
        forms: dict[str, list[tuple[str, LexborNode]]] = {}
        readings = [
            (text, node)
            for text, node in self.texts
            if not (element_children(node) and text in self._leaf_texts)
        ]
        readings += [
            (attr, node)
            for name, attr, node in self.attributes
            if name in ("datetime", "content", "value")
        ]
        for text, node in readings:
            key = norm(coerce(text, field_type, self.doc.base))
            if key is not None:
                forms.setdefault(key, []).append((text, node))
        self._by_type[field_type] = forms
        return forms

    def complete_list(self, items: list[Any], field_type: FieldType) -> list[str] | None:
        """The whole list a multi-valued field shows now, from the items still printed.

        The items found are read on elements of one tag under their lowest common ancestor;
        every element of that tag there is read the same way, so added items are included
        and removed ones left out.
        """
        found = [hit for item in items if (hit := self.printed(item, field_type)) is not None]
        if not found:
            return None
        placed = [hit for hit in found if hit[1]]
        if len(placed) < 2:
            return [text for text, _ in found]
        first = placed[0][1][0]
        tag = first.tag
        attr = next(
            (
                name
                for name, value, node in self.attributes
                if node.mem_id == first.mem_id and value == placed[0][0]
            ),
            None,
        )
        common = _majority_ancestor([hit[1] for hit in placed])
        if common is None:
            return [text for text, _ in found]
        values: list[str] = []
        for node in common.traverse():
            if node.tag != tag:
                continue
            raw = node.attributes.get(attr) if attr else self.doc.text(node)
            value = clean_text(raw or "")
            if value:
                values.append(value)
        return values or None


def _ancestors(node: LexborNode) -> list[LexborNode]:
    chain = [node]
    current = element_parent(node)
    while current is not None:
        chain.append(current)
        current = element_parent(current)
    return chain


def _majority_ancestor(places: list[list[LexborNode]]) -> LexborNode | None:
    """The deepest element holding most of the items (each printed at one of its places).

    Most, not all: an item that is also printed elsewhere (a "Help" link in the header)
    must not widen the list to the whole page.
    """
    needed = max(2, -(-len(places) * 3 // 5))
    inside: dict[int, set[int]] = {}
    elements: dict[int, LexborNode] = {}
    depth: dict[int, int] = {}
    for item, nodes in enumerate(places):
        for node in nodes[:20]:
            chain = _ancestors(node)
            for level, ancestor in enumerate(chain):
                inside.setdefault(ancestor.mem_id, set()).add(item)
                elements[ancestor.mem_id] = ancestor
                depth[ancestor.mem_id] = len(chain) - level
    best = [key for key, items in inside.items() if len(items) >= needed]
    if not best:
        return None
    chosen = elements[max(best, key=lambda key: depth[key])]
    return None if chosen.tag in ("html", "body") else chosen


class JsonIndex:
    """The scalars of one JSON page (an API response, or the scripts of an HTML page)."""

    def __init__(self, page: Page, embedded: bool) -> None:
        self.url = page.url
        self.texts: Counter[str] = Counter()
        body = decode_body(page.body)
        if embedded:
            self.raw = body
            return
        self.raw = ""
        try:
            document = json.loads(body)
        except ValueError:
            return
        for scalar in _scalars(document):
            text = scalar_text(scalar)
            if text is not None:
                self.texts[clean_text(text)] += 1

    def printed(self, value: Any, field_type: FieldType) -> str | None:
        """The scalar text the document holds for ``value``, or ``None``."""
        if value is None or isinstance(value, dict | list):
            return None
        text = scalar_text(value) or ""
        if self.raw:
            # Embedded JSON is searched as text: the scout finds the record arrays itself.
            return (
                text if text and (text in self.raw or json.dumps(text)[1:-1] in self.raw) else None
            )
        if text in self.texts:
            return text
        wanted = norm(value)
        matches = [
            form
            for form in self.texts
            if norm(coerce(form, field_type, self.url)) == wanted
            or (field_type == "text" and norm(form) == wanted)
        ]
        return max(matches, key=lambda form: self.texts[form]) if matches else None


def _scalars(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item
