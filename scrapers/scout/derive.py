"""Derive declarative transforms that turn what a selector reads into what the examples show.

When the examples are part of a longer text (``Barbour Publishing / 2010 / Paperback`` for
``2010``, ``by Glenn Beck; Kevin Balfe`` for two authors), the texts around each example
are compared across pages: a constant prefix or suffix becomes ``strip_prefix`` /
``strip_suffix``; varying ones become a regex anchored on the separators they share;
separators between several values become a ``split``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

Affix = tuple[str, str]
"""Text before and after an example inside the raw value."""


def affixes(raw: str, target: str) -> Affix | None:
    """The text before and after ``target`` in ``raw`` (first occurrence), if present."""
    position = raw.find(target)
    if position < 0:
        return None
    return raw[:position], raw[position + len(target) :]


def _trim_outer_word(context: str, from_left: bool) -> str:
    # A context must be made of separators: "s / " shared by "Books / " and "Publishing / "
    # is an accident of spelling, " / " is the structure.
    if from_left:
        while context and context[0].isalnum():
            context = context[1:]
    else:
        while context and context[-1].isalnum():
            context = context[:-1]
    return context


def _common_prefix(items: Sequence[str]) -> str:
    # Character by character on purpose: contexts are separators, not path components.
    shortest = min(items, key=len, default="")
    for position, char in enumerate(shortest):
        if any(item[position] != char for item in items):
            return shortest[:position]
    return shortest


def _common_suffix(items: Sequence[str]) -> str:
    return _common_prefix([item[::-1] for item in items])[::-1]


def _side(parts: Sequence[str], left: bool) -> str | None:
    """Regex for one side of the capture, or ``None`` when no stable anchor exists."""
    empty = [part for part in parts if not part]
    filled = [part for part in parts if part]
    anchor = "^" if left else "$"
    if not filled:
        return anchor
    context = _common_suffix(filled) if left else _common_prefix(filled)
    context = _trim_outer_word(context, from_left=left)
    if not context:
        return None
    escaped = re.escape(context)
    return f"(?:{anchor}|{escaped})" if empty else escaped


def derive_affix_transforms(
    pairs: Sequence[Affix], targets: Sequence[str]
) -> list[dict[str, Any]] | None:
    """Transforms that remove the affixes of every pair, or ``None`` if none are found.

    Args:
        pairs: (prefix, suffix) of each example inside its raw value.
        targets: The example values (to pick a character class when no anchor exists).
    """
    prefixes = {prefix for prefix, _ in pairs}
    suffixes = {suffix for _, suffix in pairs}
    if len(prefixes) == 1 and len(suffixes) == 1:
        steps: list[dict[str, Any]] = []
        prefix, suffix = next(iter(prefixes)), next(iter(suffixes))
        if prefix:
            steps.append({"op": "strip_prefix", "value": prefix})
        if suffix:
            steps.append({"op": "strip_suffix", "value": suffix})
        return steps
    left = _side([prefix for prefix, _ in pairs], left=True)
    right = _side([suffix for _, suffix in pairs], left=False)
    capture = "(.+?)"
    if all(target.isdigit() for target in targets):
        capture = r"(\d+)"
    elif all(" " not in target for target in targets):
        capture = r"(\S+)"
    if left is None and right is None:
        return None
    if (left is None or right is None) and capture == "(.+?)":
        return None
    pattern = (left or "") + capture + (right or "")
    return [{"op": "regex", "pattern": pattern, "group": 1}]


def derive_split(
    raws: Sequence[str], targets: Sequence[Sequence[str]]
) -> list[dict[str, Any]] | None:
    """Transforms that cut one text into the listed values (``A; B and C``).

    Args:
        raws: One raw text per page.
        targets: The values each text should give, in order.
    """
    separators: set[str] = set()
    pairs: list[Affix] = []
    for raw, values in zip(raws, targets, strict=True):
        position = 0
        starts: list[tuple[int, int]] = []
        for value in values:
            found = raw.find(value, position)
            if found < 0:
                return None
            starts.append((found, found + len(value)))
            position = found + len(value)
        for (_, end), (start, _) in pairwise(starts):
            separator = raw[end:start].strip()
            if not separator and raw[end:start] == "":
                return None
            separators.add(separator)
        pairs.append((raw[: starts[0][0]], raw[starts[-1][1] :]))
    if not separators:
        return None
    alternatives = []
    for separator in sorted(separators, key=len, reverse=True):
        if not separator:
            alternatives.append(r"\s+")
        elif separator.isalnum():
            alternatives.append(r"\s+" + re.escape(separator) + r"\s+")
        else:
            alternatives.append(r"\s*" + re.escape(separator) + r"\s*")
    steps = derive_affix_transforms(pairs, [values[0] for values in targets]) or []
    if steps and steps[0]["op"] == "regex":
        return None  # varying text around a list: too fragile to cut reliably
    steps.append({"op": "split", "pattern": "|".join(alternatives)})
    return steps
