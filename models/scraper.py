"""Contracts of generated scrapers: specs, scout blueprints, examples and validation reports.

A :class:`ScraperSpec` is portable JSON data, never code: the runtime in ``scrapers/`` reads
it to pull records out of HTML or JSON pages (examples: ``tests/unit/test_scraper_*.py``).
Specs cross Temporal history and are stored by version, so fields are added, never renamed.

Value semantics (implemented by ``scrapers.extract``):

* ``attr`` is ``text`` (whitespace-collapsed text of the element and its descendants),
  ``own_text`` (only the element's direct text nodes), ``html`` (inner HTML) or the name of
  an attribute (``href``, ``src``, ``content``, ``data-id``...).
* ``price`` gives a number and an extra key ``<field>_currency`` (ISO code, if printed);
  ``date`` gives ISO 8601 as precise as the page (``2010-06-14``, ``2010-06``, ``2010``);
  ``url``/``image`` are resolved against the page URL and ``<base href>``. A value that
  does not parse as its type becomes null.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ScraperKind = Literal["html-list", "html-detail", "json", "embedded-json"]
FieldType = Literal["text", "number", "price", "date", "url", "image", "rating"]
SpecAuthor = Literal["heuristic", "llm", "human", "doctor"]
# fmt: off
TransformOp = Literal[
    "strip", "collapse_whitespace", "regex", "replace", "strip_prefix", "strip_suffix",
    "split", "join", "lower", "upper", "to_number", "default",
]
# fmt: on
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
MAX_PATTERN_LENGTH = 500
"""Longest regex a transform may hold; long patterns are where catastrophic backtracking hides."""

ExampleValue = str | list[str]
"""What an example gives for one field: one value or, for multi-valued fields, a list."""


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a hand-written spec must not pass silently."""

    model_config = ConfigDict(extra="forbid")


class Transform(_Strict):
    """One declarative step applied to an extracted string (or to each string of a list).

    Operations and the arguments they read:

    * ``strip`` (``value``: characters to strip, default whitespace),
      ``collapse_whitespace``, ``lower``, ``upper``;
    * ``regex``: search ``pattern`` and keep capture ``group`` (null when it does not match);
    * ``replace``: substitute ``pattern`` (a regex) by ``value``;
    * ``strip_prefix`` / ``strip_suffix``: remove the literal ``value`` when present;
    * ``split``: split on the regex ``pattern`` into a list (multi-valued fields);
    * ``join``: join a list with ``value`` (default ``", "``);
    * ``to_number``: parse the first number in the text;
    * ``default``: use ``value`` when the value is missing or empty.
    """

    op: TransformOp
    pattern: str | None = Field(None, max_length=MAX_PATTERN_LENGTH)
    group: int = Field(1, ge=0, le=99)
    value: str | None = None

    @model_validator(mode="after")
    def _arguments(self) -> Transform:
        if self.op in ("regex", "replace", "split"):
            if not self.pattern:
                raise ValueError(f"transform {self.op!r} needs a 'pattern' (a regular expression)")
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"transform {self.op!r}: pattern {self.pattern!r} is not a valid regular "
                    f"expression ({exc})"
                ) from exc
            if self.op == "regex" and self.group > compiled.groups:
                raise ValueError(
                    f"transform 'regex': group {self.group} does not exist in {self.pattern!r} "
                    f"({compiled.groups} groups); use group 0 for the whole match"
                )
        if self.op in ("strip_prefix", "strip_suffix", "default") and self.value is None:
            raise ValueError(f"transform {self.op!r} needs a 'value'")
        return self


class LabelAnchor(_Strict):
    """Find a value by the label printed next to it, e.g. ``<b>ISBN-13:</b> 978…``.

    The elements matched by the field's ``selector`` are the label candidates. One whose
    text equals ``text`` (ignoring case, surrounding whitespace and a trailing colon) yields
    the text that follows it: its following sibling text and inline elements up to the
    next ``<br>``, block element or element like the label; if that is empty, the text of
    the next sibling element (``<dt>``→``<dd>``, ``<th>``→``<td>``). A candidate whose text
    *starts with* the label followed by a separator (``Price: $9.99``) yields the rest.

    Attributes:
        text: The label as printed, without the colon.
        strip_separator: Remove a leading ``:``, ``-`` or ``=`` and spaces from the value.
            The scout turns this off when the examples keep the separator.
    """

    text: str = Field(min_length=1, max_length=200)
    strip_separator: bool = True


