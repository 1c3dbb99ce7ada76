"""Find the repeated record structure that is a listing page's main content.

Every element whose children repeat one signature (tag plus stable classes) is a
candidate group (``ul.books > li.book``, ``tbody > tr``, ``div.grid > div.card``). Groups
are scored by how many records they have, how much each record holds (texts, links,
images), how alike the records are, and where they sit: navigation, headers, footers,
sidebars and "related"/"recommended" blocks are penalised, ``<main>``/``<article>`` and
content ids favoured, and lists of lone short links (menus) count little.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from selectolax.lexbor import LexborNode, SelectolaxError

from scrapers.runtime.dom import SKIPPED_TAGS
from scrapers.scout.document import ScoutDocument
from scrapers.scout.selectors import (
    candidates_for,
    element_children,
    element_parent,
    stable_classes,
)

MIN_RECORDS = 2
_NOT_RECORDS = SKIPPED_TAGS | {"option", "br", "meta", "link", "input", "col", "source", "param"}
_DISTRACTOR_TAGS = frozenset({"nav", "header", "footer", "aside"})
_DISTRACTOR_RE = re.compile(
    r"(^|[-_ ])(nav|navbar|menu|footer|header|sidebar|side|related|recommend\w*|also|"
    r"similar|breadcrumbs?|pagination|pager|social|share|cookie|banner|promo\w*|advert\w*|ads?|"
    r"widget|carousel|tabs?|toolbar|dropdown|trending|popular|upsell|cross-?sell)($|[-_ ])",
    re.I,
)
_CONTENT_RE = re.compile(
    r"(^|[-_ ])(main|content|results?|products?|listing|items|catalog|search-results|"
    r"books|entries|posts|articles)($|[-_ ])",
    re.I,
)


@dataclass
class Group:
    """Repeated siblings that may be the records of the page.

    Attributes:
        parent: The element holding them.
        signature: Their common tag and stable classes.
        members: The record elements.
        score: How likely they are the main records.
        why: Score factors, for the blueprint notes.
    """

    parent: LexborNode
    signature: str
    members: list[LexborNode]
    score: float = 0.0
    why: list[str] = field(default_factory=list)


def signature(node: LexborNode) -> str:
    """Tag and stable classes: what repeated records share."""
    classes = sorted(stable_classes(node))
    return ".".join([node.tag or "*", *classes])


def find_groups(doc: ScoutDocument) -> list[Group]:
    """Candidate record groups of a page, best first."""
    groups: list[Group] = []
    for parent in doc.elements:
        children = [child for child in element_children(parent) if child.tag not in _NOT_RECORDS]
        if len(children) < MIN_RECORDS:
            continue
        counts = Counter(signature(child) for child in children)
        for sig, count in counts.items():
            if count < MIN_RECORDS:
                continue
            members = [child for child in children if signature(child) == sig]
            group = Group(parent, sig, members)
            _score(doc, group)
            if group.score > 0:
                groups.append(group)
    return sorted(groups, key=lambda group: -group.score)


def _slots(member: LexborNode) -> int:
    texts = sum(
        1
        for node in member.traverse(include_text=True)
        if node.is_text_node and (node.text_content or "").strip()
    )
    links = len(member.css("a[href]"))
    images = len(member.css("img"))
    return texts + images + min(links, 3)


def _paths(member: LexborNode) -> set[str]:
    found: set[str] = set()
    stack: list[tuple[LexborNode, str, int]] = [(member, "", 0)]
    while stack and len(found) < 200:
        node, prefix, depth = stack.pop()
        for child in element_children(node):
            path = f"{prefix}/{child.tag}"
            found.add(path)
            if depth < 3:
                stack.append((child, path, depth + 1))
    return found


def _similarity(members: list[LexborNode]) -> float:
    sample = [_paths(member) for member in members[:12]]
    if all(not paths for paths in sample):
        return 1.0
    common = Counter(path for paths in sample for path in paths)
    typical = {path for path, count in common.items() if count >= len(sample) / 2}
    if not typical:
        return 0.2
    scores = [len(paths & typical) / len(paths | typical) for paths in sample]
    return sum(scores) / len(scores)


def _context_factor(group: Group) -> tuple[float, list[str]]:
    factor, why = 1.0, []
    penalised = favoured = False
    node: LexborNode | None = group.members[0]
    while node is not None and node.tag not in ("body", "html"):
        names = " ".join([node.attributes.get("id") or "", node.attributes.get("class") or ""])
        role = node.attributes.get("role") or ""
        if not penalised and (
            node.tag in _DISTRACTOR_TAGS
            or role in ("navigation", "banner", "contentinfo", "complementary")
            or _DISTRACTOR_RE.search(names)
        ):
            factor *= 0.2
            penalised = True
            why.append(f"inside {node.tag}{_short(names)} (navigation/sidebar/related)")
        if not favoured and (
            node.tag in ("main", "article") or role == "main" or _CONTENT_RE.search(names)
        ):
            factor *= 1.5
            favoured = True
            why.append(f"inside {node.tag}{_short(names)} (main content)")
        node = element_parent(node)
    return factor, why


def _short(names: str) -> str:
    names = " ".join(names.split())
    return f" [{names[:40]}]" if names else ""


def _score(doc: ScoutDocument, group: Group) -> None:
    members = group.members
    sample = members[:20]
    texts = [len(doc.text(member)) for member in sample]
    average_text = sum(texts) / len(texts)
    has_media = any(member.css_first("img") is not None for member in sample)
    if average_text < 2 and not has_media:
        return
    slots = sum(_slots(member) for member in sample) / len(sample)
    similarity = _similarity(members)
    context, why = _context_factor(group)
    link_only = slots <= 1.5 and average_text <= 30
    if link_only:
        why.append("records are lone short links (a menu?)")
    group.score = (
        math.log2(1 + len(members))
        * min(slots, 8.0)
        * math.sqrt(min(average_text, 300.0))
        * similarity
        * context
        * (0.3 if link_only else 1.0)
    )
    group.why = [
        f"{len(members)} x {group.signature}: {slots:.1f} values/record, "
        f"{average_text:.0f} chars, similarity {similarity:.2f}",
        *why,
    ]


def container_selector(doc: ScoutDocument, group: Group) -> str | None:
    """The most robust selector matching exactly the group's members on ``doc``."""
    wanted = {member.mem_id for member in group.members}
    for candidate in candidates_for(group.members[0], None, limit=40):
        if candidate.robustness < 0.4:
            continue
        try:
            found = {node.mem_id for node in doc.tree.css(candidate.selector)}
        except SelectolaxError:  # Lexbor rejects a few generated selectors
            continue
        if found == wanted:
            return candidate.selector
    parent_candidates = candidates_for(group.parent, None, limit=20)
    member_local = group.signature
    for candidate in parent_candidates:
        selector = f"{candidate.selector} > {member_local}"
        try:
            found = {node.mem_id for node in doc.tree.css(selector)}
        except SelectolaxError:
            continue
        if found == wanted:
            return selector
    return None
