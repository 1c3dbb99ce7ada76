"""Find where an example value is printed on a page.

A value may be an element's whole text, its own text (without child elements), an
attribute, the text after a printed label (``<b>ISBN-13:</b> 978…``), or part of any of
these (``ISBN-13: 978…`` or ``Barbour Publishing / 2010 / Paperback``). Every place found
is a :class:`Hit`; the learner turns hits into selectors and checks them on all pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from selectolax.lexbor import LexborNode

from scrapers.runtime.dom import SKIPPED_TAGS, label_value, normalise_label
from scrapers.runtime.text import clean_text
from scrapers.scout.document import MAX_ATTRIBUTE_CHARS, ScoutDocument
from scrapers.scout.selectors import element_children, element_parent, previous_element

MAX_HITS = 60
"""Places kept per value and page; beyond that the value is too common to anchor on."""
MAX_LABEL_CHARS = 60
_IGNORED_ATTRIBUTES = frozenset({"class", "style", "id"})
_PREFIX_LABEL_RE = re.compile(r"^(.{1,40}?)\s*[:：]\s*$")
_URL_ATTRIBUTES = frozenset({"href", "src", "data-src", "content", "action", "poster"})


@dataclass(frozen=True)
class Hit:
    """One place a value was found.

    Attributes:
        node: The element read (the label element for label hits).
        attr: ``text``, ``own_text`` or an attribute name.
        label: The printed label the value follows, for label hits.
        keep_separator: The value keeps the separator after the label (``": 978…"``).
        raw: What reading ``node`` this way gives (cleaned).
        exact: ``raw`` is the value itself, not a text containing it.
    """

    node: LexborNode
    attr: str
    label: str | None
    keep_separator: bool
    raw: str
    exact: bool


def find_hits(doc: ScoutDocument, value: str, scope: LexborNode | None = None) -> list[Hit]:
    """Every place ``value`` is printed on ``doc`` (inside ``scope`` when given).

    Exact places come first, then places whose text contains the value.
    """
    target = clean_text(value)
    if not target:
        return []
    hits: list[Hit] = []
    deepest = _text_hits(doc, target, scope, hits)
    for node in deepest:
        _label_hits(doc, node, target, hits)
    _attribute_hits(doc, target, scope, hits)
    unique: dict[tuple[int, str, str | None, bool], Hit] = {}
    for hit in hits:
        unique.setdefault((hit.node.mem_id, hit.attr, hit.label, hit.keep_separator), hit)
    ordered = sorted(unique.values(), key=lambda hit: (not hit.exact, len(hit.raw)))
    return ordered[:MAX_HITS]


def _text_hits(
    doc: ScoutDocument, target: str, scope: LexborNode | None, hits: list[Hit]
) -> list[LexborNode]:
    squashed = "".join(target.split())
    starts: list[LexborNode] = []
    if scope is not None:
        starts.append(scope)
    else:
        body = doc.tree.body
        if body is not None:
            starts.append(body)
        title = doc.tree.css_first("head title")
        if title is not None:
            starts.append(title)
    deepest: list[LexborNode] = []
    stack = list(reversed(starts))
    while stack and len(deepest) < MAX_HITS:
        node = stack.pop()
        quick = doc.quick_text(node)
        if squashed not in quick:
            continue
        children = [
            child
            for child in element_children(node)
            if child.tag not in SKIPPED_TAGS and squashed in doc.quick_text(child)
        ]
        small = len(quick) <= len(squashed) + 400
        if small or not children:
            text = doc.text(node)
            own = doc.own_text(node)
            if text == target:
                hits.append(Hit(node, "text", None, False, text, True))
            elif not children and target in text:
                hits.append(Hit(node, "text", None, False, text, False))
            if own != text and own == target:
                hits.append(Hit(node, "own_text", None, False, own, True))
            elif own != text and target in own and len(own) <= len(target) + 200:
                hits.append(Hit(node, "own_text", None, False, own, False))
        if not children:
            deepest.append(node)
        stack.extend(reversed(children))
    return deepest


def _label_hits(doc: ScoutDocument, node: LexborNode, target: str, hits: list[Hit]) -> None:
    labels: list[LexborNode] = [
        child for child in element_children(node) if _looks_like_label(doc, child, target)
    ]
    anchor: LexborNode | None = node
    for _ in range(2):
        if anchor is None:
            break
        sibling = previous_element(anchor)
        for _ in range(2):
            if sibling is None:
                break
            if _looks_like_label(doc, sibling, target):
                labels.append(sibling)
                break
            sibling = previous_element(sibling)
        parent = element_parent(anchor)
        if parent is None or len(element_children(parent)) != 1:
            break
        anchor = parent
    for label in labels:
        printed = clean_text(doc.text(label)).rstrip(":：").strip()
        _add_label_hit(label, printed, target, hits)
    text = doc.text(node)
    position = text.find(target)
    if position > 0:
        match = _PREFIX_LABEL_RE.match(text[:position])
        if match and len(element_children(node)) == 0:
            _add_label_hit(node, match.group(1), target, hits)


def _add_label_hit(node: LexborNode, printed: str, target: str, hits: list[Hit]) -> None:
    kept = label_value(node, normalise_label(printed), keep_separator=True)
    if not kept:
        return
    stripped = label_value(node, normalise_label(printed), keep_separator=False) or ""
    if stripped == target:
        hits.append(Hit(node, "text", printed, False, stripped, True))
    elif kept == target:
        hits.append(Hit(node, "text", printed, True, kept, True))
    elif target in stripped:
        hits.append(Hit(node, "text", printed, False, stripped, False))


def _looks_like_label(doc: ScoutDocument, node: LexborNode, target: str) -> bool:
    if node.tag in SKIPPED_TAGS or node.tag in ("br", "img", "input"):
        return False
    text = doc.text(node)
    return 0 < len(text) <= MAX_LABEL_CHARS and target not in text


def _attribute_hits(
    doc: ScoutDocument, target: str, scope: LexborNode | None, hits: list[Hit]
) -> None:
    nodes = doc.elements if scope is None else [scope, *scope.traverse()]
    looks_like_url = "/" in target or target.startswith("http")
    for node in nodes:
        for name, raw in node.attributes.items():
            if not raw or name in _IGNORED_ATTRIBUTES or name.startswith("on"):
                continue
            if len(raw) > MAX_ATTRIBUTE_CHARS:
                continue
            value = clean_text(raw)
            resolves = looks_like_url and name in _URL_ATTRIBUTES
            if value == target or (resolves and urljoin(doc.base, value) == target):
                hits.append(Hit(node, name, None, False, value, True))
            elif target in value and len(value) <= 4 * len(target) + 100:
                hits.append(Hit(node, name, None, False, value, False))
        if len(hits) > 4 * MAX_HITS:
            break
