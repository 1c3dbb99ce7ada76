"""CSS selectors a scout may write for an element, most robust first.

Robust means the selector keeps working on other pages of the site: ids, ``itemprop`` and
``data-*`` hooks and meaningful class names survive; positional chains
(``div:nth-child(3) > div``) and generated CSS-in-JS class names (``css-1q2w3e``,
``sc-bdVaJa``, ``jsx-123``) do not, so they are avoided or never written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborNode

from scrapers.scout.vocabulary import SEMANTIC_WORDS

_IDENT_RE = re.compile(r"^-?[A-Za-z_][A-Za-z0-9_-]*$")
_HASHED_RES = (
    re.compile(r"^(css|sc|jsx|emotion|svelte|astro|styled|tw)-[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*$"),
    re.compile(r"^sc-[A-Za-z]{4,}$"),
    re.compile(r"^_[A-Za-z0-9_-]{4,}$"),
    re.compile(r"_{2,3}(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{5,}$"),
    re.compile(r"^[a-z]{1,3}[0-9][a-z0-9]{3,}$"),
)
_STATE_CLASSES = frozenset(
    (
        "active",
        "selected",
        "current",
        "hover",
        "focus",
        "odd",
        "even",
        "first",
        "last",
        "clearfix",
        "hidden",
        "visible",
        "show",
        "open",
        "closed",
        "collapsed",
        "expanded",
        "disabled",
        "loaded",
        "lazy",
        "lazyload",
        "lazyloaded",
        "in",
        "fade",
    )
)
ATTRIBUTE_HOOKS = ("itemprop", "data-testid", "data-test", "data-qa", "data-field", "data-role")
_META_KEYS = ("name", "property", "itemprop", "http-equiv")


@dataclass(frozen=True)
class Candidate:
    """A selector with how much the scout trusts it to survive on other pages (0–1)."""

    selector: str
    robustness: float
    how: str


def is_stable_name(name: str) -> bool:
    """True for an id or class that looks hand-written and long-lived."""
    if not name or len(name) > 60 or not _IDENT_RE.match(name):
        return False
    if name.lower() in _STATE_CLASSES:
        return False
    if any(pattern.search(name) for pattern in _HASHED_RES):
        return False
    digits = sum(char.isdigit() for char in name)
    # Numbers in names are usually record ids (item-4711) or build hashes.
    return digits <= 2 and not re.search(r"\d{3,}", name)


def is_semantic(name: str) -> bool:
    """True when a class or id names what it holds (``price``, ``book-title``...)."""
    lowered = name.lower()
    return any(word in lowered for word in SEMANTIC_WORDS)


def quote(value: str) -> str:
    """A CSS string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stable_classes(node: LexborNode) -> list[str]:
    """The node's stable classes, semantic ones first."""
    classes = (node.attributes.get("class") or "").split()
    stable = [name for name in dict.fromkeys(classes) if is_stable_name(name)]
    return sorted(stable, key=lambda name: (not is_semantic(name), classes.index(name)))


def stable_id(node: LexborNode) -> str | None:
    """The node's id if it looks stable."""
    value = node.attributes.get("id")
    return value if value and is_stable_name(value) else None


def local_selectors(node: LexborNode) -> list[tuple[str, float]]:
    """Selectors for the node on its own, with a robustness score each."""
    tag = node.tag or "*"
    found: list[tuple[str, float]] = []
    ident = stable_id(node)
    if ident:
        found.append((f"#{ident}", 1.0))
    for hook in ATTRIBUTE_HOOKS:
        value = node.attributes.get(hook)
        if value and len(value) <= 100:
            found.append((f"{tag}[{hook}={quote(value)}]", 0.95))
    if tag == "meta":
        for key in _META_KEYS:
            value = node.attributes.get(key)
            if value and len(value) <= 100:
                # Meta tags are easy to find but often templated text around the value.
                found.append((f"meta[{key}={quote(value)}]", 0.75))
    classes = stable_classes(node)
    for name in classes[:3]:
        score = 0.85 if is_semantic(name) else 0.75
        found.append((f"{tag}.{name}", score))
    if len(classes) >= 2:
        found.append((f"{tag}.{classes[0]}.{classes[1]}", 0.7))
    found.append((tag, 0.5))
    return found


