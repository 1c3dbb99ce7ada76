"""Checks of the doctor (:mod:`scrapers.repair`): does a spec still reproduce the last-good
records, and does any field read another field's data?"""

from __future__ import annotations

from typing import Any

from models.scraper import ScraperSpec
from scrapers.repair_anchor import Anchors, flat_norms, same_value

FILL_TOLERANCE = 0.8
"""The old spec still works if every field is filled at least this share of its last-good rate."""
MISPLACED_MARGIN = 0.1
"""A field is the wrong column if another field's last-good values match it this much better."""
MIN_FILL_CHECKED = 0.2
MIN_ALIGNED = 3
"""Records matched by key needed before their values are compared field by field."""
MIN_KEPT_VALUES = 0.5


def _norm_set(records: list[dict[str, Any]], name: str) -> set[str]:
    return {value for record in records for value in flat_norms(record.get(name))}


def _share(new: set[str], old: set[str], *, loose: bool) -> float:
    if not new or not old:
        return 0.0
    if not loose:
        return len(new & old) / len(new)
    return sum(any(same_value(o, n) for o in old) for n in new) / len(new)


def misplaced(
    spec: ScraperSpec, records: list[dict[str, Any]], good: list[dict[str, Any]]
) -> dict[str, str]:
    """Fields whose values match another field's last-good values better than their own.

    Their own values are compared loosely (a redesign may drop a "by " prefix), another
    field's only exactly, so a refusal needs clear evidence.
    """
    names = [item.name for item in spec.fields]
    old_values = {name: _norm_set(good, name) for name in names}
    refused: dict[str, str] = {}
    for name in names:
        new = _norm_set(records, name)
        if not new:
            continue
        own = _share(new, old_values[name], loose=True)
        for other in names:
            if other == name:
                continue
            theirs = _share(new, old_values[other], loose=False)
            if theirs > own + MISPLACED_MARGIN:
                refused[name] = (
                    f"{theirs:.0%} of its values are last-good {other!r} values, "
                    f"{own:.0%} are its own"
                )
                break
    return refused


def overlap(
    spec: ScraperSpec, records: list[dict[str, Any]], good: list[dict[str, Any]], anchors: Anchors
) -> float:
    """Share of the last-good values still shown that the records reproduce.

    Measured on the key when it was re-located, else averaged over the fields that were.
    """
    names = {item.name for item in spec.fields}
    if spec.key_field and spec.key_field in names and anchors.key_values:
        return _recall(_norm_set(records, spec.key_field), anchors.key_values)
    shown = {
        name: {
            value
            for found in anchors.per_page.values()
            for position, printed in found
            if name in printed
            for value in flat_norms(good[position].get(name))
        }
        for name in names & anchors.fields
    }
    scores = [_recall(_norm_set(records, name), values) for name, values in shown.items() if values]
    return sum(scores) / len(scores) if scores else 0.0


def _recall(new: set[str], old: set[str]) -> float:
    if not old:
        return 0.0
    return sum(any(same_value(o, n) for n in new) for o in old) / len(old)


def _fill(records: list[dict[str, Any]], name: str) -> float:
    if not records:
        return 0.0
    return sum(bool(flat_norms(record.get(name))) for record in records) / len(records)


def _changed_values(
    old: ScraperSpec, current: list[dict[str, Any]], good: list[dict[str, Any]]
) -> list[str]:
    """Fields whose values changed for the same records (matched by key): a column that
    now shows something else, even if it is still filled."""
    key = old.key_field
    if key is None:
        return []
    before = {tuple(flat_norms(record.get(key))): record for record in good}
    aligned = [
        (before[norms], record)
        for record in current
        if (norms := tuple(flat_norms(record.get(key)))) and norms in before
    ]
    if len(aligned) < MIN_ALIGNED:
        return []
    problems = []
    for item in old.fields:
        pairs = [
            (flat_norms(was.get(item.name)), flat_norms(now.get(item.name)))
            for was, now in aligned
            if flat_norms(was.get(item.name))
        ]
        if len(pairs) < MIN_ALIGNED:
            continue
        kept = sum(
            bool(now) and all(any(same_value(o, n) for n in now) for o in was) for was, now in pairs
        )
        if kept / len(pairs) < MIN_KEPT_VALUES:
            problems.append(
                f"field {item.name!r} shows other values for the same records "
                f"({kept}/{len(pairs)} unchanged)"
            )
    return problems


def health(
    old: ScraperSpec,
    current: list[dict[str, Any]],
    good: list[dict[str, Any]],
    anchors: Anchors,
    min_overlap: float,
) -> list[str]:
    """Why the old spec no longer works on the new pages (empty: it still works)."""
    if not current:
        return ["finds no records"]
    problems = []
    for item in old.fields:
        before = _fill(good, item.name)
        now = _fill(current, item.name)
        if before >= MIN_FILL_CHECKED and now < before * FILL_TOLERANCE:
            problems.append(
                f"field {item.name!r} filled in {now:.0%} of records (was {before:.0%})"
            )
    problems += [
        f"field {name!r} reads other data: {why}"
        for name, why in misplaced(old, current, good).items()
    ]
    problems += _changed_values(old, current, good)
    if anchors.fields and not problems:
        share = overlap(old, current, good, anchors)
        if share < min_overlap:
            problems.append(f"returns {share:.0%} of the last-good values still shown")
    return problems


KEPT_FILL_MARGIN = 0.2
"""A candidate may fill a field at most this much less often than the last good run did."""
MIN_KEY_PRECISION = 0.3
"""Least share of a candidate's key values that must be last-good key values."""


def compare_with_last_good(
    spec: ScraperSpec,
    records: list[dict[str, Any]],
    good: list[dict[str, Any]],
    schema: list[str],
) -> list[str]:
    """Why a candidate's output does worse than the last good output (empty: it does not).

    Checks, on the candidate's records from the live page:

    * it extracts records at all (an empty scraper is never promoted);
    * no field reads another field's last-good data (the wrong column);
    * no field of the old ``schema`` that the candidate keeps is filled much less often than
      in the last good run (a field it dropped is a schema change, for a person to approve);
    * its key values are mostly last-good key values (the same items, not other text).

    Args:
        spec: The candidate.
        records: What it extracts from the live page.
        good: The records of the last good run.
        schema: The field names of the version it replaces.
    """
    if not records:
        return [
            "the candidate extracts no records from the live page (an empty scraper is never promoted)"
        ]
    problems = [
        f"field {name!r} reads another field's data: {why}"
        for name, why in misplaced(spec, records, good).items()
    ]
    names = {item.name for item in spec.fields}
    for name in schema:
        if name not in names:
            continue
        before = _fill(good, name)
        now = _fill(records, name)
        if before >= 0.5 and now + KEPT_FILL_MARGIN < before:
            problems.append(
                f"field {name!r} filled in {now:.0%} of records where the last good run had {before:.0%}"
            )
    key = spec.key_field
    if key and key in names:
        new_keys, old_keys = _norm_set(records, key), _norm_set(good, key)
        if new_keys and old_keys:
            share = _share(new_keys, old_keys, loose=True)
            if share < MIN_KEY_PRECISION:
                problems.append(
                    f"only {share:.0%} of its {key!r} values are last-good {key!r} values "
                    f"(at least {MIN_KEY_PRECISION:.0%} needed): it reads other items or another column"
                )
    return problems
