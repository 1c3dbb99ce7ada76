"""Scout JSON: API responses and JSON embedded in HTML (ld+json, ``__NEXT_DATA__``,
``window.__DATA__ = {...}`` assignments).

Records are the largest array of objects (intermediate arrays generalise to ``[*]``);
fields are the keys present in most records, nested objects flattened to ``a.b`` paths.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from models.scraper import BlueprintField, EmbeddedSource, FieldType
from scrapers.runtime.jsonpath import parse_script_json
from scrapers.scout.document import ScoutDocument

MAX_NODES = 100_000
MIN_PRESENCE = 0.4
_ASSIGNMENT_RE = re.compile(
    r"(?<![\w$.])((?:window\.)?[A-Za-z_$][\w$]*)\s*=\s*(?:JSON\.parse\()?[\[{'\"]"
)
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d\d:?\d\d)?)?")
_SKIPPED_KEYS = frozenset({"@context", "@type"})
_KEY_NAMES = ("id", "_id", "@id", "sku", "uuid", "slug", "url", "href", "link")


@dataclass
class JsonCandidate:
    """An array of records found in JSON.

    Attributes:
        path: JSON path of the array (from the document root).
        records: The record objects.
        score: Records × fields, roughly.
        source: For embedded JSON, the script it came from.
        note: What it is, for the blueprint notes.
    """

    path: str
    records: list[Any]
    score: float
    source: EmbeddedSource | None = None
    note: str = ""
    documents: list[Any] = field(default_factory=list)


def _key_step(key: str) -> str:
    return f".{key}" if re.fullmatch(r"[A-Za-z_$@][\w$@-]*", key) else f"[{json.dumps(key)}]"


def find_record_arrays(data: Any) -> list[JsonCandidate]:
    """Arrays of objects in ``data``, best first."""
    found: dict[str, list[Any]] = {}
    stack: list[tuple[Any, str]] = [(data, "$")]
    visited = 0
    while stack and visited < MAX_NODES:
        node, path = stack.pop()
        visited += 1
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict | list):
                    stack.append((value, path + _key_step(str(key))))
        elif isinstance(node, list):
            objects = [item for item in node if isinstance(item, dict)]
            if len(objects) >= 1 and len(objects) >= 0.6 * len(node):
                found.setdefault(path, []).extend(objects)
            for item in node:
                if isinstance(item, dict | list):
                    stack.append((item, path + "[*]"))
    candidates = []
    for path, records in found.items():
        scalar_keys = sum(_scalar_count(record) for record in records[:20]) / min(len(records), 20)
        score = len(records) ** 0.5 * min(scalar_keys, 10.0)
        candidates.append(JsonCandidate(path, records, score))
    return sorted(candidates, key=lambda item: -item.score)


def _scalar_count(record: dict[str, Any]) -> int:
    return sum(1 for value in record.values() if not isinstance(value, dict | list)) + sum(
        1 for value in record.values() if isinstance(value, dict)
    )


def embedded_candidates(doc: ScoutDocument) -> list[JsonCandidate]:
    """Record arrays in the page's scripts, best first."""
    results: list[JsonCandidate] = []
    sources: list[tuple[EmbeddedSource, list[Any], str]] = []
    ld_documents = [
        item
        for item in (
            parse_script_json(node.text(), None)
            for node in doc.tree.css('script[type="application/ld+json"]')
        )
        if item is not None
    ]
    ld_source = EmbeddedSource(script='script[type="application/ld+json"]')
    for data in ld_documents:
        # Pages carry several ld+json blocks (breadcrumbs, the product list...): a path
        # filtered on the block's @type keeps their records apart.
        kind = data.get("@type") if isinstance(data, dict) else None
        for candidate in find_record_arrays(data):
            if isinstance(kind, str) and re.fullmatch(r"[\w:-]+", kind):
                candidate.path = f"$[?@type={kind}]{candidate.path[1:]}"
            candidate.source = ld_source
            candidate.note = f"ld+json at {candidate.path}"
            candidate.documents = ld_documents
            results.append(candidate)
    for node in doc.tree.css("script"):
        text = node.text()
        kind = (node.attributes.get("type") or "").lower()
        ident = node.attributes.get("id")
        if kind == "application/ld+json":
            continue
        if ident and re.fullmatch(r"[A-Za-z_][\w-]*", ident) and kind.endswith("json"):
            parsed = parse_script_json(text, None)
            if parsed is not None:
                sources.append((EmbeddedSource(script=f"script#{ident}"), [parsed], f"#{ident}"))
            continue
        for match in _ASSIGNMENT_RE.finditer(text[:200_000]):
            variable = match.group(1)
            parsed = parse_script_json(text, variable)
            if parsed is not None:
                sources.append(
                    (
                        EmbeddedSource(script="script", variable=variable),
                        [parsed],
                        f"assignment {variable} = ...",
                    )
                )
    for source, documents, note in sources:
        merged: dict[str, JsonCandidate] = {}
        for data in documents:
            for candidate in find_record_arrays(data):
                known = merged.get(candidate.path)
                if known is None:
                    merged[candidate.path] = candidate
                else:
                    known.records.extend(candidate.records)
        for candidate in merged.values():
            candidate.source = source
            candidate.note = f"{note} at {candidate.path}"
            candidate.documents = documents
            results.append(candidate)
    return sorted(results, key=lambda item: -item.score)


