"""Run a scraper spec (as plain JSON data) over one page.

Part of the standalone runtime: it takes the spec as a ``dict`` (the JSON form of
``models.scraper.ScraperSpec``), so a generated scraper module can embed the spec and this
code without pydantic or Mendline installed.

A missing value is ``None``, never an exception: extraction only raises for a spec that
cannot run (:class:`SpecError`) or a page that cannot be parsed (:class:`DocumentError`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scrapers.errors import DocumentError, SpecError
from scrapers.runtime.decode import decode_body
from scrapers.runtime.dom import (
    base_url,
    check_selector,
    label_value,
    normalise_label,
    parse_html,
    read_value,
    select,
)
from scrapers.runtime.jsonpath import (
    JsonPathError,
    Step,
    compile_path,
    evaluate,
    parse_script_json,
    records_at,
    scalar_values,
)
from scrapers.runtime.text import Value, apply_transforms, clean_text, coerce, parse_price

HTML_KINDS = ("html-list", "html-detail")
JSON_KINDS = ("json", "embedded-json")


@dataclass(frozen=True)
class LocatorPlan:
    """One compiled locator: where a value is and how to read it."""

    selector: str
    attr: str
    label: str | None
    keep_separator: bool
    scope: str | None
    transforms: tuple[Mapping[str, Any], ...]
    json_steps: tuple[Step, ...] | None


@dataclass(frozen=True)
class FieldPlan:
    """One compiled output field with its locators, primary first."""

    name: str
    type: str
    multiple: bool
    required: bool
    locators: tuple[LocatorPlan, ...]


@dataclass(frozen=True)
class Plan:
    """A compiled spec: checked once, then run on many pages."""

    kind: str
    container: str | None
    container_steps: tuple[Step, ...]
    script: str
    variable: str | None
    fields: tuple[FieldPlan, ...]
    pagination: Mapping[str, Any] | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)


def compile_spec(spec: Mapping[str, Any]) -> Plan:
    """Check a spec's selectors and paths and prepare it for :func:`extract`.

    Args:
        spec: The JSON form of a ``ScraperSpec``.

    Raises:
        SpecError: A selector or JSON path is invalid, or the kind is unknown.
    """
    kind = spec.get("kind")
    if kind not in HTML_KINDS + JSON_KINDS:
        raise SpecError(f"unknown scraper kind {kind!r}; use one of {HTML_KINDS + JSON_KINDS}")
    is_json = kind in JSON_KINDS
    container = spec.get("container")
    embedded = spec.get("embedded") or {}
    script = embedded.get("script") or "script"
    container_steps: tuple[Step, ...] = ()
    if is_json:
        container_steps = tuple(_compile_path(container or "$", None))
        if kind == "embedded-json":
            check_selector(script)
    elif kind == "html-list":
        if not container:
            raise SpecError("an 'html-list' spec needs a container selector")
        check_selector(container)
    fields = tuple(compile_field(item, is_json) for item in spec.get("fields", ()))
    if not fields:
        raise SpecError("the spec has no fields")
    pagination = spec.get("pagination")
    if pagination and pagination.get("selector"):
        if is_json:
            compile_path(str(pagination["selector"]))  # a JSON path to the next page's URL
        else:
            check_selector(pagination["selector"])
    return Plan(
        kind=str(kind),
        container=container,
        container_steps=container_steps,
        script=script,
        variable=embedded.get("variable"),
        fields=fields,
        pagination=pagination,
        spec=spec,
    )


def _compile_path(path: str, field_name: str | None) -> list[Step]:
    try:
        return compile_path(path)
    except JsonPathError as exc:
        raise SpecError(str(exc), field=field_name) from exc


def _compile_locator(item: Mapping[str, Any], name: str, is_json: bool) -> LocatorPlan:
    selector = str(item["selector"])
    label = item.get("label")
    if not is_json:
        check_selector(selector, field=name)
        if item.get("scope"):
            check_selector(item["scope"], field=name)
    return LocatorPlan(
        selector=selector,
        attr=str(item.get("attr") or "text"),
        label=normalise_label(label["text"]) if label else None,
        keep_separator=label.get("strip_separator", True) is False if label else False,
        scope=item.get("scope"),
        transforms=tuple(item.get("transforms") or ()),
        json_steps=tuple(_compile_path(selector, name)) if is_json else None,
    )


def compile_field(item: Mapping[str, Any], is_json: bool) -> FieldPlan:
    """Compile one field (the JSON form of a ``FieldSpec``).

    Raises:
        SpecError: A selector or path of the field is invalid.
    """
    name = str(item["name"])
    locators = [item, *(item.get("fallbacks") or ())]
    return FieldPlan(
        name=name,
        type=str(item.get("type") or "text"),
        multiple=bool(item.get("multiple")),
        required=bool(item.get("required")),
        locators=tuple(_compile_locator(loc, name, is_json) for loc in locators),
    )


def extract(
    plan: Plan, document: str | bytes, url: str, *, charset: str | None = None
) -> list[dict[str, Any]]:
    """Extract the records of one page.

    Args:
        plan: From :func:`compile_spec`.
        document: The page (bytes are decoded with :func:`decode_body`).
        url: The page URL, to resolve links.
        charset: The HTTP charset (or whole ``Content-Type``) when ``document`` is bytes.

    Returns:
        One dict per record, fields in spec order; missing values are ``None``.

    Raises:
        DocumentError: The page is too large, or a ``json`` page is not JSON.
    """
    text = decode_body(document, charset)
    if plan.kind == "json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DocumentError(f"page {url} is not JSON ({exc})", url=url) from exc
        return _json_records(plan, [data], url)
    tree = parse_html(text, url)
    base = base_url(tree, url)
    if plan.kind == "embedded-json":
        documents = [
            parse_script_json(node.text(), plan.variable) for node in tree.css(plan.script)
        ]
        return _json_records(plan, [doc for doc in documents if doc is not None], base)
    roots: list[Any] = tree.css(str(plan.container)) if plan.kind == "html-list" else [tree]
    return _finish([_html_record(plan, root, base) for root in roots], plan)


def _finish(records: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    required = [item.name for item in plan.fields if item.required]
    names = [item.name for item in plan.fields]
    kept = []
    for record in records:
        if any(record.get(name) in (None, []) for name in required):
            continue
        if all(record.get(name) in (None, []) for name in names):
            continue  # e.g. the header row of a table
        kept.append(record)
    return kept


def _html_record(plan: Plan, root: LexborNode | LexborHTMLParser, base: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for item in plan.fields:
        _store(record, item, html_field_value(root, item, base))
    return record


def html_field_value(root: Any, item: FieldPlan, base: str) -> Any:
    """The value of one field under ``root`` (a record element or the document).

    Price fields give their cleaned text here; :func:`extract` parses amount and currency.
    """
    value: Any = [] if item.multiple else None
    for locator in item.locators:
        value = finish_value(html_raw(root, locator, item.multiple), locator, item, base)
        if value not in (None, []):
            break
    return value


def html_raw(root: Any, locator: LocatorPlan, multiple: bool) -> list[str]:
    """Raw strings a locator reads under ``root`` (the first one unless ``multiple``)."""
    values: list[str] = []
    for node in select(root, locator.selector, locator.scope):
        if locator.label is not None:
            value = label_value(node, locator.label, locator.keep_separator)
        else:
            value = read_value(node, locator.attr)
        if value:
            values.append(value)
            if not multiple:
                break
    return values


def finish_value(raw: list[str], locator: LocatorPlan, item: FieldPlan, base: str) -> Any:
    """Apply a locator's transforms to raw strings, clean them and parse the field type."""
    value: Value = raw if item.multiple else (raw[0] if raw else None)
    if locator.transforms:
        value = apply_transforms(value, locator.transforms)
    if isinstance(value, list) and not item.multiple:
        value = value[0] if value else None
    if value is None:
        return [] if item.multiple else None
    if item.type == "price":
        # Keep the currency text for _store; the amount is parsed there.
        return (
            [clean_text(v) for v in value if clean_text(v)]
            if isinstance(value, list)
            else (clean_text(value) or None)
        )
    if isinstance(value, list):
        coerced = [coerce(clean_text(v), item.type, base) for v in value if clean_text(v)]
        return [v for v in coerced if v is not None]
    cleaned = clean_text(value)
    return coerce(cleaned, item.type, base) if cleaned else None


