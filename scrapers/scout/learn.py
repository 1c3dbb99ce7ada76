"""Learn one field from examples: find the values, propose selectors, keep what generalises.

Every place an example value is printed gives candidate locators (selectors from
:mod:`scrapers.scout.selectors`, read as text, own text, attribute or label-anchored
text). A candidate is kept only if, on **every** labelled unit (a seed page, or one
example record), it yields exactly the example value(s) — after transforms derived from
the examples when the value is part of a longer text. Kept candidates are ranked by how
robust their selector is and by how they behave on unlabelled units (other pages or other
records): do they still find a value, as many matches as on the seeds, of the same shape?
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.scraper import BlueprintField, FieldType
from scrapers.errors import ExampleNotFoundError, SelectorNotFoundError, SpecError
from scrapers.runtime.dom import select
from scrapers.runtime.engine import FieldPlan, compile_field, html_field_value, html_raw
from scrapers.runtime.text import clean_text
from scrapers.scout.derive import affixes, derive_affix_transforms, derive_split
from scrapers.scout.document import ScoutDocument
from scrapers.scout.locate import Hit, find_hits
from scrapers.scout.selectors import candidates_for, positional_selector

logger = logging.getLogger(__name__)

HITS_PER_UNIT = 25
CANDIDATES_PER_HIT = 14
MAX_PROPOSALS = 400
MAX_FALLBACKS = 2


@dataclass
class Unit:
    """Where one record lives: a page (detail) or a record element (list).

    Attributes:
        doc: The page.
        root: The document tree, or the record element.
        expected: The example values (cleaned), ``None`` for unlabelled units.
    """

    doc: ScoutDocument
    root: Any
    expected: list[str] | None = None

    @property
    def scope(self) -> Any:
        """The record element, or ``None`` for whole pages."""
        return None if self.root is self.doc.tree else self.root


@dataclass
class Proposal:
    """A candidate locator and what the checks found."""

    locator: dict[str, Any]
    robustness: float
    how: str
    score: float = 0.0
    fill: float = 1.0
    samples: list[Any] = field(default_factory=list)


def expected_values(value: str | list[str]) -> list[str]:
    """An example value as the cleaned list the learner compares against."""
    items = value if isinstance(value, list) else [value]
    return [clean_text(item) for item in items if clean_text(item)]


def infer_type(examples: Sequence[Sequence[str]]) -> FieldType:
    """``url`` when every example is an absolute URL, else ``text`` (examples are text)."""
    flat = [value for values in examples for value in values]
    if flat and all(re.match(r"^https?://\S+$", value) for value in flat):
        return "url"
    return "text"


def learn_field(
    name: str,
    labelled: list[Unit],
    unlabelled: list[Unit],
    multiple: bool,
    field_type: FieldType = "text",
) -> BlueprintField:
    """Find the most robust locator reproducing the examples of field ``name``.

    Raises:
        ExampleNotFoundError: An example value is not on its page (or record).
        SelectorNotFoundError: No locator reproduces the examples on every unit.
    """
    hits_per_unit = [_hits_for(name, unit) for unit in labelled]
    proposals = _propose(hits_per_unit, labelled)
    verified: list[Proposal] = []
    tried: list[str] = []
    for proposal in proposals:
        checked = _verify(name, proposal.locator, labelled, multiple, field_type)
        if checked is None:
            if len(tried) < 12:
                tried.append(_describe(proposal.locator))
            continue
        proposal.locator = checked
        verified.append(proposal)
    if not verified:
        raise SelectorNotFoundError(name, tried)
    for proposal in verified:
        _score(name, proposal, labelled, unlabelled, multiple, field_type)
    verified.sort(key=lambda item: (-item.score, len(item.locator["selector"])))
    best = verified[0]
    logger.debug("field %s: %d verified, best %s", name, len(verified), _describe(best.locator))
    fallbacks = _fallbacks(best, verified[1:])
    return BlueprintField(
        name=name,
        type=field_type,
        multiple=multiple,
        fallbacks=[_as_locator(item.locator) for item in fallbacks],
        samples=best.samples[:5],
        fill_rate=round(best.fill, 3),
        confidence=round(min(1.0, best.score), 3),
        source=f"example ({best.how})",
        **_as_locator(best.locator),
    )


def _hits_for(name: str, unit: Unit) -> list[Hit]:
    expected = unit.expected or []
    found: list[Hit] = []
    for position, value in enumerate(expected):
        hits = find_hits(unit.doc, value, unit.scope)
        if not hits:
            raise ExampleNotFoundError(name, value, unit.doc.url)
        if position == 0:
            found = hits
    return found


def _propose(hits_per_unit: list[list[Hit]], units: list[Unit]) -> list[Proposal]:
    proposals: dict[str, Proposal] = {}
    for hits, unit in zip(hits_per_unit, units, strict=True):
        for hit in hits[:HITS_PER_UNIT]:
            candidates = candidates_for(hit.node, unit.scope, limit=CANDIDATES_PER_HIT)
            choices = [(item.selector, item.robustness, item.how) for item in candidates]
            choices.append((positional_selector(hit.node, unit.scope), 0.1, "positional"))
            for selector, robustness, how in choices:
                if not selector:
                    continue
                locator: dict[str, Any] = {"selector": selector, "attr": hit.attr}
                if hit.label is not None:
                    locator["label"] = {
                        "text": hit.label,
                        "strip_separator": not hit.keep_separator,
                    }
                    robustness = 0.7 + 0.3 * robustness
                    how = f"label {hit.label!r}"
                elif hit.attr not in ("text", "own_text"):
                    how = f"{how}, @{hit.attr}"
                key = repr(sorted(locator.items()))
                if key not in proposals:
                    proposals[key] = Proposal(locator, robustness, how)
        if len(proposals) >= MAX_PROPOSALS:
            break
    ranked = sorted(proposals.values(), key=lambda item: -item.robustness)
    return ranked[:MAX_PROPOSALS]


def _plan(name: str, locator: dict[str, Any], multiple: bool, field_type: str) -> FieldPlan:
    return compile_field({**locator, "name": name, "type": field_type, "multiple": multiple}, False)


def _values(plan: FieldPlan, units: list[Unit]) -> list[Any]:
    return [html_field_value(unit.root, plan, unit.doc.base) for unit in units]


def _matches(value: Any, expected: list[str], multiple: bool) -> bool:
    if multiple:
        return isinstance(value, list) and value == expected
    return isinstance(value, str) and value == expected[0]


def _verify(
    name: str, locator: dict[str, Any], units: list[Unit], multiple: bool, field_type: str
) -> dict[str, Any] | None:
    try:
        values = _values(_plan(name, locator, multiple, field_type), units)
    except SpecError:
        return None  # a generated selector Lexbor cannot parse (odd attribute values)
    expected = [unit.expected or [] for unit in units]
    if all(_matches(v, e, multiple) for v, e in zip(values, expected, strict=True)):
        return locator
    steps = _derive(values, expected, multiple)
    if steps is None:
        return None
    candidate = {**locator, "transforms": steps}
    values = _values(_plan(name, candidate, multiple, field_type), units)
    if all(_matches(v, e, multiple) for v, e in zip(values, expected, strict=True)):
        return candidate
    return None


def _derive(
    values: list[Any], expected: list[list[str]], multiple: bool
) -> list[dict[str, Any]] | None:
    if not multiple:
        pairs = []
        for value, targets in zip(values, expected, strict=True):
            found = affixes(value, targets[0]) if isinstance(value, str) else None
            if found is None:
                return None
            pairs.append(found)
        return derive_affix_transforms(pairs, [targets[0] for targets in expected])
    if all(isinstance(value, list) and len(value) == 1 for value in values):
        return derive_split([value[0] for value in values], expected)
    element_pairs = []
    for value, targets in zip(values, expected, strict=True):
        if not isinstance(value, list) or len(value) != len(targets):
            return None
        for item, target in zip(value, targets, strict=True):
            found = affixes(item, target)
            if found is None:
                return None
            element_pairs.append(found)
    flat = [target for targets in expected for target in targets]
    return derive_affix_transforms(element_pairs, flat)


def _shape(value: str) -> str:
    shape = re.sub(r"\d+", "9", value)
    return re.sub(r"[^\W\d_]+", "a", shape)


def _match_count(unit: Unit, plan: FieldPlan, multiple: bool) -> int:
    locator = plan.locators[0]
    if multiple and locator.label is None:
        nodes = select(unit.root, locator.selector, locator.scope)
        return len({node.parent.mem_id for node in nodes if node.parent is not None})
    return len(html_raw(unit.root, locator, True))


def _score(
    name: str,
    proposal: Proposal,
    labelled: list[Unit],
    unlabelled: list[Unit],
    multiple: bool,
    field_type: str,
) -> None:
    locator = proposal.locator
    transforms = locator.get("transforms") or []
    factor = 1.0
    # Values read exactly beat values cut out of a longer text.
    if any(step["op"] == "regex" for step in transforms):
        factor = 0.8
    elif transforms:
        factor = 0.9
    plan = _plan(name, locator, multiple, field_type)
    seed_counts = {_match_count(unit, plan, multiple) for unit in labelled}
    proposal.samples = [
        unit.expected if multiple else (unit.expected[0] if unit.expected else None)
        for unit in labelled
    ]
    if not unlabelled:
        proposal.score = proposal.robustness * factor
        return
    values = _values(plan, unlabelled)
    filled = [value for value in values if value not in (None, [])]
    fill = len(filled) / len(values)
    consistent = sum(_match_count(unit, plan, multiple) in seed_counts for unit in unlabelled)
    consistency = consistent / len(unlabelled)
    examples = [value for unit in labelled for value in unit.expected or []]
    shape = 1.0
    shapes = {_shape(value) for value in examples}
    if len(shapes) == 1 and filled:
        flat = [v for value in filled for v in (value if isinstance(value, list) else [value])]
        shape = sum(_shape(str(v)) in shapes for v in flat) / len(flat)
    variety = 1.0
    if len(set(examples)) > 1 and len(filled) >= 3 and len({repr(v) for v in filled}) == 1:
        variety = 0.5  # the same value everywhere: a site-wide element, not this record
    proposal.fill = fill
    proposal.samples += filled[:3]
    proposal.score = (
        proposal.robustness
        * factor
        * (0.4 + 0.6 * fill)
        * (0.6 + 0.4 * consistency)
        * (0.7 + 0.3 * shape)
        * variety
    )


def _fallbacks(best: Proposal, others: list[Proposal]) -> list[Proposal]:
    chosen: list[Proposal] = []
    seen = {best.locator["selector"]}
    for item in others:
        if len(chosen) >= MAX_FALLBACKS:
            break
        if item.locator["selector"] in seen or item.score < 0.6 * best.score:
            continue
        if item.fill < 0.5:
            continue
        seen.add(item.locator["selector"])
        chosen.append(item)
    return chosen


def _as_locator(locator: dict[str, Any]) -> dict[str, Any]:
    return {
        "selector": locator["selector"],
        "attr": locator.get("attr", "text"),
        "label": locator.get("label"),
        "transforms": locator.get("transforms") or [],
    }


def _describe(locator: dict[str, Any]) -> str:
    text = f"{locator['selector']} ({locator.get('attr', 'text')}"
    if locator.get("label"):
        text += f", after label {locator['label']['text']!r}"
    return text + ")"