class Locator(_Strict):
    """Where a value is and how to read it.

    Attributes:
        selector: CSS selector relative to the record (or the document on detail pages); for
            ``json`` and ``embedded-json`` specs a JSON path relative to the record
            (``$`` is the record itself, e.g. ``$.offers.price``).
        attr: ``text``, ``own_text``, ``html`` or an attribute name (HTML kinds only).
        label: Read the value that follows a printed label instead of the element itself.
        scope: CSS selector of the element to search in; only its first match is used, so
            ``selector`` ignores look-alikes elsewhere (e.g. a second author box).
        transforms: Steps applied in order to the raw string(s).
    """

    selector: str = Field(min_length=1, max_length=2000)
    attr: str = Field("text", min_length=1, max_length=100)
    label: LabelAnchor | None = None
    scope: str | None = Field(None, max_length=2000)
    transforms: list[Transform] = Field(default_factory=list)


class FieldSpec(Locator):
    """One output field of a record.

    Attributes:
        name: Output key.
        type: How the text is parsed (see the module docstring).
        multiple: Return every match as a list (several authors) instead of the first.
        required: A record without this field is dropped.
        fallbacks: Locators tried in order when the primary one finds nothing.
    """

    name: str = Field(pattern=FIELD_NAME_PATTERN, max_length=100)
    type: FieldType = "text"
    multiple: bool = False
    required: bool = False
    fallbacks: list[Locator] = Field(default_factory=list)


class EmbeddedSource(_Strict):
    """Where an ``embedded-json`` spec finds its JSON inside an HTML page.

    Attributes:
        script: CSS selector of the ``<script>`` elements whose text is read, e.g.
            ``script[type="application/ld+json"]`` or ``script#__NEXT_DATA__``.
        variable: For scripts that assign data (``window.__DATA__ = {...};``), the name
            assigned to; the JSON literal after ``=`` is read. ``None`` reads the whole
            script text as JSON.
    """

    script: str = Field("script", min_length=1, max_length=500)
    variable: str | None = Field(None, max_length=200)


class PaginationSpec(_Strict):
    """How to reach the next page of a listing.

    Attributes:
        kind: ``rel-next`` follows ``<link rel=next>`` / ``<a rel=next>``; ``next-selector``
            follows the ``href`` of the first element matching ``selector``;
            ``page-param`` sets the query parameter ``param`` to ``start``, ``start+step``…
        selector: CSS of the "next" anchor (``next-selector``).
        param: Query parameter holding the page number (``page-param``).
        start: Number of the first page (``page-param``).
        step: Increment between pages (``page-param``).
        max_pages: Pages fetched at most, the first included.
    """

    kind: Literal["rel-next", "next-selector", "page-param"]
    selector: str | None = Field(None, max_length=2000)
    param: str | None = Field(None, max_length=100)
    start: int = Field(1, ge=0)
    step: int = Field(1, ge=1)
    max_pages: int = Field(10, ge=1, le=10_000)

    @model_validator(mode="after")
    def _arguments(self) -> PaginationSpec:
        if self.kind == "next-selector" and not self.selector:
            raise ValueError("pagination 'next-selector' needs a 'selector' (CSS of the link)")
        if self.kind == "page-param" and not self.param:
            raise ValueError("pagination 'page-param' needs a 'param' (query parameter name)")
        return self


class Expectations(_Strict):
    """What a healthy extraction of one page looks like; validation compares against it.

    Attributes:
        min_records: Fewest records a page should give.
        max_records: Most records a page should give (``None``: no limit).
        fill_rates: Per field, the least share of records (0–1) that should have a value.
    """

    min_records: int = Field(1, ge=0)
    max_records: int | None = Field(None, ge=0)
    fill_rates: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)


class SpecMeta(_Strict):
    """Provenance of a spec version (not part of its :meth:`ScraperSpec.sha256`)."""

    version: int = Field(1, ge=1)
    parent_sha: str | None = None
    author: SpecAuthor = "human"
    created_at: datetime | None = None
    notes: str = ""


class ScraperSpec(_Strict):
    """A scraper as data: what a record is, its fields, pagination and expectations.

    Attributes:
        name: Short name, used for rendered module names.
        kind: ``html-list`` (many records per page), ``html-detail`` (one record per page),
            ``json`` (a JSON API response) or ``embedded-json`` (JSON inside an HTML page).
        container: CSS selector of one record (``html-list``) or JSON path of the record
            list (``json`` kinds, default ``$``). Unused by ``html-detail``.
        embedded: Script that holds the JSON (``embedded-json`` only).
        fields: The output fields, in output order.
        key_field: The field that identifies a record (unique and stable).
        pagination: How to reach further pages.
        render: The page needs a browser to show its data.
        expectations: What a healthy page gives.
        meta: Version and provenance.
    """

    name: str = Field("scraper", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    kind: ScraperKind
    container: str | None = Field(None, max_length=2000)
    embedded: EmbeddedSource | None = None
    fields: list[FieldSpec] = Field(min_length=1)
    key_field: str | None = None
    pagination: PaginationSpec | None = None
    render: bool = False
    expectations: Expectations = Field(default_factory=Expectations)
    meta: SpecMeta = Field(default_factory=SpecMeta)

    @model_validator(mode="after")
    def _consistent(self) -> ScraperSpec:
        names = [field.name for field in self.fields]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"field names must be unique; repeated: {duplicates}")
        if self.key_field is not None and self.key_field not in names:
            raise ValueError(f"key_field {self.key_field!r} is not one of the fields {names}")
        if self.kind == "html-list" and not self.container:
            raise ValueError("an 'html-list' spec needs a 'container' (CSS of one record)")
        if self.kind == "embedded-json" and self.embedded is None:
            self.embedded = EmbeddedSource()
        unknown = sorted(set(self.expectations.fill_rates) - set(names))
        if unknown:
            raise ValueError(f"expectations.fill_rates names unknown fields {unknown}")
        return self

    def field(self, name: str) -> FieldSpec:
        """Return the field called ``name``."""
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    def sha256(self) -> str:
        """Content hash of what the spec extracts and expects; ``meta`` (who, when) is left out."""
        data = self.model_dump(mode="json", exclude={"meta"})
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


