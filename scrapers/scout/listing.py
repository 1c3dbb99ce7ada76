"""Listing pages: find the records without examples, or learn them from example records."""

from __future__ import annotations

from selectolax.lexbor import LexborNode

from models.scraper import Blueprint, BlueprintField, SeedPage
from scrapers.errors import ExampleNotFoundError, NoRecordsFoundError, ScoutError
from scrapers.runtime.text import clean_text
from scrapers.scout.detail import choose_key, field_names, seed_documents
from scrapers.scout.document import ScoutDocument
from scrapers.scout.fields import infer_fields
from scrapers.scout.jsondata import JsonCandidate, embedded_candidates, infer_json_fields
from scrapers.scout.learn import Unit, expected_values, infer_type, learn_field
from scrapers.scout.locate import find_hits
from scrapers.scout.pagination import detect_pagination
from scrapers.scout.records import Group, container_selector, find_groups, signature
from scrapers.scout.selectors import element_children, element_parent

GROUPS_TRIED = 6
STRONG_GROUP_SCORE = 8.0
"""A DOM group this good wins over JSON embedded in the same page."""
MAX_UNLABELLED_RECORDS = 40
_CLIMB = 12


def discover_list(docs: list[ScoutDocument]) -> Blueprint:
    """Blueprint of the page's main records, found without examples.

    Raises:
        NoRecordsFoundError: Neither repeated elements nor JSON records were found.
    """
    first = docs[0]
    tried: list[str] = []
    dom = _best_group(docs, tried)
    json_candidates = [item for item in embedded_candidates(first) if len(item.records) >= 2]
    tried += [
        f"embedded JSON: {item.note} ({len(item.records)} records)" for item in json_candidates[:3]
    ]
    if dom is not None and (dom[0].score >= STRONG_GROUP_SCORE or not json_candidates):
        return _dom_blueprint(docs, *dom, tried)
    if json_candidates:
        return _json_blueprint(json_candidates[0], tried)
    if dom is not None:
        return _dom_blueprint(docs, *dom, tried)
    if first.tree.body is not None and len(clean_text(first.tree.body.text())) < 200:
        tried.append(
            f"the page has almost no text and {len(first.tree.css('script'))} scripts: "
            f"it is probably drawn by scripts (try render=True)"
        )
    raise NoRecordsFoundError(tried or ["no element repeats on the page"])


def _best_group(docs: list[ScoutDocument], tried: list[str]) -> tuple[Group, str] | None:
    first = docs[0]
    for group in find_groups(first)[:GROUPS_TRIED]:
        selector = container_selector(first, group)
        summary = f"{group.signature} under {group.parent.tag} (score {group.score:.1f})"
        if selector is None:
            tried.append(f"{summary}: no selector isolates it")
            continue
        if any(not doc.tree.css(selector) for doc in docs[1:]):
            tried.append(f"{summary}: {selector} finds nothing on another page")
            continue
        tried.append(f"{summary}: chosen as {selector}")
        return group, selector
    if not tried:
        tried.append("no element has two or more children alike")
    return None


def _table_header(group: Group) -> list[str] | None:
    if group.members[0].tag != "tr":
        return None
    table: LexborNode | None = group.parent
    while table is not None and table.tag != "table":
        table = element_parent(table)
    if table is None:
        return None
    cells = table.css("thead th") or [
        cell for cell in element_children(table.css_first("tr") or table) if cell.tag == "th"
    ]
    return [clean_text(cell.text()) for cell in cells] or None


def _dom_blueprint(
    docs: list[ScoutDocument], group: Group, selector: str, tried: list[str]
) -> Blueprint:
    first = docs[0]
    fields, notes = infer_fields(first, group.members, _table_header(group))
    if not fields:
        raise NoRecordsFoundError([*tried, f"{selector}: records hold no readable values"])
    pagination, page_note = detect_pagination(docs)
    key = choose_list_key(fields)
    return Blueprint(
        kind="html-list",
        container=selector,
        fields=fields,
        key_field=key,
        pagination=pagination,
        record_counts=[len(doc.tree.css(selector)) for doc in docs],
        confidence=min(1.0, group.score / 20),
        notes=[*group.why, *tried, page_note, *notes],
    )


def choose_list_key(fields: list[BlueprintField]) -> str | None:
    """The field identifying a record: an id attribute, else a detail URL, else the title.

    Only fields present in every record whose sampled values differ qualify.
    """
    usable = [
        item
        for item in fields
        if item.fill_rate >= 1.0 and not item.multiple and _distinct(item.samples)
    ]
    ranked = (
        [item for item in usable if item.name == "id"]
        + [item for item in usable if item.type == "url" and item.name == "url"]
        + [item for item in usable if item.type == "url"]
        + [item for item in usable if item.name in ("title", "name")]
    )
    return ranked[0].name if ranked else None


def _distinct(samples: list[object]) -> bool:
    return len({repr(sample) for sample in samples}) == len(samples)


