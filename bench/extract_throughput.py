"""Extraction throughput on the 240 SWDE book pages: Mendline's runtime vs AutoScraper.

For each site a spec is scouted exactly as in ``bench.swde`` (seed pages 0000–0002 with
their values) and AutoScraper is built from the same seeds. Then every page of the site
(120 per site, ≈130 KB each) is parsed and extracted, in one process on one core:

* Mendline: ``extract_records(spec, html, url)`` — Lexbor parse plus the spec's fields;
* AutoScraper: ``get_result_exact(html=html)`` — BeautifulSoup/lxml parse plus its rules.

Both get the already decoded text. The best of ``--repeat`` passes is reported (CPU time
of the process, so pages/s is per core).

Run::

    .venv/bin/python -m bench.extract_throughput --out bench/results/extract_throughput.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.swde import DATA, SITES, autoscraper_predictor, load_site, seed_examples
from models.scraper import Page, ScraperSpec
from scrapers.extract import extract_records
from scrapers.scout import build_spec, scout

log = logging.getLogger("bench.extract_throughput")


def _cpu_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(data: Path, repeat: int, autoscraper_repeat: int, unlabelled: int) -> dict[str, Any]:
    """Pages per CPU second of both systems over every page of both sites."""
    jobs: list[tuple[ScraperSpec, list[Page]]] = []
    auto_jobs: list[tuple[Callable[[str, str], dict[str, Any]], list[Page]]] = []
    for site in SITES:
        pages, truth = load_site(data, site)
        seeds = seed_examples(pages, truth)
        spec = build_spec(scout(pages[: 3 + unlabelled], seeds), name=site)
        jobs.append((spec, pages))
        auto_predict, _ = autoscraper_predictor(pages, seeds)
        auto_jobs.append((auto_predict, pages))
    total_pages = sum(len(pages) for _, pages in jobs)
    total_bytes = sum(len(page.body.encode()) for _, pages in jobs for page in pages)

    def run_mendline() -> None:
        for spec, pages in jobs:
            for page in pages:
                extract_records(spec, page.body, page.url)

    def run_autoscraper() -> None:
        for predict, pages in auto_jobs:
            for page in pages:
                predict(page.body, page.url)

    run_mendline()  # warm-up: compiles the specs once, as a long-running worker would
    mendline_s = _cpu_seconds(run_mendline, repeat)
    log.info("mendline: %d pages in %.3fs CPU", total_pages, mendline_s)
    auto_s = _cpu_seconds(run_autoscraper, autoscraper_repeat)
    log.info("autoscraper: %d pages in %.3fs CPU", total_pages, auto_s)
    return {
        "pages": total_pages,
        "megabytes": round(total_bytes / 2**20, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "mendline": {
            "cpu_seconds": round(mendline_s, 4),
            "pages_per_second_per_core": round(total_pages / mendline_s, 1),
            "ms_per_page": round(1000 * mendline_s / total_pages, 3),
        },
        "autoscraper": {
            "cpu_seconds": round(auto_s, 4),
            "pages_per_second_per_core": round(total_pages / auto_s, 1),
            "ms_per_page": round(1000 * auto_s / total_pages, 3),
        },
        "speedup": round(auto_s / mendline_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the pages (best)")
    parser.add_argument("--autoscraper-repeat", type=int, default=1)
    parser.add_argument("--unlabelled", type=int, default=12)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = measure(args.data, args.repeat, args.autoscraper_repeat, args.unlabelled)
    print(
        f"parse + extract, {results['pages']} SWDE book pages ({results['megabytes']} MB), one core"
    )
    print(f"{'system':<14}{'pages/s/core':>14}{'ms/page':>10}")
    for system in ("mendline", "autoscraper"):
        row = results[system]
        print(f"{system:<14}{row['pages_per_second_per_core']:>14.1f}{row['ms_per_page']:>10.3f}")
    print(f"speed-up: {results['speedup']:.1f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