def flatten(record: Any, prefix: str = "$", depth: int = 0) -> dict[str, list[Any]]:
    """Path → scalar values of one record (lists of scalars keep all their values)."""
    out: dict[str, list[Any]] = {}
    if not isinstance(record, dict):
        return {"$": [record]} if record is not None else {}
    for key, value in record.items():
        if key in _SKIPPED_KEYS:
            continue
        path = prefix + _key_step(str(key))
        if isinstance(value, dict):
            if depth < 2:
                out.update(flatten(value, path, depth + 1))
        elif isinstance(value, list):
            scalars = [item for item in value if not isinstance(item, dict | list)]
            objects = [item for item in value if isinstance(item, dict)]
            if scalars:
                out[path] = scalars
            elif objects and depth < 2:
                for item in objects:
                    for sub_path, sub_values in flatten(item, path, depth + 1).items():
                        out.setdefault(sub_path, []).extend(sub_values)
        elif value is not None and value != "":
            out[path] = [value]
    return out


def infer_json_fields(records: list[Any]) -> tuple[list[BlueprintField], str | None]:
    """Fields present in most records, and the key field (if one is unique)."""
    flattened = [flatten(record) for record in records[:50]]
    counts: dict[str, int] = {}
    for row in flattened:
        for path in row:
            counts[path] = counts.get(path, 0) + 1
    needed = max(1, round(MIN_PRESENCE * len(flattened)))
    fields: list[BlueprintField] = []
    used: set[str] = set()
    for path, count in counts.items():
        if count < needed:
            continue
        values = [row[path] for row in flattened if path in row]
        multiple = any(len(items) > 1 for items in values)
        name = _name(path, used)
        samples = [items if multiple else items[0] for items in values[:3]]
        fields.append(
            BlueprintField(
                name=name,
                selector=path,
                type=_type(path, [v for items in values for v in items]),
                multiple=multiple,
                samples=samples,
                fill_rate=round(count / len(flattened), 3),
                confidence=0.7,
                source="json key",
            )
        )
    key = None
    for wanted in _KEY_NAMES:
        for item in fields:
            if item.multiple or item.selector.split(".")[-1].lower() != wanted:
                continue
            values = [row.get(item.selector, [None])[0] for row in flattened]
            if None not in values and len({repr(v) for v in values}) == len(values):
                key = item.name
                break
        if key:
            break
    return fields, key


def _name(path: str, used: set[str]) -> str:
    parts = [part for part in re.split(r"[.\[\]\"*$]+", path) if part and part != "@id"]
    snake = (re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", part) for part in parts)
    name = "_".join(re.sub(r"[^0-9a-zA-Z]+", "_", part).strip("_").lower() for part in snake)
    name = name or "id"
    if name[0].isdigit():
        name = f"field_{name}"
    candidate, number = name[:60], 2
    while candidate in used:
        candidate = f"{name[:55]}_{number}"
        number += 1
    used.add(candidate)
    return candidate


def _type(path: str, values: list[Any]) -> FieldType:
    key = re.split(r"[.\[\]\"$*]+", path.lower().strip('$.[]"*'))[-1]
    texts = [str(value) for value in values]
    numeric = bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )
    if "currency" in key:
        return "text"
    if any(word in key for word in ("image", "img", "thumbnail", "photo", "picture")):
        return "image"
    if re.search(r"(price|amount|cost)", key):
        return "price"
    if re.search(r"(rating|stars|score)", key) and numeric:
        return "rating"
    if re.search(r"(url|link|href)$", key) or (texts and all(t.startswith("http") for t in texts)):
        return "url"
    if texts and all(_ISO_DATE_RE.fullmatch(text) for text in texts):
        return "date"
    return "number" if numeric else "text"