def _store(record: dict[str, Any], item: FieldPlan, value: Any) -> None:
    if item.type != "price":
        record[item.name] = value
        return
    texts = value if isinstance(value, list) else [value] if value else []
    parsed = [parse_price(text) for text in texts]
    amounts = [amount for amount, _ in parsed if amount is not None]
    record[item.name] = amounts if item.multiple else (amounts[0] if amounts else None)
    # A field of the spec with that name (a JSON "currency" key) wins over the guess.
    currency = next((code for _, code in parsed if code), None)
    if record.get(f"{item.name}_currency") is None:
        record[f"{item.name}_currency"] = currency


def _json_records(plan: Plan, documents: list[Any], base: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for data in documents:
        for root in records_at(evaluate(list(plan.container_steps), data)):
            record: dict[str, Any] = {}
            for item in plan.fields:
                value: Any = [] if item.multiple else None
                for locator in item.locators:
                    found = scalar_values(evaluate(list(locator.json_steps or ()), root))
                    raw = found if item.multiple else found[:1]
                    value = finish_value([clean_text(v) for v in raw], locator, item, base)
                    if value not in (None, []):
                        break
                _store(record, item, value)
            records.append(record)
    return _finish(records, plan)


def next_page_url(plan: Plan, document: str | bytes, url: str, pages_done: int) -> str | None:
    """URL of the page after ``url`` under the spec's pagination, or ``None``.

    Args:
        plan: The compiled spec.
        document: The current page.
        url: The current page's URL.
        pages_done: Pages fetched so far, this one included (stops at ``max_pages``).
    """
    pagination = plan.pagination
    if not pagination or pages_done >= int(pagination.get("max_pages", 10)):
        return None
    kind = pagination.get("kind")
    if kind == "page-param":
        return _with_page_param(url, pagination)
    if plan.kind == "json":
        return _json_next_url(pagination, document, url)
    tree = parse_html(decode_body(document), url)
    selector = pagination.get("selector") if kind == "next-selector" else None
    selector = selector or 'link[rel~="next"][href], a[rel~="next"][href]'
    node = tree.css_first(selector)
    href = node.attributes.get("href") if node is not None else None
    if not href or href.strip().startswith(("#", "javascript:")):
        return None
    target = urljoin(base_url(tree, url), href.strip())
    return None if target == url else target


def _json_next_url(pagination: Mapping[str, Any], document: str | bytes, url: str) -> str | None:
    """The next page of a JSON API: a URL found at the spec's JSON path (``$.links.next``)."""
    selector = pagination.get("selector") if pagination.get("kind") == "next-selector" else None
    if not selector:
        return None
    try:
        data = json.loads(decode_body(document))
    except ValueError:
        return None
    for found in evaluate(compile_path(str(selector)), data):
        if isinstance(found, str) and found.strip():
            target = urljoin(url, found.strip())
            return None if target == url else target
    return None


def _with_page_param(url: str, pagination: Mapping[str, Any]) -> str:
    param = str(pagination["param"])
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    current = next((value for key, value in query if key == param), None)
    start, step = int(pagination.get("start", 1)), int(pagination.get("step", 1))
    number = int(current) + step if current and current.isdigit() else start + step
    kept = [(key, value) for key, value in query if key != param] + [(param, str(number))]
    return urlunsplit(parts._replace(query=urlencode(kept)))