def anchor_selector(node: LexborNode) -> tuple[str, float] | None:
    """The best selector of ``node`` usable as an ancestor anchor (id or class), if any."""
    for selector, score in local_selectors(node):
        if score >= 0.7 and not selector.startswith(("meta", f"{node.tag}[")):
            return selector, score
    return None


def element_parent(node: LexborNode) -> LexborNode | None:
    """The parent element (``None`` above ``<html>``)."""
    parent = node.parent
    return parent if parent is not None and parent.is_element_node else None


def previous_element(node: LexborNode) -> LexborNode | None:
    """The previous sibling element."""
    sibling = node.prev
    while sibling is not None and not sibling.is_element_node:
        sibling = sibling.prev
    return sibling


def candidates_for(
    node: LexborNode, root: LexborNode | None = None, limit: int = 40
) -> list[Candidate]:
    """Selectors that match ``node``, from ``root`` (the record) or the whole document.

    Candidates are not checked here: the caller evaluates them on every page and keeps the
    ones that find the right values.
    """
    own = local_selectors(node)
    found: dict[str, Candidate] = {}

    def add(selector: str, score: float, how: str) -> None:
        if selector not in found and len(selector) <= 300:
            found[selector] = Candidate(selector, round(score, 3), how)

    for selector, score in own:
        add(selector, score, "own")
    tag_chain: list[str] = [node.tag or "*"]
    child_local = own[-2][0] if len(own) >= 2 and own[-2][1] >= 0.7 else node.tag or "*"
    ancestor = element_parent(node)
    level = 0
    while ancestor is not None and level < 6 and not _is_root(ancestor, root):
        level += 1
        anchor = anchor_selector(ancestor)
        if anchor is not None:
            anchor_sel, anchor_score = anchor
            factor = 0.95 - 0.04 * level
            for selector, score in own[-3:]:
                add(f"{anchor_sel} {selector}", max(score, anchor_score) * factor, "anchored")
            add(f"{anchor_sel} > " + " > ".join(tag_chain), anchor_score * factor * 0.9, "path")
            # Anchoring on the ancestor's previous sibling tells apart look-alike boxes
            # (the author box right after the title, not the "More in series" box).
            before = previous_element(ancestor)
            before_anchor = anchor_selector(before) if before is not None and level <= 3 else None
            if before_anchor is not None and before_anchor[0] != anchor_sel:
                score = min(anchor_score, before_anchor[1]) * factor * 0.95
                add(f"{before_anchor[0]} + {anchor_sel} {own[-1][0]}", score, "sibling-anchored")
        tag_chain.insert(0, ancestor.tag or "*")
        ancestor = element_parent(ancestor)
    sibling = previous_element(node)
    if sibling is not None:
        anchor = anchor_selector(sibling)
        if anchor is not None:
            add(f"{anchor[0]} + {child_local}", anchor[1] * 0.85, "sibling")
    if root is not None:
        add(" > ".join(tag_chain) if level else node.tag or "*", 0.45, "record-path")
    return sorted(found.values(), key=lambda item: -item.robustness)[:limit]


def _is_root(node: LexborNode, root: LexborNode | None) -> bool:
    if root is None:
        return node.tag in ("body", "html")
    return node == root


def positional_selector(node: LexborNode, root: LexborNode | None = None) -> str:
    """An ``nth-of-type`` path to ``node``: the selector of last resort."""
    steps: list[str] = []
    current: LexborNode | None = node
    while current is not None and not _is_root(current, root) and len(steps) < 12:
        parent = element_parent(current)
        if parent is None:
            break
        same = [child for child in _element_children(parent) if child.tag == current.tag]
        step = current.tag or "*"
        if len(same) > 1:
            step += f":nth-of-type({same.index(current) + 1})"
        steps.insert(0, step)
        anchor = stable_id(parent)
        if anchor:
            steps.insert(0, f"#{anchor}")
            break
        current = parent
    return " > ".join(steps)


def _element_children(node: LexborNode) -> list[LexborNode]:
    children = []
    child = node.first_child
    while child is not None:
        if child.is_element_node:
            children.append(child)
        child = child.next
    return children


def element_children(node: LexborNode) -> list[LexborNode]:
    """The element children of ``node``, in order."""
    return _element_children(node)