class Page(_Strict):
    """A fetched page handed to the scout or to validation.

    Attributes:
        url: Where the page came from (used to resolve links).
        body: The decoded text (use ``scrapers.decode_body`` for raw bytes).
        content_type: The HTTP ``Content-Type``, when known.
    """

    url: str
    body: str
    content_type: str | None = None


class SeedPage(_Strict):
    """A page given as an example, with the values a scraper should pull out of it.

    Attributes:
        url: The page (matches a :class:`Page` by URL).
        values: Field name → value (or list of values) of the page's record. For detail
            pages this is the record; for listings, one record of the page.
        records: For listings, several example records of the page (optional).
    """

    url: str
    values: dict[str, ExampleValue] = Field(default_factory=dict)
    records: list[dict[str, ExampleValue]] = Field(default_factory=list)

    def example_records(self) -> list[dict[str, ExampleValue]]:
        """All example records of the page, ``values`` first."""
        return ([self.values] if self.values else []) + list(self.records)


Example = SeedPage  # another name: a page with its expected values


class BlueprintField(FieldSpec):
    """A field as the scout found it, with the evidence.

    Attributes:
        samples: Values read from the scouted pages (a few).
        fill_rate: Share of scouted records with a value.
        confidence: 0–1, how sure the scout is of this field.
        source: What the field was inferred from (``example``, ``itemprop``, ``class``,
            ``table-header``, ``label``, ``pattern``...).
    """

    samples: list[Any] = Field(default_factory=list)
    fill_rate: float = Field(1.0, ge=0.0, le=1.0)
    confidence: float = Field(0.5, ge=0.0, le=1.0)
    source: str = ""


class Blueprint(_Strict):
    """What the scout found on the pages it was given.

    Attributes:
        kind: The scraper kind to build.
        container: Record selector / JSON path (see :class:`ScraperSpec`).
        embedded: Script holding the JSON, for ``embedded-json``.
        fields: The fields with their evidence.
        key_field: Field that identifies a record.
        pagination: Pagination found, if any.
        render: The data seems to be drawn by scripts the scout could not read.
        record_counts: Records found per scouted page.
        confidence: 0–1 overall.
        notes: What was tried and why this structure won.
    """

    kind: ScraperKind
    container: str | None = None
    embedded: EmbeddedSource | None = None
    fields: list[BlueprintField] = Field(default_factory=list)
    key_field: str | None = None
    pagination: PaginationSpec | None = None
    render: bool = False
    record_counts: list[int] = Field(default_factory=list)
    confidence: float = Field(0.5, ge=0.0, le=1.0)
    notes: list[str] = Field(default_factory=list)


class PageCheck(_Strict):
    """Validation of one page: how many records and which expectations failed."""

    url: str
    records: int = 0
    fill_rates: dict[str, float] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)
    error: str | None = None


class ValidationReport(_Strict):
    """Result of running a candidate spec on pages and checking its expectations.

    Attributes:
        spec_sha: :meth:`ScraperSpec.sha256` of the spec checked.
        passed: Every page met the expectations and no page failed.
        pages: One check per page.
        total_records: Records over all pages.
        fill_rates: Per field, the share of all records with a value.
        samples: A few extracted records, for review.
    """

    spec_sha: str
    passed: bool
    pages: list[PageCheck] = Field(default_factory=list)
    total_records: int = 0
    fill_rates: dict[str, float] = Field(default_factory=dict)
    samples: list[dict[str, Any]] = Field(default_factory=list)

    def problems(self) -> list[str]:
        """Every error and problem of every page, prefixed with the page URL."""
        return [
            f"{page.url}: {problem}"
            for page in self.pages
            for problem in ([page.error] if page.error else []) + page.problems
        ]
