"""Check a spec against pages: does each page give the records its expectations promise?"""

from __future__ import annotations

from collections import Counter
from typing import Any

from models.scraper import Page, PageCheck, ScraperSpec, ValidationReport
from scrapers.errors import DocumentError
from scrapers.extract import extract_records
from scrapers.sandbox import SandboxLimits, extract_isolated

SAMPLE_RECORDS = 5


def _filled(value: Any) -> bool:
    return value not in (None, "", [])


def fill_rates(spec: ScraperSpec, records: list[dict[str, Any]]) -> dict[str, float]:
    """Share of ``records`` with a value, per field of ``spec``."""
    if not records:
        return {field.name: 0.0 for field in spec.fields}
    return {
        field.name: round(
            sum(_filled(record.get(field.name)) for record in records) / len(records), 4
        )
        for field in spec.fields
    }


def check_page(spec: ScraperSpec, url: str, records: list[dict[str, Any]]) -> PageCheck:
    """Compare one page's records with the spec's expectations."""
    expected = spec.expectations
    rates = fill_rates(spec, records)
    problems: list[str] = []
    if len(records) < expected.min_records:
        problems.append(f"{len(records)} records, expected at least {expected.min_records}")
    if expected.max_records is not None and len(records) > expected.max_records:
        problems.append(f"{len(records)} records, expected at most {expected.max_records}")
    if records:
        for name, minimum in expected.fill_rates.items():
            if rates.get(name, 0.0) < minimum:
                problems.append(
                    f"field {name!r} filled in {rates.get(name, 0.0):.0%} of records, "
                    f"expected at least {minimum:.0%}"
                )
    if spec.key_field and records:
        keys = Counter(
            repr(record.get(spec.key_field))
            for record in records
            if _filled(record.get(spec.key_field))
        )
        repeated = sum(count for count in keys.values() if count > 1)
        if repeated:
            problems.append(f"{repeated} records share a {spec.key_field!r} with another")
    return PageCheck(url=url, records=len(records), fill_rates=rates, problems=problems)


def validate_spec(
    spec: ScraperSpec,
    pages: list[Page],
    *,
    isolated: bool = False,
    limits: SandboxLimits | None = None,
) -> ValidationReport:
    """Run ``spec`` on ``pages`` and check its expectations.

    Args:
        spec: The candidate spec.
        pages: Fetched pages of the site.
        isolated: Extract in the sandbox process (for untrusted pages during staging).
        limits: Sandbox limits when ``isolated``.

    Returns:
        The report; ``passed`` is true when every page met the expectations.

    Raises:
        SandboxError: With ``isolated``, the sandbox timed out, ran out of memory or crashed.
        SpecError: The spec cannot run.

    A page the runtime refuses (too large, not JSON) is reported in its :class:`PageCheck`.
    """
    return validate_with_records(spec, pages, isolated=isolated, limits=limits)[0]


def validate_with_records(
    spec: ScraperSpec,
    pages: list[Page],
    *,
    isolated: bool = False,
    limits: SandboxLimits | None = None,
) -> tuple[ValidationReport, list[dict[str, Any]]]:
    """:func:`validate_spec`, also returning every record extracted (for comparisons)."""
    checks: list[PageCheck] = []
    everything: list[dict[str, Any]] = []
    if isolated:
        for outcome in extract_isolated(spec, pages, limits):
            if outcome.error:
                checks.append(PageCheck(url=outcome.url, error=outcome.error))
                continue
            checks.append(check_page(spec, outcome.url, outcome.records))
            everything += outcome.records
    else:
        for page in pages:
            try:
                records = extract_records(spec, page.body, page.url, charset=page.content_type)
            except DocumentError as exc:
                checks.append(PageCheck(url=page.url, error=f"{type(exc).__name__}: {exc}"))
                continue
            checks.append(check_page(spec, page.url, records))
            everything += records
    report = ValidationReport(
        spec_sha=spec.sha256(),
        passed=all(not check.problems and not check.error for check in checks),
        pages=checks,
        total_records=len(everything),
        fill_rates=fill_rates(spec, everything),
        samples=everything[:SAMPLE_RECORDS],
    )
    return report, everything
