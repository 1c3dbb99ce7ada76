"""Isolated extraction and spec validation: what staging sees before a spec goes live."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from models.scraper import Page, ScraperSpec
from scrapers import (
    SandboxLimits,
    build_spec,
    extract_isolated,
    extract_records,
    scout,
    validate_spec,
)
from scrapers.errors import SandboxMemoryError, SandboxTimeoutError

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"


def _pages() -> list[Page]:
    return [
        Page(url=f"http://shop.test/page{n}.html", body=(SITES / f"shop/page{n}.html").read_text())
        for n in (1, 2, 3)
    ]


def test_isolated_extraction_gives_the_same_records() -> None:
    pages = _pages()
    spec = build_spec(scout(pages))
    outcomes = extract_isolated(spec, pages, SandboxLimits(wall_seconds=30))
    assert [outcome.error for outcome in outcomes] == [None, None, None]
    for page, outcome in zip(pages, outcomes, strict=True):
        assert outcome.records == extract_records(spec, page.body, page.url)


def test_a_page_the_runtime_refuses_is_reported_not_fatal() -> None:
    spec = ScraperSpec.model_validate(
        {"kind": "json", "fields": [{"name": "a", "selector": "$.a"}]}
    )
    pages = [
        Page(url="http://x.test/ok", body='{"a": 1}'),
        Page(url="http://x.test/bad", body="<p>"),
    ]
    good, bad = extract_isolated(spec, pages)
    assert good.records == [{"a": "1"}]
    assert bad.error is not None and "is not JSON" in bad.error


def test_catastrophic_regex_is_stopped_at_the_wall_time_limit() -> None:
    spec = ScraperSpec.model_validate(
        {
            "kind": "html-detail",
            "fields": [
                {
                    "name": "t",
                    "selector": "p",
                    "transforms": [{"op": "regex", "pattern": "^(a+)+$"}],
                }
            ],
        }
    )
    page = Page(url="http://x.test/", body="<p>" + "a" * 40 + "b</p>")
    started = time.perf_counter()
    with pytest.raises(SandboxTimeoutError, match="longer than 2s"):
        extract_isolated(spec, [page], SandboxLimits(wall_seconds=2))
    assert time.perf_counter() - started < 10


def test_memory_hungry_page_hits_the_memory_limit() -> None:
    spec = ScraperSpec.model_validate(
        {"kind": "html-list", "container": "p", "fields": [{"name": "t", "selector": "p"}]}
    )
    page = Page(url="http://x.test/huge", body="<p>x</p>" * 2_500_000)
    with pytest.raises(SandboxMemoryError, match="300 MB memory limit"):
        extract_isolated(spec, [page], SandboxLimits(memory_bytes=300 * 2**20, wall_seconds=60))


@pytest.mark.parametrize("isolated", [False, True])
def test_validation_flags_pages_that_break_expectations(isolated: bool) -> None:
    pages = _pages()
    spec = build_spec(scout(pages))
    assert validate_spec(spec, pages, isolated=isolated).passed
    broken = Page(
        url="http://shop.test/redesigned.html",
        body=pages[0]
        .body.replace('class="price"', 'class="cost"')
        .replace('id="seed-2"', 'id="seed-1"'),
    )
    empty = Page(url="http://shop.test/empty.html", body="<html><body></body></html>")
    report = validate_spec(spec, [*pages, broken, empty], isolated=isolated)
    assert not report.passed
    assert report.spec_sha == spec.sha256()
    problems = report.problems()
    assert any("redesigned" in problem and "'price'" in problem for problem in problems)
    assert any("redesigned" in problem and "share a 'id'" in problem for problem in problems)
    assert any("empty" in problem and "0 records" in problem for problem in problems)
    assert report.total_records == 16
