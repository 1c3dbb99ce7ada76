"""Rendered scrapers: a standalone module that fetches over HTTP and prints the same records
as ``extract_records``."""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from models.scraper import Page, ScraperSpec
from scrapers import build_spec, extract_records, next_page, render_module, scout
from scrapers.render import module_filename

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def sites_url() -> Iterator[str]:
    """A real HTTP server serving ``tests/fixtures/sites``."""
    handler = functools.partial(_QuietHandler, directory=str(SITES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _fixture(name: str, base: str) -> Page:
    return Page(url=f"{base}/{name}", body=(SITES / name).read_text(encoding="utf-8"))


def _run_module(spec: ScraperSpec, url: str, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / module_filename(spec)
    path.write_text(render_module(spec), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(path), url], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]


def _expected(spec: ScraperSpec, url: str, base: str) -> list[dict[str, Any]]:
    """What the library gives when it follows the pagination itself."""
    records: list[dict[str, Any]] = []
    pages = 0
    current: str | None = url
    while current:
        body = (SITES / current.removeprefix(base + "/")).read_text(encoding="utf-8")
        pages += 1
        records += extract_records(spec, body, current)
        current = next_page(spec, body, current, pages)
    return records


def test_rendered_module_follows_pages_and_matches_the_library(
    sites_url: str, tmp_path: Path
) -> None:
    pages = [_fixture(f"shop/page{number}.html", sites_url) for number in (1, 2, 3)]
    spec = build_spec(scout(pages), name="seeds")
    output = _run_module(spec, pages[0].url, tmp_path)
    assert len(output) == 12  # three pages of four
    assert output == _expected(spec, pages[0].url, sites_url)
    assert output[-1]["name"] == "Seed packet 12"


@pytest.mark.parametrize(
    "name", ["shop/cards.html", "books/table.html", "shop/api.json", "shop/next-data.html"]
)
def test_rendered_module_matches_the_library(name: str, sites_url: str, tmp_path: Path) -> None:
    page = _fixture(name, sites_url)
    spec = build_spec(scout([page]), name=Path(name).stem).model_copy(update={"pagination": None})
    output = _run_module(spec, page.url, tmp_path)
    assert output
    assert output == extract_records(spec, page.body, page.url)


def test_rendered_module_is_readable_and_embeds_the_spec() -> None:
    spec = ScraperSpec.model_validate(
        {
            "name": "books",
            "kind": "html-list",
            "container": "li.book",
            "fields": [{"name": "title", "selector": "h3 a"}],
        }
    )
    source = render_module(spec)
    tree = ast.parse(source)
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    # Standalone: the standard library and selectolax, nothing of Mendline nor pydantic.
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names) | {
        "selectolax"
    }
    assert source.startswith("#!/usr/bin/env python3")
    assert "'container': 'li.book'" in source
    assert module_filename(spec) == "books_v1.py"