def _json_blueprint(candidate: JsonCandidate, tried: list[str]) -> Blueprint:
    fields, key = infer_json_fields(candidate.records)
    if not fields:
        raise NoRecordsFoundError([*tried, f"{candidate.note}: records hold no values"])
    return Blueprint(
        kind="embedded-json",
        container=candidate.path,
        embedded=candidate.source,
        fields=fields,
        key_field=key,
        record_counts=[len(candidate.records)],
        confidence=0.7,
        notes=[f"records from {candidate.note}", *tried],
    )


def _ancestors(node: LexborNode) -> set[int]:
    found = {node.mem_id}
    current = element_parent(node)
    while current is not None:
        found.add(current.mem_id)
        current = element_parent(current)
    return found


def record_root(doc: ScoutDocument, record: dict[str, list[str]]) -> LexborNode:
    """The element of ``doc`` holding one example record: the lowest ancestor of its values
    that repeats among its siblings (or the lowest ancestor of all values).

    Raises:
        ExampleNotFoundError: A value of the record is not on the page.
        ScoutError: The values are never together inside one element.
    """
    hit_nodes: dict[str, list[LexborNode]] = {}
    for name, values in record.items():
        hits = find_hits(doc, values[0])
        if not hits:
            raise ExampleNotFoundError(name, values[0], doc.url)
        hit_nodes[name] = [hit.node for hit in hits]
    pivot = min(hit_nodes, key=lambda name: len(hit_nodes[name]))
    others = {
        name: [_ancestors(node) for node in nodes]
        for name, nodes in hit_nodes.items()
        if name != pivot
    }
    best: LexborNode | None = None
    best_depth = -1
    for node in hit_nodes[pivot]:
        current: LexborNode | None = node
        for _ in range(_CLIMB):
            if current is None or current.tag in ("body", "html"):
                break
            key = current.mem_id
            if all(any(key in chain for chain in chains) for chains in others.values()):
                root = _repeating(current)
                depth = doc.depth_of(root)
                if depth > best_depth:
                    best, best_depth = root, depth
                break
            current = element_parent(current)
    if best is None:
        raise ScoutError(
            f"the example values {sorted(record)} on {doc.url} are not inside one record "
            f"element; check they belong to the same item"
        )
    return best


def _repeating(node: LexborNode) -> LexborNode:
    current: LexborNode | None = node
    for _ in range(6):
        if current is None or current.tag in ("body", "html"):
            break
        parent = element_parent(current)
        if parent is not None:
            sig = signature(current)
            if sum(signature(child) == sig for child in element_children(parent)) >= 2:
                return current
        current = parent
    return node


def learn_list(docs: list[ScoutDocument], seeds: list[SeedPage]) -> Blueprint:
    """Blueprint of an ``html-list`` scraper reproducing the example records.

    Raises:
        ExampleNotFoundError: An example value is not on its page.
        SelectorNotFoundError: No selector reproduces a field in every example record.
        ScoutError: The example records share no record selector.
    """
    paired = seed_documents(docs, seeds)
    examples: list[tuple[ScoutDocument, LexborNode, dict[str, list[str]]]] = []
    for doc, seed in paired:
        for record in seed.example_records():
            values = {name: expected_values(value) for name, value in record.items()}
            values = {name: items for name, items in values.items() if items}
            examples.append((doc, record_root(doc, values), values))
    doc0, root0, _ = examples[0]
    parent = element_parent(root0)
    sig = signature(root0)
    members = (
        [child for child in element_children(parent) if signature(child) == sig]
        if (parent is not None)
        else [root0]
    )
    group = Group(parent or root0, sig, members)
    container = container_selector(doc0, group)
    if container is None or any(
        all(node != root for node in doc.tree.css(container)) for doc, root, _ in examples
    ):
        raise ScoutError(
            f"the example records are in elements no common selector finds ({sig}); give "
            f"examples from the same list"
        )
    labelled_roots = {root.mem_id for _, root, _ in examples}
    unlabelled = [
        Unit(doc, node)
        for doc in docs
        for node in doc.tree.css(container)
        if node.mem_id not in labelled_roots
    ][:MAX_UNLABELLED_RECORDS]
    fields: list[BlueprintField] = []
    for name in field_names(seeds):
        labelled = [
            Unit(doc, root, values[name]) for doc, root, values in examples if name in values
        ]
        if not labelled:
            continue
        multiple = any(
            isinstance(record.get(name), list)
            for seed in seeds
            for record in seed.example_records()
        )
        field_type = infer_type([unit.expected or [] for unit in labelled])
        fields.append(learn_field(name, labelled, unlabelled, multiple, field_type))
    pagination, page_note = detect_pagination(docs)
    return Blueprint(
        kind="html-list",
        container=container,
        fields=fields,
        key_field=choose_key(fields, []) or choose_list_key(fields),
        pagination=pagination,
        record_counts=[len(doc.tree.css(container)) for doc in docs],
        confidence=min((item.confidence for item in fields), default=0.0),
        notes=[f"records: {container} ({len(examples)} example records)", page_note],
    )
