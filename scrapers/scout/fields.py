"""Infer the fields of records found without examples: where the values are, their names
and their types.

Each record is walked; every text, link target, image and machine-readable attribute is
a *slot*, keyed by its path of tag-and-class steps from the record (so the same slot
lines up across records). Slots present in enough records become fields. Names come
from, in order: ``itemprop``/``data-field`` hooks, table headers, printed labels
(``Price:``), meaningful class names (``price``, ``author``), then the value itself
(a link target is ``url``, a price-looking text ``price``, a heading ``title``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from selectolax.lexbor import LexborNode

from models.scraper import BlueprintField, FieldType, LabelAnchor
from scrapers.errors import SpecError
from scrapers.runtime.dom import BLOCK_TAGS, label_value, normalise_label
from scrapers.runtime.engine import compile_field, html_field_value
from scrapers.runtime.text import clean_text, parse_date, parse_number
from scrapers.scout.document import ScoutDocument
from scrapers.scout.records import signature
from scrapers.scout.selectors import (
    candidates_for,
    element_children,
    element_parent,
    positional_selector,
)
from scrapers.scout.vocabulary import CANONICAL_NAMES, GENERIC_WORDS, SEMANTIC_WORDS

MAX_RECORDS_SAMPLED = 30
MIN_PRESENCE = 0.4
MAX_DEPTH = 8
_ID_ATTRIBUTES = ("data-id", "data-product-id", "data-item-id", "data-sku", "data-key", "id")
_NAME_HOOKS = ("itemprop", "data-field", "data-testid", "data-test", "data-qa")
_PRICE_RE = re.compile(r"([$€£¥₹]|\b(USD|EUR|GBP|CHF|JPY)\b)\s*\d|\d\s*([$€£¥₹]|\b(USD|EUR|GBP)\b)")
_RATING_RE = re.compile(r"\d(\.\d)?\s*(out of|/)\s*(5|10)\b|[★☆]{3,}", re.I)
_DATE_WORD_RE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\w*\.?\s+\d", re.I
)
_NUMBER_ONLY_RE = re.compile(r"[\d.,\s]+")


@dataclass
class Slot:
    """One place of a record that holds a value, lined up across records."""

    key: str
    attr: str
    values: dict[int, str] = field(default_factory=dict)
    nodes: dict[int, LexborNode] = field(default_factory=dict)
    label: str | None = None


def infer_fields(
    doc: ScoutDocument, members: list[LexborNode], header: list[str] | None = None
) -> tuple[list[BlueprintField], list[str]]:
    """Fields of the records ``members`` (all from ``doc``), and notes on what was dropped."""
    sample = members[:MAX_RECORDS_SAMPLED]
    slots = _discover(doc, sample)
    needed = max(2 if len(sample) > 1 else 1, round(MIN_PRESENCE * len(sample)))
    kept = [slot for slot in slots if len(slot.values) >= needed]
    notes: list[str] = []
    fields: list[BlueprintField] = []
    used_names: set[str] = set()
    labelled = _label_fields(doc, kept, sample, needed)
    seen_values: set[tuple[str, frozenset[tuple[int, str]]]] = set()
    for slot in kept:
        values = list(slot.values.values())
        kind = "link" if slot.attr == "href" else "media" if "src" in slot.attr else "text"
        fingerprint = (kind, frozenset(slot.values.items()))
        if fingerprint in seen_values:
            continue  # the same values read elsewhere (image link and title link)
        seen_values.add(fingerprint)
        if len(set(values)) == 1 and len(values) > 1 and slot.attr in ("text", "own_text"):
            notes.append(f"dropped constant text {values[0][:30]!r} (a label or button)")
            continue
        if any(_same_values(slot, other) for other in labelled):
            continue
        built = _build_field(doc, slot, sample, header)
        if built is not None:
            fields.append(built)
    fields.extend(_label_field(doc, slot, sample) for slot in labelled)
    key = _key_field(sample)
    if key is not None:
        fields.insert(0, key)
    for item in fields:
        item.name = _unique(item.name, used_names)
    return fields, notes


def _discover(doc: ScoutDocument, members: list[LexborNode]) -> list[Slot]:
    slots: dict[tuple[str, str], Slot] = {}
    order: list[tuple[str, str]] = []

    def add(key: str, attr: str, index: int, node: LexborNode, value: str) -> None:
        value = clean_text(value)
        if not value or len(value) > 2000:
            return
        slot_key = (key, attr)
        if slot_key not in slots:
            slots[slot_key] = Slot(key, attr)
            order.append(slot_key)
        slot = slots[slot_key]
        if index not in slot.values:
            slot.values[index] = value
            slot.nodes[index] = node

    for index, member in enumerate(members):
        stack: list[tuple[LexborNode, str, int, bool]] = [(member, "", 0, False)]
        while stack:
            node, key, depth, text_taken = stack.pop()
            tag = node.tag or ""
            attributes = node.attributes
            if tag == "a" and attributes.get("href"):
                add(key, "href", index, node, attributes["href"] or "")
            if tag == "img":
                source = "src" if attributes.get("src") else "data-src"
                add(key, source, index, node, attributes.get(source) or "")
            if tag == "time" and attributes.get("datetime"):
                add(key, "datetime", index, node, attributes["datetime"] or "")
            if attributes.get("itemprop") and attributes.get("content"):
                add(key, "content", index, node, attributes["content"] or "")
            children = element_children(node)
            if not text_taken and node is not member:
                own = clean_text(node.text(deep=False))
                if own:
                    blocky = any(child.tag in BLOCK_TAGS for child in children)
                    add(
                        key,
                        "own_text" if blocky else "text",
                        index,
                        node,
                        own if blocky else doc.text(node),
                    )
                    text_taken = not blocky
            if depth >= MAX_DEPTH:
                continue
            seen: dict[str, int] = {}
            steps = []
            for position, child in enumerate(children, start=1):
                sig = signature(child)
                if tag == "tr":
                    sig = f"{child.tag}~{position}"
                seen[sig] = seen.get(sig, 0) + 1
                step = sig if seen[sig] == 1 else f"{sig}~{seen[sig]}"
                steps.append((child, f"{key}/{step}"))
            for child, child_key in reversed(steps):
                stack.append((child, child_key, depth + 1, text_taken))
    return [slots[key] for key in order]


def _same_values(slot: Slot, label_slot: Slot) -> bool:
    if slot.attr not in ("text", "own_text"):
        return False
    shared = [i for i in slot.values if i in label_slot.values]
    return bool(shared) and all(label_slot.values[i] in slot.values[i] for i in shared)


def _label_fields(
    doc: ScoutDocument, slots: list[Slot], members: list[LexborNode], needed: int
) -> list[Slot]:
    found: list[Slot] = []
    for slot in slots:
        values = set(slot.values.values())
        if slot.attr not in ("text", "own_text") or len(values) != 1:
            continue
        printed = next(iter(values)).rstrip(":：").strip()
        if not printed or len(printed) > 40 or not re.search(r"[^\W\d_]", printed):
            continue
        result = Slot(slot.key, "label", label=printed)
        for index, node in slot.nodes.items():
            value = label_value(node, normalise_label(printed), keep_separator=False)
            if value:
                result.values[index] = value
                result.nodes[index] = node
        if len(result.values) >= needed and len(set(result.values.values())) > 1:
            found.append(result)
    return found


def _build_field(
    doc: ScoutDocument, slot: Slot, members: list[LexborNode], header: list[str] | None
) -> BlueprintField | None:
    locator = _locator(doc, slot, members)
    if locator is None:
        return None
    values = list(slot.values.values())
    first = next(iter(slot.nodes.values()))
    name = _name(slot, first, members, header)
    field_type = _type(slot, values, name)
    if name == "text" and field_type != "text":
        name = field_type
    return BlueprintField(
        name=name,
        type=field_type,
        samples=values[:3],
        source=_source(slot, first, header),
        fill_rate=round(len(values) / len(members), 3),
        confidence=0.6,
        **locator,
    )


def _label_field(doc: ScoutDocument, slot: Slot, members: list[LexborNode]) -> BlueprintField:
    index, node = next(iter(slot.nodes.items()))
    member = members[index]
    selector = node.tag or "*"
    for candidate in candidates_for(node, member, limit=10):
        if _check(
            doc, {"selector": candidate.selector, "label": {"text": slot.label}}, slot, members
        ):
            selector = candidate.selector
            break
    values = list(slot.values.values())
    name = _slug(slot.label or "value")
    return BlueprintField(
        name=name,
        selector=selector,
        label=LabelAnchor(text=slot.label or ""),
        type=_type(slot, values, name),
        samples=values[:3],
        source="label",
        fill_rate=round(len(values) / len(members), 3),
        confidence=0.7,
    )


def _check(
    doc: ScoutDocument, locator: dict[str, Any], slot: Slot, members: list[LexborNode]
) -> bool:
    try:
        plan = compile_field({**locator, "name": "probe", "type": "text"}, False)
    except SpecError:
        return False  # a generated selector Lexbor cannot parse
    agree = sum(
        bool(html_field_value(members[i], plan, doc.base) == value)
        for i, value in slot.values.items()
    )
    return agree >= 0.9 * len(slot.values)


def _locator(doc: ScoutDocument, slot: Slot, members: list[LexborNode]) -> dict[str, Any] | None:
    index, node = next(iter(slot.nodes.items()))
    choices = [candidate.selector for candidate in candidates_for(node, members[index], limit=15)]
    choices.append(positional_selector(node, members[index]))
    for selector in choices:
        locator = {"selector": selector, "attr": slot.attr}
        if selector and _check(doc, locator, slot, members):
            return locator
    return None


def _name(slot: Slot, node: LexborNode, members: list[LexborNode], header: list[str] | None) -> str:
    current: LexborNode | None = node
    while current is not None and current not in members:
        for hook in _NAME_HOOKS:
            hooked = current.attributes.get(hook)
            if hooked and len(hooked) <= 40:
                return _slug(hooked)
        current = element_parent(current)
    if header and slot.key.count("/") >= 1:
        column = re.match(r"^/t[dh]~(\d+)", slot.key)
        if column and int(column.group(1)) <= len(header) and header[int(column.group(1)) - 1]:
            named = _slug(header[int(column.group(1)) - 1])
            if slot.attr == "href":
                return f"{named}_url"
            return f"{named}_image" if "src" in slot.attr else named
    word = _semantic_word(node, members)
    if slot.attr == "href":
        return "url"
    if slot.attr in ("src", "data-src"):
        return "image"
    if word:
        return word
    if (
        node.tag in ("h1", "h2", "h3", "h4", "h5", "h6")
        or node.css_first("h1,h2,h3,h4")
        or (node.tag == "a" and slot.attr == "text")
    ):
        return "title"
    return "text"


def _semantic_word(node: LexborNode, members: list[LexborNode]) -> str | None:
    current: LexborNode | None = node
    while current is not None and current not in members:
        names = f"{current.attributes.get('class') or ''} {current.attributes.get('id') or ''}"
        for token in re.split(r"[\s_-]+", names.lower()):
            if token in SEMANTIC_WORDS and token not in GENERIC_WORDS:
                return CANONICAL_NAMES.get(token, token)
        current = element_parent(current)
    return None


def _source(slot: Slot, node: LexborNode, header: list[str] | None) -> str:
    if any(node.attributes.get(hook) for hook in _NAME_HOOKS):
        return "attribute hook"
    if header and slot.key.startswith("/t"):
        return "table-header"
    return "class" if node.attributes.get("class") else "pattern"


def _type(slot: Slot, values: list[str], name: str) -> FieldType:
    if slot.attr in ("src", "data-src"):
        return "image"
    if slot.attr == "href":
        return "url"
    if name == "price" or _share(values, lambda v: bool(_PRICE_RE.search(v))) >= 0.7:
        return "price"
    if name == "rating" or _share(values, lambda v: bool(_RATING_RE.search(v))) >= 0.7:
        return "rating"
    dated = _share(values, lambda v: bool(_DATE_WORD_RE.search(v)) and parse_date(v) is not None)
    if slot.attr == "datetime" or dated >= 0.7:
        return "date"
    numeric = _share(values, lambda v: bool(_NUMBER_ONLY_RE.fullmatch(v)))
    if numeric == 1 and all(parse_number(value) is not None for value in values):
        return "number"
    return "text"


def _share(values: list[str], test: Callable[[str], bool]) -> float:
    return sum(1 for value in values if test(value)) / len(values) if values else 0.0


def _key_field(members: list[LexborNode]) -> BlueprintField | None:
    if len(members) < 2:
        return None
    for attribute in _ID_ATTRIBUTES:
        values = [member.attributes.get(attribute) for member in members]
        if all(values) and len(set(values)) == len(values):
            tag = members[0].tag or "*"
            return BlueprintField(
                name="id",
                selector=f"{tag}[{attribute}]",
                attr=attribute,
                samples=list(values[:3]),
                source=f"record attribute {attribute}",
                confidence=0.9,
            )
    return None


def _slug(text: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", text.strip().lower()).strip("_")
    if not slug or slug[0].isdigit():
        slug = f"field_{slug}"
    return slug[:60]


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 2
    while candidate in used:
        candidate = f"{name}_{number}"
        number += 1
    used.add(candidate)
    return candidate
